//! Tenant admins told, by email through the mail outbox, exactly once per event: when Meta
//! refuses a number's access token (190) and its sending is paused — however many messages
//! were refused — and when an event-subscription endpoint is disabled after repeated
//! delivery failures. Both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{
    outbound_world::{OutboundWorld, Setup, ADMIN_EMAIL, CUSTOMER, TOKEN},
    Backend,
};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_refused_token_emails_the_admins_once_per_pause,
    a_disabled_endpoint_emails_the_admins_once,
);

/// The world, with event-subscription deliveries that may go to this machine and give up
/// after two quick attempts.
async fn world(backend: Backend) -> OutboundWorld {
    let vars = vec![
        ("IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true".to_owned()),
        ("IMIX_WEBHOOK_RETRY_BASE_MS", "100".to_owned()),
        ("IMIX_WEBHOOK_MAX_ATTEMPTS", "2".to_owned()),
    ];
    OutboundWorld::start(
        backend,
        Setup {
            vars,
            ..Setup::default()
        },
    )
    .await
}

impl OutboundWorld {
    /// The templates of the outbox's emails to the tenant's admin.
    async fn emails(&self) -> Vec<Value> {
        let (status, list) = self
            .s
            .get_json(&self.platform, "/api/v1/system/mail-outbox?limit=100")
            .await;
        assert_eq!(status, 200, "{list}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"].as_str().unwrap().contains(ADMIN_EMAIL))
            .cloned()
            .collect()
    }

    /// Waits for an email with `template`; then waits a little and answers how many there
    /// are.
    async fn count_after_first(&self, template: &str) -> usize {
        let count = |all: &[Value]| all.iter().filter(|e| e["template"] == template).count();
        for _ in 0..400 {
            if count(&self.emails().await) > 0 {
                // Anything that would send a second one has had its chance.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                return count(&self.emails().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {template} email was queued: {:?}", self.emails().await);
    }
}

async fn a_refused_token_emails_the_admins_once_per_pause(backend: Backend) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    // Meta stops accepting the token (error 190): every message of the batch is refused.
    w.sim.expire_access_token(TOKEN);
    // Meta answers slowly: the three are all queued, and all in Meta's hands, before the
    // first refusal pauses the account.
    w.sim.set_response_delay(Some(Duration::from_millis(800)));
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, body) = w
            .send(json!({"conversation_id": conversation, "type": "text", "text": {"body": format!("hi {n}")}}))
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(w.count_after_first("sending_paused").await, 1);
    let email = w
        .emails()
        .await
        .into_iter()
        .find(|e| e["template"] == "sending_paused")
        .unwrap();
    assert!(
        email["subject"].as_str().unwrap().contains("Alpha"),
        "{email}"
    );
    assert!(
        email["subject"]
            .as_str()
            .unwrap()
            .contains("+1 555-010-0001"),
        "{email}"
    );
    // The messages wait, queued.
    for id in &ids {
        let m = w.message(id).await;
        assert_eq!(m["status"], "queued", "{m}");
    }
}

async fn a_disabled_endpoint_emails_the_admins_once(backend: Backend) {
    let w = world(backend).await;
    // Nothing listens there: every delivery fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, e) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path("/webhook-endpoints"),
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["message.received"]}),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    let endpoint = e["id"].as_str().unwrap().to_owned();
    w.inbound(CUSTOMER, "hello").await;
    w.inbound(CUSTOMER, "again").await;
    for _ in 0..400 {
        let e = w.get(&format!("/webhook-endpoints/{endpoint}")).await;
        if e["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = w.get(&format!("/webhook-endpoints/{endpoint}")).await;
    assert_eq!(e["status"], "disabled", "{e}");
    assert_eq!(w.count_after_first("webhook_endpoint_disabled").await, 1);
    let email = w
        .emails()
        .await
        .into_iter()
        .find(|e| e["template"] == "webhook_endpoint_disabled")
        .unwrap();
    assert!(
        email["subject"].as_str().unwrap().contains("Alpha"),
        "{email}"
    );
}
