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
pub mod config;
pub mod doctor;
pub mod error;
pub mod metrics;
pub mod probe;
pub mod state;
pub mod telemetry;

use std::{future::Future, time::Duration};

use poem::{
    endpoint::make_sync, get, http::StatusCode, listener::TcpAcceptor, middleware::CatchPanic,
    EndpointExt, IntoEndpoint, Route, Server,
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
}

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The whole HTTP application for `state`: API, spec, docs, metrics, with the error shape
/// and metrics middleware around everything.
pub fn app(state: &AppState) -> impl poem::Endpoint + 'static {
    let api = api::service(state);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let metrics = state.metrics.clone();
    Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at(
            "/metrics",
            get(make_sync(move |_| {
                poem::Response::builder()
                    .content_type("text/plain; version=0.0.4; charset=utf-8")
                    .body(metrics.render())
            })),
        )
        .nest("/", api)
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

/// Starts the server on an already-bound listener and runs until `shutdown` completes, then
/// lets in-flight requests finish (up to [`SHUTDOWN_GRACE`]).
pub async fn serve_with_listener(
    config: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local_addr = listener.local_addr().ok();
    let state = AppState::start(config).await?;
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
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(&state), shutdown, Some(SHUTDOWN_GRACE))
        .await
        .map_err(|source| ServerError::Io {
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
