//! Inbound media end to end, on both stores, against the Graph API simulator: a signed
//! image webhook naming a media id the simulator holds becomes a stored file served with
//! its content type; a first download that fails is retried until the media arrives;
//! bytes that do not match the webhook's SHA-256 are not stored (the failure is shown and
//! an operator's retry runs the job again); another tenant gets 404.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use base64::Engine;
use common::{graph_simulator, Backend, TestServer};
use imix_whatsapp::simulator::{Fault, Simulator};
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    an_inbound_image_is_fetched_stored_and_served_to_its_tenant_only,
    a_failed_first_download_is_retried_and_the_media_arrives,
    media_not_matching_its_sha256_is_not_stored_and_an_operator_can_retry_it,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 a tiny picture \xff\xd9";

struct World {
    sim: Simulator,
    s: TestServer,
    platform: String,
    tenant: String,
    admin: String,
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
        sim,
        s,
        platform,
        tenant,
        admin,
    }
}

/// Meta's webhook `sha256`: the digest in base64.
fn webhook_sha256(data: &[u8]) -> String {
    let hex = imix_messaging::media::sha256_hex(data);
    base64::engine::general_purpose::STANDARD.encode(hex::decode(hex).unwrap())
}

/// Posts a signed webhook with one inbound image message naming `media_id`; returns the
/// stored message's id once ingest has processed it.
async fn send_image(w: &World, wamid: &str, media_id: &str, sha256: &str) -> String {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
            "contacts": [{"profile": {"name": "Aïcha"}, "wa_id": "22245000001"}],
            "messages": [{
                "from": "22245000001", "id": wamid, "timestamp": "1760000000", "type": "image",
                "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": sha256, "caption": "the invoice"}
            }]
        }
    }]}]})
    .to_string();
    let signature =
        imix_whatsapp::webhook::sign(&SecretString::from(SECRET.to_owned()), body.as_bytes());
    let status =
        w.s.client
            .post(w.s.url("/webhooks/whatsapp"))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
    assert_eq!(status, 200);
    let message = until("the message to be stored", || async {
        let (status, list) =
            w.s.get_json(
                &w.admin,
                &format!("/api/v1/tenants/{}/conversations", w.tenant),
            )
            .await;
        assert_eq!(status, 200, "{list}");
        let conversation = list["items"].as_array()?.first()?["id"]
            .as_str()?
            .to_owned();
        let (_, messages) =
            w.s.get_json(
                &w.admin,
                &format!(
                    "/api/v1/tenants/{}/conversations/{conversation}/messages",
                    w.tenant
                ),
            )
            .await;
        messages["items"]
            .as_array()?
            .iter()
            .find(|m| m["wamid"] == wamid)
            .map(|m| m["id"].as_str().unwrap().to_owned())
    })
    .await;
    // On MongoDB (no transactions) the media job is written just after the message.
    until("the message's media job", || async {
        let (status, _) =
            w.s.get_json(
                &w.admin,
                &format!("{}/status", media_path(&w.tenant, &message)),
            )
            .await;
        (status == 200).then_some(())
    })
    .await;
    message
}

fn media_path(tenant: &str, message: &str) -> String {
    format!("/api/v1/tenants/{tenant}/messages/{message}/media")
}

async fn get_media(w: &World, token: &str, tenant: &str, message: &str) -> reqwest::Response {
    w.s.call(token, reqwest::Method::GET, &media_path(tenant, message))
        .send()
        .await
        .unwrap()
}

