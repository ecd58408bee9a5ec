//! Signed self-updates with automatic rollback (the admin guide's "System Updates").
//!
//! An update server is any static web server: `manifest.json`, its detached signature
//! `manifest.json.sig`, and the artifacts (one executable per target triple). The pieces:
//!
//! - [`manifest`]: the manifest, keys, and the signed message (domain-separated, with the
//!   version bound into it).
//! - [`verify`]: the pure policy: signature, expiry, target, "newer than running", "not older
//!   than the newest ever accepted", `min_version`. Each refusal is its own
//!   [`UpdateError`] variant.
//! - [`source`]: where manifests and artifacts come from ([`ReleaseSource`], HTTP by
//!   default), [`AcceptedVersions`] (the newest version ever accepted, kept in the store's
//!   platform settings), [`DataSnapshots`] (the pre-update backup) and [`Restarter`].
//! - [`service`]: [`Updates`], "Check for Updates" and "Install Update" (one at a time, with
//!   progress).
//! - [`probation`]: the pending-update marker and what each start does with it: the new
//!   version confirms itself once healthy, or puts the previous executable back (and the old
//!   one then puts the pre-update data back).
//! - [`swap`]: replacing the executable atomically, keeping `<exe>.previous`.
//!
//! The guarantees and their limits are written down in `docs/updates.md`.

pub mod manifest;
pub mod probation;
pub mod service;
pub mod source;
pub mod swap;
pub mod verify;

pub use manifest::{Artifact, ReleaseManifest, ReleaseNotes};
pub use service::{BackupRelease, InstallStatus, Stage, Updates, UpdatesConfig};
pub use source::{
    AcceptedVersions, DataSnapshots, FetchedManifest, HttpSource, ReleaseSource, Restarter,
    RestoreData, SettingsAcceptedVersions,
};
pub use verify::{Policy, VerifiedRelease};

/// The target triple this build runs on (from the compiler, see `build.rs`): the key of
/// the artifact an update installs.
pub const TARGET: &str = env!("IMIX_BUILD_TARGET");

/// The default `IMIX_UPDATE_PUBLIC_KEY` (ed25519, base64). It was generated for this
/// repository with `imix-release keygen` and its secret half was deleted at once, so **no
/// manifest verifies with it**: updates fail closed (`update_signature_invalid`) until an
/// operator sets the key of whoever publishes their builds (see `docs/updates.md`).
pub const DEFAULT_PUBLIC_KEY: &str = "LCt24W26yfZ6WeW0LKyt6XkBb7WaCYEl9AG+vm46JDM=";

/// The exit code with which the server asks its supervisor to start it again (after an
/// update, or to roll one back): 75, `EX_TEMPFAIL` ("try again"). The systemd unit in
/// `docs/imix.service` restarts on it.
pub const RESTART_EXIT_CODE: u8 = 75;

/// Why an update check or install was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// `UPDATE_SERVER_URL` is not set: updates are off.
    #[error("updates are off: UPDATE_SERVER_URL is not set")]
    NotConfigured,
    /// The update server could not be reached or did not answer.
    #[error("the update server could not be reached at {url}: {source}")]
    Unreachable {
        /// What was requested.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The update server answered with an error status.
    #[error("the update server answered {status} for {url}")]
    HttpStatus {
        /// What was requested.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The manifest has no signature file (`manifest.json.sig`).
    #[error("the manifest is not signed (no manifest.json.sig)")]
    SignatureMissing,
    /// The signature does not verify with the configured public key (tampered manifest, or
    /// signed with another key).
    #[error("the manifest's signature is not valid for the configured public key")]
    SignatureInvalid,
    /// The manifest is not a valid manifest (unreadable JSON, a missing field, a bad
    /// version); `field` names what is wrong.
    #[error("the manifest is not valid: {field}: {problem}")]
    ManifestInvalid {
        /// The offending field (`version`, `artifacts`, …) or `manifest`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The manifest's `expires_at` has passed (a stale manifest replayed: freeze attack).
    #[error("the manifest expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// The manifest has no artifact for the target this server runs on.
    #[error("the release has no artifact for this server's target {target}")]
    NoArtifact {
        /// This server's target triple.
        target: String,
    },
    /// The release is not newer than the running version.
    #[error("version {version} is not newer than the running version {running}")]
    NotNewer {
        /// The manifest's version.
        version: semver::Version,
        /// The running version.
        running: semver::Version,
    },
    /// The release is older than the newest version this server ever accepted (a rollback
    /// through the update channel).
    #[error(
        "version {version} is older than version {accepted}, which this server already accepted"
    )]
    OlderThanAccepted {
        /// The manifest's version.
        version: semver::Version,
        /// The newest version ever accepted.
        accepted: semver::Version,
    },
    /// The running version is below the release's `min_version`: an intermediate release
    /// must be installed first.
    #[error("version {version} can only be installed over version {min_version} or newer; this server runs {running}")]
    BelowMinVersion {
        /// The manifest's version.
        version: semver::Version,
        /// The release's `min_version`.
        min_version: semver::Version,
        /// The running version.
        running: semver::Version,
    },
    /// The downloaded artifact does not match the manifest (`what`: `size` or `sha256`).
    #[error("the downloaded artifact's {what} does not match the manifest (expected {expected}, got {actual})")]
    ArtifactMismatch {
        /// `size` or `sha256`.
        what: &'static str,
        /// What the manifest says.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// The downloaded executable does not run here, or does not report the release's
    /// version (`<exe> --version`).
    #[error("the downloaded executable failed its trial run: {0}")]
    TrialRun(String),
    /// Another install is running.
    #[error("an update is being installed; wait for it to finish")]
    Busy,
    /// The pre-update backup (or its restore) failed.
    #[error("pre-update backup: {0}")]
    Backup(#[from] crate::backup::BackupError),
    /// The store failed (reading or recording the newest accepted version).
    #[error(transparent)]
    Store(#[from] imix_core::Error),
    /// A file operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

impl UpdateError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> UpdateError {
        move |source| UpdateError::Io { action, source }
    }
}

/// The result type of this module.
pub type Result<T, E = UpdateError> = std::result::Result<T, E>;
