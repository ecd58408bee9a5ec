//! Auto-reply end to end, on both stores, against the Graph API simulator and the AI
//! simulator: off by default; when on, one answer per inbound message sent through the
//! normal path and marked `auto_reply`, with its tokens counted; the per-conversation
//! limit; assigned conversations left alone; a customer asking for a human (English,
//! French, Arabic) flags the conversation and silences the assistant; business hours;
//! opt-out and the daily message quota respected; the settings route's 404, 403 and 422.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{base_vars, Backend, TestServer};
use imix_ai::simulator::{self, SimulatorConfig, SimulatorHandle};
use imix_core::{id::TenantId, store::Scope};
use imix_messaging::{
    auto_reply::AutoReplyJobState, records::MessageId, storage::auto_reply::AutoReplyJobRepository,
};
use imix_whatsapp::{
    simulator::{Inbound, SimBusiness, SimPhoneNumber, Simulator},
    webhook::{InboundContent, InboundText},
};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    off_by_default_then_answers_marked_and_metered,
    at_most_the_limit_per_conversation,
    assigned_conversations_get_no_answer,
    asking_for_a_human_flags_the_conversation_and_silences_the_assistant,
    outside_business_hours_follows_the_calendar,
    opt_out_and_the_daily_quota_apply,
    settings_route_checks_tenant_permission_and_fields,
);

const WABA: &str = "1001";
pub(crate) const PHONE: &str = "2001";
pub(crate) const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
pub(crate) const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
pub(crate) const KEY: &str = "sk-test-platform-0123456789abcd";

/// How long a test waits, once every auto-reply job of its messages is done, before it
/// concludes that no (further) answer comes.
const QUIET: Duration = Duration::from_millis(1500);

/// A server with a tenant, its admin, a verified WhatsApp account on the Graph API
/// simulator and the platform's AI settings on the AI simulator (shared with
/// `auto_reply_edges`).
pub(crate) struct World {
    pub(crate) sim: Simulator,
    pub(crate) ai: SimulatorHandle,
    pub(crate) s: TestServer,
    pub(crate) platform: String,
    pub(crate) tenant: String,
    pub(crate) admin: String,
    pub(crate) admin_id: String,
    pub(crate) account: String,
    /// The auto-reply jobs, read from the server's own store, so that a test concluding
    /// "no answer" first knows every job of its messages was handled (and not merely
    /// late on a loaded machine).
    pub(crate) jobs: Arc<dyn AutoReplyJobRepository>,
    /// The ids of the inbound messages the test sent, in order.
    pub(crate) inbound_ids: Mutex<Vec<String>>,
}

