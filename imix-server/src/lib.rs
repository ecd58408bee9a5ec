//! # imix-server
//!
//! The reference server: configuration, wiring, REST API (poem + poem-openapi), CLI.
//! It holds no domain logic: that lives in the domain crates behind their traits; this
//! crate composes them and speaks HTTP.
//!
//! Tests and embedders run the real server on a listener they bound themselves:
//!
//! ```no_run
//! # async fn demo() -> Result<(), imix_server::ServerError> {
//! let config = imix_server::config::Config::from_env()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(imix_server::serve_with_listener(config, listener, async {
//!     let _ = stopped.await;
//! }));
//! // ... send requests ...
//! let _ = stop.send(());
//! server.await.expect("join")?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod admin_alerts;
pub mod ai;
pub mod api;
pub mod auth;
pub mod auto_reply;
pub mod backup_cli;
pub mod backups;
pub mod body;
pub mod config;
pub mod contacts;
pub mod doctor;
pub mod error;
pub mod events;
pub mod listener;
pub mod media;
pub mod messaging;
pub mod metrics;
pub mod notify_bridge;
pub mod outbound;
pub mod outbound_redis;
pub mod pages;
pub mod probe;
pub mod quota_backend;
pub mod sign_in_flood;
pub mod state;
pub mod storage;
pub mod subscriptions;
pub mod telemetry;
pub mod updates;
pub mod webhooks;
pub mod whatsapp;
pub mod workers;

use std::{future::Future, time::Duration};

use poem::{
    endpoint::make_sync, get, http::StatusCode, listener::TcpAcceptor, middleware::CatchPanic,
    post, Endpoint, EndpointExt, IntoEndpoint, Route, Server,
};

use crate::{
    error::{ApiError, ErrorShapeMiddleware},
    metrics::MetricsMiddleware,
    state::AppState,
};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The store failed (cannot connect, migrate, …).
    #[error("store: {0}")]
    Store(#[from] imix_core::Error),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Bootstrapping tenancy failed (e.g. creating the default administrator).
    #[error("tenancy: {0}")]
    Tenancy(#[from] imix_tenancy::TenancyError),
    /// The notification service could not be built (e.g. `IMIX_PUBLIC_URL` unusable for links).
    #[error("notifications: {0}")]
    Notify(#[from] imix_notify::NotifyError),
    /// Backups: the directory cannot be used, or an interrupted restore cannot be finished.
    #[error("backups: {0}")]
    Backup(#[from] imix_update::backup::BackupError),
    /// Updates: the pending-update state cannot be read or acted on (boxed: the update
    /// error is large and this one is returned everywhere).
    #[error("updates: {0}")]
    Update(Box<imix_update::update::UpdateError>),
    /// A failed update was rolled back at start: the process must restart into the
    /// previous executable (`main` exits with the restart code).
    #[error("the update is being rolled back ({reason}); restarting into the previous version")]
    RollbackRestart {
        /// Why the update was rolled back.
        reason: String,
    },
}

impl From<imix_update::update::UpdateError> for ServerError {
    fn from(e: imix_update::update::UpdateError) -> Self {
        ServerError::Update(Box::new(e))
    }
}

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The whole HTTP application for `state`: API, spec, docs, metrics, with the error shape
/// and metrics middleware around everything.
pub fn app(state: &AppState) -> impl poem::Endpoint + 'static {
    let api = api::service(state);
    let token_url = state.config.token_url.clone();
    let spec = api::complete_responses(&api::token::published_spec(&api.spec(), &token_url));
    // Backup archives are far larger than documents: their upload has a limit of its own.
    let rules = std::sync::Arc::new(
        body::RequestRules::from_spec(&serde_json::from_str(&spec).unwrap_or_default())
            .with_upload_limit(
                poem::http::Method::POST,
                api::BACKUP_UPLOAD_PATH,
                usize::try_from(state.config.backup_upload_max_bytes).unwrap_or(usize::MAX),
            ),
    );
    let docs = if token_url == DEFAULT_TOKEN_URL {
        api.swagger_ui_html()
    } else {
        // Swagger UI's Authorize button posts to the token URL written in its spec.
        api.swagger_ui_html().replace(
            &format!("\"{DEFAULT_TOKEN_URL}\""),
            &format!("{token_url:?}"),
        )
    };
    let metrics = state.metrics.clone();
    Route::new()
        .at(
            "/openapi.json",
            labelled(
                "get_openapi_spec",
                get(make_sync(move |_| {
                    poem::Response::builder()
                        .content_type("application/json; charset=utf-8")
                        .body(spec.clone())
                })),
            ),
        )
        .at(
            "/docs",
            labelled(
                "get_docs",
                get(make_sync(move |_| poem::web::Html(docs.clone()))),
            ),
        )
        .at(
            &token_url,
            labelled("issue_token", post(api::token::issue_token)),
        )
        .at(
            pages::set_password::PATH,
            labelled(
                "set_password_page",
                get(pages::set_password::show).post(pages::set_password::submit),
            ),
        )
        .at(
            "/webhooks/whatsapp",
            labelled(
                "whatsapp_webhook",
                get(webhooks::verify_app).post(webhooks::deliver_app),
            ),
        )
        .at(
            "/webhooks/whatsapp/:account_id",
            labelled(
                "whatsapp_account_webhook",
                get(webhooks::verify_account).post(webhooks::deliver_account),
            ),
        )
        .at(
            "/metrics",
            labelled(
                "get_metrics",
                get(make_sync(move |_| {
                    poem::Response::builder()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .body(metrics.render())
                })),
            ),
        )
        .nest("/", api)
        .around(refuse_while_restoring)
        .data(state.clone())
        .with(ErrorShapeMiddleware::new(rules))
        .with(CatchPanic::new().with_handler(|_| {
            poem::error::ResponseError::as_response(&ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged",
            ))
        }))
        .with(MetricsMiddleware(state.metrics.clone()))
        .into_endpoint()
}

/// Tags the answers of a route outside the OpenAPI service with an operation id, as the
/// service does for its own (metrics label requests by it).
fn labelled(operation: &'static str, ep: impl Endpoint + 'static) -> impl Endpoint {
    let op = poem_openapi::OperationId(operation);
    ep.map_to_response().around(move |ep, req| async move {
        match ep.call(req).await {
            Ok(mut resp) => {
                resp.set_data(op);
                Ok(resp)
            }
            Err(mut err) => {
                err.set_data(op);
                Err(err)
            }
        }
    })
}

/// While a backup is being restored the data is being replaced: API requests and webhook
/// deliveries are answered 503 (Meta retries deliveries), except the backups API itself.
async fn refuse_while_restoring<E: Endpoint>(
    ep: std::sync::Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    let path = req.uri().path();
    let guarded = (path.starts_with("/api/") || path.starts_with("/webhooks/"))
        && !path.starts_with("/api/v1/system/backups");
    let restoring = req
        .data::<AppState>()
        .is_some_and(|state| state.backups.is_restoring());
    if guarded && restoring {
        return Ok(poem::error::ResponseError::as_response(
            &ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "restoring",
                "a backup is being restored; try again when it has finished",
            )
            .with_retry_after(10),
        ));
    }
    ep.call(req).await.map(poem::IntoResponse::into_response)
}

