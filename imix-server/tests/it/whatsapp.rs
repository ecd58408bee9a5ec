//! WhatsApp accounts and templates through the HTTP API, on both stores, against the Graph
//! API simulator started in-process (`IMIX_GRAPH_API_URL` points at it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{error_of, graph_simulator, Backend, TestServer};
use imix_whatsapp::{
    model::{NewTemplate, TemplateDefinitionComponent},
    simulator::{Fault, SimBusiness, SimPhoneNumber, Simulator},
    AccessToken, GraphApiClient, GraphApiConfig, WhatsAppClient,
};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    accounts_add_verify_edit_delete_never_reveal_secrets,
    duplicate_phone_number_id_is_409,
    rejected_or_expired_tokens_are_422_with_metas_message,
    verification_code_walk,
    templates_create_list_sync_and_delete,
    max_templates_is_exact_under_concurrency,
    tenant_b_gets_404_on_tenant_a_accounts_and_templates,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";

/// Strings that must never appear in any response body.
const NEVER: &[&str] = &[TOKEN, SECRET, "EAAG-rotated-token-beta-9876543210-QrS4"];

/// A simulator, a server pointed at it, the platform admin's token and a tenant with its
/// own admin: `(sim, server, platform admin, tenant id, tenant admin)`.
struct World {
    sim: Simulator,
    s: TestServer,
    platform: String,
    tenant: String,
    admin: String,
}

