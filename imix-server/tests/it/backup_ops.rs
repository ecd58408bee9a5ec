//! Backup operations beside the backups API, on both stores: the daily schedule through
//! `GET|PUT /api/v1/system/backups/schedule` (off by default, bad input refused naming the
//! field with nothing changed, platform admins only); a restore pausing a contact import
//! that is running, so that none of its rows lands in the restored data, and the workers
//! working again afterwards; and the `imix-server backup` command line (create, list,
//! verify, restore), whose restore refuses while a server runs on the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{error_of, Backend, TestServer, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    the_schedule_is_off_by_default_and_set_through_the_api,
    a_restore_pauses_a_running_contact_import,
    the_command_line_creates_lists_verifies_and_restores,
);

const BACKUPS: &str = "/api/v1/system/backups";
const SCHEDULE: &str = "/api/v1/system/backups/schedule";

fn vars_for(dir: &std::path::Path, backend: Backend) -> std::collections::HashMap<String, String> {
    let mut vars = common::base_vars(dir, backend);
    vars.insert("IMIX_BACKUP_INCLUDE_EXECUTABLE".into(), "false".into());
    vars.insert("SECRET_KEY".into(), "k".repeat(48));
    vars
}

async fn server(backend: Backend) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let vars = vars_for(dir.path(), backend);
    TestServer::start_in(dir, vars).await
}

/// A tenant and its admin's token.
async fn tenant(s: &TestServer, admin: &str, name: &str) -> (String, String) {
    let t = s.create_tenant(admin, json!({ "name": name })).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (_, token) = s
        .user_with_token(
            admin,
            json!({"email": format!("owner@{}.example", name.to_lowercase()),
                   "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": id}),
        )
        .await;
    (id, token)
}

async fn wait_done(s: &TestServer, admin: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, b) = s.get_json(admin, &format!("{BACKUPS}/{id}")).await;
        assert_eq!(status, 200, "{b}");
        if b["status"] == "done" {
            return b;
        }
        assert_eq!(b["status"], "running", "{b}");
        assert!(Instant::now() < deadline, "backup too slow");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_schedule_is_off_by_default_and_set_through_the_api(backend: Backend) {
    let s = server(backend).await;
    let admin = s.admin().await;
    let (status, schedule) = s.get_json(&admin, SCHEDULE).await;
    assert_eq!(status, 200, "{schedule}");
    assert_eq!(schedule["enabled"], false);
    assert_eq!(schedule["time"], "02:00");
    assert_eq!(schedule["time_zone"], "UTC");
    assert!(schedule["next_run_at"].is_null(), "{schedule}");

    // Bad input: 422 naming the field, and nothing changes.
    for (body, field) in [
        (json!({"enabled": true, "time": "25:00"}), "time"),
        (json!({"enabled": true, "time": "7:30"}), "time"),
        (json!({"time": "07:30pm"}), "time"),
        (json!({"enabled": "yes"}), "enabled"),
    ] {
        let resp = s
            .call(&admin, Method::PUT, SCHEDULE)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (_, error) = error_of(resp, 422).await;
        assert_eq!(error["error"]["details"]["field"], field, "{body}: {error}");
    }
    assert_eq!(s.get_json(&admin, SCHEDULE).await.1, schedule);

    let (status, set) = s
        .send_json(
            &admin,
            Method::PUT,
            SCHEDULE,
            json!({"enabled": true, "time": "03:15"}),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["enabled"], true);
    assert_eq!(set["time"], "03:15");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(set["next_run_at"].clone()).unwrap();
    let now = chrono::Utc::now();
    assert!(
        next > now && next <= now + chrono::Duration::days(1),
        "{next}"
    );
    assert_eq!(next.format("%H:%M").to_string(), "03:15");
    // The schedule is only the platform's: a tenant admin is refused, and changes nothing.
    let (_, owner) = tenant(&s, &admin, "Sched").await;
    let (status, _) = s.get_json(&owner, SCHEDULE).await;
    assert_eq!(status, 403);
    let (status, _) = s
        .send_json(&owner, Method::PUT, SCHEDULE, json!({"enabled": false}))
        .await;
    assert_eq!(status, 403);
    let (_, again) = s.get_json(&admin, SCHEDULE).await;
    assert_eq!(again["enabled"], true);
    assert_eq!(again["time"], "03:15");
    // Off keeps the time.
    let (status, off) = s
        .send_json(&admin, Method::PUT, SCHEDULE, json!({"enabled": false}))
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["enabled"], false);
    assert_eq!(off["time"], "03:15");
    assert!(off["next_run_at"].is_null());
}

