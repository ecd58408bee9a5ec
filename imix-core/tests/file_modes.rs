//! The embedded store keeps its files private: the database, its WAL and shared-memory
//! files and every blob are `0600`, its directories `0700` (issue 8 item 11).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use imix_core::model::{SettingsDoc, SettingsScope};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_sqlite_store_creates_only_private_files() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = imix_core::store::sqlite::open(&data).await.unwrap();
    store.admin.migrate().await.unwrap();
    store
        .settings
        .insert(&SettingsDoc::new(
            SettingsScope::Platform,
            "private",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    store
        .blobs
        .put("tenants/x/logos/y", "image/png", Bytes::from_static(b"png"))
        .await
        .unwrap();

    let db = data.join(imix_core::store::sqlite::DATABASE_FILE);
    let mut files = vec![db.clone()];
    for companion in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(companion);
        files.push(name.into());
    }
    let blobs: Vec<_> = std::fs::read_dir(data.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    files.extend(blobs);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for dir in [&data, &data.join("blobs")] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_world_readable_database_is_narrowed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    drop(store);
    let db = dir.path().join(imix_core::store::sqlite::DATABASE_FILE);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store
        .settings
        .insert(&SettingsDoc::new(
            SettingsScope::Platform,
            "again",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    assert_eq!(mode(&db), 0o600);
}