async fn world(backend: Backend, limits: Value) -> World {
    let sim = graph_simulator(WABA, PHONE, SECRET, TOKEN).await;
    let s = TestServer::start_with_graph(backend, &sim.url()).await;
    let platform = s.admin().await;
    let t = s
        .create_tenant(&platform, json!({"name": "Alpha", "limits": limits}))
        .await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
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

fn account_body(phone: &str) -> Value {
    json!({
        "waba_id": WABA,
        "business_account_id": "1000",
        "phone_number_id": phone,
        "app_id": "3003",
        "display_phone_number": "+1 555-010-0001",
        "business_name": "Alpha Trading",
        "access_token": TOKEN,
        "app_secret": SECRET,
    })
}

/// Sends a request and returns `(status, body)`, checking that no secret is in the body.
async fn send(
    s: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.call(token, method.clone(), path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    for secret in NEVER {
        assert!(
            !text.contains(secret),
            "{method} {path} revealed a secret: {text}"
        );
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn add_account(w: &World, phone: &str) -> Value {
    let (status, a) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/tenants/{}/whatsapp-accounts", w.tenant),
        Some(account_body(phone)),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    a
}

fn body_component(text: &str) -> Value {
    json!({"type": "BODY", "text": text, "example": {"body_text": [["Ada"]]}})
}

async fn create_template(w: &World, account_id: &str, name: &str) -> (u16, Value) {
    send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/tenants/{}/templates", w.tenant),
        Some(json!({"account_id": account_id, "name": name, "language": "en_US", "category": "UTILITY", "components": [body_component("Hello {{1}}")]})),
    )
    .await
}

async fn accounts_add_verify_edit_delete_never_reveal_secrets(backend: Backend) {
    let w = world(backend, json!({})).await;
    let a = add_account(&w, PHONE).await;
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(a["tenant_id"], w.tenant.as_str());
    assert_eq!(a["phone_number_id"], PHONE);
    assert_eq!(a["access_token_set"], true);
    assert_eq!(a["app_secret_set"], true);
    assert_eq!(
        a["access_token_hint"],
        format!("****{}", &TOKEN[TOKEN.len() - 4..])
    );
    assert_eq!(
        a["app_secret_hint"],
        format!("****{}", &SECRET[SECRET.len() - 4..])
    );
    assert!(a.get("access_token").is_none() && a.get("app_secret").is_none());
    assert_eq!(
        a["webhook_uri"],
        format!("http://localhost:8000/webhooks/whatsapp/{id}")
    );
    let verify_token = a["webhook_verify_token"].as_str().unwrap();
    assert!(verify_token.len() >= 32, "{verify_token}");
    assert!(verify_token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(a["verification"]["status"], "unverified");
    assert!(a["verification"]["checked_at"].is_null());

    // Read back, listed, verified: never the secrets.
    let (status, got) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["business_name"], "Alpha Trading");
    let (status, list) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/tenants/{}/whatsapp-accounts", w.tenant),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], Value::Null);

    let (status, v) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/whatsapp-accounts/{id}/verify"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let ver = &v["verification"];
    assert_eq!(ver["status"], "verified");
    assert_eq!(ver["verified_name"], "Alpha Trading");
    assert_eq!(ver["code_verification_status"], "VERIFIED");
    assert_eq!(ver["quality_rating"], "GREEN");
    assert_eq!(ver["messaging_limit"], "TIER_1K");
    assert!(ver["checked_at"].is_string());
    assert!(ver["last_error"].is_null());
    // Verification subscribed the app to the WABA's webhooks.
    assert!(
        w.sim.requests().iter().any(|r| r.method == "POST"
            && r.path.ends_with(&format!("/{WABA}/subscribed_apps"))
            && r.status == 200),
        "no successful subscribed_apps call"
    );
    let (_, got) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        None,
    )
    .await;
    assert_eq!(got["verification"], v["verification"]);
    // The simulator saw the stored token: it was decrypted for the call.
    assert!(w
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path.ends_with(&format!("/{PHONE}")) && r.bearer));

    // Editing without secrets keeps them (and the verification).
    let (status, edited) = send(
        &w.s,
        &w.admin,
        Method::PATCH,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        Some(json!({"business_name": "Alpha Trading SARL", "webhook_verify_token": "my-own-verify-token-42"})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["business_name"], "Alpha Trading SARL");
    assert_eq!(edited["access_token_hint"], a["access_token_hint"]);
    assert_eq!(edited["app_secret_hint"], a["app_secret_hint"]);
    assert_eq!(edited["webhook_verify_token"], "my-own-verify-token-42");
    assert_eq!(edited["verification"]["status"], "verified");
    let (status, v) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/whatsapp-accounts/{id}/verify"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");

    // A new token replaces the old one (and asks for a new verification).
    let rotated = NEVER[2];
    w.sim.add_access_token(WABA, rotated);
    let (status, edited) = send(
        &w.s,
        &w.admin,
        Method::PATCH,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        Some(json!({"access_token": rotated, "webhook_verify_token": ""})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        edited["access_token_hint"],
        format!("****{}", &rotated[rotated.len() - 4..])
    );
    assert_eq!(edited["verification"]["status"], "unverified");
    let regenerated = edited["webhook_verify_token"].as_str().unwrap();
    assert!(regenerated.len() >= 32 && regenerated != "my-own-verify-token-42");
    w.sim.expire_access_token(TOKEN);
    let (status, v) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/whatsapp-accounts/{id}/verify"),
        None,
    )
    .await;
    assert_eq!(status, 200, "the rotated token is the one used: {v}");

    // Invalid values name the field.
    let (status, err) = send(
        &w.s,
        &w.admin,
        Method::PATCH,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        Some(json!({"phone_number_id": "12/34"})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["details"]["field"], "phone_number_id");

    // At rest, only ciphertext (SQLite: the database file and its WAL).
    if let Backend::Sqlite = backend {
        for file in ["imix.sqlite3", "imix.sqlite3-wal"] {
            let path = w.s.dir.path().join("data").join(file);
            if let Ok(bytes) = std::fs::read(&path) {
                let text = String::from_utf8_lossy(&bytes);
                for secret in NEVER {
                    assert!(!text.contains(secret), "{file} holds a secret in clear");
                }
            }
        }
    }

    let (status, _) = send(
        &w.s,
        &w.admin,
        Method::DELETE,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (code, _) = error_of(
        w.s.call(
            &w.admin,
            Method::GET,
            &format!("/api/v1/whatsapp-accounts/{id}"),
        )
        .send()
        .await
        .unwrap(),
        404,
    )
    .await;
    assert_eq!(code, "not_found");
    // The platform admin reaches tenants' accounts too.
    let again = add_account(&w, PHONE).await;
    let (status, _) = send(
        &w.s,
        &w.platform,
        Method::GET,
        &format!(
            "/api/v1/whatsapp-accounts/{}",
            again["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    w.s.stop().await;
}

async fn duplicate_phone_number_id_is_409(backend: Backend) {
    let w = world(backend, json!({})).await;
    add_account(&w, PHONE).await;
    let other =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    for tenant in [w.tenant.as_str(), other["id"].as_str().unwrap()] {
        let (status, err) = send(
            &w.s,
            &w.platform,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/whatsapp-accounts"),
            Some(account_body(PHONE)),
        )
        .await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["error"]["code"], "phone_number_id_taken");
        assert_eq!(err["error"]["details"]["field"], "phone_number_id");
    }
    // Editing another account onto the number is refused the same way.
    let b = add_account(&w, "2999").await;
    let (status, err) = send(
        &w.s,
        &w.admin,
        Method::PATCH,
        &format!("/api/v1/whatsapp-accounts/{}", b["id"].as_str().unwrap()),
        Some(json!({"phone_number_id": PHONE})),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "phone_number_id_taken");
    w.s.stop().await;
}

async fn rejected_or_expired_tokens_are_422_with_metas_message(backend: Backend) {
    let w = world(backend, json!({})).await;
    let mut body = account_body(PHONE);
    body["access_token"] = json!("EAAG-not-a-token-anyone-issued-0000");
    let (status, a) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/tenants/{}/whatsapp-accounts", w.tenant),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    let verify = format!("/api/v1/whatsapp-accounts/{id}/verify");

    let (status, err) = send(&w.s, &w.admin, Method::POST, &verify, None).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "whatsapp_token_invalid");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("Invalid OAuth access token"), "{message}");
    assert_eq!(err["error"]["details"]["meta_code"], 190);
    let (_, got) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        None,
    )
    .await;
    assert_eq!(got["verification"]["status"], "failed");
    assert!(got["verification"]["last_error"]
        .as_str()
        .unwrap()
        .contains("Invalid OAuth access token"));
    assert!(got["verification"]["checked_at"].is_string());

    // The right token verifies; once it expires, Meta's own words come back.
    let (status, _) = send(
        &w.s,
        &w.admin,
        Method::PATCH,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        Some(json!({"access_token": TOKEN})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = send(&w.s, &w.admin, Method::POST, &verify, None).await;
    assert_eq!(status, 200, "{v}");
    w.sim.expire_access_token(TOKEN);
    let (status, err) = send(&w.s, &w.admin, Method::POST, &verify, None).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "whatsapp_token_invalid");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Session has expired"));
    assert_eq!(err["error"]["details"]["meta_subcode"], 463);

    // Meta failing is a 502 that says so, and the stored verification is left alone.
    w.sim.add_access_token(WABA, NEVER[2]);
    send(
        &w.s,
        &w.admin,
        Method::PATCH,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        Some(json!({"access_token": NEVER[2]})),
    )
    .await;
    w.sim.inject_fault(Fault::status(503), 1);
    let (status, err) = send(&w.s, &w.admin, Method::POST, &verify, None).await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "whatsapp_unavailable");
    let (_, got) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/whatsapp-accounts/{id}"),
        None,
    )
    .await;
    assert_eq!(got["verification"]["status"], "unverified");
    w.s.stop().await;
}

async fn verification_code_walk(backend: Backend) {
    let w = world(backend, json!({})).await;
    w.sim.add_business(
        SimBusiness::new("4001", SECRET, "EAAG-new-number-token-555-abcdef")
            .with_phone_number(SimPhoneNumber::new("4002", "+1 555-010-0042").unverified()),
    );
    let mut body = account_body("4002");
    body["waba_id"] = json!("4001");
    body["access_token"] = json!("EAAG-new-number-token-555-abcdef");
    let (status, a) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("/api/v1/tenants/{}/whatsapp-accounts", w.tenant),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    let base = format!("/api/v1/whatsapp-accounts/{}", a["id"].as_str().unwrap());

    let (status, v) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/verify"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verification"]["code_verification_status"], "UNVERIFIED");

    let (status, done) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/request-code"),
        Some(json!({"code_method": "SMS", "language": "en_US"})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let code = w.sim.verification_code("4002").expect("a code was sent");

    let (status, err) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/verify-code"),
        Some(json!({"code": "000000x"})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "whatsapp_rejected");
    assert_eq!(err["error"]["details"]["meta_code"], 136025);
    let (status, done) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/verify-code"),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(status, 200, "{done}");

    let (status, err) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/register"),
        Some(json!({"pin": "12"})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["details"]["field"], "pin");
    assert!(!w.sim.is_registered("4002"));
    let (status, done) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/register"),
        Some(json!({"pin": "246810"})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert!(w.sim.is_registered("4002"));

    let (status, v) = send(
        &w.s,
        &w.admin,
        Method::POST,
        &format!("{base}/verify"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verification"]["status"], "verified");
    assert_eq!(v["verification"]["code_verification_status"], "VERIFIED");
    w.s.stop().await;
}

async fn templates_create_list_sync_and_delete(backend: Backend) {
    let w = world(backend, json!({"max_templates": 10})).await;
    let account = add_account(&w, PHONE).await;
    let account_id = account["id"].as_str().unwrap();
    let path = format!("/api/v1/tenants/{}/templates", w.tenant);

    let (status, welcome) = create_template(&w, account_id, "welcome").await;
    assert_eq!(status, 201, "{welcome}");
    assert_eq!(welcome["status"], "PENDING");
    assert_eq!(welcome["category"], "UTILITY");
    assert_eq!(welcome["account_id"], account_id);
    let meta_id = welcome["meta_id"].as_str().unwrap().to_owned();
    assert!(w
        .sim
        .templates(WABA)
        .iter()
        .any(|t| t.id == meta_id && t.status == "PENDING"));
    let (status, promo) = create_template(&w, account_id, "promo").await;
    assert_eq!(status, 201, "{promo}");

    // Meta refuses a second "welcome" in en_US; bad values are named.
    let (status, err) = create_template(&w, account_id, "welcome").await;
    assert!(status == 409 || status == 422, "{status} {err}");
    let (status, err) = create_template(&w, account_id, "Not Valid").await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["details"]["field"], "name");

    let (_, pending) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("{path}?status=PENDING"),
        None,
    )
    .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);
    let (_, approved) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("{path}?status=approved"),
        None,
    )
    .await;
    assert!(approved["items"].as_array().unwrap().is_empty());
    let (status, err) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("{path}?status=SHINY"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{err}");

    // Meta's side changes: welcome approved, promo removed, a template made elsewhere.
    w.sim.set_template_status(WABA, "welcome", "APPROVED");
    let client = GraphApiClient::new(GraphApiConfig::with_base_url(w.sim.url())).unwrap();
    let token = AccessToken::new(TOKEN);
    client
        .delete_template(&token, WABA, "promo", None)
        .await
        .unwrap();
    client
        .create_template(
            &token,
            WABA,
            &NewTemplate {
                name: "order_shipped".into(),
                category: "UTILITY".into(),
                language: "fr".into(),
                components: vec![TemplateDefinitionComponent::text(
                    "BODY",
                    "Commande {{1}} expédiée",
                )],
            },
        )
        .await
        .unwrap();

    let (status, report) = send(&w.s, &w.admin, Method::POST, &format!("{path}/sync"), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"added": 1, "updated": 1, "removed": 1, "total": 2})
    );
    let (_, approved) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("{path}?status=APPROVED"),
        None,
    )
    .await;
    let items = approved["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], welcome["id"]);
    let (_, all) = send(&w.s, &w.admin, Method::GET, &path, None).await;
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["welcome", "order_shipped"]);
    // A second sync finds nothing to do.
    let (_, report) = send(&w.s, &w.admin, Method::POST, &format!("{path}/sync"), None).await;
    assert_eq!(
        report,
        json!({"added": 0, "updated": 0, "removed": 0, "total": 2})
    );

    let welcome_path = format!("{path}/{}", welcome["id"].as_str().unwrap());
    let (status, got) = send(&w.s, &w.admin, Method::GET, &welcome_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "APPROVED");
    let (status, _) = send(&w.s, &w.admin, Method::DELETE, &welcome_path, None).await;
    assert_eq!(status, 200);
    assert!(!w.sim.templates(WABA).iter().any(|t| t.name == "welcome"));
    let (status, _) = send(&w.s, &w.admin, Method::GET, &welcome_path, None).await;
    assert_eq!(status, 404);
    let (_, usage) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/tenants/{}/usage", w.tenant),
        None,
    )
    .await;
    assert!(usage.to_string().contains("templates"), "{usage}");

    // Template changes are audited, in the tenant's log.
    let (_, log) = send(
        &w.s,
        &w.admin,
        Method::GET,
        "/api/v1/audit-log?limit=100",
        None,
    )
    .await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["template.create", "template.sync", "template.delete"] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    w.s.stop().await;
}

