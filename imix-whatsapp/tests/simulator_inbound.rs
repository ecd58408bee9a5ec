//! The simulator as an inbound-webhook source: every documented inbound type and status,
//! batched over entries × changes, posted signed to the callback URL and each delivery
//! checked against Meta's specification (`WebhookPayload`); duplicates, out-of-order
//! statuses and forged signatures on request; media served as Meta does (lookup, then
//! download), with injected download failures; the same through the HTTP control route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // shared with graph_api: only the loader is used here
#[path = "graph_api/spec.rs"]
mod spec;

use std::time::Duration;

use bytes::Bytes;
use imix_whatsapp::simulator::{
    SendMode, SimBatch, SimBusiness, SimPhoneNumber, SimStatus, SimUser, Simulator,
};
use imix_whatsapp::webhook::{self, StatusKind};
use poem::http::StatusCode;
use poem::{handler, EndpointExt, IntoResponse};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const WABA: &str = "102290129340398";
const PHONE: &str = "106540352242922";
const PHONE2: &str = "106540352242923";
const TOKEN: &str = "EAAGm0PX4ZCpsBAtest-token-123";
const SECRET: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";

type Received = (Option<String>, Bytes);

#[handler]
async fn receive(
    req: &poem::Request,
    body: Bytes,
    tx: poem::web::Data<&mpsc::UnboundedSender<Received>>,
) -> poem::Response {
    let signature = req.header(webhook::SIGNATURE_HEADER).map(str::to_owned);
    let _ = tx.send((signature, body));
    StatusCode::OK.into_response()
}

struct Fixture {
    sim: Simulator,
    rx: mpsc::UnboundedReceiver<Received>,
    _server: tokio::task::JoinHandle<()>,
}

async fn fixture() -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let app = poem::Route::new().at("/hooks", receive).data(tx);
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let server = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    let sim = Simulator::start(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    sim.add_business(
        SimBusiness::new(WABA, SECRET, TOKEN)
            .with_webhook_url(url)
            .with_phone_number(SimPhoneNumber::new(PHONE, "+1 555-078-3881"))
            .with_phone_number(SimPhoneNumber::new(PHONE2, "+1 555-078-3882")),
    );
    Fixture {
        sim,
        rx,
        _server: server,
    }
}

impl Fixture {
    /// The next delivery, its signature checked (`valid`) and its body against the spec.
    async fn next(&mut self, valid: bool) -> (String, Value) {
        let (signature, body) = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a webhook within 10 s")
            .unwrap();
        let verified =
            webhook::verify_signature(&SecretString::from(SECRET), &body, signature.as_deref());
        assert_eq!(verified.is_ok(), valid, "signature validity");
        let value: Value = serde_json::from_slice(&body).unwrap();
        let errors = webhook_errors(&value);
        assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
        (signature.unwrap(), value)
    }
}

