//! [`Updates`]: "Check for Updates" and "Install Update".
//!
//! An install runs as one background job at a time: check (fetch and verify the manifest,
//! record its version as accepted) → pre-update backup → download (streamed to a temporary
//! file beside the executable, size and SHA-256 checked on the way) → trial run of the new
//! executable (`--version` must print the release's version) → marker written → executable
//! replaced (the old one kept as `<exe>.previous`) → restart. What happens after the
//! restart is in [`super::probation`].

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{
    probation::{self, LastResult, Marker, MarkerState, Outcome},
    source::{
        artifact_url, AcceptedVersions, DataSnapshots, ReleaseSource, Restarter, RestoreData,
    },
    swap,
    verify::{verify_release, Policy, VerifiedRelease},
    Result, UpdateError,
};

/// How updates are checked and installed.
#[derive(Debug, Clone)]
pub struct UpdatesConfig {
    /// The key releases must be signed with (`IMIX_UPDATE_PUBLIC_KEY`).
    pub public_key: VerifyingKey,
    /// The running version.
    pub running_version: semver::Version,
    /// This server's target triple ([`super::TARGET`]).
    pub target: String,
    /// The executable to replace (`std::env::current_exe()` by default).
    pub executable: PathBuf,
    /// Where the marker and the last result are kept (`$IMIX_DATA_DIR/update`).
    pub state_dir: PathBuf,
    /// How long the new version has to answer its health check
    /// (`IMIX_UPDATE_HEALTH_TIMEOUT_SECS`).
    pub health_timeout: Duration,
}

/// Where an install is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// No install has run (or is running) since the last one's outcome was reported.
    Idle,
    /// Fetching and verifying the manifest.
    Checking,
    /// Making the pre-update backup.
    BackingUp,
    /// Downloading the new executable.
    Downloading,
    /// Checking the download and running it once (`--version`).
    Verifying,
    /// Replacing the executable.
    Installing,
    /// Restarting into the new version.
    Restarting,
    /// The new version runs and is on probation until its health check passes.
    Confirming,
    /// The new version is installed and healthy.
    Installed,
    /// The install stopped before the executable was replaced; `error` says why. Nothing
    /// changed (the pre-update backup, if made, stays in the list).
    Failed,
    /// The new version did not become healthy: the previous executable and the pre-update
    /// data were put back; `error` says why.
    RolledBack,
}

/// Progress of the current (or last) install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallStatus {
    /// Where it is.
    pub stage: Stage,
    /// Overall progress, 0-100.
    pub percent: u8,
    /// Bytes of the artifact downloaded so far.
    pub bytes_done: u64,
    /// The artifact's size (0 until known).
    pub bytes_total: u64,
    /// Why it failed or was rolled back.
    pub error: Option<String>,
    /// The running version.
    pub current_version: String,
    /// The version being (or last) installed.
    pub target_version: Option<String>,
    /// The pre-update backup (for a restore of another version: the pre-restore backup).
    pub backup_id: Option<String>,
    /// When this is the restore of a backup of another version: that backup.
    pub restore_of: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl InstallStatus {
    fn new(stage: Stage, current: &semver::Version) -> Self {
        Self {
            stage,
            percent: 0,
            bytes_done: 0,
            bytes_total: 0,
            error: None,
            current_version: current.to_string(),
            target_version: None,
            backup_id: None,
            restore_of: None,
            updated_at: Utc::now(),
        }
    }
}

/// A backup of another version to restore through [`Updates::install_from_backup`].
#[derive(Debug)]
pub struct BackupRelease {
    /// The backup's app version (the executable's).
    pub version: semver::Version,
    /// The backup's executable: complete, flushed, executable, beside the executable it
    /// replaces (same directory: the swap is a rename).
    pub executable: tempfile::TempPath,
    /// The backup to restore.
    pub backup_id: String,
    /// Time on top of the health timeout for the restore the new version makes before it
    /// can answer its health check.
    pub extra_time: Duration,
}

/// What a check found: a verified release newer than the running version.
pub type Check = VerifiedRelease;

struct Inner {
    config: UpdatesConfig,
    source: Option<Arc<dyn ReleaseSource>>,
    accepted: Arc<dyn AcceptedVersions>,
    snapshots: Arc<dyn DataSnapshots>,
    restarter: Arc<dyn Restarter>,
    /// The running install's status (`None`: none ran in this process).
    current: Mutex<Option<InstallStatus>>,
    /// Held by the running install.
    busy: Arc<tokio::sync::Mutex<()>>,
}

