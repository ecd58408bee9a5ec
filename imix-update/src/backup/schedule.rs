//! Scheduled backups: off by default; when on, one `scheduled` backup a day at a time of
//! day in **UTC**, followed by the retention of its kind (`IMIX_BACKUP_KEEP`).
//!
//! The schedule is a platform settings document (key [`SETTINGS_KEY`]) in the store, so
//! every replica sees the same one and it is in every backup. Beside the time it holds
//! when the next run is due; a run claims its day by moving that forward with an
//! optimistic-concurrency update *before* the backup is made, so a restart, or a second
//! replica, never runs the same day twice. A run that finds the backups busy (a manual
//! backup or a restore) gives its claim back and tries again at the next tick.
//!
//! A server that was stopped over the scheduled time runs the missed backup once when it
//! starts, then goes back to the daily time. The clock is injected ([`Clock`]), so the
//! logic is tested without waiting.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, NaiveTime, Utc};
use imix_core::{
    model::{SettingsDoc, SettingsScope},
    store::SettingsRepository,
};
use serde::{Deserialize, Serialize};

use super::{BackupError, BackupInfo, BackupKind, Backups, Progress, Result};

/// The platform settings key of the schedule.
pub const SETTINGS_KEY: &str = "backup_schedule";

/// How often the running scheduler looks at the clock at most (it sleeps less when the
/// next run is nearer).
const TICK: Duration = Duration::from_secs(60);

/// Tells the time. The server uses the system clock; tests move a fake one.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        imix_core::now()
    }
}

/// The schedule as stored (and shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Whether scheduled backups are made. Off by default.
    pub enabled: bool,
    /// The time of day, `HH:MM` in UTC.
    pub time: String,
    /// When the next scheduled backup is due (`None` while disabled).
    #[serde(default)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// When the last scheduled run started.
    #[serde(default)]
    pub last_run_at: Option<DateTime<Utc>>,
    /// The backup the last successful run made.
    #[serde(default)]
    pub last_backup_id: Option<String>,
    /// Why the last run failed (cleared by a successful one).
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            enabled: false,
            time: "02:00".to_owned(),
            next_run_at: None,
            last_run_at: None,
            last_backup_id: None,
            last_error: None,
        }
    }
}

