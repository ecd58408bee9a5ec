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
    /// DeepSeek only: inline `<think>` blocks moved to the reasoning.
    think: Option<ThinkSplitter>,
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
            if let Some(think) = self.think.as_mut() {
                let (r, c) = think.finish();
                self.queue(r, c);
            }
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
            let reasoning = choice.delta.reasoning_content.unwrap_or_default();
            let content = choice.delta.content.unwrap_or_default();
            match self.think.as_mut() {
                Some(think) if !content.is_empty() => {
                    let (r, c) = think.push(&content);
                    self.queue(reasoning + &r, c);
                }
                _ => self.queue(reasoning, content),
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    /// Queues the non-empty pieces, reasoning first.
    fn queue(&mut self, reasoning: String, content: String) {
        if !reasoning.is_empty() {
            self.pending.push_back(StreamEvent::Reasoning(reasoning));
        }
        if !content.is_empty() {
            self.pending.push_back(StreamEvent::Content(content));
        }
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
        think: (provider == ProviderKind::Deepseek).then(ThinkSplitter::default),
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

/// Splits a leading `<think>…</think>` block out of DeepSeek R1 content.
///
/// DeepSeek's API puts R1's reasoning in `reasoning_content`, but R1 served elsewhere
/// without a reasoning parser (an OpenAI-compatible gateway in front of vLLM or Ollama)
/// writes it inline in `content` between `<think>` tags. The reasoning must never reach a
/// suggestion, so for DeepSeek the block is moved to the reasoning, in full answers and in
/// streams (where a tag may be split across chunks: a possible tag start is held back).
#[derive(Debug, Default)]
pub(crate) struct ThinkSplitter {
    state: ThinkState,
    buf: String,
    after_think: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ThinkState {
    /// Nothing decided yet: the content may still begin with `<think>`.
    #[default]
    Start,
    /// Inside the block: text is reasoning until `</think>`.
    Inside,
    /// The answer proper.
    Outside,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

impl ThinkSplitter {
    /// Feeds a piece of content; answers the (reasoning, content) it releases.
    pub(crate) fn push(&mut self, piece: &str) -> (String, String) {
        self.buf.push_str(piece);
        let mut reasoning = String::new();
        let mut content = String::new();
        loop {
            match self.state {
                ThinkState::Start => {
                    let trimmed = self.buf.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.buf = rest.to_owned();
                        self.state = ThinkState::Inside;
                        continue;
                    }
                    if OPEN.starts_with(trimmed) {
                        break;
                    }
                    self.state = ThinkState::Outside;
                }
                ThinkState::Inside => {
                    if let Some(i) = self.buf.find(CLOSE) {
                        reasoning.push_str(&self.buf[..i]);
                        self.buf.drain(..i + CLOSE.len());
                        self.state = ThinkState::Outside;
                        self.after_think = true;
                        continue;
                    }
                    let len = self.buf.len();
                    let keep = (1..CLOSE.len().min(len + 1))
                        .rev()
                        .find(|k| {
                            self.buf.is_char_boundary(len - k)
                                && CLOSE.starts_with(&self.buf[len - k..])
                        })
                        .unwrap_or(0);
                    reasoning.push_str(&self.buf[..len - keep]);
                    self.buf.drain(..len - keep);
                    break;
                }
                ThinkState::Outside => {
                    if self.after_think {
                        // The answer after the block usually starts with blank lines.
                        let trimmed = self.buf.trim_start().to_owned();
                        self.buf = trimmed;
                        if self.buf.is_empty() {
                            break;
                        }
                        self.after_think = false;
                    }
                    content.push_str(&self.buf);
                    self.buf.clear();
                    break;
                }
            }
        }
        (reasoning, content)
    }

    /// The end of the content: releases what was held back.
    pub(crate) fn finish(&mut self) -> (String, String) {
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            // An unterminated block is still reasoning, never the answer.
            ThinkState::Inside => (rest, String::new()),
            ThinkState::Start | ThinkState::Outside => (String::new(), rest),
        }
    }

    /// Splits a whole content.
    pub(crate) fn split(content: &str) -> (String, String) {
        let mut s = ThinkSplitter::default();
        let (mut r, mut c) = s.push(content);
        let (r2, c2) = s.finish();
        r.push_str(&r2);
        c.push_str(&c2);
        (r, c)
    }
}

#[cfg(test)]
mod tests {
    use super::ThinkSplitter;

    #[test]
    fn a_think_block_is_reasoning_whole_or_in_pieces() {
        assert_eq!(
            ThinkSplitter::split("<think>weigh it</think>\n\nHello!"),
            ("weigh it".to_owned(), "Hello!".to_owned())
        );
        assert_eq!(
            ThinkSplitter::split("Hello <think>"),
            (String::new(), "Hello <think>".to_owned())
        );
        assert_eq!(
            ThinkSplitter::split("<think>never closed"),
            ("never closed".to_owned(), String::new())
        );
        assert_eq!(
            ThinkSplitter::split("<b>x</b>"),
            (String::new(), "<b>x</b>".to_owned())
        );
        // Every way of cutting it into two pieces gives the same split.
        let text = "  <think>café, then </thin k></think>\nAnswer é";
        for i in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
            let mut s = ThinkSplitter::default();
            let (mut r, mut c) = (String::new(), String::new());
            for piece in [&text[..i], &text[i..]] {
                let (a, b) = s.push(piece);
                r.push_str(&a);
                c.push_str(&b);
            }
            let (a, b) = s.finish();
            r.push_str(&a);
            c.push_str(&b);
            assert_eq!(
                (r.as_str(), c.as_str()),
                ("café, then </thin k>", "Answer é"),
                "cut at {i}"
            );
        }
    }
}
