//! Two server instances sharing one MongoDB database and one Redis, as behind a load
//! balancer: limits and the sign-in throttle hold across them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{Backend, TestServer, ADMIN_PASSWORD};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_limits_and_the_sign_in_throttle() {
    let db = format!("imix_replicas_{}", uuid::Uuid::now_v7().simple());
    let shared = |v: &mut std::collections::HashMap<String, String>| {
        v.insert("DB_NAME".into(), db.clone());
        v.insert(
            "SECRET_KEY".into(),
            "replicas-share-this-secret-key-0123456789".into(),
        );
        v.insert("REDIS_URL".into(), common::redis_url());
    };
    let one = TestServer::start_with(Backend::Mongodb, shared).await;
    let admin = one.admin().await;
    let two = TestServer::start_with(Backend::Mongodb, shared).await;
    // A token from one replica is valid on the other.
    assert_eq!(two.get_json(&admin, "/api/v1/me").await.0, 200);

    let t = one
        .create_tenant(
            &admin,
            json!({"name": "Shared", "limits": {"max_agents": 10}}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let attempts = 40;
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let server = if i % 2 == 0 { &one } else { &two };
            let (client, url, admin, id) = (server.client.clone(), server.url("/api/v1/users"), admin.clone(), id.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(admin)
                    .json(&json!({"email": format!("r{i}@shared.example"), "first_name": "R", "last_name": "S", "role": "agent", "tenant_id": id, "password": "initial-password-1"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            201 => created += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    eprintln!("replicas: {created} of {attempts} creations accepted across two instances against a limit of 10");
    assert_eq!(created, 10);
    let (_, usage) = two
        .get_json(&admin, &format!("/api/v1/tenants/{id}/usage"))
        .await;
    assert_eq!(usage["counts"]["agents"], 10);

    // Five failures spread over both replicas lock the account on both.
    for i in 0..5 {
        let server = if i % 2 == 0 { &one } else { &two };
        assert_eq!(
            server
                .sign_in_raw("admin@example.com", "not-the-password")
                .await
                .status(),
            401
        );
    }
    for server in [&one, &two] {
        let resp = server
            .sign_in_raw("admin@example.com", ADMIN_PASSWORD)
            .await;
        assert_eq!(resp.status(), 429);
        assert!(resp.headers().contains_key("retry-after"));
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_on_one_replica_revokes_tokens_on_the_other() {
    let db = format!("imix_replicas_{}", uuid::Uuid::now_v7().simple());
    let shared = |v: &mut std::collections::HashMap<String, String>| {
        v.insert("DB_NAME".into(), db.clone());
        v.insert(
            "SECRET_KEY".into(),
            "replicas-share-this-secret-key-0123456789".into(),
        );
    };
    let one = TestServer::start_with(Backend::Mongodb, shared).await;
    let two = TestServer::start_with(Backend::Mongodb, shared).await;
    let admin = one.admin().await;
    let on_two = two.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    assert_eq!(one.get_json(&on_two, "/api/v1/me").await.0, 200);
    // Changed through replica one: the tokens of both replicas stop working on both.
    let resp = one
        .call(
            &admin,
            reqwest::Method::POST,
            "/api/v1/auth/change-password",
        )
        .json(
            &json!({"current_password": ADMIN_PASSWORD, "new_password": "replicated-orchard-lamp"}),
        )
        .send()
        .await
        .unwrap();
    let fresh = common::fresh_token(resp).await;
    for server in [&one, &two] {
        for old in [&admin, &on_two] {
            assert_eq!(server.get_json(old, "/api/v1/me").await.0, 401);
        }
        assert_eq!(server.get_json(&fresh, "/api/v1/me").await.0, 200);
    }
    one.stop().await;
    two.stop().await;
}
