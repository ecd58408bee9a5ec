//! A real server on an ephemeral port, for integration tests. No sleeps: the listener is
//! bound before the server starts, so requests simply wait in the backlog.
#![allow(dead_code)]

use std::collections::HashMap;

use imix_server::config::Config;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), imix_server::ServerError>>>,
    pub dir: tempfile::TempDir,
}

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Mongodb,
}

pub fn mongodb_uri() -> String {
    std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!("IMIX_TEST_MONGODB_URI is not set: run scripts/test.sh, which starts a MongoDB-wire server")
    })
}

pub fn redis_url() -> String {
    std::env::var("IMIX_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("IMIX_TEST_REDIS_URL is not set: run scripts/test.sh, which starts redis-server")
    })
}

/// Variables for a server whose data and logs live in `dir`.
pub fn base_vars(dir: &std::path::Path, backend: Backend) -> HashMap<String, String> {
    let mut vars = HashMap::from([
        (
            "IMIX_DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
        (
            "IMIX_LOG_DIR".to_owned(),
            dir.join("logs").display().to_string(),
        ),
    ]);
    if let Backend::Mongodb = backend {
        vars.insert("MONGODB_URI".into(), mongodb_uri());
        vars.insert(
            "DB_NAME".into(),
            format!("imix_srv_{}", uuid::Uuid::now_v7().simple()),
        );
    }
    vars
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut HashMap<String, String>),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = base_vars(dir.path(), backend);
        tweak(&mut vars);
        let config = Config::from_vars(vars).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(imix_server::serve_with_listener(config, listener, async {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Stops the server, waits for it to finish, and hands back its directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.dir
    }
}

/// Asserts the JSON error shape and returns `(code, body)`.
pub async fn error_of(resp: reqwest::Response, status: u16) -> (String, serde_json::Value) {
    assert_eq!(resp.status().as_u16(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(ct.unwrap_or_default().starts_with("application/json"));
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body.get("error").expect("an `error` object");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["details"].is_object(), "{body}");
    (error["code"].as_str().unwrap().to_owned(), body)
}
