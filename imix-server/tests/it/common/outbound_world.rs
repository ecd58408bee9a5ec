//! The world the outbound tests share: a Graph API simulator holding one business and
//! number, a server on it, a tenant with its admin, the number's WhatsApp account added and
//! verified, and a customer's inbound message that opens a conversation's window.
//!
//! A test file adds the helpers only it needs in an `impl OutboundWorld` block of its own
//! (inherent impls may live in any module of the test crate; their names must not clash).

use std::{collections::HashMap, time::Duration};

use imix_whatsapp::{
    simulator::{Inbound, SimBusiness, SimPhoneNumber, SimTemplate, Simulator},
    webhook::{InboundContent, InboundText},
};
use reqwest::Method;
use serde_json::{json, Value};

use super::{base_vars, Backend, TestServer};

/// The business's WABA id.
pub const WABA: &str = "1001";
/// The number's phone number id unless [`Setup::phone`] names another.
pub const PHONE: &str = "2001";
/// The number as shown (in emails to the admins, say).
pub const DISPLAY_PHONE: &str = "+1 555-010-0001";
/// The business's access token at Meta.
pub const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
/// The app secret Meta signs its webhooks with.
pub const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
/// The customer who writes first.
pub const CUSTOMER: &str = "15550100111";
/// The tenant admin's email.
pub const ADMIN_EMAIL: &str = "owner@alpha.example";

