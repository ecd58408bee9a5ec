//! "Done when", end to end on both stores, driven only by the Graph API simulator's signed
//! webhooks (no hand-made payloads): one batch delivery holding every documented inbound
//! type becomes contacts, conversations, messages (each type's content read back through
//! the API) and live events; the same delivery posted again changes nothing; statuses
//! sent read → delivered → sent, some before their message exists, end at `read` and are
//! recorded once each; a forged delivery is refused; every media message's file is
//! downloadable after the simulator failed its first download.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{graph_simulator, Backend, TestServer};
use imix_whatsapp::simulator::{SendMode, SimBatch, SimStatus, SimUser, Simulator};
use serde_json::{json, Value};

on_both_backends!(
    a_batch_of_every_type_becomes_contacts_conversations_messages_events_and_media,
    statuses_out_of_order_end_at_read_and_forgeries_change_nothing,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
/// A business message the users reply to (buttons, lists, quick replies, replies).
const BUSINESS_MSG: &str = "wamid.HBgLMjIyNDUwMDAwMDEVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA";

struct World {
    sim: Simulator,
    s: TestServer,
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
    // The app-level callback URL, as a Meta app serving many WABAs would use.
    sim.set_webhook_url(WABA, &s.url("/webhooks/whatsapp"));
    World {
        sim,
        s,
        tenant,
        admin,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl World {
    async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .s
            .get_json(
                &self.admin,
                &format!("/api/v1/tenants/{}{path}", self.tenant),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn conversations(&self) -> Vec<Value> {
        self.get("/conversations?limit=100").await["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn contacts(&self) -> Vec<Value> {
        self.get("/contacts?limit=100").await["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn messages(&self, conversation: &str) -> Vec<Value> {
        self.get(&format!("/conversations/{conversation}/messages?limit=100"))
            .await["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Every message of every conversation.
    async fn all_messages(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for c in self.conversations().await {
            all.extend(self.messages(c["id"].as_str().unwrap()).await);
        }
        all
    }

    async fn media(&self, message: &str) -> reqwest::Response {
        self.s
            .call(
                &self.admin,
                reqwest::Method::GET,
                &format!("/api/v1/tenants/{}/messages/{message}/media", self.tenant),
            )
            .send()
            .await
            .unwrap()
    }
}

/// Polls `f` until it returns `Some` (ingest and media jobs run in the background).
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server-sent events stream read event by event (heartbeat comments skipped).
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(w: &World) -> Self {
        let resp =
            w.s.call(
                &w.admin,
                reqwest::Method::GET,
                &format!("/api/v1/tenants/{}/events", w.tenant),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event as `(type, data)`, or `None` if none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut kind = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if let Some(kind) = kind {
                    return Some((kind, serde_json::from_str(&data).unwrap()));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until `done` holds for those so far (sixty seconds at most: a ceiling, not a
    /// timing goal; a full CI run on a loaded 2-core machine once took over twenty).
    async fn until(&mut self, done: impl Fn(&[(String, Value)]) -> bool) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut events = Vec::new();
        while !done(&events) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("timed out; events so far: {events:#?}"));
            events.push(event);
        }
        events
    }
}

fn count(events: &[(String, Value)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

fn ts(value: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .timestamp()
}

async fn a_batch_of_every_type_becomes_contacts_conversations_messages_events_and_media(
    backend: Backend,
) {
    let w = world(backend).await;
    let mut events = Sse::open(&w).await;
    let aicha = SimUser::new("22245000001", "Aïcha");
    let omar = SimUser::new("22245000002", "Omar");
    let files: Vec<(&str, &str, Bytes)> = vec![
        (
            "image",
            "image/jpeg",
            Bytes::from_static(b"\xff\xd8\xff\xe0 jpeg \xff\xd9"),
        ),
        ("audio", "audio/ogg", Bytes::from_static(b"OggS voice note")),
        (
            "video",
            "video/mp4",
            Bytes::from_static(b"\x00\x00\x00\x18ftypmp42 video"),
        ),
        (
            "document",
            "application/pdf",
            Bytes::from_static(b"%PDF-1.4 quote"),
        ),
        (
            "sticker",
            "image/webp",
            Bytes::from_static(b"RIFF....WEBPVP8 sticker"),
        ),
    ];
    let mut media = Vec::new();
    for (_, mime, data) in &files {
        let m = w.sim.add_inbound_media(PHONE, mime, data.clone()).unwrap();
        // Every file's first download fails (a CDN hiccup); the job must retry.
        w.sim.fail_media_downloads(&m.id, 1, 503);
        media.push(m);
    }
    let base = now() - 3600;
    let hello = aicha
        .text("Bonjour, I saw your ad")
        .from_ad("120226305854810726", "Summer sale");
    let list = [
        hello.clone(),
        aicha.image(&media[0], Some("the invoice")),
        aicha.audio(&media[1], true),
        aicha.video(&media[2], Some("unboxing")),
        aicha.document(&media[3], "quote.pdf"),
        aicha.sticker(&media[4], false),
        aicha.location(18.0735, -15.9582, "Marché Capitale", "Nouakchott", None),
        aicha.contact_card("Lucía Gómez", "+1 983-555-2319"),
        aicha.button_reply(BUSINESS_MSG, "confirm", "Confirm"),
        aicha.list_reply(BUSINESS_MSG, "express", "Express", "Next day"),
        aicha.quick_reply(BUSINESS_MSG, "stop-promos", "Stop promotions"),
        aicha.reaction(&hello.id, "👍"),
        aicha.text("about this one").replying_to(BUSINESS_MSG),
        aicha.text("look at this").forwarded(false),
        aicha.unsupported(),
        aicha.changed_number("22245000009"),
    ];
    let kinds: Vec<String> = list.iter().map(|m| m.kind().to_owned()).collect();
    let aicha_messages: Vec<_> = list
        .into_iter()
        .zip(0u64..)
        .map(|(m, i)| m.at(base + i))
        .collect();
    let omar_text = omar.text("Salam").at(base + 2);
    // Two entries: Aïcha's messages in one, Omar's in another (Meta batches both ways).
    let batch = SimBatch::new()
        .messages(PHONE, aicha_messages.clone())
        .next_entry()
        .messages(PHONE, vec![omar_text.clone()]);
    let mode = SendMode {
        duplicate: true,
        ..SendMode::default()
    };
    let sent = w.sim.send_batch(&batch, mode).await.unwrap();
    assert_eq!(sent.deliveries.len(), 2, "the same delivery twice");
    assert_eq!(sent.deliveries[0].body, sent.deliveries[1].body);
    for d in &sent.deliveries {
        assert_eq!(d.status, Some(200), "acknowledged");
    }
    // A marker after the duplicate: once it is stored, the duplicate was processed too.
    let marker = omar.text("marker").at(base + 100);
    let marker_sent = w
        .sim
        .send_batch(
            &SimBatch::new().messages(PHONE, vec![marker.clone()]),
            SendMode::default(),
        )
        .await
        .unwrap();
    assert_eq!(marker_sent.deliveries[0].status, Some(200));
    let total = aicha_messages.len() + 2;

    // Live events: two contacts, two conversations, one message_received per message.
    let seen = events
        .until(|e| {
            count(e, "message_received") >= total
                && e.iter()
                    .any(|(k, d)| k == "conversation_updated" && d["data"]["preview"] == "marker")
        })
        .await;
    // Whatever else arrives soon after must not be another message_received.
    let mut later = Vec::new();
    while let Some(e) = events.next(Duration::from_millis(600)).await {
        later.push(e);
    }
    let all_events: Vec<_> = seen.iter().chain(later.iter()).cloned().collect();
    assert_eq!(
        count(&all_events, "message_received"),
        total,
        "{all_events:#?}"
    );
    assert_eq!(count(&all_events, "contact_created"), 2);
    assert_eq!(count(&all_events, "conversation_created"), 2);
    let received: Vec<&Value> = all_events
        .iter()
        .filter(|(k, _)| k == "message_received")
        .map(|(_, d)| d)
        .collect();
    let mut event_types: Vec<&str> = received
        .iter()
        .map(|d| d["data"]["type"].as_str().unwrap())
        .collect();
    event_types.sort();
    let mut expected: Vec<&str> = kinds.iter().map(String::as_str).collect();
    expected.extend(["text", "text"]);
    expected.sort();
    assert_eq!(event_types, expected);

    // Contacts and conversations.
    let contacts = w.contacts().await;
    assert_eq!(contacts.len(), 2, "{contacts:#?}");
    let a = contacts
        .iter()
        .find(|c| c["wa_id"] == "22245000001")
        .unwrap();
    assert_eq!(a["profile_name"], "Aïcha");
    let o = contacts
        .iter()
        .find(|c| c["wa_id"] == "22245000002")
        .unwrap();
    assert_eq!(o["profile_name"], "Omar");
    let conversations = w.conversations().await;
    assert_eq!(conversations.len(), 2);
    let aicha_c = conversations
        .iter()
        .find(|c| c["contact_id"] == a["id"])
        .unwrap();
    assert_eq!(
        aicha_c["unread"],
        aicha_messages.len(),
        "the duplicate counted nothing"
    );
    let omar_c = conversations
        .iter()
        .find(|c| c["contact_id"] == o["id"])
        .unwrap();
    assert_eq!(omar_c["unread"], 2);
    assert_eq!(omar_c["preview"], "marker");

    // Aïcha's messages: once each, in Meta's timestamp order, each type's content kept.
    let msgs = w.messages(aicha_c["id"].as_str().unwrap()).await;
    let got: Vec<&str> = msgs.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(got, kinds.iter().map(String::as_str).collect::<Vec<_>>());
    for (m, sent) in msgs.iter().zip(&aicha_messages) {
        assert_eq!(m["wamid"], sent.id.as_str());
        assert_eq!(m["direction"], "inbound");
        assert_eq!(m["state"], "received");
        assert_eq!(
            ts(&m["timestamp"]),
            sent.timestamp.unwrap() as i64,
            "Meta's time"
        );
    }
    let by_kind = |k: &'static str| msgs.iter().filter(move |m| m["kind"] == k);
    let first = |k: &'static str| by_kind(k).next().unwrap()["content"].clone();
    let text = first("text");
    assert_eq!(text["text"]["body"], "Bonjour, I saw your ad");
    assert_eq!(text["referral"]["source_type"], "ad");
    assert_eq!(text["referral"]["source_id"], "120226305854810726");
    assert!(text["referral"]["ctwa_clid"].is_string());
    for (i, (kind, mime, _)) in files.iter().enumerate() {
        let c = first(kind);
        assert_eq!(c[*kind]["id"], media[i].id.as_str(), "{kind}");
        assert_eq!(c[*kind]["mime_type"], *mime, "{kind}");
        assert_eq!(c[*kind]["sha256"], media[i].sha256.as_str(), "{kind}");
    }
    assert_eq!(first("image")["image"]["caption"], "the invoice");
    assert_eq!(first("audio")["audio"]["voice"], true);
    assert_eq!(first("video")["video"]["caption"], "unboxing");
    assert_eq!(first("document")["document"]["filename"], "quote.pdf");
    assert_eq!(first("sticker")["sticker"]["animated"], false);
    let location = first("location");
    assert_eq!(location["location"]["latitude"], 18.0735);
    assert_eq!(location["location"]["name"], "Marché Capitale");
    let card = first("contacts");
    assert_eq!(card["contacts"][0]["name"]["formatted_name"], "Lucía Gómez");
    assert_eq!(card["contacts"][0]["phones"][0]["wa_id"], "19835552319");
    let interactive: Vec<Value> = by_kind("interactive")
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        interactive[0]["interactive"]["button_reply"]["id"],
        "confirm"
    );
    assert_eq!(interactive[1]["interactive"]["list_reply"]["id"], "express");
    for i in &interactive {
        assert_eq!(i["context"]["id"], BUSINESS_MSG);
    }
    let button = first("button");
    assert_eq!(button["button"]["payload"], "stop-promos");
    assert_eq!(button["button"]["text"], "Stop promotions");
    assert_eq!(button["context"]["id"], BUSINESS_MSG);
    let reaction = first("reaction");
    assert_eq!(reaction["reaction"]["message_id"], hello.id.as_str());
    assert_eq!(reaction["reaction"]["emoji"], "👍");
    let texts: Vec<Value> = by_kind("text").map(|m| m["content"].clone()).collect();
    assert_eq!(
        texts[1]["context"],
        json!({"from": "15550100001", "id": BUSINESS_MSG}),
        "a reply names the business number and message"
    );
    assert_eq!(texts[2]["context"], json!({"forwarded": true}));
    assert_eq!(first("unsupported")["errors"][0]["code"], 131051);
    let system = first("system");
    assert_eq!(system["system"]["type"], "user_changed_number");
    assert_eq!(system["system"]["wa_id"], "22245000009");

    // Omar's conversation: his text and the marker.
    let omar_msgs = w.messages(omar_c["id"].as_str().unwrap()).await;
    let wamids: Vec<&str> = omar_msgs
        .iter()
        .map(|m| m["wamid"].as_str().unwrap())
        .collect();
    assert_eq!(wamids, [omar_text.id.as_str(), marker.id.as_str()]);

    // Media: every file arrives after its failed first download, with its type.
    for (i, (kind, mime, data)) in files.iter().enumerate() {
        let message = by_kind(kind).next().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = until(&format!("the {kind} to be downloadable"), || async {
            let resp = w.media(&message).await;
            (resp.status() == 200).then_some(resp)
        })
        .await;
        assert_eq!(resp.headers()["content-type"], *mime, "{kind}");
        assert_eq!(resp.bytes().await.unwrap(), *data, "{kind}");
        let failed_first = w
            .sim
            .requests()
            .iter()
            .filter(|r| r.query.as_deref().is_some_and(|q| q.contains(&media[i].id)))
            .map(|r| r.status)
            .collect::<Vec<_>>();
        assert_eq!(failed_first.first(), Some(&503), "{kind}: {failed_first:?}");
        assert!(failed_first.contains(&200), "{kind}: {failed_first:?}");
    }
    // The duplicate stored nothing more.
    assert_eq!(w.all_messages().await.len(), total);
}

async fn statuses_out_of_order_end_at_read_and_forgeries_change_nothing(backend: Backend) {
    let w = world(backend).await;
    let mut events = Sse::open(&w).await;
    let aicha = SimUser::new("22245000001", "Aïcha");
    let base = now() - 600;
    let early = aicha.text("statuses came first").at(base);
    let later = aicha.text("statuses came after").at(base + 1);
    // Statuses of `early` before the message itself (held, then applied), read first.
    let out_of_order = SendMode {
        statuses_out_of_order: true,
        duplicate: true,
        ..SendMode::default()
    };
    let held = w
        .sim
        .send_batch(
            &SimBatch::new().statuses(
                PHONE,
                SimStatus::sequence(&early.id, &aicha.wa_id, base + 10),
            ),
            out_of_order,
        )
        .await
        .unwrap();
    let order: Vec<String> = held
        .deliveries
        .iter()
        .step_by(2)
        .map(|d| {
            d.json().unwrap()["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(order, ["read", "delivered", "sent"], "posted out of order");
    assert!(held.deliveries.iter().all(|d| d.status == Some(200)));
    // Then both messages in one delivery, then `later`'s statuses, read first, each twice.
    w.sim
        .send_batch(
            &SimBatch::new().messages(PHONE, vec![early.clone(), later.clone()]),
            SendMode::default(),
        )
        .await
        .unwrap();
    w.sim
        .send_batch(
            &SimBatch::new().statuses(
                PHONE,
                SimStatus::sequence(&later.id, &aicha.wa_id, base + 20),
            ),
            out_of_order,
        )
        .await
        .unwrap();

    let msgs = until("six statuses applied", || async {
        let c = w.conversations().await;
        let msgs = w.messages(c.first()?["id"].as_str()?).await;
        let n: usize = msgs
            .iter()
            .map(|m| m["statuses"].as_array().unwrap().len())
            .sum();
        (n >= 6).then_some(msgs)
    })
    .await;
    assert_eq!(msgs.len(), 2);
    for (m, (sent_at, wamid)) in msgs
        .iter()
        .zip([(base + 10, &early.id), (base + 20, &later.id)])
    {
        assert_eq!(m["wamid"], wamid.as_str());
        let statuses = m["statuses"].as_array().unwrap();
        assert_eq!(
            statuses.len(),
            3,
            "each status once despite duplicates: {statuses:#?}"
        );
        // The furthest state by Meta's time is `read`, whatever the arrival order.
        let mut by_time: Vec<(i64, &str)> = statuses
            .iter()
            .map(|s| (ts(&s["at"]), s["state"].as_str().unwrap()))
            .collect();
        by_time.sort();
        assert_eq!(
            by_time,
            [
                (sent_at as i64, "sent"),
                (sent_at as i64 + 1, "delivered"),
                (sent_at as i64 + 2, "read")
            ]
        );
        // An inbound message keeps `received`: statuses never move it back or sideways.
        assert_eq!(m["state"], "received");
    }
    let seen = events
        .until(|e| count(e, "message_status_changed") >= 6)
        .await;
    assert_eq!(count(&seen, "message_received"), 2);

    // A forged delivery (wrong key) is refused and stores nothing.
    let forged = SendMode {
        bad_signature: true,
        ..SendMode::default()
    };
    let intruder = SimUser::new("22245000666", "Intruder");
    let refused = w
        .sim
        .send_batch(
            &SimBatch::new()
                .messages(PHONE, vec![intruder.text("let me in")])
                .statuses(
                    PHONE,
                    vec![SimStatus::failed(&later.id, &aicha.wa_id, 131026)],
                ),
            forged,
        )
        .await
        .unwrap();
    assert_eq!(refused.deliveries[0].status, Some(401));
    // A genuine marker after it: once stored, the forgery would have been too.
    let marker = aicha.text("marker").at(base + 30);
    w.sim
        .send_batch(
            &SimBatch::new().messages(PHONE, vec![marker.clone()]),
            SendMode::default(),
        )
        .await
        .unwrap();
    let msgs = until("the marker", || async {
        let c = w.conversations().await;
        let msgs = w.messages(c.first()?["id"].as_str()?).await;
        (msgs.len() == 3).then_some(msgs)
    })
    .await;
    assert_eq!(w.contacts().await.len(), 1, "no contact for the forger");
    assert_eq!(w.conversations().await.len(), 1);
    let later_msg = msgs
        .iter()
        .find(|m| m["wamid"] == later.id.as_str())
        .unwrap();
    assert!(
        later_msg["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "failed"),
        "the forged failure was not applied"
    );
}
