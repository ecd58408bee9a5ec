//! Sends stored deliveries: claims due ones with a lease (several replicas share the work),
//! signs and POSTs each to the address its URL was just checked to resolve to, records the
//! outcome, and schedules a retry with exponential backoff and jitter. A delivery that
//! fails its last attempt is given up and its endpoint disabled; the tenant's admins see
//! that in the audit log (`webhook_endpoint.disabled`) and on the endpoint (`status`,
//! `disabled_reason`), are emailed (through [`crate::EndpointAlerts`]), and it is logged as
//! a warning.

use std::{sync::Arc, time::Duration};

use imix_core::{model::AuditEntry, store::Scope, Timestamp};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::{
    records::{DeliveryState, EndpointStatus, WebhookDelivery, WebhookEndpoint},
    service::SubscriptionService,
    sign::{
        signature_header, DELIVERY_ID_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER,
    },
    target,
};

/// How often an idle worker looks for due deliveries.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Deliveries sent at once by one worker.
const CONCURRENCY: usize = 16;

/// What one attempt came to.
enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// Worth another attempt: a status, or what went wrong.
    Failed(Option<u16>, String),
    /// Not worth another attempt (the endpoint is gone or off, its secret unreadable).
    Dropped(String),
}

/// The delivery worker.
#[derive(Clone, Debug)]
pub struct DeliveryWorker {
    service: SubscriptionService,
}

impl DeliveryWorker {
    /// A worker over `service`'s storage and settings.
    pub fn new(service: SubscriptionService) -> Self {
        Self { service }
    }

