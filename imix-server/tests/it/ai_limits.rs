//! The AI assistant's limits, on both stores, against the simulator: the daily token limit
//! under concurrent suggestions (reservations), a limit smaller than one call, the request
//! deadline (retries included), metering of broken or abandoned streams and of the
//! connection test, AI tokens in the tenant's usage, and settings bodies that are refused
//! in the product's words.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use crate::ai::{world_with, World};
use crate::common::Backend;
use futures::StreamExt;
use imix_ai::simulator::{SimOutcome, SimulatorConfig};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    concurrent_suggestions_never_pass_the_daily_limit,
    a_limit_smaller_than_one_call_is_422,
    the_deadline_bounds_retries_and_answers_ai_timeout,
    broken_and_abandoned_streams_and_tests_are_metered,
    settings_bodies_are_refused_in_the_products_words,
);

async fn usage(w: &World) -> Value {
    let (status, usage) =
        w.s.get_json(&w.admin, &format!("/api/v1/tenants/{}/usage/ai", w.tenant))
            .await;
    assert_eq!(status, 200, "{usage}");
    usage
}

/// Waits until no reservation is held (a dropped one is settled by a spawned task).
async fn settled(w: &World) -> Value {
    for _ in 0..200 {
        let u = usage(w).await;
        if u["reserved_tokens"] == 0 {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("a reservation stayed held: {}", usage(w).await);
}

async fn concurrent_suggestions_never_pass_the_daily_limit(backend: Backend) {
    // Every answer takes 300 ms, so the calls overlap.
    let w = world_with(
        backend,
        SimulatorConfig::default().with_response_delay(Duration::from_millis(300)),
        &[],
    )
    .await;
    w.platform_chatgpt().await;
    const LIMIT: u64 = 3000;
    let (status, body) = w
        .put_tenant(&w.platform, json!({"daily_token_limit": LIMIT}))
        .await;
    assert_eq!(status, 200, "{body}");
    let calls = (0..16).map(|_| async {
        let resp = w.post(&w.admin, &w.suggest_path()).await;
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    });
    let results = futures::future::join_all(calls).await;
    let passed = results.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(passed + refused.len(), 16, "only 200 or 429: {:?}", results);
    assert!(passed >= 1, "{results:?}");
    assert!(!refused.is_empty(), "16 overlapping calls cannot all fit");
    for err in &refused {
        assert_eq!(err["error"]["code"], "limit_reached", "{err}");
        assert_eq!(err["error"]["details"]["limit_name"], "ai_tokens");
        assert_eq!(err["error"]["details"]["limit"], LIMIT);
    }
    // Only the calls that passed reached the provider, and what they used stays within
    // the limit.
    assert_eq!(w.ai.requests().len(), passed);
    let u = settled(&w).await;
    let total = u["total_tokens"].as_u64().unwrap();
    assert!(total > 0 && total <= LIMIT, "{u}");
    let sum: u64 = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| {
            b["usage"]["prompt_tokens"].as_u64().unwrap()
                + b["usage"]["completion_tokens"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(total, sum, "each answer's usage counted once: {u}");

    // The tenant's usage view shows the same.
    let (status, tenant_usage) =
        w.s.get_json(&w.admin, &format!("/api/v1/tenants/{}/usage", w.tenant))
            .await;
    assert_eq!(status, 200, "{tenant_usage}");
    let ai = &tenant_usage["ai_tokens"];
    assert_eq!(ai["total_tokens"], total, "{tenant_usage}");
    assert_eq!(ai["prompt_tokens"], u["prompt_tokens"]);
    assert_eq!(ai["completion_tokens"], u["completion_tokens"]);
    assert_eq!(ai["reasoning_tokens"], 0);
    assert_eq!(ai["daily_token_limit"], LIMIT);
}

async fn a_limit_smaller_than_one_call_is_422(backend: Backend) {
    let w = world_with(backend, SimulatorConfig::default(), &[]).await;
    w.platform_chatgpt().await;
    let (status, _) = w
        .put_tenant(&w.platform, json!({"daily_token_limit": 1}))
        .await;
    assert_eq!(status, 200);
    let resp = w.post(&w.admin, &w.suggest_path()).await;
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "ai_limit_too_small", "{err}");
    assert_eq!(err["error"]["details"]["field"], "daily_token_limit");
    assert_eq!(err["error"]["details"]["limit"], 1);
    assert!(err["error"]["details"]["requested"].as_u64().unwrap() > 300);
    assert!(w.ai.requests().is_empty(), "refused before calling");
    let u = usage(&w).await;
    assert_eq!(u["total_tokens"], 0, "{u}");
    assert_eq!(u["reserved_tokens"], 0, "{u}");
}

async fn the_deadline_bounds_retries_and_answers_ai_timeout(backend: Backend) {
    let w = world_with(
        backend,
        SimulatorConfig::default(),
        &[("IMIX_AI_REQUEST_TIMEOUT_SECS", "1")],
    )
    .await;
    w.platform_chatgpt().await;
    // No single answer takes a second, but a server error, the backoff (250–500 ms) and a
    // 900 ms answer do.
    w.ai.script([SimOutcome::ServerError, SimOutcome::Slow { delay_ms: 900 }]);
    let started = Instant::now();
    let resp = w.post(&w.admin, &w.suggest_path()).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "ai_timeout", "{err}");
    assert_eq!(err["error"]["details"]["retryable"], true);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retries and fallback included"),
        "{err}"
    );
    // About one second (a loaded machine adds some).
    assert!(took < Duration::from_millis(2900), "{took:?}");
    assert_eq!(w.ai.requests().len(), 2, "retried within the deadline");
    // The cut call counts its prompt (the provider read it), nothing stays reserved.
    let u = settled(&w).await;
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{u}");
    assert_eq!(u["completion_tokens"], 0, "{u}");

    // A summary is bounded the same way; a stream too (before its first event).
    w.ai.reset();
    w.ai.script([SimOutcome::Slow { delay_ms: 3000 }]);
    let resp = w
        .post(
            &w.admin,
            &format!(
                "/api/v1/tenants/{}/conversations/{}/summarize",
                w.tenant, w.conversation
            ),
        )
        .await;
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "ai_timeout", "{err}");
    w.ai.reset();
    w.ai.script([SimOutcome::Slow { delay_ms: 3000 }]);
    let resp = w
        .post(&w.admin, &format!("{}?stream=true", w.suggest_path()))
        .await;
    assert_eq!(resp.status(), 504);

    // The connection test answers the classified timeout too.
    w.ai.reset();
    w.ai.script([SimOutcome::Slow { delay_ms: 3000 }]);
    let started = Instant::now();
    let (status, body) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &format!("/api/v1/tenants/{}/settings/ai/test", w.tenant),
            json!({"provider": "chatgpt"}),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "ai_timeout", "{body}");
    assert!(started.elapsed() < Duration::from_millis(2900));
    settled(&w).await;
}

