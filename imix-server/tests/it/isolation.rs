//! Tenant isolation, proven from the outside: every operation of the published OpenAPI
//! document that takes a tenant or resource id is called by users of tenant B with tenant
//! A's ids. Each call must answer 403 or 404 with nothing of tenant A in the body, and
//! tenant A must be unchanged afterwards. Operations are discovered from `/openapi.json`,
//! so a route added later is covered without editing this test (a new kind of path
//! parameter makes the test fail until a fixture for it exists).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::collections::HashMap;

use common::{Backend, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, b'I', b'D', b'A', b'T',
    0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, b'I', b'E', b'N',
    b'D', 0xae, 0x42, 0x60, 0x82,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tenant_b_cannot_reach_tenant_a() {
    walk(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_tenant_b_cannot_reach_tenant_a() {
    walk(Backend::Mongodb).await;
}

/// Resolves `#/components/schemas/X` references.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => spec.pointer(&r.replacen('#', "", 1)).unwrap_or(schema),
        None => schema,
    }
}

/// A minimal body that satisfies the schema's required fields, so that requests reach the
/// handler instead of failing to parse.
fn example(spec: &Value, schema: &Value) -> Value {
    let schema = resolve(spec, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return all.first().map(|s| example(spec, s)).unwrap_or(Value::Null);
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values[0].clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None => {
            let mut out = serde_json::Map::new();
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if required.contains(&name.as_str()) {
                        out.insert(name.clone(), example(spec, prop));
                    }
                }
            }
            Value::Object(out)
        }
        Some("string") => match schema.get("format").and_then(Value::as_str) {
            Some("email") => json!("intruder@b.example"),
            _ => json!("intruder-value-1"),
        },
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        _ => Value::Null,
    }
}

struct Fixture {
    params: HashMap<&'static str, String>,
    /// Strings of tenant A that must never appear in B's responses.
    secrets: Vec<String>,
}

