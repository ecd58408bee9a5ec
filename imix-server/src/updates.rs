//! Updates wired to the server: the [`Updates`] service over the HTTP update server, the
//! store's platform settings (newest accepted version) and the backups service (pre-update
//! backup); the restart mechanism; and what a start does about a pending update (see
//! `imix_update::update::probation` and `docs/updates.md`).

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imix_update::{
    backup::{BackupError, BackupKind, Backups, Manifest, PendingRestore, Progress},
    update::{
        probation::{self, StartAction},
        BackupRelease, DataSnapshots, HttpSource, ReleaseSource, Restarter, RestoreData,
        SettingsAcceptedVersions, UpdateError, Updates, UpdatesConfig, RESTART_EXIT_CODE,
    },
};

use crate::{config::Config, storage::Storage, ServerError};

/// How the server restarts after an update (`IMIX_UPDATE_RESTART`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// Exit with code 75 ([`RESTART_EXIT_CODE`]); the supervisor (systemd, Docker
    /// `restart: on-failure`, …) starts the executable again. The default.
    Exit,
    /// Re-execute the executable in the same process (same arguments and environment):
    /// for running without a supervisor. A version that crashes is then not restarted by
    /// anyone, so crash-loop rollback needs a supervisor.
    Exec,
}

impl std::str::FromStr for RestartMode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "exit" => Ok(Self::Exit),
            "exec" => Ok(Self::Exec),
            _ => Err(()),
        }
    }
}

/// The restart asked for by an install or a rollback, read by `main` once the server has
/// stopped. Process-wide: there is one executable to restart.
static REQUESTED: Mutex<Option<(RestartMode, PathBuf)>> = Mutex::new(None);

/// Restarts the server: a graceful stop (the server's shutdown future completes), then
/// `main` exits or re-executes ([`restart_if_requested`]).
#[derive(Debug)]
pub struct ServerRestarter {
    mode: RestartMode,
    /// The executable to re-execute (`exec` mode): the path updates replace.
    executable: PathBuf,
    stop: Arc<tokio::sync::Notify>,
}

