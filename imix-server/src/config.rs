//! Configuration: environment variables, with a `.env` file as the fallback, validated once
//! at start. Every problem is reported as one line naming the variable.
//!
//! Loading never mutates the process environment: the `.env` file is read into a map and
//! consulted only for variables the environment does not set.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, str::FromStr};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable, e.g. `ACCESS_TOKEN_EXPIRE_MINUTES`.
    pub variable: String,
    /// What is wrong with its value.
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Validated server configuration (see `docs/configuration.md` and `.env.example`).
#[derive(Clone)]
pub struct Config {
    /// `MONGODB_URI`: use MongoDB instead of the embedded store.
    pub mongodb_uri: Option<SecretString>,
    /// `DB_NAME`: the MongoDB database.
    pub db_name: String,
    /// `SECRET_KEY` (or `SECRET_KEY_FILE`): signs tokens, derives the at-rest key. `None`
    /// means: generate one into the data directory on first start.
    pub secret_key: Option<SecretString>,
    /// `TOKEN_URL`: path of the OAuth2 password-flow token endpoint.
    pub token_url: String,
    /// `ACCESS_TOKEN_EXPIRE_MINUTES`: access token lifetime.
    pub access_token_expire_minutes: u32,
    /// `SIGN_IN_ATTEMPTS_PER_MINUTE`: sign-in attempts one client address may make a minute
    /// (all at once if need be), good or bad, before any password is checked.
    pub sign_in_attempts_per_minute: std::num::NonZeroU32,
    /// `UPDATE_SERVER_URL`: where update manifests come from; `None` = updates off.
    pub update_server_url: Option<Url>,
    /// `IMIX_UPDATE_PUBLIC_KEY`: the ed25519 public key (base64) update manifests must be
    /// signed with; default [`imix_update::update::DEFAULT_PUBLIC_KEY`].
    pub update_public_key: ed25519_dalek::VerifyingKey,
    /// `IMIX_UPDATE_HEALTH_TIMEOUT_SECS` (default 120): how long a newly installed version
    /// has to answer its health check before it is rolled back.
    pub update_health_timeout: std::time::Duration,
    /// `IMIX_UPDATE_RESTART` (default `exit`): how the server restarts after an update:
    /// `exit` with code 75 for its supervisor, or `exec` (re-executes itself).
    pub update_restart: crate::updates::RestartMode,
    /// `IMIX_UPDATE_EXECUTABLE`: the executable an update replaces (default: the running
    /// one).
    pub update_executable: Option<PathBuf>,
    /// `REDIS_URL`: Redis for shared counters, queues and fan-out; `None` = in-process.
    pub redis_url: Option<SecretString>,
    /// `IMIX_DATA_DIR`: SQLite file, blobs, backups, generated secret key.
    pub data_dir: PathBuf,
    /// `IMIX_BIND`: listen address.
    pub bind: SocketAddr,
    /// `IMIX_PUBLIC_URL`: external base URL (webhook callbacks, links in emails).
    pub public_url: Url,
    /// `IMIX_LOG_DIR`: where `backend.log` and `whatsapp.log` are written.
    pub log_dir: PathBuf,
    /// `IMIX_LOG`: log filter (tracing `EnvFilter` syntax), default `info`.
    pub log_filter: String,
    /// `IMIX_GRAPH_API_URL`: Meta Graph API base.
    pub graph_api_url: Url,
    /// `IMIX_OUTBOUND_LEASE_SECONDS`: how long a dispatcher holds a message it is sending
    /// (default 120, 35 to 3600: longer than the Graph API client's 30-second timeout). A
    /// message left `sending` by a stopped process is marked `unknown` once it runs out.
    pub outbound_lease_seconds: u64,
    /// `IMIX_ENCRYPTION_KEY` (or `_FILE`): base64 of 32 bytes; overrides the key derived
    /// from `SECRET_KEY`.
    pub encryption_key: Option<SecretString>,
    /// `IMIX_PREVIOUS_ENCRYPTION_KEYS` (or `_FILE`): comma-separated base64 keys that still
    /// decrypt, for key rotation.
    pub previous_encryption_keys: Option<SecretString>,
    /// `IMIX_WEBHOOK_VERIFY_TOKEN` (or `_FILE`): the verify token of the app-level callback
    /// URL `/webhooks/whatsapp` (one Meta app serving many accounts); unset = that URL
    /// refuses Meta's verification request. Each account's own URL uses its own token.
    pub webhook_verify_token: Option<SecretString>,
    /// `IMIX_SMTP_CA_FILE`: a PEM CA certificate trusted for SMTP TLS besides the public
    /// roots (a private relay's CA).
    pub smtp_extra_ca_pem: Option<Vec<u8>>,
    /// `IMIX_ALLOW_PRIVATE_SMTP_HOSTS` (default `false`): whether tenant SMTP settings may
    /// name hosts with loopback, private or link-local addresses.
    pub allow_private_smtp_hosts: bool,
    /// `IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS` (default `false`): whether webhook endpoints
    /// (event subscriptions) may deliver to loopback, private, link-local and other
    /// non-public addresses.
    pub allow_private_webhook_targets: bool,
    /// `IMIX_ALLOW_PRIVATE_AI_URLS` (default `false`): whether a tenant's own AI provider URL
    /// may lead to loopback, private, link-local and other non-public addresses (the
    /// platform's own URLs are the operator's choice and are not checked).
    pub allow_private_ai_urls: bool,
    /// `IMIX_AI_REQUEST_TIMEOUT_SECS` (default 60, 1 to 600): the most one AI suggestion,
    /// summary or connection test may take, retries and fallback providers included;
    /// past it the caller gets `ai_timeout`.
    pub ai_request_timeout: std::time::Duration,
    /// `IMIX_WEBHOOK_RETRY_BASE_MS` (default 10000): the delay before a failed webhook
    /// delivery's first retry; it doubles with each attempt, up to an hour.
    pub webhook_retry_base: std::time::Duration,
    /// `IMIX_WEBHOOK_MAX_ATTEMPTS` (default 12, 1 to 50): attempts before a webhook
    /// delivery is given up and its endpoint disabled.
    pub webhook_max_attempts: u32,
    /// `IMIX_EVENTS_HEARTBEAT_MS` (default 15000): how often a live-events stream sends a
    /// heartbeat comment (and re-reads the event log), so proxies keep idle streams open.
    pub events_heartbeat: std::time::Duration,
    /// `IMIX_BACKUP_KEEP` (default 10): how many backups of each kind (manual, pre-update,
    /// scheduled, pre-restore) are kept; older ones are deleted after each new one.
    pub backup_keep: usize,
    /// `IMIX_BACKUP_INCLUDE_EXECUTABLE` (default `true`): whether every backup carries the
    /// running executable, so that the version that wrote it can be run again.
    pub backup_include_executable: bool,
    /// `IMIX_BACKUP_UPLOAD_MAX_MB` (default 10240, 10 GiB): the largest backup archive
    /// `POST /api/v1/system/backups/upload` accepts.
    pub backup_upload_max_bytes: u64,
    /// `IMIX_ADMIN_EMAIL`: the default administrator created when no user exists.
    pub admin_email: String,
    /// `IMIX_ADMIN_PASSWORD` (or `_FILE`): its first password (must be changed at first
    /// sign-in).
    pub admin_password: SecretString,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets (and URIs, which may embed passwords) are only said to be set.
        let set = |o: &Option<SecretString>| if o.is_some() { "[set]" } else { "[unset]" };
        f.debug_struct("Config")
            .field("mongodb_uri", &set(&self.mongodb_uri))
            .field("db_name", &self.db_name)
            .field("secret_key", &set(&self.secret_key))
            .field("token_url", &self.token_url)
            .field(
                "access_token_expire_minutes",
                &self.access_token_expire_minutes,
            )
            .field(
                "sign_in_attempts_per_minute",
                &self.sign_in_attempts_per_minute,
            )
            .field(
                "update_server_url",
                &self.update_server_url.as_ref().map(Url::as_str),
            )
            .field(
                "update_public_key",
                &imix_update::update::manifest::public_key_to_base64(&self.update_public_key),
            )
            .field("update_health_timeout", &self.update_health_timeout)
            .field("update_restart", &self.update_restart)
            .field("update_executable", &self.update_executable)
            .field("redis_url", &set(&self.redis_url))
            .field("webhook_verify_token", &set(&self.webhook_verify_token))
            .field("data_dir", &self.data_dir)
            .field("bind", &self.bind)
            .field("public_url", &self.public_url.as_str())
            .field("log_dir", &self.log_dir)
            .field("log_filter", &self.log_filter)
            .field("graph_api_url", &self.graph_api_url.as_str())
            .field("outbound_lease_seconds", &self.outbound_lease_seconds)
            .field("encryption_key", &set(&self.encryption_key))
            .field(
                "previous_encryption_keys",
                &set(&self.previous_encryption_keys),
            )
            .field("allow_private_smtp_hosts", &self.allow_private_smtp_hosts)
            .field(
                "allow_private_webhook_targets",
                &self.allow_private_webhook_targets,
            )
            .field("allow_private_ai_urls", &self.allow_private_ai_urls)
            .field("ai_request_timeout", &self.ai_request_timeout)
            .field("webhook_retry_base", &self.webhook_retry_base)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("events_heartbeat", &self.events_heartbeat)
            .field("backup_keep", &self.backup_keep)
            .field("backup_include_executable", &self.backup_include_executable)
            .field("backup_upload_max_bytes", &self.backup_upload_max_bytes)
            .finish()
    }
}