    /// Runs until the task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENCY));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                match self.claim().await {
                    Some(delivery) => {
                        let worker = self.clone();
                        tokio::spawn(async move {
                            worker.process(delivery).await;
                            drop(permit);
                        });
                    }
                    None => {
                        drop(permit);
                        tokio::time::sleep(POLL_EVERY).await;
                    }
                }
            }
        })
    }

    async fn claim(&self) -> Option<WebhookDelivery> {
        let now = imix_core::now();
        let lease = self.service.config.request_timeout + Duration::from_secs(30);
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        match self.service.storage.deliveries.claim_due(now, until).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a webhook delivery");
                None
            }
        }
    }

    /// Claims and sends one due delivery, if there is one; whether there was. For tests
    /// and tools; [`DeliveryWorker::spawn`] runs this in a loop.
    pub async fn run_once(&self) -> bool {
        match self.claim().await {
            Some(d) => {
                self.process(d).await;
                true
            }
            None => false,
        }
    }

    async fn process(&self, mut delivery: WebhookDelivery) {
        let endpoint = self
            .service
            .storage
            .endpoints
            .get(Scope::Tenant(delivery.tenant_id), delivery.endpoint_id)
            .await;
        let outcome = match endpoint {
            Ok(e) if e.status == EndpointStatus::Active => self.attempt(&e, &delivery).await,
            Ok(_) => Outcome::Dropped("the endpoint is disabled".into()),
            Err(imix_core::Error::NotFound { .. }) => {
                Outcome::Dropped("the endpoint was deleted".into())
            }
            Err(e) => {
                // The store is unwell: try again later without counting an attempt.
                tracing::warn!(error = %e, "cannot read a webhook endpoint");
                delivery.lease_until = None;
                delivery.due_at = Some(later(imix_core::now(), Duration::from_secs(30)));
                self.save(delivery).await;
                return;
            }
        };
        let now = imix_core::now();
        delivery.lease_until = None;
        delivery.last_attempt_at = Some(now);
        let mut give_up = false;
        match outcome {
            Outcome::Delivered(status) => {
                delivery.attempts = delivery.attempts.saturating_add(1);
                delivery.state = DeliveryState::Succeeded;
                delivery.due_at = None;
                delivery.last_status = Some(status);
                delivery.last_error = None;
            }
            Outcome::Dropped(why) => {
                delivery.state = DeliveryState::Failed;
                delivery.due_at = None;
                delivery.last_status = None;
                delivery.last_error = Some(why);
            }
            Outcome::Failed(status, why) => {
                delivery.attempts = delivery.attempts.saturating_add(1);
                delivery.last_status = status;
                delivery.last_error = Some(why);
                if delivery.attempts >= self.service.config.max_attempts {
                    delivery.state = DeliveryState::Failed;
                    delivery.due_at = None;
                    give_up = true;
                } else {
                    delivery.due_at = Some(later(now, self.backoff(delivery.attempts)));
                }
            }
        }
        let (tenant, endpoint_id, attempts) =
            (delivery.tenant_id, delivery.endpoint_id, delivery.attempts);
        self.save(delivery).await;
        if give_up {
            self.disable(tenant, endpoint_id, attempts).await;
        }
    }

    async fn save(&self, delivery: WebhookDelivery) {
        match self.service.storage.deliveries.update(&delivery).await {
            Ok(_) => {}
            Err(imix_core::Error::VersionConflict { .. }) => {
                tracing::debug!(delivery = %delivery.id, "webhook delivery taken over by another worker");
            }
            Err(e) => {
                tracing::warn!(error = %e, delivery = %delivery.id, "cannot record a webhook delivery's attempt")
            }
        }
    }

    /// The delay before attempt `attempts + 1`: the base doubled per attempt made, capped,
    /// then ±20 % so that many failures do not retry in lockstep.
    fn backoff(&self, attempts: u32) -> Duration {
        let c = &self.service.config;
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        let raw = c.retry_base.saturating_mul(factor).min(c.max_delay);
        raw.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
    }

    async fn attempt(&self, endpoint: &WebhookEndpoint, delivery: &WebhookDelivery) -> Outcome {
        let c = &self.service.config;
        let secret = match self.service.cipher.decrypt_secret(
            &endpoint.secret_enc,
            &WebhookEndpoint::secret_aad(endpoint.id),
        ) {
            Ok(s) => s,
            Err(_) => return Outcome::Dropped("the endpoint's secret cannot be read".into()),
        };
        let url = match target::parse_url(&endpoint.url) {
            Ok(u) => u,
            Err(e) => return Outcome::Dropped(format!("the URL {e}")),
        };
        // Checked again now, and the request goes to the very addresses checked.
        let checked = match target::check(&url, c.allow_private_targets).await {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(None, format!("refused: {e}")),
        };
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(c.request_timeout)
            .resolve_to_addrs(&checked.host, &checked.addrs)
            .user_agent(concat!("imix-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => client,
            Err(_) => return Outcome::Failed(None, "cannot build an HTTP client".into()),
        };
        let timestamp = imix_core::now().timestamp();
        let signature = signature_header(
            &secret,
            &delivery.event_id,
            timestamp,
            delivery.body.as_bytes(),
        );
        let sent = client
            .post(checked.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, &delivery.event_id)
            .header(DELIVERY_ID_HEADER, delivery.id.to_string())
            .header(EVENT_TYPE_HEADER, &delivery.event_type)
            .header(SIGNATURE_HEADER, signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered(resp.status().as_u16()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                Outcome::Failed(Some(status), format!("the endpoint answered HTTP {status}"))
            }
            Err(e) if e.is_timeout() => Outcome::Failed(None, "the request timed out".into()),
            Err(e) if e.is_connect() => Outcome::Failed(None, "the connection failed".into()),
            Err(_) => Outcome::Failed(None, "the request failed".into()),
        }
    }

    /// Turns the endpoint off after a delivery was given up, records it in the audit log
    /// for the tenant's admins, and logs it.
    async fn disable(
        &self,
        tenant: imix_core::id::TenantId,
        id: crate::records::WebhookEndpointId,
        attempts: u32,
    ) {
        let scope = Scope::Tenant(tenant);
        let reason = format!("a delivery failed {attempts} attempts in a row");
        for _ in 0..5 {
            let Ok(mut endpoint) = self.service.storage.endpoints.get(scope, id).await else {
                return;
            };
            if endpoint.status == EndpointStatus::Disabled {
                return;
            }
            endpoint.status = EndpointStatus::Disabled;
            endpoint.disabled_reason = Some(reason.clone());
            endpoint.updated_at = imix_core::now();
            match self
                .service
                .storage
                .endpoints
                .update(scope, &endpoint)
                .await
            {
                Ok(_) => {
                    self.service.forget(tenant);
                    tracing::warn!(tenant = %tenant, endpoint = %id, attempts,
                        "webhook endpoint disabled after repeated delivery failures");
                    let mut e = AuditEntry::new("webhook_endpoint.disabled", "webhook_endpoint");
                    e.tenant_id = Some(tenant);
                    e.target_id = Some(id.to_string());
                    if let Err(err) = self.service.audit.append(&e).await {
                        tracing::error!(error = %err, "cannot write the audit log");
                    }
                    // Once: only the worker whose update disabled it gets here.
                    if let Some(alerts) = &self.service.alerts {
                        alerts
                            .endpoint_disabled(tenant, &endpoint.url, &reason)
                            .await;
                    }
                    return;
                }
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, endpoint = %id, "cannot disable a webhook endpoint");
                    return;
                }
            }
        }
    }
}

fn later(now: Timestamp, delay: Duration) -> Timestamp {
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}
