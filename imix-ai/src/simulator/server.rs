//! The simulator's routes and answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, EndpointExt, Request, Response, Route};
use serde_json::{json, Value};

use super::{approx_tokens, reasoning_for, reply_for, SimModel, SimOutcome, SimRequest, State};

/// The simulator's app.
pub(crate) fn routes(state: Arc<State>) -> impl poem::Endpoint {
    Route::new()
        .at("/v1/chat/completions", poem::post(chat))
        .at("/api/v1/chat/completions", poem::post(chat))
        .at("/chat/completions", poem::post(chat))
        .at("/__sim/script", poem::post(script))
        .at("/__sim/requests", poem::get(requests))
        .at("/__sim/reset", poem::post(reset))
        .data(state)
}

#[handler]
fn script(body: Bytes, Data(state): Data<&Arc<State>>) -> Response {
    match serde_json::from_slice::<Vec<SimOutcome>>(&body) {
        Ok(outcomes) => {
            let queued = state.with(|q| {
                q.extend(outcomes);
                q.len()
            });
            json_response(StatusCode::OK, &json!({ "queued": queued }))
        }
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": { "message": format!("expected a JSON array of outcomes: {e}") } }),
        ),
    }
}

#[handler]
fn requests(Data(state): Data<&Arc<State>>) -> Response {
    let all = state.requests().clone();
    json_response(StatusCode::OK, &json!(all))
}

#[handler]
fn reset(Data(state): Data<&Arc<State>>) -> Response {
    state.with(|q| q.clear());
    state.requests().clear();
    json_response(StatusCode::OK, &json!({ "reset": true }))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(value.to_string())
}

/// Whose error and stream shapes to use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    OpenAi,
    DeepSeek,
}

impl Flavour {
    fn of(model: &str) -> Flavour {
        if model.to_ascii_lowercase().starts_with("deepseek") {
            Flavour::DeepSeek
        } else {
            Flavour::OpenAi
        }
    }
}

/// A documented error answer.
fn error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({ "error": { "message": message, "type": kind, "param": param, "code": code } }),
    )
}

