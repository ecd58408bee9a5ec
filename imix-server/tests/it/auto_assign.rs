//! Round-robin auto-assignment, on both stores: `GET|PUT /api/v1/tenants/{id}/settings/inbox`
//! (off by default, 422 naming `auto_assign` for anything but `off` / `round_robin`, 403 for
//! an agent, 404 for another tenant's); with it on, new conversations go to the tenant's
//! active agents in turn by user id (supervisors and deactivated agents skipped), each with a
//! `conversation_assigned` event; a tenant without agents leaves them unassigned; a resolved,
//! unassigned conversation an inbound message reopens is assigned; the cursor is an atomic
//! counter, so concurrent picks never hand two conversations to one agent in a row.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{sync::Arc, time::Duration};

use common::{graph_simulator, Backend, TestServer};
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    off_by_default_and_only_assigners_of_the_tenant_change_it,
    new_conversations_go_to_agents_in_turn_skipping_deactivated_ones,
    without_agents_conversations_stay_unassigned_and_reopened_ones_are_assigned,
    concurrent_picks_go_to_different_agents,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";

struct World {
    _sim: imix_whatsapp::simulator::Simulator,
    s: TestServer,
    platform: String,
    tenant: String,
    admin: String,
}

async fn world(backend: Backend) -> World {
    let sim = graph_simulator(WABA, PHONE, SECRET, TOKEN).await;
    let url = sim.url();
    let s = TestServer::start_with(backend, move |vars| {
        vars.insert("IMIX_GRAPH_API_URL".into(), url);
        vars.insert("IMIX_EVENTS_HEARTBEAT_MS".into(), "200".into());
    })
    .await;
    let platform = s.admin().await;
    let t = s.create_tenant(&platform, json!({"name": "Alpha"})).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
        )
        .await;
    s.add_whatsapp_account(
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
    World {
        _sim: sim,
        s,
        platform,
        tenant,
        admin,
    }
}

impl World {
    /// A user of the tenant with `role`; returns `(id, token)`.
    async fn user(&self, email: &str, role: &str) -> (String, String) {
        let (user, token) = self
            .s
            .user_with_token(
                &self.platform,
                json!({"email": email, "first_name": "Pat", "last_name": "Lee", "role": role, "tenant_id": self.tenant}),
            )
            .await;
        (user["id"].as_str().unwrap().to_owned(), token)
    }

    fn settings_path(&self) -> String {
        format!("/api/v1/tenants/{}/settings/inbox", self.tenant)
    }

    async fn set_auto_assign(&self, token: &str, value: Value) -> (u16, Value) {
        self.s
            .send_json(
                token,
                reqwest::Method::PUT,
                &self.settings_path(),
                json!({ "auto_assign": value }),
            )
            .await
    }

