//! Backups of a store holding the shared primitives (settings, audit log, blobs): written,
//! verified, refused when damaged or foreign, restored, pruned, and an interrupted restore
//! completed at the next start. Capabilities' records are covered end to end by
//! `imix-server/tests/backups.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{io::Write, path::Path};

use bytes::Bytes;
use imix_core::{
    model::{AuditEntry, SettingsDoc, SettingsScope},
    store::{transfer::Transfer, Store},
};
use imix_update::backup::{
    verify, BackupError, BackupKind, Backups, BackupsConfig, Manifest, Progress, RestoreSummary,
};

async fn sqlite_store(dir: &Path) -> Store {
    let store = imix_core::store::sqlite::open(dir).await.unwrap();
    store.admin.migrate().await.unwrap();
    store
}

async fn fill(store: &Store, n: usize) {
    for i in 0..n {
        store
            .settings
            .insert(&SettingsDoc::new(
                SettingsScope::Platform,
                format!("key-{i}"),
                serde_json::json!({"i": i, "text": "x".repeat(100)}),
            ))
            .await
            .unwrap();
        store
            .audit
            .append(&AuditEntry::new(format!("action.{i}"), "thing"))
            .await
            .unwrap();
    }
    store
        .blobs
        .put("tenants/a/logo", "image/png", Bytes::from(vec![7u8; 5000]))
        .await
        .unwrap();
    store
        .blobs
        .put(
            &format!("documents/{}/long-name-{}", "d".repeat(120), "e".repeat(80)),
            "application/pdf",
            Bytes::from_static(b"%PDF-1.4 tiny"),
        )
        .await
        .unwrap();
}

fn service(store: &Store, dir: &Path, keep: usize, exe: Option<&Path>) -> Backups {
    Backups::new(
        store.clone(),
        Transfer::new(store),
        BackupsConfig {
            dir: dir.join("backups"),
            keep,
            app_version: "9.9.9".into(),
            executable: exe.map(Path::to_path_buf),
        },
    )
    .unwrap()
}

async fn snapshot(store: &Store) -> Vec<String> {
    use futures::TryStreamExt;
    let mut lines: Vec<String> = Transfer::new(store)
        .export()
        .map_ok(|r| serde_json::to_string(&r).unwrap())
        .try_collect()
        .await
        .unwrap();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_lists_every_file_with_its_checksum_and_restores_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir.path().join("data")).await;
    fill(&store, 40).await;
    let before = snapshot(&store).await;
    let exe = dir.path().join("imix-server");
    std::fs::write(&exe, vec![0x7fu8; 300_000]).unwrap();
    let backups = service(&store, dir.path(), 10, Some(&exe));

    let info = backups
        .create(BackupKind::Manual, &Progress::default())
        .await
        .unwrap();
    assert_eq!(info.counts.get("settings"), Some(&40));
    assert_eq!(info.counts.get("audit"), Some(&40));
    assert_eq!(info.counts.get("blob"), Some(&2));
    let path = backups.store().archive_path(&info.id).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), info.size);

    // The archive is a plain tar.gz: every file but the manifest is listed with its hash.
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&path).unwrap(),
    ));
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == "manifest.json" {
            manifest = Some(serde_json::from_slice(&data).unwrap());
        } else {
            names.push((
                name,
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)),
            ));
        }
    }
    let manifest = manifest.unwrap();
    assert_eq!(manifest.format, "imix-backup");
    assert_eq!(manifest.app_version, "9.9.9");
    assert_eq!(manifest.backend, "sqlite");
    assert!(manifest.schema.iter().any(|s| s.starts_with("core/")));
    assert_eq!(manifest.executable.as_deref(), Some("bin/imix-server"));
    assert_eq!(names.len(), manifest.files.len());
    for (name, sha) in &names {
        assert_eq!(&manifest.files[name].sha256, sha, "{name}");
    }
    assert!(names.iter().any(|(n, _)| n == "blob-data/tenants/a/logo"));

    // Change everything, then restore.
    store
        .blobs
        .put("tenants/a/logo", "image/png", Bytes::from_static(b"other"))
        .await
        .unwrap();
    store
        .blobs
        .put("tenants/b/new", "text/plain", Bytes::from_static(b"new"))
        .await
        .unwrap();
    fill_more(&store).await;
    assert_ne!(snapshot(&store).await, before);
    let progress = Progress::default();
    let outcome = backups.restore(&info.id, &progress).await.unwrap();
    assert_eq!(outcome.restored, 82);
    assert_eq!(snapshot(&store).await, before);
    // The pre-restore backup holds the changed data and is listed.
    let pre = outcome.pre_restore_backup.unwrap();
    let listed = backups.list().unwrap();
    assert!(listed
        .iter()
        .any(|b| b.id == pre && b.kind == BackupKind::PreRestore));
    assert!(!backups.is_restoring());
}

