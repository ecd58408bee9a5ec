//! Event subscriptions end to end on both backends: an endpoint receives a signed
//! `message.received` event (the HMAC checked here, independently), a failing attempt is
//! retried with the same event id, a delivery is replayed, an endpoint that keeps failing
//! is disabled; another tenant's ids are 404; the secret is shown once and never listed or
//! logged; bad input and non-public targets are refused with the field named.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

use hmac::{Hmac, Mac};
use poem::{http::StatusCode, EndpointExt};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::{error_of, graph_simulator, Backend, TestServer};

on_both_backends!(
    signed_events_are_delivered_retried_replayed_and_failing_endpoints_disabled,
    non_public_targets_are_refused_without_the_override,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const APP_SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    event_id: String,
    delivery_id: String,
    signature: String,
    body: String,
}

/// A local receiver: records every request, answers 500 to the first `fail` ones.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    fail: Arc<AtomicUsize>,
}

#[poem::handler]
fn receive(req: &poem::Request, body: String, rec: poem::web::Data<&Receiver>) -> StatusCode {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    rec.got.lock().unwrap().push(Got {
        event_id: header("Imix-Event-Id"),
        delivery_id: header("Imix-Delivery-Id"),
        signature: header("Imix-Signature"),
        body,
    });
    let failing = rec
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn start_receiver() -> (Receiver, String) {
    let rec = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let app = poem::Route::new()
        .at("/hook", poem::post(receive))
        .data(rec.clone());
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (rec, url)
}

/// The signature as an integrator computes it: HMAC-SHA256 over `id.t.body`.
fn expected_v1(secret: &str, event_id: &str, t: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{event_id}.{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn inbound(wamid: &str, body: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
            "contacts": [{"profile": {"name": "Aïcha"}, "wa_id": "22245000001"}],
            "messages": [{"from": "22245000001", "id": wamid, "timestamp": imix_core::now().timestamp().to_string(), "type": "text", "text": {"body": body}}],
        }
    }]}]})
    .to_string()
}

