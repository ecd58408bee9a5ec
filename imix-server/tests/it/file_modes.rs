//! Issue 8 item 11: started on a fresh data directory, the `imix-server` binary creates its
//! database, WAL and shared-memory files, blobs, generated secret key and log files `0600`,
//! and its directories `0700`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Backend, ADMIN_PASSWORD, DEFAULT_ADMIN_PASSWORD};
use serde_json::{json, Value};

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
];

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Starts `serve` on a free port and waits for its "ready" line.
fn start(dir: &Path) -> (Running, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imix-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IMIX_ENV_FILE", "/dev/null")
        .env("IMIX_BIND", format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in common::base_vars(dir, Backend::Sqlite) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "server did not become ready");
        match lines.next() {
            Some(Ok(line)) if line.contains("imix-server ready") => break,
            Some(_) => continue,
            None => panic!("server exited before becoming ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Running(child), format!("http://127.0.0.1:{port}"))
}

async fn token(client: &reqwest::Client, base: &str, password: &str) -> String {
    let resp = client
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin@example.com"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_creates_only_private_data_and_log_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start(dir.path());
    let client = reqwest::Client::new();

    // Some writes: a password change, a tenant, a logo (a blob).
    let first = token(&client, &base, DEFAULT_ADMIN_PASSWORD).await;
    let resp = client
        .post(format!("{base}/api/v1/auth/change-password"))
        .bearer_auth(&first)
        .json(&json!({"current_password": DEFAULT_ADMIN_PASSWORD, "new_password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let admin = token(&client, &base, ADMIN_PASSWORD).await;
    let tenant: Value = client
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Private"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = tenant["id"].as_str().unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(PNG)
            .file_name("logo.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let resp = client
        .put(format!("{base}/api/v1/tenants/{id}/logo"))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // While the server runs, so that the WAL and shared-memory files exist.
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let db = data.join(imix_core::store::sqlite::DATABASE_FILE);
    let mut files = vec![
        db.clone(),
        data.join(imix_server::state::SECRET_KEY_FILE),
        logs.join("backend.log"),
        logs.join("whatsapp.log"),
    ];
    files.extend(
        imix_core::store::private_files::sqlite_companions(&db)
            .into_iter()
            .take(2),
    );
    let blobs: Vec<_> = std::fs::read_dir(data.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    files.extend(blobs);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for dir in [&data, &data.join("blobs"), &logs] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
}
