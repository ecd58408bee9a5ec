//! The real server, in-process on port 0, against both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{error_of, Backend, TestServer};

async fn health_reports_the_store(backend: Backend, expected: &str) {
    let server = TestServer::start(backend).await;
    let resp = server.get("/health").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"]["backend"], expected);
    assert_eq!(body["store"]["ok"], true);
    assert!(body["store"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["redis"]["configured"], false);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    server.stop().await;
}

#[tokio::test]
async fn health_reports_sqlite_ok() {
    health_reports_the_store(Backend::Sqlite, "sqlite").await;
}

#[tokio::test]
async fn health_reports_mongodb_ok() {
    health_reports_the_store(Backend::Mongodb, "mongodb").await;
}

#[tokio::test]
async fn health_reports_redis_when_configured() {
    let server = TestServer::start_with(Backend::Sqlite, |v| {
        v.insert("REDIS_URL".into(), common::redis_url());
    })
    .await;
    let body: serde_json::Value = server.get("/health").await.json().await.unwrap();
    assert_eq!(body["redis"]["configured"], true);
    assert_eq!(body["redis"]["ok"], true);
    server.stop().await;
}

#[tokio::test]
async fn health_is_503_degraded_when_redis_is_down() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start_with(Backend::Sqlite, |v| {
        v.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
    })
    .await;
    let resp = server.get("/health").await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["redis"]["ok"], false);
    assert_eq!(body["store"]["ok"], true);
    let text = body.to_string();
    assert!(
        !text.contains("refused"),
        "failure causes stay in the log: {text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_error_has_the_json_shape() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (code, body) = error_of(server.get("/no/such/route").await, 404).await;
    assert_eq!(code, "not_found", "{body}");
    let (code, _) = error_of(
        server
            .client
            .post(server.url("/health"))
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    assert_eq!(code, "method_not_allowed");
    let (code, _) = error_of(server.get("/api/v1/tenants/not-a-uuid").await, 401).await;
    assert_eq!(code, "unauthenticated");
    let bad_json = server
        .client
        .post(server.url("/api/v1/auth/forgot-password"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(bad_json, 400).await;
    assert_eq!(code, "malformed_body");
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let server = TestServer::start(Backend::Sqlite).await;
    for _ in 0..3 {
        assert_eq!(server.get("/health").await.status(), 200);
    }
    assert_eq!(server.get("/missing").await.status(), 404);
    let resp = server.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            r#"imix_http_requests_total{method="GET",route="get_health",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"imix_http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("imix_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("/missing"), "raw paths never become labels");
    server.stop().await;
}

#[tokio::test]
async fn openapi_spec_and_swagger_ui_are_served() {
    let server = TestServer::start(Backend::Sqlite).await;
    let spec: serde_json::Value = server.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["paths"]["/health"]["get"].is_object());
    assert!(
        spec["components"]["schemas"]["ErrorBody"].is_object()
            || spec["paths"]["/health"].is_object()
    );
    let ui = server.get("/docs").await;
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
    server.stop().await;
}

#[tokio::test]
async fn committed_openapi_spec_matches_the_code() {
    // docs/openapi.json is what integrators read; it must not drift from the code.
    // Regenerate with: IMIX_UPDATE_OPENAPI=1 cargo test -p imix-server --test server committed_openapi
    let server = TestServer::start(Backend::Sqlite).await;
    let live = server.get("/openapi.json").await.text().await.unwrap();
    server.stop().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("IMIX_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &live).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let as_json = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    assert!(
        as_json(&committed).is_some() && as_json(&committed) == as_json(&live),
        "docs/openapi.json is stale: regenerate it with IMIX_UPDATE_OPENAPI=1 (see this test)"
    );
}

#[tokio::test]
async fn graceful_shutdown_completes_and_restart_keeps_the_secret_key() {
    let server = TestServer::start(Backend::Sqlite).await;
    assert_eq!(server.get("/health").await.status(), 200);
    let key_path = server.dir.path().join("data/secret_key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(key.len() >= 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let tmp = server.stop().await;
    let dir = tmp.path().to_owned();

    // Same directories, second start: the generated key is reused, not replaced.
    let config =
        imix_server::config::Config::from_vars(common::base_vars(&dir, Backend::Sqlite)).unwrap();
    let state = imix_server::state::AppState::start(config).await.unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(state.secret_key.expose_secret(), key.trim());
    drop(tmp);
}