async fn max_templates_is_exact_under_concurrency(backend: Backend) {
    let w = world(backend, json!({"max_templates": 3})).await;
    let account = add_account(&w, PHONE).await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tenants/{}/templates", w.tenant);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let req = w
                .s
                .call(&w.admin, Method::POST, &path)
                .json(&json!({"account_id": account_id, "name": format!("race_{i}"), "language": "en_US", "category": "MARKETING", "components": [body_component("Offer {{1}}")]}));
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => created += 1,
            429 => {
                assert_eq!(body["error"]["code"], "limit_reached", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (3, 17));
    assert_eq!(
        w.sim.templates(WABA).len(),
        3,
        "Meta saw only the admitted ones"
    );
    let (_, all) = send(&w.s, &w.admin, Method::GET, &path, None).await;
    let items = all["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3);

    // Deleting one frees a slot; a failed creation does not take one.
    let (status, _) = send(
        &w.s,
        &w.admin,
        Method::DELETE,
        &format!("{path}/{}", items[0]["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    w.sim.inject_fault(Fault::status(503), 1);
    let (status, err) = create_template(&w, &account_id, "after_outage").await;
    assert_eq!(status, 502, "{err}");
    let (status, t) = create_template(&w, &account_id, "after_delete").await;
    assert_eq!(status, 201, "{t}");
    let (status, err) = create_template(&w, &account_id, "one_too_many").await;
    assert_eq!(status, 429, "{err}");
    w.s.stop().await;
}

async fn tenant_b_gets_404_on_tenant_a_accounts_and_templates(backend: Backend) {
    let w = world(backend, json!({})).await;
    let account = add_account(&w, PHONE).await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (status, template) = create_template(&w, &account_id, "alpha_only").await;
    assert_eq!(status, 201);
    let template_id = template["id"].as_str().unwrap().to_owned();

    let b =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let b_id = b["id"].as_str().unwrap().to_owned();
    let (_, b_admin) = w
        .s
        .user_with_token(&w.platform, json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": b_id}))
        .await;

    let acc = format!("/api/v1/whatsapp-accounts/{account_id}");
    for (method, path, body) in [
        (Method::GET, acc.clone(), None),
        (
            Method::PATCH,
            acc.clone(),
            Some(json!({"business_name": "Owned by B"})),
        ),
        (Method::POST, format!("{acc}/verify"), None),
        (
            Method::POST,
            format!("{acc}/request-code"),
            Some(json!({"code_method": "SMS"})),
        ),
        (
            Method::POST,
            format!("{acc}/verify-code"),
            Some(json!({"code": "123456"})),
        ),
        (
            Method::POST,
            format!("{acc}/register"),
            Some(json!({"pin": "123456"})),
        ),
        (Method::DELETE, acc.clone(), None),
        (
            Method::GET,
            format!("/api/v1/tenants/{}/whatsapp-accounts", w.tenant),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/tenants/{}/templates", w.tenant),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/tenants/{}/templates/{template_id}", w.tenant),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/tenants/{b_id}/templates/{template_id}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{b_id}/templates/{template_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{}/templates/sync", w.tenant),
            None,
        ),
    ] {
        let (status, resp) = send(&w.s, &b_admin, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {resp}");
        assert!(
            !resp.to_string().contains(&account_id) && !resp.to_string().contains("Alpha Trading")
        );
    }
    // B cannot create a template on A's account from its own tenant either.
    let (status, err) = send(
        &w.s,
        &b_admin,
        Method::POST,
        &format!("/api/v1/tenants/{b_id}/templates"),
        Some(json!({"account_id": account_id, "name": "stolen", "language": "en_US", "category": "UTILITY", "components": [body_component("x {{1}}")]})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["details"]["field"], "account_id");
    let (_, mine) = send(
        &w.s,
        &b_admin,
        Method::GET,
        &format!("/api/v1/tenants/{b_id}/whatsapp-accounts"),
        None,
    )
    .await;
    assert!(mine["items"].as_array().unwrap().is_empty());
    let (_, mine) = send(
        &w.s,
        &b_admin,
        Method::GET,
        &format!("/api/v1/tenants/{b_id}/templates"),
        None,
    )
    .await;
    assert!(mine["items"].as_array().unwrap().is_empty());

    // A's account and template are untouched.
    let (_, still) = send(&w.s, &w.admin, Method::GET, &acc, None).await;
    assert_eq!(still["business_name"], "Alpha Trading");
    assert_eq!(still["version"], account["version"]);
    let (status, _) = send(
        &w.s,
        &w.admin,
        Method::GET,
        &format!("/api/v1/tenants/{}/templates/{template_id}", w.tenant),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(w.sim.templates(WABA).iter().any(|t| t.name == "alpha_only"));
    w.s.stop().await;
}