impl ServerRestarter {
    /// A restarter with the configured mode, restarting `executable`.
    pub fn new(mode: RestartMode, executable: PathBuf) -> Self {
        Self {
            mode,
            executable,
            stop: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Completes when a restart was asked for: the server stops serving.
    pub async fn requested(&self) {
        self.stop.notified().await;
    }
}

impl Restarter for ServerRestarter {
    fn restart(&self) {
        if let Ok(mut slot) = REQUESTED.lock() {
            *slot = Some((self.mode, self.executable.clone()));
        }
        // `notify_one` keeps a permit: a restart asked before the server waits is not lost.
        self.stop.notify_one();
    }

    fn restart_now(&self) {
        tracing::warn!(mode = ?self.mode, "restarting now");
        match self.mode {
            RestartMode::Exit => std::process::exit(i32::from(RESTART_EXIT_CODE)),
            RestartMode::Exec => {
                let e = re_exec(&self.executable);
                tracing::error!(error = %e, "cannot re-execute; exiting for the supervisor");
                std::process::exit(i32::from(RESTART_EXIT_CODE))
            }
        }
    }
}

/// Replaces this process with `executable` (the path updates replace, which names the new
/// version after a swap), with the same arguments; only returns on failure.
fn re_exec(executable: &std::path::Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(executable)
        .args(std::env::args_os().skip(1))
        .exec()
}

/// For `main`, once the server has stopped: if an update asked for a restart, exits with
/// [`RESTART_EXIT_CODE`] or re-executes, per `IMIX_UPDATE_RESTART`. `None`: no restart was
/// asked for.
pub fn restart_if_requested() -> Option<ExitCode> {
    let (mode, executable) = REQUESTED.lock().ok().and_then(|m| m.clone())?;
    if mode == RestartMode::Exec {
        let e = re_exec(&executable);
        tracing::error!(error = %e, "cannot re-execute; exiting for the supervisor");
    }
    Some(ExitCode::from(RESTART_EXIT_CODE))
}

/// The pre-update backup, through the backups service.
struct BackupSnapshots(Backups);

#[async_trait]
impl DataSnapshots for BackupSnapshots {
    async fn snapshot(&self) -> imix_update::update::Result<String> {
        Ok(self
            .0
            .create(BackupKind::PreUpdate, &Progress::default())
            .await?
            .id)
    }

    async fn restore(&self, id: &str) -> imix_update::update::Result<()> {
        self.0.restore(id, &Progress::default()).await?;
        Ok(())
    }
}

/// Updates as the server holds them.
#[derive(Clone)]
pub struct ServerUpdates {
    /// Check and install.
    pub service: Updates,
    /// Restarts the server.
    pub restarter: Arc<ServerRestarter>,
    /// When this process is the new version on probation: the deadline of its health check.
    pub probation: Option<DateTime<Utc>>,
}

/// The running version.
pub fn running_version() -> semver::Version {
    env!("CARGO_PKG_VERSION")
        .parse()
        .unwrap_or_else(|_| semver::Version::new(0, 0, 0))
}

/// Where the marker and the last result live: `$IMIX_DATA_DIR/update`.
pub fn state_dir(config: &Config) -> PathBuf {
    config.data_dir.join("update")
}

/// The executable an update replaces.
fn executable(config: &Config) -> Result<PathBuf, ServerError> {
    match &config.update_executable {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe().map_err(|source| ServerError::Io {
            context: "cannot find the running executable (set IMIX_UPDATE_EXECUTABLE)".into(),
            source,
        }),
    }
}

/// First thing at start: what a pending update asks of this process. The new version on
/// probation gets its watchdog here (before anything that could hang); a process that must
/// restart into the executable just put back gets [`ServerError::RollbackRestart`] after
/// the restart was requested.
pub fn at_start(config: &Config) -> Result<(StartAction, Arc<ServerRestarter>), ServerError> {
    let restarter = Arc::new(ServerRestarter::new(
        config.update_restart,
        executable(config)?,
    ));
    let dir = state_dir(config);
    let pending = probation::read_marker(&dir)?;
    let action = probation::at_start(&dir, &running_version())?;
    forget_restore_at_start(config, pending.as_ref(), &action)?;
    match &action {
        StartAction::Probation { deadline } => {
            tracing::warn!(%deadline, "this version was just installed: on probation until its health check passes");
            let watchdog = restarter.clone();
            probation::spawn_watchdog(
                dir,
                running_version(),
                *deadline,
                Box::new(move || watchdog.restart_now()),
            )
            .map_err(|source| ServerError::Io {
                context: "cannot start the update watchdog".into(),
                source,
            })?;
        }
        StartAction::Restart { reason } => {
            tracing::error!(
                reason,
                "the update is rolled back; restarting into the previous version"
            );
            restarter.restart();
            return Err(ServerError::RollbackRestart {
                reason: reason.clone(),
            });
        }
        StartAction::Normal | StartAction::RestoreData { .. } => {}
    }
    Ok((action, restarter))
}

/// The backups' restore marker ("restore backup X before serving") is for the version a
/// restore of another version restarts into. This version drops it when it starts instead:
/// after a rollback (it puts the pre-update or pre-restore data back anyway, so completing
/// that restore first would be wasted or, for data of another schema, wrong), and when a
/// restore of another version was interrupted before its executable ran (nothing changed:
/// the data stays as it is).
fn forget_restore_at_start(
    config: &Config,
    pending: Option<&probation::Marker>,
    action: &StartAction,
) -> Result<(), ServerError> {
    let dir = config.data_dir.join("backups");
    let forget = match action {
        StartAction::RestoreData { .. } => true,
        StartAction::Normal => pending.is_some_and(|m| {
            m.restore_of.is_some()
                && m.from_version == running_version()
                && imix_update::backup::restore_at_start(&dir)
                    .ok()
                    .flatten()
                    .is_some_and(|named| Some(&named) == m.restore_of.as_ref())
        }),
        StartAction::Probation { .. } | StartAction::Restart { .. } => false,
    };
    if forget {
        if let Some(backup) = imix_update::backup::drop_restore_at_start(&dir)? {
            tracing::warn!(backup, "the restore left for the new version is dropped");
        }
    }
    Ok(())
}

/// In the version a restore of another version restarted into (on probation): the backup
/// it was to restore at start could not be restored, so this version must not serve.
/// Rolls back at once (previous executable, then the pre-restore data in that version)
/// instead of waiting for the health timeout, and asks for the restart; answers the error
/// that stops this start. Not on probation: `None` (the caller fails as before).
pub fn roll_back_failed_restore(
    config: &Config,
    action: &StartAction,
    restarter: &ServerRestarter,
    error: &BackupError,
) -> Option<ServerError> {
    let StartAction::Probation { .. } = action else {
        return None;
    };
    let reason = format!(
        "version {} could not restore the backup at start: {error}",
        running_version()
    );
    match probation::roll_back(&state_dir(config), &running_version(), &reason) {
        Ok(true) => {
            tracing::error!(reason, "rolling back to the previous version");
            restarter.restart();
            Some(ServerError::RollbackRestart { reason })
        }
        Ok(false) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot roll back after a failed restore");
            None
        }
    }
}

/// How a backup is restored, decided by [`plan_restore`].
#[derive(Debug)]
pub enum RestorePlan {
    /// This version restores the data itself ([`Backups::restore`]): a backup of this
    /// version, or of another one whose schema this version can read (migrated forward)
    /// while its executable cannot be used here (none, another target).
    Here,
    /// A backup of another version with an executable that runs here: restored through
    /// [`Updates::install_from_backup`] (its executable, then its data at its start).
    OtherVersion(BackupRelease),
}

/// Decides how backup `id` is restored; refuses (nothing changed) a backup of another
/// version whose executable cannot be used here and whose schema is newer than this one.
/// For another version the archive is verified as a whole first, then its executable is
/// copied beside the executable updates replace, checked against the archive's SHA-256
/// and run once (`--version` must print the backup's version).
pub async fn plan_restore(
    config: &Config,
    backups: &Backups,
    id: &str,
) -> Result<RestorePlan, ServerError> {
    let info = backups.store().get(id)?;
    if info.app_version == running_version().to_string() {
        return Ok(RestorePlan::Here);
    }
    let manifest = backups.verify(id).await?;
    let why = match usable_executable(config, backups, id, &manifest).await? {
        Ok(release) => return Ok(RestorePlan::OtherVersion(release)),
        Err(why) => why,
    };
    match backups.check_schema(&manifest).await {
        Ok(()) => {
            tracing::info!(backup = id, version = %manifest.app_version, why,
                "the backup's executable cannot be used; its data is restored by this version");
            Ok(RestorePlan::Here)
        }
        Err(BackupError::Unsupported(message)) => Err(BackupError::Unsupported(format!(
            "{message}; its own executable cannot be put back either: {why}"
        ))
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The backup's executable, ready to be put in place, or why it cannot be used here.
async fn usable_executable(
    config: &Config,
    backups: &Backups,
    id: &str,
    manifest: &Manifest,
) -> Result<Result<BackupRelease, String>, ServerError> {
    let Ok(version) = manifest.app_version.parse::<semver::Version>() else {
        return Ok(Err(format!(
            "its version `{}` is not a version",
            manifest.app_version
        )));
    };
    if manifest.executable.is_none() {
        return Ok(Err(
            "the archive holds no executable (it was made with IMIX_BACKUP_INCLUDE_EXECUTABLE=false)"
                .into(),
        ));
    }
    let target = imix_update::update::TARGET;
    if let Some(theirs) = manifest.target.as_deref().filter(|t| *t != target) {
        return Ok(Err(format!(
            "its executable is for {theirs}, this server runs on {target}"
        )));
    }
    let exe = executable(config)?;
    let dir = exe
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let archive = backups.store().archive_path(id)?;
    let m = manifest.clone();
    let temp = tokio::task::spawn_blocking(move || {
        // The prefix of update downloads: a copy left by a kill -9 is removed by the next
        // install like an unfinished download.
        imix_update::backup::extract_executable(&archive, &m, &dir, ".imix-update-")
    })
    .await
    .map_err(|e| BackupError::Io {
        action: "copy the backup's executable",
        source: std::io::Error::other(e),
    })??;
    if let Err(e) = imix_update::update::service::set_executable(&temp, &exe) {
        return Ok(Err(e.to_string()));
    }
    if let Err(e) = imix_update::update::service::trial_run(&temp, &version).await {
        return Ok(Err(e.to_string()));
    }
    Ok(Ok(BackupRelease {
        version,
        executable: temp,
        backup_id: id.to_owned(),
        // The new version restores the archive before it can answer its health check:
        // a minute more, and a second per 500 records (restores run at ~3,000 a second).
        extra_time: std::time::Duration::from_secs(60 + manifest.total_records() / 500),
    }))
}

/// The data side of a restore of another version: the pre-restore backup and the
/// backups' restore marker, through the backups service.
pub struct ServerRestoreData {
    backups: Backups,
    backup: String,
    pending: Option<PendingRestore>,
}

impl ServerRestoreData {
    /// For restoring backup `id` of `backups`.
    pub fn new(backups: Backups, id: &str) -> Self {
        Self {
            backups,
            backup: id.to_owned(),
            pending: None,
        }
    }
}

#[async_trait]
impl RestoreData for ServerRestoreData {
    async fn backup_first(&mut self) -> imix_update::update::Result<String> {
        let pending = self.backups.prepare_restore_at_start(&self.backup).await?;
        let id = pending.pre_restore().id.clone();
        self.pending = Some(pending);
        Ok(id)
    }

    fn restore_at_next_start(&mut self) -> imix_update::update::Result<()> {
        match &mut self.pending {
            Some(pending) => Ok(pending.schedule()?),
            None => Err(UpdateError::Io {
                action: "leave the restore for the next start",
                source: std::io::Error::other("no pre-restore backup was made"),
            }),
        }
    }

    fn cancel(&mut self) {
        if let Some(pending) = &mut self.pending {
            if let Err(e) = pending.cancel() {
                tracing::error!(error = %e, "cannot remove the restore marker");
            }
        }
    }
}

/// After a rollback, in the old version, before serving: puts the pre-update data back and
/// records the outcome. `true` when data was restored (derived data must be rebuilt).
pub async fn finish_rollback(
    config: &Config,
    action: &StartAction,
    backups: &Backups,
) -> Result<bool, ServerError> {
    let StartAction::RestoreData { backup_id, reason } = action else {
        return Ok(false);
    };
    tracing::warn!(backup = %backup_id, reason, "putting the pre-update data back");
    backups.restore(backup_id, &Progress::default()).await?;
    probation::finish_rollback(&state_dir(config))?;
    Ok(true)
}

/// The update service for the server.
pub fn service(
    config: &Config,
    storage: &Storage,
    backups: &Backups,
    action: &StartAction,
    restarter: Arc<ServerRestarter>,
) -> Result<ServerUpdates, ServerError> {
    let source = config
        .update_server_url
        .clone()
        .map(|url| Arc::new(HttpSource::new(url)) as Arc<dyn ReleaseSource>);
    let service = Updates::new(
        UpdatesConfig {
            public_key: config.update_public_key,
            running_version: running_version(),
            target: imix_update::update::TARGET.to_owned(),
            executable: executable(config)?,
            state_dir: state_dir(config),
            health_timeout: config.update_health_timeout,
        },
        source,
        Arc::new(SettingsAcceptedVersions::new(
            storage.store.settings.clone(),
        )),
        Arc::new(BackupSnapshots(backups.clone())),
        restarter.clone() as Arc<dyn Restarter>,
    );
    Ok(ServerUpdates {
        service,
        restarter,
        probation: match action {
            StartAction::Probation { deadline } => Some(*deadline),
            _ => None,
        },
    })
}

/// The update service for `imix-server backup restore` (no server runs: the restart it
/// asks for is the operator's next start).
pub fn cli_updates(
    config: &Config,
    storage: &Storage,
    backups: &Backups,
) -> Result<ServerUpdates, ServerError> {
    let restarter = Arc::new(ServerRestarter::new(
        config.update_restart,
        executable(config)?,
    ));
    service(config, storage, backups, &StartAction::Normal, restarter)
}

/// Once the server listens on `addr`: if this is the new version on probation, confirms the
/// update as soon as its own `/health` answers 200 (the watchdog rolls back otherwise).
pub fn confirm_when_healthy(
    config: &Config,
    updates: &ServerUpdates,
    addr: Option<std::net::SocketAddr>,
) {
    let (Some(deadline), Some(mut addr)) = (updates.probation, addr) else {
        return;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let Ok(url) = url::Url::parse(&format!("http://{addr}/health")) else {
        return;
    };
    let dir = state_dir(config);
    tokio::spawn(async move {
        let check = probation::HttpHealth::new(url);
        let confirmed = probation::confirm_when_healthy(
            &dir,
            &running_version(),
            &check,
            deadline,
            std::time::Duration::from_millis(500),
        )
        .await;
        if !confirmed {
            tracing::error!(
                "this version did not become healthy in time; the watchdog rolls it back"
            );
        }
    });
}