/// The update service. Cheap to clone.
#[derive(Clone)]
pub struct Updates {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Updates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updates")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Updates {
    /// The service; `source` is `None` when no update server is configured (checks answer
    /// [`UpdateError::NotConfigured`]).
    pub fn new(
        config: UpdatesConfig,
        source: Option<Arc<dyn ReleaseSource>>,
        accepted: Arc<dyn AcceptedVersions>,
        snapshots: Arc<dyn DataSnapshots>,
        restarter: Arc<dyn Restarter>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                source,
                accepted,
                snapshots,
                restarter,
                current: Mutex::new(None),
                busy: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UpdatesConfig {
        &self.inner.config
    }

    /// "Check for Updates": fetches the manifest and verifies it against the policy; a
    /// release that passes is recorded as accepted. Errors name the refusal.
    pub async fn check(&self) -> Result<Check> {
        let source = self
            .inner
            .source
            .as_ref()
            .ok_or(UpdateError::NotConfigured)?;
        let fetched = source.fetch_manifest().await?;
        let accepted = self.inner.accepted.newest().await?;
        let config = &self.inner.config;
        let release = verify_release(
            &fetched.bytes,
            fetched.signature.as_deref(),
            &Policy {
                key: &config.public_key,
                running: &config.running_version,
                accepted: accepted.as_ref(),
                target: &config.target,
                now: Utc::now(),
            },
        )?;
        // Resolve the artifact URL now: a manifest whose URL is unusable is refused at check.
        let url = artifact_url(&fetched.url, &release.artifact.url, &config.target)?;
        self.inner
            .accepted
            .record(&release.manifest.version)
            .await?;
        Ok(VerifiedRelease {
            artifact: super::Artifact {
                url: url.to_string(),
                ..release.artifact
            },
            ..release
        })
    }

    /// The status: the install running in this process, else the outcome of the last one
    /// (from the state directory, so it survives the restart), else `idle`. A pending
    /// marker for the running version reads as `confirming`.
    pub fn status(&self) -> InstallStatus {
        if let Some(status) = self.inner.current.lock().ok().and_then(|c| c.clone()) {
            return status;
        }
        let running = &self.inner.config.running_version;
        let dir = &self.inner.config.state_dir;
        if let Ok(Some(marker)) = probation::read_marker(dir) {
            let mut status = InstallStatus::new(Stage::Confirming, running);
            status.percent = 99;
            status.target_version = Some(marker.to_version.to_string());
            status.backup_id = Some(marker.backup_id);
            status.restore_of = marker.restore_of;
            return status;
        }
        match probation::last_result(dir) {
            Ok(Some(last)) => status_of_result(last, running),
            Ok(None) => InstallStatus::new(Stage::Idle, running),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last update result");
                InstallStatus::new(Stage::Idle, running)
            }
        }
    }

