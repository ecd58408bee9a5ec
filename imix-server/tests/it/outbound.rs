//! The send API and the dispatcher, end to end on both stores against the Graph API
//! simulator: a reply to an inbound message is accepted (202), counted in the daily usage,
//! dispatched, and moved to delivered and read by Meta's status webhooks; the same
//! `Idempotency-Key` sends once; a 130429 is retried and then succeeds; a 131026 (answered
//! or by status webhook) ends `failed` with Meta's error and the quota unit back, and is
//! listed in the dead-letter view and retried; a message a crash left `sending` becomes
//! `unknown` and is not sent again; refusals name their field and queue nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{
    outbound_world::{OutboundWorld, Setup, CUSTOMER, TOKEN},
    Backend,
};
use imix_whatsapp::simulator::{Fault, SimTemplate};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_reply_is_accepted_counted_dispatched_and_read,
    the_same_idempotency_key_sends_once,
    a_throughput_error_is_retried_then_succeeds,
    an_undeliverable_message_fails_with_metas_error_and_gives_its_quota_back,
    a_message_left_sending_by_a_crash_becomes_unknown_and_is_not_sent_again,
    refusals_name_the_field_and_queue_nothing,
    a_refused_token_pauses_the_accounts_queue,
    a_reused_idempotency_key_is_refused_and_reveals_nothing,
);

/// The world with two templates at Meta: `order_ready` (utility) and `spring_sale`
/// (marketing).
async fn world(backend: Backend) -> OutboundWorld {
    let mut marketing = SimTemplate::approved("spring_sale", "en_US", None, "Sale! {{1}} off");
    marketing.template.category = "MARKETING".into();
    let templates = vec![
        SimTemplate::approved(
            "order_ready",
            "en_US",
            None,
            "Hi {{1}}, your order {{2}} is ready",
        ),
        marketing,
    ];
    OutboundWorld::start(
        backend,
        Setup {
            templates,
            ..Setup::default()
        },
    )
    .await
}

async fn a_reply_is_accepted_counted_dispatched_and_read(backend: Backend) {
    let w = world(backend).await;
    let (conversation, inbound_id, inbound_wamid) = w.inbound(CUSTOMER, "Is my order ready?").await;
    let (status, body) = w
        .send_with_key(
            json!({
                "conversation_id": conversation,
                "type": "text",
                "text": {"body": "Yes, it is ready: https://shop.example/o/42", "preview_url": true},
                "context": {"message_id": inbound_id},
            }),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["conversation_id"], conversation.as_str());
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(w.messages_used_today().await, 1, "the reply is counted");

    let sent = w.wait_for(&id, "sent").await;
    let wamid = sent["wamid"].as_str().unwrap().to_owned();
    assert!(sent["sent_at"].is_string() && sent["sending_at"].is_string());
    assert_eq!(sent["attempts"], 1);
    // Meta got our reply, as a reply to the customer's message (our id became its wamid).
    let at_meta = w.sim.sent_message(&wamid).expect("Meta has the message");
    assert_eq!(at_meta.to, CUSTOMER);
    assert_eq!(
        at_meta.context.as_ref().map(|c| c.message_id.as_str()),
        Some(inbound_wamid.as_str())
    );

    w.sim.send_status_sequence(&wamid).await.unwrap();
    w.wait_for(&id, "read").await;
    // The statuses are separate deliveries, processed in any order: `delivered` may land
    // after `read` (it then only records its time).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let read = loop {
        let m = w.message(&id).await;
        if m["delivered_at"].is_string() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "never delivered: {m}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(read["status"], "read", "{read}");
    assert!(read["read_at"].is_string(), "{read}");
    assert!(read["error"].is_null());
    // The conversation shows the reply with Meta's statuses.
    let msgs = w
        .get(&format!("/conversations/{conversation}/messages?limit=100"))
        .await;
    let ours = msgs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .expect("the reply is in the conversation")
        .clone();
    assert_eq!(ours["direction"], "outbound");
    assert_eq!(ours["wamid"], wamid.as_str());
    assert_eq!(ours["state"], "read");

    // Blue ticks for the customer's message.
    let (status, marked) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path(&format!("/conversations/{conversation}/read")),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{marked}");
    assert_eq!(marked["marked_wamid"], inbound_wamid.as_str());
    assert!(w.sim.read_marks().contains(&inbound_wamid));
    assert_eq!(w.sim.sent_messages().len(), 1, "sent once");
}

