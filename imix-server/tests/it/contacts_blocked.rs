//! Blocked contacts, end to end on both stores against the Graph API simulator: PATCH
//! `{"blocked": true}` shows in the contact; the send API refuses a message to it by `to`
//! or by `conversation_id` with 422 `contact_blocked` naming that field, queueing nothing
//! and counting nothing; its inbound messages are still stored; a message queued before the
//! block is failed by the dispatcher without Meta hearing of it and its quota unit given
//! back; unblocking lets sends through again; another tenant cannot block it (404).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{
    outbound_world::{OutboundWorld, Setup, CUSTOMER},
    Backend,
};
use imix_whatsapp::simulator::Fault;
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_blocked_contact_is_refused_by_to_and_by_conversation,
    a_message_queued_before_the_block_fails_without_meta,
    another_tenant_cannot_block_the_contact,
);

async fn world(backend: Backend) -> OutboundWorld {
    OutboundWorld::start(backend, Setup::default()).await
}

impl OutboundWorld {
    async fn contact_id(&self) -> String {
        let contacts = self.get("/contacts?limit=100").await;
        contacts["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["wa_id"] == CUSTOMER)
            .expect("the customer is a contact")["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn set_blocked(&self, contact: &str, blocked: bool) -> Value {
        let (status, c) = self
            .s
            .send_json(
                &self.admin,
                Method::PATCH,
                &self.path(&format!("/contacts/{contact}")),
                json!({ "blocked": blocked }),
            )
            .await;
        assert_eq!(status, 200, "{c}");
        c
    }

    async fn queued_count(&self) -> usize {
        self.get("/messages").await["items"]
            .as_array()
            .unwrap()
            .len()
    }
}

async fn a_blocked_contact_is_refused_by_to_and_by_conversation(backend: Backend) {
    let w = world(backend).await;
    let conversation = w.inbound(CUSTOMER, "hello").await.0;
    let contact = w.contact_id().await;
    let shown = w.get(&format!("/contacts/{contact}")).await;
    assert_eq!(shown["blocked"], false, "not blocked by default: {shown}");
    let patched = w.set_blocked(&contact, true).await;
    assert_eq!(patched["blocked"], true, "{patched}");
    assert_eq!(
        w.get(&format!("/contacts/{contact}")).await["blocked"],
        true
    );

    let before = w.queued_count().await;
    let used = w.messages_used_today().await;
    let cases = [
        (
            json!({"conversation_id": conversation, "type": "text", "text": {"body": "hi"}}),
            "conversation_id",
        ),
        (
            json!({"account_id": w.account, "to": format!("+{CUSTOMER}"), "type": "text", "text": {"body": "hi"}}),
            "to",
        ),
        (
            json!({"account_id": w.account, "to": contact, "type": "text", "text": {"body": "hi"}}),
            "to",
        ),
    ];
    for (body, field) in cases {
        let (status, e) = w.send(body.clone()).await;
        assert_eq!(status, 422, "{body}: {e}");
        assert_eq!(e["error"]["code"], "contact_blocked", "{body}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
    }
    assert_eq!(w.queued_count().await, before, "nothing queued");
    assert_eq!(w.messages_used_today().await, used, "no quota taken");
    assert!(w.sim.sent_messages().is_empty(), "Meta heard nothing");

    // Its messages are still stored: blocking loses no data.
    let msgs = |v: Value| v["items"].as_array().unwrap().len();
    let stored = msgs(
        w.get(&format!("/conversations/{conversation}/messages?limit=100"))
            .await,
    );
    let again = w.inbound(CUSTOMER, "are you there?").await.0;
    assert_eq!(again, conversation);
    let now = msgs(
        w.get(&format!("/conversations/{conversation}/messages?limit=100"))
            .await,
    );
    assert_eq!(now, stored + 1, "the blocked contact's message was stored");

    // Unblocked: sends go again.
    let patched = w.set_blocked(&contact, false).await;
    assert_eq!(patched["blocked"], false, "{patched}");
    let (status, ok) = w
        .send(json!({"conversation_id": conversation, "type": "text", "text": {"body": "back"}}))
        .await;
    assert_eq!(status, 202, "{ok}");
    w.wait_for(ok["id"].as_str().unwrap(), "sent").await;
    assert_eq!(w.sim.sent_messages().len(), 1);
    assert_eq!(w.messages_used_today().await, used + 1);
}

async fn a_message_queued_before_the_block_fails_without_meta(backend: Backend) {
    let w = world(backend).await;
    let conversation = w.inbound(CUSTOMER, "hello").await.0;
    let contact = w.contact_id().await;
    // The first attempt meets a throughput error and waits to be retried: the contact is
    // blocked meanwhile.
    w.sim.inject_fault(
        Fault::graph(
            429,
            130429,
            "(#130429) Rate limit hit: Cloud API message throughput has been reached.",
        )
        .with_retry_after(2),
        1,
    );
    let (status, body) = w
        .send(json!({"conversation_id": conversation, "type": "text", "text": {"body": "hi"}}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = w.get(&format!("/messages/{id}")).await;
        if m["attempts"] == 1 && m["status"] == "queued" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never deferred: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.set_blocked(&contact, true).await;
    let failed = w.wait_for(&id, "failed").await;
    assert_eq!(failed["attempts"], 1, "Meta was not called again: {failed}");
    assert!(w.sim.sent_messages().is_empty(), "nothing sent");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.messages_used_today().await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the quota unit was not given back"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn another_tenant_cannot_block_the_contact(backend: Backend) {
    let w = world(backend).await;
    w.inbound(CUSTOMER, "hello").await;
    let contact = w.contact_id().await;
    let t =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let beta = t["id"].as_str().unwrap().to_owned();
    let (_, intruder) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": beta}),
        )
        .await;
    for path in [
        format!("/api/v1/tenants/{beta}/contacts/{contact}"),
        format!("/api/v1/tenants/{}/contacts/{contact}", w.tenant),
    ] {
        let (status, e) =
            w.s.send_json(&intruder, Method::PATCH, &path, json!({"blocked": true}))
                .await;
        assert!(status == 404 || status == 403, "{path}: {status} {e}");
        if path.contains(&beta) {
            assert_eq!(status, 404, "{path}: {e}");
        }
    }
    let shown = w.get(&format!("/contacts/{contact}")).await;
    assert_eq!(shown["blocked"], false, "unchanged: {shown}");
}
