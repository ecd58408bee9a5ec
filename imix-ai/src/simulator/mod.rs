//! A local OpenAI-compatible Chat Completions simulator (feature `simulator`).
//!
//! It answers like ChatGPT (OpenAI) or DeepSeek, chosen by the model asked for: a model whose
//! name starts with `deepseek` gets DeepSeek's shapes, any other OpenAI's.
//!
//! | endpoint | behaviour |
//! |---|---|
//! | `POST /v1/chat/completions`, `POST /api/v1/chat/completions`, `POST /chat/completions` | a chat completion, JSON or (`"stream": true`) server-sent events |
//! | `POST /__sim/script` | a JSON array of [`SimOutcome`]s: how the next requests are answered, in order (then normal answers again) |
//! | `GET /__sim/requests` | the requests received so far: `[{"path", "body"}]` (bodies as sent) |
//! | `POST /__sim/reset` | forgets the script and the recorded requests |
//!
//! Answers are deterministic: the content quotes the start of the last user message
//! ([`reply_for`]); `deepseek-reasoner` (and any model marked [`SimModel::reasoner`]) also
//! gives a `reasoning_content`. Tokens are counted as a quarter of the characters, rounded
//! up, plus 4 per message for the prompt ([`approx_tokens`]); `usage` carries
//! `completion_tokens_details.reasoning_tokens`. A completion bound (`max_tokens` or
//! `max_completion_tokens`) shorter than the answer cuts it with `finish_reason: "length"`.
//!
//! Checks, in order, each with the provider's documented error body
//! `{"error":{"message","type","param","code"}}`: a scripted outcome; the bearer key (401,
//! OpenAI `invalid_api_key`, DeepSeek `authentication_error`); the model (OpenAI 404
//! `model_not_found`, DeepSeek 400 "Model Not Exist"); for reasoners, `logprobs` and
//! `top_logprobs` refused (400) as DeepSeek documents; the prompt plus the completion bound
//! against the model's context window (400, OpenAI `context_length_exceeded`, DeepSeek's
//! "maximum context length" message). Scripted outcomes add 429 with `Retry-After`
//! (`rate_limit_exceeded`), OpenAI's 429 `insufficient_quota`, DeepSeek's 402
//! "Insufficient Balance", 500, 503 "Server Overloaded", an unreadable body, a slow answer
//! and streams cut or failing part-way.
//!
//! Streams are `chat.completion.chunk`s: a first delta with the role, reasoning pieces
//! (`reasoning_content`, DeepSeek reasoner) before content pieces, a last chunk with
//! `finish_reason`, then `data: [DONE]`. DeepSeek streams carry `: keep-alive` comments and
//! usage in the last chunk; OpenAI sends usage in an extra chunk with empty `choices` when
//! asked with `stream_options.include_usage`, and `"usage": null` in the others.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use imix_ai::simulator::{self, SimOutcome, SimulatorConfig};
//! let sim = simulator::spawn(SimulatorConfig::default()).await?;
//! sim.script(vec![SimOutcome::RateLimited { retry_after: Some(1) }]);
//! println!("OpenAI base URL {}, DeepSeek base URL {}", sim.openai_base_url(), sim.deepseek_base_url());
//! # Ok(()) }
//! ```

mod server;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The API key the default configuration accepts.
pub const SIM_API_KEY: &str = "sk-sim-key-0001";

/// A model the simulator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimModel {
    /// Its name, e.g. `gpt-4o-mini`.
    pub name: String,
    /// Its context window in (approximate) tokens: prompt plus completion bound.
    pub context_tokens: u64,
    /// Whether it reasons first (`reasoning_content`, `reasoning_tokens`).
    pub reasoner: bool,
}

impl SimModel {
    /// A model without reasoning.
    pub fn new(name: impl Into<String>, context_tokens: u64) -> Self {
        SimModel {
            name: name.into(),
            context_tokens,
            reasoner: false,
        }
    }

    /// Makes it a reasoning model.
    pub fn reasoner(mut self) -> Self {
        self.reasoner = true;
        self
    }
}

/// What the simulator accepts and knows.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Bearer keys accepted; any other answers 401.
    pub api_keys: Vec<String>,
    /// Models known; any other answers "model not found".
    pub models: Vec<SimModel>,
    /// A pause before each stream chunk (0 by default), to watch streams arrive.
    pub chunk_delay: Duration,
    /// A pause before every chat answer (0 by default): a provider's own latency, for
    /// latency measurements and deadline tests. Scripted `slow` outcomes add to it.
    pub response_delay: Duration,
}

impl Default for SimulatorConfig {
    /// Accepts [`SIM_API_KEY`]; knows `gpt-4o-mini`, `gpt-4o` (128k), `deepseek-chat` and
    /// `deepseek-reasoner` (64k, reasoning).
    fn default() -> Self {
        SimulatorConfig {
            api_keys: vec![SIM_API_KEY.to_owned()],
            models: vec![
                SimModel::new("gpt-4o-mini", 128_000),
                SimModel::new("gpt-4o", 128_000),
                SimModel::new("deepseek-chat", 65_536),
                SimModel::new("deepseek-reasoner", 65_536).reasoner(),
            ],
            chunk_delay: Duration::ZERO,
            response_delay: Duration::ZERO,
        }
    }
}

impl SimulatorConfig {
    /// Adds a model, or replaces the one of the same name (e.g. a small context window to
    /// provoke "context too long").
    pub fn with_model(mut self, model: SimModel) -> Self {
        self.models.retain(|m| m.name != model.name);
        self.models.push(model);
        self
    }

