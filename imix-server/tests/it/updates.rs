//! System updates through the API, on both stores, against a local update server (static
//! files in a temp dir, served by a tiny poem server): every refusal with its code; only
//! platform admins; an install that replaces a real executable (a script in a temp dir),
//! with a pre-update backup, one install at a time, and the restart; and, after a rollback,
//! the old version putting the pre-update data back at start and reporting why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use common::{error_of, Backend, TestServer};
use ed25519_dalek::SigningKey;
use imix_update::update::{
    manifest::{generate_signing_key, public_key_to_base64, sign, MANIFEST_FILE, SIGNATURE_FILE},
    probation::{self, MarkerState},
    TARGET,
};
use poem::{handler, web::Path as UrlPath, EndpointExt, Route};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

on_both_backends!(
    every_refusal_has_its_code_and_a_good_release_shows_its_notes,
    only_platform_admins_manage_updates,
    an_install_backs_up_replaces_the_executable_and_restarts,
    a_rolled_back_update_puts_the_pre_update_data_back,
);

const CHECK: &str = "/api/v1/system/update";
const INSTALL: &str = "/api/v1/system/update/install";
pub(crate) const STATUS: &str = "/api/v1/system/update/status";
/// The version the test server runs.
pub(crate) const RUNNING: &str = env!("CARGO_PKG_VERSION");

/// The update server's files, and a gate artifact downloads wait on.
#[derive(Clone)]
struct Www {
    root: PathBuf,
    gate: Arc<tokio::sync::Semaphore>,
}

#[handler]
async fn file(UrlPath(path): UrlPath<String>, www: poem::web::Data<&Www>) -> poem::Response {
    if path.contains("..") {
        return poem::Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .finish();
    }
    if path.ends_with("imix-server-new") {
        // Downloads wait until the test opens the gate (one permit each).
        www.gate.acquire().await.unwrap().forget();
    }
    match std::fs::read(www.root.join(&path)) {
        Ok(bytes) => poem::Response::builder().body(bytes),
        Err(_) => poem::Response::builder()
            .status(poem::http::StatusCode::NOT_FOUND)
            .finish(),
    }
}

/// Serves `www` on an ephemeral port; answers its base URL.
async fn serve(www: Www) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let app = Route::new().at("/*path", poem::get(file)).data(www);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}/")
}

pub(crate) fn script(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"imix-server {version}\"\n").into_bytes()
}

pub(crate) fn run(exe: &Path) -> String {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Publishes a release in `dir`: its manifest (signed by `key`, or unsigned) and artifact.
fn publish(
    dir: &Path,
    key: Option<&SigningKey>,
    version: &str,
    target: &str,
    expires_in_hours: i64,
) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let _ = std::fs::remove_file(dir.join(SIGNATURE_FILE));
    let artifact = script(version);
    std::fs::write(dir.join("imix-server-new"), &artifact).unwrap();
    let manifest = serde_json::to_vec_pretty(&json!({
        "version": version,
        "released_at": Utc::now(),
        "notes": {"en": "## Faster inbox", "fr": "## Boîte de réception plus rapide"},
        "artifacts": {target: {"url": "imix-server-new", "size": artifact.len(),
            "sha256": hex::encode(sha2::Sha256::digest(&artifact))}},
        "min_version": "0.0.1",
        "expires_at": Utc::now() + chrono::Duration::hours(expires_in_hours),
    }))
    .unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), &manifest).unwrap();
    if let Some(key) = key {
        std::fs::write(dir.join(SIGNATURE_FILE), sign(key, version, &manifest)).unwrap();
    }
    manifest
}

/// A newer version than the running one.
pub(crate) fn next_version() -> String {
    let mut v: semver::Version = RUNNING.parse().unwrap();
    v.minor += 1;
    v.patch = 0;
    v.to_string()
}

pub(crate) struct Setup {
    key: SigningKey,
    www: Www,
    base: String,
    pub(crate) exe: PathBuf,
    _bin: tempfile::TempDir,
}

impl Setup {
    pub(crate) async fn new() -> Self {
        let bin = tempfile::tempdir().unwrap();
        let exe = bin.path().join("imix-server");
        std::fs::write(&exe, script(RUNNING)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let www = Www {
            root: bin.path().join("www"),
            gate: Arc::new(tokio::sync::Semaphore::new(1000)),
        };
        let base = serve(www.clone()).await;
        Self {
            key: generate_signing_key(),
            www,
            base,
            exe,
            _bin: bin,
        }
    }

    pub(crate) fn vars(&self, vars: &mut std::collections::HashMap<String, String>) {
        vars.insert("UPDATE_SERVER_URL".into(), format!("{}release/", self.base));
        vars.insert(
            "IMIX_UPDATE_PUBLIC_KEY".into(),
            public_key_to_base64(&self.key.verifying_key()),
        );
        vars.insert(
            "IMIX_UPDATE_EXECUTABLE".into(),
            self.exe.display().to_string(),
        );
        vars.insert("IMIX_UPDATE_HEALTH_TIMEOUT_SECS".into(), "60".into());
        vars.insert("IMIX_BACKUP_INCLUDE_EXECUTABLE".into(), "false".into());
        vars.insert("SECRET_KEY".into(), "u".repeat(48));
    }

    async fn server(&self, backend: Backend) -> TestServer {
        TestServer::start_with(backend, |vars| self.vars(vars)).await
    }

    fn release_dir(&self) -> PathBuf {
        self.www.root.join("release")
    }
}

async fn every_refusal_has_its_code_and_a_good_release_shows_its_notes(backend: Backend) {
    let s = Setup::new().await;
    let server = s.server(backend).await;
    let admin = server.admin().await;
    let dir = s.release_dir();
    let next = next_version();

    // Nothing published yet: the update server answers 404.
    let resp = server
        .call(&admin, Method::GET, CHECK)
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 502).await;
    assert_eq!(code, "update_server_unreachable");