async fn the_same_idempotency_key_sends_once(backend: Backend) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    let body = json!({"conversation_id": conversation, "type": "text", "text": {"body": "Hi!"}});
    // Two retries of one request race, a third comes later.
    let (a, b) = tokio::join!(
        w.send_with_key(body.clone(), Some("reply-7f3a")),
        w.send_with_key(body.clone(), Some("reply-7f3a"))
    );
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(b.0, 202, "{}", b.1);
    assert_eq!(a.1, b.1, "the same answer");
    let id = a.1["id"].as_str().unwrap().to_owned();
    w.wait_for(&id, "sent").await;
    let (status, again) = w.send_with_key(body.clone(), Some("reply-7f3a")).await;
    assert_eq!(status, 202);
    assert_eq!(again, a.1, "the first answer, not a new message");
    // Another key is another message.
    let (_, other) = w.send_with_key(body, Some("reply-8b1c")).await;
    assert_ne!(other["id"], a.1["id"]);
    w.wait_for(other["id"].as_str().unwrap(), "sent").await;
    assert_eq!(w.sim.sent_messages().len(), 2, "one send per key");
    assert_eq!(w.messages_used_today().await, 2, "one unit per key");
    let all = w.get("/messages?limit=100").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
}

async fn a_throughput_error_is_retried_then_succeeds(backend: Backend) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    w.sim.inject_fault(
        Fault::graph(
            429,
            130429,
            "(#130429) Rate limit hit: Cloud API message throughput has been reached.",
        )
        .with_retry_after(1),
        1,
    );
    let (status, body) = w
        .send_with_key(
            json!({"conversation_id": conversation, "type": "text", "text": {"body": "Hi!"}}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let sent = w.wait_for(&id, "sent").await;
    assert_eq!(sent["attempts"], 2, "{sent}");
    assert!(sent["error"].is_null());
    assert_eq!(w.sim.sent_messages().len(), 1);
    assert_eq!(w.messages_used_today().await, 1);
}

async fn an_undeliverable_message_fails_with_metas_error_and_gives_its_quota_back(
    backend: Backend,
) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    w.sim.inject_fault(
        Fault::graph(400, 131026, "(#131026) Message undeliverable"),
        1,
    );
    let body = json!({"conversation_id": conversation, "type": "text", "text": {"body": "Hi!"}});
    let (status, first) = w.send_with_key(body.clone(), None).await;
    assert_eq!(status, 202, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    let failed = w.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], 131026, "{failed}");
    assert_eq!(
        failed["error"]["message"],
        "(#131026) Message undeliverable"
    );
    assert!(failed["failed_at"].is_string());
    assert!(failed["wamid"].is_null());
    w.wait_usage(0).await; // the unit is given back
                           // The dead-letter view lists it.
    let dead = w.get("/messages?status=failed").await;
    let items = dead["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    // Only failed or unknown messages are retried; this one is, and then it goes out.
    let (status, retried) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path(&format!("/messages/{id}/retry")),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["status"], "queued");
    w.wait_for(&id, "sent").await;
    assert_eq!(w.messages_used_today().await, 1);
    let (status, again) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path(&format!("/messages/{id}/retry")),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "not_retryable");

    // Meta accepts, then reports it undeliverable by status webhook: failed as well, with
    // Meta's error, never shown delivered.
    let (_, second) = w.send_with_key(body, None).await;
    let id2 = second["id"].as_str().unwrap().to_owned();
    let sent = w.wait_for(&id2, "sent").await;
    assert_eq!(w.messages_used_today().await, 2);
    w.sim
        .send_failed(sent["wamid"].as_str().unwrap(), 131026)
        .await
        .unwrap();
    let failed = w.wait_for(&id2, "failed").await;
    assert_eq!(failed["error"]["code"], 131026, "{failed}");
    w.wait_usage(1).await; // its unit is given back too
}

