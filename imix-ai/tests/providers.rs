//! The provider adapters against the simulator over HTTP, with the real reqwest client:
//! request bodies, responses, every error class, streams, retries and fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use imix_ai::simulator::{
    self, reasoning_for, reply_for, SimModel, SimOutcome, SimulatorConfig, SimulatorHandle,
    SIM_API_KEY,
};
use imix_ai::{
    build_provider, AiError, AiProvider, ChatMessage, ChatRequest, FallbackChain, ProviderConfig,
    ProviderKind, RetryPolicy, StreamEvent,
};
use secrecy::SecretString;
use serde_json::{json, Value};

async fn sim() -> SimulatorHandle {
    simulator::spawn(SimulatorConfig::default()).await.unwrap()
}

fn config(kind: ProviderKind, sim: &SimulatorHandle) -> ProviderConfig {
    let base = match kind {
        ProviderKind::Chatgpt => sim.openai_base_url(),
        ProviderKind::Deepseek => sim.deepseek_base_url(),
    };
    ProviderConfig::new(kind, SecretString::from(SIM_API_KEY))
        .with_base_url(base)
        .with_timeout(Duration::from_secs(5))
}

fn provider(kind: ProviderKind, sim: &SimulatorHandle) -> Arc<dyn AiProvider> {
    build_provider(config(kind, sim), reqwest::Client::new())
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("You draft replies for a shop's agents."),
            ChatMessage::user(text),
        ],
        model: String::new(),
        temperature: None,
        max_tokens: None,
    }
}

fn last_body(sim: &SimulatorHandle) -> Value {
    sim.requests().last().expect("a request").body.clone()
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(3),
    }
}

async fn collect(stream: imix_ai::ChatStream) -> Vec<Result<StreamEvent, AiError>> {
    stream.collect().await
}

#[tokio::test]
async fn chatgpt_answers_with_usage_and_gets_the_documented_body() {
    let sim = sim().await;
    let p = build_provider(
        config(ProviderKind::Chatgpt, &sim)
            .with_temperature(Some(0.3))
            .with_max_tokens(Some(200)),
        reqwest::Client::new(),
    );
    assert_eq!(p.kind(), ProviderKind::Chatgpt);
    assert_eq!(p.model(), "gpt-4o-mini");
    let answer = p.complete(&ask("Where is my order 42?")).await.unwrap();
    assert_eq!(answer.provider, ProviderKind::Chatgpt);
    assert_eq!(answer.model, "gpt-4o-mini");
    assert_eq!(answer.content, reply_for("Where is my order 42?"));
    assert_eq!(answer.reasoning, None);
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);
    assert_eq!(answer.usage.reasoning_tokens, 0);

    let sent = &sim.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(sent.body["temperature"], json!(0.3));
    assert_eq!(sent.body["max_completion_tokens"], 200);
    assert!(sent.body.get("max_tokens").is_none());
    assert!(sent.body.get("stream").is_none());
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_eq!(sent.body["messages"][1]["content"], "Where is my order 42?");
}

#[tokio::test]
async fn the_smaller_token_bound_and_the_requests_model_win() {
    let sim = sim().await;
    let p = build_provider(
        config(ProviderKind::Chatgpt, &sim).with_max_tokens(Some(200)),
        reqwest::Client::new(),
    );
    let mut req = ask("hello");
    req.max_tokens = Some(5);
    req.model = "gpt-4o".to_owned();
    let answer = p.complete(&req).await.unwrap();
    assert_eq!(answer.model, "gpt-4o");
    // The simulator cuts an answer longer than the bound.
    assert_eq!(answer.finish_reason.as_deref(), Some("length"));
    assert_eq!(answer.content.chars().count(), 20);
    assert_eq!(last_body(&sim)["max_completion_tokens"], 5);
}

