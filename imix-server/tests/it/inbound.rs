//! Inbound messaging end to end, on both stores: Meta's verification handshake, signed
//! deliveries stored before the 200 and processed into contacts, conversations and
//! messages; redeliveries change nothing; forged deliveries are refused and store nothing;
//! statuses in any order end at the furthest state; deliveries left unprocessed by a stop
//! are processed at the next start.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{graph_simulator, Backend, TestServer};
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    the_handshake_echoes_the_challenge_only_for_the_right_token,
    a_signed_batch_becomes_contacts_conversations_and_messages,
    forged_and_foreign_deliveries_are_refused_and_store_nothing,
    statuses_in_any_order_end_at_the_furthest_state,
    agents_see_their_own_and_unassigned_conversations_and_assignment_is_checked,
    template_statuses_and_account_updates_are_recorded,
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
    account: Value,
}

async fn world(backend: Backend) -> World {
    let sim = graph_simulator(WABA, PHONE, SECRET, TOKEN).await;
    let s = TestServer::start_with_graph(backend, &sim.url()).await;
    let platform = s.admin().await;
    let t = s.create_tenant(&platform, json!({"name": "Alpha"})).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
        )
        .await;
    let account = s
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
    World {
        _sim: sim,
        s,
        platform,
        tenant,
        admin,
        account,
    }
}

fn change(phone_number_id: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] =
        json!({"display_phone_number": "15550100001", "phone_number_id": phone_number_id});
    json!({"field": "messages", "value": value})
}

fn payload(changes: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": changes}]})
}

fn text_message(wamid: &str, from: &str, ts: i64, body: &str) -> Value {
    json!({"from": from, "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": {"body": body}})
}

