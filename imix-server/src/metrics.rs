//! Prometheus metrics: HTTP requests by route and status, and a latency histogram.
//!
//! The mail outbox worker's state is exported too: `imix_mail_outbox_worker_alive` (1 or 0),
//! `imix_mail_outbox_oldest_pending_seconds` (how long the most overdue email has waited
//! past its due time), `imix_mail_outbox_failures_total` (emails given up on) and
//! `imix_mail_outbox_worker_restarts_total`.
//!
//! Routes are labelled by their OpenAPI operation id (bounded cardinality: never the raw
//! path, which carries ids), `unmatched` for requests no route took.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The server's metrics registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// A registry with the HTTP metrics registered.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("imix".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by method and route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
        })
    }

    /// Exports the state of the mail outbox worker watched by `monitor`.
    pub fn watch_outbox(
        &self,
        monitor: imix_notify::outbox::OutboxMonitor,
    ) -> Result<(), prometheus::Error> {
        self.registry
            .register(Box::new(OutboxCollector::new(monitor)?))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

/// Records every request into [`Metrics`].
pub struct MetricsMiddleware(pub Metrics);

impl<E: Endpoint> Middleware<E> for MetricsMiddleware {
    type Output = MetricsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        MetricsEndpoint {
            inner: ep,
            metrics: self.0.clone(),
        }
    }
}

/// The endpoint made by [`MetricsMiddleware`].
pub struct MetricsEndpoint<E> {
    inner: E,
    metrics: Metrics,
}

impl<E: Endpoint> Endpoint for MetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let method = method_label(req.method());
        let resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        let status = resp.status().as_u16();
        // Every route sets its operation id (the OpenAPI service for its operations,
        // `crate::app` for the token endpoint, /docs, /metrics and /openapi.json).
        let route = resp
            .data::<poem_openapi::OperationId>()
            .map_or("unmatched", |op| op.0);
        self.metrics
            .observe(method, route, status, started.elapsed().as_secs_f64());
        Ok(resp)
    }
}

/// Reads the mail outbox worker's state at every scrape.
struct OutboxCollector {
    monitor: imix_notify::outbox::OutboxMonitor,
    alive: prometheus::IntGauge,
    oldest_pending: prometheus::Gauge,
    failures: prometheus::IntCounter,
    restarts: prometheus::IntCounter,
}

impl OutboxCollector {
    fn new(monitor: imix_notify::outbox::OutboxMonitor) -> Result<Self, prometheus::Error> {
        Ok(Self {
            monitor,
            alive: prometheus::IntGauge::new(
                "mail_outbox_worker_alive",
                "1 while this replica's mail outbox worker runs, 0 while it is restarted",
            )?,
            oldest_pending: prometheus::Gauge::new(
                "mail_outbox_oldest_pending_seconds",
                "How long the most overdue outbox email has waited past its due time",
            )?,
            failures: prometheus::IntCounter::new(
                "mail_outbox_failures_total",
                "Emails this replica gave up on (status failed)",
            )?,
            restarts: prometheus::IntCounter::new(
                "mail_outbox_worker_restarts_total",
                "Times this replica's mail outbox worker died and was restarted",
            )?,
        })
    }
}

impl prometheus::core::Collector for OutboxCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [
            self.alive.desc(),
            self.oldest_pending.desc(),
            self.failures.desc(),
            self.restarts.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let state = self.monitor.state();
        self.alive.set(i64::from(state.alive));
        self.oldest_pending.set(state.oldest_pending.as_secs_f64());
        // Counters only go up: add what the monitor counted since the last scrape.
        self.failures
            .inc_by(state.failures.saturating_sub(self.failures.get()));
        self.restarts
            .inc_by(state.restarts.saturating_sub(self.restarts.get()));
        [
            self.alive.collect(),
            self.oldest_pending.collect(),
            self.failures.collect(),
            self.restarts.collect(),
        ]
        .concat()
    }
}

/// The `method` label of a request: the standard methods by name, any other `other` (a
/// client must not be able to create series by inventing methods).
pub fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
