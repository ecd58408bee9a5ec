//! Restoring a backup of another version, on both stores: its executable is put in place
//! (a real executable in a temp directory, the previous one kept, as in `updates.rs`), a
//! pre-restore backup is taken and a durable marker has the next start restore the
//! archive; that start honours it; a version that does not become healthy is rolled back
//! with the pre-restore data; a restore interrupted before its executable ran changes
//! nothing; an archive whose executable cannot be used is refused when its schema is newer
//! and restored here when it is not.
//!
//! "The other version" is a script that prints its version (what the trial run checks).
//! Its start is played by this build: `probation::at_start` called with the other version
//! (what that version's own start does first), then a start of this server with the
//! pending-update marker set aside, which restores the archive from the backups' marker as
//! any version with interrupted-restore detection does. What a real other build would do
//! beyond that is not run here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{
    backups::{archive_of, backup, download, file, files_of, upload},
    common,
    updates::{next_version, run, script, wait_for, Setup, RUNNING, STATUS},
};

use std::path::Path;

use common::{error_of, Backend, TestServer};
use imix_update::{
    backup::restore_at_start,
    update::{
        probation::{self, MarkerState, Outcome, StartAction},
        swap::previous_path,
        TARGET,
    },
};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

on_both_backends!(
    a_backup_of_another_version_puts_its_executable_back_and_is_restored_at_start,
    a_restored_version_that_is_not_healthy_is_rolled_back_with_the_data,
    a_restore_interrupted_before_the_other_version_ran_changes_nothing,
    without_a_usable_executable_a_newer_schema_is_refused_and_an_older_one_restored_here,
    the_command_line_puts_the_other_version_in_place_for_the_next_start,
    a_version_that_cannot_restore_the_backup_at_start_rolls_back_at_once,
);

const BACKUPS: &str = "/api/v1/system/backups";

/// `archive` rewritten as another backup (a new id) made by `version`, holding `exe` (its target and bytes)
/// or no executable, with `extra_step` added to its schema.
fn as_other_version(
    archive: &[u8],
    version: &str,
    exe: Option<(&str, Vec<u8>)>,
    extra_step: Option<&str>,
) -> Vec<u8> {
    let mut files = files_of(archive);
    let mut manifest: Value = serde_json::from_slice(file(&files, "manifest.json")).unwrap();
    files.retain(|(n, _)| n != "manifest.json" && !n.starts_with("bin/"));
    // Another backup (the original stays in the list).
    manifest["id"] = json!(uuid::Uuid::now_v7().to_string());
    manifest["app_version"] = json!(version);
    match exe {
        Some((target, bytes)) => {
            manifest["files"]["bin/imix-server"] = json!({"size": bytes.len(),
                "sha256": hex::encode(sha2::Sha256::digest(&bytes))});
            manifest["executable"] = json!("bin/imix-server");
            manifest["target"] = json!(target);
            files.push(("bin/imix-server".into(), bytes));
        }
        None => {
            manifest["executable"] = Value::Null;
            manifest.as_object_mut().unwrap().remove("target");
        }
    }
    if let Some(step) = extra_step {
        manifest["schema"].as_array_mut().unwrap().push(json!(step));
    }
    files.push((
        "manifest.json".into(),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    ));
    archive_of(&files)
}

