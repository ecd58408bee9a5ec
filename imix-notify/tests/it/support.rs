//! Shared helpers: the test SMTP server's coordinates, received messages, stores.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use imix_core::{
    crypto::{Cipher, EncryptionKey},
    directory::{TenantDirectory, TenantProfile, TenantStatus, UsageLimits},
    id::TenantId,
    store::Store,
    Error, Language,
};
use imix_notify::{smtp::SmtpSecurity, storage::MailOutboxRepository, Mailbox, SmtpConfig};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the imix-notify integration tests need the recording SMTP \
             server. Run scripts/test.sh, which starts scripts/smtp_sink.py (aiosmtpd) and \
             exports IMIX_TEST_SMTP_HOST, _PORT, _STARTTLS_PORT, _TLS_PORT, _CA, _USER, \
             _PASSWORD, _MAILDIR and _PYTHON."
        )
    })
}

/// Where the shared test SMTP server listens, and how to log in.
#[derive(Debug, Clone)]
pub struct SmtpEnv {
    pub host: String,
    pub port: u16,
    pub starttls_port: u16,
    pub tls_port: u16,
    pub ca_pem: Vec<u8>,
    pub user: String,
    pub password: String,
    pub maildir: PathBuf,
}

impl SmtpEnv {
    pub fn get() -> Self {
        let port = |name: &str| required(name).parse::<u16>().unwrap();
        let ca = required("IMIX_TEST_SMTP_CA");
        Self {
            host: required("IMIX_TEST_SMTP_HOST"),
            port: port("IMIX_TEST_SMTP_PORT"),
            starttls_port: port("IMIX_TEST_SMTP_STARTTLS_PORT"),
            tls_port: port("IMIX_TEST_SMTP_TLS_PORT"),
            ca_pem: std::fs::read(&ca).unwrap_or_else(|e| panic!("cannot read {ca}: {e}")),
            user: required("IMIX_TEST_SMTP_USER"),
            password: required("IMIX_TEST_SMTP_PASSWORD"),
            maildir: PathBuf::from(required("IMIX_TEST_SMTP_MAILDIR")),
        }
    }

    /// An adapter configuration for one of the server's ports.
    pub fn config(&self, security: SmtpSecurity) -> SmtpConfig {
        let port = match security {
            SmtpSecurity::Starttls => self.starttls_port,
            SmtpSecurity::Tls => self.tls_port,
            SmtpSecurity::None => self.port,
        };
        SmtpConfig {
            host: self.host.clone(),
            port,
            security,
            credentials: Some((self.user.clone(), SecretString::from(self.password.clone()))),
            from: Mailbox::named("iMix Tests", "noreply@imix.example"),
            timeout: Duration::from_secs(5),
            extra_root_pem: Some(self.ca_pem.clone()),
            connect_to: None,
        }
    }
}

/// A recipient address no other test uses.
pub fn unique_address() -> String {
    format!("{}@example.com", uuid::Uuid::now_v7().simple())
}

/// One message as the sink recorded it.
#[derive(Debug, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    pub parts: Vec<Part>,
    pub tls: bool,
    pub auth_login: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Part {
    pub content_type: String,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn part(&self, content_type: &str) -> &str {
        &self
            .parts
            .iter()
            .find(|p| p.content_type == content_type)
            .unwrap_or_else(|| panic!("no {content_type} part in {self:#?}"))
            .body
    }
}

/// Every message received in `maildir` for `to`. The sink writes a message before it
/// answers 250, so a message whose send succeeded is always there.
pub fn received_for(maildir: &Path, to: &str) -> Vec<Received> {
    let mut found = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(maildir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let message: Received = serde_json::from_str(&text).unwrap();
        if message.rcpt_tos.iter().any(|r| r.eq_ignore_ascii_case(to)) {
            found.push(message);
        }
    }
    found
}

/// The one message received for `to`.
pub fn the_message_for(maildir: &Path, to: &str) -> Received {
    let mut all = received_for(maildir, to);
    assert_eq!(all.len(), 1, "expected exactly one message for {to}");
    all.remove(0)
}

pub fn cipher() -> Cipher {
    Cipher::new(EncryptionKey::generate(), vec![])
}

/// What a notifier is built from in these tests: core's shared ports, the outbox opened
/// on the same database, and the tenants it may read.
#[derive(Clone)]
pub struct Stores {
    /// Settings, counters, audit log (and the backend the outbox is opened on).
    pub core: Store,
    /// The mail outbox, notify's own storage.
    pub outbox: Arc<dyn MailOutboxRepository>,
    /// The tenants, as the notifier reads them.
    pub tenants: Arc<FakeTenants>,
}

impl Stores {
    /// The tenants as a directory, for `Notifier::new`.
    pub fn directory(&self) -> Arc<dyn TenantDirectory> {
        self.tenants.clone()
    }
}

/// Migrated SQLite storage in `dir` (core's tables and notify's), and no tenants.
pub async fn store_in(dir: &Path) -> Stores {
    let core = imix_core::store::sqlite::open(dir).await.unwrap();
    core.admin.migrate().await.unwrap();
    imix_notify::storage::migrate(&core.backend).await.unwrap();
    let outbox = imix_notify::storage::open(&core.backend).unwrap();
    Stores {
        core,
        outbox,
        tenants: Arc::default(),
    }
}

/// Tenants in memory: what the tenancy capability would answer.
#[derive(Default)]
pub struct FakeTenants(Mutex<HashMap<TenantId, TenantProfile>>);

impl FakeTenants {
    /// Adds an active tenant; returns its id.
    pub fn add(&self, name: &str) -> TenantId {
        let profile = TenantProfile {
            id: TenantId::new(),
            name: name.to_owned(),
            status: TenantStatus::Active,
            default_language: Language::En,
            limits: UsageLimits::default(),
        };
        let id = profile.id;
        self.0.lock().unwrap().insert(id, profile);
        id
    }

    /// Activates or deactivates `id` (as the tenancy service does).
    pub fn set_status(&self, id: TenantId, status: TenantStatus) {
        self.0.lock().unwrap().get_mut(&id).unwrap().status = status;
    }
}

#[async_trait]
impl TenantDirectory for FakeTenants {
    async fn profile(&self, id: TenantId) -> imix_core::Result<TenantProfile> {
        self.0
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                entity: "tenant",
                id: id.to_string(),
            })
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A private copy of the sink (plain SMTP with AUTH only) on a port the test controls, so
/// the test can stop and restart it.
pub struct OwnSink {
    child: tokio::process::Child,
}

impl OwnSink {
    /// Starts `scripts/smtp_sink.py` on `port`, writing into `maildir`; returns once it
    /// printed READY (it is then listening).
    pub async fn start(port: u16, maildir: &Path, env: &SmtpEnv) -> Self {
        let python = required("IMIX_TEST_SMTP_PYTHON");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/smtp_sink.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--maildir")
            .arg(maildir)
            .args(["--user", &env.user, "--password", &env.password])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.trim() == "READY" {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(ready, "the private SMTP sink did not start on port {port}");
        Self { child }
    }

    pub async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// A platform administrator: every permission, any tenant.
pub fn platform_admin() -> imix_core::access::AccessContext {
    imix_core::access::AccessContext::new(
        imix_core::access::Principal::new(imix_core::id::UserId::new(), "admin@imix.example"),
        None,
        true,
        imix_core::access::Permission::ALL.into_iter().collect(),
        None,
    )
}

/// A new (active) tenant in `stores`.
pub async fn new_tenant(stores: &Stores) -> TenantId {
    stores.tenants.add("Acme")
}
