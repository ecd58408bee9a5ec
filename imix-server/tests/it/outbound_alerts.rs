//! Tenant admins told, by email through the mail outbox, exactly once per event: when Meta
//! refuses a number's access token (190) and its sending is paused — however many messages
//! were refused — and when an event-subscription endpoint is disabled after repeated
//! delivery failures. Both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{base_vars, Backend, TestServer};
use imix_whatsapp::{
    simulator::{Inbound, SimBusiness, SimPhoneNumber, Simulator},
    webhook::{InboundContent, InboundText},
};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_refused_token_emails_the_admins_once_per_pause,
    a_disabled_endpoint_emails_the_admins_once,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
const CUSTOMER: &str = "15550100111";
const ADMIN: &str = "owner@alpha.example";

struct World {
    sim: Simulator,
    s: TestServer,
    tenant: String,
    admin: String,
    platform: String,
}

async fn world(backend: Backend) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener).await.unwrap();
    sim.add_business(SimBusiness::new(WABA, SECRET, TOKEN).with_phone_number(
        SimPhoneNumber::new(PHONE, "+1 555-010-0001").with_verified_name("Alpha Trading"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut vars = base_vars(dir.path(), backend);
    vars.insert("IMIX_GRAPH_API_URL".into(), sim.url());
    vars.insert("IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS".into(), "true".into());
    vars.insert("IMIX_WEBHOOK_RETRY_BASE_MS".into(), "100".into());
    vars.insert("IMIX_WEBHOOK_MAX_ATTEMPTS".into(), "2".into());
    let s = TestServer::start_in(dir, vars.clone()).await;
    let platform = s.admin().await;
    let t = s.create_tenant(&platform, json!({"name": "Alpha"})).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
        )
        .await;
    let a = s
        .add_whatsapp_account(
            &admin,
            &tenant,
            json!({
                "waba_id": WABA,
                "business_account_id": "1000",
                "phone_number_id": PHONE,
                "app_id": "3003",
                "display_phone_number": "+1 555-010-0001",
                "business_name": "Alpha Trading",
                "access_token": TOKEN,
                "app_secret": SECRET,
            }),
        )
        .await;
    let account = a["id"].as_str().unwrap().to_owned();
    sim.set_webhook_url(WABA, &s.url("/webhooks/whatsapp"));
    let (status, v) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/whatsapp-accounts/{account}/verify"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    World {
        sim,
        s,
        tenant,
        admin,
        platform,
    }
}

impl World {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}{rest}", self.tenant)
    }

    async fn get(&self, rest: &str) -> (u16, Value) {
        self.s.get_json(&self.admin, &self.path(rest)).await
    }

    async fn send(&self, body: Value) -> (u16, Value) {
        self.s
            .send_json(&self.admin, Method::POST, &self.path("/messages"), body)
            .await
    }

    /// The customer writes; answers the conversation once its window is open.
    async fn inbound(&self, text: &str) -> String {
        self.sim
            .send_inbound(
                PHONE,
                Inbound::new(
                    CUSTOMER,
                    "Customer",
                    InboundContent::Text {
                        text: InboundText { body: text.into() },
                    },
                ),
            )
            .await
            .unwrap();
        for _ in 0..600 {
            let (_, convs) = self.get("/conversations?limit=10").await;
            if let Some(c) = convs["items"]
                .as_array()
                .and_then(|l| l.first())
                .filter(|c| c["window_expires_at"].is_string())
            {
                return c["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the conversation never opened");
    }

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
            .filter(|e| e["to"].as_str().unwrap().contains(ADMIN))
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
    let conversation = w.inbound("hello").await;
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
        let (_, m) = w.get(&format!("/messages/{id}")).await;
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
    w.inbound("hello").await;
    w.inbound("again").await;
    for _ in 0..400 {
        let (_, e) = w.get(&format!("/webhook-endpoints/{endpoint}")).await;
        if e["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, e) = w.get(&format!("/webhook-endpoints/{endpoint}")).await;
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