async fn post_inbound(s: &TestServer, body: &str) {
    let signature =
        imix_whatsapp::webhook::sign(&SecretString::from(APP_SECRET.to_owned()), body.as_bytes());
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

/// Waits (up to 30 s) for `f` to answer `Some`.
async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn signed_events_are_delivered_retried_replayed_and_failing_endpoints_disabled(
    backend: Backend,
) {
    let sim = graph_simulator(WABA, PHONE, APP_SECRET, TOKEN).await;
    let graph = sim.url();
    let s = TestServer::start_with(backend, move |vars| {
        vars.insert("IMIX_GRAPH_API_URL".into(), graph);
        vars.insert("IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS".into(), "true".into());
        vars.insert("IMIX_WEBHOOK_RETRY_BASE_MS".into(), "200".into());
        vars.insert("IMIX_WEBHOOK_MAX_ATTEMPTS".into(), "3".into());
    })
    .await;
    let platform = s.admin().await;
    let a = s.create_tenant(&platform, json!({"name": "Alpha"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = s.create_tenant(&platform, json!({"name": "Beta"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": a}),
        )
        .await;
    let (_, admin_b) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": b}),
        )
        .await;
    let (_, agent) = s
        .user_with_token(
            &platform,
            json!({"email": "agent@alpha.example", "first_name": "G", "last_name": "Agent", "role": "agent", "tenant_id": a}),
        )
        .await;
    s.add_whatsapp_account(
        &admin,
        &a,
        json!({"waba_id": WABA, "business_account_id": "1000", "phone_number_id": PHONE, "app_id": "3003",
               "display_phone_number": "+1 555-010-0001", "business_name": "Alpha Trading",
               "access_token": TOKEN, "app_secret": APP_SECRET}),
    )
    .await;
    let (rec, hook_url) = start_receiver().await;
    let endpoints = format!("/api/v1/tenants/{a}/webhook-endpoints");

    // Bad input: the field named, nothing stored.
    for (body, field) in [
        (
            json!({"url": hook_url, "events": ["message.nope"]}),
            "events",
        ),
        (json!({"url": hook_url, "events": []}), "events"),
        (
            json!({"url": "ftp://example.com/x", "events": ["message.received"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["message.received"]}),
            "url",
        ),
    ] {
        let resp = s
            .call(&admin, Method::POST, &endpoints)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (_, err) = error_of(resp, 422).await;
        assert_eq!(err["error"]["details"]["field"], field, "{err}");
    }
    // Agents do not manage integrations.
    let (status, _) = s
        .send_json(
            &agent,
            Method::POST,
            &endpoints,
            json!({"url": hook_url, "events": ["message.received"]}),
        )
        .await;
    assert_eq!(status, 403);
    let (_, list) = s.get_json(&admin, &endpoints).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");

    // Created: the secret once.
    let (status, created) = s
        .send_json(
            &admin,
            Method::POST,
            &endpoints,
            json!({"url": hook_url, "events": ["message.received"], "description": "CRM"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let one = format!("{endpoints}/{id}");
    for path in [endpoints.clone(), one.clone()] {
        let text = s
            .call(&admin, Method::GET, &path)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains(&secret),
            "the secret was shown again: {text}"
        );
        assert!(text.contains("\"secret_set\":true"), "{text}");
    }

    // Another tenant: every id of A is 404, through B's path or A's.
    for path in [
        format!("/api/v1/tenants/{b}/webhook-endpoints/{id}"),
        one.clone(),
        format!("{one}/deliveries"),
    ] {
        let resp = s.call(&admin_b, Method::GET, &path).send().await.unwrap();
        error_of(resp, 404).await;
    }
    let resp = s
        .call(&admin_b, Method::PATCH, &one)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    error_of(resp, 404).await;
    let resp = s.call(&admin_b, Method::DELETE, &one).send().await.unwrap();
    error_of(resp, 404).await;

    // An inbound message: its first attempt fails, the retry succeeds, both signed.
    rec.fail.store(1, Ordering::SeqCst);
    post_inbound(&s, &inbound("wamid.sub-1", "hello")).await;
    let got = wait_for("a retried delivery", async || {
        let got = rec.got.lock().unwrap().clone();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(
        got[0].event_id, got[1].event_id,
        "retries keep the event id"
    );
    assert_eq!(got[0].delivery_id, got[1].delivery_id);
    for g in &got[..2] {
        let (t, v1) = g
            .signature
            .split_once(',')
            .map(|(t, v)| (t.trim_start_matches("t="), v.trim_start_matches("v1=")))
            .unwrap();
        assert_eq!(v1, expected_v1(&secret, &g.event_id, t, &g.body), "{g:?}");
        let now = imix_core::now().timestamp();
        assert!((now - t.parse::<i64>().unwrap()).abs() < 60);
        assert!(imix_subscriptions::sign::verify(
            &secret,
            &g.event_id,
            &g.signature,
            g.body.as_bytes(),
            now,
            300
        )
        .is_ok());
        assert!(imix_subscriptions::sign::verify(
            "whsec_wrong",
            &g.event_id,
            &g.signature,
            g.body.as_bytes(),
            now,
            300
        )
        .is_err());
    }
    let event: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(event["type"], "message.received");
    assert_eq!(event["id"], got[1].event_id.as_str());
    assert_eq!(event["tenant_id"], a.as_str());
    assert!(event["data"]["message_id"].is_string(), "{event}");

    // The delivery log: one delivery, succeeded at the second attempt.
    let deliveries = format!("{one}/deliveries");
    let delivery = wait_for("the delivery recorded as succeeded", async || {
        let (_, log) = s.get_json(&admin, &deliveries).await;
        let d = log["items"].as_array()?.first()?.clone();
        (d["state"] == "succeeded").then_some(d)
    })
    .await;
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    assert_eq!(delivery["last_status"], 200);
    assert_eq!(delivery["event_id"], got[0].event_id.as_str());
    let delivery_id = delivery["id"].as_str().unwrap().to_owned();

    // Replayed: the same event, signed afresh, as a new delivery.
    let replay = format!("{deliveries}/{delivery_id}/replay");
    let resp = s
        .call(&admin_b, Method::POST, &replay)
        .send()
        .await
        .unwrap();
    error_of(resp, 404).await;
    let (status, replayed) = s.send_json(&admin, Method::POST, &replay, json!({})).await;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["replay_of"], delivery_id.as_str());
    let got = wait_for("the replay", async || {
        let got = rec.got.lock().unwrap().clone();
        (got.len() >= 3).then_some(got)
    })
    .await;
    assert_eq!(got[2].event_id, got[0].event_id);
    assert_ne!(got[2].delivery_id, got[0].delivery_id);
    let (t, v1) = got[2].signature.split_once(',').unwrap();
    assert_eq!(
        v1.trim_start_matches("v1="),
        expected_v1(
            &secret,
            &got[2].event_id,
            t.trim_start_matches("t="),
            &got[2].body
        )
    );

    // Edited: an unknown event name changes nothing; a valid edit applies.
    let resp = s
        .call(&admin, Method::PATCH, &one)
        .json(&json!({"events": ["message.received", "bogus"]}))
        .send()
        .await
        .unwrap();
    let (_, err) = error_of(resp, 422).await;
    assert_eq!(err["error"]["details"]["field"], "events");
    let (status, edited) = s
        .send_json(
            &admin,
            Method::PATCH,
            &one,
            json!({"events": ["message.received", "message.status"]}),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        edited["events"],
        json!(["message.received", "message.status"])
    );

    // An endpoint that keeps failing: given up after 3 attempts, then disabled.
    rec.fail.store(usize::MAX, Ordering::SeqCst);
    post_inbound(&s, &inbound("wamid.sub-2", "again")).await;
    let disabled = wait_for("the endpoint disabled", async || {
        let (_, e) = s.get_json(&admin, &one).await;
        (e["status"] == "disabled").then_some(e)
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 attempts"),
        "{disabled}"
    );
    let (_, log) = s.get_json(&admin, &deliveries).await;
    let failed = &log["items"][0];
    assert_eq!(failed["state"], "failed", "{log}");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["last_status"], 500);
    let (_, audit) = s.get_json(&admin, "/api/v1/audit-log").await;
    let audited = audit.to_string();
    assert!(audited.contains("webhook_endpoint.disabled"), "{audited}");

    // A disabled endpoint gets nothing; it can be turned on again.
    let before = rec.got.lock().unwrap().len();
    post_inbound(&s, &inbound("wamid.sub-3", "quiet")).await;
    // Once ingest stored the third message, its event has been handled.
    let (_, conversations) = s
        .get_json(&admin, &format!("/api/v1/tenants/{a}/conversations"))
        .await;
    let conversation = conversations["items"][0]["id"].as_str().unwrap().to_owned();
    wait_for("the third message stored", async || {
        let (_, messages) = s
            .get_json(
                &admin,
                &format!("/api/v1/tenants/{a}/conversations/{conversation}/messages"),
            )
            .await;
        (messages["items"].as_array()?.len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rec.got.lock().unwrap().len(), before, "sent while disabled");
    let (status, on) = s
        .send_json(&admin, Method::PATCH, &one, json!({"status": "active"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(on["status"], "active");
    assert!(on["disabled_reason"].is_null(), "{on}");

    // Deleted.
    let resp = s.call(&admin, Method::DELETE, &one).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = s.call(&admin, Method::GET, &one).send().await.unwrap();
    error_of(resp, 404).await;

    // The secret never reached the logs.
    let logs = std::fs::read_dir(s.dir.path().join("logs"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect::<String>()
        })
        .unwrap_or_default();
    assert!(!logs.contains(&secret), "the secret was logged");
    s.stop().await;
}

async fn non_public_targets_are_refused_without_the_override(backend: Backend) {
    let s = TestServer::start(backend).await;
    let platform = s.admin().await;
    let a = s.create_tenant(&platform, json!({"name": "Alpha"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoints = format!("/api/v1/tenants/{a}/webhook-endpoints");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
    ] {
        let resp = s
            .call(&platform, Method::POST, &endpoints)
            .json(&json!({"url": url, "events": ["message.received"]}))
            .send()
            .await
            .unwrap();
        let (code, err) = error_of(resp, 422).await;
        assert_eq!(
            err["error"]["details"]["field"], "url",
            "{url}: {code} {err}"
        );
    }
    let (_, list) = s.get_json(&platform, &endpoints).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    s.stop().await;
}