async fn a_message_left_sending_by_a_crash_becomes_unknown_and_is_not_sent_again(backend: Backend) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    // A message sent normally gives the record a dead worker would have left.
    let (_, body) = w
        .send_with_key(
            json!({"conversation_id": conversation, "type": "text", "text": {"body": "first"}}),
            None,
        )
        .await;
    let first_id = body["id"].as_str().unwrap().to_owned();
    w.wait_for(&first_id, "sent").await;
    // What a replica killed between marking `sending` and Meta's answer leaves behind: a
    // `sending` record whose lease ran out, written straight into the store.
    let config = imix_server::config::Config::from_vars(w.vars.clone()).unwrap();
    let store = imix_server::state::open_store(&config).await.unwrap();
    let records = imix_messaging::storage::outbound::open(&store.backend).unwrap();
    let mut orphan = records
        .get(imix_core::store::Scope::Platform, first_id.parse().unwrap())
        .await
        .unwrap();
    let id = imix_messaging::MessageId::new();
    let past = imix_core::now() - chrono::Duration::minutes(5);
    orphan.id = id;
    orphan.dedupe = format!("id:{id}");
    orphan.status = imix_messaging::outbound::OutboundStatus::Sending;
    orphan.wamid = None;
    orphan.sent_at = None;
    orphan.sending_at = Some(past);
    orphan.lease_until = Some(past);
    orphan.due_at = None;
    orphan.version = 1;
    records.insert(&orphan).await.unwrap();
    let unknown = w.wait_for(&id.to_string(), "unknown").await;
    assert!(unknown["unknown_at"].is_string(), "{unknown}");
    assert!(unknown["wamid"].is_null());
    // Never sent again by itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.message(&id.to_string()).await["status"], "unknown");
    assert_eq!(
        w.sim.sent_messages().len(),
        1,
        "only the first message went out"
    );
    // Sent again only on request.
    let (status, retried) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path(&format!("/messages/{id}/retry")),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{retried}");
    w.wait_for(&id.to_string(), "sent").await;
    assert_eq!(w.sim.sent_messages().len(), 2);
}