    let refused = |code: &'static str| {
        let (server, admin) = (&server, &admin);
        async move {
            let resp = server.call(admin, Method::GET, CHECK).send().await.unwrap();
            let (got, body) = error_of(resp, 422).await;
            assert_eq!(got, code, "{body}");
            body
        }
    };
    // Unsigned.
    publish(&dir, None, &next, TARGET, 24);
    refused("update_signature_missing").await;
    // Tampered after signing (one word of the notes).
    let manifest = publish(&dir, Some(&s.key), &next, TARGET, 24);
    let tampered = String::from_utf8(manifest)
        .unwrap()
        .replace("Faster", "Slower");
    std::fs::write(dir.join(MANIFEST_FILE), tampered).unwrap();
    let body = refused("update_signature_invalid").await;
    assert_eq!(body["error"]["details"]["field"], "signature");
    // Signed with another key.
    publish(&dir, Some(&generate_signing_key()), &next, TARGET, 24);
    refused("update_signature_invalid").await;
    // Expired.
    publish(&dir, Some(&s.key), &next, TARGET, -1);
    refused("update_expired").await;
    // Another target.
    publish(&dir, Some(&s.key), &next, "sparc64-unknown-netbsd", 24);
    refused("update_no_artifact").await;
    // Older than the running version.
    publish(&dir, Some(&s.key), "0.0.1", TARGET, 24);
    refused("update_not_newer").await;
    // The running version itself: up to date, not an error.
    publish(&dir, Some(&s.key), RUNNING, TARGET, 24);
    let (status, body) = server.get_json(&admin, CHECK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["update_available"], false);
    assert_eq!(body["latest_version"], RUNNING);

    // A good release, with notes in the caller's language.
    publish(&dir, Some(&s.key), &next, TARGET, 24);
    let (status, body) = server.get_json(&admin, CHECK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["current_version"], RUNNING);
    assert_eq!(body["latest_version"], next.as_str());
    assert_eq!(body["update_available"], true);
    assert_eq!(body["notes"], "## Faster inbox");
    assert_eq!(body["notes_language"], "en");
    let (_, french) = server
        .user_with_token(
            &admin,
            json!({"email": "ops@platform.example", "first_name": "O", "last_name": "P",
                   "role": "admin", "default_language": "fr"}),
        )
        .await;
    let (status, body) = server.get_json(&french, CHECK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notes"], "## Boîte de réception plus rapide");
    assert_eq!(body["notes_language"], "fr");

    // That release is now the newest accepted: a validly signed older one that is still
    // newer than the running version is a rollback through the channel.
    let mut between: semver::Version = next.parse().unwrap();
    between.minor += 1;
    publish(&dir, Some(&s.key), &between.to_string(), TARGET, 24);
    server.get_json(&admin, CHECK).await;
    publish(&dir, Some(&s.key), &next, TARGET, 24);
    refused("update_older_than_accepted").await;

    // Nothing was installed by checking.
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
    let (_, status) = server.get_json(&admin, STATUS).await;
    assert_eq!(status["stage"], "idle", "{status}");
    server.stop().await;
}

