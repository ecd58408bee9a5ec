//! The pending-update marker, and what each start does with it.
//!
//! Files in the state directory (`$IMIX_DATA_DIR/update/`):
//!
//! - `pending.json`, the [`Marker`]: written (and flushed) before the executable is
//!   replaced, removed when the outcome is known.
//! - `last-result.json`, the [`LastResult`]: the outcome of the last install (installed,
//!   rolled back and why, failed), shown by the status after the restart.
//!
//! The life of an install, from the marker's point of view:
//!
//! 1. The old version writes the marker (`swapped`, 0 attempts), replaces the executable and
//!    restarts.
//! 2. Every start of the **new** version counts an attempt first thing ([`at_start`]). Past
//!    [`MAX_START_ATTEMPTS`] (it crashed on every start), it rolls back at once. Otherwise it
//!    runs on probation: it confirms itself ([`confirm`]) once its own health endpoint
//!    answers 200, and a watchdog thread ([`spawn_watchdog`]) rolls back if that has not
//!    happened within the health timeout.
//! 3. Rolling back ([`roll_back`]) marks the marker `rolling-back` with the reason, puts
//!    `<exe>.previous` back and restarts.
//! 4. The **old** version, starting with a `rolling-back` marker, puts the pre-update backup
//!    back before serving, then records the outcome ([`finish_rollback`]).

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{swap, Result, UpdateError};

/// The marker's file name in the state directory.
pub const MARKER_FILE: &str = "pending.json";
/// The last outcome's file name in the state directory.
pub const LAST_RESULT_FILE: &str = "last-result.json";
/// How many starts the new version gets before it is rolled back without waiting for its
/// health: a version that crashes while starting is rolled back at its fourth start.
pub const MAX_START_ATTEMPTS: u32 = 3;

/// Serializes confirming and rolling back within one process (the health task and the
/// watchdog thread may both reach a decision at the deadline).
static DECIDING: Mutex<()> = Mutex::new(());

/// Where an install is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkerState {
    /// The executable was (or is about to be) replaced; the new version is on probation.
    Swapped,
    /// The previous executable was put back; the old version must put the data back.
    RollingBack,
}

/// The pending-update marker (`pending.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The version the update started from.
    pub from_version: semver::Version,
    /// The version being installed.
    pub to_version: semver::Version,
    /// The executable's path.
    pub executable: PathBuf,
    /// The pre-update backup's id.
    pub backup_id: String,
    /// Starts of the new version so far.
    pub attempts: u32,
    /// Where the install is.
    pub state: MarkerState,
    /// Why it is being rolled back.
    pub reason: Option<String>,
    /// How long the new version has to become healthy, in seconds.
    pub health_timeout_secs: u64,
    /// When the install started.
    pub started_at: DateTime<Utc>,
    /// Set when this "install" is the restore of a backup of another version: the backup
    /// the new version restores at its first start (its marker is in the backups
    /// directory), before it serves. Absent for an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_of: Option<String>,
}

/// How the last install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The new version started and answered its health check: it runs.
    Installed,
    /// The new version did not become healthy; the previous executable and the pre-update
    /// data were put back.
    RolledBack,
    /// The install stopped before the executable was replaced; nothing changed.
    Failed,
}

/// The outcome of the last install (`last-result.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The version it started from.
    pub from_version: String,
    /// The version it tried to install.
    pub to_version: String,
    /// Why it was rolled back or failed.
    pub reason: Option<String>,
    /// The pre-update backup.
    pub backup_id: Option<String>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// For the restore of a backup of another version: that backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_of: Option<String>,
}

/// What a start must do about a pending update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAction {
    /// Nothing pending: start normally.
    Normal,
    /// This is the new version on probation: serve, confirm once healthy, roll back at
    /// `deadline` otherwise.
    Probation {
        /// When the watchdog rolls back.
        deadline: DateTime<Utc>,
    },
    /// This is the old version after a rollback: put backup `backup_id` back before serving,
    /// then call [`finish_rollback`].
    RestoreData {
        /// The pre-update backup.
        backup_id: String,
        /// Why the update was rolled back.
        reason: String,
    },
    /// The executable at the path is not this version any more (it was just put back):
    /// restart into it without serving.
    Restart {
        /// Why.
        reason: String,
    },
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> UpdateError {
    UpdateError::io(action)
}