fn invalid_key(flavour: Flavour, key: &str) -> Response {
    // Both providers echo a masked key; we show its last 4 characters at most.
    let tail: String = {
        let chars: Vec<char> = key.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    match flavour {
        Flavour::OpenAi => error(
            401,
            &format!("Incorrect API key provided: ****{tail}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        Flavour::DeepSeek => error(
            401,
            &format!("Authentication Fails, Your api key: ****{tail} is invalid"),
            "authentication_error",
            None,
            Some("invalid_request_error"),
        ),
    }
}

fn model_not_found(flavour: Flavour, model: &str) -> Response {
    match flavour {
        Flavour::OpenAi => error(
            404,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        Flavour::DeepSeek => error(
            400,
            "Model Not Exist",
            "invalid_request_error",
            None,
            Some("invalid_request_error"),
        ),
    }
}

fn context_too_long(flavour: Flavour, limit: u64, prompt: u64, completion: u64) -> Response {
    let message = format!(
        "This model's maximum context length is {limit} tokens. However, you requested {} tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the messages or completion.",
        prompt + completion
    );
    match flavour {
        Flavour::OpenAi => error(
            400,
            &message,
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        Flavour::DeepSeek => error(
            400,
            &message,
            "invalid_request_error",
            None,
            Some("invalid_request_error"),
        ),
    }
}

fn rate_limited(flavour: Flavour, model: &str, retry_after: Option<u64>) -> Response {
    let message = match flavour {
        Flavour::OpenAi => format!("Rate limit reached for {model} in organization org-sim on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {}s.", retry_after.unwrap_or(20)),
        Flavour::DeepSeek => "Rate Limit Reached".to_owned(),
    };
    let mut response = error(429, &message, "requests", None, Some("rate_limit_exceeded"));
    if let Some(secs) = retry_after {
        if let Ok(v) = poem::http::HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert("retry-after", v);
        }
    }
    response
}

fn server_error(flavour: Flavour, status: u16) -> Response {
    match (status, flavour) {
        (503, Flavour::DeepSeek) => error(503, "Server Overloaded", "server_error", None, None),
        (503, Flavour::OpenAi) => error(
            503,
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            None,
        ),
        _ => error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
    }
}

fn scripted_error(outcome: &SimOutcome, flavour: Flavour, model: &str) -> Option<Response> {
    Some(match outcome {
        SimOutcome::InvalidKey => invalid_key(flavour, "sk-wrong-key"),
        SimOutcome::ModelNotFound => model_not_found(flavour, model),
        SimOutcome::RateLimited { retry_after } => rate_limited(flavour, model, *retry_after),
        SimOutcome::InsufficientQuota => error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            None,
            Some("insufficient_quota"),
        ),
        SimOutcome::InsufficientBalance => error(
            402,
            "Insufficient Balance",
            "unknown_error",
            None,
            Some("invalid_request_error"),
        ),
        SimOutcome::ContextTooLong => context_too_long(flavour, 65_536, 70_000, 0),
        SimOutcome::ServerError => server_error(flavour, 500),
        SimOutcome::Overloaded => server_error(flavour, 503),
        SimOutcome::BadJson => Response::builder()
            .status(StatusCode::OK)
            .content_type("application/json")
            .body("{\"id\": \"chatcmpl-broken\", \"choices\": [ ..."),
        SimOutcome::Answer { .. } | SimOutcome::Slow { .. } => return None,
        SimOutcome::CutStream { .. } | SimOutcome::StreamError { .. } => return None,
    })
}

/// What one answer consists of.
struct Answer {
    id: String,
    created: u64,
    model: String,
    content: String,
    reasoning: Option<String>,
    finish_reason: &'static str,
    prompt_tokens: u64,
    flavour: Flavour,
}

impl Answer {
    fn usage(&self) -> Value {
        let reasoning = self.reasoning.as_deref().map(approx_tokens).unwrap_or(0);
        let completion = approx_tokens(&self.content) + reasoning;
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "completion_tokens_details": { "reasoning_tokens": reasoning },
        });
        if self.flavour == Flavour::DeepSeek {
            // DeepSeek reports its context cache; all misses here.
            usage["prompt_cache_hit_tokens"] = json!(0);
            usage["prompt_cache_miss_tokens"] = json!(self.prompt_tokens);
        } else {
            usage["prompt_tokens_details"] = json!({ "cached_tokens": 0 });
        }
        usage
    }

    fn full(&self) -> Value {
        let mut message = json!({ "role": "assistant", "content": self.content });
        if let Some(r) = &self.reasoning {
            message["reasoning_content"] = json!(r);
        }
        if self.flavour == Flavour::OpenAi {
            message["refusal"] = Value::Null;
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_sim",
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage(),
        })
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_sim",
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if let Some(u) = usage {
            chunk["usage"] = u;
        }
        chunk
    }

    /// The SSE frames of the answer: `Data` chunks and `Comment` keep-alives.
    fn frames(&self, include_usage: bool) -> Vec<Frame> {
        let deepseek = self.flavour == Flavour::DeepSeek;
        // OpenAI sends `"usage": null` in every chunk when usage was asked for.
        let null_usage = || (include_usage && !deepseek).then_some(Value::Null);
        let mut frames = Vec::new();
        if deepseek {
            frames.push(Frame::Comment);
        }
        let first = match (&self.reasoning, deepseek) {
            (Some(_), _) => {
                json!({ "role": "assistant", "content": null, "reasoning_content": "" })
            }
            (None, true) => json!({ "role": "assistant", "content": "" }),
            (None, false) => json!({ "role": "assistant", "content": "", "refusal": null }),
        };
        frames.push(Frame::Data(self.chunk(first, None, null_usage())));
        if let Some(reasoning) = &self.reasoning {
            for piece in pieces(reasoning) {
                frames.push(Frame::Data(self.chunk(
                    json!({ "content": null, "reasoning_content": piece }),
                    None,
                    null_usage(),
                )));
            }
            frames.push(Frame::Comment);
        }
        for piece in pieces(&self.content) {
            let delta = if self.reasoning.is_some() {
                json!({ "content": piece, "reasoning_content": null })
            } else {
                json!({ "content": piece })
            };
            frames.push(Frame::Data(self.chunk(delta, None, null_usage())));
        }
        if deepseek {
            let last = json!({ "content": "", "reasoning_content": null });
            frames.push(Frame::Data(self.chunk(
                last,
                Some(self.finish_reason),
                Some(self.usage()),
            )));
        } else {
            frames.push(Frame::Data(self.chunk(
                json!({}),
                Some(self.finish_reason),
                null_usage(),
            )));
            if include_usage {
                let mut chunk = self.chunk(json!({}), None, Some(self.usage()));
                chunk["choices"] = json!([]);
                frames.push(Frame::Data(chunk));
            }
        }
        frames
    }
}

enum Frame {
    Data(Value),
    Comment,
}

/// Splits a text into pieces of two words (spaces kept), as a stream would deliver it.
fn pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    words.chunks(2).map(|w| w.concat()).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn find_model<'a>(state: &'a State, name: &str) -> Option<&'a SimModel> {
    state.config.models.iter().find(|m| m.name == name)
}