/// Parses `HH:MM` (00:00 to 23:59); the error names the field `time`.
pub fn parse_time(text: &str) -> Result<NaiveTime> {
    let bad = || {
        BackupError::Store(imix_core::Error::invalid(
            "time",
            format!("{text:?} is not a time of day as HH:MM (00:00 to 23:59, UTC)"),
        ))
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

/// The first `time` (UTC) strictly after `now`.
pub fn next_occurrence(time: NaiveTime, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive().and_time(time).and_utc();
    if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

/// Reads and writes the schedule and makes the scheduled backups. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    backups: Backups,
    settings: Arc<dyn SettingsRepository>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// The scheduler of `backups`, its schedule in `settings`, reading `clock`.
    pub fn new(
        backups: Backups,
        settings: Arc<dyn SettingsRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            backups,
            settings,
            clock,
        }
    }

    async fn load(&self) -> Result<(Option<SettingsDoc>, Schedule)> {
        let doc = self
            .settings
            .get(SettingsScope::Platform, SETTINGS_KEY)
            .await?;
        let schedule = match &doc {
            Some(doc) => match serde_json::from_value::<Schedule>(doc.value.clone()) {
                Ok(s) => s,
                Err(e) => {
                    // A damaged document must not stop the server: it reads as "off",
                    // and the next write replaces it.
                    tracing::error!(error = %e, "the backup schedule setting is unreadable; treating it as off");
                    Schedule::default()
                }
            },
            None => Schedule::default(),
        };
        Ok((doc, schedule))
    }

    /// Writes `schedule` over `doc` (or as a new document); `Ok(None)` when someone else
    /// changed it first.
    async fn save(
        &self,
        doc: Option<SettingsDoc>,
        schedule: &Schedule,
    ) -> Result<Option<Schedule>> {
        let value = serde_json::to_value(schedule)
            .map_err(|e| BackupError::Corrupt(format!("cannot encode the schedule: {e}")))?;
        let written = match doc {
            Some(mut doc) => {
                doc.value = value;
                doc.updated_at = self.clock.now();
                self.settings.update(&doc).await.map(|_| ())
            }
            None => {
                self.settings
                    .insert(&SettingsDoc::new(
                        SettingsScope::Platform,
                        SETTINGS_KEY,
                        value,
                    ))
                    .await
            }
        };
        match written {
            Ok(()) => Ok(Some(schedule.clone())),
            Err(imix_core::Error::VersionConflict { .. } | imix_core::Error::Duplicate { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The schedule (off at 02:00 until set).
    pub async fn get(&self) -> Result<Schedule> {
        Ok(self.load().await?.1)
    }

    /// Turns the schedule on or off and/or sets its time (`HH:MM`, UTC; a bad time is
    /// refused naming `time`, and nothing changes). The next run is the first such time
    /// after now: turning it on at 15:00 for 02:00 makes the first backup tomorrow.
    pub async fn set(&self, enabled: Option<bool>, time: Option<&str>) -> Result<Schedule> {
        let parsed = time.map(parse_time).transpose()?;
        // Another writer (the scheduler claiming a run) may win the race: read again.
        for _ in 0..10 {
            let (doc, mut schedule) = self.load().await?;
            if let Some(enabled) = enabled {
                schedule.enabled = enabled;
            }
            if let Some(t) = parsed {
                schedule.time = t.format("%H:%M").to_string();
            }
            schedule.next_run_at = if schedule.enabled {
                let t = parse_time(&schedule.time)?;
                Some(next_occurrence(t, self.clock.now()))
            } else {
                None
            };
            if let Some(saved) = self.save(doc, &schedule).await? {
                return Ok(saved);
            }
        }
        Err(BackupError::Busy)
    }

    /// Makes the scheduled backup if one is due (and claims it first, so that no one else
    /// makes it too); `Ok(None)` when none is due, when another replica claimed it, or
    /// when the backups are busy (it is given back, to be tried at the next tick).
    pub async fn tick(&self) -> Result<Option<BackupInfo>> {
        let (doc, schedule) = self.load().await?;
        let now = self.clock.now();
        let (true, Some(due)) = (schedule.enabled, schedule.next_run_at) else {
            return Ok(None);
        };
        if now < due || self.backups.is_restoring() {
            return Ok(None);
        }
        let time = parse_time(&schedule.time)?;
        let mut claimed = schedule.clone();
        claimed.next_run_at = Some(next_occurrence(time, now));
        claimed.last_run_at = Some(now);
        let Some(claimed) = self.save(doc, &claimed).await? else {
            return Ok(None);
        };
        tracing::info!(due = %due, "making the scheduled backup");
        let made = self
            .backups
            .create(BackupKind::Scheduled, &Progress::default())
            .await;
        // Record the outcome (or give the claim back when busy); a concurrent change of
        // the schedule wins over this bookkeeping.
        let (doc, mut after) = self.load().await?;
        if after.last_run_at != claimed.last_run_at {
            return made.map(Some);
        }
        match &made {
            Ok(info) => {
                after.last_backup_id = Some(info.id.clone());
                after.last_error = None;
            }
            Err(BackupError::Busy) => {
                after.next_run_at = Some(due);
                after.last_run_at = schedule.last_run_at;
            }
            Err(e) => {
                tracing::error!(error = %e, "the scheduled backup failed");
                after.last_error = Some(e.to_string());
            }
        }
        self.save(doc, &after).await?;
        match made {
            Ok(info) => Ok(Some(info)),
            Err(BackupError::Busy) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ticks until `stop` completes: at least once a minute, and at the due time.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            if let Err(e) = self.tick().await {
                tracing::error!(error = %e, "scheduled backups: tick failed");
            }
            let wait = match self.get().await.ok().and_then(|s| s.next_run_at) {
                Some(due) => (due - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .clamp(Duration::from_secs(1), TICK),
                None => TICK,
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
