//! An acknowledged write survives `kill -9`: a child process (this test binary, re-executed)
//! inserts settings documents into the SQLite store and reports each acknowledged insert on stdout; the
//! parent kills it with SIGKILL mid-stream and checks that every acknowledged document is there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use imix_core::{
    id::TenantId,
    model::{SettingsDoc, SettingsScope},
};

const CHILD_ENV: &str = "IMIX_DURABILITY_CHILD_DIR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return child_writer(dir).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.parse::<TenantId>().unwrap());
            if acked.len() == 200 {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 200);

    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    for id in acked {
        let found = store
            .settings
            .get(SettingsScope::Tenant(id), "durable")
            .await
            .unwrap();
        assert!(found.is_some(), "acknowledged document of {id} lost");
    }
}

async fn child_writer(dir: String) {
    let store = imix_core::store::sqlite::open(std::path::Path::new(&dir))
        .await
        .unwrap();
    store.admin.migrate().await.unwrap();
    let mut stdout = std::io::stdout();
    for i in 0.. {
        let id = TenantId::new();
        let doc = SettingsDoc::new(
            SettingsScope::Tenant(id),
            "durable",
            serde_json::json!({ "n": i }),
        );
        store.settings.insert(&doc).await.unwrap();
        writeln!(stdout, "ACK {id}").unwrap();
        stdout.flush().unwrap();
    }
}
