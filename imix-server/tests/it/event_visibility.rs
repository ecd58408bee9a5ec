//! Live events filtered by what the user may see, on both stores. An agent's stream (no
//! `conversations.read_all`) carries the events of conversations assigned to them or to
//! nobody when the event was recorded, `conversation_assigned` also to the agents who saw the
//! conversation before (so that they drop it), and every contact event of the tenant (agents
//! read every contact); supervisors and read-only users get everything. A resume with
//! `Last-Event-ID` replays through the same filter. Contacts read the same way over the API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{graph_simulator, Backend, TestServer};
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    agents_hear_their_own_and_unassigned_conversations_and_resume_alike,
    agents_read_every_contact_of_their_tenant,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
const A: &str = "22245000011";
const B: &str = "22245000012";
const C: &str = "22245000013";

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

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}{rest}", self.tenant)
    }

    /// Posts one signed delivery with `messages` (`(from, wamid)`) and `statuses`.
    async fn post(&self, messages: &[(&str, &str)], statuses: Vec<Value>) {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(from, wamid)| {
                json!({"from": from, "id": wamid, "timestamp": "1760000000", "type": "text", "text": {"body": "hello"}})
            })
            .collect();
        let body =
            json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
                    "messages": messages,
                    "statuses": statuses,
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

    /// The conversation of the customer `wa_id`, once it exists.
    async fn conversation_of(&self, wa_id: &str) -> (String, String) {
        for _ in 0..500 {
            let (_, contacts) = self
                .s
                .get_json(&self.admin, &self.path("/contacts?limit=100"))
                .await;
            let contact = contacts["items"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["wa_id"] == wa_id).cloned());
            let (_, list) = self
                .s
                .get_json(&self.admin, &self.path("/conversations?limit=100"))
                .await;
            if let Some(contact) = contact {
                if let Some(c) = list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["contact_id"] == contact["id"])
                {
                    return (
                        c["id"].as_str().unwrap().to_owned(),
                        contact["id"].as_str().unwrap().to_owned(),
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no conversation for {wa_id}");
    }

    async fn assign(&self, conversation: &str, user: &str) {
        let (status, body) = self
            .s
            .send_json(
                &self.admin,
                reqwest::Method::PATCH,
                &self.path(&format!("/conversations/{conversation}")),
                json!({ "assignee": user }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// One SSE frame: an event, or a comment (heartbeat).
#[derive(Debug, Clone, Default)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: bool,
}

impl Frame {
    fn seq(&self) -> u64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A server-sent events response read frame by frame.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(s: &TestServer, token: &str, path: &str, last_event_id: Option<&str>) -> Self {
        let mut req = s.call(token, reqwest::Method::GET, path);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next frame, or `None` if none comes within `wait`.
    async fn frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in block.lines() {
                    if line.starts_with(':') {
                        frame.comment = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = Some(v.to_owned());
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

    /// Events (heartbeats skipped) until `done` holds for the ones so far; panics after
    /// ten seconds.
    async fn events_until(&mut self, done: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
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

    /// The events that arrive within `span` (heartbeats keep frames coming, so this reads
    /// everything sent until then).
    async fn events_for(&mut self, span: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + span;
        let mut events = Vec::new();
        while tokio::time::Instant::now() < deadline {
            let Some(frame) = self.frame(Duration::from_secs(2)).await else {
                break;
            };
            if !frame.comment {
                events.push(frame);
            }
        }
        events
    }
}

fn kinds(events: &[Frame]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_deref().unwrap()).collect()
}

/// The kinds of the events about `conversation`.
fn about<'a>(events: &'a [Frame], conversation: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.json()["data"]["conversation_id"] == conversation)
        .map(|e| e.event.as_deref().unwrap())
        .collect()
}

fn ids(events: &[Frame]) -> Vec<u64> {
    events.iter().map(Frame::seq).collect()
}

/// Whether `events` ends with the `n`th `conversation_updated` of `conversation`.
fn updated_times(events: &[Frame], conversation: &str, n: usize) -> bool {
    events
        .iter()
        .filter(|e| {
            e.event.as_deref() == Some("conversation_updated")
                && e.json()["data"]["conversation_id"] == conversation
        })
        .count()
        >= n
}

async fn agents_hear_their_own_and_unassigned_conversations_and_resume_alike(backend: Backend) {
    let w = world(backend).await;
    let (agent1, agent1_token) = w.user("one@alpha.example", "agent").await;
    let (agent2, agent2_token) = w.user("two@alpha.example", "agent").await;
    let (_, supervisor_token) = w.user("sup@alpha.example", "supervisor").await;
    let (_, reader_token) = w.user("reader@alpha.example", "read_only").await;

    // Two customers write: two unassigned conversations.
    w.post(&[(A, "wamid.A1"), (B, "wamid.B1")], vec![]).await;
    let (ca, _) = w.conversation_of(A).await;
    let (cb, _) = w.conversation_of(B).await;
    let events = w.path("/events");
    // Every stream starts after the first delivery's eight events.
    let mut sup = Sse::open(&w.s, &supervisor_token, &events, Some("0")).await;
    let start = sup.events_until(|e| e.len() >= 8).await;
    let start = start[7].id.clone().unwrap();
    let mut reader = Sse::open(&w.s, &reader_token, &events, Some(&start)).await;
    let mut one = Sse::open(&w.s, &agent1_token, &events, Some(&start)).await;
    let mut two = Sse::open(&w.s, &agent2_token, &events, Some(&start)).await;

    // A goes to agent one; A, B and a new customer C write; A's first message is read.
    w.assign(&ca, &agent1).await;
    w.post(&[(A, "wamid.A2"), (B, "wamid.B2"), (C, "wamid.C1")], vec![])
        .await;
    let (cc, _) = w.conversation_of(C).await;
    w.post(
        &[],
        vec![json!({"id": "wamid.A1", "status": "read", "timestamp": "1760000005", "recipient_id": A})],
    )
    .await;
    let seen = sup
        .events_until(|e| {
            e.iter()
                .any(|f| f.event.as_deref() == Some("message_status_changed"))
        })
        .await;
    // Then A is taken from agent one and given to agent two, and writes again; B last.
    w.assign(&ca, &agent2).await;
    w.post(&[(A, "wamid.A3")], vec![]).await;
    let more = sup.events_until(|e| updated_times(e, &ca, 1)).await;
    w.post(&[(B, "wamid.B3")], vec![]).await;
    let last = sup.events_until(|e| updated_times(e, &cb, 1)).await;
    let all: Vec<Frame> = seen.into_iter().chain(more).chain(last).collect();
    let first_id = all[0].seq();

    // Supervisors and read-only users: everything, without gaps.
    let expected: Vec<u64> = (first_id..first_id + all.len() as u64).collect();
    assert_eq!(ids(&all), expected, "{:#?}", kinds(&all));
    let read = reader.events_until(|e| e.len() >= all.len()).await;
    assert_eq!(ids(&read), expected);

    // Agent one: A until it was taken away (the event saying so included), B and C.
    let one_events = one.events_until(|e| updated_times(e, &cb, 2)).await;
    assert_eq!(
        about(&one_events, &ca),
        [
            "conversation_assigned",
            "message_received",
            "conversation_updated",
            "message_status_changed",
            "conversation_assigned"
        ],
        "{:#?}",
        kinds(&one_events)
    );
    let taken = one_events
        .iter()
        .filter(|e| e.event.as_deref() == Some("conversation_assigned"))
        .nth(1)
        .unwrap()
        .json();
    assert_eq!(taken["data"]["assignee"], agent2.as_str());
    assert_eq!(taken["data"]["previous_assignee"], agent1.as_str());
    // Agent two: told A went to agent one (it was unassigned: they drop it), nothing of
    // it while agent one had it, then A as theirs.
    let two_events = two.events_until(|e| updated_times(e, &cb, 2)).await;
    assert_eq!(
        about(&two_events, &ca),
        [
            "conversation_assigned",
            "conversation_assigned",
            "message_received",
            "conversation_updated"
        ],
        "{:#?}",
        kinds(&two_events)
    );
    for agent in [&one_events, &two_events] {
        assert_eq!(
            about(agent, &cb),
            [
                "message_received",
                "conversation_updated",
                "message_received",
                "conversation_updated"
            ]
        );
        assert_eq!(
            about(agent, &cc),
            [
                "conversation_created",
                "message_received",
                "conversation_updated"
            ]
        );
        let contact_created = agent
            .iter()
            .filter(|e| e.event.as_deref() == Some("contact_created"))
            .count();
        assert_eq!(contact_created, 1, "every contact event of the tenant");
        // Nothing else, and nothing the supervisor did not get.
        assert!(agent.iter().all(|e| ids(&all).contains(&e.seq())));
    }
    assert_eq!(one_events.len(), 5 + 4 + 3 + 1, "{:#?}", kinds(&one_events));
    assert_eq!(two_events.len(), 4 + 4 + 3 + 1, "{:#?}", kinds(&two_events));
    let extra = two.events_for(Duration::from_millis(600)).await;
    assert!(extra.is_empty(), "{extra:#?}");

    // Resuming from before the first live event replays through the same filter.
    let from = (first_id - 1).to_string();
    for (token, live) in [(&agent1_token, &one_events), (&agent2_token, &two_events)] {
        let mut resumed = Sse::open(&w.s, token, &events, Some(&from)).await;
        let replay = resumed.events_until(|e| e.len() >= live.len()).await;
        assert_eq!(ids(&replay), ids(live));
        assert_eq!(kinds(&replay), kinds(live));
        let extra = resumed.events_for(Duration::from_millis(600)).await;
        assert!(extra.is_empty(), "{extra:#?}");
    }
    let mut resumed = Sse::open(&w.s, &supervisor_token, &events, Some(&from)).await;
    let replay = resumed.events_until(|e| e.len() >= all.len()).await;
    assert_eq!(ids(&replay), ids(&all));
}

async fn agents_read_every_contact_of_their_tenant(backend: Backend) {
    let w = world(backend).await;
    let (agent1, agent1_token) = w.user("one@alpha.example", "agent").await;
    let (_, agent2_token) = w.user("two@alpha.example", "agent").await;
    w.post(&[(A, "wamid.A1"), (B, "wamid.B1")], vec![]).await;
    let (ca, contact_a) = w.conversation_of(A).await;
    let (_, contact_b) = w.conversation_of(B).await;
    w.assign(&ca, &agent1).await;

    // Agent two no longer sees A's conversation, but reads its contact, as every contact.
    let (status, _) =
        w.s.get_json(&agent2_token, &w.path(&format!("/conversations/{ca}")))
            .await;
    assert_eq!(status, 404);
    for token in [&agent1_token, &agent2_token] {
        let (status, c) =
            w.s.get_json(token, &w.path(&format!("/contacts/{contact_a}")))
                .await;
        assert_eq!((status, c["wa_id"].as_str()), (200, Some(A)));
        let (status, list) = w.s.get_json(token, &w.path("/contacts")).await;
        assert_eq!(status, 200);
        let listed: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [contact_a.as_str(), contact_b.as_str()]);
    }
    // Another tenant's contact id: 404.
    let beta =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let (_, beta_agent) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "agent@beta.example", "first_name": "Pat", "last_name": "Lee", "role": "agent", "tenant_id": beta["id"]}),
        )
        .await;
    let (status, _) =
        w.s.get_json(
            &beta_agent,
            &format!(
                "/api/v1/tenants/{}/contacts/{contact_a}",
                beta["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status, 404);
}
