//! Contact import as a background job, end to end on both stores: a large file shows
//! its progress while it is imported, survives a `kill -9` of the server mid-import (the
//! restarted server resumes it once the dead worker's lease runs out, and no row is
//! counted twice: created + updated + rejected = rows, Max Contacts' count = contacts
//! stored); rejected rows are reported with row, code, field and reason, capped at 1,000;
//! another tenant's import id is 404; a refused file creates no job.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Backend, TestServer};
use serde_json::{json, Value};

on_both_backends!(
    a_large_import_shows_progress_and_resumes_after_kill_9_without_double_counting,
    rejected_rows_are_reported_capped_and_another_tenant_sees_no_import,
);

/// Rows of the large file: 4,000 by default, so both backends finish within a test run on
/// a loaded 2-core machine (debug builds import some 10-40 rows/s there);
/// `IMIX_TEST_IMPORT_ROWS=20000` runs it at full size.
fn rows() -> usize {
    std::env::var("IMIX_TEST_IMPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
}

struct Tenant {
    id: String,
    admin: String,
}

/// A tenant with an admin on `s`.
async fn tenant(s: &TestServer, platform: &str, name: &str) -> Tenant {
    let t = s.create_tenant(platform, json!({ "name": name })).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            platform,
            json!({"email": format!("owner@{}.example", name.to_lowercase()), "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": id}),
        )
        .await;
    Tenant { id, admin }
}

/// Posts `csv` as an import: `(status, body, Location)`.
async fn post_import(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
    csv: impl Into<Vec<u8>>,
    query: &str,
) -> (u16, Value, Option<String>) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.into())
            .file_name("big.csv")
            .mime_str("text/csv")
            .unwrap(),
    );
    let resp = client
        .post(format!(
            "{base}/api/v1/tenants/{tenant}/contacts/import{query}"
        ))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), location)
}

