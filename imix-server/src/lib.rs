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

pub mod api;
pub mod auth;
pub mod config;
pub mod doctor;
pub mod error;
pub mod metrics;
pub mod notify_bridge;
pub mod pages;
pub mod probe;
pub mod quota_backend;
pub mod state;
pub mod telemetry;
pub mod whatsapp;

use std::{future::Future, time::Duration};

use poem::{
    endpoint::make_sync, get, http::StatusCode, listener::TcpAcceptor, middleware::CatchPanic,
    post, Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Route, Server,
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
}

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The whole HTTP application for `state`: API, spec, docs, metrics, with the error shape
/// and metrics middleware around everything.
pub fn app(state: &AppState) -> impl poem::Endpoint + 'static {
    let api = api::service(state);
    let token_url = state.config.token_url.clone();
    let spec = api::token::published_spec(&api.spec(), &token_url);
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
            get(make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(spec.clone())
            })),
        )
        .at(
            "/docs",
            get(make_sync(move |_| poem::web::Html(docs.clone()))),
        )
        .at(&token_url, post(api::token::issue_token))
        .at(
            pages::set_password::PATH,
            get(pages::set_password::show).post(pages::set_password::submit),
        )
        .at(
            "/metrics",
            get(make_sync(move |_| {
                poem::Response::builder()
                    .content_type("text/plain; version=0.0.4; charset=utf-8")
                    .body(metrics.render())
            })),
        )
        .nest("/", api)
        .data(state.clone())
        .around(|ep, req| async move {
            // Refuse oversized bodies before reading them (uploads check again while reading).
            let declared = req
                .header(poem::http::header::CONTENT_LENGTH)
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
                .into());
            }
            ep.call(req).await.map(IntoResponse::into_response)
        })
        .with(ErrorShapeMiddleware)
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

/// The token URL the OpenAPI document is generated with.
const DEFAULT_TOKEN_URL: &str = "/auth/token";
/// The largest request body accepted (a 20 MB document plus multipart overhead).
pub const MAX_BODY_BYTES: usize = 21 * 1024 * 1024;

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
    let state = AppState::start_with(config, options).await?;
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(|source| ServerError::Io {
        context: "cannot use the listener".into(),
        source,
    })?;
    tracing::info!(
        address = ?local_addr,
        store = state.store.admin.backend(),
        redis = state.redis.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "imix-server ready"
    );
    // The mail outbox worker runs as long as the server; it stops (after finishing the email
    // it is sending, if any) once the server has.
    let (stop_outbox, outbox_stopped) = tokio::sync::watch::channel(false);
    let outbox = tokio::spawn(state.notifier.worker().run(async move {
        let mut stopped = outbox_stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(&state), shutdown, Some(SHUTDOWN_GRACE))
        .await;
    let _ = stop_outbox.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, outbox).await.is_err() {
        tracing::warn!(
            "the mail outbox worker did not stop in time; its email stays in the outbox"
        );
    }
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
