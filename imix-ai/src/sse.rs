//! Chat Completions streams: server-sent events to [`StreamEvent`]s.
//!
//! SSE framing (comments such as `: keep-alive`, multi-line `data:`, CRLF, UTF-8 split
//! across chunks) is left to `eventsource-stream`; this module reads each event's `data`
//! as a `chat.completion.chunk`: `delta.reasoning_content` (DeepSeek R1) becomes
//! [`StreamEvent::Reasoning`], `delta.content` [`StreamEvent::Content`], the last chunk's
//! `usage` and `finish_reason` are kept for the [`StreamEvent::Done`] sent at
//! `data: [DONE]`. An error object inside the stream, a cut connection (no `[DONE]`), an
//! unreadable chunk or a chunk not arriving within the timeout ends the stream with one
//! `Err` item.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::chat::{ProviderKind, StreamEvent, TokenUsage};
use crate::error::{classify, AiError, ErrorBody};
use crate::openai_compat::WireUsage;
use crate::provider::ChatStream;

type SseItem = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>;

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
}

struct State {
    events: Pin<Box<dyn Stream<Item = SseItem> + Send>>,
    provider: ProviderKind,
    model: String,
    idle: Duration,
    usage: Option<TokenUsage>,
    finish_reason: Option<String>,
    pending: VecDeque<StreamEvent>,
    finished: bool,
}

impl State {
    fn bad(&self, what: &str, source: Option<crate::error::BoxError>) -> AiError {
        AiError::BadResponse {
            provider: self.provider,
            what: what.to_owned(),
            source,
        }
    }

    /// Reads one event's data; queues what it carries, or answers the error it reports.
    fn take(&mut self, data: &str) -> Result<(), AiError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.finished = true;
            self.pending.push_back(StreamEvent::Done {
                model: std::mem::take(&mut self.model),
                usage: self.usage.take(),
                finish_reason: self.finish_reason.take(),
            });
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(data)
            .map_err(|e| self.bad("stream chunk JSON", Some(Box::new(e))))?;
        if value.get("error").is_some() {
            let body = ErrorBody::parse(data);
            let quota_or_rate = [body.code.as_deref(), body.kind.as_deref()]
                .into_iter()
                .flatten()
                .any(|c| c.contains("quota") || c.contains("rate_limit"));
            let status = if quota_or_rate { 429 } else { 500 };
            return Err(classify(self.provider, &self.model, status, None, body));
        }
        let chunk: WireChunk = serde_json::from_value(value)
            .map_err(|e| self.bad("stream chunk", Some(Box::new(e))))?;
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices {
            if let Some(r) = choice.delta.reasoning_content.filter(|r| !r.is_empty()) {
                self.pending.push_back(StreamEvent::Reasoning(r));
            }
            if let Some(c) = choice.delta.content.filter(|c| !c.is_empty()) {
                self.pending.push_back(StreamEvent::Content(c));
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    fn transport(&self, e: EventStreamError<reqwest::Error>) -> AiError {
        match e {
            EventStreamError::Transport(e) if e.is_timeout() => AiError::Timeout {
                provider: self.provider,
                after: self.idle,
            },
            EventStreamError::Transport(e) => AiError::Network {
                provider: self.provider,
                source: Box::new(e.without_url()),
            },
            EventStreamError::Utf8(e) => self.bad("stream text (not UTF-8)", Some(Box::new(e))),
            EventStreamError::Parser(e) => {
                self.bad(&format!("server-sent events framing: {e}"), None)
            }
        }
    }
}

/// The events of a successful streaming response.
pub(crate) fn events(
    provider: ProviderKind,
    model: String,
    idle: Duration,
    response: reqwest::Response,
) -> ChatStream {
    let state = State {
        events: Box::pin(response.bytes_stream().eventsource()),
        provider,
        model,
        idle,
        usage: None,
        finish_reason: None,
        pending: VecDeque::new(),
        finished: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            let next = match tokio::time::timeout(st.idle, st.events.next()).await {
                Err(_) => Err(AiError::Timeout {
                    provider: st.provider,
                    after: st.idle,
                }),
                Ok(None) => Err(AiError::Network {
                    provider: st.provider,
                    source: Box::new(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the stream ended before data: [DONE]",
                    )),
                }),
                Ok(Some(Err(e))) => Err(st.transport(e)),
                Ok(Some(Ok(event))) => st.take(&event.data),
            };
            if let Err(e) = next {
                st.finished = true;
                st.pending.clear();
                return Some((Err(e), st));
            }
        }
    })
    .boxed()
}
