//! Live events end to end, on both stores: a signed webhook becomes `contact_created`,
//! `conversation_created`, `message_received` and `conversation_updated` events with
//! consecutive ids on `GET /api/v1/tenants/{id}/events`; a client that reconnects with
//! `Last-Event-ID` (or `?last_event_id=`) gets exactly what it missed; an unknown id starts
//! with `reset`; another tenant's user is refused 404 and hears nothing; idle streams carry
//! heartbeats; with Redis, an event ingested on one replica reaches a stream on another.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{graph_simulator, Backend, TestServer};
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    ingest_events_arrive_with_consecutive_ids_and_resume_without_gaps,
    another_tenants_user_is_refused_and_hears_nothing,
    idle_streams_carry_heartbeats,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
/// The heartbeat interval of test servers (milliseconds).
const HEARTBEAT_MS: &str = "200";

struct World {
    _sim: imix_whatsapp::simulator::Simulator,
    s: TestServer,
    platform: String,
    tenant: String,
    admin: String,
}

async fn world_on(s: TestServer, sim: imix_whatsapp::simulator::Simulator) -> World {
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

async fn world(backend: Backend) -> World {
    let sim = graph_simulator(WABA, PHONE, SECRET, TOKEN).await;
    let url = sim.url();
    let s = TestServer::start_with(backend, move |vars| {
        vars.insert("IMIX_GRAPH_API_URL".into(), url);
        vars.insert("IMIX_EVENTS_HEARTBEAT_MS".into(), HEARTBEAT_MS.into());
    })
    .await;
    world_on(s, sim).await
}

fn delivery(messages: Vec<Value>, statuses: Vec<Value>) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
            "contacts": [{"profile": {"name": "Aïcha"}, "wa_id": "22245000001"}],
            "messages": messages,
            "statuses": statuses,
        }
    }]}]})
    .to_string()
}

fn text_message(wamid: &str, ts: i64, body: &str) -> Value {
    json!({"from": "22245000001", "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": {"body": body}})
}

