//! A real server on an ephemeral port, for integration tests. No sleeps: the listener is
//! bound before the server starts, so requests simply wait in the backlog.
#![allow(dead_code)]

use std::collections::HashMap;

pub mod outbound_world;

/// Generates `sqlite::<case>` and `mongodb::<case>` tests that call `super::<case>(backend)`.
/// Needs `Backend` in scope in the calling module.
#[allow(unused_macros)] // not every test crate uses it
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Sqlite).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Mongodb).await;
                }
            )*
        }
    };
}

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
        Self::start_full(backend, tweak, imix_server::state::ServerOptions::default()).await
    }

    /// A server whose account emails go to `mailer`.
    pub async fn start_recording(backend: Backend, mailer: imix_notify::RecordingMailer) -> Self {
        let options = imix_server::state::ServerOptions {
            mailer: Some(std::sync::Arc::new(mailer)),
        };
        Self::start_full(backend, |_| {}, options).await
    }

    pub async fn start_full(
        backend: Backend,
        tweak: impl FnOnce(&mut HashMap<String, String>),
        options: imix_server::state::ServerOptions,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = base_vars(dir.path(), backend);
        tweak(&mut vars);
        Self::start_in_with(dir, vars, options).await
    }

    /// A server on `vars` whose files are in `dir` (say, the directory a stopped server
    /// handed back): a restart.
    pub async fn start_in(dir: tempfile::TempDir, vars: HashMap<String, String>) -> Self {
        Self::start_in_with(dir, vars, imix_server::state::ServerOptions::default()).await
    }

    async fn start_in_with(
        dir: tempfile::TempDir,
        vars: HashMap<String, String>,
        options: imix_server::state::ServerOptions,
    ) -> Self {
        let config = Config::from_vars(vars).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(imix_server::serve_with_options(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            options,
        ));
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

/// The admin guide's default administrator password.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin123";
/// What tests change it to.
pub const ADMIN_PASSWORD: &str = "operator-passphrase-1";

impl TestServer {
    /// `POST /auth/token`; returns the response.
    pub async fn sign_in_raw(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Signs in and returns the access token (panics unless 200).
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let resp = self.sign_in_raw(email, password).await;
        assert_eq!(resp.status(), 200, "sign in as {email}");
        let body: serde_json::Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs in as the default admin, changes its password, returns a token.
    pub async fn admin(&self) -> String {
        let token = self
            .sign_in("admin@example.com", DEFAULT_ADMIN_PASSWORD)
            .await;
        let resp = self
            .call(&token, reqwest::Method::POST, "/api/v1/auth/change-password")
            .json(&serde_json::json!({"current_password": DEFAULT_ADMIN_PASSWORD, "new_password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        fresh_token(resp).await
    }

    /// A request with a bearer token.
    pub fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// GET with a token, returning status and JSON (or Null).
    pub async fn get_json(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .call(token, reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A request with a JSON body, returning status and JSON.
    pub async fn send_json(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .call(token, method, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Creates a tenant as `token`; returns its JSON.
    pub async fn create_tenant(&self, token: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, json) = self
            .send_json(token, reqwest::Method::POST, "/api/v1/tenants", body)
            .await;
        assert_eq!(status, 201, "{json}");
        json
    }

    /// Creates a user with an initial password, signs them in, changes the password, and
    /// returns `(user json, token)`.
    pub async fn user_with_token(
        &self,
        admin: &str,
        body: serde_json::Value,
    ) -> (serde_json::Value, String) {
        let email = body["email"].as_str().unwrap().to_owned();
        let mut body = body;
        body["password"] = "initial-password-1".into();
        let (status, user) = self
            .send_json(admin, reqwest::Method::POST, "/api/v1/users", body)
            .await;
        assert_eq!(status, 201, "{user}");
        let token = self.sign_in(&email, "initial-password-1").await;
        let resp = self
            .call(&token, reqwest::Method::POST, "/api/v1/auth/change-password")
            .json(&serde_json::json!({"current_password": "initial-password-1", "new_password": "user-passphrase-22"}))
            .send()
            .await
            .unwrap();
        (user, fresh_token(resp).await)
    }
}

/// The fresh token of a successful password change (the change revokes every earlier one).
pub async fn fresh_token(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Waits (bounded) until `f` holds; for effects of background tasks such as emails.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A Graph API simulator on an ephemeral port, holding one business: WABA `waba_id` with
/// phone number `phone_number_id`, `app_secret` and the access token `token`.
pub async fn graph_simulator(
    waba_id: &str,
    phone_number_id: &str,
    app_secret: &str,
    token: &str,
) -> imix_whatsapp::simulator::Simulator {
    use imix_whatsapp::simulator::{SimBusiness, SimPhoneNumber, Simulator};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener).await.unwrap();
    sim.add_business(
        SimBusiness::new(waba_id, app_secret, token).with_phone_number(
            SimPhoneNumber::new(phone_number_id, "+1 555-010-0001")
                .with_verified_name("Alpha Trading"),
        ),
    );
    sim
}

impl TestServer {
    /// A server whose `IMIX_GRAPH_API_URL` is `graph_api_url` (say, a simulator's URL).
    pub async fn start_with_graph(backend: Backend, graph_api_url: &str) -> Self {
        let url = graph_api_url.to_owned();
        Self::start_with(backend, move |vars| {
            vars.insert("IMIX_GRAPH_API_URL".into(), url);
        })
        .await
    }

    /// Adds a WhatsApp account to `tenant_id` as `token`; returns its JSON (panics unless 201).
    pub async fn add_whatsapp_account(
        &self,
        token: &str,
        tenant_id: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (status, json) = self
            .send_json(
                token,
                reqwest::Method::POST,
                &format!("/api/v1/tenants/{tenant_id}/whatsapp-accounts"),
                body,
            )
            .await;
        assert_eq!(status, 201, "{json}");
        json
    }
}