#[tokio::test]
async fn deepseek_reasoner_keeps_reasoning_apart_and_gets_no_sampling_parameters() {
    let sim = sim().await;
    let p = build_provider(
        config(ProviderKind::Deepseek, &sim)
            .with_temperature(Some(0.7))
            .with_max_tokens(Some(1000)),
        reqwest::Client::new(),
    );
    assert_eq!(p.model(), "deepseek-reasoner");
    let mut req = ask("Bonjour, avez-vous des chaussures en 42 ?");
    req.temperature = Some(0.9);
    let answer = p.complete(&req).await.unwrap();
    assert_eq!(
        answer.content,
        reply_for("Bonjour, avez-vous des chaussures en 42 ?")
    );
    assert_eq!(
        answer.reasoning.as_deref(),
        Some(reasoning_for("Bonjour, avez-vous des chaussures en 42 ?").as_str())
    );
    assert!(!answer.content.contains("The customer wrote"));
    assert!(answer.usage.reasoning_tokens > 0);
    assert!(answer.usage.completion_tokens > answer.usage.reasoning_tokens);

    let sent = &sim.requests()[0];
    assert_eq!(sent.path, "/api/v1/chat/completions");
    assert_eq!(sent.body["model"], "deepseek-reasoner");
    assert_eq!(sent.body["max_tokens"], 1000);
    for absent in [
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "max_completion_tokens",
        "stream_options",
    ] {
        assert!(
            sent.body.get(absent).is_none(),
            "{absent} sent: {}",
            sent.body
        );
    }
}

#[tokio::test]
async fn deepseek_chat_gets_its_temperature() {
    let sim = sim().await;
    let p = build_provider(
        config(ProviderKind::Deepseek, &sim)
            .with_model("deepseek-chat")
            .with_temperature(Some(0.5)),
        reqwest::Client::new(),
    );
    let answer = p.complete(&ask("hi")).await.unwrap();
    assert_eq!(answer.reasoning, None);
    assert_eq!(last_body(&sim)["temperature"], json!(0.5));
}

#[tokio::test]
async fn each_scripted_error_is_classified_for_both_providers() {
    let sim = sim().await;
    let cases = [
        (SimOutcome::InvalidKey, "ai_invalid_key", false),
        (SimOutcome::ModelNotFound, "ai_model_not_found", false),
        (
            SimOutcome::RateLimited { retry_after: None },
            "ai_rate_limited",
            true,
        ),
        (SimOutcome::InsufficientQuota, "ai_quota_exceeded", false),
        (SimOutcome::InsufficientBalance, "ai_quota_exceeded", false),
        (SimOutcome::ContextTooLong, "ai_context_too_long", false),
        (SimOutcome::ServerError, "ai_provider_error", true),
        (SimOutcome::Overloaded, "ai_provider_error", true),
        (SimOutcome::BadJson, "ai_bad_response", false),
    ];
    for kind in ProviderKind::ALL {
        let p = provider(kind, &sim);
        for (outcome, code, retryable) in &cases {
            sim.script([outcome.clone()]);
            let e = p.complete(&ask("hi")).await.unwrap_err();
            assert_eq!(e.code(), *code, "{kind} {outcome:?}: {e}");
            assert_eq!(e.is_retryable(), *retryable, "{kind} {outcome:?}");
            assert_eq!(e.provider(), Some(kind));
            assert!(!e.to_string().is_empty());
        }
    }
}

