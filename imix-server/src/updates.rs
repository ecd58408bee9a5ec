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
    backup::{BackupKind, Backups, Progress},
    update::{
        probation::{self, StartAction},
        DataSnapshots, HttpSource, ReleaseSource, Restarter, SettingsAcceptedVersions, Updates,
        UpdatesConfig, RESTART_EXIT_CODE,
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
    let action = probation::at_start(&dir, &running_version())?;
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