    /// Accepts another key too.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// Sets the pause before every chat answer.
    pub fn with_response_delay(mut self, delay: Duration) -> Self {
        self.response_delay = delay;
        self
    }

    /// Sets the pause before each stream chunk.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }
}

/// How the simulator answers one request, scripted with [`SimulatorHandle::script`] or
/// `POST /__sim/script` (JSON: `{"kind": "rate_limited", "retry_after": 1}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SimOutcome {
    /// A normal answer (after the usual checks), with this content and reasoning instead
    /// of the generated ones when given.
    Answer {
        /// The answer's content.
        #[serde(default)]
        content: Option<String>,
        /// The reasoning (only sent for reasoning models).
        #[serde(default)]
        reasoning: Option<String>,
    },
    /// 401 as for a wrong key.
    InvalidKey,
    /// The model is unknown (OpenAI 404, DeepSeek 400 "Model Not Exist").
    ModelNotFound,
    /// 429 `rate_limit_exceeded`, with `Retry-After: <seconds>` when given.
    RateLimited {
        /// Seconds for the `Retry-After` header.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// OpenAI's 429 `insufficient_quota`.
    InsufficientQuota,
    /// DeepSeek's 402 "Insufficient Balance".
    InsufficientBalance,
    /// 400 context length exceeded.
    ContextTooLong,
    /// 500.
    ServerError,
    /// 503 "Server Overloaded".
    Overloaded,
    /// 200 with a body that is not JSON.
    BadJson,
    /// A normal answer after a pause (to provoke timeouts).
    Slow {
        /// The pause in milliseconds.
        delay_ms: u64,
    },
    /// A stream that stops after `after` data chunks, without `data: [DONE]` (a
    /// non-streamed request gets a 500).
    CutStream {
        /// Data chunks sent before the cut.
        #[serde(default)]
        after: usize,
    },
    /// A stream that sends an error object after `after` data chunks, then ends (a
    /// non-streamed request gets a 500).
    StreamError {
        /// Data chunks sent before the error.
        #[serde(default)]
        after: usize,
    },
}

/// A request the simulator received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimRequest {
    /// The path, e.g. `/api/v1/chat/completions`.
    pub path: String,
    /// The JSON body as received (`null` when it was not JSON).
    pub body: serde_json::Value,
}

/// The state shared by the handlers and the handle.
pub(crate) struct State {
    pub(crate) config: SimulatorConfig,
    pub(crate) script: Mutex<VecDeque<SimOutcome>>,
    pub(crate) requests: Mutex<Vec<SimRequest>>,
    pub(crate) counter: std::sync::atomic::AtomicU64,
}

impl State {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut VecDeque<SimOutcome>) -> T) -> T {
        // A poisoned lock only means a handler panicked mid-update; the queue is still usable.
        let mut guard = self.script.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub(crate) fn requests(&self) -> std::sync::MutexGuard<'_, Vec<SimRequest>> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimulatorHandle {
    /// `http://127.0.0.1:<port>`: append `/v1` (OpenAI style) or `/api/v1` (the admin
    /// guide's DeepSeek URL) for a provider base URL.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Starts a simulator on `127.0.0.1` and a free port.
pub async fn spawn(config: SimulatorConfig) -> std::io::Result<SimulatorHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    spawn_on(listener, config).await
}

/// Starts a simulator on a listener the caller bound.
pub async fn spawn_on(
    listener: tokio::net::TcpListener,
    config: SimulatorConfig,
) -> std::io::Result<SimulatorHandle> {
    let addr = listener.local_addr()?;
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let state = Arc::new(State {
        config,
        script: Mutex::new(VecDeque::new()),
        requests: Mutex::new(Vec::new()),
        counter: std::sync::atomic::AtomicU64::new(0),
    });
    let app = server::routes(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let signal = async move {
            let _ = rx.await;
        };
        if let Err(e) = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, signal, Some(Duration::from_secs(1)))
            .await
        {
            tracing::error!(error = %e, "AI simulator stopped");
        }
    });
    tracing::info!(%addr, "AI simulator listening");
    Ok(SimulatorHandle {
        base_url: format!("http://{addr}"),
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}

impl SimulatorHandle {
    /// The base URL for a ChatGPT provider: `{base_url}/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url)
    }

    /// The base URL for a DeepSeek provider, shaped like the admin guide's: `{base_url}/api/v1`.
    pub fn deepseek_base_url(&self) -> String {
        format!("{}/api/v1", self.base_url)
    }

    /// Queues outcomes for the next requests, after those already queued.
    pub fn script(&self, outcomes: impl IntoIterator<Item = SimOutcome>) {
        self.state.with(|q| q.extend(outcomes));
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.state.requests().clone()
    }

    /// Forgets the script and the recorded requests.
    pub fn reset(&self) {
        self.state.with(VecDeque::clear);
        self.state.requests().clear();
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The simulator's token count of a text: a quarter of its characters, rounded up.
pub fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The answer the simulator gives to a last user message: it quotes its first 60
/// characters (one line), so tests can tell which prompt was answered.
pub fn reply_for(last_user_message: &str) -> String {
    let line: String = last_user_message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut quote: String = line.chars().take(60).collect();
    if quote.chars().count() < line.chars().count() {
        quote.push('…');
    }
    format!("Thank you for your message \"{quote}\". A colleague will follow up shortly.")
}

/// The reasoning a reasoner gives before [`reply_for`].
pub fn reasoning_for(last_user_message: &str) -> String {
    let words = last_user_message.split_whitespace().count();
    format!(
        "The customer wrote {words} words. A short, polite answer that promises nothing fits best."
    )
}