/// What differs between the outbound tests' worlds.
#[derive(Default)]
pub struct Setup {
    /// The number's phone number id ([`PHONE`] if `None`): a test sharing Redis with
    /// others wants one of its own, the rate key being per number.
    pub phone: Option<String>,
    /// Message templates the business has at Meta.
    pub templates: Vec<SimTemplate>,
    /// Sends a second the simulator lets the number make (more are refused with 130429).
    pub sim_rate: Option<u32>,
    /// The account's `max_messages_per_second` in imix.
    pub rate: Option<u32>,
    /// Server variables besides the store's and the Graph API URL.
    pub vars: Vec<(&'static str, String)>,
}

/// A running outbound world (see the module doc).
pub struct OutboundWorld {
    pub sim: Simulator,
    pub s: TestServer,
    /// The server's variables (for another process or replica on the same store).
    pub vars: HashMap<String, String>,
    /// The platform admin's token.
    pub platform: String,
    pub tenant: String,
    /// The tenant admin's token.
    pub admin: String,
    /// The WhatsApp account's id.
    pub account: String,
    /// The number's phone number id.
    pub phone: String,
}

impl OutboundWorld {
    /// Starts the simulator and the server on `backend`, and sets the tenant, its admin and
    /// its verified account up as `setup` says. No inbound message yet: see
    /// [`OutboundWorld::inbound`].
    pub async fn start(backend: Backend, setup: Setup) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener).await.unwrap();
        let phone = setup.phone.unwrap_or_else(|| PHONE.to_owned());
        let mut number =
            SimPhoneNumber::new(&phone, DISPLAY_PHONE).with_verified_name("Alpha Trading");
        if let Some(rate) = setup.sim_rate {
            number = number.with_messages_per_second(rate);
        }
        let mut business = SimBusiness::new(WABA, SECRET, TOKEN).with_phone_number(number);
        for t in setup.templates {
            business = business.with_template(t);
        }
        sim.add_business(business);
        let dir = tempfile::tempdir().unwrap();
        let mut vars = base_vars(dir.path(), backend);
        vars.insert("IMIX_GRAPH_API_URL".into(), sim.url());
        for (k, v) in setup.vars {
            vars.insert(k.into(), v);
        }
        let s = TestServer::start_in(dir, vars.clone()).await;
        let platform = s.admin().await;
        let t = s.create_tenant(&platform, json!({"name": "Alpha"})).await;
        let tenant = t["id"].as_str().unwrap().to_owned();
        let (_, admin) = s
            .user_with_token(
                &platform,
                json!({"email": ADMIN_EMAIL, "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
            )
            .await;
        let a = s
            .add_whatsapp_account(
                &admin,
                &tenant,
                json!({
                    "waba_id": WABA,
                    "business_account_id": "1000",
                    "phone_number_id": phone,
                    "app_id": "3003",
                    "display_phone_number": DISPLAY_PHONE,
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
        if let Some(rate) = setup.rate {
            let (status, v) = s
                .send_json(
                    &admin,
                    Method::PATCH,
                    &format!("/api/v1/whatsapp-accounts/{account}"),
                    json!({ "max_messages_per_second": rate }),
                )
                .await;
            assert_eq!(status, 200, "{v}");
        }
        Self {
            sim,
            s,
            vars,
            platform,
            tenant,
            admin,
            account,
            phone,
        }
    }

    /// The tenant's API path of `rest`.
    pub fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}{rest}", self.tenant)
    }

    /// GET the tenant's `rest` as its admin: status and body.
    pub async fn get_raw(&self, rest: &str) -> (u16, Value) {
        self.s.get_json(&self.admin, &self.path(rest)).await
    }

    /// GET the tenant's `rest` as its admin; must be 200.
    pub async fn get(&self, rest: &str) -> Value {
        let (status, body) = self.get_raw(rest).await;
        assert_eq!(status, 200, "{rest}: {body}");
        body
    }

    /// The send API as the tenant admin.
    pub async fn send(&self, body: Value) -> (u16, Value) {
        self.send_as(&self.admin, body, None).await
    }

    /// The send API as the tenant admin, with an `Idempotency-Key` if `key` is given.
    pub async fn send_with_key(&self, body: Value, key: Option<&str>) -> (u16, Value) {
        self.send_as(&self.admin, body, key).await
    }

    /// The send API as `token`, with an `Idempotency-Key` if `key` is given.
    pub async fn send_as(&self, token: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut req = self
            .s
            .call(token, Method::POST, &self.path("/messages"))
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// An outbound message.
    pub async fn message(&self, id: &str) -> Value {
        self.get(&format!("/messages/{id}")).await
    }

    /// Waits until the message reaches `status`; answers it.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.message(id).await;
            if m["status"] == status {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "message {id} never reached {status}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Today's message counter of the tenant.
    pub async fn messages_used_today(&self) -> u64 {
        self.get("/usage").await["today"]["messages"]
            .as_u64()
            .unwrap()
    }

    /// Waits until today's message counter is `n` (quota given back after the status).
    pub async fn wait_usage(&self, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let used = self.messages_used_today().await;
            if used == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "messages used today stayed {used}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `from` writes `text` to the number (which opens the window); answers the
    /// conversation, the stored message's id and its wamid once it is stored.
    pub async fn inbound(&self, from: &str, text: &str) -> (String, String, String) {
        let (wamid, _) = self
            .sim
            .send_inbound(
                &self.phone,
                Inbound::new(
                    from,
                    "Customer",
                    InboundContent::Text {
                        text: InboundText { body: text.into() },
                    },
                ),
            )
            .await
            .unwrap();
        let (conversation, message) = self.stored(&wamid).await;
        (conversation, message, wamid)
    }

    /// Waits until the inbound message `wamid` is stored and its conversation's window is
    /// open; answers the conversation and the message.
    pub async fn stored(&self, wamid: &str) -> (String, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let convs = self.get("/conversations?limit=100").await;
            for c in convs["items"].as_array().unwrap() {
                // The window opens with the conversation's update, after the message.
                if !c["window_expires_at"].is_string() {
                    continue;
                }
                let id = c["id"].as_str().unwrap();
                let msgs = self
                    .get(&format!("/conversations/{id}/messages?limit=100"))
                    .await;
                if let Some(m) = msgs["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["wamid"] == wamid)
                {
                    return (id.to_owned(), m["id"].as_str().unwrap().to_owned());
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the inbound message {wamid} was never stored"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