#[handler]
async fn chat(req: &Request, body: Bytes, Data(state): Data<&Arc<State>>) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    state.requests().push(SimRequest {
        path: req.uri().path().to_owned(),
        body: parsed.clone().unwrap_or(Value::Null),
    });
    let Some(body) = parsed.filter(Value::is_object) else {
        return error(
            400,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
            None,
        );
    };
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let flavour = Flavour::of(&model);
    let stream = body["stream"].as_bool().unwrap_or(false);
    let outcome = state.with(|q| q.pop_front());
    if !state.config.response_delay.is_zero() {
        tokio::time::sleep(state.config.response_delay).await;
    }

    if let Some(outcome) = &outcome {
        if let Some(response) = scripted_error(outcome, flavour, &model) {
            return response;
        }
        if let SimOutcome::Slow { delay_ms } = outcome {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
        }
        if !stream
            && matches!(
                outcome,
                SimOutcome::CutStream { .. } | SimOutcome::StreamError { .. }
            )
        {
            return server_error(flavour, 500);
        }
    }

    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !state.config.api_keys.iter().any(|k| k == key) {
        return invalid_key(flavour, key);
    }
    let Some(sim_model) = find_model(state, &model) else {
        return model_not_found(flavour, &model);
    };
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return error(
            400,
            "messages: at least one message is required",
            "invalid_request_error",
            Some("messages"),
            None,
        );
    };
    if sim_model.reasoner {
        for refused in ["logprobs", "top_logprobs"] {
            if body.get(refused).is_some_and(|v| !v.is_null()) {
                return error(
                    400,
                    &format!("{refused} is not supported by {model}"),
                    "invalid_request_error",
                    Some(refused),
                    Some("invalid_request_error"),
                );
            }
        }
    }
    let text_of = |m: &Value| m["content"].as_str().unwrap_or_default().to_owned();
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| approx_tokens(&text_of(m)) + 4)
        .sum();
    let bound = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64());
    if prompt_tokens + bound.unwrap_or(0) > sim_model.context_tokens {
        return context_too_long(
            flavour,
            sim_model.context_tokens,
            prompt_tokens,
            bound.unwrap_or(0),
        );
    }

    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(text_of)
        .unwrap_or_default();
    let (scripted_content, scripted_reasoning) = match &outcome {
        Some(SimOutcome::Answer { content, reasoning }) => (content.clone(), reasoning.clone()),
        _ => (None, None),
    };
    let mut content = scripted_content.unwrap_or_else(|| reply_for(&last_user));
    let reasoning = sim_model
        .reasoner
        .then(|| scripted_reasoning.unwrap_or_else(|| reasoning_for(&last_user)));
    let mut finish_reason = "stop";
    if let Some(bound) = bound {
        if approx_tokens(&content) > bound {
            content = content
                .chars()
                .take((bound as usize).saturating_mul(4))
                .collect();
            finish_reason = "length";
        }
    }
    let answer = Answer {
        id: format!(
            "chatcmpl-sim-{}",
            state.counter.fetch_add(1, Ordering::Relaxed) + 1
        ),
        created: now(),
        model: model.clone(),
        content,
        reasoning,
        finish_reason,
        prompt_tokens,
        flavour,
    };

    if !stream {
        return json_response(StatusCode::OK, &answer.full());
    }
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let mut frames = answer.frames(include_usage);
    let mut tail: Vec<Bytes> = vec![Bytes::from_static(b"data: [DONE]\n\n")];
    match outcome {
        Some(SimOutcome::CutStream { after }) => {
            cut_after(&mut frames, after);
            tail.clear();
        }
        Some(SimOutcome::StreamError { after }) => {
            cut_after(&mut frames, after);
            let e = json!({ "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error", "param": null, "code": null } });
            tail = vec![Bytes::from(format!("data: {e}\n\n"))];
        }
        _ => {}
    }
    let mut out: Vec<Bytes> = frames
        .into_iter()
        .map(|f| match f {
            Frame::Data(v) => Bytes::from(format!("data: {v}\n\n")),
            Frame::Comment => Bytes::from_static(b": keep-alive\n\n"),
        })
        .collect();
    out.extend(tail);
    let delay = state.config.chunk_delay;
    let body = futures::stream::iter(out).then(move |b| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<Bytes, std::io::Error>(b)
    });
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_bytes_stream(body))
}

/// Keeps the first `after` data frames (and the comments among them).
fn cut_after(frames: &mut Vec<Frame>, after: usize) {
    let mut seen = 0;
    let mut keep = frames.len();
    for (i, f) in frames.iter().enumerate() {
        if let Frame::Data(_) = f {
            if seen == after {
                keep = i;
                break;
            }
            seen += 1;
        }
    }
    frames.truncate(keep);
}