async fn status(w: &World, message: &str) -> Value {
    let (code, body) =
        w.s.get_json(
            &w.admin,
            &format!("{}/status", media_path(&w.tenant, message)),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Polls `f` until it returns `Some` (media is fetched asynchronously, retries a few
/// seconds apart).
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn an_inbound_image_is_fetched_stored_and_served_to_its_tenant_only(backend: Backend) {
    let w = world(backend).await;
    let media_id = w
        .sim
        .add_media(WABA, "image/jpeg", bytes::Bytes::from_static(JPEG));
    let message = send_image(&w, "wamid.IMG1", &media_id, &webhook_sha256(JPEG)).await;
    let resp = until("the media to be stored", || async {
        let resp = get_media(&w, &w.admin, &w.tenant, &message).await;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), JPEG);
    let s = status(&w, &message).await;
    assert_eq!(s["state"], "available", "{s}");
    assert_eq!(s["media_id"], media_id.as_str());
    assert_eq!(s["size"], JPEG.len());
    assert_eq!(s["attempts"], 1);
    // The media was looked up and downloaded with the account's token.
    let media_calls: Vec<_> = w
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&media_id))
        .collect();
    assert!(!media_calls.is_empty());

    // Another tenant: neither through its own path nor through this tenant's.
    let other =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let other_id = other["id"].as_str().unwrap();
    let (_, other_admin) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": other_id}),
        )
        .await;
    let foreign = get_media(&w, &other_admin, other_id, &message).await;
    assert_eq!(foreign.status(), 404);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let cross = get_media(&w, &other_admin, &w.tenant, &message).await;
    assert_eq!(cross.status(), 404);
    let retry =
        w.s.call(
            &other_admin,
            reqwest::Method::POST,
            &format!("{}/retry", media_path(other_id, &message)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 404);

    // A message without media says so.
    let unknown = get_media(
        &w,
        &w.admin,
        &w.tenant,
        &imix_messaging::MessageId::new().to_string(),
    )
    .await;
    assert_eq!(unknown.status(), 404);
}

async fn a_failed_first_download_is_retried_and_the_media_arrives(backend: Backend) {
    let w = world(backend).await;
    let media_id = w
        .sim
        .add_media(WABA, "image/jpeg", bytes::Bytes::from_static(JPEG));
    // The next Graph API call (the first media lookup) fails as a proxy would.
    w.sim.inject_fault(Fault::status(502), 1);
    let message = send_image(&w, "wamid.IMG2", &media_id, &webhook_sha256(JPEG)).await;
    let failed_once = until("the first attempt to fail", || async {
        let s = status(&w, &message).await;
        (s["state"] == "pending" && s["last_error"].is_string()).then_some(s)
    })
    .await;
    assert!(
        failed_once["last_error"].as_str().unwrap().contains("502"),
        "{failed_once}"
    );
    let pending = get_media(&w, &w.admin, &w.tenant, &message).await;
    assert_eq!(pending.status(), 404);
    let body: Value = pending.json().await.unwrap();
    assert_eq!(body["error"]["code"], "media_not_available", "{body}");
    assert_eq!(body["error"]["details"]["state"], "pending", "{body}");

    let resp = until("the retried media to be stored", || async {
        let resp = get_media(&w, &w.admin, &w.tenant, &message).await;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), JPEG);
    let s = status(&w, &message).await;
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("available"), Some(2)),
        "{s}"
    );
    assert_eq!(s["last_error"], Value::Null);
}

async fn media_not_matching_its_sha256_is_not_stored_and_an_operator_can_retry_it(
    backend: Backend,
) {
    let w = world(backend).await;
    let media_id = w
        .sim
        .add_media(WABA, "image/jpeg", bytes::Bytes::from_static(JPEG));
    let message = send_image(
        &w,
        "wamid.IMG3",
        &media_id,
        &webhook_sha256(b"what the customer sent"),
    )
    .await;
    let failed = until("the job to fail", || async {
        let s = status(&w, &message).await;
        (s["state"] == "failed").then_some(s)
    })
    .await;
    assert!(
        failed["last_error"].as_str().unwrap().contains("SHA-256"),
        "{failed}"
    );
    assert_eq!(failed["size"], Value::Null);
    let resp = get_media(&w, &w.admin, &w.tenant, &message).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "media_not_available", "{body}");
    assert_eq!(body["error"]["details"]["state"], "failed", "{body}");
    assert!(body["error"]["details"]["last_error"]
        .as_str()
        .unwrap()
        .contains("SHA-256"));

    // An operator retries: the job runs again (and fails again: the bytes did not change).
    let lookups = || {
        w.sim
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with(&media_id))
            .count()
    };
    let before = lookups();
    let (code, retried) =
        w.s.send_json(
            &w.admin,
            reqwest::Method::POST,
            &format!("{}/retry", media_path(&w.tenant, &message)),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{retried}");
    assert_eq!(retried["state"], "pending", "{retried}");
    assert_eq!(retried["attempts"], 0, "{retried}");
    until("the retried job to fail again", || async {
        let s = status(&w, &message).await;
        (s["state"] == "failed" && lookups() > before).then_some(())
    })
    .await;
    assert_eq!(
        get_media(&w, &w.admin, &w.tenant, &message).await.status(),
        404
    );
}
