//! Everything a request handler may reach, built once at start.

use std::{path::Path, sync::Arc};

use imix_core::{
    crypto::{Cipher, EncryptionKey},
    store::Store,
};
use imix_notify::{outbox::OutboxConfig, Mailer, Notifier, SmtpOptions};
use imix_tenancy::{
    emails::{AccountEmails, PlainAccountEmails},
    throttle::StoreThrottle,
    TenancyConfig, TenancyService,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{config::Config, metrics::Metrics, storage::Storage, ServerError};

/// Shared state: configuration, store, services. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Sign-in attempts per client address (`SIGN_IN_ATTEMPTS_PER_MINUTE`).
    pub sign_in_flood: Arc<crate::sign_in_flood::SignInFlood>,
    /// The store (SQLite or MongoDB).
    pub store: Store,
    /// Every capability's repositories on the store's backend.
    pub storage: Storage,
    /// Redis, when configured.
    pub redis: Option<redis::Client>,
    /// The at-rest cipher for credentials.
    pub cipher: Cipher,
    /// Signs tokens.
    pub secret_key: SecretString,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Sign-in, users, tenants, audit.
    pub tenancy: TenancyService,
    /// SMTP settings, the test email, localized emails through the mail outbox.
    pub notifier: Notifier,
    /// WhatsApp accounts (Graph API client from `IMIX_GRAPH_API_URL`).
    pub whatsapp_accounts: imix_whatsapp::accounts::AccountService,
    /// Message templates.
    pub templates: imix_whatsapp::templates::TemplateService,
    /// Reads of the shared inbox.
    pub inbox: imix_messaging::InboxService,
    /// Contact management: contacts, groups, CSV import and export.
    pub contacts: imix_messaging::ContactService,
    /// Contact imports: background jobs with progress (also their worker).
    pub contact_imports: imix_messaging::contacts::imports::ContactImports,
    /// Takes webhook deliveries in (verified, stored before the answer).
    pub webhooks: imix_messaging::ingest::Receiver,
    /// Processes stored webhook deliveries.
    pub ingest: imix_messaging::ingest::IngestWorker,
    /// Inbound media: serves stored media and retries jobs.
    pub media: imix_messaging::media::MediaService,
    /// Fetches inbound media jobs.
    pub media_worker: imix_messaging::media::MediaWorker,
    /// The send API: queues, reads and retries outbound messages.
    pub outbound: imix_messaging::outbound::OutboundService,
    /// Hands queued outbound messages to Meta.
    pub dispatcher: imix_messaging::outbound::Dispatcher,
    /// Live events: the log ingest publishes to and the streams users open.
    pub events: crate::events::LiveEvents,
    /// Backups: create, list, verify, upload, restore (archives in `$IMIX_DATA_DIR/backups`).
    pub backups: imix_update::backup::Backups,
    /// Updates: check, install, status; the restart mechanism.
    pub updates: crate::updates::ServerUpdates,
    /// Private notes, labels and canned responses.
    pub annotations: imix_messaging::AnnotationService,
    /// Webhook endpoints (event subscriptions) and their delivery log.
    pub subscriptions: imix_subscriptions::SubscriptionService,
    /// Sends stored webhook deliveries (started by the server).
    pub webhook_worker: imix_subscriptions::worker::DeliveryWorker,
    /// The AI assistant: settings, connection test, suggestions, token usage.
    pub ai: crate::ai::AiService,
    /// Auto-reply: per-account settings and the worker answering customers by itself.
    pub auto_reply: crate::auto_reply::AutoReply,
}

/// What an embedder (or a test) can plug in instead of the defaults.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Sends account emails (invitations, password resets) directly, as short plain-text
    /// emails. Default (`None`): the localized templates through the mail outbox and the
    /// stored SMTP settings.
    pub mailer: Option<Arc<dyn Mailer>>,
}

impl AppState {
    /// Opens the store (running migrations), loads or generates the secret key, and
    /// prepares the Redis client.
    pub async fn start(config: Config) -> Result<Self, ServerError> {
        Self::start_with(config, ServerOptions::default()).await
    }

