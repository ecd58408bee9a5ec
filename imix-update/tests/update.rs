//! Updates end to end against a local update server (static files in a temp dir served by
//! a tiny poem server): every kind of bad manifest refused with its reason; an install that
//! replaces a real executable (a shell script) in a temp dir and confirms; and the
//! automatic rollbacks: unhealthy within the timeout, and crashing at every start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::Utc;
use ed25519_dalek::SigningKey;
use imix_update::update::{
    manifest::{generate_signing_key, sign, MANIFEST_FILE, SIGNATURE_FILE},
    probation::{self, HealthCheck, StartAction},
    AcceptedVersions, BackupRelease, DataSnapshots, HttpSource, Restarter, RestoreData, Stage,
    UpdateError, Updates, UpdatesConfig, TARGET,
};
use poem::{handler, web::Path as UrlPath, EndpointExt, Route, Server};
use sha2::Digest;

// ---------------------------------------------------------------- the update server

#[handler]
fn file(UrlPath(path): UrlPath<String>, root: poem::web::Data<&PathBuf>) -> poem::Response {
    if path.contains("..") {
        return poem::Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .finish();
    }
    match std::fs::read(root.join(&path)) {
        Ok(bytes) => poem::Response::builder().body(bytes),
        Err(_) => poem::Response::builder()
            .status(poem::http::StatusCode::NOT_FOUND)
            .finish(),
    }
}

/// Serves `root` over HTTP on an ephemeral port; answers its base URL.
async fn serve(root: &Path) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let app = Route::new()
        .at("/*path", poem::get(file))
        .data(root.to_path_buf());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}/").parse().unwrap()
}

/// A shell script that prints `imix-server <version>` (what `--version` prints).
fn script(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"imix-server {version}\"\n").into_bytes()
}

struct Release<'a> {
    version: &'a str,
    min_version: &'a str,
    expires_in_hours: i64,
    target: &'a str,
    artifact: Vec<u8>,
    /// What the manifest claims the SHA-256 is (default: the artifact's).
    sha256: Option<String>,
}

impl<'a> Release<'a> {
    fn new(version: &'a str) -> Self {
        Self {
            version,
            min_version: "0.1.0",
            expires_in_hours: 24,
            target: TARGET,
            artifact: script(version),
            sha256: None,
        }
    }
}

/// Writes the release's manifest (signed by `key` unless `None`) and artifact to `dir`.
fn publish(dir: &Path, key: Option<&SigningKey>, r: &Release<'_>) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("imix-server-new"), &r.artifact).unwrap();
    let sha = r
        .sha256
        .clone()
        .unwrap_or_else(|| hex::encode(sha2::Sha256::digest(&r.artifact)));
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "version": r.version,
        "released_at": Utc::now(),
        "notes": {"en": "# Better\nFixes.", "fr": "# Mieux\nCorrections."},
        "artifacts": {r.target: {"url": "imix-server-new", "size": r.artifact.len(), "sha256": sha}},
        "min_version": r.min_version,
        "expires_at": Utc::now() + chrono::Duration::hours(r.expires_in_hours),
    }))
    .unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), &manifest).unwrap();
    if let Some(key) = key {
        std::fs::write(dir.join(SIGNATURE_FILE), sign(key, r.version, &manifest)).unwrap();
    }
    manifest
}

// ---------------------------------------------------------------- fakes of the ports

#[derive(Default)]
struct MemAccepted(Mutex<Option<semver::Version>>);

#[async_trait]
impl AcceptedVersions for MemAccepted {
    async fn newest(&self) -> imix_update::update::Result<Option<semver::Version>> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn record(&self, v: &semver::Version) -> imix_update::update::Result<()> {
        let mut slot = self.0.lock().unwrap();
        if slot.as_ref().is_none_or(|s| s < v) {
            *slot = Some(v.clone());
        }
        Ok(())
    }
}

#[derive(Default)]
struct FakeSnapshots {
    made: AtomicUsize,
    restored: Mutex<Vec<String>>,
    /// When set, a snapshot waits for it (an install held in its backup step).
    gate: Option<Arc<tokio::sync::Notify>>,
}