    /// Posts one signed delivery with a text message from each of `senders`.
    async fn messages_from(&self, senders: &[String], tag: &str) {
        let messages: Vec<Value> = senders
            .iter()
            .enumerate()
            .map(|(i, from)| {
                json!({"from": from, "id": format!("wamid.{tag}.{i}"), "timestamp": (1_760_000_000 + i as i64).to_string(), "type": "text", "text": {"body": "hello"}})
            })
            .collect();
        let body =
            json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
                    "messages": messages,
                }
            }]}]})
            .to_string();
        let signature =
            imix_whatsapp::webhook::sign(&SecretString::from(SECRET.to_owned()), body.as_bytes());
        let status = self
            .s
            .client
            .post(self.s.url("/webhooks/whatsapp"))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// The tenant's conversations (oldest first), once there are `n`.
    async fn conversations(&self, n: usize) -> Vec<Value> {
        for _ in 0..500 {
            let (status, list) = self
                .s
                .get_json(
                    &self.admin,
                    &format!("/api/v1/tenants/{}/conversations?limit=100", self.tenant),
                )
                .await;
            assert_eq!(status, 200, "{list}");
            let items = list["items"].as_array().unwrap().clone();
            if items.len() >= n {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {n} conversations");
    }
}

fn senders(from: u32, n: u32) -> Vec<String> {
    (from..from + n).map(|i| format!("2224500{i:04}")).collect()
}

fn assignees(list: &[Value]) -> Vec<Option<String>> {
    list.iter()
        .map(|c| c["assignee"].as_str().map(str::to_owned))
        .collect()
}

async fn off_by_default_and_only_assigners_of_the_tenant_change_it(backend: Backend) {
    let w = world(backend).await;
    let path = w.settings_path();
    let (status, body) = w.s.get_json(&w.admin, &path).await;
    assert_eq!((status, &body), (200, &json!({"auto_assign": "off"})));
    let (_agent, agent_token) = w.user("agent@alpha.example", "agent").await;
    let (_manager, manager_token) = w.user("manager@alpha.example", "manager").await;

    // Off: a new conversation stays unassigned even with an agent around.
    w.messages_from(&senders(1, 1), "off").await;
    let list = w.conversations(1).await;
    assert_eq!(assignees(&list), [None]);

    // Validation names the field and changes nothing.
    for bad in [json!("sometimes"), json!(1), Value::Null] {
        let resp =
            w.s.call(&w.admin, reqwest::Method::PUT, &path)
                .json(&json!({ "auto_assign": bad }))
                .send()
                .await
                .unwrap();
        let (code, err) = common::error_of(resp, 422).await;
        assert_eq!(code, "invalid_field", "{err}");
        assert_eq!(err["error"]["details"]["field"], "auto_assign", "{err}");
    }
    let resp =
        w.s.call(&w.admin, reqwest::Method::PUT, &path)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    let (_, err) = common::error_of(resp, 422).await;
    assert_eq!(err["error"]["details"]["field"], "auto_assign", "{err}");
    assert_eq!(
        w.s.get_json(&w.admin, &path).await.1,
        json!({"auto_assign": "off"})
    );

    // An agent reads but may not change it; a manager may.
    assert_eq!(w.s.get_json(&agent_token, &path).await.0, 200);
    let (status, _) = w.set_auto_assign(&agent_token, json!("round_robin")).await;
    assert_eq!(status, 403);
    let (status, body) = w
        .set_auto_assign(&manager_token, json!("round_robin"))
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"auto_assign": "round_robin"}))
    );
    assert_eq!(
        w.s.get_json(&agent_token, &path).await.1,
        json!({"auto_assign": "round_robin"})
    );
    let (status, body) = w.set_auto_assign(&w.admin, json!("off")).await;
    assert_eq!((status, &body), (200, &json!({"auto_assign": "off"})));

    // Another tenant's settings: 404 both ways, and Alpha's unchanged.
    let beta =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let beta = beta["id"].as_str().unwrap().to_owned();
    let (_, beta_admin) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": beta}),
        )
        .await;
    let resp =
        w.s.call(&beta_admin, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
    assert_eq!(common::error_of(resp, 404).await.0, "not_found");
    let resp =
        w.s.call(&beta_admin, reqwest::Method::PUT, &path)
            .json(&json!({"auto_assign": "round_robin"}))
            .send()
            .await
            .unwrap();
    assert_eq!(common::error_of(resp, 404).await.0, "not_found");
    assert_eq!(
        w.s.get_json(&w.admin, &path).await.1,
        json!({"auto_assign": "off"})
    );
    // The platform operator naming a tenant that does not exist: 404.
    let nowhere = format!(
        "/api/v1/tenants/{}/settings/inbox",
        imix_core::id::TenantId::new()
    );
    let (status, _) =
        w.s.send_json(
            &w.platform,
            reqwest::Method::PUT,
            &nowhere,
            json!({"auto_assign": "round_robin"}),
        )
        .await;
    assert_eq!(status, 404);
}