async fn contacts_of(s: &TestServer, admin: &str, tenant: &str) -> usize {
    let (status, page) = s
        .get_json(
            admin,
            &format!("/api/v1/tenants/{tenant}/contacts?limit=500"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().len()
}

async fn post_import(s: &TestServer, token: &str, tenant: &str, csv: String) -> Value {
    let resp = s
        .call(
            token,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/contacts/import"),
        )
        .multipart(
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(csv.into_bytes())
                    .file_name("contacts.csv")
                    .mime_str("text/csv")
                    .unwrap(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    resp.json().await.unwrap()
}

async fn a_restore_pauses_a_running_contact_import(backend: Backend) {
    let s = server(backend).await;
    let admin = s.admin().await;
    let (tenant, owner) = tenant(&s, &admin, "Busy").await;
    // The backup holds the tenant, no contact and no import.
    let (status, job) = s.send_json(&admin, Method::POST, BACKUPS, json!({})).await;
    assert_eq!(status, 202, "{job}");
    let before = wait_done(&s, &admin, job["id"].as_str().unwrap()).await;

    let mut csv = String::from("phone,name\n");
    for n in 0..3_000 {
        csv.push_str(&format!("+3361{n:07},Customer {n}\n"));
    }
    let import = post_import(&s, &owner, &tenant, csv).await;
    let import_path = format!(
        "/api/v1/tenants/{tenant}/contacts/imports/{}",
        import["id"].as_str().unwrap()
    );
    // Restore while it is importing.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, job) = s.get_json(&owner, &import_path).await;
        assert_ne!(job["status"], "done", "the import ended too soon: {job}");
        if job["processed_rows"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import does not start: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, restored) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("{BACKUPS}/{}/restore", before["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{restored}");

    // The restored data has no contact and no import, and stays so: the import was paused
    // before the store was emptied, not left writing rows into it.
    assert_eq!(contacts_of(&s, &admin, &tenant).await, 0);
    let (status, _) = s.get_json(&admin, &import_path).await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(contacts_of(&s, &admin, &tenant).await, 0);
    let (_, imports) = s
        .get_json(
            &admin,
            &format!("/api/v1/tenants/{tenant}/contacts/imports"),
        )
        .await;
    assert_eq!(imports["items"].as_array().unwrap().len(), 0, "{imports}");

    // The workers run again: a new import is imported.
    let small = post_import(
        &s,
        &owner,
        &tenant,
        "phone,name\n+33612000001,A\n+33612000002,B\n".into(),
    )
    .await;
    let path = format!(
        "/api/v1/tenants/{tenant}/contacts/imports/{}",
        small["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, job) = s.get_json(&owner, &path).await;
        if job["status"] == "done" {
            assert_eq!(job["created"], 2, "{job}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import worker did not resume: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(contacts_of(&s, &admin, &tenant).await, 2);
}

/// Runs `imix-server backup <args>` on `vars`.
async fn cli(vars: &std::collections::HashMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imix-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IMIX_ENV_FILE", "/dev/null")
        .envs(vars)
        .arg("backup")
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn the_command_line_creates_lists_verifies_and_restores(backend: Backend) {
    // Data through a server, which is then stopped.
    let dir = tempfile::tempdir().unwrap();
    let vars = vars_for(dir.path(), backend);
    let s = TestServer::start_in(dir, vars.clone()).await;
    let admin = s.admin().await;
    let (tenant, _) = tenant(&s, &admin, "Cli").await;
    let dir = s.stop().await;

    let out = cli(&vars, &["create"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("created backup "), "{stdout}");
    let id = stdout.split_whitespace().nth(2).unwrap().to_owned();
    let file = dir.path().join("data/backups").join(format!("{id}.tar.gz"));
    assert!(file.is_file(), "{stdout}");
    // Not a terminal: plain lines, no bar drawing.
    assert!(!text(&out.stderr).contains('\r'), "{}", text(&out.stderr));

    let out = cli(&vars, &["list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("manual")),
        "{listing}"
    );

    let out = cli(&vars, &["verify", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("ok: backup {id}")));

    // A damaged (truncated) copy is refused, one line naming the problem.
    let bytes = std::fs::read(&file).unwrap();
    let damaged = dir.path().join("damaged.tar.gz");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    for args in [
        ["verify", damaged.to_str().unwrap()],
        ["restore", damaged.to_str().unwrap()],
    ] {
        let out = cli(&vars, &args).await;
        assert!(!out.status.success(), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("imix-server:"), "{stderr}");
    }
    // A directory or a missing file is named, with what is wrong with it.
    let missing = dir.path().join("no-such-backup.tar.gz");
    for (path, says) in [
        (dir.path().to_path_buf(), "is not a regular file"),
        (missing, "no-such-backup.tar.gz"),
    ] {
        let out = cli(&vars, &["verify", path.to_str().unwrap()]).await;
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }

    // Changes after the backup, through a server, which then keeps running.
    let s = TestServer::start_in(dir, vars.clone()).await;
    let admin = s.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/contacts"),
            json!({"phone": "+33 6 12 34 56 78", "name": "Later"}),
        )
        .await;
    assert_eq!(status, 201);
    // While it runs, a restore from the command line is refused and changes nothing.
    let out = cli(&vars, &["restore", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a server is running"), "{stderr}");
    assert_eq!(contacts_of(&s, &admin, &tenant).await, 1);
    let dir = s.stop().await;

    // Stopped: the restore runs, and the contact made after the backup is gone.
    let out = cli(&vars, &["restore", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("restored backup {id}")));
    let s = TestServer::start_in(dir, vars.clone()).await;
    let admin = s.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    assert_eq!(contacts_of(&s, &admin, &tenant).await, 0);
    let out = cli(&vars, &["list"]).await;
    assert!(
        text(&out.stdout).contains("pre-restore"),
        "{}",
        text(&out.stdout)
    );
    s.stop().await;
}