#[async_trait]
impl DataSnapshots for FakeSnapshots {
    async fn snapshot(&self) -> imix_update::update::Result<String> {
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        let n = self.made.fetch_add(1, Ordering::SeqCst);
        Ok(format!("backup-{n}"))
    }
    async fn restore(&self, id: &str) -> imix_update::update::Result<()> {
        self.restored.lock().unwrap().push(id.to_owned());
        Ok(())
    }
}

#[derive(Default)]
struct CountingRestarter {
    graceful: AtomicUsize,
    now: AtomicUsize,
}

impl Restarter for CountingRestarter {
    fn restart(&self) {
        self.graceful.fetch_add(1, Ordering::SeqCst);
    }
    fn restart_now(&self) {
        self.now.fetch_add(1, Ordering::SeqCst);
    }
}

struct Health(bool);

#[async_trait]
impl HealthCheck for Health {
    async fn healthy(&self) -> bool {
        self.0
    }
}

struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
    base: url::Url,
    exe: PathBuf,
    state: PathBuf,
    snapshots: Arc<FakeSnapshots>,
    restarter: Arc<CountingRestarter>,
    accepted: Arc<MemAccepted>,
}

impl Setup {
    /// A server running `1.0.0` from a script executable in a temp dir, and an update
    /// server over `<dir>/www`.
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("imix-server");
        std::fs::write(&exe, script("1.0.0")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = serve(&dir.path().join("www")).await;
        Self {
            state: dir.path().join("data/update"),
            key: generate_signing_key(),
            base,
            exe,
            dir,
            snapshots: Arc::default(),
            restarter: Arc::default(),
            accepted: Arc::default(),
        }
    }

    fn www(&self, sub: &str) -> PathBuf {
        self.dir.path().join("www").join(sub)
    }

    fn updates(&self, sub: &str, health_timeout: Duration) -> Updates {
        Updates::new(
            UpdatesConfig {
                public_key: self.key.verifying_key(),
                running_version: semver::Version::new(1, 0, 0),
                target: TARGET.to_owned(),
                executable: self.exe.clone(),
                state_dir: self.state.clone(),
                health_timeout,
            },
            Some(Arc::new(HttpSource::new(self.base.join(sub).unwrap()))),
            self.accepted.clone(),
            self.snapshots.clone(),
            self.restarter.clone(),
        )
    }
}

