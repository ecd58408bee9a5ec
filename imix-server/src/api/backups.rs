//! System backups (the admin guide's "Backup and Restore"): list, create (a background job
//! with progress), download, upload, restore and delete. Platform admins only
//! (`platform.system`); every action is audit-logged.

use chrono::{DateTime, Utc};
use imix_core::access::Permission;
use imix_update::backup::{
    schedule::Schedule, BackupError, BackupJob, BackupKind, JobStatus, Progress,
};
use poem::{Body, IntoResponse, Response};
use poem_openapi::{
    param::Path,
    payload::Json,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry},
    types::multipart::Upload,
    ApiResponse, Enum, Multipart, Object, OpenApi,
};

use super::ApiTags;
use crate::{auth::Auth, error::ApiError, state::AppState};

/// The path of the upload operation (it has a body limit of its own, see `body.rs`).
pub const BACKUP_UPLOAD_PATH: &str = "/api/v1/system/backups/upload";

/// Backup operations.
pub struct BackupsApi {
    state: AppState,
}

impl BackupsApi {
    /// The backups API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Why a backup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum BackupKindDto {
    /// "Create Backup" (API or CLI).
    Manual,
    /// Taken before an update was installed.
    PreUpdate,
    /// Taken by the daily schedule.
    Scheduled,
    /// Taken before a restore replaced the data.
    PreRestore,
}

impl From<BackupKind> for BackupKindDto {
    fn from(k: BackupKind) -> Self {
        match k {
            BackupKind::Manual => Self::Manual,
            BackupKind::PreUpdate => Self::PreUpdate,
            BackupKind::Scheduled => Self::Scheduled,
            BackupKind::PreRestore => Self::PreRestore,
        }
    }
}

/// Where a backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum BackupStatusDto {
    /// Being written; `progress` says how far it got.
    Running,
    /// Written, verified on upload, ready to download or restore.
    Done,
    /// Stopped; `error` says why. Nothing was kept.
    Failed,
}

/// How far a running backup got.
#[derive(Debug, Clone, Object)]
pub struct BackupProgress {
    /// `exporting records`, `copying blobs`, `copying the executable`, `writing the manifest`.
    pub stage: String,
    /// Records written so far.
    pub records: u64,
    /// Blobs (files) written so far.
    pub blobs: u64,
    /// Uncompressed bytes written so far.
    pub bytes: u64,
}

impl From<&Progress> for BackupProgress {
    fn from(p: &Progress) -> Self {
        Self {
            stage: p.stage(),
            records: p.records(),
            blobs: p.blobs(),
            bytes: p.bytes(),
        }
    }
}

/// A backup.
#[derive(Debug, Clone, Object)]
pub struct BackupView {
    /// Id.
    pub id: String,
    /// The version of imix that made it.
    pub version: String,
    /// When it was made (started, while running).
    pub created_at: DateTime<Utc>,
    /// The archive's size in bytes (0 until done).
    pub size: u64,
    /// Why it was made.
    pub kind: BackupKindDto,
    /// `running`, `done` or `failed`.
    pub status: BackupStatusDto,
    /// Why it failed.
    pub error: Option<String>,
    /// Progress, while running.
    pub progress: Option<BackupProgress>,
    /// The store it was taken from (`sqlite` or `mongodb`), once done.
    pub backend: Option<String>,
    /// Records per kind (`tenant`, `user`, `message`, `blob`, …), once done.
    pub counts: Option<std::collections::BTreeMap<String, u64>>,
    /// Whether it was uploaded rather than made on this server.
    pub uploaded: bool,
}

impl From<BackupJob> for BackupView {
    fn from(j: BackupJob) -> Self {
        Self {
            id: j.id,
            version: j.app_version,
            created_at: j.created_at,
            size: j.size,
            kind: j.kind.into(),
            status: match j.status {
                JobStatus::Running => BackupStatusDto::Running,
                JobStatus::Done => BackupStatusDto::Done,
                JobStatus::Failed => BackupStatusDto::Failed,
            },
            error: j.error,
            progress: j.progress.as_deref().map(BackupProgress::from),
            backend: j.info.as_ref().map(|i| i.backend.clone()),
            counts: j.info.as_ref().map(|i| i.counts.clone()),
            uploaded: j.info.as_ref().is_some_and(|i| i.uploaded),
        }
    }
}

/// Every backup, newest first.
#[derive(Debug, Clone, Object)]
pub struct BackupList {
    /// Backups (jobs running or failed since the server started included).
    pub items: Vec<BackupView>,
    /// Always null: the list is not paged.
    pub next_cursor: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, Object)]
