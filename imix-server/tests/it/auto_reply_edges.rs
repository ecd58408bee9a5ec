//! Auto-reply at its edges, on both stores, against the Graph API and AI simulators: a
//! deactivated tenant's customers get no answer and the provider is not asked on its
//! behalf; a provider that keeps failing is asked a bounded number of times for a message
//! and never again later (the job is not retried by the poll), and nothing is sent;
//! settings bodies of the wrong JSON type answer 422 naming the field and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::{
    ai_auto_reply::{world, KEY, PHONE, SECRET, TOKEN},
    common,
};

use std::time::Duration;

use common::Backend;
use imix_ai::simulator::SimOutcome;
use imix_whatsapp::{
    simulator::Inbound,
    webhook::{InboundContent, InboundText},
};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_deactivated_tenants_customers_get_no_answer_and_no_provider_call,
    a_failing_provider_is_asked_a_bounded_number_of_times,
    settings_bodies_of_the_wrong_type_name_the_field_and_change_nothing,
);

async fn a_deactivated_tenants_customers_get_no_answer_and_no_provider_call(backend: Backend) {
    let w = world(backend, None).await;
    w.enable(json!({"enabled": true, "max_replies_per_conversation": 10}))
        .await;
    let conversation = w.inbound("15550100111", "Hello").await;
    assert_eq!(w.wait_sent(1).await, 1, "answered while active");
    let (status, v) =
        w.s.send_json(
            &w.platform,
            Method::POST,
            &format!("/api/v1/tenants/{}/deactivate", w.tenant),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    w.ai.reset();
    let (wamid, _) = w
        .sim
        .send_inbound(
            PHONE,
            Inbound::new(
                "15550100111",
                "Customer",
                InboundContent::Text {
                    text: InboundText {
                        body: "are you there?".into(),
                    },
                },
            ),
        )
        .await
        .unwrap();
    // The message is stored (the tenant's data stays intact); seen by the platform admin.
    let path = format!(
        "/api/v1/tenants/{}/conversations/{conversation}/messages?limit=100",
        w.tenant
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, msgs) = w.s.get_json(&w.platform, &path).await;
        assert_eq!(status, 200, "{msgs}");
        if msgs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["wamid"] == wamid.as_str())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not stored: {msgs}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Its job is handled at once (woken by ingest) and well within the poll period.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.sim.sent_messages().len(), 1, "nothing sent");
    assert_eq!(
        w.ai.requests().len(),
        0,
        "the provider is not asked on a deactivated tenant's behalf"
    );
    w.s.stop().await;
}

async fn a_failing_provider_is_asked_a_bounded_number_of_times(backend: Backend) {
    let w = world(backend, None).await;
    w.enable(json!({"enabled": true})).await;
    w.ai.script((0..40).map(|_| SimOutcome::ServerError));
    w.inbound("15550100111", "Hello").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while w.ai.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the provider was never asked"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The call's own retries end within the deadline...
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = w.ai.requests().len();
    assert!(asked <= 3, "one call with its retries: {asked}");
    // ...and the failed job is not taken again by the worker's poll (every 5 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(w.ai.requests().len(), asked, "not asked again");
    assert_eq!(w.sim.sent_messages().len(), 0, "nothing sent");
    let usage = w.get("/usage/ai").await;
    assert_eq!(
        usage["total_tokens"], 0,
        "a failed call counts nothing: {usage}"
    );
    assert_eq!(
        usage["reserved_tokens"], 0,
        "its reservation given back: {usage}"
    );
    w.s.stop().await;
}

async fn settings_bodies_of_the_wrong_type_name_the_field_and_change_nothing(backend: Backend) {
    let w = world(backend, None).await;
    for (body, field) in [
        (r#"{"enabled":"yes"}"#, "enabled"),
        (r#"{"enabled":null}"#, "enabled"),
        (r#"{}"#, "enabled"),
        (
            r#"{"enabled":true,"max_replies_per_conversation":"3"}"#,
            "max_replies_per_conversation",
        ),
        (
            r#"{"enabled":true,"max_replies_per_conversation":3.5}"#,
            "max_replies_per_conversation",
        ),
        (
            r#"{"enabled":true,"max_replies_per_conversation":18446744073709551616}"#,
            "max_replies_per_conversation",
        ),
        (
            r#"{"enabled":true,"max_replies_per_conversation":4294967297}"#,
            "max_replies_per_conversation",
        ),
        (r#"{"enabled":true,"mode":5}"#, "mode"),
        (r#"{"enabled":true,"mode":"ALWAYS"}"#, "mode"),
        ("{\"enabled\":true,\"mode\":\"always\\u0000\"}", "mode"),
        (r#"{"enabled":true,"mode":""}"#, "mode"),
    ] {
        let resp =
            w.s.call(&w.admin, Method::PUT, &w.settings_path())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_field", "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{body}: {v}");
        assert_eq!(v["error"]["details"]["field"], field, "{body}: {v}");
    }
    for body in ["[]", "null", "not json"] {
        let resp =
            w.s.call(&w.admin, Method::PUT, &w.settings_path())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "malformed_body", "{body}: {v}");
        assert!(v["error"]["details"].is_object(), "{body}: {v}");
    }
    let (status, v) = w.s.get_json(&w.admin, &w.settings_path()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 0, "nothing saved: {v}");
    assert_eq!(v["enabled"], false, "{v}");
    let text = v.to_string();
    assert!(!text.contains(TOKEN) && !text.contains(SECRET) && !text.contains(KEY));
    w.s.stop().await;
}
