//! Scheduled backups with a fake clock (no sleeping): off by default; a bad time refused
//! naming `time`; one backup a day at the time set (UTC), never twice for the same day,
//! not even by a second scheduler over the same store (a restart, another replica); a
//! missed day made once at the next tick; retention of the `scheduled` kind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use imix_core::store::{transfer::Transfer, Store};
use imix_update::backup::{
    schedule::{Clock, Scheduler},
    BackupError, BackupKind, Backups, BackupsConfig,
};

#[derive(Clone)]
struct FakeClock(Arc<Mutex<DateTime<Utc>>>);

impl FakeClock {
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Self {
        Self(Arc::new(Mutex::new(
            Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap(),
        )))
    }
    fn set(&self, y: i32, mo: u32, d: u32, h: u32, mi: u32) {
        *self.0.lock().unwrap() = Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

async fn setup(dir: &std::path::Path, keep: usize) -> (Store, Backups) {
    let store = imix_core::store::sqlite::open(dir).await.unwrap();
    store.admin.migrate().await.unwrap();
    let backups = Backups::new(
        store.clone(),
        Transfer::new(&store),
        BackupsConfig {
            dir: dir.join("backups"),
            keep,
            app_version: "9.9.9".into(),
            executable: None,
        },
    )
    .unwrap();
    (store, backups)
}

fn scheduler(store: &Store, backups: &Backups, clock: &FakeClock) -> Scheduler {
    Scheduler::new(
        backups.clone(),
        store.settings.clone(),
        Arc::new(clock.clone()),
    )
}

fn scheduled(backups: &Backups) -> usize {
    backups
        .store()
        .list()
        .unwrap()
        .iter()
        .filter(|b| b.kind == BackupKind::Scheduled)
        .count()
}

#[tokio::test]
async fn off_by_default_and_a_bad_time_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backups) = setup(dir.path(), 10).await;
    let clock = FakeClock::at(2026, 3, 1, 1, 0);
    let s = scheduler(&store, &backups, &clock);
    let schedule = s.get().await.unwrap();
    assert!(!schedule.enabled);
    assert_eq!(schedule.next_run_at, None);
    for h in [1, 2, 3, 12, 23] {
        clock.set(2026, 3, 1, h, 0);
        assert!(s.tick().await.unwrap().is_none());
    }
    assert_eq!(scheduled(&backups), 0);
    for bad in [
        "24:00", "2:00", "02:60", "0200", "ab:cd", "", "02:00:00", "+1:00",
    ] {
        match s.set(Some(true), Some(bad)).await {
            Err(BackupError::Store(imix_core::Error::Invalid { field, .. })) => {
                assert_eq!(field, "time", "{bad}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // Nothing changed: still off.
    assert_eq!(s.get().await.unwrap(), schedule);
}

#[tokio::test]
async fn one_backup_a_day_at_the_time_set_never_twice_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backups) = setup(dir.path(), 10).await;
    // Turned on at 15:00 for 02:00: the first run is tomorrow, not at once.
    let clock = FakeClock::at(2026, 3, 1, 15, 0);
    let s = scheduler(&store, &backups, &clock);
    let set = s.set(Some(true), Some("02:00")).await.unwrap();
    assert!(set.enabled);
    assert_eq!(
        set.next_run_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 2, 2, 0, 0).unwrap())
    );
    assert!(s.tick().await.unwrap().is_none());
    clock.set(2026, 3, 2, 1, 59);
    assert!(s.tick().await.unwrap().is_none());
    assert_eq!(scheduled(&backups), 0);

    clock.set(2026, 3, 2, 2, 0);
    let made = s.tick().await.unwrap().expect("due at 02:00");
    assert_eq!(made.kind, BackupKind::Scheduled);
    assert_eq!(scheduled(&backups), 1);
    let after = s.get().await.unwrap();
    assert_eq!(after.last_backup_id.as_deref(), Some(made.id.as_str()));
    assert_eq!(
        after.next_run_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 3, 2, 0, 0).unwrap())
    );
    // Later the same day, and a "restarted" scheduler over the same store: nothing more.
    clock.set(2026, 3, 2, 2, 1);
    assert!(s.tick().await.unwrap().is_none());
    let restarted = scheduler(&store, &backups, &clock);
    clock.set(2026, 3, 2, 23, 59);
    assert!(restarted.tick().await.unwrap().is_none());
    assert_eq!(scheduled(&backups), 1);

    // The next day, one more, whichever scheduler ticks first.
    clock.set(2026, 3, 3, 2, 5);
    assert!(restarted.tick().await.unwrap().is_some());
    assert!(s.tick().await.unwrap().is_none());
    assert_eq!(scheduled(&backups), 2);

    // Turned off: nothing, even long after.
    s.set(Some(false), None).await.unwrap();
    clock.set(2026, 3, 9, 2, 0);
    assert!(s.tick().await.unwrap().is_none());
    assert_eq!(scheduled(&backups), 2);
    // The time survives turning off and on.
    assert_eq!(s.get().await.unwrap().time, "02:00");
}

#[tokio::test]
async fn a_missed_day_is_made_once_then_the_daily_time_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backups) = setup(dir.path(), 10).await;
    let clock = FakeClock::at(2026, 3, 1, 0, 0);
    let s = scheduler(&store, &backups, &clock);
    s.set(Some(true), Some("23:30")).await.unwrap();
    // The server was down for three days: one backup when it comes back, not three.
    clock.set(2026, 3, 4, 10, 0);
    assert!(s.tick().await.unwrap().is_some());
    assert!(s.tick().await.unwrap().is_none());
    assert_eq!(scheduled(&backups), 1);
    assert_eq!(
        s.get().await.unwrap().next_run_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 4, 23, 30, 0).unwrap())
    );
}

#[tokio::test]
async fn retention_keeps_the_last_scheduled_backups_and_leaves_manual_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backups) = setup(dir.path(), 2).await;
    let manual = backups
        .create(BackupKind::Manual, &Default::default())
        .await
        .unwrap();
    let clock = FakeClock::at(2026, 3, 1, 0, 0);
    let s = scheduler(&store, &backups, &clock);
    s.set(Some(true), Some("00:30")).await.unwrap();
    let mut made = Vec::new();
    for day in 1..=4 {
        clock.set(2026, 3, day, 0, 30);
        made.push(s.tick().await.unwrap().unwrap().id);
    }
    let kept: Vec<String> = backups
        .store()
        .list()
        .unwrap()
        .into_iter()
        .filter(|b| b.kind == BackupKind::Scheduled)
        .map(|b| b.id)
        .collect();
    assert_eq!(kept, vec![made[3].clone(), made[2].clone()]);
    assert!(backups.store().get(&manual.id).is_ok());
}