/// Values the admin guide and `.env.example` show as placeholders: never accept them as
/// a real secret.
const PLACEHOLDER_SECRETS: &[&str] = &["your-secret-key-here", "changeme", "change-me", "secret"];

struct Source {
    vars: HashMap<String, String>,
}

impl Source {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr>(&self, name: &str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(name, format!("`{raw}` is not {what}"))),
        }
    }

    /// A secret given directly or, with the `_FILE` suffix, as a path to a file holding it.
    fn secret(&self, name: &str) -> Result<Option<SecretString>, ConfigError> {
        let file_var = format!("{name}_FILE");
        match (self.get(name), self.get(&file_var)) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                name,
                format!("set either {name} or {file_var}, not both"),
            )),
            (Some(v), None) => Ok(Some(SecretString::from(v.trim().to_owned()))),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|v| Some(SecretString::from(v.trim().to_owned())))
                .map_err(|e| ConfigError::new(&file_var, format!("cannot read `{path}`: {e}"))),
            (None, None) => Ok(None),
        }
    }

    fn url(&self, name: &str, default: Option<&str>) -> Result<Option<Url>, ConfigError> {
        let Some(raw) = self.get(name).or(default) else {
            return Ok(None);
        };
        let url = Url::parse(raw.trim())
            .map_err(|e| ConfigError::new(name, format!("`{raw}` is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(name, "must be an http:// or https:// URL"));
        }
        Ok(Some(url))
    }
}

impl Config {
    /// Loads from the process environment, falling back to `./.env` (or the file named by
    /// `IMIX_ENV_FILE`) for variables the environment does not set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let named = match env.get("IMIX_ENV_FILE").map(|p| p.trim()) {
            Some("") => {
                return Err(ConfigError::new(
                    "IMIX_ENV_FILE",
                    "is set but empty: name an env file, or unset it to read ./.env",
                ))
            }
            other => other,
        };
        let mut vars = match named {
            Some(path) => read_env_file(path, EnvFile::Named)?,
            None => read_env_file(".env", EnvFile::Default)?,
        };
        vars.extend(env);
        Self::from_vars(vars)
    }

    /// Loads from an explicit map of variables (tests, embedding).
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let src = Source { vars };

        let mongodb_uri = src.secret("MONGODB_URI")?;
        if let Some(uri) = &mongodb_uri {
            let uri = uri.expose_secret();
            if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://"))
                || uri.len() <= "mongodb://".len()
            {
                return Err(ConfigError::new(
                    "MONGODB_URI",
                    "must be a MongoDB connection string starting with mongodb:// or mongodb+srv://",
                ));
            }
        }
        let db_name = src
            .get("DB_NAME")
            .unwrap_or("whatsapp_api")
            .trim()
            .to_owned();
        if db_name.len() > 63 || db_name.contains(['/', '\\', '.', ' ', '"', '$']) {
            return Err(ConfigError::new(
                "DB_NAME",
                "must be 1-63 characters without / \\ . space \" $",
            ));
        }

        let secret_key = src.secret("SECRET_KEY")?;
        if let Some(key) = &secret_key {
            let key = key.expose_secret();
            if PLACEHOLDER_SECRETS.contains(&key.to_lowercase().as_str()) {
                return Err(ConfigError::new("SECRET_KEY", "is the documentation's placeholder; set a random value or unset it to have one generated"));
            }
            if key.len() < 32 {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    format!("must be at least 32 characters, got {}", key.len()),
                ));
            }
        }

        let token_url = src
            .get("TOKEN_URL")
            .unwrap_or("/auth/token")
            .trim()
            .to_owned();
        if !token_url.starts_with('/')
            || token_url.contains(['?', '#', ' '])
            || token_url.starts_with("/api/")
        {
            return Err(ConfigError::new(
                "TOKEN_URL",
                "must be a path such as /auth/token (not under /api/)",
            ));
        }

        let access_token_expire_minutes: u32 = src.parse(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            1440,
            "a whole number of minutes",
        )?;
        if !(1..=525_600).contains(&access_token_expire_minutes) {
            return Err(ConfigError::new(
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                "must be between 1 and 525600 (one year)",
            ));
        }

        let sign_in_attempts_per_minute: u32 = src.parse(
            "SIGN_IN_ATTEMPTS_PER_MINUTE",
            60,
            "a whole number of attempts",
        )?;
        let sign_in_attempts_per_minute = std::num::NonZeroU32::new(sign_in_attempts_per_minute)
            .filter(|n| n.get() <= 100_000)
            .ok_or_else(|| {
                ConfigError::new(
                    "SIGN_IN_ATTEMPTS_PER_MINUTE",
                    "must be between 1 and 100000",
                )
            })?;

        let redis_url = src.secret("REDIS_URL")?;
        if let Some(url) = &redis_url {
            let url = url.expose_secret();
            if !["redis://", "rediss://", "unix://", "redis+unix://"]
                .iter()
                .any(|s| url.starts_with(s))
                || redis::Client::open(url).is_err()
            {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    "must be a Redis URL such as redis://127.0.0.1:6379",
                ));
            }
        }

        let encryption_key = src.secret("IMIX_ENCRYPTION_KEY")?;
        if let Some(key) = &encryption_key {
            imix_core::crypto::EncryptionKey::from_base64(key.expose_secret()).map_err(|_| {
                ConfigError::new("IMIX_ENCRYPTION_KEY", "must be base64 of exactly 32 bytes")
            })?;
        }
        let webhook_verify_token = src
            .secret("IMIX_WEBHOOK_VERIFY_TOKEN")?
            .filter(|t| !t.expose_secret().trim().is_empty());
        let previous_encryption_keys = src.secret("IMIX_PREVIOUS_ENCRYPTION_KEYS")?;
        if let Some(keys) = &previous_encryption_keys {
            for key in keys
                .expose_secret()
                .split(',')
                .filter(|k| !k.trim().is_empty())
            {
                imix_core::crypto::EncryptionKey::from_base64(key).map_err(|_| {
                    ConfigError::new(
                        "IMIX_PREVIOUS_ENCRYPTION_KEYS",
                        "must be comma-separated base64 keys of 32 bytes each",
                    )
                })?;
            }
        }

        let log_filter = src.get("IMIX_LOG").unwrap_or("info").trim().to_owned();
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|e| ConfigError::new("IMIX_LOG", format!("is not a valid log filter: {e}")))?;

        let public_url = src
            .url("IMIX_PUBLIC_URL", Some("http://localhost:8000"))?
            .ok_or_else(|| ConfigError::new("IMIX_PUBLIC_URL", "is required"))?;
        let graph_api_url = src
            .url("IMIX_GRAPH_API_URL", Some("https://graph.facebook.com"))?
            .ok_or_else(|| ConfigError::new("IMIX_GRAPH_API_URL", "is required"))?;
        let outbound_lease_seconds: u64 = src.parse(
            "IMIX_OUTBOUND_LEASE_SECONDS",
            120,
            "a whole number of seconds",
        )?;
        if !(35..=3600).contains(&outbound_lease_seconds) {
            return Err(ConfigError::new(
                "IMIX_OUTBOUND_LEASE_SECONDS",
                "must be between 35 and 3600 (longer than the Graph API client's 30-second timeout)",
            ));
        }

        let admin_email = src
            .get("IMIX_ADMIN_EMAIL")
            .unwrap_or("admin@example.com")
            .trim()
            .to_owned();
        if !email_address::EmailAddress::is_valid(&admin_email) {
            return Err(ConfigError::new(
                "IMIX_ADMIN_EMAIL",
                "is not a valid email address",
            ));
        }
        let admin_password = src
            .secret("IMIX_ADMIN_PASSWORD")?
            .unwrap_or_else(|| SecretString::from("admin123".to_owned()));

        let smtp_extra_ca_pem = match src.get("IMIX_SMTP_CA_FILE") {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path.trim()).map_err(|e| {
                    ConfigError::new("IMIX_SMTP_CA_FILE", format!("cannot read `{path}`: {e}"))
                })?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ConfigError::new(
                        "IMIX_SMTP_CA_FILE",
                        "is not a PEM certificate",
                    ));
                }
                Some(pem)
            }
        };

        let allow_private_smtp_hosts =
            src.parse("IMIX_ALLOW_PRIVATE_SMTP_HOSTS", false, "`true` or `false`")?;
        let allow_private_webhook_targets = src.parse(
            "IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS",
            false,
            "`true` or `false`",
        )?;
        let allow_private_ai_urls =
            src.parse("IMIX_ALLOW_PRIVATE_AI_URLS", false, "`true` or `false`")?;
        let ai_request_timeout_secs: u64 = src.parse(
            "IMIX_AI_REQUEST_TIMEOUT_SECS",
            60,
            "a whole number of seconds",
        )?;
        if !(1..=600).contains(&ai_request_timeout_secs) {
            return Err(ConfigError::new(
                "IMIX_AI_REQUEST_TIMEOUT_SECS",
                "must be between 1 and 600 seconds",
            ));
        }
        let webhook_retry_base_ms: u64 = src.parse(
            "IMIX_WEBHOOK_RETRY_BASE_MS",
            10_000,
            "a whole number of milliseconds",
        )?;
        if !(10..=3_600_000).contains(&webhook_retry_base_ms) {
            return Err(ConfigError::new(
                "IMIX_WEBHOOK_RETRY_BASE_MS",
                "must be between 10 and 3600000 milliseconds",
            ));
        }
        let webhook_retry_base = std::time::Duration::from_millis(webhook_retry_base_ms);
        let webhook_max_attempts: u32 = src.parse(
            "IMIX_WEBHOOK_MAX_ATTEMPTS",
            12,
            "a whole number from 1 to 50",
        )?;
        if !(1..=50).contains(&webhook_max_attempts) {
            return Err(ConfigError::new(
                "IMIX_WEBHOOK_MAX_ATTEMPTS",
                "must be a whole number from 1 to 50",
            ));
        }

        let heartbeat_ms: u64 = src.parse(
            "IMIX_EVENTS_HEARTBEAT_MS",
            15_000,
            "a whole number of milliseconds",
        )?;
        if !(50..=300_000).contains(&heartbeat_ms) {
            return Err(ConfigError::new(
                "IMIX_EVENTS_HEARTBEAT_MS",
                "must be between 50 and 300000 (five minutes)",
            ));
        }
        let events_heartbeat = std::time::Duration::from_millis(heartbeat_ms);

        let backup_keep: usize = src.parse("IMIX_BACKUP_KEEP", 10, "a whole number")?;
        if !(1..=1000).contains(&backup_keep) {
            return Err(ConfigError::new(
                "IMIX_BACKUP_KEEP",
                "must be between 1 and 1000",
            ));
        }
        let backup_include_executable =
            src.parse("IMIX_BACKUP_INCLUDE_EXECUTABLE", true, "`true` or `false`")?;
        let backup_upload_mb: u64 = src.parse(
            "IMIX_BACKUP_UPLOAD_MAX_MB",
            10_240,
            "a whole number of megabytes",
        )?;
        if !(1..=1_048_576).contains(&backup_upload_mb) {
            return Err(ConfigError::new(
                "IMIX_BACKUP_UPLOAD_MAX_MB",
                "must be between 1 and 1048576 (1 TiB)",
            ));
        }

        let update_public_key = imix_update::update::manifest::public_key_from_base64(
            src.get("IMIX_UPDATE_PUBLIC_KEY")
                .unwrap_or(imix_update::update::DEFAULT_PUBLIC_KEY),
        )
        .map_err(|e| ConfigError::new("IMIX_UPDATE_PUBLIC_KEY", e.to_string()))?;
        let health_secs: u64 = src.parse(
            "IMIX_UPDATE_HEALTH_TIMEOUT_SECS",
            120,
            "a whole number of seconds",
        )?;
        if !(1..=3600).contains(&health_secs) {
            return Err(ConfigError::new(
                "IMIX_UPDATE_HEALTH_TIMEOUT_SECS",
                "must be between 1 and 3600 (one hour)",
            ));
        }
        let update_restart = src.parse(
            "IMIX_UPDATE_RESTART",
            crate::updates::RestartMode::Exit,
            "`exit` or `exec`",
        )?;
        let update_executable = src
            .get("IMIX_UPDATE_EXECUTABLE")
            .map(|p| PathBuf::from(p.trim()));

        Ok(Self {
            update_public_key,
            update_health_timeout: std::time::Duration::from_secs(health_secs),
            update_restart,
            update_executable,
            events_heartbeat,
            backup_keep,
            backup_include_executable,
            backup_upload_max_bytes: backup_upload_mb * 1024 * 1024,
            smtp_extra_ca_pem,
            allow_private_smtp_hosts,
            allow_private_webhook_targets,
            allow_private_ai_urls,
            ai_request_timeout: std::time::Duration::from_secs(ai_request_timeout_secs),
            webhook_retry_base,
            webhook_max_attempts,
            admin_email,
            admin_password,
            mongodb_uri,
            db_name,
            secret_key,
            token_url,
            access_token_expire_minutes,
            sign_in_attempts_per_minute,
            update_server_url: src.url("UPDATE_SERVER_URL", None)?,
            redis_url,
            data_dir: PathBuf::from(src.get("IMIX_DATA_DIR").unwrap_or("./data").trim()),
            bind: src.parse(
                "IMIX_BIND",
                SocketAddr::from(([0, 0, 0, 0], 8000)),
                "an address such as 0.0.0.0:8000",
            )?,
            public_url,
            log_dir: PathBuf::from(src.get("IMIX_LOG_DIR").unwrap_or("./logs").trim()),
            log_filter,
            graph_api_url,
            outbound_lease_seconds,
            encryption_key,
            previous_encryption_keys,
            webhook_verify_token,
        })
    }

    /// The storage backend this configuration selects: `"mongodb"` or `"sqlite"`.
    pub fn store_backend(&self) -> &'static str {
        if self.mongodb_uri.is_some() {
            "mongodb"
        } else {
            "sqlite"
        }
    }
}