/// The token URL the OpenAPI document is generated with.
const DEFAULT_TOKEN_URL: &str = "/auth/token";
/// The largest request body accepted (an upload: a 20 MB document plus multipart overhead).
/// JSON and form bodies are limited to [`body::SMALL_BODY_LIMIT`].
pub const MAX_BODY_BYTES: usize = body::UPLOAD_BODY_LIMIT;

/// Starts the server on an already-bound listener and runs until `shutdown` completes, then
/// lets in-flight requests finish (up to [`SHUTDOWN_GRACE`]).
pub async fn serve_with_listener(
    config: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with_options(config, listener, shutdown, state::ServerOptions::default()).await
}

/// [`serve_with_listener`] with plugged-in parts (a mailer, …).
pub async fn serve_with_options(
    config: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: state::ServerOptions,
) -> Result<(), ServerError> {
    let local_addr = listener.local_addr().ok();
    // Held while serving: a restore from the command line refuses to run meanwhile.
    let _data_dir_lock = backups::DataDirLock::shared(&config)?;
    let state = AppState::start_with(config, options).await?;
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(|source| ServerError::Io {
        context: "cannot use the listener".into(),
        source,
    })?;
    // The HTTP/1 parser's own 400/414/431 answers get the JSON error body too.
    let acceptor = listener::ShapedAcceptor(acceptor);
    tracing::info!(
        address = ?local_addr,
        store = state.store.admin.backend(),
        redis = state.redis.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "imix-server ready"
    );
    // The background workers (mail outbox, webhook ingest, media, contact imports,
    // scheduled backups) run until the server stops; a restore pauses them while it
    // replaces the data (see workers.rs).
    let workers = workers::Workers::start(&state);
    state
        .backups
        .set_workers(std::sync::Arc::new(workers.clone()));
    // Live-event streams never end by themselves: end them when shutdown begins, so that
    // draining does not wait out the grace period for clients to hang up.
    let streams = state.events.service.clone();
    // The new version of an update confirms itself once its /health answers.
    updates::confirm_when_healthy(&state.config, &state.updates, local_addr);
    let restart = state.updates.restarter.clone();
    let shutdown = async move {
        // An update's restart stops the server as a signal does (main then restarts it).
        tokio::select! {
            () = shutdown => {}
            () = restart.requested() => {}
        }
        streams.close_all();
    };
    let pruning = state.events.spawn_pruning();
    // Webhook deliveries are leased in the store: one aborted mid-send is sent again
    // once its lease runs out (receivers deduplicate by event id).
    let webhook_deliveries = state.webhook_worker.clone().spawn();
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(&state), shutdown, Some(SHUTDOWN_GRACE))
        .await;
    pruning.abort();
    webhook_deliveries.abort();
    workers.shut_down().await;
    served.map_err(|source| ServerError::Io {
        context: "the server stopped with an error".into(),
        source,
    })?;
    tracing::info!("imix-server stopped");
    Ok(())
}

/// Binds `IMIX_BIND` and serves until `shutdown` completes.
pub async fn serve(
    config: config::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServerError::Io {
            context: format!("cannot listen on IMIX_BIND {}", config.bind),
            source,
        })?;
    serve_with_listener(config, listener, shutdown).await
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this function is called, not when the future is first
/// polled, so a signal that arrives while the server is still starting is not lost (and does
/// not kill the process with the default action). Call it inside the Tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    })
}
