//! Tenant search end to end, on both stores: messages received through signed webhooks are
//! found in English, French (accents ignored) and Arabic (harakat, tatweel and alef forms
//! ignored); contacts by name and phone digits, and no longer once changed or deleted; an
//! agent does not find messages of a conversation assigned to another agent; another
//! tenant finds nothing and gets 404 for this one; a blank or over-long `q` is 422.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{graph_simulator, Backend, TestServer};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    messages_are_found_in_english_french_and_arabic,
    contacts_are_found_by_name_and_phone_until_changed_or_deleted,
    agents_and_other_tenants_find_only_what_they_may_see,
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
        _sim: sim,
        s,
        platform,
        tenant,
        admin,
    }
}

fn text_message(wamid: &str, from: &str, ts: i64, body: &str) -> Value {
    json!({"from": from, "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": {"body": body}})
}

/// Posts one signed delivery of `messages` (with the senders' profile names).
async fn deliver(w: &World, messages: Vec<Value>) {
    let contacts: Vec<Value> = messages
        .iter()
        .map(|m| json!({"wa_id": m["from"], "profile": {"name": format!("Customer {}", m["from"].as_str().unwrap())}}))
        .collect();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
            "contacts": contacts,
            "messages": messages,
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
            .status()
            .as_u16();
    assert_eq!(status, 200);
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..500 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn search_as(w: &World, token: &str, tenant: &str, q: &str) -> (u16, Value) {
    w.s.get_json(
        token,
        &format!("/api/v1/tenants/{tenant}/search?q={}", encode(q)),
    )
    .await
}

/// The snippets of the messages `q` finds, as the tenant's admin.
async fn found(w: &World, q: &str) -> Vec<String> {
    let (status, body) = search_as(w, &w.admin, &w.tenant, q).await;
    assert_eq!(status, 200, "{q}: {body}");
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["snippet"].as_str().unwrap().to_owned())
        .collect()
}