/// Runs an executable and answers what it printed.
fn run(exe: &Path) -> String {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn every_bad_manifest_is_refused_with_its_reason() {
    let s = Setup::new().await;
    let other_key = generate_signing_key();
    publish(&s.www("good/"), Some(&s.key), &Release::new("2.0.0"));
    let manifest = publish(&s.www("tampered/"), Some(&s.key), &Release::new("2.0.0"));
    // Same signature, one byte of the notes changed.
    let tampered = String::from_utf8(manifest)
        .unwrap()
        .replace("Fixes.", "Fixed.");
    std::fs::write(s.www("tampered/").join(MANIFEST_FILE), tampered).unwrap();
    publish(&s.www("unsigned/"), None, &Release::new("2.0.0"));
    publish(
        &s.www("foreign-key/"),
        Some(&other_key),
        &Release::new("2.0.0"),
    );
    publish(
        &s.www("expired/"),
        Some(&s.key),
        &Release {
            expires_in_hours: -1,
            ..Release::new("2.0.0")
        },
    );
    publish(&s.www("older/"), Some(&s.key), &Release::new("0.9.0"));
    publish(&s.www("same/"), Some(&s.key), &Release::new("1.0.0"));
    publish(
        &s.www("wrong-target/"),
        Some(&s.key),
        &Release {
            target: "sparc64-unknown-netbsd",
            ..Release::new("2.0.0")
        },
    );
    publish(
        &s.www("below-min/"),
        Some(&s.key),
        &Release {
            min_version: "1.5.0",
            ..Release::new("2.0.0")
        },
    );
    publish(&s.www("rollback/"), Some(&s.key), &Release::new("1.5.0"));

    let check = |sub: &str| {
        let updates = s.updates(sub, Duration::from_secs(5));
        async move { updates.check().await }
    };
    assert!(matches!(
        check("tampered/").await,
        Err(UpdateError::SignatureInvalid)
    ));
    assert!(matches!(
        check("unsigned/").await,
        Err(UpdateError::SignatureMissing)
    ));
    assert!(matches!(
        check("foreign-key/").await,
        Err(UpdateError::SignatureInvalid)
    ));
    assert!(matches!(
        check("expired/").await,
        Err(UpdateError::Expired { .. })
    ));
    assert!(matches!(
        check("older/").await,
        Err(UpdateError::NotNewer { .. })
    ));
    assert!(matches!(
        check("same/").await,
        Err(UpdateError::NotNewer { .. })
    ));
    match check("wrong-target/").await {
        Err(UpdateError::NoArtifact { target }) => assert_eq!(target, TARGET),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        check("below-min/").await,
        Err(UpdateError::BelowMinVersion { .. })
    ));
    assert!(matches!(
        check("missing/").await,
        Err(UpdateError::HttpStatus { status: 404, .. })
    ));
    // None of the refused ones was recorded as accepted.
    assert_eq!(*s.accepted.0.lock().unwrap(), None);

    let good = check("good/").await.unwrap();
    assert_eq!(good.manifest.version.to_string(), "2.0.0");
    assert!(good.artifact.url.ends_with("/good/imix-server-new"));
    assert_eq!(
        good.manifest.notes.for_language(imix_core::Language::Fr).1,
        "# Mieux\nCorrections."
    );
    // 2.0.0 was accepted: a validly signed 1.5.0 (newer than running 1.0.0) is now a
    // rollback through the update channel.
    assert_eq!(
        s.accepted.0.lock().unwrap().as_ref().unwrap().to_string(),
        "2.0.0"
    );
    assert!(matches!(
        check("rollback/").await,
        Err(UpdateError::OlderThanAccepted { .. })
    ));
    // Nothing was installed by checks.
    assert_eq!(run(&s.exe), "imix-server 1.0.0");
    assert_eq!(s.snapshots.made.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_install_replaces_the_executable_and_the_healthy_new_version_confirms() {
    let s = Setup::new().await;
    publish(&s.www("r/"), Some(&s.key), &Release::new("2.0.0"));
    let updates = s.updates("r/", Duration::from_secs(30));
    assert_eq!(updates.status().stage, Stage::Idle);
    let status = updates.install().await.unwrap();
    assert_eq!(status.stage, Stage::Restarting);
    assert_eq!(status.bytes_done, status.bytes_total);
    assert_eq!(status.backup_id.as_deref(), Some("backup-0"));
    // The executable at the path is the new one; the old one is kept beside it.
    assert_eq!(run(&s.exe), "imix-server 2.0.0");
    assert_eq!(
        run(&imix_update::update::swap::previous_path(&s.exe)),
        "imix-server 1.0.0"
    );
    assert_eq!(s.restarter.graceful.load(Ordering::SeqCst), 1);
    // No download leftovers beside the executable.
    let mut names: Vec<String> = std::fs::read_dir(s.exe.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["imix-server", "imix-server.previous"]);

    // The new version starts: it is on probation, and confirms once healthy.
    let v2 = semver::Version::new(2, 0, 0);
    let StartAction::Probation { deadline } = probation::at_start(&s.state, &v2).unwrap() else {
        panic!("expected probation");
    };
    assert!(
        probation::confirm_when_healthy(
            &s.state,
            &v2,
            &Health(true),
            deadline,
            Duration::from_millis(10)
        )
        .await
    );
    assert_eq!(
        probation::at_start(&s.state, &v2).unwrap(),
        StartAction::Normal
    );
    // A later process of the new version reports the outcome.
    let after = Updates::new(
        UpdatesConfig {
            running_version: v2.clone(),
            ..s.updates("r/", Duration::from_secs(30)).config().clone()
        },
        None,
        s.accepted.clone(),
        s.snapshots.clone(),
        s.restarter.clone(),
    );
    let status = after.status();
    assert_eq!(status.stage, Stage::Installed);
    assert_eq!(status.target_version.as_deref(), Some("2.0.0"));
    assert!(s.snapshots.restored.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_new_version_that_is_not_healthy_in_time_is_rolled_back_with_its_data() {
    let s = Setup::new().await;
    publish(&s.www("r/"), Some(&s.key), &Release::new("2.0.0"));
    s.updates("r/", Duration::from_secs(1))
        .install()
        .await
        .unwrap();
    assert_eq!(run(&s.exe), "imix-server 2.0.0");

    // The new version starts and never answers its health check.
    let v2 = semver::Version::new(2, 0, 0);
    let StartAction::Probation { deadline } = probation::at_start(&s.state, &v2).unwrap() else {
        panic!("expected probation");
    };
    let healthy = probation::confirm_when_healthy(
        &s.state,
        &v2,
        &Health(false),
        deadline,
        Duration::from_millis(50),
    );
    let restarter = s.restarter.clone();
    let watchdog = probation::spawn_watchdog(
        s.state.clone(),
        v2.clone(),
        deadline,
        Box::new(move || restarter.restart_now()),
    )
    .unwrap();
    assert!(!healthy.await);
    assert!(watchdog.join().unwrap(), "the watchdog rolled back");
    assert_eq!(s.restarter.now.load(Ordering::SeqCst), 1);
    // The previous executable is back at the path.
    assert_eq!(run(&s.exe), "imix-server 1.0.0");

    // The old version starts: it puts the pre-update data back before serving.
    let v1 = semver::Version::new(1, 0, 0);
    let StartAction::RestoreData { backup_id, reason } =
        probation::at_start(&s.state, &v1).unwrap()
    else {
        panic!("expected a data restore");
    };
    assert_eq!(backup_id, "backup-0");
    assert!(reason.contains("health check within 1 seconds"), "{reason}");
    s.snapshots.restore(&backup_id).await.unwrap();
    probation::finish_rollback(&s.state).unwrap();
    let status = s.updates("r/", Duration::from_secs(1)).status();
    assert_eq!(status.stage, Stage::RolledBack);
    assert_eq!(status.error.as_deref(), Some(reason.as_str()));
    assert_eq!(*s.snapshots.restored.lock().unwrap(), ["backup-0"]);
    assert_eq!(
        probation::at_start(&s.state, &v1).unwrap(),
        StartAction::Normal
    );
}

#[tokio::test]
async fn a_new_version_that_crashes_at_every_start_is_rolled_back() {
    let s = Setup::new().await;
    publish(&s.www("r/"), Some(&s.key), &Release::new("2.0.0"));
    s.updates("r/", Duration::from_secs(60))
        .install()
        .await
        .unwrap();
    let v2 = semver::Version::new(2, 0, 0);
    for _ in 0..probation::MAX_START_ATTEMPTS {
        // Each start counts itself, then "crashes" (never confirms).
        assert!(matches!(
            probation::at_start(&s.state, &v2).unwrap(),
            StartAction::Probation { .. }
        ));
    }
    let StartAction::Restart { reason } = probation::at_start(&s.state, &v2).unwrap() else {
        panic!("expected a rollback");
    };
    assert!(reason.contains("3 starts"), "{reason}");
    assert_eq!(run(&s.exe), "imix-server 1.0.0");
    let v1 = semver::Version::new(1, 0, 0);
    assert!(matches!(
        probation::at_start(&s.state, &v1).unwrap(),
        StartAction::RestoreData { .. }
    ));
}

#[tokio::test]
async fn a_bad_download_changes_nothing() {
    let s = Setup::new().await;
    // The manifest's hash is of other bytes (a tampered artifact on the server).
    publish(
        &s.www("bad-hash/"),
        Some(&s.key),
        &Release {
            sha256: Some("00".repeat(32)),
            ..Release::new("2.0.0")
        },
    );
    // A correctly hashed artifact that is not the version it claims.
    publish(
        &s.www("liar/"),
        Some(&s.key),
        &Release {
            artifact: script("1.9.0"),
            ..Release::new("2.0.0")
        },
    );
    let err = s
        .updates("bad-hash/", Duration::from_secs(5))
        .install()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
    let liar = s.updates("liar/", Duration::from_secs(5));
    let err = liar.install().await.unwrap_err();
    assert!(err.to_string().contains("not version 2.0.0"), "{err}");
    assert_eq!(liar.status().stage, Stage::Failed);
    assert_eq!(run(&s.exe), "imix-server 1.0.0");
    assert!(!imix_update::update::swap::previous_path(&s.exe).exists());
    assert!(probation::read_marker(&s.state).unwrap().is_none());
    assert_eq!(s.restarter.graceful.load(Ordering::SeqCst), 0);
    assert_eq!(
        std::fs::read_dir(s.exe.parent().unwrap()).unwrap().count(),
        1,
        "no download left beside the executable"
    );
}

#[tokio::test]
async fn only_one_install_runs_at_a_time() {
    let mut s = Setup::new().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    s.snapshots = Arc::new(FakeSnapshots {
        gate: Some(gate.clone()),
        ..FakeSnapshots::default()
    });
    publish(&s.www("r/"), Some(&s.key), &Release::new("2.0.0"));
    let updates = s.updates("r/", Duration::from_secs(30));
    let first = updates.start_install().await.unwrap();
    assert_eq!(first.target_version.as_deref(), Some("2.0.0"));
    assert!(matches!(
        updates.start_install().await,
        Err(UpdateError::Busy)
    ));
    gate.notify_one();
    for _ in 0..200 {
        if updates.status().stage == Stage::Restarting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(updates.status().stage, Stage::Restarting);
    // Until the new version confirms, another install is refused too.
    assert!(matches!(
        updates.start_install().await,
        Err(UpdateError::Busy)
    ));
}

#[tokio::test]
async fn the_newest_accepted_version_is_kept_in_the_store_settings() {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    let accepted = imix_update::update::SettingsAcceptedVersions::new(store.settings.clone());
    assert_eq!(accepted.newest().await.unwrap(), None);
    accepted
        .record(&semver::Version::new(1, 2, 0))
        .await
        .unwrap();
    accepted
        .record(&semver::Version::new(1, 1, 0))
        .await
        .unwrap();
    assert_eq!(
        accepted.newest().await.unwrap(),
        Some(semver::Version::new(1, 2, 0))
    );
    accepted
        .record(&semver::Version::new(2, 0, 0))
        .await
        .unwrap();
    assert_eq!(
        accepted.newest().await.unwrap(),
        Some(semver::Version::new(2, 0, 0))
    );
}

// ---------------------------------------------------------------- restore of another version

/// The data side of a restore of another version, recording what it was asked.
#[derive(Default)]
struct FakeRestoreData {
    steps: Vec<&'static str>,
}

#[async_trait]
impl RestoreData for FakeRestoreData {
    async fn backup_first(&mut self) -> imix_update::update::Result<String> {
        self.steps.push("backup");
        Ok("pre-restore-1".into())
    }
    fn restore_at_next_start(&mut self) -> imix_update::update::Result<()> {
        self.steps.push("schedule");
        Ok(())
    }
    fn cancel(&mut self) {
        self.steps.push("cancel");
    }
}

/// The backup's executable (version `version`) extracted beside `exe`, as the server does.
fn backup_executable(exe: &Path, version: &str) -> tempfile::TempPath {
    let dir = exe.parent().unwrap();
    let mut temp = tempfile::Builder::new()
        .prefix(".imix-update-")
        .tempfile_in(dir)
        .unwrap();
    std::io::Write::write_all(temp.as_file_mut(), &script(version)).unwrap();
    let path = temp.into_temp_path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_restore_of_another_version_swaps_and_rolls_back_like_an_install() {
    let s = Setup::new().await;
    let updates = s.updates("r/", Duration::from_secs(1));
    let mut data = FakeRestoreData::default();
    let status = updates
        .install_from_backup(
            BackupRelease {
                version: semver::Version::new(0, 9, 0),
                executable: backup_executable(&s.exe, "0.9.0"),
                backup_id: "archive-x".into(),
                extra_time: Duration::from_secs(1),
            },
            &mut data,
        )
        .await
        .unwrap();
    assert_eq!(data.steps, ["backup", "schedule"]);
    assert_eq!(status.stage, Stage::Restarting);
    assert_eq!(status.restore_of.as_deref(), Some("archive-x"));
    assert_eq!(status.backup_id.as_deref(), Some("pre-restore-1"));
    assert_eq!(s.restarter.graceful.load(Ordering::SeqCst), 1);
    assert_eq!(run(&s.exe), "imix-server 0.9.0");
    assert_eq!(
        run(&imix_update::update::swap::previous_path(&s.exe)),
        "imix-server 1.0.0"
    );
    let marker = probation::read_marker(&s.state).unwrap().unwrap();
    assert_eq!(marker.restore_of.as_deref(), Some("archive-x"));
    assert_eq!(marker.health_timeout_secs, 2);
    // Nothing else until it is decided.
    let mut again = FakeRestoreData::default();
    let busy = updates
        .install_from_backup(
            BackupRelease {
                version: semver::Version::new(0, 9, 0),
                executable: backup_executable(&s.exe, "0.9.0"),
                backup_id: "archive-x".into(),
                extra_time: Duration::ZERO,
            },
            &mut again,
        )
        .await;
    assert!(matches!(busy, Err(UpdateError::Busy)), "{busy:?}");
    assert!(again.steps.is_empty());

    // The backup's version starts and never answers its health check: the watchdog puts
    // the previous executable back.
    let v09 = semver::Version::new(0, 9, 0);
    let StartAction::Probation { deadline } = probation::at_start(&s.state, &v09).unwrap() else {
        panic!("expected probation");
    };
    let restarter = s.restarter.clone();
    let watchdog = probation::spawn_watchdog(
        s.state.clone(),
        v09,
        deadline,
        Box::new(move || restarter.restart_now()),
    )
    .unwrap();
    assert!(watchdog.join().unwrap(), "the watchdog rolled back");
    assert_eq!(run(&s.exe), "imix-server 1.0.0");
    // This version starts again: it puts the pre-restore data back.
    let v1 = semver::Version::new(1, 0, 0);
    let StartAction::RestoreData { backup_id, reason } =
        probation::at_start(&s.state, &v1).unwrap()
    else {
        panic!("expected a data restore");
    };
    assert_eq!(backup_id, "pre-restore-1");
    probation::finish_rollback(&s.state).unwrap();
    let status = s.updates("r/", Duration::from_secs(1)).status();
    assert_eq!(status.stage, Stage::RolledBack);
    assert_eq!(status.error.as_deref(), Some(reason.as_str()));
    assert_eq!(status.restore_of.as_deref(), Some("archive-x"));
}

#[tokio::test]
async fn a_restore_of_another_version_that_cannot_swap_changes_nothing() {
    let s = Setup::new().await;
    let updates = s.updates("r/", Duration::from_secs(1));
    let release = BackupRelease {
        version: semver::Version::new(0, 9, 0),
        executable: backup_executable(&s.exe, "0.9.0"),
        backup_id: "archive-x".into(),
        extra_time: Duration::ZERO,
    };
    // The executable is gone: keeping it as `.previous` fails, so nothing is replaced.
    std::fs::remove_file(&s.exe).unwrap();
    let mut data = FakeRestoreData::default();
    let failed = updates.install_from_backup(release, &mut data).await;
    assert!(matches!(failed, Err(UpdateError::Io { .. })), "{failed:?}");
    assert_eq!(data.steps, ["backup", "schedule", "cancel"]);
    assert!(probation::read_marker(&s.state).unwrap().is_none());
    let status = updates.status();
    assert_eq!(status.stage, Stage::Failed);
    assert_eq!(status.restore_of.as_deref(), Some("archive-x"));
    assert_eq!(s.restarter.graceful.load(Ordering::SeqCst), 0);
}