    /// "Install Update": checks now (refusals are errors here, with nothing changed), then
    /// runs the rest in the background and answers its first status. [`UpdateError::Busy`]
    /// while another install runs.
    pub async fn start_install(&self) -> Result<InstallStatus> {
        let guard = Arc::clone(&self.inner.busy)
            .try_lock_owned()
            .map_err(|_| UpdateError::Busy)?;
        if let Ok(Some(m)) = probation::read_marker(&self.inner.config.state_dir) {
            // The last install has not confirmed (or rolled back) yet.
            drop(guard);
            tracing::warn!(to = %m.to_version, "an update is still on probation");
            return Err(UpdateError::Busy);
        }
        self.set(|s| *s = InstallStatus::new(Stage::Checking, &self.inner.config.running_version));
        let release = match self.check().await {
            Ok(r) => r,
            Err(e) => {
                self.clear();
                return Err(e);
            }
        };
        self.set(|s| {
            s.target_version = Some(release.manifest.version.to_string());
            s.bytes_total = release.artifact.size;
        });
        let this = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            // The outcome is in the status (and the log).
            let _ = this.run_install(release).await;
        });
        Ok(self.status())
    }

    /// Runs an install to its end (the restart request included) and waits for it; the
    /// same steps as [`Updates::start_install`] without the background task.
    pub async fn install(&self) -> Result<InstallStatus> {
        let guard = Arc::clone(&self.inner.busy)
            .try_lock_owned()
            .map_err(|_| UpdateError::Busy)?;
        self.set(|s| *s = InstallStatus::new(Stage::Checking, &self.inner.config.running_version));
        let release = match self.check().await {
            Ok(r) => r,
            Err(e) => {
                self.clear();
                return Err(e);
            }
        };
        let outcome = self.run_install(release).await;
        drop(guard);
        outcome.map(|()| self.status())
    }

    /// Restores a backup of another version the way an update installs: `release` is the
    /// backup's executable (extracted beside the executable, checked against the archive's
    /// SHA-256 and run once by the caller). Takes the pre-restore backup
    /// ([`RestoreData::backup_first`]), writes the pending marker (with
    /// [`Marker::restore_of`]), then the backups' restore marker
    /// ([`RestoreData::restore_at_next_start`]), replaces the executable keeping the
    /// previous one ([`swap::install`]) and asks for the restart. The restored version
    /// restores the data at start, before serving, and is then on probation exactly like an
    /// updated one: if it does not become healthy in time, the previous executable and the
    /// pre-restore data are put back (see [`super::probation`]). Waits for the steps (not
    /// for the restart); [`UpdateError::Busy`] while an install runs or is on probation.
    pub async fn install_from_backup(
        &self,
        release: BackupRelease,
        data: &mut dyn RestoreData,
    ) -> Result<InstallStatus> {
        let guard = Arc::clone(&self.inner.busy)
            .try_lock_owned()
            .map_err(|_| UpdateError::Busy)?;
        let config = &self.inner.config;
        if probation::read_marker(&config.state_dir)?.is_some() {
            return Err(UpdateError::Busy);
        }
        self.set(|s| {
            *s = InstallStatus::new(Stage::BackingUp, &config.running_version);
            s.percent = 5;
            s.target_version = Some(release.version.to_string());
            s.restore_of = Some(release.backup_id.clone());
        });
        let outcome = self.restore_steps(&release, data).await;
        drop(guard);
        match outcome {
            Ok(()) => {
                self.set(|s| {
                    s.stage = Stage::Restarting;
                    s.percent = 98;
                });
                tracing::warn!(version = %release.version, backup = %release.backup_id,
                    "the executable of the backup's version is in place; restarting into it to restore the backup");
                self.inner.restarter.restart();
                Ok(self.status())
            }
            Err(e) => {
                tracing::error!(error = %e, backup = %release.backup_id, "restore of another version failed");
                let message = e.to_string();
                let _ = probation::write_last_result(
                    &config.state_dir,
                    &LastResult {
                        outcome: Outcome::Failed,
                        from_version: config.running_version.to_string(),
                        to_version: release.version.to_string(),
                        reason: Some(message.clone()),
                        backup_id: self.status().backup_id,
                        finished_at: Utc::now(),
                        restore_of: Some(release.backup_id.clone()),
                    },
                );
                self.set(|s| {
                    s.stage = Stage::Failed;
                    s.error = Some(message);
                });
                Err(e)
            }
        }
    }

    async fn restore_steps(
        &self,
        release: &BackupRelease,
        data: &mut dyn RestoreData,
    ) -> Result<()> {
        let config = &self.inner.config;
        let backup_id = data.backup_first().await?;
        self.set(|s| {
            s.backup_id = Some(backup_id.clone());
            s.stage = Stage::Installing;
            s.percent = 90;
        });
        let marker = Marker {
            from_version: config.running_version.clone(),
            to_version: release.version.clone(),
            executable: config.executable.clone(),
            backup_id,
            attempts: 0,
            state: MarkerState::Swapped,
            reason: None,
            health_timeout_secs: (config.health_timeout + release.extra_time).as_secs(),
            started_at: Utc::now(),
            restore_of: Some(release.backup_id.clone()),
        };
        // Order matters for a kill -9 at any point: the pending marker first (a start of
        // this version with it and no swap reports "interrupted, nothing changed" and drops
        // the backups' marker), then the backups' marker, then the swap.
        probation::write_marker(&config.state_dir, &marker)?;
        let forget_marker = || {
            let _ = std::fs::remove_file(config.state_dir.join(probation::MARKER_FILE));
        };
        if let Err(e) = data.restore_at_next_start() {
            forget_marker();
            return Err(e);
        }
        let temp = release.executable.to_path_buf();
        let exe = config.executable.clone();
        let swapped = tokio::task::spawn_blocking(move || swap::install(&temp, &exe))
            .await
            .map_err(|e| UpdateError::io("replace the executable")(std::io::Error::other(e)))?;
        if let Err(e) = swapped {
            data.cancel();
            forget_marker();
            return Err(UpdateError::io("replace the executable")(e));
        }
        Ok(())
    }

    /// Runs the install's steps; records the outcome in the status (and, on failure, in the
    /// last result) and answers it.
    async fn run_install(&self, release: VerifiedRelease) -> Result<()> {
        self.set(|s| {
            s.target_version = Some(release.manifest.version.to_string());
            s.bytes_total = release.artifact.size;
        });
        match self.install_steps(&release).await {
            Ok(()) => {
                self.set(|s| {
                    s.stage = Stage::Restarting;
                    s.percent = 98;
                });
                tracing::info!(version = %release.manifest.version, "update installed; restarting");
                self.inner.restarter.restart();
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, version = %release.manifest.version, "update failed");
                let message = e.to_string();
                let backup_id = self.status().backup_id;
                let _ = probation::write_last_result(
                    &self.inner.config.state_dir,
                    &LastResult {
                        outcome: Outcome::Failed,
                        from_version: self.inner.config.running_version.to_string(),
                        to_version: release.manifest.version.to_string(),
                        reason: Some(message.clone()),
                        backup_id,
                        finished_at: Utc::now(),
                        restore_of: None,
                    },
                );
                self.set(|s| {
                    s.stage = Stage::Failed;
                    s.error = Some(message);
                });
                Err(e)
            }
        }
    }

    async fn install_steps(&self, release: &VerifiedRelease) -> Result<()> {
        let config = &self.inner.config;
        self.set(|s| {
            s.stage = Stage::BackingUp;
            s.percent = 5;
        });
        let backup_id = self.inner.snapshots.snapshot().await?;
        self.set(|s| {
            s.backup_id = Some(backup_id.clone());
            s.stage = Stage::Downloading;
            s.percent = 10;
        });
        let temp = self.download(release).await?;
        self.set(|s| {
            s.stage = Stage::Verifying;
            s.percent = 92;
        });
        trial_run(&temp, &release.manifest.version).await?;
        self.set(|s| {
            s.stage = Stage::Installing;
            s.percent = 95;
        });
        let marker = Marker {
            from_version: config.running_version.clone(),
            to_version: release.manifest.version.clone(),
            executable: config.executable.clone(),
            backup_id,
            attempts: 0,
            state: MarkerState::Swapped,
            reason: None,
            health_timeout_secs: config.health_timeout.as_secs(),
            started_at: Utc::now(),
            restore_of: None,
        };
        probation::write_marker(&config.state_dir, &marker)?;
        let exe = config.executable.clone();
        let swapped = tokio::task::spawn_blocking(move || swap::install(&temp, &exe))
            .await
            .map_err(|e| UpdateError::io("replace the executable")(std::io::Error::other(e)))?;
        if let Err(e) = swapped {
            // Nothing was replaced (or the old one is in both places): no pending update.
            let _ = std::fs::remove_file(config.state_dir.join(probation::MARKER_FILE));
            return Err(UpdateError::io("replace the executable")(e));
        }
        Ok(())
    }

    /// Streams the artifact into a temporary file beside the executable, checking size and
    /// SHA-256; answers the file's path (closed, flushed, executable).
    async fn download(&self, release: &VerifiedRelease) -> Result<tempfile::TempPath> {
        let config = &self.inner.config;
        let source = self
            .inner
            .source
            .as_ref()
            .ok_or(UpdateError::NotConfigured)?;
        let url =
            url::Url::parse(&release.artifact.url).map_err(|e| UpdateError::ManifestInvalid {
                field: format!("artifacts.{}.url", config.target),
                problem: e.to_string(),
            })?;
        let dir = config
            .executable
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        // Only one install runs at a time, so a download file left here is from an install
        // killed mid-way (kill -9 skips the temporary file's cleanup): remove it first.
        remove_stale_downloads(&dir);
        let temp = tempfile::Builder::new()
            .prefix(DOWNLOAD_PREFIX)
            .tempfile_in(&dir)
            .map_err(UpdateError::io("create the download file"))?;
        let (std_file, path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let expected = release.artifact.size;
        let mut hasher = Sha256::new();
        let mut done: u64 = 0;
        let mut chunks = source.download(&url).await?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            done += chunk.len() as u64;
            if done > expected {
                return Err(UpdateError::ArtifactMismatch {
                    what: "size",
                    expected: expected.to_string(),
                    actual: format!("more than {expected}"),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(UpdateError::io("write the download"))?;
            self.set(|s| {
                s.bytes_done = done;
                s.percent = 10 + (done.saturating_mul(80) / expected.max(1)) as u8;
            });
        }
        if done != expected {
            return Err(UpdateError::ArtifactMismatch {
                what: "size",
                expected: expected.to_string(),
                actual: done.to_string(),
            });
        }
        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(&release.artifact.sha256) {
            return Err(UpdateError::ArtifactMismatch {
                what: "sha256",
                expected: release.artifact.sha256.clone(),
                actual,
            });
        }
        file.flush()
            .await
            .map_err(UpdateError::io("write the download"))?;
        file.sync_all()
            .await
            .map_err(UpdateError::io("write the download"))?;
        // Closed before it is run: a file open for writing cannot be executed (ETXTBSY).
        drop(file);
        set_executable(&path, &config.executable)?;
        Ok(path)
    }

    fn set(&self, change: impl FnOnce(&mut InstallStatus)) {
        if let Ok(mut current) = self.inner.current.lock() {
            let status = current.get_or_insert_with(|| {
                InstallStatus::new(Stage::Idle, &self.inner.config.running_version)
            });
            change(status);
            status.updated_at = Utc::now();
        }
    }

    fn clear(&self) {
        if let Ok(mut current) = self.inner.current.lock() {
            *current = None;
        }
    }
}

/// The mode of the running executable (at least owner read/execute) for the new one.
pub fn set_executable(path: &std::path::Path, like: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(like)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o755)
        | 0o500;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(UpdateError::io("make the download executable"))
}

/// Runs `path --version` (30 s at most) and checks that it prints `version`: the new
/// executable runs on this machine and is the release it claims to be.
pub async fn trial_run(path: &std::path::Path, version: &semver::Version) -> Result<()> {
    let mut attempt = 0;
    let output = loop {
        attempt += 1;
        let run = tokio::process::Command::new(path)
            .arg("--version")
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Err(_) => {
                return Err(UpdateError::TrialRun(
                    "`--version` did not finish in 30 s".into(),
                ))
            }
            // Another thread's child may briefly hold the file open for writing (inherited
            // across fork before exec): try again.
            Ok(Err(e)) if e.raw_os_error() == Some(26) && attempt < 10 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(UpdateError::TrialRun(format!("it cannot be run here: {e}"))),
            Ok(Ok(output)) => break output,
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(UpdateError::TrialRun(format!(
            "`--version` exited with {}",
            output.status
        )));
    }
    let printed = stdout.split_whitespace().any(|word| {
        word.trim_start_matches('v')
            .parse::<semver::Version>()
            .is_ok_and(|v| v == *version)
    });
    if !printed {
        return Err(UpdateError::TrialRun(format!(
            "`--version` printed `{}`, not version {version}",
            stdout.trim()
        )));
    }
    Ok(())
}

fn status_of_result(last: LastResult, running: &semver::Version) -> InstallStatus {
    let mut status = InstallStatus::new(
        match last.outcome {
            Outcome::Installed => Stage::Installed,
            Outcome::RolledBack => Stage::RolledBack,
            Outcome::Failed => Stage::Failed,
        },
        running,
    );
    status.percent = 100;
    status.error = last.reason;
    status.target_version = Some(last.to_version);
    status.backup_id = last.backup_id;
    status.restore_of = last.restore_of;
    status.updated_at = last.finished_at;
    status
}

/// Name prefix of an artifact being downloaded beside the executable.
const DOWNLOAD_PREFIX: &str = ".imix-update-";

/// Removes download files of earlier installs that were killed before they finished; a file
/// that cannot be removed is logged and left (the new download uses another name).
fn remove_stale_downloads(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_stale = entry
            .file_name()
            .to_string_lossy()
            .starts_with(DOWNLOAD_PREFIX)
            && entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed an unfinished update download")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an unfinished update download")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_left_by_a_killed_install_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".imix-update-Ab12cd");
        std::fs::write(&stale, b"half an executable").unwrap();
        let executable = dir.path().join("imix-server");
        std::fs::write(&executable, b"the running one").unwrap();
        let previous = dir.path().join("imix-server.previous");
        std::fs::write(&previous, b"the one before").unwrap();
        remove_stale_downloads(dir.path());
        assert!(!stale.exists());
        assert!(executable.exists() && previous.exists());
    }
}