#[tokio::test]
async fn real_checks_refuse_a_wrong_key_an_unknown_model_and_a_long_prompt() {
    let sim =
        simulator::spawn(SimulatorConfig::default().with_model(SimModel::new("gpt-4o-mini", 100)))
            .await
            .unwrap();
    for kind in ProviderKind::ALL {
        let wrong = build_provider(
            ProviderConfig {
                api_key: SecretString::from("sk-not-the-right-one"),
                ..config(kind, &sim)
            },
            reqwest::Client::new(),
        );
        let e = wrong.complete(&ask("hi")).await.unwrap_err();
        assert!(
            matches!(e, AiError::InvalidKey { status: 401, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("API key"), "{e}");

        let unknown = build_provider(
            config(kind, &sim).with_model(format!("{kind}-nonexistent")),
            reqwest::Client::new(),
        );
        let e = unknown.complete(&ask("hi")).await.unwrap_err();
        assert!(matches!(e, AiError::ModelNotFound { .. }), "{kind}: {e:?}");
    }
    // 100 tokens of context: a 1000-character prompt does not fit.
    let p = provider(ProviderKind::Chatgpt, &sim);
    let e = p.complete(&ask(&"word ".repeat(200))).await.unwrap_err();
    assert!(matches!(e, AiError::ContextTooLong { .. }), "{e:?}");
    assert!(
        e.to_string().contains("maximum context length is 100"),
        "{e}"
    );
    assert!(p.complete(&ask("short")).await.is_ok());
}

#[tokio::test]
async fn a_rate_limit_carries_retry_after() {
    let sim = sim().await;
    sim.script([SimOutcome::RateLimited {
        retry_after: Some(7),
    }]);
    let e = provider(ProviderKind::Deepseek, &sim)
        .complete(&ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.to_string().contains("7s"), "{e}");
}

#[tokio::test]
async fn a_slow_provider_times_out_and_an_unreachable_one_is_a_network_error() {
    let sim = sim().await;
    sim.script([SimOutcome::Slow { delay_ms: 2000 }]);
    let p = build_provider(
        config(ProviderKind::Chatgpt, &sim).with_timeout(Duration::from_millis(300)),
        reqwest::Client::new(),
    );
    let started = Instant::now();
    let e = p.complete(&ask("hi")).await.unwrap_err();
    assert!(matches!(e, AiError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_millis(1500));

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let p = build_provider(
        config(ProviderKind::Deepseek, &sim)
            .with_base_url(format!("http://127.0.0.1:{port}/api/v1")),
        reqwest::Client::new(),
    );
    let e = p.complete(&ask("hi")).await.unwrap_err();
    assert!(matches!(e, AiError::Network { .. }), "{e:?}");
    assert_eq!(e.code(), "ai_network_error");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn connection_test_reports_model_and_latency() {
    let sim = sim().await;
    let report = provider(ProviderKind::Deepseek, &sim)
        .test_connection()
        .await
        .unwrap();
    assert_eq!(report.provider, ProviderKind::Deepseek);
    assert_eq!(report.model, "deepseek-reasoner");
    assert!(report.latency > Duration::ZERO);
    assert_eq!(last_body(&sim)["max_tokens"], 16);

    sim.script([SimOutcome::InvalidKey]);
    let e = provider(ProviderKind::Chatgpt, &sim)
        .test_connection()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ai_invalid_key");
}

#[tokio::test]
async fn chatgpt_streams_content_then_done_with_usage() {
    let sim = sim().await;
    let p = provider(ProviderKind::Chatgpt, &sim);
    let events = collect(
        p.stream(&ask("Can I return the blue shoes?"))
            .await
            .unwrap(),
    )
    .await;
    let events: Vec<StreamEvent> = events.into_iter().map(Result::unwrap).collect();
    assert!(events.len() > 3, "{events:?}");
    let content: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Content(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(content, reply_for("Can I return the blue shoes?"));
    assert!(!events
        .iter()
        .any(|e| matches!(e, StreamEvent::Reasoning(_))));
    match events.last() {
        Some(StreamEvent::Done {
            model,
            usage: Some(usage),
            finish_reason,
        }) => {
            assert_eq!(model, "gpt-4o-mini");
            assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
            assert_eq!(finish_reason.as_deref(), Some("stop"));
        }
        other => panic!("expected Done with usage, got {other:?}"),
    }
    let body = last_body(&sim);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn deepseek_streams_reasoning_before_content_past_keep_alives() {
    let sim =
        simulator::spawn(SimulatorConfig::default().with_chunk_delay(Duration::from_millis(2)))
            .await
            .unwrap();
    let p = provider(ProviderKind::Deepseek, &sim);
    let text = "Do you deliver to Nouakchott on Fridays?";
    let events: Vec<StreamEvent> = collect(p.stream(&ask(text)).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let first_content = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Content(_)))
        .unwrap();
    let last_reasoning = events
        .iter()
        .rposition(|e| matches!(e, StreamEvent::Reasoning(_)))
        .unwrap();
    assert!(last_reasoning < first_content, "{events:?}");
    let reasoning: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Reasoning(r) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    let content: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Content(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, reasoning_for(text));
    assert_eq!(content, reply_for(text));
    let Some(StreamEvent::Done {
        usage: Some(usage), ..
    }) = events.last()
    else {
        panic!("no Done with usage: {events:?}");
    };
    assert!(usage.reasoning_tokens > 0);
    // Exactly one Done, at the end.
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Done { .. }))
            .count(),
        1
    );
    let body = last_body(&sim);
    assert_eq!(body["stream"], true);
    assert!(body.get("stream_options").is_none());
    assert!(body.get("temperature").is_none());
}

#[tokio::test]
async fn the_wire_carries_keep_alives_and_done_that_the_adapter_skips() {
    let sim = sim().await;
    let raw = reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.deepseek_base_url()))
        .bearer_auth(SIM_API_KEY)
        .json(&json!({"model": "deepseek-reasoner", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = raw.text().await.unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(text.contains("\"object\":\"chat.completion.chunk\""));
    assert!(text.contains("\"reasoning_content\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_failing_part_way_ends_with_an_error_item() {
    let sim = sim().await;
    for kind in ProviderKind::ALL {
        let p = provider(kind, &sim);
        sim.script([SimOutcome::CutStream { after: 3 }]);
        let events = collect(p.stream(&ask("one two three four five six")).await.unwrap()).await;
        assert!(events.iter().take(events.len() - 1).all(Result::is_ok));
        let e = events.last().unwrap().as_ref().unwrap_err();
        assert!(matches!(e, AiError::Network { .. }), "{e:?}");
        assert!(e.to_string().contains("[DONE]"), "{e}");

        sim.script([SimOutcome::StreamError { after: 2 }]);
        let events = collect(p.stream(&ask("one two three four five six")).await.unwrap()).await;
        let e = events.last().unwrap().as_ref().unwrap_err();
        assert!(matches!(e, AiError::Server { .. }), "{e:?}");
        assert!(!events
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::Done { .. }))));
    }
    // An error before the stream starts is the call's error.
    sim.script([SimOutcome::RateLimited {
        retry_after: Some(1),
    }]);
    let e = provider(ProviderKind::Chatgpt, &sim)
        .stream(&ask("hi"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn retry_after_is_honoured_before_asking_again() {
    let sim = sim().await;
    sim.script([SimOutcome::RateLimited {
        retry_after: Some(1),
    }]);
    let chain = FallbackChain::new(vec![provider(ProviderKind::Chatgpt, &sim)], fast_policy(3));
    let started = Instant::now();
    let answer = chain.complete(&ask("hi")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(answer.provider, ProviderKind::Chatgpt);
    assert_eq!(sim.requests().len(), 2);
}

#[tokio::test]
async fn retryable_errors_are_retried_then_the_next_provider_answers() {
    let (a, b) = (sim().await, sim().await);
    a.script([SimOutcome::ServerError, SimOutcome::Overloaded]);
    let chain = FallbackChain::new(
        vec![
            provider(ProviderKind::Chatgpt, &a),
            provider(ProviderKind::Deepseek, &b),
        ],
        fast_policy(2),
    );
    let answer = chain.complete(&ask("hi")).await.unwrap();
    assert_eq!(answer.provider, ProviderKind::Deepseek);
    assert_eq!(answer.model, "deepseek-reasoner");
    assert_eq!(a.requests().len(), 2);
    assert_eq!(b.requests().len(), 1);
}

#[tokio::test]
async fn errors_that_waiting_does_not_cure_go_to_the_next_provider_at_once() {
    for outcome in [
        SimOutcome::InvalidKey,
        SimOutcome::ModelNotFound,
        SimOutcome::ContextTooLong,
        SimOutcome::InsufficientQuota,
        SimOutcome::RateLimited {
            retry_after: Some(60),
        },
    ] {
        let (a, b) = (sim().await, sim().await);
        a.script([outcome.clone()]);
        let chain = FallbackChain::new(
            vec![
                provider(ProviderKind::Chatgpt, &a),
                provider(ProviderKind::Deepseek, &b),
            ],
            fast_policy(3),
        );
        let started = Instant::now();
        let answer = chain.complete(&ask("hi")).await.unwrap();
        assert_eq!(answer.provider, ProviderKind::Deepseek, "{outcome:?}");
        assert_eq!(a.requests().len(), 1, "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{outcome:?}");
    }
}

#[tokio::test]
async fn when_every_provider_fails_the_last_error_is_answered() {
    let (a, b) = (sim().await, sim().await);
    a.script([SimOutcome::InvalidKey]);
    b.script([SimOutcome::InsufficientBalance]);
    let chain = FallbackChain::new(
        vec![
            provider(ProviderKind::Chatgpt, &a),
            provider(ProviderKind::Deepseek, &b),
        ],
        fast_policy(3),
    );
    let e = chain.complete(&ask("hi")).await.unwrap_err();
    assert_eq!(e.code(), "ai_quota_exceeded");
    assert_eq!(e.provider(), Some(ProviderKind::Deepseek));

    let empty = FallbackChain::new(Vec::new(), RetryPolicy::default());
    assert_eq!(
        empty.complete(&ask("hi")).await.unwrap_err().code(),
        "ai_not_configured"
    );
}

#[tokio::test]
async fn a_chain_asks_each_provider_with_its_own_model() {
    let (a, b) = (sim().await, sim().await);
    a.script([SimOutcome::InvalidKey]);
    let chain = FallbackChain::new(
        vec![
            provider(ProviderKind::Chatgpt, &a),
            provider(ProviderKind::Deepseek, &b),
        ],
        fast_policy(1),
    );
    let mut req = ask("hi");
    req.model = "gpt-4o".to_owned();
    chain.complete(&req).await.unwrap();
    assert_eq!(a.requests()[0].body["model"], "gpt-4o-mini");
    assert_eq!(b.requests()[0].body["model"], "deepseek-reasoner");
}

#[tokio::test]
async fn a_chain_stream_falls_back_only_before_the_first_event() {
    let (a, b) = (sim().await, sim().await);
    a.script([SimOutcome::Overloaded, SimOutcome::StreamError { after: 0 }]);
    let chain = FallbackChain::new(
        vec![
            provider(ProviderKind::Chatgpt, &a),
            provider(ProviderKind::Deepseek, &b),
        ],
        fast_policy(2),
    );
    let served = chain.stream(&ask("hi there")).await.unwrap();
    assert_eq!(served.provider, ProviderKind::Deepseek);
    assert_eq!(served.model, "deepseek-reasoner");
    let events = collect(served.stream).await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done { .. }))));
    assert_eq!(a.requests().len(), 2);

    // Once a piece was handed out, a failure is the caller's, not retried elsewhere.
    let (a, b) = (sim().await, sim().await);
    a.script([SimOutcome::CutStream { after: 3 }]);
    let chain = FallbackChain::new(
        vec![
            provider(ProviderKind::Chatgpt, &a),
            provider(ProviderKind::Deepseek, &b),
        ],
        fast_policy(3),
    );
    let served = chain.stream(&ask("one two three four five")).await.unwrap();
    assert_eq!(served.provider, ProviderKind::Chatgpt);
    let events = collect(served.stream).await;
    assert!(events.first().unwrap().is_ok());
    assert!(events.last().unwrap().is_err());
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 0);
}

#[tokio::test]
async fn the_key_never_shows_in_debug_or_errors() {
    let sim = sim().await;
    let secret = "sk-live-abcdefghijklmnopqrstuvwxyz0123456789";
    let cfg = ProviderConfig {
        api_key: SecretString::from(secret),
        ..config(ProviderKind::Chatgpt, &sim)
    };
    assert!(!format!("{cfg:?}").contains(secret));
    assert!(!format!("{cfg:?}").contains("abcdefghij"));
    let p = build_provider(cfg, reqwest::Client::new());
    let e = p.complete(&ask("hi")).await.unwrap_err();
    assert_eq!(e.code(), "ai_invalid_key");
    assert!(!format!("{e:?}").contains(secret));
    assert!(!e.to_string().contains(secret));
    let chain = FallbackChain::new(vec![p], RetryPolicy::default());
    assert!(!format!("{chain:?}").contains(secret));
}

#[tokio::test]
async fn the_control_endpoints_script_and_record_over_http() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let queued: Value = http
        .post(format!("{}/__sim/script", sim.base_url))
        .json(&json!([{"kind": "rate_limited", "retry_after": 2}, {"kind": "answer", "content": "Scripted."}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["queued"], 2);
    let p = provider(ProviderKind::Chatgpt, &sim);
    assert_eq!(
        p.complete(&ask("hi")).await.unwrap_err().retry_after(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(p.complete(&ask("hi")).await.unwrap().content, "Scripted.");
    let recorded: Value = http
        .get(format!("{}/__sim/requests", sim.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded.as_array().unwrap().len(), 2);
    assert_eq!(recorded[0]["path"], "/v1/chat/completions");
    assert_eq!(recorded[0]["body"]["model"], "gpt-4o-mini");
    http.post(format!("{}/__sim/reset", sim.base_url))
        .send()
        .await
        .unwrap();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn an_inline_think_block_from_deepseek_is_reasoning_not_answer() {
    let sim = sim().await;
    let p = build_provider(
        config(ProviderKind::Deepseek, &sim).with_model("deepseek-chat"),
        reqwest::Client::new(),
    );
    let scripted = SimOutcome::Answer {
        content: Some("<think>They ask about hours.</think>\n\nWe open at nine.".to_owned()),
        reasoning: None,
    };
    sim.script([scripted.clone()]);
    let answer = p.complete(&ask("hours?")).await.unwrap();
    assert_eq!(answer.content, "We open at nine.");
    assert_eq!(answer.reasoning.as_deref(), Some("They ask about hours."));

    sim.script([scripted]);
    let events: Vec<StreamEvent> = collect(p.stream(&ask("hours?")).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (mut reasoning, mut content) = (String::new(), String::new());
    for e in &events {
        match e {
            StreamEvent::Reasoning(r) => reasoning.push_str(r),
            StreamEvent::Content(c) => content.push_str(c),
            StreamEvent::Done { .. } => {}
        }
    }
    assert_eq!(reasoning, "They ask about hours.");
    assert_eq!(content, "We open at nine.");

    // ChatGPT's content is left as it is.
    sim.script([SimOutcome::Answer {
        content: Some("<think>x</think>y".to_owned()),
        reasoning: None,
    }]);
    let answer = provider(ProviderKind::Chatgpt, &sim)
        .complete(&ask("hi"))
        .await
        .unwrap();
    assert_eq!(answer.content, "<think>x</think>y");
}

#[tokio::test]
async fn an_answer_past_the_size_cap_is_refused_not_buffered() {
    let sim = sim().await;
    let p = provider(ProviderKind::Chatgpt, &sim);
    sim.script([SimOutcome::Answer {
        content: Some("x".repeat(5 * 1024 * 1024)),
        reasoning: None,
    }]);
    let err = p.complete(&ask("hi")).await.unwrap_err();
    assert!(matches!(err, AiError::BadResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than"), "{err}");
    // An ordinary answer still passes.
    assert!(!p.complete(&ask("hi")).await.unwrap().content.is_empty());
}