async fn new_conversations_go_to_agents_in_turn_skipping_deactivated_ones(backend: Backend) {
    let w = world(backend).await;
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(w.user(&format!("agent{i}@alpha.example"), "agent").await.0);
    }
    // Supervisors answer too, but rotation hands conversations to agents only.
    w.user("super@alpha.example", "supervisor").await;
    agents.sort();
    let (status, _) = w.set_auto_assign(&w.admin, json!("round_robin")).await;
    assert_eq!(status, 200);

    let mut stream = common_sse::Sse::open(
        &w.s,
        &w.admin,
        &format!("/api/v1/tenants/{}/events", w.tenant),
    )
    .await;
    w.messages_from(&senders(1, 6), "rr").await;
    let list = w.conversations(6).await;
    let expected: Vec<Option<String>> = (0..6).map(|i| Some(agents[i % 3].clone())).collect();
    assert_eq!(assignees(&list), expected, "two each, in user id order");

    // Each new conversation is created already assigned, then announced as assigned.
    let events = stream
        .events_until(|e| {
            e.iter()
                .filter(|f| f.event.as_deref() == Some("conversation_assigned"))
                .count()
                >= 6
        })
        .await;
    let created: Vec<Value> = events
        .iter()
        .filter(|f| f.event.as_deref() == Some("conversation_created"))
        .map(|f| f.json()["data"].clone())
        .collect();
    assert_eq!(created.len(), 6);
    assert!(
        created.iter().all(|c| c["assignee"].is_string()),
        "{created:#?}"
    );
    let assigned: Vec<Value> = events
        .iter()
        .filter(|f| f.event.as_deref() == Some("conversation_assigned"))
        .map(|f| f.json()["data"].clone())
        .collect();
    for (event, conversation) in assigned.iter().zip(&list) {
        assert_eq!(event["conversation_id"], conversation["id"]);
        assert_eq!(event["assignee"], conversation["assignee"]);
        assert_eq!(event["previous_assignee"], Value::Null);
        assert_eq!(event["new_conversation"], true);
    }

    // A deactivated agent is skipped; the rotation continues over the others.
    let resp =
        w.s.call(
            &w.platform,
            reqwest::Method::POST,
            &format!("/api/v1/users/{}/deactivate", agents[1]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    w.messages_from(&senders(101, 4), "rr2").await;
    let list = w.conversations(10).await;
    let later = assignees(&list[6..]);
    assert!(
        later
            .iter()
            .all(|a| a.as_deref() != Some(agents[1].as_str())),
        "{later:?}"
    );
    for agent in [&agents[0], &agents[2]] {
        assert_eq!(
            later.iter().filter(|a| a.as_deref() == Some(agent)).count(),
            2,
            "{later:?}"
        );
    }
}

async fn without_agents_conversations_stay_unassigned_and_reopened_ones_are_assigned(
    backend: Backend,
) {
    let w = world(backend).await;
    w.user("manager@alpha.example", "manager").await;
    let (status, _) = w.set_auto_assign(&w.admin, json!("round_robin")).await;
    assert_eq!(status, 200);
    w.messages_from(&senders(1, 1), "none").await;
    let list = w.conversations(1).await;
    assert_eq!(assignees(&list), [None], "no agents: unassigned");
    let id = list[0]["id"].as_str().unwrap().to_owned();

    // Resolved while unassigned; an agent joins; the customer writes again.
    let (agent, _) = w.user("agent@alpha.example", "agent").await;
    let (status, c) =
        w.s.send_json(
            &w.admin,
            reqwest::Method::PATCH,
            &format!("/api/v1/tenants/{}/conversations/{id}", w.tenant),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    w.messages_from(&senders(1, 1), "again").await;
    for _ in 0..500 {
        let (_, c) =
            w.s.get_json(
                &w.admin,
                &format!("/api/v1/tenants/{}/conversations/{id}", w.tenant),
            )
            .await;
        if c["status"] == "open" {
            assert_eq!(c["assignee"], agent.as_str(), "{c}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the conversation was not reopened");
}

/// Agents that the test names.
struct FixedAgents(Vec<imix_core::id::UserId>);

#[async_trait::async_trait]
impl imix_messaging::Assignees for FixedAgents {
    async fn can_be_assigned(
        &self,
        _tenant: imix_core::id::TenantId,
        user: imix_core::id::UserId,
    ) -> imix_messaging::Result<bool> {
        Ok(self.0.contains(&user))
    }

    async fn agents(
        &self,
        _tenant: imix_core::id::TenantId,
    ) -> imix_messaging::Result<Vec<imix_core::id::UserId>> {
        Ok(self.0.clone())
    }
}

/// The cursor on the server's store: 30 picks at once over 3 agents give each exactly 10,
/// and every window of 3 consecutive turns covers all three.
async fn concurrent_picks_go_to_different_agents(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let vars = common::base_vars(dir.path(), backend);
    let config = imix_server::config::Config::from_vars(vars).unwrap();
    let store = imix_server::state::open_store(&config).await.unwrap();
    store.admin.migrate().await.unwrap();
    let agents: Vec<_> = (0..3).map(|_| imix_core::id::UserId::new()).collect();
    let rr = imix_messaging::assign::RoundRobin::new(
        store.settings.clone(),
        store.counters.clone(),
        Arc::new(FixedAgents(agents.clone())),
    );
    let tenant = imix_core::id::TenantId::new();
    assert_eq!(rr.next_assignee(tenant).await.unwrap(), None, "off");
    rr.set_settings(
        tenant,
        imix_messaging::assign::InboxSettings {
            auto_assign: imix_messaging::assign::AutoAssign::RoundRobin,
        },
    )
    .await
    .unwrap();
    let picks: Vec<_> = futures::future::join_all((0..30).map(|_| {
        let rr = rr.clone();
        tokio::spawn(async move { rr.next_assignee(tenant).await.unwrap().unwrap() })
    }))
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for agent in &agents {
        assert_eq!(picks.iter().filter(|p| *p == agent).count(), 10);
    }
    // A second service on the same store (a replica, or after a restart) continues the
    // rotation: the next pick is the first agent again (turn 31).
    let other = imix_messaging::assign::RoundRobin::new(
        store.settings.clone(),
        store.counters.clone(),
        Arc::new(FixedAgents(agents.clone())),
    );
    let mut sorted = agents.clone();
    sorted.sort_by_key(|u| u.to_string());
    assert_eq!(other.next_assignee(tenant).await.unwrap(), Some(sorted[0]));
    assert_eq!(other.next_assignee(tenant).await.unwrap(), Some(sorted[1]));
}

/// Reading server-sent events (as in `tests/events.rs`).
mod common_sse {
    use std::time::Duration;

    use serde_json::Value;

    use crate::common::TestServer;

    /// One SSE frame: an event, or a comment (heartbeat).
    #[derive(Debug, Clone, Default)]
    pub struct Frame {
        pub event: Option<String>,
        pub data: String,
        pub comment: bool,
    }

    impl Frame {
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.data).unwrap()
        }
    }

    /// A server-sent events response read frame by frame.
    pub struct Sse {
        resp: reqwest::Response,
        buf: String,
    }

    impl Sse {
        pub async fn open(s: &TestServer, token: &str, path: &str) -> Self {
            let resp = s
                .call(token, reqwest::Method::GET, path)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            Self {
                resp,
                buf: String::new(),
            }
        }

        async fn frame(&mut self, wait: Duration) -> Option<Frame> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut frame = Frame::default();
                    for line in block.lines() {
                        if line.starts_with(':') {
                            frame.comment = true;
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            frame.event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            frame.data.push_str(v);
                        }
                    }
                    return Some(frame);
                }
                let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                    .await
                    .ok()?
                    .unwrap()?;
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        }

        /// Events (heartbeats skipped) until `done` holds; panics after ten seconds.
        pub async fn events_until(&mut self, done: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut events = Vec::new();
            while !done(&events) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let frame = self
                    .frame(left)
                    .await
                    .unwrap_or_else(|| panic!("timed out; events so far: {events:#?}"));
                if !frame.comment {
                    events.push(frame);
                }
            }
            events
        }
    }
}
