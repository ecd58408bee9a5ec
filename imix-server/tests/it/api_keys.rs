//! API keys end to end on both backends: a key works as a bearer token on the routes its
//! role allows and no other, is never listed or shown again, cannot outrank its creator,
//! stays in its tenant, and is refused as soon as it is deleted.

use reqwest::Method;
use serde_json::json;

use crate::common::{error_of, Backend, TestServer};

on_both_backends!(api_keys_end_to_end);

async fn api_keys_end_to_end(backend: Backend) {
    let s = TestServer::start(backend).await;
    let platform = s.admin().await;
    let a = s.create_tenant(&platform, json!({"name": "Alpha"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = s.create_tenant(&platform, json!({"name": "Beta"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, admin_a) = s
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
    let (_, manager_a) = s
        .user_with_token(
            &platform,
            json!({"email": "manager@alpha.example", "first_name": "M", "last_name": "Anager", "role": "manager", "tenant_id": a}),
        )
        .await;
    let (_, integrator_a) = s
        .user_with_token(
            &platform,
            json!({"email": "dev@alpha.example", "first_name": "D", "last_name": "Ev", "role": "custom",
                   "permissions": ["integrations.manage", "contacts.read"], "tenant_id": a}),
        )
        .await;
    let keys_a = format!("/api/v1/tenants/{a}/api-keys");

    // Bad input is refused with the field named, and nothing is stored.
    let resp = s
        .call(&admin_a, Method::POST, &keys_a)
        .json(&json!({"name": "  ", "role": "agent"}))
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(body["error"]["details"]["field"], "name", "{code} {body}");
    let resp = s
        .call(&admin_a, Method::POST, &keys_a)
        .json(&json!({"name": "x", "role": "custom", "permissions": ["no.such"]}))
        .send()
        .await
        .unwrap();
    let (_, body) = error_of(resp, 422).await;
    assert_eq!(body["error"]["details"]["field"], "permissions", "{body}");

    // Only holders of integrations.manage manage keys; nobody grants more than they hold.
    let (status, _) = s
        .send_json(
            &manager_a,
            Method::POST,
            &keys_a,
            json!({"name": "m", "role": "read_only"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = s
        .send_json(
            &integrator_a,
            Method::POST,
            &keys_a,
            json!({"name": "too much", "role": "agent"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, narrow) = s
        .send_json(
            &integrator_a,
            Method::POST,
            &keys_a,
            json!({"name": "reader", "role": "custom", "permissions": ["contacts.read"]}),
        )
        .await;
    assert_eq!(status, 201, "{narrow}");

    // A key, even one holding integrations.manage, mints no keys: every key traces back to
    // a person, and a leaked key cannot make itself a successor.
    let (status, integrations_key) = s
        .send_json(
            &admin_a,
            Method::POST,
            &keys_a,
            json!({"name": "key admin", "role": "custom", "permissions": ["integrations.manage"]}),
        )
        .await;
    assert_eq!(status, 201, "{integrations_key}");
    let (status, body) = s
        .send_json(
            integrations_key["key"].as_str().unwrap(),
            Method::POST,
            &keys_a,
            json!({"name": "successor", "role": "custom", "permissions": ["integrations.manage"]}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = s
        .call(
            &admin_a,
            Method::DELETE,
            &format!("{keys_a}/{}", integrations_key["id"].as_str().unwrap()),
        )
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(status, 200);

    // An agent key: shown once.
    let (status, created) = s
        .send_json(
            &admin_a,
            Method::POST,
            &keys_a,
            json!({"name": "CRM sync", "role": "agent"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("imix_") && key.len() > 40, "{key}");
    assert_eq!(created["hint"].as_str().unwrap(), &key[..13]);

    // Listed without the key.
    let resp = s.call(&admin_a, Method::GET, &keys_a).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&key), "a key was listed: {text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let listed = items.iter().find(|k| k["id"] == key_id.as_str()).unwrap();
    assert_eq!(listed["role"], "agent");
    assert_eq!(listed["name"], "CRM sync");
    assert!(listed.get("key").is_none(), "{listed}");
    assert!(listed["last_used_at"].is_null(), "{listed}");

    // It works where an agent may go...
    let (status, body) = s
        .get_json(&key, &format!("/api/v1/tenants/{a}/contacts"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s
        .send_json(
            &key,
            Method::POST,
            &format!("/api/v1/tenants/{a}/contacts"),
            json!({"phone": "+14155550101", "name": "Kim"}),
        )
        .await;
    assert_eq!(status, 201);
    // ...and nowhere else: other permissions, key management, the user's own account.
    let (status, _) = s
        .send_json(&key, Method::POST, "/api/v1/users", json!({"email": "x@alpha.example", "first_name": "x", "last_name": "y", "role": "agent"}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = s.get_json(&key, &keys_a).await;
    assert_eq!(status, 403);
    let (status, _) = s.get_json(&key, "/api/v1/me").await;
    assert_eq!(status, 403);
    let (status, _) = s.get_json(&key, "/api/v1/tenants").await;
    assert_eq!(status, 200, "a tenant key sees its own tenant only");
    // Another tenant's records do not exist for it.
    let (status, _) = s
        .get_json(&key, &format!("/api/v1/tenants/{b}/contacts"))
        .await;
    assert_eq!(status, 404);
    // The narrow custom key reads contacts but may not write them.
    let narrow_key = narrow["key"].as_str().unwrap();
    let (status, _) = s
        .get_json(narrow_key, &format!("/api/v1/tenants/{a}/contacts"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .send_json(
            narrow_key,
            Method::POST,
            &format!("/api/v1/tenants/{a}/contacts"),
            json!({"phone": "+14155550102"}),
        )
        .await;
    assert_eq!(status, 403);

    // Its use is recorded.
    let (_, list) = s.get_json(&admin_a, &keys_a).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap()
        .clone();
    assert!(listed["last_used_at"].is_string(), "{listed}");

    // A made-up or mangled key is 401.
    let (status, _) = s
        .get_json(
            "imix_not-a-real-key",
            &format!("/api/v1/tenants/{a}/contacts"),
        )
        .await;
    assert_eq!(status, 401);

    // Another tenant cannot see or delete it, whichever path it tries.
    let (_, list_b) = s
        .get_json(&admin_b, &format!("/api/v1/tenants/{b}/api-keys"))
        .await;
    assert_eq!(list_b["items"].as_array().unwrap().len(), 0);
    for path in [
        format!("/api/v1/tenants/{b}/api-keys/{key_id}"),
        format!("/api/v1/tenants/{a}/api-keys/{key_id}"),
    ] {
        let resp = s
            .call(&admin_b, Method::DELETE, &path)
            .send()
            .await
            .unwrap();
        error_of(resp, 404).await;
    }
    let (status, _) = s
        .get_json(&key, &format!("/api/v1/tenants/{a}/contacts"))
        .await;
    assert_eq!(status, 200, "still works after another tenant's attempts");

    // Deleted: refused at once.
    let resp = s
        .call(&admin_a, Method::DELETE, &format!("{keys_a}/{key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = s
        .get_json(&key, &format!("/api/v1/tenants/{a}/contacts"))
        .await;
    assert_eq!(status, 401);
    let resp = s
        .call(&admin_a, Method::DELETE, &format!("{keys_a}/{key_id}"))
        .send()
        .await
        .unwrap();
    error_of(resp, 404).await;

    // The key never reached the logs.
    let logs = std::fs::read_dir(s.dir.path().join("logs"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect::<String>()
        })
        .unwrap_or_default();
    assert!(!logs.contains(&key), "the key was logged");
    s.stop().await;
}