async fn post(s: &TestServer, path: &str, body: &[u8], secret: &str) -> u16 {
    let signature = imix_whatsapp::webhook::sign(&SecretString::from(secret.to_owned()), body);
    s.client
        .post(s.url(path))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn conversations(w: &World) -> Vec<Value> {
    let (status, list) =
        w.s.get_json(
            &w.admin,
            &format!("/api/v1/tenants/{}/conversations", w.tenant),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().clone()
}

async fn messages(w: &World, conversation: &str) -> Vec<Value> {
    let (status, list) =
        w.s.get_json(
            &w.admin,
            &format!(
                "/api/v1/tenants/{}/conversations/{conversation}/messages",
                w.tenant
            ),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().unwrap().clone()
}

/// Polls `f` until it returns `Some` (the worker processes deliveries asynchronously).
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..250 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn the_handshake_echoes_the_challenge_only_for_the_right_token(backend: Backend) {
    let w = world(backend).await;
    let id = w.account["id"].as_str().unwrap();
    let token = w.account["webhook_verify_token"].as_str().unwrap();
    let path = |t: &str| {
        format!("/webhooks/whatsapp/{id}?hub.mode=subscribe&hub.verify_token={t}&hub.challenge=1158201444")
    };
    let resp = w.s.get(&path(token)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(resp.text().await.unwrap(), "1158201444");
    assert_eq!(w.s.get(&path("wrong-token")).await.status(), 403);
    let other = format!(
        "/webhooks/whatsapp/{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1",
        imix_core::id::WhatsAppAccountId::new()
    );
    assert_eq!(w.s.get(&other).await.status(), 403, "unknown account");
    // The app-level URL has no token configured here: refused.
    let app =
        format!("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1");
    assert_eq!(w.s.get(&app).await.status(), 403);
}

async fn a_signed_batch_becomes_contacts_conversations_and_messages(backend: Backend) {
    let w = world(backend).await;
    let base = 1_760_000_000;
    // Two changes, several messages of several types, two customers.
    let body = payload(vec![
        change(
            PHONE,
            json!({
                "contacts": [{"profile": {"name": "Aïcha"}, "wa_id": "22245000001"}],
                "messages": [
                    text_message("wamid.A1", "22245000001", base, "Bonjour"),
                    {"from": "22245000001", "id": "wamid.A2", "timestamp": (base + 5).to_string(), "type": "location",
                     "location": {"latitude": 18.08, "longitude": -15.97, "name": "Nouakchott"}},
                    {"from": "22245000001", "id": "wamid.A3", "timestamp": (base + 6).to_string(), "type": "reaction",
                     "reaction": {"message_id": "wamid.A1", "emoji": "👍"}},
                ]
            }),
        ),
        change(
            PHONE,
            json!({
                "contacts": [{"profile": {"name": "Omar"}, "wa_id": "22245000002"}],
                "messages": [text_message("wamid.B1", "22245000002", base + 1, "STOP")]
            }),
        ),
    ])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", body.as_bytes(), SECRET).await,
        200
    );

    let list = until("two conversations", || async {
        let list = conversations(&w).await;
        let unread: u64 = list.iter().map(|c| c["unread"].as_u64().unwrap()).sum();
        (list.len() == 2 && unread == 4).then_some(list)
    })
    .await;
    let aicha = list
        .iter()
        .find(|c| c["unread"] == 3)
        .expect("Aïcha's conversation");
    assert_eq!(aicha["status"], "open");
    assert_eq!(aicha["account_id"], w.account["id"]);
    let conversation = aicha["id"].as_str().unwrap();
    let msgs = messages(&w, conversation).await;
    let kinds: Vec<&str> = msgs.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "location", "reaction"]);
    assert_eq!(msgs[0]["content"]["text"]["body"], "Bonjour");
    assert_eq!(msgs[0]["state"], "received");
    assert_eq!(
        msgs[0]["timestamp"], "2025-10-09T08:53:20+00:00",
        "Meta's timestamp"
    );
    assert_eq!(msgs[2]["content"]["reaction"]["message_id"], "wamid.A1");
    assert_eq!(
        aicha["window_expires_at"], "2025-10-10T08:53:26+00:00",
        "24 h after the customer's last message"
    );

    // Contacts were created with their profile names; "STOP" opted Omar out (recorded
    // just after his message, so wait for it).
    let contacts = until("Omar's opt-out", || async {
        let (_, contacts) =
            w.s.get_json(&w.admin, &format!("/api/v1/tenants/{}/contacts", w.tenant))
                .await;
        let list = contacts["items"].as_array()?.clone();
        list.iter()
            .any(|c| c["wa_id"] == "22245000002" && c["opted_out"] == true)
            .then_some(list)
    })
    .await;
    assert_eq!(contacts.len(), 2);
    let omar = contacts
        .iter()
        .find(|c| c["wa_id"] == "22245000002")
        .unwrap();
    assert_eq!(omar["profile_name"], "Omar");
    assert_eq!(omar["opted_out"], true);
    let aicha_contact = contacts
        .iter()
        .find(|c| c["wa_id"] == "22245000001")
        .unwrap();
    assert_eq!(aicha_contact["opted_out"], false);

    // Meta redelivers the same batch (and a subset of it): nothing changes.
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", body.as_bytes(), SECRET).await,
        200
    );
    let again = payload(vec![change(
        PHONE,
        json!({"messages": [text_message("wamid.A1", "22245000001", base, "Bonjour")]}),
    )])
    .to_string();
    let id = w.account["id"].as_str().unwrap();
    assert_eq!(
        post(
            &w.s,
            &format!("/webhooks/whatsapp/{id}"),
            again.as_bytes(),
            SECRET
        )
        .await,
        200
    );
    // A new message after the redeliveries proves they were processed (in order) first.
    let marker = payload(vec![change(
        PHONE,
        json!({"messages": [text_message("wamid.A4", "22245000001", base + 60, "Merci")]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", marker.as_bytes(), SECRET).await,
        200
    );
    // The marker's conversation update follows its message: wait for both.
    let list = until("the marker counted", || async {
        let list = conversations(&w).await;
        let unread: u64 = list.iter().map(|c| c["unread"].as_u64().unwrap()).sum();
        (messages(&w, conversation).await.len() == 4 && unread >= 5).then_some(list)
    })
    .await;
    // Give any wrongly re-processed redelivery time to show up.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let list = {
        let again = conversations(&w).await;
        assert_eq!(again.len(), list.len());
        again
    };
    assert_eq!(list.len(), 2);
    let unread: u64 = list.iter().map(|c| c["unread"].as_u64().unwrap()).sum();
    assert_eq!(
        unread, 5,
        "only the marker counted; redeliveries changed nothing"
    );

    // Another tenant sees none of it.
    let platform = &w.platform;
    let other = w.s.create_tenant(platform, json!({"name": "Beta"})).await;
    let (_, beta_admin) = w
        .s
        .user_with_token(
            platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": other["id"]}),
        )
        .await;
    let (status, _) =
        w.s.get_json(
            &beta_admin,
            &format!(
                "/api/v1/tenants/{}/conversations/{conversation}/messages",
                w.tenant
            ),
        )
        .await;
    assert_eq!(status, 404);
    let (status, list) =
        w.s.get_json(
            &beta_admin,
            &format!(
                "/api/v1/tenants/{}/conversations",
                other["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 0));
}

async fn forged_and_foreign_deliveries_are_refused_and_store_nothing(backend: Backend) {
    let w = world(backend).await;
    let body = payload(vec![change(
        PHONE,
        json!({"messages": [text_message("wamid.F1", "22245000009", 1_760_000_000, "forged")]}),
    )])
    .to_string();
    // Signed with another secret; unsigned; for a number no account has.
    assert_eq!(
        post(
            &w.s,
            "/webhooks/whatsapp",
            body.as_bytes(),
            "not-the-secret"
        )
        .await,
        401
    );
    let unsigned =
        w.s.client
            .post(w.s.url("/webhooks/whatsapp"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
    assert_eq!(unsigned.status(), 401);
    let stranger = payload(vec![change(
        "9999",
        json!({"messages": [text_message("wamid.F2", "22245000009", 1_760_000_000, "who")]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", stranger.as_bytes(), SECRET).await,
        401
    );
    // Not JSON at all, and over 1 MiB.
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", b"garbage", SECRET).await,
        401
    );
    let huge = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(post(&w.s, "/webhooks/whatsapp", &huge, SECRET).await, 413);
    // Nested far deeper than anything Meta sends (a document the store could not hold):
    // refused before it is stored.
    let mut deep = json!(1);
    for _ in 0..110 {
        deep = json!({ "a": deep });
    }
    let mut nested = text_message("wamid.D1", "22245000009", 1_760_000_000, "deep");
    nested["x"] = deep;
    let nested = payload(vec![change(PHONE, json!({"messages": [nested]}))]).to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", nested.as_bytes(), SECRET).await,
        401
    );
    // To an unknown account's URL.
    let unknown = format!(
        "/webhooks/whatsapp/{}",
        imix_core::id::WhatsAppAccountId::new()
    );
    assert_eq!(post(&w.s, &unknown, body.as_bytes(), SECRET).await, 404);

    // A mixed batch: the verified entry is filed, the stranger's is not.
    let mixed = payload(vec![
        change(
            PHONE,
            json!({"messages": [text_message("wamid.M1", "22245000003", 1_760_000_000, "real")]}),
        ),
        change(
            "9999",
            json!({"messages": [text_message("wamid.M2", "22245000004", 1_760_000_000, "stray")]}),
        ),
    ])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", mixed.as_bytes(), SECRET).await,
        200
    );
    // The conversation is written just before its message (MongoDB has no transactions).
    let list = until("the verified message", || async {
        let list = conversations(&w).await;
        let first = list.first()?["id"].as_str()?.to_owned();
        (!messages(&w, &first).await.is_empty()).then_some(list)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let list_after = conversations(&w).await;
    assert_eq!(list.len(), 1);
    assert_eq!(
        list_after.len(),
        1,
        "nothing from the forged or foreign deliveries"
    );
    let msgs = messages(&w, list[0]["id"].as_str().unwrap()).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["wamid"], "wamid.M1");
}

async fn statuses_in_any_order_end_at_the_furthest_state(backend: Backend) {
    let w = world(backend).await;
    let ts = 1_760_000_000;
    let status = |wamid: &str, s: &str, at: i64| json!({"id": wamid, "status": s, "timestamp": at.to_string(), "recipient_id": "22245000001"});
    // Statuses first (their message unknown yet: held), out of order, one duplicated.
    let early = payload(vec![change(
        PHONE,
        json!({"statuses": [status("wamid.S1", "read", ts + 30), status("wamid.S1", "sent", ts + 10)]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", early.as_bytes(), SECRET).await,
        200
    );
    // Then the message they belong to, then a late "delivered" and the "read" again.
    let message = payload(vec![change(
        PHONE,
        json!({"messages": [text_message("wamid.S1", "22245000001", ts, "hi")]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", message.as_bytes(), SECRET).await,
        200
    );
    let late = payload(vec![change(
        PHONE,
        json!({"statuses": [status("wamid.S1", "delivered", ts + 20), status("wamid.S1", "read", ts + 30)]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", late.as_bytes(), SECRET).await,
        200
    );
    let msgs = until("three distinct statuses", || async {
        let list = conversations(&w).await;
        let c = list.first()?;
        let msgs = messages(&w, c["id"].as_str().unwrap()).await;
        (msgs.first()?["statuses"].as_array()?.len() == 3).then_some(msgs)
    })
    .await;
    let m = &msgs[0];
    let states: Vec<&str> = m["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.len(),
        3,
        "the repeated 'read' is recorded once: {states:?}"
    );
    assert!(states.contains(&"read") && states.contains(&"sent") && states.contains(&"delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_stored_but_not_processed_is_processed_at_the_next_start() {
    let w = world(Backend::Sqlite).await;
    let tenant = w.tenant.clone();
    let admin_email = "owner@alpha.example";
    let dir = w.s.stop().await;
    // As a crash between the 200 and processing leaves it: stored, due, unprocessed.
    let vars = common::base_vars(dir.path(), Backend::Sqlite);
    let config = imix_server::config::Config::from_vars(vars.clone()).unwrap();
    let storage = imix_server::storage::Storage::open(&config).await.unwrap();
    let account = storage
        .whatsapp
        .accounts
        .find_by_phone_number_id(PHONE)
        .await
        .unwrap()
        .unwrap();
    let body = payload(vec![change(
        PHONE,
        json!({"messages": [text_message("wamid.R1", "22245000007", 1_760_000_000, "still here")]}),
    )])
    .to_string();
    storage
        .messaging
        .deliveries
        .insert(&imix_messaging::Delivery::new(body, vec![account.id]))
        .await
        .unwrap();
    drop(storage);

    let s = TestServer::start_in(dir, vars).await;
    let token = s.sign_in(admin_email, "user-passphrase-22").await;
    until("the resumed delivery", || async {
        let (_, list) = s
            .get_json(&token, &format!("/api/v1/tenants/{tenant}/conversations"))
            .await;
        (list["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    s.stop().await;
}

async fn patch(w: &World, token: &str, conversation: &str, body: Value) -> (u16, Value) {
    w.s.send_json(
        token,
        reqwest::Method::PATCH,
        &format!("/api/v1/tenants/{}/conversations/{conversation}", w.tenant),
        body,
    )
    .await
}

async fn agents_see_their_own_and_unassigned_conversations_and_assignment_is_checked(
    backend: Backend,
) {
    let w = world(backend).await;
    let ts = 1_760_000_000;
    let body = payload(vec![change(
        PHONE,
        json!({"messages": [
            text_message("wamid.C1", "22245000011", ts, "first customer"),
            text_message("wamid.C2", "22245000012", ts + 1, "second customer"),
        ]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", body.as_bytes(), SECRET).await,
        200
    );
    let list = until("two conversations", || async {
        let list = conversations(&w).await;
        (list.len() == 2).then_some(list)
    })
    .await;
    let (c1, c2) = (
        list[0]["id"].as_str().unwrap().to_owned(),
        list[1]["id"].as_str().unwrap().to_owned(),
    );
    let agent = |email: &str| json!({"email": email, "first_name": "Ag", "last_name": "Ent", "role": "agent", "tenant_id": w.tenant});
    let (agent1, agent1_token) =
        w.s.user_with_token(&w.platform, agent("one@alpha.example"))
            .await;
    let (_, agent2_token) =
        w.s.user_with_token(&w.platform, agent("two@alpha.example"))
            .await;
    let agent1_id = agent1["id"].as_str().unwrap();

    // Only a user who may assign assigns, and only to an active user of the tenant.
    let (status, _) = patch(&w, &agent1_token, &c1, json!({"assignee": agent1_id})).await;
    assert_eq!(status, 403, "agents do not assign");
    let (status, err) = patch(
        &w,
        &w.admin,
        &c1,
        json!({"assignee": imix_core::id::UserId::new().to_string()}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["details"]["field"].as_str()),
        (422, Some("assignee")),
        "{err}"
    );
    let (status, c) = patch(&w, &w.admin, &c1, json!({"assignee": agent1_id})).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["assignee"], agent1_id);

    // Agent two sees only the unassigned conversation; agent one sees both.
    let ids = |token: String| {
        let w = &w;
        async move {
            let (status, list) =
                w.s.get_json(
                    &token,
                    &format!("/api/v1/tenants/{}/conversations", w.tenant),
                )
                .await;
            assert_eq!(status, 200, "{list}");
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(agent2_token.clone()).await, vec![c2.clone()]);
    assert_eq!(
        ids(agent1_token.clone()).await,
        vec![c1.clone(), c2.clone()]
    );
    for path in [
        format!("/api/v1/tenants/{}/conversations/{c1}", w.tenant),
        format!("/api/v1/tenants/{}/conversations/{c1}/messages", w.tenant),
    ] {
        let (status, _) = w.s.get_json(&agent2_token, &path).await;
        assert_eq!(status, 404, "{path}: another agent's conversation");
    }
    let (status, _) = patch(&w, &agent2_token, &c1, json!({"status": "resolved"})).await;
    assert_eq!(status, 404);
    // The filters: mine, unassigned, unread.
    let (_, mine) =
        w.s.get_json(
            &w.admin,
            &format!(
                "/api/v1/tenants/{}/conversations?assignee={agent1_id}",
                w.tenant
            ),
        )
        .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let (_, none) =
        w.s.get_json(
            &w.admin,
            &format!("/api/v1/tenants/{}/conversations?assignee=none", w.tenant),
        )
        .await;
    assert_eq!(none["items"][0]["id"], c2.as_str());

    // The assignee resolves it and reads it; a new message reopens it.
    let (status, c) = patch(
        &w,
        &agent1_token,
        &c1,
        json!({"status": "resolved", "mark_read": true}),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["status"].as_str(), c["unread"].as_u64()),
        (Some("resolved"), Some(0))
    );
    let (status, _) = patch(
        &w,
        &agent1_token,
        &c1,
        json!({"status": "open", "version": 1}),
    )
    .await;
    assert_eq!(status, 409, "a stale version");
    let (_, unread) =
        w.s.get_json(
            &w.admin,
            &format!("/api/v1/tenants/{}/conversations?unread=true", w.tenant),
        )
        .await;
    assert_eq!(
        unread["items"].as_array().unwrap().len(),
        1,
        "only c2 is unread"
    );
    let again = payload(vec![change(
        PHONE,
        json!({"messages": [text_message("wamid.C3", "22245000011", ts + 99, "me again")]}),
    )])
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", again.as_bytes(), SECRET).await,
        200
    );
    until("the conversation reopened", || async {
        let (_, c) =
            w.s.get_json(
                &w.admin,
                &format!("/api/v1/tenants/{}/conversations/{c1}", w.tenant),
            )
            .await;
        (c["status"] == "open" && c["unread"] == 1).then_some(())
    })
    .await;
}

async fn template_statuses_and_account_updates_are_recorded(backend: Backend) {
    let w = world(backend).await;
    let account_id = w.account["id"].as_str().unwrap().to_owned();
    let (status, template) = w
        .s
        .send_json(
            &w.admin,
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{}/templates", w.tenant),
            json!({"account_id": account_id, "name": "order_update", "language": "en_US", "category": "UTILITY",
                   "components": [{"type": "BODY", "text": "Hello {{1}}", "example": {"body_text": [["Ada"]]}}]}),
        )
        .await;
    assert_eq!(status, 201, "{template}");
    assert_eq!(template["status"], "PENDING");
    let meta_id: i64 = template["meta_id"].as_str().unwrap().parse().unwrap();
    // Changes about the WABA name no phone number: filed by the entry's WABA id.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [
        {"field": "message_template_status_update", "value": {"event": "REJECTED", "message_template_id": meta_id,
            "message_template_name": "order_update", "message_template_language": "en_US", "reason": "INVALID_FORMAT"}},
        {"field": "phone_number_quality_update", "value": {"display_phone_number": "15550100001", "event": "FLAGGED", "current_limit": "TIER_1K"}},
        {"field": "account_update", "value": {"phone_number": "15550100001", "event": "VERIFIED_ACCOUNT"}}
    ]}]})
    .to_string();
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", body.as_bytes(), SECRET).await,
        200
    );
    // The same changes signed by another app: refused.
    assert_eq!(
        post(&w.s, "/webhooks/whatsapp", body.as_bytes(), "other-secret").await,
        401
    );
    let template_id = template["id"].as_str().unwrap().to_owned();
    until("the template's new status", || async {
        let (_, list) =
            w.s.get_json(&w.admin, &format!("/api/v1/tenants/{}/templates", w.tenant))
                .await;
        let t = list["items"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == template_id.as_str())?
            .clone();
        (t["status"] == "REJECTED").then_some(t)
    })
    .await;
    let account = until("the account's health", || async {
        let (_, a) =
            w.s.get_json(&w.admin, &format!("/api/v1/whatsapp-accounts/{account_id}"))
                .await;
        (a["quality_rating"] == "FLAGGED" && a["last_account_update"].is_object()).then_some(a)
    })
    .await;
    assert_eq!(account["messaging_limit"], "TIER_1K");
    assert_eq!(account["last_account_update"]["event"], "VERIFIED_ACCOUNT");
}