    /// [`AppState::start`] with plugged-in parts.
    pub async fn start_with(config: Config, options: ServerOptions) -> Result<Self, ServerError> {
        // First: a pending update (the watchdog of a new version on probation starts here,
        // before anything that could hang).
        let (update_action, restarter) = crate::updates::at_start(&config)?;
        let storage = Storage::open(&config).await?;
        storage.migrate().await?;
        let store = storage.store.clone();
        // A restore the process died in the middle of is completed (or rolled back) before
        // anything reads the store: a half-restored store is never served.
        let backups = crate::backups::service(&config, &storage)?;
        let resumed = match backups.resume_interrupted_restore().await {
            Ok(resumed) => resumed,
            // The restore a restore of another version left for this version failed: roll
            // back now rather than at the health timeout.
            Err(e) => {
                return Err(crate::updates::roll_back_failed_restore(
                    &config,
                    &update_action,
                    &restarter,
                    &e,
                )
                .unwrap_or(e.into()))
            }
        };
        if let Some(summary) = &resumed {
            tracing::warn!(?summary, "an interrupted restore was finished at start");
        }
        // After a rolled-back update, the old version puts the pre-update data back first.
        let rolled_back =
            crate::updates::finish_rollback(&config, &update_action, &backups).await?;
        let updates =
            crate::updates::service(&config, &storage, &backups, &update_action, restarter)?;
        imix_tenancy::bootstrap::ensure_default_admin(
            &store,
            &storage.tenancy,
            &config.admin_email,
            &config.admin_password,
        )
        .await?;
        let secret_key = load_or_generate_secret_key(&config)?;
        let cipher = build_cipher(&config, &secret_key)?;
        let redis = match &config.redis_url {
            Some(url) => Some(redis::Client::open(url.expose_secret()).map_err(|e| {
                crate::config::ConfigError {
                    variable: "REDIS_URL".into(),
                    problem: e.to_string(),
                }
            })?),
            None => None,
        };
        let notifier = Notifier::with_smtp(
            &store,
            storage.outbox.clone(),
            storage.tenants(),
            cipher.clone(),
            config.public_url.as_str(),
            SmtpOptions {
                extra_root_pem: config.smtp_extra_ca_pem.clone(),
                allow_private_hosts: config.allow_private_smtp_hosts,
                ..SmtpOptions::default()
            },
            OutboxConfig::default(),
        )?;
        let emails: Arc<dyn AccountEmails> = match options.mailer {
            Some(mailer) => Arc::new(PlainAccountEmails::new(mailer)),
            None => Arc::new(crate::notify_bridge::NotifierAccountEmails::new(
                notifier.clone(),
                storage.tenants(),
            )),
        };
        let tenancy = TenancyService::new(
            store.clone(),
            TenancyConfig {
                secret_key: secret_key.clone(),
                access_token_minutes: config.access_token_expire_minutes,
                public_url: config.public_url.clone(),
            },
            emails,
            Arc::new(StoreThrottle::new(store.counters.clone())),
            crate::quota_backend::quota_store(&store, config.redis_url.as_ref()),
        )?;
        let (whatsapp_accounts, templates) =
            crate::whatsapp::services(&config, &storage, &cipher, tenancy.count_limits())?;
        let contact_counter = crate::contacts::counter(tenancy.count_limits());
        let contacts = crate::contacts::service(&storage, contact_counter.clone());
        let contact_imports = crate::contacts::imports(&storage, contacts.clone())?;
        // Contacts created from inbound messages are counted, never refused.
        let ingest_storage = crate::contacts::inbound_storage(
            &storage,
            contact_counter,
            Arc::new(crate::contacts::TenancyLimitAlerts(tenancy.clone())),
        );
        let events =
            crate::events::LiveEvents::new(&storage, redis.as_ref(), config.events_heartbeat)?;
        let media = crate::media::media(&config, &storage, &whatsapp_accounts)?;
        // Emails to tenants' admins (sending paused, an endpoint disabled).
        let alerts = crate::admin_alerts::AdminAlerts::new(
            notifier.clone(),
            storage.tenancy.users.clone(),
            storage.tenants(),
        );
        let (subscriptions, webhook_worker) = crate::subscriptions::subscriptions(
            &config,
            &storage,
            &cipher,
            &events.bus,
            alerts.clone(),
        );
        let (_, outbound_statuses) = crate::outbound::statuses(&storage, &tenancy)?;
        let auto_reply_queue = crate::auto_reply::queue(
            imix_messaging::storage::auto_reply::open(&store.backend)?,
            store.settings.clone(),
        );
        let (webhooks, ingest) = crate::messaging::ingest(
            &ingest_storage,
            &whatsapp_accounts,
            std::sync::Arc::new(events.bus.clone()),
            media.queue.clone(),
            outbound_statuses,
            auto_reply_queue.clone(),
        );
        let outbound = crate::outbound::outbound(
            &config,
            &storage,
            &tenancy,
            &whatsapp_accounts,
            ingest.processor().clone(),
            alerts,
        )?;
        let inbox = imix_messaging::InboxService::new(
            storage.messaging.clone(),
            Arc::new(crate::messaging::TenancyAssignees::new(
                storage.tenancy.users.clone(),
            )),
        )
        .with_events(Arc::new(events.bus.clone()))
        .with_round_robin(crate::messaging::round_robin(&storage));
        let annotations = imix_messaging::AnnotationService::new(
            storage.messaging.clone(),
            inbox.clone(),
            Arc::new(events.bus.clone()),
        );
        crate::backups::refresh_after_every_restore(&backups, &storage, tenancy.count_limits());
        if resumed.is_some() || rolled_back {
            crate::backups::refresh_after_restore(&storage, tenancy.count_limits()).await;
        }
        let ai = crate::ai::AiService::new(
            imix_ai::settings::AiSettingsService::new(store.settings.clone(), cipher.clone()),
            imix_ai::usage::TokenMeter::new(store.counters.clone()),
            storage.tenants(),
            config.ai_request_timeout,
            config.allow_private_ai_urls,
            Arc::new(imix_core::access::AuditLog::new(store.audit.clone())),
        )
        .map_err(|e| crate::config::ConfigError {
            variable: "AI HTTP client".into(),
            problem: e.to_string(),
        })?;
        let auto_reply = crate::auto_reply::AutoReply::new(crate::auto_reply::AutoReplyParts {
            settings: store.settings.clone(),
            accounts: storage.whatsapp.accounts.clone(),
            audit: Arc::new(imix_core::access::AuditLog::new(store.audit.clone())),
            ai: ai.clone(),
            inbox: inbox.clone(),
            outbound: outbound.service.clone(),
            storage: storage.messaging.clone(),
            counters: store.counters.clone(),
            queue: auto_reply_queue,
            events: Arc::new(events.bus.clone()),
            tenants: storage.tenants(),
        });
        let metrics = Metrics::new()?;
        metrics.watch_outbox(notifier.outbox().monitor().clone())?;
        Ok(Self {
            sign_in_flood: Arc::new(crate::sign_in_flood::SignInFlood::new(
                config.sign_in_attempts_per_minute,
            )),
            config: Arc::new(config),
            store,
            storage,
            redis,
            cipher,
            secret_key,
            metrics,
            tenancy,
            notifier,
            whatsapp_accounts,
            templates,
            inbox,
            contacts,
            contact_imports,
            webhooks,
            ingest,
            media: media.service,
            media_worker: media.worker,
            outbound: outbound.service,
            dispatcher: outbound.dispatcher,
            events,
            annotations,
            subscriptions,
            webhook_worker,
            ai,
            auto_reply,
            backups,
            updates,
        })
    }
}

