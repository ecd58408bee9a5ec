//! System updates (the admin guide's "System Updates"): check for updates, install one, and
//! follow its progress. Platform admins only (`platform.system`); installs are audit-logged.

use chrono::{DateTime, Utc};
use imix_core::access::Permission;
use imix_update::update::{InstallStatus, Stage, UpdateError};
use poem::http::StatusCode;
use poem_openapi::{payload::Json, ApiResponse, Enum, Object, OpenApi};

use super::{dto::LanguageDto, ApiTags};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Update operations.
pub struct UpdateApi {
    state: AppState,
}

impl UpdateApi {
    /// The updates API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// What "Check for Updates" found.
#[derive(Debug, Clone, Object)]
pub struct UpdateCheck {
    /// The running version.
    pub current_version: String,
    /// The version the update server offers.
    pub latest_version: String,
    /// Whether it can be installed (newer, signed, for this target, not expired).
    pub update_available: bool,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
    /// Until when the manifest is valid.
    pub expires_at: Option<DateTime<Utc>>,
    /// Release notes (Markdown) in the caller's language, or English when the release has
    /// none in it.
    pub notes: Option<String>,
    /// The language of `notes`.
    pub notes_language: Option<LanguageDto>,
    /// The download's size in bytes.
    pub download_size: Option<u64>,
}

/// Where an install is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum UpdateStage {
    /// No install ran since the server started, and none is remembered.
    Idle,
    /// Fetching and verifying the manifest.
    Checking,
    /// Making the pre-update backup.
    BackingUp,
    /// Downloading the new version.
    Downloading,
    /// Checking the download (size, SHA-256, a trial run).
    Verifying,
    /// Replacing the executable (the previous one is kept).
    Installing,
    /// Restarting into the new version: the server goes away for a moment.
    Restarting,
    /// The new version runs and is confirming its health.
    Confirming,
    /// Installed and healthy.
    Installed,
    /// Stopped before anything changed; `error` says why.
    Failed,
    /// The new version was not healthy in time: the previous version and the pre-update
    /// data were put back; `error` says why.
    RolledBack,
}

impl From<Stage> for UpdateStage {
    fn from(s: Stage) -> Self {
        match s {
            Stage::Idle => Self::Idle,
            Stage::Checking => Self::Checking,
            Stage::BackingUp => Self::BackingUp,
            Stage::Downloading => Self::Downloading,
            Stage::Verifying => Self::Verifying,
            Stage::Installing => Self::Installing,
            Stage::Restarting => Self::Restarting,
            Stage::Confirming => Self::Confirming,
            Stage::Installed => Self::Installed,
            Stage::Failed => Self::Failed,
            Stage::RolledBack => Self::RolledBack,
        }
    }
}

/// Progress of the current (or last) install; poll it until `stage` is `installed`,
/// `failed` or `rolled-back` (during `restarting` the server does not answer for a moment).
#[derive(Debug, Clone, Object)]
pub struct UpdateStatus {
    /// Where it is.
    pub stage: UpdateStage,
    /// Overall progress, 0-100.
    pub percent: u8,
    /// Bytes downloaded so far.
    pub bytes_done: u64,
    /// The download's size (0 until known).
    pub bytes_total: u64,
    /// Why it failed or was rolled back.
    pub error: Option<String>,
    /// The running version.
    pub current_version: String,
    /// The version being (or last) installed.
    pub target_version: Option<String>,
    /// The pre-update backup (in the backups list, kind `pre-update`; for the restore of
    /// a backup of another version, the `pre-restore` backup).
    pub backup_id: Option<String>,
    /// Set when this is the restore of a backup of another version (its executable put in
    /// place like an update): the backup being restored.
    pub restore_of: Option<String>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<InstallStatus> for UpdateStatus {
    fn from(s: InstallStatus) -> Self {
        Self {
            stage: s.stage.into(),
            percent: s.percent,
            bytes_done: s.bytes_done,
            bytes_total: s.bytes_total,
            error: s.error,
            current_version: s.current_version,
            target_version: s.target_version,
            backup_id: s.backup_id,
            restore_of: s.restore_of,
            updated_at: s.updated_at,
        }
    }
}

/// Answers of install.
#[derive(ApiResponse)]
enum Started {
    /// The release was verified and the install started; poll the status.
    #[oai(status = 202)]
    Accepted(Json<UpdateStatus>),
}

/// A refusal naming the offending part of the manifest (or setting) in `details.field`.
fn refusal(status: StatusCode, code: &'static str, e: &UpdateError, field: &str) -> ApiError {
    ApiError::new(status, code, e.to_string()).with_details(serde_json::json!({ "field": field }))
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match &e {
            UpdateError::NotConfigured => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_not_configured",
                &e,
                "UPDATE_SERVER_URL",
            ),
            UpdateError::Unreachable { .. } | UpdateError::HttpStatus { .. } => {
                tracing::warn!(error = %e, "update server unreachable");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "update_server_unreachable",
                    e.to_string(),
                )
                .with_details(serde_json::json!({ "field": "UPDATE_SERVER_URL" }))
            }
            UpdateError::SignatureMissing => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_signature_missing",
                &e,
                "signature",
            ),
            UpdateError::SignatureInvalid => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_signature_invalid",
                &e,
                "signature",
            ),
            UpdateError::ManifestInvalid { field, .. } => {
                let field = field.clone();
                refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "update_manifest_invalid",
                    &e,
                    &field,
                )
            }
            UpdateError::Expired { .. } => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_expired",
                &e,
                "expires_at",
            ),
            UpdateError::NoArtifact { .. } => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_no_artifact",
                &e,
                "artifacts",
            ),
            UpdateError::NotNewer { .. } => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_not_newer",
                &e,
                "version",
            ),
            UpdateError::OlderThanAccepted { .. } => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_older_than_accepted",
                &e,
                "version",
            ),
            UpdateError::BelowMinVersion { .. } => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_below_min_version",
                &e,
                "min_version",
            ),
            UpdateError::ArtifactMismatch { .. } | UpdateError::TrialRun(_) => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "update_artifact_invalid",
                &e,
                "artifacts",
            ),
            UpdateError::Busy => ApiError::new(StatusCode::CONFLICT, "update_busy", e.to_string())
                .with_retry_after(10),
            UpdateError::Backup(_) | UpdateError::Store(_) | UpdateError::Io { .. } => {
                tracing::error!(error = %e, "update failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the update could not be prepared; it has been logged",
                )
            }
        }
    }
}

