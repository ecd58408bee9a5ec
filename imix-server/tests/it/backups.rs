//! System backups end to end, on both stores: create (a job), list, download and check the
//! archive against its manifest; restore after changes; damaged and foreign uploads refused
//! with nothing changed; tenant admins refused; retention; and a backup taken on one store
//! restored into the other (SQLite → MongoDB and back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{io::Read, time::Duration};

use common::{error_of, Backend, TestServer, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

on_both_backends!(
    a_backup_is_created_listed_downloaded_and_matches_its_manifest,
    a_restore_brings_the_data_back,
    damaged_and_foreign_uploads_are_refused_and_nothing_changes,
    only_platform_admins_manage_backups,
    retention_keeps_the_last_backups_of_each_kind,
);

const BACKUPS: &str = "/api/v1/system/backups";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";

/// A server that leaves its (large, debug) executable out of backups unless `with_exe`.
async fn server(backend: Backend, with_exe: bool, keep: Option<usize>) -> TestServer {
    TestServer::start_with(backend, |vars| {
        vars.insert(
            "IMIX_BACKUP_INCLUDE_EXECUTABLE".into(),
            with_exe.to_string(),
        );
        vars.insert("SECRET_KEY".into(), "k".repeat(48));
        if let Some(keep) = keep {
            vars.insert("IMIX_BACKUP_KEEP".into(), keep.to_string());
        }
    })
    .await
}

/// A tenant with a user, a contact and a document (a blob); returns the tenant's id.
async fn populate(s: &TestServer, admin: &str, name: &str) -> String {
    let t = s.create_tenant(admin, json!({"name": name})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    s.user_with_token(
        admin,
        json!({"email": format!("boss@{}.example", name.to_lowercase()), "first_name": "B",
               "last_name": "C", "role": "admin", "tenant_id": id}),
    )
    .await;
    let (status, contact) = s
        .send_json(
            admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/contacts"),
            json!({"phone": "+33 6 12 34 56 78", "name": "Aminata"}),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let resp = s
        .call(
            admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/documents"),
        )
        .multipart(
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(PDF)
                    .file_name("contract.pdf")
                    .mime_str("application/pdf")
                    .unwrap(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    id
}

/// Starts a backup and waits until it is done; returns it as listed.
pub(crate) async fn backup(s: &TestServer, admin: &str) -> Value {
    let (status, job) = s.send_json(admin, Method::POST, BACKUPS, json!({})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(job["kind"], "manual");
    let id = job["id"].as_str().unwrap().to_owned();
    wait_done(s, admin, &id).await
}

async fn wait_done(s: &TestServer, admin: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, b) = s.get_json(admin, &format!("{BACKUPS}/{id}")).await;
        assert_eq!(status, 200, "{b}");
        match b["status"].as_str() {
            Some("done") => return b,
            Some("running") => {}
            _ => panic!("backup did not finish: {b}"),
        }
        assert!(std::time::Instant::now() < deadline, "backup too slow");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn download(
    s: &TestServer,
    admin: &str,
    id: &str,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let resp = s
        .call(admin, Method::GET, &format!("{BACKUPS}/{id}/download"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    (headers, resp.bytes().await.unwrap().to_vec())
}

/// Every file of an archive, in order.
pub(crate) fn files_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// The file `name` of `files`.
pub(crate) fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files.iter().find(|(n, _)| n == name).unwrap().1
}

/// `files` as a tar.gz, in the given order (the manifest last).
pub(crate) fn archive_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in files.iter().filter(|(n, _)| *n != "manifest.json") {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        builder.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    if let Some((_, manifest)) = files.iter().find(|(n, _)| n == "manifest.json") {
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        builder
            .append_data(&mut h, "manifest.json", manifest.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

pub(crate) async fn upload(s: &TestServer, admin: &str, bytes: Vec<u8>) -> reqwest::Response {
    s.call(admin, Method::POST, &format!("{BACKUPS}/upload"))
        .multipart(
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name("backup.tar.gz")
                    .mime_str("application/gzip")
                    .unwrap(),
            ),
        )
        .send()
        .await
        .unwrap()
}

async fn list(s: &TestServer, admin: &str) -> Vec<Value> {
    let (status, body) = s.get_json(admin, BACKUPS).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn a_backup_is_created_listed_downloaded_and_matches_its_manifest(backend: Backend) {
    let s = server(backend, true, None).await;
    let admin = s.admin().await;
    let tenant = populate(&s, &admin, "Archive").await;
    let done = backup(&s, &admin).await;
    let id = done["id"].as_str().unwrap();
    assert_eq!(done["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(done["kind"], "manual");

    let items = list(&s, &admin).await;
    assert_eq!(items.len(), 1);
    let listed = &items[0];
    for field in ["id", "version", "created_at", "size", "kind", "status"] {
        assert!(!listed[field].is_null(), "{field} in {listed}");
    }
    assert_eq!(listed["status"], "done");

    let (headers, bytes) = download(&s, &admin, id).await;
    assert_eq!(bytes.len() as u64, listed["size"].as_u64().unwrap());
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"imix-backup-")
            && disposition.ends_with(&format!("{id}.tar.gz\"")),
        "{disposition}"
    );
    let files = files_of(&bytes);
    let manifest: Value = serde_json::from_slice(file(&files, "manifest.json")).unwrap();
    assert_eq!(manifest["format"], "imix-backup");
    assert_eq!(manifest["id"], id);
    assert_eq!(manifest["kind"], "manual");
    assert_eq!(manifest["backend"], s_backend(backend));
    assert!(manifest["schema"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("tenancy/")));
    // Every file but the manifest is listed with its size and SHA-256.
    assert_eq!(
        manifest["files"].as_object().unwrap().len(),
        files.len() - 1
    );
    for (name, data) in files.iter().filter(|(n, _)| *n != "manifest.json") {
        let listed = &manifest["files"][name];
        assert_eq!(listed["size"].as_u64(), Some(data.len() as u64), "{name}");
        assert_eq!(
            listed["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(data)),
            "{name}"
        );
    }
    // The running executable is in it.
    let exe = manifest["executable"].as_str().unwrap();
    assert_eq!(
        file(&files, exe).len() as u64,
        std::fs::metadata(std::env::current_exe().unwrap())
            .unwrap()
            .len()
    );
    // Records of every capability, and the document's bytes.
    let counts = &manifest["counts"];
    for kind in ["tenant", "user", "contact", "audit", "blob"] {
        assert!(counts[kind].as_u64().unwrap() >= 1, "{kind}: {counts}");
    }
    let records: String = files
        .iter()
        .filter(|(n, _)| n.starts_with("records/"))
        .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
        .collect();
    assert!(records.contains(&tenant) && records.contains("Aminata"));
    assert!(files.iter().any(|(_, d)| d.as_slice() == PDF));
    // The secret key file is never in a backup.
    assert!(!files.iter().any(|(k, _)| k.contains("secret")));

    // The actions are in the audit log.
    let (_, audit) = s.get_json(&admin, "/api/v1/audit-log?limit=50").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actions.contains(&"backup.create") && actions.contains(&"backup.download"),
        "{audit}"
    );

    // Unknown ids are 404; deleting removes it from the list.
    let (status, _) = s
        .get_json(&admin, &format!("{BACKUPS}/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .get_json(&admin, &format!("{BACKUPS}/../../secret_key/download"))
        .await;
    assert_eq!(status, 404);
    let resp = s
        .call(&admin, Method::DELETE, &format!("{BACKUPS}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(list(&s, &admin).await.is_empty());
    s.stop().await;
}

fn s_backend(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Mongodb => "mongodb",
    }
}

/// What a restore must bring back: the tenants' names, contacts and documents.
async fn state_of(s: &TestServer, admin: &str) -> Value {
    let (_, tenants) = s.get_json(admin, "/api/v1/tenants?limit=100").await;
    let mut out = Vec::new();
    for t in tenants["items"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        let (_, contacts) = s
            .get_json(admin, &format!("/api/v1/tenants/{id}/contacts"))
            .await;
        let (_, docs) = s
            .get_json(admin, &format!("/api/v1/tenants/{id}/documents"))
            .await;
        let mut doc_bytes = Vec::new();
        for d in docs["items"].as_array().cloned().unwrap_or_default() {
            let resp = s
                .call(
                    admin,
                    Method::GET,
                    &format!(
                        "/api/v1/tenants/{id}/documents/{}",
                        d["id"].as_str().unwrap()
                    ),
                )
                .send()
                .await
                .unwrap();
            doc_bytes.push(hex::encode(resp.bytes().await.unwrap()));
        }
        let names: Vec<Value> = contacts["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["id"], c["name"], c["phone"]]))
            .collect();
        out.push(json!({"id": id, "name": t["name"], "contacts": names, "documents": doc_bytes}));
    }
    Value::Array(out)
}

async fn a_restore_brings_the_data_back(backend: Backend) {
    let s = server(backend, false, None).await;
    let admin = s.admin().await;
    let tenant = populate(&s, &admin, "Before").await;
    let before = state_of(&s, &admin).await;
    let taken = backup(&s, &admin).await;
    let id = taken["id"].as_str().unwrap();

    // Change everything: rename, delete the contact and the document, add a tenant.
    let (status, _) = s
        .send_json(
            &admin,
            Method::PATCH,
            &format!("/api/v1/tenants/{tenant}"),
            json!({"name": "After"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, contacts) = s
        .get_json(&admin, &format!("/api/v1/tenants/{tenant}/contacts"))
        .await;
    let contact = contacts["items"][0]["id"].as_str().unwrap();
    let resp = s
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/tenants/{tenant}/contacts/{contact}"),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    populate(&s, &admin, "Extra").await;
    assert_ne!(state_of(&s, &admin).await, before);

    let (status, restored) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("{BACKUPS}/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert!(restored["restored_records"].as_u64().unwrap() > 5);
    let pre = restored["pre_restore_backup_id"].as_str().unwrap();

    // The admin's token still works (the user is restored with the same id).
    assert_eq!(state_of(&s, &admin).await, before);
    // The count-limit counters follow the restored records: one contact again.
    let (_, usage) = s
        .get_json(&admin, &format!("/api/v1/tenants/{tenant}/usage"))
        .await;
    assert_eq!(
        usage["counts"]["contacts"]
            .as_u64()
            .or(usage["contacts"].as_u64()),
        Some(1),
        "{usage}"
    );
    // The pre-restore backup holds the changed data, and restoring it goes back to it.
    let items = list(&s, &admin).await;
    let pre_listed = items.iter().find(|b| b["id"] == pre).unwrap();
    assert_eq!(pre_listed["kind"], "pre-restore");
    assert_eq!(pre_listed["status"], "done");
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("{BACKUPS}/{pre}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let after = state_of(&s, &admin).await;
    assert_eq!(after.as_array().unwrap().len(), 2);
    assert!(after.to_string().contains("\"After\""));
    // The restore is in the (restored) audit log.
    let (_, audit) = s.get_json(&admin, "/api/v1/audit-log?limit=20").await;
    assert!(audit.to_string().contains("backup.restore"), "{audit}");
    s.stop().await;
}

async fn damaged_and_foreign_uploads_are_refused_and_nothing_changes(backend: Backend) {
    let s = server(backend, false, None).await;
    let admin = s.admin().await;
    populate(&s, &admin, "Kept").await;
    let taken = backup(&s, &admin).await;
    let id = taken["id"].as_str().unwrap().to_owned();
    let (_, bytes) = download(&s, &admin, &id).await;
    let before = state_of(&s, &admin).await;
    let listed = list(&s, &admin).await;

    // A records file changed after the manifest was written.
    let mut files = files_of(&bytes);
    let records = files
        .iter()
        .map(|(k, _)| k.clone())
        .find(|k| k.starts_with("records/"))
        .unwrap();
    let data = &mut files.iter_mut().find(|(k, _)| *k == records).unwrap().1;
    let at = data.len() / 2;
    data[at] = if data[at] == b'a' { b'b' } else { b'a' };
    let resp = upload(&s, &admin, archive_of(&files)).await;
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "backup_corrupt", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&records),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["field"], "file");

    // Cut short.
    let resp = upload(&s, &admin, bytes[..bytes.len() / 2].to_vec()).await;
    let (code, _) = error_of(resp, 422).await;
    assert_eq!(code, "backup_corrupt");

    // Not a backup.
    let resp = upload(&s, &admin, b"PK\x03\x04 a zip, or anything else".to_vec()).await;
    let (code, _) = error_of(resp, 422).await;
    assert_eq!(code, "backup_foreign");

    // The same backup again: already listed.
    let resp = upload(&s, &admin, bytes.clone()).await;
    let (code, _) = error_of(resp, 409).await;
    assert_eq!(code, "backup_exists");

    // A damaged archive on disk is refused at restore, before anything changes.
    let path = s
        .dir
        .path()
        .join("data/backups")
        .join(format!("{id}.tar.gz"));
    let mut on_disk = std::fs::read(&path).unwrap();
    let at = on_disk.len() / 2;
    on_disk[at] ^= 0x55;
    std::fs::write(&path, &on_disk).unwrap();
    let resp = s
        .call(&admin, Method::POST, &format!("{BACKUPS}/{id}/restore"))
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 422).await;
    assert_eq!(code, "backup_corrupt");

    assert_eq!(state_of(&s, &admin).await, before);
    assert_eq!(list(&s, &admin).await.len(), listed.len());
    s.stop().await;
}

async fn only_platform_admins_manage_backups(backend: Backend) {
    let s = server(backend, false, None).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "Tenant"})).await;
    let (_, tenant_admin) = s
        .user_with_token(
            &admin,
            json!({"email": "boss@tenant.example", "first_name": "B", "last_name": "C",
                   "role": "admin", "tenant_id": t["id"]}),
        )
        .await;
    let taken = backup(&s, &admin).await;
    let id = taken["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, BACKUPS.to_owned()),
        (Method::POST, BACKUPS.to_owned()),
        (Method::GET, format!("{BACKUPS}/{id}")),
        (Method::GET, format!("{BACKUPS}/{id}/download")),
        (Method::POST, format!("{BACKUPS}/{id}/restore")),
        (Method::DELETE, format!("{BACKUPS}/{id}")),
    ] {
        let resp = s
            .call(&tenant_admin, method.clone(), &path)
            .send()
            .await
            .unwrap();
        error_of(resp, 403).await;
    }
    let resp = upload(&s, &tenant_admin, b"whatever".to_vec()).await;
    error_of(resp, 403).await;
    // No token: 401.
    let resp = s.get(BACKUPS).await;
    error_of(resp, 401).await;
    assert_eq!(list(&s, &admin).await.len(), 1);
    s.stop().await;
}

async fn retention_keeps_the_last_backups_of_each_kind(backend: Backend) {
    let s = server(backend, false, Some(2)).await;
    let admin = s.admin().await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(backup(&s, &admin).await["id"].as_str().unwrap().to_owned());
    }
    let ids: Vec<String> = list(&s, &admin)
        .await
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![made[2].clone(), made[1].clone()]);
    // A restore's pre-restore backup is a kind of its own: the manual ones stay.
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("{BACKUPS}/{}/restore", made[1]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let items = list(&s, &admin).await;
    assert_eq!(items.len(), 3);
    assert_eq!(
        items.iter().filter(|b| b["kind"] == "pre-restore").count(),
        1
    );
    s.stop().await;
}

/// A backup taken on one store, downloaded, uploaded to a fresh server on the other store
/// (the same secret key, as the docs say) and restored there.
async fn across(from: Backend, to: Backend) {
    let a = server(from, false, None).await;
    let admin = a.admin().await;
    populate(&a, &admin, "Moving").await;
    let expected = state_of(&a, &admin).await;
    let taken = backup(&a, &admin).await;
    let (_, bytes) = download(&a, &admin, taken["id"].as_str().unwrap()).await;
    a.stop().await;

    let b = server(to, false, None).await;
    let fresh_admin = b.admin().await;
    let resp = upload(&b, &fresh_admin, bytes).await;
    assert_eq!(resp.status(), 201);
    let uploaded: Value = resp.json().await.unwrap();
    assert_eq!(uploaded["backend"], s_backend(from));
    assert_eq!(uploaded["status"], "done");
    let (status, body) = b
        .send_json(
            &fresh_admin,
            Method::POST,
            &format!("{BACKUPS}/{}/restore", uploaded["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The fresh server's admin is gone with its data; the backup's admin signs in.
    let admin = b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    assert_eq!(state_of(&b, &admin).await, expected);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_mongodb() {
    across(Backend::Sqlite, Backend::Mongodb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_backup_restores_into_sqlite() {
    across(Backend::Mongodb, Backend::Sqlite).await;
}