pub struct RestoreView {
    /// The restored backup.
    pub backup: BackupView,
    /// Records and blobs stored.
    pub restored_records: u64,
    /// The backup of the data as it was just before, taken automatically.
    pub pre_restore_backup_id: Option<String>,
    /// True when the backup is of another version (answer 202): its executable was put in
    /// place (the previous one kept) and the server is restarting into it; that version
    /// restores the data before it serves, then confirms its health like an update (else
    /// the previous executable and the pre-restore data are put back). Follow
    /// `GET /api/v1/system/update/status`. `restored_records` is 0 then.
    pub restarting: bool,
}

/// The daily backup schedule (a platform setting; off by default).
#[derive(Debug, Clone, Object)]
pub struct BackupScheduleView {
    /// Whether a `scheduled` backup is made every day.
    pub enabled: bool,
    /// The time of day it is made, `HH:MM`.
    pub time: String,
    /// The time zone of `time`: always `UTC`.
    pub time_zone: String,
    /// When the next scheduled backup is due (null while disabled).
    pub next_run_at: Option<DateTime<Utc>>,
    /// When the last scheduled run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The backup the last successful run made (retention may have deleted it since).
    pub last_backup_id: Option<String>,
    /// Why the last run failed, until one succeeds.
    pub last_error: Option<String>,
}

impl From<Schedule> for BackupScheduleView {
    fn from(s: Schedule) -> Self {
        Self {
            enabled: s.enabled,
            time: s.time,
            time_zone: "UTC".to_owned(),
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_backup_id: s.last_backup_id,
            last_error: s.last_error,
        }
    }
}

/// A change to the backup schedule; a field left out keeps its value.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct BackupScheduleUpdate {
    /// Turns scheduled backups on or off.
    pub enabled: Option<bool>,
    /// The time of day, `HH:MM` (00:00 to 23:59) in UTC.
    pub time: Option<String>,
}

/// A backup archive to add to the list.
#[derive(Debug, Multipart)]
pub struct BackupUpload {
    /// The `.tar.gz` archive, as downloaded from an imix server.
    pub file: Upload,
}

/// Answers of create.
#[derive(ApiResponse)]
enum Created {
    /// The backup job started; poll the list (or the backup) until `status` is `done`.
    #[oai(status = 202)]
    Accepted(Json<BackupView>),
}

/// Answers of upload.
#[derive(ApiResponse)]
enum Uploaded {
    /// The archive was verified and added to the list.
    #[oai(status = 201)]
    Created(Json<BackupView>),
}

/// Answers of restore.
#[derive(ApiResponse)]
enum Restored {
    /// The data was replaced with the backup's.
    #[oai(status = 200)]
    Done(Json<RestoreView>),
    /// A backup of another version: its executable is in place and the server restarts
    /// into it, which restores the data; follow `GET /api/v1/system/update/status`.
    #[oai(status = 202)]
    Restarting(Json<RestoreView>),
}

/// Answers of delete.
#[derive(ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

/// A backup archive, streamed from disk.
pub struct ArchiveDownload {
    file: tokio::fs::File,
    size: u64,
    file_name: String,
}

impl IntoResponse for ArchiveDownload {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type("application/gzip")
            .header(
                poem::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", self.file_name),
            )
            .header(poem::http::header::CONTENT_LENGTH, self.size)
            .header("X-Content-Type-Options", "nosniff")
            .body(Body::from_async_read(self.file))
    }
}

impl ApiResponse for ArchiveDownload {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The backup archive (tar + gzip), as an attachment",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/gzip",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
                        "string", "binary",
                    ))),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        use poem::http::StatusCode;
        match e {
            BackupError::Store(e) => e.into(),
            BackupError::Foreign(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "backup_foreign",
                e.to_string(),
            )
            .with_details(serde_json::json!({"field": "file"})),
            BackupError::Corrupt(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "backup_corrupt",
                e.to_string(),
            )
            .with_details(serde_json::json!({"field": "file"})),
            BackupError::Unsupported(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "backup_unsupported",
                e.to_string(),
            )
            .with_details(serde_json::json!({"field": "file"})),
            BackupError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "backup not found")
            }
            BackupError::Exists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "backup_exists",
                format!("backup {id} is already in the list"),
            )
            .with_details(serde_json::json!({"field": "file", "backup_id": id})),
            BackupError::Busy => ApiError::new(StatusCode::CONFLICT, "backup_busy", e.to_string())
                .with_retry_after(5),
            BackupError::Io { .. } => {
                tracing::error!(error = %e, "backup I/O failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "a backup file could not be read or written; it has been logged",
                )
            }
        }
    }
}