async fn refusals_name_the_field_and_queue_nothing(backend: Backend) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "STOP").await;
    // The opt-out is recorded right after the message.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let contacts = w.get("/contacts?limit=100").await;
        let out = contacts["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["wa_id"] == CUSTOMER && c["opted_out"] == true);
        if out {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "STOP never opted out");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, synced) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path("/templates/sync"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    // A contact who never wrote: no window.
    let (status, contact) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &w.path("/contacts"),
            json!({"phone": "+33612345678", "name": "Quiet"}),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let c = json!(conversation);
    let cases = [
        (
            json!({"conversation_id": c, "text": {"body": "x"}}),
            "invalid_field",
            "type",
        ),
        (
            json!({"conversation_id": c, "type": "fax"}),
            "invalid_field",
            "type",
        ),
        (
            json!({"conversation_id": c, "type": "text", "text": {"body": ""}}),
            "invalid_field",
            "text.body",
        ),
        (
            json!({"conversation_id": c, "type": "image", "image": {"link": "https://cdn.example/a.gif"}}),
            "invalid_field",
            "image.link",
        ),
        (
            json!({"conversation_id": c, "type": "sticker", "sticker": {"id": "55", "file_size": 900000}}),
            "invalid_field",
            "sticker.file_size",
        ),
        (
            json!({"type": "text", "text": {"body": "x"}}),
            "invalid_field",
            "to",
        ),
        (
            json!({"to": CUSTOMER, "type": "text", "text": {"body": "x"}}),
            "invalid_field",
            "account_id",
        ),
        (
            json!({"account_id": w.account, "to": "+33612345678", "type": "text", "text": {"body": "x"}}),
            "outside_customer_service_window",
            "type",
        ),
        (
            json!({"account_id": w.account, "to": "+33612345679", "type": "text", "text": {"body": "x"}}),
            "unknown_contact",
            "to",
        ),
        (
            json!({"conversation_id": c, "type": "template", "template": {"name": "nope", "language": {"code": "en_US"}}}),
            "template_not_found",
            "template.name",
        ),
        (
            json!({"conversation_id": c, "type": "template", "template": {"name": "order_ready", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]}}),
            "template_parameter_mismatch",
            "template.components[body]",
        ),
        // The customer wrote STOP: marketing is refused, utility templates are not.
        (
            json!({"conversation_id": c, "type": "template", "template": {"name": "spring_sale", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "20%"}]}]}}),
            "contact_opted_out",
            "to",
        ),
    ];
    for (body, code, field) in cases {
        let (status, e) = w.send_with_key(body.clone(), None).await;
        assert_eq!(status, 422, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
    }
    let (_, e) = w
        .send_with_key(
            json!({"account_id": w.account, "to": "+33612345678", "type": "text", "text": {"body": "x"}}),
            None,
        )
        .await;
    assert!(
        e["error"]["details"].get("window_expires_at").is_some(),
        "{e}"
    );
    assert_eq!(w.messages_used_today().await, 0, "nothing counted");
    assert_eq!(
        w.get("/conversations").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no conversation opened by a refused send"
    );
    assert!(
        w.get("/messages").await["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing queued"
    );
    // A utility template to the same contact goes.
    let (status, ok) = w
        .send_with_key(
            json!({"conversation_id": c, "type": "template", "template": {"name": "order_ready", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]}]}}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{ok}");
    w.wait_for(ok["id"].as_str().unwrap(), "sent").await;
    // A template outside the window is fine too.
    let (status, ok) = w
        .send_with_key(
            json!({"account_id": w.account, "to": "+33612345678", "type": "template", "template": {"name": "order_ready",
                "language": {"code": "en_US"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "Q"}, {"type": "text", "text": "7"}]}]}}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{ok}");
    w.wait_for(ok["id"].as_str().unwrap(), "sent").await;
    assert_eq!(w.sim.sent_messages().len(), 2);
}