async fn post(s: &TestServer, body: &str) {
    let signature =
        imix_whatsapp::webhook::sign(&SecretString::from(SECRET.to_owned()), body.as_bytes());
    let status = s
        .client
        .post(s.url("/webhooks/whatsapp"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
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

    /// The events that arrive before `beats` heartbeats do.
    async fn events_before_heartbeats(&mut self, beats: usize) -> Vec<Frame> {
        let mut events = Vec::new();
        let mut seen = 0;
        while seen < beats {
            let frame = self
                .frame(Duration::from_secs(10))
                .await
                .expect("a heartbeat");
            if frame.comment {
                seen += 1;
            } else {
                events.push(frame);
            }
        }
        events
    }
}

fn kinds(events: &[Frame]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_deref().unwrap()).collect()
}

fn assert_consecutive(events: &[Frame], after: u64) {
    let ids: Vec<u64> = events.iter().map(Frame::seq).collect();
    let expected: Vec<u64> = (after + 1..=after + events.len() as u64).collect();
    assert_eq!(ids, expected, "ids follow on without gaps or repeats");
    for e in events {
        assert_eq!(e.json()["id"], e.id.as_deref().unwrap());
        assert_eq!(e.json()["type"], e.event.as_deref().unwrap());
    }
}

fn events_path(tenant: &str) -> String {
    format!("/api/v1/tenants/{tenant}/events")
}

async fn message_count(w: &World) -> usize {
    let (_, list) =
        w.s.get_json(
            &w.admin,
            &format!("/api/v1/tenants/{}/conversations", w.tenant),
        )
        .await;
    let Some(conversation) = list["items"].as_array().and_then(|l| l.first()) else {
        return 0;
    };
    let (_, msgs) =
        w.s.get_json(
            &w.admin,
            &format!(
                "/api/v1/tenants/{}/conversations/{}/messages",
                w.tenant,
                conversation["id"].as_str().unwrap()
            ),
        )
        .await;
    msgs["items"].as_array().map_or(0, Vec::len)
}

async fn until_messages(w: &World, n: usize) {
    for _ in 0..500 {
        if message_count(w).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {n} messages");
}

async fn ingest_events_arrive_with_consecutive_ids_and_resume_without_gaps(backend: Backend) {
    let w = world(backend).await;
    let path = events_path(&w.tenant);
    let base = 1_760_000_000;

    let mut stream = Sse::open(&w.s, &w.admin, &path, None).await;
    post(
        &w.s,
        &delivery(vec![text_message("wamid.E1", base, "Bonjour")], vec![]),
    )
    .await;
    let first = stream.events_until(|e| e.len() >= 4).await;
    assert_eq!(
        kinds(&first),
        [
            "contact_created",
            "conversation_created",
            "message_received",
            "conversation_updated"
        ]
    );
    assert_consecutive(&first, 0);
    let received = first[2].json();
    assert_eq!(received["tenant_id"], w.tenant.as_str());
    assert_eq!(received["data"]["type"], "text");
    let conversation_id = received["data"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first[3].json()["data"]["conversation_id"], conversation_id);
    assert_eq!(first[3].json()["data"]["unread"], 1);
    let last_seen = first[3].id.clone().unwrap();
    drop(stream);

    // While disconnected: two messages and a status.
    post(
        &w.s,
        &delivery(
            vec![
                text_message("wamid.E2", base + 5, "Vous êtes là ?"),
                text_message("wamid.E3", base + 6, "Allô"),
            ],
            vec![json!({"id": "wamid.E1", "status": "read", "timestamp": (base + 7).to_string(), "recipient_id": "22245000001"})],
        ),
    )
    .await;
    until_messages(&w, 3).await;

    // Resuming gives exactly the missed events, then nothing but heartbeats.
    let expected = [
        "message_received",
        "conversation_updated",
        "message_received",
        "conversation_updated",
        "message_status_changed",
    ];
    let mut resumed = Sse::open(&w.s, &w.admin, &path, Some(&last_seen)).await;
    let missed = resumed.events_until(|e| e.len() >= expected.len()).await;
    assert_eq!(kinds(&missed), expected);
    assert_consecutive(&missed, 4);
    assert_eq!(
        missed[4].json()["data"]["message_id"],
        received["data"]["message_id"]
    );
    let extra = resumed.events_before_heartbeats(2).await;
    assert!(extra.is_empty(), "no duplicates: {extra:#?}");
    drop(resumed);

    // The query parameter does the same (for EventSource polyfills).
    let mut by_query = Sse::open(
        &w.s,
        &w.admin,
        &format!("{path}?last_event_id={last_seen}"),
        None,
    )
    .await;
    let again = by_query.events_until(|e| e.len() >= expected.len()).await;
    assert_eq!(
        again.iter().map(Frame::seq).collect::<Vec<_>>(),
        missed.iter().map(Frame::seq).collect::<Vec<_>>()
    );

    // A live event after the replay follows on from it.
    post(
        &w.s,
        &delivery(vec![text_message("wamid.E4", base + 9, "Merci")], vec![]),
    )
    .await;
    let live = by_query.events_until(|e| e.len() >= 2).await;
    assert_eq!(kinds(&live), ["message_received", "conversation_updated"]);
    assert_consecutive(&live, 9);

    // An id the log never gave (or no longer holds): the stream starts with a reset.
    let mut reset = Sse::open(&w.s, &w.admin, &path, Some("999999")).await;
    let first = reset.events_until(|e| !e.is_empty()).await;
    assert_eq!(first[0].event.as_deref(), Some("reset"));
    assert_eq!(
        first[0].id.as_deref(),
        Some("11"),
        "continues after the head"
    );
    let mut garbage = Sse::open(&w.s, &w.admin, &path, Some("not-a-number")).await;
    let first = garbage.events_until(|e| !e.is_empty()).await;
    assert_eq!(first[0].event.as_deref(), Some("reset"));
}

async fn another_tenants_user_is_refused_and_hears_nothing(backend: Backend) {
    let w = world(backend).await;
    let other =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let beta = other["id"].as_str().unwrap().to_owned();
    let (_, beta_admin) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": beta}),
        )
        .await;

    // Alpha's stream: 404 for Beta's admin, 401 without a token, in the JSON error shape.
    let resp =
        w.s.call(&beta_admin, reqwest::Method::GET, &events_path(&w.tenant))
            .send()
            .await
            .unwrap();
    let (code, _) = common::error_of(resp, 404).await;
    assert_eq!(code, "not_found");
    let resp = w.s.get(&events_path(&w.tenant)).await;
    let (code, _) = common::error_of(resp, 401).await;
    assert_eq!(code, "unauthenticated");

    // Beta's own stream hears nothing of what happens at Alpha.
    let mut beta_stream = Sse::open(&w.s, &beta_admin, &events_path(&beta), None).await;
    let mut alpha_stream = Sse::open(&w.s, &w.admin, &events_path(&w.tenant), None).await;
    post(
        &w.s,
        &delivery(
            vec![text_message("wamid.S1", 1_760_000_000, "secret")],
            vec![],
        ),
    )
    .await;
    let alpha = alpha_stream.events_until(|e| e.len() >= 4).await;
    assert_eq!(alpha.len(), 4);
    let heard = beta_stream.events_for(Duration::from_millis(1000)).await;
    assert!(heard.is_empty(), "Beta heard Alpha's events: {heard:#?}");
    // Nor can Beta replay Alpha's log through its own tenant's stream.
    let mut replay = Sse::open(&w.s, &beta_admin, &events_path(&beta), Some("0")).await;
    let heard = replay.events_for(Duration::from_millis(600)).await;
    assert!(heard.is_empty(), "Beta replayed Alpha's events: {heard:#?}");
}

async fn idle_streams_carry_heartbeats(backend: Backend) {
    let w = world(backend).await;
    let mut stream = Sse::open(&w.s, &w.admin, &events_path(&w.tenant), None).await;
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        let frame = stream
            .frame(Duration::from_secs(5))
            .await
            .expect("a heartbeat within the interval");
        assert!(
            frame.comment,
            "an idle stream sends only comments: {frame:?}"
        );
    }
    // Three beats at 200 ms: well under the default 15 s, so the setting is honoured.
    assert!(started.elapsed() < Duration::from_secs(5));

    // Stopping the server ends open streams instead of waiting out the 10 s drain.
    let World { s, .. } = w;
    let stopping = tokio::time::Instant::now();
    s.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );
    while let Some(frame) = stream.frame(Duration::from_secs(5)).await {
        assert!(frame.comment, "{frame:?}");
    }
}