async fn contact_names(w: &World, token: &str, q: &str) -> Vec<String> {
    let (status, body) = search_as(w, token, &w.tenant, q).await;
    assert_eq!(status, 200, "{q}: {body}");
    body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["name"]
                .as_str()
                .or(c["profile_name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Waits until the tenant has `n` messages in conversations (ingest is asynchronous).
async fn messages_stored(w: &World, q: &str, n: usize) {
    until(&format!("{n} messages for {q}"), || async {
        (found(w, q).await.len() >= n).then_some(())
    })
    .await;
}

async fn messages_are_found_in_english_french_and_arabic(backend: Backend) {
    let w = world(backend).await;
    let ts = 1_760_000_000;
    deliver(
        &w,
        vec![
            text_message("wamid.S1", "22245000011", ts, "Hello, where is my ORDER?"),
            text_message("wamid.S2", "22245000012", ts + 10, "Ça coûte combien?"),
            text_message("wamid.S3", "22245000013", ts + 20, "مَرْحَبًا، أُرِيدُ السِّعْرَ"),
            text_message("wamid.S4", "22245000014", ts + 30, "مـــرحبا، كم سعر الطلب؟"),
            json!({"from": "22245000015", "id": "wamid.S5", "timestamp": (ts + 40).to_string(), "type": "image",
                   "image": {"id": "m1", "mime_type": "image/jpeg", "sha256": "x", "caption": "Photo de la façade"}}),
            json!({"from": "22245000016", "id": "wamid.S6", "timestamp": (ts + 50).to_string(), "type": "location",
                   "location": {"latitude": 48.85, "longitude": 2.35, "name": "Boulangerie Élysée", "address": "12 rue de Rivoli"}}),
            json!({"from": "22245000017", "id": "wamid.S7", "timestamp": (ts + 60).to_string(), "type": "interactive",
                   "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Confirmer la livraison"}}}),
        ],
    )
    .await;
    messages_stored(&w, "combien", 1).await;
    messages_stored(&w, "livraison", 1).await;

    // English: case ignored, the last word a prefix, every word needed.
    assert_eq!(found(&w, "order").await.len(), 1);
    assert_eq!(found(&w, "where ord").await.len(), 1);
    assert!(found(&w, "where pizza").await.is_empty());
    // French: accents ignored both ways.
    let hits = found(&w, "cout").await;
    assert_eq!(hits, ["Ça coûte combien?"]);
    assert_eq!(found(&w, "COÛTE COMBIEN").await.len(), 1);
    assert_eq!(found(&w, "facade").await.len(), 1, "image captions");
    assert_eq!(
        found(&w, "elysee rivoli").await.len(),
        1,
        "location name and address"
    );
    assert_eq!(found(&w, "confirmer").await.len(), 1, "button reply titles");
    // Arabic: with or without harakat and tatweel, any alef form; newest first.
    let hits = found(&w, "مرحبا").await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits[0].starts_with("مـــرحبا"), "newest first: {hits:?}");
    assert_eq!(found(&w, "مَرْحَبًا").await.len(), 2);
    assert_eq!(
        found(&w, "اريد").await.len(),
        1,
        "أُرِيدُ found without hamza or harakat"
    );
    assert_eq!(found(&w, "السعر").await.len(), 1);

    // Results are bounded by limit; bad limits and queries are refused naming the field.
    let (status, body) =
        w.s.get_json(
            &w.admin,
            &format!(
                "/api/v1/tenants/{}/search?q=%D9%85%D8%B1%D8%AD%D8%A8%D8%A7&limit=1",
                w.tenant
            ),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    let m = &body["messages"][0];
    for field in [
        "id",
        "conversation_id",
        "contact_id",
        "snippet",
        "timestamp",
    ] {
        assert!(m[field].is_string(), "{field}: {m}");
    }
    for (query, field) in [
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("", "q"),
        (&format!("q={}", "a".repeat(201)) as &str, "q"),
        ("q=x&limit=0", "limit"),
        ("q=x&limit=101", "limit"),
    ] {
        let (status, err) =
            w.s.get_json(
                &w.admin,
                &format!("/api/v1/tenants/{}/search?{query}", w.tenant),
            )
            .await;
        assert_eq!(status, 422, "{query}: {err}");
        assert_eq!(err["error"]["details"]["field"], field, "{query}: {err}");
    }
}

async fn contacts_are_found_by_name_and_phone_until_changed_or_deleted(backend: Backend) {
    let w = world(backend).await;
    let (status, c) = w
        .s
        .send_json(
            &w.admin,
            Method::POST,
            &format!("/api/v1/tenants/{}/contacts", w.tenant),
            json!({"phone": "+33 6 12 34 56 78", "name": "Hélène Dupré", "notes": "cliente fidèle"}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();

    assert_eq!(
        contact_names(&w, &w.admin, "helene").await,
        ["Hélène Dupré"]
    );
    assert_eq!(
        contact_names(&w, &w.admin, "dupre hel").await,
        ["Hélène Dupré"]
    );
    assert_eq!(
        contact_names(&w, &w.admin, "fidele").await,
        ["Hélène Dupré"],
        "notes"
    );
    // Phone digits, typed with or without the country code's + and spaces, as a prefix.
    for q in ["33612345678", "+33 6 12 34 56 78", "336123"] {
        assert_eq!(
            contact_names(&w, &w.admin, q).await,
            ["Hélène Dupré"],
            "{q}"
        );
    }
    let (status, body) = search_as(&w, &w.admin, &w.tenant, "33612345678").await;
    assert_eq!(status, 200);
    assert_eq!(body["contacts"][0]["phone"], "+33612345678");
    assert_eq!(body["contacts"][0]["id"], id.as_str());

    // A contact made by an inbound message is found by its profile name and wa_id.
    deliver(
        &w,
        vec![text_message(
            "wamid.K1",
            "22245000099",
            1_760_000_000,
            "bonjour",
        )],
    )
    .await;
    until("the inbound contact", || async {
        (contact_names(&w, &w.admin, "22245000099").await == ["Customer 22245000099"]).then_some(())
    })
    .await;

    // Renamed: found by the new name only.
    let (status, c) =
        w.s.send_json(
            &w.admin,
            Method::PATCH,
            &format!("/api/v1/tenants/{}/contacts/{id}", w.tenant),
            json!({"name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert!(contact_names(&w, &w.admin, "helene").await.is_empty());
    assert_eq!(
        contact_names(&w, &w.admin, "lovelace").await,
        ["Ada Lovelace"]
    );

    // Deleted: found no more.
    let resp =
        w.s.call(
            &w.admin,
            Method::DELETE,
            &format!("/api/v1/tenants/{}/contacts/{id}", w.tenant),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(contact_names(&w, &w.admin, "lovelace").await.is_empty());
    assert!(contact_names(&w, &w.admin, "336123").await.is_empty());
}

async fn agents_and_other_tenants_find_only_what_they_may_see(backend: Backend) {
    let w = world(backend).await;
    let ts = 1_760_000_000;
    deliver(
        &w,
        vec![
            text_message(
                "wamid.A1",
                "22245000011",
                ts,
                "refund please, parcel damaged",
            ),
            text_message(
                "wamid.A2",
                "22245000012",
                ts + 1,
                "refund for my parcel too",
            ),
        ],
    )
    .await;
    messages_stored(&w, "refund", 2).await;
    let (_, body) = search_as(&w, &w.admin, &w.tenant, "damaged").await;
    let damaged = body["messages"][0]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = |email: &str| json!({"email": email, "first_name": "Ag", "last_name": "Ent", "role": "agent", "tenant_id": w.tenant});
    let (_, agent1_token) =
        w.s.user_with_token(&w.platform, agent("one@alpha.example"))
            .await;
    let (agent2, agent2_token) =
        w.s.user_with_token(&w.platform, agent("two@alpha.example"))
            .await;
    let (status, c) =
        w.s.send_json(
            &w.admin,
            Method::PATCH,
            &format!("/api/v1/tenants/{}/conversations/{damaged}", w.tenant),
            json!({"assignee": agent2["id"]}),
        )
        .await;
    assert_eq!(status, 200, "{c}");

    let conversations_found = |token: String, q: &'static str| {
        let w = &w;
        async move {
            let (status, body) = search_as(w, &token, &w.tenant, q).await;
            assert_eq!(status, 200, "{body}");
            let mut ids: Vec<String> = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["conversation_id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    // Agent two (the assignee) and the admin find both; agent one only the unassigned one.
    assert_eq!(
        conversations_found(w.admin.clone(), "refund").await.len(),
        2
    );
    assert_eq!(
        conversations_found(agent2_token.clone(), "refund")
            .await
            .len(),
        2
    );
    let agent1_sees = conversations_found(agent1_token.clone(), "refund").await;
    assert_eq!(agent1_sees.len(), 1);
    assert_ne!(agent1_sees[0], damaged);
    assert!(conversations_found(agent1_token.clone(), "damaged")
        .await
        .is_empty());
    assert_eq!(
        conversations_found(agent2_token, "damaged").await,
        [damaged]
    );

    // Another tenant: nothing of Alpha's in its own search, 404 on Alpha's.
    let t =
        w.s.create_tenant(&w.platform, json!({"name": "Beta"}))
            .await;
    let beta = t["id"].as_str().unwrap().to_owned();
    let (_, beta_admin) = w
        .s
        .user_with_token(
            &w.platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": beta}),
        )
        .await;
    let (status, body) = search_as(&w, &beta_admin, &beta, "refund").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"messages": [], "contacts": []}));
    let (status, body) = search_as(&w, &beta_admin, &beta, "22245000011").await;
    assert_eq!(
        (status, body["contacts"].as_array().unwrap().len()),
        (200, 0)
    );
    for q in ["refund", ""] {
        let (status, body) = search_as(&w, &beta_admin, &w.tenant, q).await;
        assert_eq!(status, 404, "{q:?}: {body}");
    }
    // The platform admin searches any tenant.
    let (status, body) = search_as(&w, &w.platform, &w.tenant, "refund").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
}