/// Writes `value` as JSON to `dir/name` atomically (temporary file, fsync, rename, fsync
/// of the directory).
fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io("create the update state directory"))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".imix-update-")
        .tempfile_in(dir)
        .map_err(io("write the update state"))?;
    serde_json::to_writer_pretty(temp.as_file_mut(), value).map_err(|e| UpdateError::Io {
        action: "write the update state",
        source: e.into(),
    })?;
    temp.as_file()
        .sync_all()
        .map_err(io("write the update state"))?;
    temp.persist(dir.join(name)).map_err(|e| UpdateError::Io {
        action: "write the update state",
        source: e.error,
    })?;
    swap::sync_dir(dir).map_err(io("write the update state"))
}

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| UpdateError::Io {
                action: "read the update state",
                source: e.into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read the update state")(e)),
    }
}

fn remove(dir: &Path, name: &str) -> Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => swap::sync_dir(dir).map_err(io("remove the update marker")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove the update marker")(e)),
    }
}

/// The pending marker, if any.
pub fn read_marker(dir: &Path) -> Result<Option<Marker>> {
    read_json(dir, MARKER_FILE)
}

/// Writes the pending marker (before the executable is replaced).
pub fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    write_json(dir, MARKER_FILE, marker)
}

/// The outcome of the last install, if any.
pub fn last_result(dir: &Path) -> Result<Option<LastResult>> {
    read_json(dir, LAST_RESULT_FILE)
}

/// Records the outcome of an install.
pub fn write_last_result(dir: &Path, result: &LastResult) -> Result<()> {
    write_json(dir, LAST_RESULT_FILE, result)
}

fn result_of(marker: &Marker, outcome: Outcome, reason: Option<String>) -> LastResult {
    LastResult {
        outcome,
        from_version: marker.from_version.to_string(),
        to_version: marker.to_version.to_string(),
        reason,
        backup_id: Some(marker.backup_id.clone()),
        finished_at: Utc::now(),
        restore_of: marker.restore_of.clone(),
    }
}

/// Decides, first thing at start, what the pending update (if any) asks of this process,
/// and counts this start if it is the new version's.
pub fn at_start(dir: &Path, running: &semver::Version) -> Result<StartAction> {
    let Some(mut marker) = read_marker(dir)? else {
        return Ok(StartAction::Normal);
    };
    let _deciding = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
    match marker.state {
        MarkerState::Swapped if *running == marker.to_version => {
            marker.attempts += 1;
            write_marker(dir, &marker)?;
            if marker.attempts > MAX_START_ATTEMPTS {
                let reason = format!(
                    "version {} did not stay up: {} starts without becoming healthy",
                    marker.to_version,
                    marker.attempts - 1
                );
                roll_back_locked(dir, marker, &reason)?;
                return Ok(StartAction::Restart { reason });
            }
            let timeout = chrono::Duration::seconds(
                i64::try_from(marker.health_timeout_secs).unwrap_or(i64::MAX / 1000),
            );
            Ok(StartAction::Probation {
                deadline: Utc::now() + timeout,
            })
        }
        MarkerState::Swapped if *running == marker.from_version => {
            if marker.attempts == 0 {
                // The old version started again before the new one ever ran: the install
                // was interrupted around the swap. The data was not touched by the new
                // version; the executable is the old one (this process).
                write_last_result(
                    dir,
                    &result_of(
                        &marker,
                        Outcome::Failed,
                        Some("the install was interrupted before the new version started; nothing changed".into()),
                    ),
                )?;
                remove(dir, MARKER_FILE)?;
                Ok(StartAction::Normal)
            } else {
                // Someone put the old executable back by hand after the new one ran: its
                // data may have been changed by the new version, so put it back too.
                let reason = format!(
                    "version {} was replaced by {} before it confirmed its health",
                    marker.to_version, marker.from_version
                );
                marker.state = MarkerState::RollingBack;
                marker.reason = Some(reason.clone());
                write_marker(dir, &marker)?;
                Ok(StartAction::RestoreData {
                    backup_id: marker.backup_id,
                    reason,
                })
            }
        }
        MarkerState::RollingBack if *running == marker.from_version => {
            Ok(StartAction::RestoreData {
                backup_id: marker.backup_id.clone(),
                reason: marker
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the update was rolled back".into()),
            })
        }
        MarkerState::RollingBack => {
            // The previous executable was not (or not durably) put back: do it again.
            let reason = marker
                .reason
                .clone()
                .unwrap_or_else(|| "the update was rolled back".into());
            roll_back_locked(dir, marker, &reason)?;
            Ok(StartAction::Restart { reason })
        }
        MarkerState::Swapped => {
            // Neither version: the executable was replaced by other means. The marker
            // cannot be acted on; keep its story and start normally.
            tracing::warn!(running = %running, from = %marker.from_version, to = %marker.to_version,
                "a pending update marker names other versions; dropping it");
            write_last_result(
                dir,
                &result_of(
                    &marker,
                    Outcome::Failed,
                    Some(format!(
                        "version {running} started instead of {}; the update was abandoned",
                        marker.to_version
                    )),
                ),
            )?;
            remove(dir, MARKER_FILE)?;
            Ok(StartAction::Normal)
        }
    }
}