/// `WebhookPayload` errors, with two corrections of the spec file beyond those of
/// `graph_api/spec.rs` (both for shapes that test never sends):
///
/// 5. `SystemMessage` inherits the outbound `BaseMessageProperties` (`to`,
///    `recipient_type`, ...): the same merge defect as correction 3, pointed at
///    `BaseMessageProperties_1` (`from`, `id`, `timestamp`) again.
/// 6. Meta's webhook reference documents `context.forwarded` and
///    `context.frequently_forwarded` (a forwarded message has no `from`/`id`); the file's
///    `ContextObject` lacks them. They are added, and `from` + `id` required unless the
///    context is a forward.
fn webhook_errors(instance: &Value) -> Vec<String> {
    if !spec::available() {
        return Vec::new();
    }
    let mut components = spec::spec()["components"].clone();
    let schemas = components["schemas"].as_object_mut().unwrap();
    let system = schemas.get_mut("SystemMessage").unwrap();
    system["allOf"][0]["$ref"] = json!("#/components/schemas/BaseMessageProperties_1");
    let context = schemas.get_mut("ContextObject").unwrap();
    context["properties"]["forwarded"] = json!({"type": "boolean"});
    context["properties"]["frequently_forwarded"] = json!({"type": "boolean"});
    let required = context
        .as_object_mut()
        .unwrap()
        .remove("required")
        .unwrap_or(json!([]));
    context["anyOf"] = json!([
        {"required": required},
        {"required": ["forwarded"]},
        {"required": ["frequently_forwarded"]},
    ]);
    let root = json!({"$ref": "#/components/schemas/WebhookPayload", "components": components});
    let validator = jsonschema::draft202012::new(&root).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn messages_of(delivery: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for e in delivery["entry"].as_array().unwrap() {
        for c in e["changes"].as_array().unwrap() {
            for m in c["value"]["messages"].as_array().into_iter().flatten() {
                out.push(m.clone());
            }
        }
    }
    out
}

fn statuses_of(delivery: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for e in delivery["entry"].as_array().unwrap() {
        for c in e["changes"].as_array().unwrap() {
            for s in c["value"]["statuses"].as_array().into_iter().flatten() {
                out.push(s.clone());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_batch_of_every_type_conforms_to_metas_shapes() {
    let mut f = fixture().await;
    let aicha = SimUser::new("22245000001", "Aïcha");
    let bob = SimUser::new("16505551234", "Bob");
    let media = |mime: &str, data: &'static [u8]| {
        f.sim
            .add_inbound_media(PHONE, mime, Bytes::from_static(data))
            .unwrap()
    };
    let jpeg = media("image/jpeg", b"jpeg bytes");
    let ogg = media("audio/ogg", b"ogg bytes");
    let mp4 = media("video/mp4", b"mp4 bytes");
    let pdf = media("application/pdf", b"%PDF-1.4");
    let webp = media("image/webp", b"webp bytes");
    let hello = aicha
        .text("Hello!")
        .from_ad("120226305854810726", "Summer sale");
    let business_msg = "wamid.HBgLMjIyNDUwMDAwMDEVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA";
    let first = vec![
        hello.clone(),
        aicha.image(&jpeg, Some("the invoice")),
        aicha.audio(&ogg, true),
        aicha.video(&mp4, None),
        aicha.document(&pdf, "quote.pdf"),
        aicha.sticker(&webp, false),
        aicha.location(18.0735, -15.9582, "Marché Capitale", "Nouakchott", None),
        aicha.contact_card("Lucía Gómez", "+1 983-555-2319"),
        aicha.button_reply(business_msg, "yes", "Yes"),
        aicha.list_reply(business_msg, "express", "Express", "Next day"),
        aicha.quick_reply(business_msg, "Unsubscribe", "Unsubscribe"),
        aicha.reaction(&hello.id, "👍"),
        aicha.text("see this").replying_to(business_msg),
        aicha.text("look").forwarded(false),
        aicha.text("look again").forwarded(true),
        aicha.unsupported(),
        aicha.changed_number("22245000009"),
    ];
    let batch = SimBatch::new()
        .messages(PHONE, first)
        .statuses(
            PHONE,
            vec![
                SimStatus::new(business_msg, "22245000001", StatusKind::Sent).at(1_760_000_000),
                SimStatus::failed("wamid.other", "22245000001", 131047),
            ],
        )
        .next_entry()
        .messages(PHONE2, vec![bob.text("second number")])
        .statuses(
            PHONE2,
            SimStatus::sequence("wamid.b", "16505551234", 1_760_000_000),
        );
    let sent = f.sim.send_batch(&batch, SendMode::default()).await.unwrap();
    assert_eq!(sent.deliveries.len(), 1);
    assert_eq!(sent.deliveries[0].status, Some(200));
    assert_eq!(sent.wamids.len(), 18);
    let (_, d) = f.next(true).await;
    let entries = d["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["id"] == WABA));
    // Entry 1: user messages, the system message apart (no contacts), statuses apart.
    let changes = entries[0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{changes:#?}");
    assert_eq!(
        changes[0]["value"]["contacts"],
        json!([{"profile": {"name": "Aïcha"}, "wa_id": "22245000001"}])
    );
    assert!(changes[1]["value"].get("contacts").is_none());
    assert_eq!(changes[1]["value"]["messages"][0]["type"], "system");
    let messages = messages_of(&d);
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    for kind in [
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "button",
        "reaction",
        "unsupported",
        "system",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for m in &messages {
        assert!(m["timestamp"].is_string(), "string timestamps: {m}");
        assert!(m["id"].as_str().unwrap().starts_with("wamid."));
    }
    let by_id = |id: &str| messages.iter().find(|m| m["id"] == id).unwrap().clone();
    let h = by_id(&hello.id);
    assert_eq!(h["referral"]["source_type"], "ad");
    assert_eq!(h["referral"]["source_id"], "120226305854810726");
    let replies: Vec<&Value> = messages
        .iter()
        .filter(|m| m.get("context").is_some())
        .collect();
    assert!(replies
        .iter()
        .any(|m| m["context"] == json!({"from": "15550783881", "id": business_msg})));
    assert!(replies
        .iter()
        .any(|m| m["context"] == json!({"forwarded": true})));
    assert!(replies
        .iter()
        .any(|m| m["context"] == json!({"frequently_forwarded": true})));
    let image = messages.iter().find(|m| m["type"] == "image").unwrap();
    assert_eq!(image["image"]["id"], jpeg.id);
    assert_eq!(image["image"]["sha256"], jpeg.sha256);
    let unsupported = messages
        .iter()
        .find(|m| m["type"] == "unsupported")
        .unwrap();
    assert_eq!(unsupported["errors"][0]["code"], 131051);
    let statuses = statuses_of(&d);
    assert_eq!(statuses.len(), 5);
    let failed = statuses.iter().find(|s| s["status"] == "failed").unwrap();
    assert_eq!(failed["errors"][0]["code"], 131047);
    assert!(failed.get("pricing").is_none());
    let sent_status = statuses.iter().find(|s| s["id"] == business_msg).unwrap();
    assert_eq!(sent_status["timestamp"], "1760000000");
    assert_eq!(sent_status["pricing"]["pricing_model"], "PMP");
    assert_eq!(sent_status["conversation"]["origin"]["type"], "service");
    assert!(sent_status["conversation"]["expiration_timestamp"].is_string());
}

#[tokio::test]
async fn duplicates_out_of_order_statuses_and_forgeries_on_request() {
    let mut f = fixture().await;
    let aicha = SimUser::new("22245000001", "Aïcha");
    let batch = SimBatch::new()
        .messages(PHONE, vec![aicha.text("twice")])
        .statuses(
            PHONE,
            SimStatus::sequence("wamid.o", "22245000001", 1_760_000_000),
        );
    let mode = SendMode {
        duplicate: true,
        statuses_out_of_order: true,
        bad_signature: false,
    };
    let sent = f.sim.send_batch(&batch, mode).await.unwrap();
    assert_eq!(sent.deliveries.len(), 8, "4 deliveries, each twice");
    let (sig1, first) = f.next(true).await;
    let (sig2, again) = f.next(true).await;
    assert_eq!((sig1, &first), (sig2, &again), "the same delivery twice");
    assert!(statuses_of(&first).is_empty());
    let mut order = Vec::new();
    for _ in 0..3 {
        let (_, d) = f.next(true).await;
        let (_, dup) = f.next(true).await;
        assert_eq!(d, dup);
        let s = statuses_of(&d);
        assert_eq!(s.len(), 1);
        order.push(s[0]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(order, ["read", "delivered", "sent"]);

    let forged = SendMode {
        bad_signature: true,
        ..SendMode::default()
    };
    f.sim
        .send_batch(
            &SimBatch::new().messages(PHONE, vec![aicha.text("forged")]),
            forged,
        )
        .await
        .unwrap();
    f.next(false).await;
}

#[tokio::test]
async fn media_is_looked_up_then_downloaded_and_can_fail_first() {
    let f = fixture().await;
    let data = Bytes::from_static(b"\xff\xd8\xff\xe0 a tiny picture \xff\xd9");
    let media = f
        .sim
        .add_inbound_media(PHONE, "image/jpeg", data.clone())
        .unwrap();
    let http = reqwest::Client::new();
    let info: Value = http
        .get(format!("{}/v23.0/{}", f.sim.url(), media.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["mime_type"], "image/jpeg");
    use base64::Engine;
    let hex_sha = hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(&media.sha256)
            .unwrap(),
    );
    assert_eq!(info["sha256"], hex_sha);
    let url = info["url"].as_str().unwrap().to_owned();
    f.sim.fail_media_downloads(&media.id, 1, 503);
    let download = || http.get(&url).bearer_auth(TOKEN).send();
    assert_eq!(download().await.unwrap().status(), 503);
    let ok = download().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn the_control_route_sends_every_type() {
    let mut f = fixture().await;
    let http = reqwest::Client::new();
    let base = f.sim.url();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let user = |extra: Value| {
        let mut m = json!({"from": "22245000001", "name": "Aïcha"});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let b = "wamid.HBgLMjIyNDUwMDAwMDEVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA";
    let media: Value = post(
        "/_simulator/media",
        json!({"phone_number_id": PHONE, "mime_type": "image/png", "data_base64": "iVBORw0KGgo="}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let messages = vec![
        user(
            json!({"type": "text", "text": {"body": "hi"}, "referral": {"source_url": "https://fb.me/x", "source_id": "1", "source_type": "ad", "body": "b", "headline": "h", "media_type": "image", "ctwa_clid": "c"}}),
        ),
        user(json!({"type": "image", "image": {"id": media["id"], "caption": "png"}})),
        user(json!({"type": "audio", "audio": {"voice": true}})),
        user(json!({"type": "video", "video": {}})),
        user(json!({"type": "document", "document": {"filename": "a.pdf"}})),
        user(json!({"type": "sticker", "sticker": {"animated": false}})),
        user(
            json!({"type": "location", "location": {"latitude": 1.5, "longitude": 2.5, "name": "n", "address": "a"}}),
        ),
        user(
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "X Y"}, "phones": [{"phone": "+1 555", "wa_id": "1555", "type": "CELL"}]}]}),
        ),
        user(
            json!({"type": "interactive", "context": {"id": b}, "interactive": {"type": "button_reply", "button_reply": {"id": "y", "title": "Yes"}}}),
        ),
        user(
            json!({"type": "interactive", "context": {"id": b}, "interactive": {"type": "list_reply", "list_reply": {"id": "r", "title": "R", "description": "d"}}}),
        ),
        user(
            json!({"type": "button", "context": {"id": b}, "button": {"payload": "P", "text": "T"}}),
        ),
        user(json!({"type": "reaction", "reaction": {"message_id": b, "emoji": "❤️"}})),
        user(json!({"type": "text", "text": {"body": "fwd"}, "context": {"forwarded": true}})),
        user(json!({"type": "unsupported"})),
        user(json!({"type": "system", "system": {"wa_id": "22245000009"}})),
    ];
    let resp = post(
        "/_simulator/webhooks",
        json!({"entries": [{"changes": [{"phone_number_id": PHONE, "messages": messages,
            "statuses": [{"id": b, "status": "failed", "recipient_id": "22245000001", "error_code": 131026}]}]}]}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["wamids"].as_array().unwrap().len(), 15);
    assert_eq!(answer["deliveries"][0]["webhook_status"], 200);
    let (_, d) = f.next(true).await;
    let got = messages_of(&d);
    assert_eq!(got.len(), 15);
    let image = got.iter().find(|m| m["type"] == "image").unwrap();
    assert_eq!(image["image"]["sha256"], media["sha256"]);
    assert_eq!(image["image"]["mime_type"], "image/png");
    let audio = got.iter().find(|m| m["type"] == "audio").unwrap();
    assert_eq!(audio["audio"]["mime_type"], "audio/ogg");
    assert!(audio["audio"]["id"].is_string() && audio["audio"].get("data_base64").is_none());
    assert_eq!(statuses_of(&d)[0]["errors"][0]["code"], 131026);

    // Bad input names the field and sends nothing.
    let resp = post(
        "/_simulator/webhooks",
        json!({"entries": [{"changes": [{"phone_number_id": PHONE, "messages": [{"from": "x1", "type": "text", "text": {"body": "b"}}]}]}]}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["error_data"]["details"]
        .as_str()
        .unwrap()
        .contains("entries[0].changes[0].messages[0]"));
    // Media download failures by HTTP too.
    let resp = post(
        &format!(
            "/_simulator/media/{}/fail_downloads",
            media["id"].as_str().unwrap()
        ),
        json!({"count": 2, "status": 500}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), f.rx.recv())
            .await
            .is_err()
    );
}