/// Two replicas on one MongoDB database and one Redis: an event ingested by either reaches
/// a stream open on the other through Redis. The streams' log poll is set to a minute, so
/// only the Redis fan-out can deliver within the ten seconds allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fans_events_out_across_replicas() {
    let db = format!("imix_events_{}", uuid::Uuid::now_v7().simple());
    let sim = graph_simulator(WABA, PHONE, SECRET, TOKEN).await;
    let url = sim.url();
    let shared = move |v: &mut std::collections::HashMap<String, String>| {
        v.insert("DB_NAME".into(), db.clone());
        v.insert(
            "SECRET_KEY".into(),
            "replicas-share-this-secret-key-0123456789".into(),
        );
        v.insert("REDIS_URL".into(), common::redis_url());
        v.insert("IMIX_GRAPH_API_URL".into(), url.clone());
        v.insert("IMIX_EVENTS_HEARTBEAT_MS".into(), "60000".into());
    };
    let a = TestServer::start_with(Backend::Mongodb, shared.clone()).await;
    let b = TestServer::start_with(Backend::Mongodb, shared).await;
    let w = world_on(a, sim).await;
    let mut on_b = Sse::open(&b, &w.admin, &events_path(&w.tenant), None).await;
    post(
        &w.s,
        &delivery(
            vec![text_message("wamid.R1", 1_760_000_000, "via A")],
            vec![],
        ),
    )
    .await;
    let events = on_b.events_until(|e| e.len() >= 4).await;
    assert_eq!(
        kinds(&events),
        [
            "contact_created",
            "conversation_created",
            "message_received",
            "conversation_updated"
        ]
    );
    assert_consecutive(&events, 0);
}