/// Which env file is read: the one `IMIX_ENV_FILE` names (it must exist) or the default
/// `./.env` (read when present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvFile {
    Named,
    Default,
}

fn read_env_file(path: &str, which: EnvFile) -> Result<HashMap<String, String>, ConfigError> {
    // Errors name what the operator set: IMIX_ENV_FILE, or the default `.env` they may not
    // know is read at all.
    let (variable, what) = match which {
        EnvFile::Named => ("IMIX_ENV_FILE", format!("`{path}`")),
        EnvFile::Default => (
            ".env",
            format!("the default env file `{path}` (read because IMIX_ENV_FILE is unset)"),
        ),
    };
    // Only a regular file (or a link to one) is read: a FIFO, a device or a directory could
    // block start-up forever or read endless data. `/dev/null` stands for "no env file".
    if std::fs::canonicalize(path).is_ok_and(|p| p == std::path::Path::new("/dev/null")) {
        return Ok(HashMap::new());
    }
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(ConfigError::new(
                variable,
                format!("{what} is not a regular file"),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match which {
                EnvFile::Default => Ok(HashMap::new()),
                EnvFile::Named => Err(ConfigError::new(variable, format!("{what} does not exist"))),
            }
        }
        Err(e) => {
            return Err(ConfigError::new(
                variable,
                format!("cannot read {what}: {e}"),
            ))
        }
    }
    match dotenvy::from_path_iter(path) {
        Ok(iter) => iter
            .map(|item| {
                item.map_err(|e| {
                    ConfigError::new(variable, format!("{what} is not a valid .env file: {e}"))
                })
            })
            .collect(),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => match which {
            EnvFile::Default => Ok(HashMap::new()),
            EnvFile::Named => Err(ConfigError::new(variable, format!("{what} does not exist"))),
        },
        Err(e) => Err(ConfigError::new(
            variable,
            format!("cannot read {what}: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = load(&[]).unwrap();
        assert_eq!(c.store_backend(), "sqlite");
        assert_eq!(c.db_name, "whatsapp_api");
        assert_eq!(c.token_url, "/auth/token");
        assert_eq!(c.access_token_expire_minutes, 1440);
        assert_eq!(c.bind.port(), 8000);
        assert_eq!(c.public_url.as_str(), "http://localhost:8000/");
        assert_eq!(c.graph_api_url.as_str(), "https://graph.facebook.com/");
        assert!(c.update_server_url.is_none() && c.redis_url.is_none() && c.secret_key.is_none());
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("MONGODB_URI", "nonsense"),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "abc"),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
            ("SECRET_KEY", "short"),
            ("SECRET_KEY", "your-secret-key-here"),
            ("TOKEN_URL", "auth/token"),
            ("UPDATE_SERVER_URL", "ftp://updates"),
            ("REDIS_URL", "localhost:6379"),
            ("IMIX_BIND", "everywhere"),
            ("IMIX_PUBLIC_URL", "not a url"),
            ("IMIX_GRAPH_API_URL", "graph"),
            ("IMIX_ENCRYPTION_KEY", "dG9vIHNob3J0"),
            ("DB_NAME", "bad.name"),
            ("IMIX_LOG", "[[["),
            ("IMIX_UPDATE_PUBLIC_KEY", "not a key"),
            ("IMIX_UPDATE_HEALTH_TIMEOUT_SECS", "0"),
            ("IMIX_UPDATE_RESTART", "reboot"),
        ];
        for (var, value) in cases {
            let err = load(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}");
            let line = err.to_string();
            assert!(!line.contains('\n') && line.contains(var), "{line}");
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = load(&[
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef-topsecret"),
            ("MONGODB_URI", "mongodb://user:hunter2@db:27017"),
            ("REDIS_URL", "redis://:redispass@cache:6379"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["topsecret", "hunter2", "redispass"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert_eq!(c.store_backend(), "mongodb");
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-a-file-0123456789abcdef0123456789\n").unwrap();
        let c = load(&[("SECRET_KEY_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(
            c.secret_key.unwrap().expose_secret(),
            "from-a-file-0123456789abcdef0123456789"
        );
        let both = load(&[("SECRET_KEY_FILE", "x"), ("SECRET_KEY", "y")]).unwrap_err();
        assert_eq!(both.variable, "SECRET_KEY");
    }
}