/// The new version is healthy: the update is done.
pub fn confirm(dir: &Path, running: &semver::Version) -> Result<bool> {
    let _deciding = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(marker) = read_marker(dir)? else {
        return Ok(false);
    };
    if marker.state != MarkerState::Swapped || marker.to_version != *running {
        return Ok(false);
    }
    write_last_result(dir, &result_of(&marker, Outcome::Installed, None))?;
    remove(dir, MARKER_FILE)?;
    tracing::info!(version = %running, "update confirmed: the new version is healthy");
    Ok(true)
}

/// Rolls the pending update back: marks the marker `rolling-back` with `reason`, then puts
/// `<exe>.previous` back. The caller restarts afterwards. Does nothing (`false`) when no
/// update is on probation for `running`.
pub fn roll_back(dir: &Path, running: &semver::Version, reason: &str) -> Result<bool> {
    let _deciding = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(marker) = read_marker(dir)? else {
        return Ok(false);
    };
    if marker.state != MarkerState::Swapped || marker.to_version != *running {
        return Ok(false);
    }
    roll_back_locked(dir, marker, reason)?;
    Ok(true)
}

fn roll_back_locked(dir: &Path, mut marker: Marker, reason: &str) -> Result<()> {
    tracing::error!(version = %marker.to_version, reason, "rolling the update back");
    marker.state = MarkerState::RollingBack;
    marker.reason = Some(reason.to_owned());
    write_marker(dir, &marker)?;
    swap::restore_previous(&marker.executable).map_err(io("put the previous executable back"))
}

/// The old version put the pre-update data back: records the outcome and removes the marker.
pub fn finish_rollback(dir: &Path) -> Result<()> {
    let Some(marker) = read_marker(dir)? else {
        return Ok(());
    };
    let reason = marker.reason.clone();
    write_last_result(dir, &result_of(&marker, Outcome::RolledBack, reason))?;
    remove(dir, MARKER_FILE)
}

/// Whether the new version answers its health check.
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync {
    /// One check: `true` when healthy.
    async fn healthy(&self) -> bool;
}

/// Health over HTTP: `GET url` answers 200.
#[derive(Debug, Clone)]
pub struct HttpHealth {
    client: reqwest::Client,
    url: url::Url,
}

impl HttpHealth {
    /// Checks `url` (the server's own `/health`).
    pub fn new(url: url::Url) -> Self {
        Self {
            client: reqwest::Client::new(),
            url,
        }
    }
}

#[async_trait::async_trait]
impl HealthCheck for HttpHealth {
    async fn healthy(&self) -> bool {
        self.client
            .get(self.url.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// Probation, async half: checks health every `every` until it passes (then confirms and
/// answers `true`) or `deadline` passes (answers `false`; the watchdog rolls back).
pub async fn confirm_when_healthy(
    dir: &Path,
    running: &semver::Version,
    check: &dyn HealthCheck,
    deadline: DateTime<Utc>,
    every: Duration,
) -> bool {
    while Utc::now() < deadline {
        if check.healthy().await {
            return match confirm(dir, running) {
                Ok(confirmed) => confirmed,
                Err(e) => {
                    tracing::error!(error = %e, "cannot confirm the update");
                    false
                }
            };
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// Probation, watchdog half: an OS thread (independent of the async runtime, so a new
/// version whose runtime is stuck is still rolled back) that, at `deadline`, rolls the
/// update back if it is still unconfirmed and then calls `restart` (which should not
/// return: exit or re-exec).
pub fn spawn_watchdog(
    dir: PathBuf,
    running: semver::Version,
    deadline: DateTime<Utc>,
    restart: Box<dyn FnOnce() + Send>,
) -> std::io::Result<std::thread::JoinHandle<bool>> {
    std::thread::Builder::new()
        .name("imix-update-watchdog".into())
        .spawn(move || loop {
            let pending = matches!(
                read_marker(&dir),
                Ok(Some(ref m)) if m.state == MarkerState::Swapped && m.to_version == running
            );
            if !pending {
                return false;
            }
            let left = deadline - Utc::now();
            if left <= chrono::Duration::zero() {
                let reason = format!(
                    "version {running} did not answer its health check within {} seconds",
                    read_marker(&dir)
                        .ok()
                        .flatten()
                        .map_or(0, |m| m.health_timeout_secs)
                );
                return match roll_back(&dir, &running, &reason) {
                    Ok(true) => {
                        restart();
                        true
                    }
                    Ok(false) => false,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot roll the update back");
                        false
                    }
                };
            }
            let step = left
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_millis(200));
            std::thread::sleep(step);
        })
}