async fn fill_more(store: &Store) {
    store
        .settings
        .insert(&SettingsDoc::new(
            SettingsScope::Platform,
            "added-after",
            serde_json::json!(1),
        ))
        .await
        .unwrap();
}

/// Rewrites the archive at `from` into `to`, changing the file `victim` with `change`.
fn rewrite(from: &Path, to: &Path, victim: &str, change: impl Fn(&mut Vec<u8>)) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(from).unwrap(),
    ));
    let out = std::fs::File::create(to).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == victim {
            change(&mut data);
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        builder.append_data(&mut h, &name, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_foreign_and_newer_archives_are_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir.path().join("data")).await;
    fill(&store, 5).await;
    let backups = service(&store, dir.path(), 10, None);
    let info = backups
        .create(BackupKind::Manual, &Progress::default())
        .await
        .unwrap();
    let good = backups.store().archive_path(&info.id).unwrap();
    let before = snapshot(&store).await;
    let work = tempfile::tempdir().unwrap();

    // A flipped byte in a records file: its checksum no longer matches.
    let bad = work.path().join("bad.tar.gz");
    rewrite(&good, &bad, "records/000001.jsonl", |d| d[10] ^= 1);
    let err = verify(&bad, None).unwrap_err();
    assert!(
        matches!(&err, BackupError::Corrupt(m) if m.contains("records/000001.jsonl")),
        "{err}"
    );
    let err = backups
        .upload(std::fs::File::open(&bad).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Corrupt(_)), "{err}");

    // A blob's bytes changed.
    let bad_blob = work.path().join("bad-blob.tar.gz");
    rewrite(&good, &bad_blob, "blob-data/tenants/a/logo", |d| d[0] = 1);
    assert!(matches!(
        verify(&bad_blob, None),
        Err(BackupError::Corrupt(_))
    ));

    // Cut short: no manifest.
    let bytes = std::fs::read(&good).unwrap();
    let cut = work.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(verify(&cut, None), Err(BackupError::Corrupt(_))));

    // Not a backup at all.
    let text = work.path().join("notes.txt");
    std::fs::write(&text, "hello, not an archive").unwrap();
    assert!(matches!(verify(&text, None), Err(BackupError::Foreign(_))));
    let other = work.path().join("other.tar.gz");
    {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&other).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, "manifest.json", &b"{}\n"[..])
            .unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    assert!(matches!(verify(&other, None), Err(BackupError::Foreign(_))));

    // A newer archive format.
    let newer = work.path().join("newer.tar.gz");
    rewrite(&good, &newer, "manifest.json", |d| {
        let mut m: serde_json::Value = serde_json::from_slice(d).unwrap();
        m["format_version"] = 99.into();
        *d = serde_json::to_vec(&m).unwrap();
    });
    assert!(matches!(
        verify(&newer, None),
        Err(BackupError::Unsupported(_))
    ));

    // A newer schema: verified and listed, but its restore is refused before any change.
    let newer_schema = work.path().join("newer-schema.tar.gz");
    rewrite(&good, &newer_schema, "manifest.json", |d| {
        let mut m: serde_json::Value = serde_json::from_slice(d).unwrap();
        m["schema"]
            .as_array_mut()
            .unwrap()
            .push("core/0999_future".into());
        m["id"] = uuid::Uuid::now_v7().to_string().into();
        *d = serde_json::to_vec(&m).unwrap();
    });
    let uploaded = backups
        .upload(std::fs::File::open(&newer_schema).unwrap())
        .await
        .unwrap();
    assert!(uploaded.uploaded);
    let err = backups
        .restore(&uploaded.id, &Progress::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackupError::Unsupported(m) if m.contains("core step 999")),
        "{err}"
    );

    // The same archive twice.
    let again = backups
        .upload(std::fs::File::open(&good).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(again, BackupError::Exists(_)), "{again}");

    assert_eq!(snapshot(&store).await, before);
    // Only the good backup and the upload are listed; no pre-restore backup was taken.
    assert_eq!(backups.list().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_last_n_of_each_kind_and_jobs_run_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir.path().join("data")).await;
    fill(&store, 3).await;
    let backups = service(&store, dir.path(), 2, None);
    let mut made = Vec::new();
    for _ in 0..4 {
        made.push(
            backups
                .create(BackupKind::Manual, &Progress::default())
                .await
                .unwrap()
                .id,
        );
    }
    let scheduled = backups
        .create(BackupKind::Scheduled, &Progress::default())
        .await
        .unwrap();
    let listed: Vec<String> = backups.list().unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(listed, vec![scheduled.id, made[3].clone(), made[2].clone()]);

    // A job answers at once and runs in the background; a second one is refused meanwhile.
    let job = backups.start(BackupKind::Manual).unwrap();
    assert_eq!(job.status, imix_update::backup::JobStatus::Running);
    // It may already have finished; if not, a second start is refused.
    match backups.start(BackupKind::Manual) {
        Err(BackupError::Busy) => {}
        Ok(second) => assert_ne!(second.id, job.id),
        Err(e) => panic!("{e}"),
    }
    for _ in 0..200 {
        if backups.get(&job.id).unwrap().status == imix_update::backup::JobStatus::Done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        backups.get(&job.id).unwrap().status,
        imix_update::backup::JobStatus::Done
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_is_completed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = sqlite_store(&data).await;
    fill(&store, 10).await;
    let expected = snapshot(&store).await;
    let backups = service(&store, dir.path(), 10, None);
    let info = backups
        .create(BackupKind::Manual, &Progress::default())
        .await
        .unwrap();
    // A restore that died after wiping and importing part of the data: the marker is
    // there, the store is half full.
    imix_core::store::reset::wipe(&store).await.unwrap();
    fill_more(&store).await;
    let mut marker =
        std::fs::File::create(dir.path().join("backups/restore-in-progress.json")).unwrap();
    write!(
        marker,
        "{{\"backup\":\"{}\",\"pre_restore\":null}}",
        info.id
    )
    .unwrap();
    drop(marker);

    let summary = backups.resume_interrupted_restore().await.unwrap();
    assert_eq!(summary, Some(RestoreSummary::Completed(info.id.clone())));
    assert_eq!(snapshot(&store).await, expected);
    assert!(!dir.path().join("backups/restore-in-progress.json").exists());
    assert_eq!(backups.resume_interrupted_restore().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_on_sqlite_restores_into_mongodb() {
    let Ok(uri) = std::env::var("IMIX_TEST_MONGODB_URI") else {
        panic!("IMIX_TEST_MONGODB_URI is not set: source /tmp/svc/env.sh or run scripts/test.sh");
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_store(&dir.path().join("data")).await;
    fill(&sqlite, 20).await;
    let expected = snapshot(&sqlite).await;
    let from = service(&sqlite, dir.path(), 10, None);
    let info = from
        .create(BackupKind::Manual, &Progress::default())
        .await
        .unwrap();
    let archive = from.store().archive_path(&info.id).unwrap();

    let mongo =
        imix_core::store::mongo::open(&uri, &format!("imix_upd_{}", uuid::Uuid::now_v7().simple()))
            .await
            .unwrap();
    mongo.admin.migrate().await.unwrap();
    mongo
        .settings
        .insert(&SettingsDoc::new(
            SettingsScope::Platform,
            "already-there",
            serde_json::json!(true),
        ))
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let to = service(&mongo, other.path(), 10, None);
    let uploaded = to
        .upload(std::fs::File::open(&archive).unwrap())
        .await
        .unwrap();
    to.restore(&uploaded.id, &Progress::default())
        .await
        .unwrap();
    assert_eq!(snapshot(&mongo).await, expected);
}