async fn broken_and_abandoned_streams_and_tests_are_metered(backend: Backend) {
    let w = world_with(
        backend,
        SimulatorConfig::default().with_chunk_delay(Duration::from_millis(150)),
        &[],
    )
    .await;
    w.platform_chatgpt().await;

    // The connection test of the tenant counts its tokens.
    let (status, body) =
        w.s.send_json(
            &w.admin,
            Method::POST,
            &format!("/api/v1/tenants/{}/settings/ai/test", w.tenant),
            json!({"provider": "chatgpt"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after_test = settled(&w).await;
    assert!(
        after_test["prompt_tokens"].as_u64().unwrap() > 0,
        "{after_test}"
    );
    assert!(after_test["completion_tokens"].as_u64().unwrap() > 0);

    // A stream cut by the provider before `[DONE]` ends with an error event and counts
    // the prompt and what arrived.
    w.ai.script([SimOutcome::CutStream { after: 3 }]);
    let resp = w
        .post(&w.admin, &format!("{}?stream=true", w.suggest_path()))
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{text}");
    assert_eq!(last["code"], "ai_network_error", "{text}");
    let after_cut = settled(&w).await;
    let grew = |a: &Value, b: &Value, k: &str| b[k].as_u64().unwrap() > a[k].as_u64().unwrap();
    assert!(
        grew(&after_test, &after_cut, "prompt_tokens"),
        "{after_cut}"
    );
    assert!(
        grew(&after_test, &after_cut, "completion_tokens"),
        "{after_cut}"
    );

    // A stream the client closes after its first event counts too (the reservation
    // dropped with the stream is settled to what was seen).
    let resp = w
        .post(&w.admin, &format!("{}?stream=true", w.suggest_path()))
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let after_close = settled(&w).await;
    assert!(
        grew(&after_cut, &after_close, "prompt_tokens"),
        "{after_close}"
    );

    // A whole streamed suggestion counts the provider's usage.
    let resp = w
        .post(&w.admin, &format!("{}?stream=true", w.suggest_path()))
        .await;
    let text = resp.text().await.unwrap();
    let done: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .next_back()
        .unwrap();
    assert_eq!(done["type"], "done", "{text}");
    let after_done = settled(&w).await;
    assert_eq!(
        after_done["prompt_tokens"].as_u64().unwrap(),
        after_close["prompt_tokens"].as_u64().unwrap()
            + done["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

async fn settings_bodies_are_refused_in_the_products_words(backend: Backend) {
    let w = world_with(backend, SimulatorConfig::default(), &[]).await;
    // A wrong JSON type is 422 naming the field, never a Rust type.
    for (body, field) in [
        (
            json!({"providers": {"chatgpt": {"temperature": "hot"}}}),
            "providers.chatgpt.temperature",
        ),
        (
            json!({"providers": {"chatgpt": {"max_tokens": "many"}}}),
            "providers.chatgpt.max_tokens",
        ),
        (json!({"providers": {"chatgpt": 5}}), "providers.chatgpt"),
        (json!({"providers": []}), "providers"),
        (json!({"fallback_order": "chatgpt"}), "fallback_order"),
        (
            json!({"business_hours": {"days": {}}}),
            "business_hours.time_zone",
        ),
        (
            json!({"business_hours": {"time_zone": "UTC", "days": {"monday": [{"open": 9, "close": "17:00"}]}}}),
            "business_hours.days.monday[0].open",
        ),
        (json!({"daily_token_limit": 1.5}), "daily_token_limit"),
    ] {
        let (status, err) = w.put_tenant(&w.admin, body.clone()).await;
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["error"]["code"], "invalid_field", "{body} -> {err}");
        assert_eq!(err["error"]["details"]["field"], field, "{body} -> {err}");
        let text = err.to_string();
        for rust in [
            "f64",
            "i64",
            "u64",
            "invalid type",
            "Update",
            "Body",
            "BTreeMap",
            "Vec<",
            "String",
        ] {
            assert!(!text.contains(rust), "{body} -> {text}");
        }
    }
    // -0.0 is stored and shown as 0.0.
    let (status, body) = w
        .put_tenant(
            &w.admin,
            json!({"providers": {"chatgpt": {"api_key": "sk-test-tenant-9876543210wxyz", "temperature": -0.0}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let shown = body["providers"]["chatgpt"]["temperature"].to_string();
    assert_eq!(shown, "0.0", "{body}");
    // Invisible characters in the instructions are refused, naming the field.
    for hidden in [
        "\u{200b}",
        "\u{feff}",
        "\u{2060}",
        "\u{e0041}",
        "\u{202e}",
        "\u{7}",
    ] {
        let (status, err) = w
            .put_tenant(
                &w.admin,
                json!({"instructions": format!("Never promise{hidden} refunds.")}),
            )
            .await;
        assert_eq!(status, 422, "{hidden:?} -> {err}");
        assert_eq!(err["error"]["details"]["field"], "instructions", "{err}");
    }
    // Arabic-script text keeps its zero-width non-joiner.
    let (status, body) = w
        .put_tenant(
            &w.admin,
            json!({"instructions": "می\u{200c}خواهم: always polite."}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