async fn a_refused_token_pauses_the_accounts_queue(backend: Backend) {
    let w = world(backend).await;
    // The number's rate is the account's, within Meta's tiers.
    let path = format!("/api/v1/whatsapp-accounts/{}", w.account);
    let (status, e) =
        w.s.send_json(
            &w.admin,
            Method::PATCH,
            &path,
            json!({"max_messages_per_second": 5000}),
        )
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["details"]["field"], "max_messages_per_second");
    let (status, a) =
        w.s.send_json(
            &w.admin,
            Method::PATCH,
            &path,
            json!({"max_messages_per_second": 200}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["max_messages_per_second"], 200);
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    // Meta stops accepting the token (error 190).
    w.sim.expire_access_token(TOKEN);
    let (status, body) = w
        .send_with_key(
            json!({"conversation_id": conversation, "type": "text", "text": {"body": "Hi!"}}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // The account is flagged, the message waits queued with the reason.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, account) = w.s.get_json(&w.admin, &path).await;
        let m = w.message(&id).await;
        if account["verification"]["status"] == "failed" && m["last_error"].is_string() {
            assert_eq!(m["status"], "queued", "{m}");
            assert!(m["error"].is_null());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the account was never paused: {account} {m}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(w.sim.sent_messages().is_empty());
    // While paused, the send API refuses new messages on that account.
    let (status, e) = w
        .send_with_key(
            json!({"conversation_id": conversation, "type": "text", "text": {"body": "again"}}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "account_not_verified");
    assert_eq!(
        w.messages_used_today().await,
        1,
        "the paused message keeps its unit"
    );
}

fn refused(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or_default(),
        v["error"]["details"]["field"].as_str().unwrap_or_default(),
    )
}

async fn a_reused_idempotency_key_is_refused_and_reveals_nothing(backend: Backend) {
    let w = world(backend).await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    let user = |email: &str| json!({"email": email, "first_name": "A", "last_name": "Gent", "role": "agent", "tenant_id": w.tenant});
    let (agent1, agent1_token) =
        w.s.user_with_token(&w.admin, user("one@alpha.example"))
            .await;
    let (_, agent2_token) =
        w.s.user_with_token(&w.admin, user("two@alpha.example"))
            .await;
    // The conversation is agent one's: agent two does not see it.
    let (status, c) =
        w.s.send_json(
            &w.admin,
            Method::PATCH,
            &w.path(&format!("/conversations/{conversation}")),
            json!({"assignee": agent1["id"]}),
        )
        .await;
    assert_eq!(status, 200, "{c}");

    let body = json!({"conversation_id": conversation, "type": "text", "text": {"body": "Hi!"}});
    let (status, first) = w.send_as(&agent1_token, body.clone(), Some("k-1")).await;
    assert_eq!(status, 202, "{first}");
    // The same request from the same caller: the first answer (key order does not matter).
    let reordered =
        json!({"text": {"body": "Hi!"}, "type": "text", "conversation_id": conversation});
    let (status, again) = w.send_as(&agent1_token, reordered, Some("k-1")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], first["id"]);

    // Another body with the key: refused, naming the header.
    let other = json!({"conversation_id": conversation, "type": "text", "text": {"body": "Bye!"}});
    let (status, err) = w.send_as(&agent1_token, other, Some("k-1")).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(
        refused(&err),
        ("idempotency_key_reused", "Idempotency-Key"),
        "{err}"
    );
    assert!(err
        .to_string()
        .find(first["id"].as_str().unwrap())
        .is_none());
    // The same body from another caller who sees the conversation: refused too.
    let (status, err) = w.send_with_key(body.clone(), Some("k-1")).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(
        refused(&err),
        ("idempotency_key_reused", "Idempotency-Key"),
        "{err}"
    );
    // A caller who does not see the conversation learns nothing: the target is refused.
    let (status, err) = w.send_as(&agent2_token, body.clone(), Some("k-1")).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(refused(&err), ("invalid_field", "conversation_id"), "{err}");
    assert!(err
        .to_string()
        .find(first["id"].as_str().unwrap())
        .is_none());
    // A bad body with the key is checked as a bad body, not answered with the message.
    let bad = json!({"conversation_id": conversation, "type": "text", "text": {"body": ""}});
    let (status, err) = w.send_as(&agent1_token, bad, Some("k-1")).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(refused(&err).0, "invalid_field", "{err}");
    assert!(err
        .to_string()
        .find(first["id"].as_str().unwrap())
        .is_none());

    // Keys too long or with control characters: refused, naming the header.
    for key in ["x".repeat(256), "a\tb".to_owned()] {
        let (status, err) = w.send_as(&agent1_token, body.clone(), Some(&key)).await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(refused(&err), ("invalid_field", "Idempotency-Key"), "{err}");
    }
    let (status, ok) = w
        .send_as(&agent1_token, body.clone(), Some(&"x".repeat(255)))
        .await;
    assert_eq!(status, 202, "255 characters are fine: {ok}");

    // Two keys on one request: refused, and nothing queued.
    let count = |v: Value| v["items"].as_array().unwrap().len();
    let before = count(w.get("/messages?limit=100").await);
    let resp =
        w.s.call(&agent1_token, Method::POST, &w.path("/messages"))
            .header("Idempotency-Key", "two-a")
            .header("Idempotency-Key", "two-b")
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        refused(&err),
        ("duplicate_header", "Idempotency-Key"),
        "{err}"
    );
    assert_eq!(count(w.get("/messages?limit=100").await), before);
    // A key with bytes outside ASCII is refused too, not taken for no key.
    let resp =
        w.s.call(&agent1_token, Method::POST, &w.path("/messages"))
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(refused(&err), ("invalid_field", "Idempotency-Key"), "{err}");
    assert_eq!(count(w.get("/messages?limit=100").await), before);

    // Two messages queued in all, each sent once, each counted once.
    w.wait_for(first["id"].as_str().unwrap(), "sent").await;
    w.wait_for(ok["id"].as_str().unwrap(), "sent").await;
    assert_eq!(w.sim.sent_messages().len(), 2);
    assert_eq!(w.messages_used_today().await, 2);
    let all = w.get("/messages?limit=100").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
}