impl BackupsApi {
    fn require(auth: &Auth) -> Result<(), ApiError> {
        Ok(auth.0.access().require(Permission::PlatformSystem)?)
    }

    async fn audit(&self, auth: &Auth, action: &str, id: &str) {
        self.state
            .tenancy
            .record_action(&auth.0, action, "backup", id.to_owned(), None)
            .await;
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl BackupsApi {
    /// Every backup, newest first: finished ones (made here or uploaded) and jobs running
    /// or failed since the server started. Platform admins.
    #[oai(
        path = "/system/backups",
        method = "get",
        operation_id = "list_backups"
    )]
    async fn list(&self, auth: Auth) -> Result<Json<BackupList>, ApiError> {
        Self::require(&auth)?;
        let items = self.state.backups.list()?;
        Ok(Json(BackupList {
            items: items.into_iter().map(BackupView::from).collect(),
            next_cursor: None,
        }))
    }

    /// "Create Backup": starts a backup of all data, blobs and the running executable in
    /// the background and answers 202 with it `running`; the list shows it `done` (or
    /// `failed`) when it ends. 409 `backup_busy` while another backup or restore runs.
    #[oai(
        path = "/system/backups",
        method = "post",
        operation_id = "create_backup"
    )]
    async fn create(&self, auth: Auth) -> Result<Created, ApiError> {
        Self::require(&auth)?;
        let job = self.state.backups.start(BackupKind::Manual)?;
        self.audit(&auth, "backup.create", &job.id).await;
        Ok(Created::Accepted(Json(job.into())))
    }

    /// The daily backup schedule: off by default; when on, a `scheduled` backup is made
    /// every day at `time` (UTC), then the oldest scheduled backups beyond
    /// `IMIX_BACKUP_KEEP` are deleted. Platform admins.
    #[oai(
        path = "/system/backups/schedule",
        method = "get",
        operation_id = "get_backup_schedule"
    )]
    async fn get_schedule(&self, auth: Auth) -> Result<Json<BackupScheduleView>, ApiError> {
        Self::require(&auth)?;
        let scheduler = crate::workers::backup_scheduler(&self.state);
        Ok(Json(scheduler.get().await?.into()))
    }

    /// Turns scheduled backups on or off and/or sets their time (`HH:MM`, UTC). The next
    /// run is the first such time from now. A bad value is refused (422 naming the field)
    /// and nothing changes.
    #[oai(
        path = "/system/backups/schedule",
        method = "put",
        operation_id = "set_backup_schedule"
    )]
    async fn set_schedule(
        &self,
        auth: Auth,
        body: Json<BackupScheduleUpdate>,
    ) -> Result<Json<BackupScheduleView>, ApiError> {
        Self::require(&auth)?;
        let scheduler = crate::workers::backup_scheduler(&self.state);
        let schedule = scheduler
            .set(body.0.enabled, body.0.time.as_deref())
            .await?;
        self.state
            .tenancy
            .record_action(
                &auth.0,
                "backup.schedule_update",
                "backup_schedule",
                format!("enabled={} time={}", schedule.enabled, schedule.time),
                None,
            )
            .await;
        Ok(Json(schedule.into()))
    }

    /// One backup (or job), for polling its progress.
    #[oai(
        path = "/system/backups/:backup_id",
        method = "get",
        operation_id = "get_backup"
    )]
    async fn get(&self, auth: Auth, backup_id: Path<String>) -> Result<Json<BackupView>, ApiError> {
        Self::require(&auth)?;
        Ok(Json(self.state.backups.get(&backup_id.0)?.into()))
    }

    /// Downloads the archive (streamed, `imix-backup-<time>-<id>.tar.gz`).
    #[oai(
        path = "/system/backups/:backup_id/download",
        method = "get",
        operation_id = "download_backup"
    )]
    async fn download(
        &self,
        auth: Auth,
        backup_id: Path<String>,
    ) -> Result<ArchiveDownload, ApiError> {
        Self::require(&auth)?;
        let backups = &self.state.backups;
        let info = backups.store().get(&backup_id.0)?;
        let path = backups.store().archive_path(&info.id)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|source| BackupError::Io {
                action: "open the backup",
                source,
            })?;
        let size = file
            .metadata()
            .await
            .map_err(|source| BackupError::Io {
                action: "open the backup",
                source,
            })?
            .len();
        self.audit(&auth, "backup.download", &info.id).await;
        Ok(ArchiveDownload {
            file,
            size,
            file_name: format!(
                "imix-backup-{}-{}.tar.gz",
                info.created_at.format("%Y%m%dT%H%M%SZ"),
                info.id
            ),
        })
    }

    /// Restores the backup: verifies every checksum first (a damaged, foreign or newer
    /// archive is refused, 422, and nothing changes), takes a `pre-restore` backup of the
    /// current data, then replaces all data with the archive's. While it runs the API
    /// answers 503. Works across stores (a SQLite backup restores into MongoDB).
    ///
    /// A backup of another version whose executable runs here (checked against the
    /// archive's SHA-256, run once) is restored the way an update installs: pre-restore
    /// backup, its executable put in place (the previous one kept), restart; that version
    /// restores the data before serving and is on probation until healthy, else the
    /// previous executable and the pre-restore data come back. Answer 202 `restarting`;
    /// follow `GET /system/update/status`. Without a usable executable, a backup of a newer
    /// schema is refused (422 `backup_unsupported`) and an older one is restored here,
    /// migrated forward.
    #[oai(
        path = "/system/backups/:backup_id/restore",
        method = "post",
        operation_id = "restore_backup"
    )]
    async fn restore(&self, auth: Auth, backup_id: Path<String>) -> Result<Restored, ApiError> {
        Self::require(&auth)?;
        let backups = &self.state.backups;
        let info = backups.store().get(&backup_id.0)?;
        self.audit(&auth, "backup.restore_started", &info.id).await;
        let plan = match crate::updates::plan_restore(&self.state.config, backups, &info.id).await {
            Ok(plan) => plan,
            Err(e) => {
                self.audit(&auth, "backup.restore_failed", &info.id).await;
                return Err(match e {
                    crate::ServerError::Backup(e) => e.into(),
                    e => {
                        tracing::error!(error = %e, "cannot prepare the restore");
                        ApiError::new(
                            poem::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "internal_error",
                            "the restore could not be prepared; it has been logged",
                        )
                    }
                });
            }
        };
        if let crate::updates::RestorePlan::OtherVersion(release) = plan {
            let mut data = crate::updates::ServerRestoreData::new(backups.clone(), &info.id);
            let status = match self
                .state
                .updates
                .service
                .install_from_backup(release, &mut data)
                .await
            {
                Ok(status) => status,
                Err(e) => {
                    self.audit(&auth, "backup.restore_failed", &info.id).await;
                    return Err(match e {
                        imix_update::update::UpdateError::Backup(e) => e.into(),
                        e => e.into(),
                    });
                }
            };
            return Ok(Restored::Restarting(Json(RestoreView {
                backup: BackupJob::from(info).into(),
                restored_records: 0,
                pre_restore_backup_id: status.backup_id,
                restarting: true,
            })));
        }
        let outcome = match backups.restore(&info.id, &Progress::default()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.audit(&auth, "backup.restore_failed", &info.id).await;
                return Err(e.into());
            }
        };
        // The audit log was replaced with the archive's: record the restore in the new one.
        self.audit(&auth, "backup.restore", &info.id).await;
        Ok(Restored::Done(Json(RestoreView {
            backup: BackupJob::from(info).into(),
            restored_records: outcome.restored,
            pre_restore_backup_id: outcome.pre_restore_backup,
            restarting: false,
        })))
    }

    /// Deletes the backup.
    #[oai(
        path = "/system/backups/:backup_id",
        method = "delete",
        operation_id = "delete_backup"
    )]
    async fn delete(&self, auth: Auth, backup_id: Path<String>) -> Result<Deleted, ApiError> {
        Self::require(&auth)?;
        self.state.backups.delete(&backup_id.0).await?;
        self.audit(&auth, "backup.delete", &backup_id.0).await;
        Ok(Deleted::NoContent)
    }

    /// Adds an archive downloaded from an imix server (this one or another: disaster
    /// recovery, moving to MongoDB) to the list, after verifying it as a whole; a damaged
    /// or foreign file is refused (422) and nothing is added. Multipart field `file`; up to
    /// `IMIX_BACKUP_UPLOAD_MAX_MB` (default 10 GiB).
    #[oai(
        path = "/system/backups/upload",
        method = "post",
        operation_id = "upload_backup"
    )]
    async fn upload(&self, auth: Auth, form: BackupUpload) -> Result<Uploaded, ApiError> {
        Self::require(&auth)?;
        let file = form.file.into_file().into_std().await;
        let info = self.state.backups.upload(file).await?;
        self.audit(&auth, "backup.upload", &info.id).await;
        Ok(Uploaded::Created(Json(BackupJob::from(info).into())))
    }
}