pub(crate) async fn world(backend: Backend, limits: Option<Value>) -> World {
    let ai = simulator::spawn(SimulatorConfig::default().with_api_key(KEY))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener).await.unwrap();
    sim.add_business(SimBusiness::new(WABA, SECRET, TOKEN).with_phone_number(
        SimPhoneNumber::new(PHONE, "+1 555-010-0001").with_verified_name("Alpha Trading"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut vars = base_vars(dir.path(), backend);
    vars.insert("IMIX_GRAPH_API_URL".into(), sim.url());
    vars.insert("IMIX_ALLOW_PRIVATE_AI_URLS".into(), "true".into());
    let config = imix_server::config::Config::from_vars(vars.clone()).unwrap();
    let s = TestServer::start_in(dir, vars).await;
    let platform = s.admin().await;
    // Opened once the server is up, so that the two do not race to create the store.
    let store = imix_server::storage::Storage::open(&config).await.unwrap();
    let jobs = imix_messaging::storage::auto_reply::open(&store.store.backend).unwrap();
    let mut tenant_body = json!({"name": "Alpha"});
    if let Some(l) = limits {
        tenant_body["limits"] = l;
    }
    let t = s.create_tenant(&platform, tenant_body).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (admin_user, admin) = s
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
                "waba_id": WABA, "business_account_id": "1000", "phone_number_id": PHONE,
                "app_id": "3003", "display_phone_number": "+1 555-010-0001",
                "business_name": "Alpha Trading", "access_token": TOKEN, "app_secret": SECRET,
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
    let (status, v) = s
        .send_json(
            &platform,
            Method::PUT,
            "/api/v1/settings/ai",
            json!({
                "providers": {"chatgpt": {"api_key": KEY, "model": "gpt-4o-mini", "max_tokens": 300, "url": ai.openai_base_url()}},
                "default_provider": "chatgpt",
            }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    World {
        sim,
        ai,
        s,
        platform,
        tenant,
        admin,
        admin_id: admin_user["id"].as_str().unwrap().to_owned(),
        account,
        jobs,
        inbound_ids: Mutex::new(Vec::new()),
    }
}

impl World {
    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}{rest}", self.tenant)
    }

    pub(crate) async fn get(&self, rest: &str) -> Value {
        let (status, body) = self.s.get_json(&self.admin, &self.path(rest)).await;
        assert_eq!(status, 200, "{rest}: {body}");
        body
    }

    pub(crate) fn settings_path(&self) -> String {
        self.path(&format!("/whatsapp-accounts/{}/auto-reply", self.account))
    }

    pub(crate) async fn put_settings(&self, body: Value) -> (u16, Value) {
        self.s
            .send_json(&self.admin, Method::PUT, &self.settings_path(), body)
            .await
    }

    pub(crate) async fn enable(&self, body: Value) {
        let (status, v) = self.put_settings(body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["enabled"], true);
    }

    /// The customer `from` writes `text`; answers the conversation once the message is
    /// stored and the conversation updated.
    pub(crate) async fn inbound(&self, from: &str, text: &str) -> String {
        let (wamid, _) = self
            .sim
            .send_inbound(
                PHONE,
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
        for _ in 0..500 {
            let convs = self.get("/conversations?limit=100").await;
            for c in convs["items"].as_array().unwrap() {
                let id = c["id"].as_str().unwrap();
                let msgs = self
                    .get(&format!("/conversations/{id}/messages?limit=100"))
                    .await;
                let stored = msgs["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["wamid"] == wamid.as_str());
                if let Some(m) = stored {
                    if c["last_inbound_at"].is_string() {
                        let message = m["id"].as_str().unwrap().to_owned();
                        self.inbound_ids.lock().unwrap().push(message);
                        return id.to_owned();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the inbound message was not stored");
    }

    /// Waits until the simulator got `n` messages (or 60 s: loaded shared test databases); answers how many it got.
    pub(crate) async fn wait_sent(&self, n: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.sim.sent_messages().len() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.sim.sent_messages().len()
    }

    /// Waits until the auto-reply job of every inbound message sent so far is handled (up
    /// to 60 s; a message that made no job — auto-reply off — has nothing to wait for), then
    /// [`QUIET`] for an answer on its way; answers how many messages the simulator got.
    pub(crate) async fn sent_after_quiet(&self) -> usize {
        let tenant = TenantId::from_str(&self.tenant).unwrap();
        let ids: Vec<String> = self.inbound_ids.lock().unwrap().clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for id in ids {
            let id = MessageId::from_str(&id).unwrap();
            loop {
                match self.jobs.get(Scope::Tenant(tenant), id).await {
                    Ok(job) if job.state != AutoReplyJobState::Pending => break,
                    Ok(job) => assert!(
                        std::time::Instant::now() < deadline,
                        "the auto-reply job of {id} is still pending: {job:?}"
                    ),
                    Err(imix_core::Error::NotFound { .. }) => break,
                    Err(e) => panic!("reading the auto-reply job of {id}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        tokio::time::sleep(QUIET).await;
        self.sim.sent_messages().len()
    }

    pub(crate) async fn conversation(&self, id: &str) -> Value {
        self.get(&format!("/conversations/{id}")).await
    }

    /// Waits (up to 60 s) until the conversation is flagged for a human; answers it.
    pub(crate) async fn wait_flagged(&self, id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.conversation(id).await;
            if c["handoff_requested_at"].is_string() || std::time::Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) async fn outbound_messages(&self, conversation: &str) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msgs = self
                .get(&format!("/conversations/{conversation}/messages?limit=100"))
                .await;
            let out: Vec<Value> = msgs["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "outbound")
                .cloned()
                .collect();
            if !out.is_empty() || std::time::Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) async fn assign(&self, conversation: &str, user: Option<&str>) {
        let (status, v) = self
            .s
            .send_json(
                &self.admin,
                Method::PATCH,
                &self.path(&format!("/conversations/{conversation}")),
                json!({ "assignee": user }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
}

async fn off_by_default_then_answers_marked_and_metered(backend: Backend) {
    let w = world(backend, None).await;
    let (status, v) = w.s.get_json(&w.admin, &w.settings_path()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], false, "off by default: {v}");
    assert_eq!(v["mode"], "always");
    assert_eq!(v["max_replies_per_conversation"], 3);
    assert_eq!(v["version"], 0);

    w.inbound("15550100111", "What time do you open?").await;
    assert_eq!(w.sent_after_quiet().await, 0, "off: no answer");

    w.enable(json!({"enabled": true})).await;
    let conversation = w.inbound("15550100111", "Do you deliver to Atar?").await;
    assert_eq!(w.wait_sent(1).await, 1, "one answer");
    assert_eq!(w.sent_after_quiet().await, 1, "only one");
    let sent = w.sim.sent_messages();
    assert_eq!(sent[0].message.to, "15550100111");

    let out = w.outbound_messages(&conversation).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["auto_reply"], true, "{:?}", out[0]);
    let record = w
        .get(&format!("/messages/{}", out[0]["id"].as_str().unwrap()))
        .await;
    assert_eq!(record["auto_reply"], true, "{record}");
    assert!(record["idempotency_key"]
        .as_str()
        .unwrap()
        .starts_with("auto-reply:"));
    assert!(!record["content"]["text"]["body"]
        .as_str()
        .unwrap()
        .is_empty());
    // The inbound message is not an auto-reply.
    let msgs = w
        .get(&format!("/conversations/{conversation}/messages?limit=100"))
        .await;
    assert!(msgs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .all(|m| m["auto_reply"] == false));

    let usage = w.get("/usage/ai").await;
    assert!(usage["total_tokens"].as_u64().unwrap() > 0, "{usage}");
    // Its daily message quota was taken, as for any send.
    let conv = w.conversation(&conversation).await;
    assert!(conv["handoff_requested_at"].is_null(), "{conv}");

    // The change is audited.
    let (_, log) =
        w.s.get_json(&w.platform, "/api/v1/audit-log?limit=50")
            .await;
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "settings.auto_reply.update"),
        "{log}"
    );
    w.s.stop().await;
}

async fn at_most_the_limit_per_conversation(backend: Backend) {
    let w = world(backend, None).await;
    w.enable(json!({"enabled": true, "mode": "always", "max_replies_per_conversation": 2}))
        .await;
    w.inbound("15550100111", "Hello").await;
    assert_eq!(w.wait_sent(1).await, 1);
    w.inbound("15550100111", "How much is the cake?").await;
    assert_eq!(w.wait_sent(2).await, 2);
    w.inbound("15550100111", "And the bread?").await;
    assert_eq!(w.sent_after_quiet().await, 2, "N+1 messages, N answers");
    // The limit is per conversation: another customer is answered.
    w.inbound("15550100222", "Hello").await;
    assert_eq!(w.wait_sent(3).await, 3);
    assert_eq!(w.sim.sent_messages()[2].message.to, "15550100222");
    w.s.stop().await;
}

async fn assigned_conversations_get_no_answer(backend: Backend) {
    let w = world(backend, None).await;
    // The conversation exists before auto-reply is on, and is assigned.
    let conversation = w.inbound("15550100111", "Hello").await;
    w.assign(&conversation, Some(&w.admin_id)).await;
    w.enable(json!({"enabled": true})).await;
    w.inbound("15550100111", "Anyone there?").await;
    assert_eq!(w.sent_after_quiet().await, 0, "an agent owns it");
    // Unassigned again: the assistant answers.
    w.assign(&conversation, None).await;
    w.inbound("15550100111", "Hello again").await;
    assert_eq!(w.wait_sent(1).await, 1);
    w.s.stop().await;
}

async fn asking_for_a_human_flags_the_conversation_and_silences_the_assistant(backend: Backend) {
    let w = world(backend, None).await;
    w.enable(json!({"enabled": true, "max_replies_per_conversation": 5}))
        .await;
    for (i, text) in ["I want a human", "je veux un humain", "أريد موظف"]
        .into_iter()
        .enumerate()
    {
        let from = format!("1555010030{i}");
        let conversation = w.inbound(&from, text).await;
        let c = w.wait_flagged(&conversation).await;
        assert!(
            c["handoff_requested_at"].is_string(),
            "{text}: flagged: {c}"
        );
        assert!(c["assignee"].is_null(), "left unassigned: {c}");
        assert_eq!(w.sent_after_quiet().await, 0, "{text}: no answer");
        // Later messages get no answer either.
        w.inbound(&from, "hello? when do you open?").await;
        assert_eq!(w.sent_after_quiet().await, 0, "{text}: silenced");
    }
    // The team finds them with a filter.
    let flagged = w.get("/conversations?handoff=true&limit=100").await;
    let flagged: Vec<String> = flagged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(flagged.len(), 3, "{flagged:?}");
    // Someone takes one: the flag goes.
    w.assign(&flagged[0], Some(&w.admin_id)).await;
    let c = w.conversation(&flagged[0]).await;
    assert!(
        c["handoff_requested_at"].is_null(),
        "cleared by assigning: {c}"
    );
    // A user answers another: the flag goes once the message is sent, and the
    // conversation, still unassigned, is answered by the assistant again.
    let (status, v) = w
        .s
        .send_json(
            &w.admin,
            Method::POST,
            &w.path("/messages"),
            json!({"conversation_id": flagged[1], "type": "text", "text": {"body": "Hello, Aminata here."}}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(w.wait_sent(1).await, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = w.conversation(&flagged[1]).await;
        if c["handoff_requested_at"].is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cleared by a user's message: {c}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let remaining = w.get("/conversations?handoff=true&limit=100").await;
    assert_eq!(
        remaining["items"].as_array().unwrap().len(),
        1,
        "{remaining}"
    );
    let to = w.sim.sent_messages()[0].message.to.clone();
    w.inbound(&to, "thanks, and the prices?").await;
    assert_eq!(w.wait_sent(2).await, 2, "answered again");
    w.s.stop().await;
}

async fn outside_business_hours_follows_the_calendar(backend: Backend) {
    let w = world(backend, None).await;
    // Without a calendar the mode is refused, naming it.
    let (status, v) = w
        .put_settings(json!({"enabled": true, "mode": "outside_business_hours"}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["details"]["field"], "mode", "{v}");
    // Open all week, all day: never answers.
    let all_day = json!([{"open": "00:00", "close": "24:00"}]);
    let days: serde_json::Map<String, Value> = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| ((*d).to_owned(), all_day.clone()))
    .collect();
    let (status, v) =
        w.s.send_json(
            &w.admin,
            Method::PUT,
            &w.path("/settings/ai"),
            json!({"business_hours": {"time_zone": "Africa/Nouakchott", "days": days}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    w.enable(json!({"enabled": true, "mode": "outside_business_hours"}))
        .await;
    w.inbound("15550100111", "Hello").await;
    assert_eq!(w.sent_after_quiet().await, 0, "open now: the team answers");
    // Closed all week: answers.
    let (status, v) =
        w.s.send_json(
            &w.admin,
            Method::PUT,
            &w.path("/settings/ai"),
            json!({"business_hours": {"time_zone": "Africa/Nouakchott", "days": {}}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    w.inbound("15550100111", "Hello?").await;
    assert_eq!(w.wait_sent(1).await, 1, "closed: the assistant answers");
    w.s.stop().await;
}

async fn opt_out_and_the_daily_quota_apply(backend: Backend) {
    let w = world(
        backend,
        Some(json!({"max_messages_per_day": 1, "max_media_per_day": 10})),
    )
    .await;
    w.enable(json!({"enabled": true, "max_replies_per_conversation": 5}))
        .await;
    // An opt-out keyword gets no chatty answer, and neither does what follows it.
    w.inbound("15550100111", "STOP").await;
    assert_eq!(w.sent_after_quiet().await, 0, "opt-out keyword");
    w.inbound("15550100111", "what are your prices?").await;
    assert_eq!(w.sent_after_quiet().await, 0, "opted out");
    // The daily quota of 1 message: the first answer takes it, the next is refused by the
    // normal sending path and nothing is sent.
    w.inbound("15550100222", "Hello").await;
    assert_eq!(w.wait_sent(1).await, 1);
    let conversation = w.inbound("15550100333", "Hello").await;
    assert_eq!(
        w.sent_after_quiet().await,
        1,
        "over the quota: nothing sent"
    );
    let msgs = w
        .get(&format!("/conversations/{conversation}/messages?limit=100"))
        .await;
    assert!(msgs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["direction"] == "inbound"));
    w.s.stop().await;
}

async fn settings_route_checks_tenant_permission_and_fields(backend: Backend) {
    let w = world(backend, None).await;
    for (body, field) in [
        (json!({"enabled": true, "mode": "sometimes"}), "mode"),
        (
            json!({"enabled": true, "max_replies_per_conversation": 0}),
            "max_replies_per_conversation",
        ),
        (
            json!({"enabled": true, "max_replies_per_conversation": 21}),
            "max_replies_per_conversation",
        ),
        (
            json!({"enabled": true, "max_replies_per_conversation": -1}),
            "max_replies_per_conversation",
        ),
    ] {
        let (status, v) = w.put_settings(body.clone()).await;
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["error"]["details"]["field"], field, "{body}: {v}");
    }
    // Bad input changed nothing.
    let (_, v) = w.s.get_json(&w.admin, &w.settings_path()).await;
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["version"], 0, "{v}");

    let (status, v) = w
        .put_settings(json!({"enabled": true, "max_replies_per_conversation": 20}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["max_replies_per_conversation"], 20);
    assert_eq!(v["version"], 1);

    // Another tenant's admin: 404 on this tenant's account, also through their own tenant.
    let o =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let other_tenant = o["id"].as_str().unwrap().to_owned();
    let (_, other_admin) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": other_tenant}),
        )
        .await;
    let (status, v) = w.s.get_json(&other_admin, &w.settings_path()).await;
    assert_eq!(status, 404, "{v}");
    let through_own = format!(
        "/api/v1/tenants/{other_tenant}/whatsapp-accounts/{}/auto-reply",
        w.account
    );
    let (status, v) = w.s.get_json(&other_admin, &through_own).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) =
        w.s.send_json(
            &other_admin,
            Method::PUT,
            &through_own,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 404, "{v}");
    // An agent may not change it.
    let (_, agent) = w
        .s
        .user_with_token(
            &w.admin,
            json!({"email": "agent@alpha.example", "first_name": "C", "last_name": "Agent", "role": "agent", "tenant_id": w.tenant}),
        )
        .await;
    let (status, v) =
        w.s.send_json(
            &agent,
            Method::PUT,
            &w.settings_path(),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    // The platform admin may.
    let (status, v) = w.s.get_json(&w.platform, &w.settings_path()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], true);
    w.s.stop().await;
}