impl UpdateApi {
    fn require(auth: &Auth) -> Result<(), ApiError> {
        Ok(auth.0.access().require(Permission::PlatformSystem)?)
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl UpdateApi {
    /// "Check for Updates": fetches the manifest from `UPDATE_SERVER_URL` and verifies it
    /// (ed25519 signature with `IMIX_UPDATE_PUBLIC_KEY`, expiry, an artifact for this
    /// server's target, a version newer than the running one and not older than the newest
    /// ever accepted, `min_version`). Release notes come in the caller's language (English
    /// when the release has none in it). When the offered version is the running one,
    /// `update_available` is false. Refusals: 422 with a code per reason
    /// (`update_signature_missing`, `update_signature_invalid`, `update_expired`,
    /// `update_no_artifact`, `update_not_newer`, `update_older_than_accepted`,
    /// `update_below_min_version`, `update_manifest_invalid`, `update_not_configured`); 502
    /// `update_server_unreachable`. Platform admins.
    #[oai(path = "/system/update", method = "get", operation_id = "check_update")]
    async fn check(&self, auth: Auth) -> Result<Json<UpdateCheck>, ApiError> {
        Self::require(&auth)?;
        let current = crate::updates::running_version().to_string();
        match self.state.updates.service.check().await {
            Ok(release) => {
                let (language, notes) = release
                    .manifest
                    .notes
                    .for_language(auth.0.user().default_language);
                Ok(Json(UpdateCheck {
                    current_version: current,
                    latest_version: release.manifest.version.to_string(),
                    update_available: true,
                    released_at: Some(release.manifest.released_at),
                    expires_at: Some(release.manifest.expires_at),
                    notes: Some(notes.to_owned()),
                    notes_language: Some(language.into()),
                    download_size: Some(release.artifact.size),
                }))
            }
            // The server offers the running version: up to date, not an error.
            Err(UpdateError::NotNewer { version, running }) if version == running => {
                Ok(Json(UpdateCheck {
                    current_version: current,
                    latest_version: version.to_string(),
                    update_available: false,
                    released_at: None,
                    expires_at: None,
                    notes: None,
                    notes_language: None,
                    download_size: None,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// "Install Update": verifies the release as the check does (refusals as there, nothing
    /// changed), then in the background: a `pre-update` backup, the download (streamed;
    /// size and SHA-256 checked), a trial run, the executable replaced atomically (the
    /// previous one kept as `<exe>.previous`) and a restart. The new version confirms
    /// itself once its `/health` answers; otherwise, after `IMIX_UPDATE_HEALTH_TIMEOUT_SECS`,
    /// the previous executable and the pre-update data are put back automatically and the
    /// status says why. 409 `update_busy` while an install runs or awaits confirmation.
    #[oai(
        path = "/system/update/install",
        method = "post",
        operation_id = "install_update"
    )]
    async fn install(&self, auth: Auth) -> Result<Started, ApiError> {
        Self::require(&auth)?;
        let status = self.state.updates.service.start_install().await?;
        self.state
            .tenancy
            .record_action(
                &auth.0,
                "update.install",
                "update",
                status.target_version.clone().unwrap_or_default(),
                None,
            )
            .await;
        Ok(Started::Accepted(Json(status.into())))
    }

    /// The current install's progress, or the outcome of the last one (kept across the
    /// restart: `installed`, `failed` or `rolled-back` with the reason).
    #[oai(
        path = "/system/update/status",
        method = "get",
        operation_id = "get_update_status"
    )]
    async fn status(&self, auth: Auth) -> Result<Json<UpdateStatus>, ApiError> {
        Self::require(&auth)?;
        Ok(Json(self.state.updates.service.status().into()))
    }
}