async fn get(client: &reqwest::Client, base: &str, token: &str, path: &str) -> (u16, Value) {
    let resp = client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The server binary on `vars`, listening on `port`; killed (SIGKILL) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_server(
    dir: &std::path::Path,
    vars: &std::collections::HashMap<String, String>,
) -> (Process, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imix-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IMIX_ENV_FILE", "/dev/null")
        .env("IMIX_BIND", format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = Process(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the server did not start");
        if let Ok(resp) = client.get(format!("{base}/health")).send().await {
            if resp.status().is_success() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// Row `n`'s phone number: distinct valid French mobile numbers.
fn phone(n: usize) -> String {
    format!("+3361{n:07}")
}

async fn a_large_import_shows_progress_and_resumes_after_kill_9_without_double_counting(
    backend: Backend,
) {
    // Users and the tenant through an in-process server; the import through the binary,
    // so that it can be killed for real.
    let dir = tempfile::tempdir().unwrap();
    let vars = common::base_vars(dir.path(), backend);
    let s = TestServer::start_in(dir, vars.clone()).await;
    let platform = s.admin().await;
    let t = tenant(&s, &platform, "Alpha").await;
    let dir = s.stop().await;

    let total = rows();
    let mut csv = String::from("phone,name,attr:n:number\n");
    for n in 0..total {
        // Every 1,000th row is invalid (its number is too short).
        if n % 1_000 == 999 {
            csv.push_str(&format!("12{n},Bad {n},{n}\n"));
        } else {
            csv.push_str(&format!("{},Customer {n},{n}\n", phone(n)));
        }
    }
    let bad = total / 1_000;

    let client = reqwest::Client::new();
    let (first, base) = spawn_server(dir.path(), &vars).await;
    let (status, job, location) = post_import(&client, &base, &t.admin, &t.id, csv, "").await;
    assert_eq!(status, 202, "{job}");
    assert!(
        job["status"] == "queued" || job["status"] == "running",
        "{job}"
    );
    assert_eq!(job["total_rows"], total);
    assert_eq!(job["processed_rows"], 0);
    let location = location.unwrap();
    assert_eq!(
        location,
        format!(
            "/api/v1/tenants/{}/contacts/imports/{}",
            t.id,
            job["id"].as_str().unwrap()
        )
    );

    // Progress shows while it runs; kill -9 once a quarter of the rows are saved.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    let at_kill = loop {
        assert!(Instant::now() < deadline, "no progress: {seen:?}");
        let (status, job) = get(&client, &base, &t.admin, &location).await;
        assert_eq!(status, 200, "{job}");
        let done = job["processed_rows"].as_u64().unwrap();
        assert_ne!(job["status"], "done", "finished before it could be killed");
        if seen.last() != Some(&done) {
            seen.push(done);
        }
        if done >= (total / 4) as u64 {
            assert_eq!(job["status"], "running");
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(first); // SIGKILL: no shutdown hook runs, the job stays leased.
    assert!(
        seen.len() >= 2,
        "progress was seen moving: {seen:?} (up to {at_kill})"
    );

    // The restarted server takes the job again once the dead worker's lease runs out.
    let (_second, base) = spawn_server(dir.path(), &vars).await;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let job = loop {
        assert!(Instant::now() < deadline, "the import did not resume");
        let (status, job) = get(&client, &base, &t.admin, &location).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] == "done" || job["status"] == "failed" {
            break job;
        }
        assert!(
            job["processed_rows"].as_u64().unwrap() >= at_kill["processed_rows"].as_u64().unwrap(),
            "progress never goes back: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["processed_rows"], total, "{job}");
    assert_eq!(
        job["created"],
        total - bad,
        "rows redone after the crash count once: {job}"
    );
    assert_eq!(job["updated"], 0, "{job}");
    assert_eq!(job["rejected"], bad, "{job}");
    let rejections = job["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), bad, "{job}");
    assert_eq!(rejections[0]["row"], 1_001, "{job}");
    assert_eq!(rejections[0]["code"], "invalid_field");
    assert_eq!(rejections[0]["field"], "phone");
    assert!(job["finished_at"].is_string());

    // As many contacts stored and counted against Max Contacts as created.
    let (_, usage) = get(
        &client,
        &base,
        &t.admin,
        &format!("/api/v1/tenants/{}/usage", t.id),
    )
    .await;
    // The counter is exact unless the kill fell between rows' slot reservations and their
    // inserts (two writes): rows are imported 32 at a time, so up to 32 slots stay taken
    // until the counts are reconciled.
    let counted = usage["counts"]["contacts"].as_u64().unwrap();
    assert!(
        counted >= (total - bad) as u64 && counted <= (total - bad) as u64 + 32,
        "{usage}"
    );
    let export = client
        .get(format!("{base}/api/v1/tenants/{}/contacts/export", t.id))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(export.as_bytes());
    assert_eq!(reader.records().count(), total - bad);

    // The list shows it, without the rejected rows.
    let (status, list) = get(
        &client,
        &base,
        &t.admin,
        &format!("/api/v1/tenants/{}/contacts/imports", t.id),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["id"], job["id"]);
    assert_eq!(list["items"][0]["created"], total - bad);
    assert!(list["items"][0]["rejections"].is_null());
}

async fn rejected_rows_are_reported_capped_and_another_tenant_sees_no_import(backend: Backend) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let s = TestServer::start(backend).await;
    let platform = s.admin().await;
    let a = tenant(&s, &platform, "Alpha").await;
    let b = tenant(&s, &platform, "Beta").await;

    // 1,200 rejected rows among 1,203: the report keeps the first 1,000 and says so.
    let mut csv = String::from("phone,opted_out\n");
    csv.push_str(&format!("{},no\n", phone(1)));
    for n in 0..1_200 {
        csv.push_str(&format!("{},maybe{n}\n", phone(100 + n)));
    }
    csv.push_str(&format!("{},yes\n{},\n", phone(2), phone(1)));
    let (status, job, location) =
        post_import(&s.client, &s.base, &a.admin, &a.id, csv, "?wait=true").await;
    let location = location.unwrap_or_else(|| {
        let mut logs = String::new();
        for f in std::fs::read_dir(s.dir.path().join("logs")).unwrap() {
            logs.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap_or_default());
        }
        panic!("{status} {job}\n{logs}")
    });
    let mut job = job;
    if status == 202 {
        // Slower than the wait: follow it.
        for _ in 0..600 {
            if job["status"] == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            job = s.get_json(&a.admin, &location).await.1;
        }
    } else {
        assert_eq!(status, 200, "{job}");
    }
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["created"], 2, "{job}");
    assert_eq!(job["updated"], 1, "{job}");
    assert_eq!(job["rejected"], 1_200);
    let rejections = job["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 1_000);
    assert_eq!(job["rejections_truncated"], true);
    assert_eq!(
        rejections[0],
        json!({"row": 3, "code": "invalid_field", "field": "opted_out", "reason": "opted_out: is not true or false"})
    );
    assert_eq!(rejections[999]["row"], 1_002);

    // Another tenant: A's import is not found through B's paths, and A's are refused.
    let id = job["id"].as_str().unwrap();
    let (status, body) = s
        .get_json(
            &b.admin,
            &format!("/api/v1/tenants/{}/contacts/imports/{id}", b.id),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, list) = s
        .get_json(
            &b.admin,
            &format!("/api/v1/tenants/{}/contacts/imports", b.id),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]));
    let (status, _) = s.get_json(&b.admin, &location).await;
    assert!(status == 403 || status == 404, "{status}");
    let (status, _) = s
        .get_json(
            &a.admin,
            &format!("/api/v1/tenants/{}/contacts/imports/not-an-id", a.id),
        )
        .await;
    assert_eq!(status, 404);

    // Bad files are refused before any job exists: not CSV, no phone column.
    for bad in [
        b"name\nNo phone column\n".to_vec(),
        b"phone\n+33612345678\n\xff\xfe\n".to_vec(),
    ] {
        let (status, body, location) =
            post_import(&s.client, &s.base, &a.admin, &a.id, bad, "").await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["details"]["field"], "file", "{body}");
        assert!(location.is_none());
    }
    let (_, list) = s
        .get_json(
            &a.admin,
            &format!("/api/v1/tenants/{}/contacts/imports", a.id),
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    s.stop().await;
}