/// Opens the store the configuration selects (without migrating).
pub async fn open_store(config: &Config) -> Result<Store, ServerError> {
    match &config.mongodb_uri {
        Some(uri) => Ok(imix_core::store::mongo::open(uri.expose_secret(), &config.db_name).await?),
        None => {
            imix_core::store::private_files::create_dir_all(&config.data_dir).map_err(
                |source| ServerError::Io {
                    context: format!("cannot create IMIX_DATA_DIR {}", config.data_dir.display()),
                    source,
                },
            )?;
            Ok(imix_core::store::sqlite::open(&config.data_dir).await?)
        }
    }
}

/// The file the generated secret key is kept in, inside the data directory.
pub const SECRET_KEY_FILE: &str = "secret_key";

/// `SECRET_KEY` if configured; otherwise the key generated into the data directory on first
/// start (mode 0600), with a warning that it should be set explicitly for multi-replica
/// deployments.
pub fn load_or_generate_secret_key(config: &Config) -> Result<SecretString, ServerError> {
    if let Some(key) = &config.secret_key {
        return Ok(key.clone());
    }
    let path = config.data_dir.join(SECRET_KEY_FILE);
    let io_err = |context: &str, source| ServerError::Io {
        context: format!("{context} {}", path.display()),
        source,
    };
    imix_core::store::private_files::create_dir_all(&config.data_dir)
        .map_err(|e| io_err("cannot create the directory of", e))?;
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => {
            warn_if_readable_by_others(&path);
            return Ok(SecretString::from(text.trim().to_owned()));
        }
        Ok(_) => {
            return Err(ServerError::Io {
                context: format!(
                    "{} is too short to be a secret key; delete it or set SECRET_KEY",
                    path.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot read", e)),
    }
    let generated = generate_secret();
    write_private_file(&path, generated.expose_secret()).map_err(|e| io_err("cannot write", e))?;
    tracing::warn!(
        path = %path.display(),
        "SECRET_KEY is not set: generated one into the data directory. Set SECRET_KEY \
         explicitly when several replicas share one database."
    );
    Ok(generated)
}

fn generate_secret() -> SecretString {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use rand::RngCore;
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the secret key file is readable by other users; chmod 600 it");
        }
    }
}

/// The at-rest cipher: `IMIX_ENCRYPTION_KEY` if set, else a key derived from the secret key;
/// `IMIX_PREVIOUS_ENCRYPTION_KEYS` still decrypt.
pub fn build_cipher(config: &Config, secret_key: &SecretString) -> Result<Cipher, ServerError> {
    let current = match &config.encryption_key {
        Some(key) => EncryptionKey::from_base64(key.expose_secret())?,
        None => EncryptionKey::derive_from_secret(secret_key),
    };
    let previous = match &config.previous_encryption_keys {
        Some(keys) => keys
            .expose_secret()
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(EncryptionKey::from_base64)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(Cipher::new(current, previous))
}