async fn only_platform_admins_manage_updates(backend: Backend) {
    let s = Setup::new().await;
    publish(&s.release_dir(), Some(&s.key), &next_version(), TARGET, 24);
    let server = s.server(backend).await;
    let admin = server.admin().await;
    let tenant = server.create_tenant(&admin, json!({"name": "Acme"})).await;
    let (_, tenant_admin) = server
        .user_with_token(
            &admin,
            json!({"email": "boss@acme.example", "first_name": "B", "last_name": "C",
                   "role": "admin", "tenant_id": tenant["id"]}),
        )
        .await;
    for (method, path) in [
        (Method::GET, CHECK),
        (Method::POST, INSTALL),
        (Method::GET, STATUS),
    ] {
        let resp = server
            .call(&tenant_admin, method.clone(), path)
            .send()
            .await
            .unwrap();
        error_of(resp, 403).await;
        let resp = server
            .client
            .request(method, server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
    server.stop().await;
}

/// Polls the status until `done` says so (or the server stops answering: it restarted).
pub(crate) async fn wait_for(
    server: &TestServer,
    admin: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let Ok(resp) = server.call(admin, Method::GET, STATUS).send().await else {
            return last;
        };
        let Ok(body) = resp.json::<Value>().await else {
            return last;
        };
        if done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("status never got there: {last}");
}

async fn an_install_backs_up_replaces_the_executable_and_restarts(backend: Backend) {
    let s = Setup::new().await;
    let next = next_version();
    publish(&s.release_dir(), Some(&s.key), &next, TARGET, 24);
    let server = s.server(backend).await;
    let admin = server.admin().await;
    // Downloads wait at the gate: the install is held in its download.
    s.www.gate.acquire_many(1000).await.unwrap().forget();

    let (status, started) = server
        .send_json(&admin, Method::POST, INSTALL, json!({}))
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["target_version"], next.as_str());
    let downloading = wait_for(&server, &admin, |b| b["stage"] == "downloading").await;
    assert!(downloading["backup_id"].is_string(), "{downloading}");
    assert!(downloading["bytes_total"].as_u64().unwrap() > 0);
    // Only one install at a time.
    let resp = server
        .call(&admin, Method::POST, INSTALL)
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 409).await;
    assert_eq!(code, "update_busy");
    // The pre-update backup is in the list.
    let (_, backups) = server.get_json(&admin, "/api/v1/system/backups").await;
    let pre = backups["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == downloading["backup_id"])
        .unwrap()
        .clone();
    assert_eq!(pre["kind"], "pre-update", "{pre}");

    s.www.gate.add_permits(1);
    wait_for(&server, &admin, |b| b["stage"] == "restarting").await;
    // The server stops by itself to restart; the executable at the path is the new one.
    let dir = server.stop().await;
    assert_eq!(run(&s.exe), format!("imix-server {next}"));
    assert_eq!(
        run(&imix_update::update::swap::previous_path(&s.exe)),
        format!("imix-server {RUNNING}")
    );
    let state = dir.path().join("data/update");
    let marker = probation::read_marker(&state).unwrap().unwrap();
    assert_eq!(marker.state, MarkerState::Swapped);
    assert_eq!(marker.to_version.to_string(), next);
    assert_eq!(marker.backup_id, pre["id"].as_str().unwrap());
}

async fn a_rolled_back_update_puts_the_pre_update_data_back(backend: Backend) {
    let s = Setup::new().await;
    let next = next_version();
    publish(&s.release_dir(), Some(&s.key), &next, TARGET, 24);
    // The same variables (the same MongoDB database) for every start of this server.
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common::base_vars(dir.path(), backend);
    s.vars(&mut vars);
    let server = TestServer::start_in(dir, vars.clone()).await;
    let admin = server.admin().await;
    server
        .create_tenant(&admin, json!({"name": "Before"}))
        .await;
    let (status, _) = server
        .send_json(&admin, Method::POST, INSTALL, json!({}))
        .await;
    assert_eq!(status, 202);
    wait_for(&server, &admin, |b| b["stage"] == "restarting").await;
    let dir = server.stop().await;
    let state = dir.path().join("data/update");
    let mut marker = probation::read_marker(&state).unwrap().unwrap();

    // The new version ran and wrote data (played here by a normal start with the marker
    // set aside), then failed its health check: its watchdog marked the rollback and put
    // the previous executable back (as imix-update's tests show with real executables).
    std::fs::remove_file(state.join(probation::MARKER_FILE)).unwrap();
    let server = TestServer::start_in(dir, vars.clone()).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    server.create_tenant(&admin, json!({"name": "After"})).await;
    let dir = server.stop().await;
    marker.attempts = 1;
    marker.state = MarkerState::RollingBack;
    marker.reason = Some(format!(
        "version {next} did not answer its health check within 60 seconds"
    ));
    probation::write_marker(&state, &marker).unwrap();
    imix_update::update::swap::restore_previous(&s.exe).unwrap();

    // The old version starts: the pre-update data is back before it serves.
    let server = TestServer::start_in(dir, vars).await;
    let admin = server
        .sign_in("admin@example.com", common::ADMIN_PASSWORD)
        .await;
    let (_, tenants) = server.get_json(&admin, "/api/v1/tenants").await;
    let names = tenants.to_string();
    assert!(
        names.contains("Before") && !names.contains("After"),
        "{names}"
    );
    let (_, status) = server.get_json(&admin, STATUS).await;
    assert_eq!(status["stage"], "rolled-back", "{status}");
    assert_eq!(
        status["error"],
        format!("version {next} did not answer its health check within 60 seconds")
    );
    assert_eq!(status["target_version"], next.as_str());
    assert!(probation::read_marker(&state).unwrap().is_none());
    assert_eq!(run(&s.exe), format!("imix-server {RUNNING}"));
    server.stop().await;
}