/// Uploads `bytes`; answers the backup's id.
async fn upload_backup(server: &TestServer, admin: &str, bytes: Vec<u8>) -> String {
    let resp = upload(server, admin, bytes).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Tenant "Archived" and a backup of it (downloaded), then tenant "Later"; answers the
/// archive's bytes.
async fn archived_then_later(server: &TestServer, admin: &str) -> Vec<u8> {
    server
        .create_tenant(admin, json!({"name": "Archived"}))
        .await;
    let made = backup(server, admin).await;
    let (_, bytes) = download(server, admin, made["id"].as_str().unwrap()).await;
    server.create_tenant(admin, json!({"name": "Later"})).await;
    bytes
}

/// [`archived_then_later`] with the backup rewritten by `rewrite` and uploaded; answers
/// the uploaded backup's id.
async fn other_version_backup(
    server: &TestServer,
    admin: &str,
    rewrite: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let bytes = archived_then_later(server, admin).await;
    upload_backup(server, admin, rewrite(&bytes)).await
}

async fn tenant_names(server: &TestServer, admin: &str) -> String {
    let (status, tenants) = server.get_json(admin, "/api/v1/tenants").await;
    assert_eq!(status, 200, "{tenants}");
    tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// A server for `s` whose variables (the same MongoDB database) serve every start.
async fn start(
    s: &Setup,
    backend: Backend,
) -> (TestServer, std::collections::HashMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common::base_vars(dir.path(), backend);
    s.vars(&mut vars);
    (TestServer::start_in(dir, vars.clone()).await, vars)
}

/// Asks for the restore of `id` (of version `next`) and waits for the server to stop for
/// its restart; answers the pre-restore backup's id and the data directory.
async fn restore_and_stop(
    server: TestServer,
    admin: &str,
    id: &str,
    next: &str,
) -> (String, tempfile::TempDir) {
    let (status, body) = server
        .send_json(
            admin,
            Method::POST,
            &format!("{BACKUPS}/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["restarting"], true, "{body}");
    assert_eq!(body["restored_records"], 0);
    assert_eq!(body["backup"]["version"], next);
    let pre = body["pre_restore_backup_id"].as_str().unwrap().to_owned();
    (pre, server.stop().await)
}

fn state_dir(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("data/update")
}

fn backups_dir(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("data/backups")
}

/// What the restore left for the restart: the executable of the backup's version in place,
/// the previous one kept, the pending marker and the backups' marker.
fn assert_left_for_the_restart(
    exe: &Path,
    dir: &tempfile::TempDir,
    id: &str,
    pre: &str,
    next: &str,
) {
    assert_eq!(run(exe), format!("imix-server {next}"));
    assert_eq!(run(&previous_path(exe)), format!("imix-server {RUNNING}"));
    let marker = probation::read_marker(&state_dir(dir)).unwrap().unwrap();
    assert_eq!(marker.state, MarkerState::Swapped);
    assert_eq!(marker.attempts, 0);
    assert_eq!(marker.from_version.to_string(), RUNNING);
    assert_eq!(marker.to_version.to_string(), next);
    assert_eq!(marker.restore_of.as_deref(), Some(id));
    assert_eq!(marker.backup_id, pre);
    // The health timeout (60 s here) and time for the restore itself.
    assert!(marker.health_timeout_secs >= 120, "{marker:?}");
    assert_eq!(
        restore_at_start(&backups_dir(dir)).unwrap().as_deref(),
        Some(id)
    );
}

/// The start of the backup's version, first step: what its own start does with the
/// pending marker (counts its attempt, goes on probation).
fn other_version_starts(dir: &tempfile::TempDir, next: &str) {
    let action = probation::at_start(&state_dir(dir), &next.parse().unwrap()).unwrap();
    assert!(
        matches!(action, StartAction::Probation { .. }),
        "{action:?}"
    );
}

async fn a_backup_of_another_version_puts_its_executable_back_and_is_restored_at_start(
    backend: Backend,
) {
    let s = Setup::new().await;
    let next = next_version();
    let (server, vars) = start(&s, backend).await;
    let admin = server.admin().await;
    let id = other_version_backup(&server, &admin, |bytes| {
        as_other_version(bytes, &next, Some((TARGET, script(&next))), None)
    })
    .await;
    let (pre, dir) = restore_and_stop(server, &admin, &id, &next).await;
    assert_left_for_the_restart(&s.exe, &dir, &id, &pre, &next);

    // The backup's version starts, and restores the archive before serving (played by this
    // build with the pending marker, which names the other version, set aside).
    other_version_starts(&dir, &next);
    let marker = probation::read_marker(&state_dir(&dir)).unwrap().unwrap();
    std::fs::remove_file(state_dir(&dir).join(probation::MARKER_FILE)).unwrap();
    let server = TestServer::start_in(dir, vars).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    let names = tenant_names(&server, &admin).await;
    assert!(
        names.contains("Archived") && !names.contains("Later"),
        "{names}"
    );
    // The pre-restore backup holds the data as it was.
    let (status, pre_backup) = server.get_json(&admin, &format!("{BACKUPS}/{pre}")).await;
    assert_eq!(status, 200, "{pre_backup}");
    assert_eq!(pre_backup["kind"], "pre-restore");
    assert_eq!(pre_backup["counts"]["tenant"], 2, "{pre_backup}");
    let dir = server.stop().await;
    assert!(restore_at_start(&backups_dir(&dir)).unwrap().is_none());

    // It answers its health check: confirmed like an update.
    probation::write_marker(&state_dir(&dir), &marker).unwrap();
    assert!(probation::confirm(&state_dir(&dir), &next.parse().unwrap()).unwrap());
    let last = probation::last_result(&state_dir(&dir)).unwrap().unwrap();
    assert_eq!(last.outcome, Outcome::Installed);
    assert_eq!(last.restore_of.as_deref(), Some(id.as_str()));
    assert_eq!(run(&s.exe), format!("imix-server {next}"));
}

async fn a_restored_version_that_is_not_healthy_is_rolled_back_with_the_data(backend: Backend) {
    let s = Setup::new().await;
    let next = next_version();
    let (server, vars) = start(&s, backend).await;
    let admin = server.admin().await;
    let id = other_version_backup(&server, &admin, |bytes| {
        as_other_version(bytes, &next, Some((TARGET, script(&next))), None)
    })
    .await;
    let (pre, dir) = restore_and_stop(server, &admin, &id, &next).await;
    assert_left_for_the_restart(&s.exe, &dir, &id, &pre, &next);

    // The backup's version starts, restores the archive, writes data, and does not answer
    // its health check in time: its watchdog rolls back (previous executable).
    other_version_starts(&dir, &next);
    let marker = probation::read_marker(&state_dir(&dir)).unwrap().unwrap();
    std::fs::remove_file(state_dir(&dir).join(probation::MARKER_FILE)).unwrap();
    let server = TestServer::start_in(dir, vars.clone()).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    server
        .create_tenant(&admin, json!({"name": "During"}))
        .await;
    let dir = server.stop().await;
    probation::write_marker(&state_dir(&dir), &marker).unwrap();
    let reason = format!("version {next} did not answer its health check within 120 seconds");
    assert!(probation::roll_back(&state_dir(&dir), &next.parse().unwrap(), &reason).unwrap());
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
    // As if it was killed (kill -9) in the middle of its restore: the backups' marker
    // is still there. This version must not complete that restore.
    std::fs::write(
        backups_dir(&dir).join("restore-in-progress.json"),
        json!({"backup": id, "pre_restore": null}).to_string(),
    )
    .unwrap();

    // This version starts again: the pre-restore data is back before it serves.
    let server = TestServer::start_in(dir, vars).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    let names = tenant_names(&server, &admin).await;
    assert!(
        names.contains("Archived") && names.contains("Later") && !names.contains("During"),
        "{names}"
    );
    let (_, status) = server.get_json(&admin, STATUS).await;
    assert_eq!(status["stage"], "rolled-back", "{status}");
    assert_eq!(status["error"], reason.as_str());
    assert_eq!(status["target_version"], next.as_str());
    assert_eq!(status["restore_of"], id.as_str());
    assert_eq!(status["backup_id"], pre.as_str());
    let dir = server.stop().await;
    assert!(probation::read_marker(&state_dir(&dir)).unwrap().is_none());
    assert!(restore_at_start(&backups_dir(&dir)).unwrap().is_none());
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
}

async fn a_restore_interrupted_before_the_other_version_ran_changes_nothing(backend: Backend) {
    let s = Setup::new().await;
    let next = next_version();
    let (server, vars) = start(&s, backend).await;
    let admin = server.admin().await;
    let id = other_version_backup(&server, &admin, |bytes| {
        as_other_version(bytes, &next, Some((TARGET, script(&next))), None)
    })
    .await;
    let (_, dir) = restore_and_stop(server, &admin, &id, &next).await;
    // Killed before the swap was durable: the previous executable is at the path again,
    // both markers are there.
    imix_update::update::swap::restore_previous(&s.exe).unwrap();
    let server = TestServer::start_in(dir, vars).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    let names = tenant_names(&server, &admin).await;
    assert!(
        names.contains("Archived") && names.contains("Later"),
        "{names}"
    );
    let status = wait_for(&server, &admin, |b| b["stage"] == "failed").await;
    assert!(
        status["error"].as_str().unwrap().contains("interrupted"),
        "{status}"
    );
    assert_eq!(status["restore_of"], id.as_str());
    let dir = server.stop().await;
    assert!(restore_at_start(&backups_dir(&dir)).unwrap().is_none());
}

async fn without_a_usable_executable_a_newer_schema_is_refused_and_an_older_one_restored_here(
    backend: Backend,
) {
    let s = Setup::new().await;
    let next = next_version();
    let (server, _vars) = start(&s, backend).await;
    let admin = server.admin().await;
    let restore = |id: String| {
        let (server, admin) = (&server, &admin);
        async move {
            server
                .call(admin, Method::POST, &format!("{BACKUPS}/{id}/restore"))
                .send()
                .await
                .unwrap()
        }
    };
    let bytes = archived_then_later(&server, &admin).await;
    // No executable, a newer schema.
    let id = upload_backup(
        &server,
        &admin,
        as_other_version(&bytes, &next, None, Some("core/9999_future")),
    )
    .await;
    let (code, body) = error_of(restore(id).await, 422).await;
    assert_eq!(code, "backup_unsupported", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("core step 9999") && message.contains("holds no executable"),
        "{message}"
    );
    // An executable for another target, a newer schema.
    let id = upload_backup(
        &server,
        &admin,
        as_other_version(
            &bytes,
            &next,
            Some(("sparc64-unknown-netbsd", script(&next))),
            Some("core/9999_future"),
        ),
    )
    .await;
    let (code, body) = error_of(restore(id).await, 422).await;
    assert_eq!(code, "backup_unsupported", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sparc64-unknown-netbsd"),
        "{body}"
    );
    // Nothing changed: the data, the executable, no marker.
    let names = tenant_names(&server, &admin).await;
    assert!(names.contains("Later"), "{names}");
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
    let (_, status) = server.get_json(&admin, STATUS).await;
    assert_eq!(status["stage"], "idle", "{status}");

    // No executable, a schema this version has: restored here, migrated forward.
    let id = upload_backup(
        &server,
        &admin,
        as_other_version(&bytes, "0.0.1", None, None),
    )
    .await;
    let resp = restore(id).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["restarting"], false, "{body}");
    assert_eq!(body["backup"]["version"], "0.0.1", "{body}");
    let names = tenant_names(&server, &admin).await;
    assert!(
        names.contains("Archived") && !names.contains("Later"),
        "{names}"
    );
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
    server.stop().await;
}

async fn the_command_line_puts_the_other_version_in_place_for_the_next_start(backend: Backend) {
    let s = Setup::new().await;
    let next = next_version();
    let (server, vars) = start(&s, backend).await;
    let admin = server.admin().await;
    let bytes = archived_then_later(&server, &admin).await;
    let dir = server.stop().await;
    let path = dir.path().join("other-version.tar.gz");
    let archive = as_other_version(&bytes, &next, Some((TARGET, script(&next))), None);
    std::fs::write(&path, &archive).unwrap();

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imix-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IMIX_ENV_FILE", "/dev/null")
        .envs(&vars)
        .args(["backup", "restore"])
        .arg(&path);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("made by version {next}")),
        "{stdout}"
    );
    let id = serde_json::from_slice::<Value>(file(&files_of(&archive.clone()), "manifest.json"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let marker = probation::read_marker(&state_dir(&dir)).unwrap().unwrap();
    assert_left_for_the_restart(&s.exe, &dir, &id, &marker.backup_id, &next);

    // The next start (of that version, played as above) restores it before serving.
    other_version_starts(&dir, &next);
    std::fs::remove_file(state_dir(&dir).join(probation::MARKER_FILE)).unwrap();
    let server = TestServer::start_in(dir, vars).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    let names = tenant_names(&server, &admin).await;
    assert!(
        names.contains("Archived") && !names.contains("Later"),
        "{names}"
    );
    server.stop().await;
}

/// The real `imix-server` binary plays the backup's version here: it starts with the
/// markers a restore of another version leaves (its version as `to_version`), and the
/// backup they name is not there.
async fn a_version_that_cannot_restore_the_backup_at_start_rolls_back_at_once(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new().await;
    let previous = previous_path(&s.exe);
    std::fs::write(&previous, script("0.0.1")).unwrap();
    std::fs::set_permissions(&previous, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common::base_vars(dir.path(), backend);
    s.vars(&mut vars);
    vars.insert("IMIX_BIND".into(), "127.0.0.1:0".into());
    let state = state_dir(&dir);
    let missing = uuid::Uuid::now_v7().to_string();
    probation::write_marker(
        &state,
        &probation::Marker {
            from_version: "0.0.1".parse().unwrap(),
            to_version: RUNNING.parse().unwrap(),
            executable: s.exe.clone(),
            backup_id: "pre-restore".into(),
            attempts: 0,
            state: MarkerState::Swapped,
            reason: None,
            health_timeout_secs: 60,
            started_at: chrono::Utc::now(),
            restore_of: Some(missing.clone()),
        },
    )
    .unwrap();
    std::fs::create_dir_all(backups_dir(&dir)).unwrap();
    std::fs::write(
        backups_dir(&dir).join("restore-in-progress.json"),
        json!({"backup": missing, "pre_restore": null}).to_string(),
    )
    .unwrap();

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imix-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IMIX_ENV_FILE", "/dev/null")
        .envs(&vars)
        .arg("serve");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(50),
        tokio::task::spawn_blocking(move || cmd.output().unwrap()),
    )
    .await
    .expect("the server should stop at once, without waiting for its health timeout")
    .unwrap();
    // It did not serve: it put the previous executable back and exits for its supervisor.
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run(&s.exe), "imix-server 0.0.1");
    let marker = probation::read_marker(&state).unwrap().unwrap();
    assert_eq!(marker.state, MarkerState::RollingBack);
    let reason = marker.reason.unwrap();
    assert!(reason.contains("could not restore the backup"), "{reason}");
}