async fn walk(backend: Backend) {
    let sim = common::graph_simulator(
        "7001",
        "7002",
        "alpha-app-secret-0123456789",
        "alpha-meta-token-0123456789",
    )
    .await;
    let s = TestServer::start_with_graph(backend, &sim.url()).await;
    let admin = s.admin().await;

    // Tenant A, with a user, a logo and a document.
    let a = s
        .create_tenant(
            &admin,
            json!({"name": "Alpha Secret Holdings", "email": "ceo@alpha-secret.example", "private_notes": "alpha-private-note", "phone": "+22245000001"}),
        )
        .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let (a_user, _) = s
        .user_with_token(&admin, json!({"email": "agent@alpha-secret.example", "first_name": "Alphonse", "last_name": "Secretus", "role": "agent", "tenant_id": a_id}))
        .await;
    let a_user_id = a_user["id"].as_str().unwrap().to_owned();
    let form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(PNG).file_name("alpha-secret-logo.png"),
        )
    };
    let resp = s
        .call(&admin, Method::PUT, &format!("/api/v1/tenants/{a_id}/logo"))
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = s
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/documents"),
        )
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let doc: Value = resp.json().await.unwrap();
    let doc_id = doc["id"].as_str().unwrap().to_owned();
    // A WhatsApp account and a template.
    let account = s
        .add_whatsapp_account(&admin, &a_id, json!({"waba_id": "7001", "business_account_id": "7000", "phone_number_id": "7002", "app_id": "7003", "display_phone_number": "+1 555-010-0001", "business_name": "Alpha Secret Trading", "access_token": "alpha-meta-token-0123456789", "app_secret": "alpha-app-secret-0123456789"}))
        .await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (status, template) = s
        .send_json(&admin, Method::POST, &format!("/api/v1/tenants/{a_id}/templates"), json!({"account_id": account_id, "name": "alpha_secret_offer", "language": "en_US", "category": "MARKETING", "components": [{"type": "BODY", "text": "Hello {{1}}", "example": {"body_text": [["Ada"]]}}]}))
        .await;
    assert_eq!(status, 201, "{template}");
    let template_id = template["id"].as_str().unwrap().to_owned();
    // A webhook endpoint of A's (a public address literal: nothing needs to answer), so
    // that the message below gives it a delivery.
    let (status, endpoint) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/webhook-endpoints"),
            json!({"url": "http://93.184.216.34/alpha-secret-hook", "events": ["message.received"]}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    let endpoint_secret = endpoint["secret"].as_str().unwrap().to_owned();
    // A customer writes to A's number: a contact, a conversation, a message.
    let delivery = json!({"object": "whatsapp_business_account", "entry": [{"id": "7001", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": "7002"},
        "contacts": [{"profile": {"name": "Alpha Secret Customer"}, "wa_id": "22245000077"}],
        "messages": [{"from": "22245000077", "id": "wamid.alpha-secret", "timestamp": "1760000000", "type": "text", "text": {"body": "alpha-secret-message"}}]
    }}]}]})
    .to_string();
    let signature = imix_whatsapp::webhook::sign(
        &secrecy::SecretString::from("alpha-app-secret-0123456789"),
        delivery.as_bytes(),
    );
    let resp = s
        .client
        .post(s.url("/webhooks/whatsapp"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut conversation = Value::Null;
    for _ in 0..250 {
        let (_, list) = s
            .get_json(&admin, &format!("/api/v1/tenants/{a_id}/conversations"))
            .await;
        if let Some(first) = list["items"].as_array().and_then(|l| l.first()) {
            conversation = first.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let conversation_id = conversation["id"]
        .as_str()
        .expect("the conversation")
        .to_owned();
    let contact_id = conversation["contact_id"].as_str().unwrap().to_owned();
    // Its message (for the media routes): stored just after the conversation appears.
    let mut message_id = None;
    for _ in 0..250 {
        let (_, messages) = s
            .get_json(
                &admin,
                &format!("/api/v1/tenants/{a_id}/conversations/{conversation_id}/messages"),
            )
            .await;
        message_id = messages["items"][0]["id"].as_str().map(str::to_owned);
        if message_id.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let message_id = message_id.expect("the message");
    // A contact group holding that contact.
    let (status, group) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/contact-groups"),
            json!({"name": "Alpha Secret Group"}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    let resp = s
        .call(
            &admin,
            Method::PUT,
            &format!("/api/v1/tenants/{a_id}/contact-groups/{group_id}/members/{contact_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A private note on the conversation, a label and a canned response.
    let (status, note) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/conversations/{conversation_id}/notes"),
            json!({"body": "alpha-secret-note"}),
        )
        .await;
    assert_eq!(status, 201, "{note}");
    let note_id = note["id"].as_str().unwrap().to_owned();
    let (status, label) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/labels"),
            json!({"name": "Alpha Secret Label", "color": "#123456"}),
        )
        .await;
    assert_eq!(status, 201, "{label}");
    let label_id = label["id"].as_str().unwrap().to_owned();
    let (status, canned) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/canned-responses"),
            json!({"shortcut": "alpha-secret", "title": "Alpha Secret Reply", "body": "alpha-secret-reply"}),
        )
        .await;
    assert_eq!(status, 201, "{canned}");
    let canned_response_id = canned["id"].as_str().unwrap().to_owned();
    // A contact import job.
    let csv = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"phone,name\n+22245000088,Alpha Secret Import\n".to_vec())
            .file_name("alpha-secret.csv")
            .mime_str("text/csv")
            .unwrap(),
    );
    let resp = s
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/contacts/import"),
        )
        .multipart(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let import: Value = resp.json().await.unwrap();
    let import_id = import["id"].as_str().unwrap().to_owned();
    // The endpoint's delivery of that message.
    let mut delivery_id = None;
    for _ in 0..250 {
        let (_, log) = s
            .get_json(
                &admin,
                &format!("/api/v1/tenants/{a_id}/webhook-endpoints/{endpoint_id}/deliveries"),
            )
            .await;
        delivery_id = log["items"][0]["id"].as_str().map(str::to_owned);
        if delivery_id.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let delivery_id = delivery_id.expect("the webhook delivery");
    // An API key of tenant A (its key as a secret too).
    let (status, api_key) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{a_id}/api-keys"),
            json!({"name": "Alpha Secret Key", "role": "agent"}),
        )
        .await;
    assert_eq!(status, 201, "{api_key}");
    let api_key_id = api_key["id"].as_str().unwrap().to_owned();
    let api_key_secret = api_key["key"].as_str().unwrap().to_owned();

    // Tenant B, with an admin (every tenant permission) and an agent.
    let b = s.create_tenant(&admin, json!({"name": "Beta"})).await;
    let (_, b_admin) = s
        .user_with_token(&admin, json!({"email": "admin@beta.example", "first_name": "B", "last_name": "Admin", "role": "admin", "tenant_id": b["id"]}))
        .await;
    let (_, b_agent) = s
        .user_with_token(&admin, json!({"email": "agent@beta.example", "first_name": "B", "last_name": "Agent", "role": "agent", "tenant_id": b["id"]}))
        .await;

    // A backup: platform-wide, so every backup route refuses tenants' users.
    let (status, backup) = s
        .send_json(
            &admin,
            reqwest::Method::POST,
            "/api/v1/system/backups",
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{backup}");
    let backup_id = backup["id"].as_str().unwrap().to_owned();

    let fixture = Fixture {
        params: HashMap::from([
            ("backup_id", backup_id.clone()),
            ("tenant_id", a_id.clone()),
            ("user_id", a_user_id.clone()),
            ("document_id", doc_id.clone()),
            ("account_id", account_id.clone()),
            ("template_id", template_id.clone()),
            ("conversation_id", conversation_id.clone()),
            ("contact_id", contact_id.clone()),
            ("group_id", group_id.clone()),
            ("message_id", message_id.clone()),
            ("note_id", note_id.clone()),
            ("label_id", label_id.clone()),
            ("canned_response_id", canned_response_id.clone()),
            ("import_id", import_id.clone()),
            ("api_key_id", api_key_id.clone()),
            ("endpoint_id", endpoint_id.clone()),
            ("delivery_id", delivery_id.clone()),
        ]),
        secrets: vec![
            a_id.clone(),
            a_user_id.clone(),
            doc_id.clone(),
            api_key_id.clone(),
            api_key_secret.clone(),
            endpoint_id.clone(),
            endpoint_secret.clone(),
            delivery_id.clone(),
            "alpha-secret-hook".into(),
            "Alpha Secret".into(),
            "alpha-secret".into(),
            "alpha-private-note".into(),
            "Alphonse".into(),
            account_id.clone(),
            template_id.clone(),
            "alpha-meta-token".into(),
            "alpha-app-secret".into(),
            "alpha_secret_offer".into(),
            conversation_id.clone(),
            contact_id.clone(),
            group_id.clone(),
            message_id.clone(),
            "alpha-secret-message".into(),
            note_id.clone(),
            label_id.clone(),
            canned_response_id.clone(),
            import_id.clone(),
            backup_id.clone(),
            "22245000077".into(),
        ],
    };

    let (_, a_user_before) = s
        .get_json(&admin, &format!("/api/v1/users/{a_user_id}"))
        .await;
    let spec: Value = s.get("/openapi.json").await.json().await.unwrap();
    let mut checked = 0usize;
    let mut operations = 0usize;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let params: Vec<&Value> = op["parameters"]
                .as_array()
                .map(|p| p.iter().collect())
                .unwrap_or_default();
            let path_params: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let tenant_query = params
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == "tenant_id");
            if path_params.is_empty() && !tenant_query {
                continue;
            }
            operations += 1;
            let mut url = path.clone();
            for name in &path_params {
                let value = fixture
                    .params
                    .get(name)
                    .unwrap_or_else(|| panic!("no fixture for path parameter `{name}` of {method} {path}: add one to this test"));
                url = url.replace(&format!("{{{name}}}"), value);
            }
            if tenant_query {
                url = format!("{url}?tenant_id={a_id}");
            }
            let content = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object);
            for (who, token) in [("tenant B admin", &b_admin), ("tenant B agent", &b_agent)] {
                let mut req = s.call(
                    token,
                    method.to_uppercase().parse::<Method>().unwrap(),
                    &url,
                );
                if let Some(content) = content {
                    if let Some(json_body) = content
                        .iter()
                        .find(|(ct, _)| ct.starts_with("application/json"))
                    {
                        req = req.json(&example(&spec, &json_body.1["schema"]));
                    } else if content
                        .keys()
                        .any(|ct| ct.starts_with("multipart/form-data"))
                    {
                        req = req.multipart(form());
                    }
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                assert!(
                    status == 403 || status == 404,
                    "{who}: {method} {url} answered {status}: {body}"
                );
                for secret in &fixture.secrets {
                    assert!(
                        !body.contains(secret.as_str()),
                        "{who}: {method} {url} leaked `{secret}`: {body}"
                    );
                }
                checked += 1;
            }
        }
    }
    // The list operations without ids show B nothing of A either.
    for list in ["/api/v1/tenants", "/api/v1/users", "/api/v1/audit-log"] {
        let body = s
            .call(&b_admin, Method::GET, list)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for secret in &fixture.secrets {
            assert!(
                !body.contains(secret.as_str()),
                "{list} leaked `{secret}`: {body}"
            );
        }
    }

    // Tenant A is exactly as it was.
    let (_, a_after) = s.get_json(&admin, &format!("/api/v1/tenants/{a_id}")).await;
    assert_eq!(a_after["name"], a["name"]);
    assert_eq!(a_after["status"], "active");
    assert_eq!(a_after["private_notes"], "alpha-private-note");
    let (_, user_after) = s
        .get_json(&admin, &format!("/api/v1/users/{a_user_id}"))
        .await;
    assert_eq!(user_after, a_user_before, "tenant A's user is untouched");
    let (_, docs) = s
        .get_json(&admin, &format!("/api/v1/tenants/{a_id}/documents"))
        .await;
    assert_eq!(docs["items"].as_array().unwrap().len(), 1);
    let (status, members) = s
        .get_json(
            &admin,
            &format!("/api/v1/tenants/{a_id}/contact-groups/{group_id}/members"),
        )
        .await;
    assert_eq!(status, 200, "tenant A's group is still there");
    assert_eq!(members["items"].as_array().unwrap().len(), 1, "{members}");

    eprintln!("isolation ({backend:?}): {operations} operations x 2 users = {checked} calls, all 403/404, nothing of tenant A in any body");
    assert!(
        operations >= 15,
        "the walk found only {operations} operations"
    );
    s.stop().await;
}
