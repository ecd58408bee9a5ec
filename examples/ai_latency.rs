//! Latency of AI suggested replies (`POST .../conversations/{id}/suggest-reply`) against
//! the AI simulator, sequential and concurrent, with the server's own overhead: each
//! request's latency minus the simulator's configured answer delay. Figures on the
//! development machine are in `docs/benchmarks.md` ("AI suggestions").
//!
//! ```sh
//! cargo run --release -p imix-examples --example ai-latency -- \
//!   --requests 200 --concurrency 8 --delay-ms 50
//! ```
//!
//! Everything runs in one process: the Graph API simulator (to deliver the customer's
//! messages), the AI simulator (answering after `--delay-ms`, as a provider would after
//! its own latency) and one imix server on a fresh embedded store in a temporary
//! directory. Setup, through the API: signs in as the platform administrator, creates a
//! tenant, its administrator and a WhatsApp account; a customer writes `--messages`
//! messages (signed inbound webhooks), making one conversation; the platform's AI settings
//! point ChatGPT (`gpt-4o-mini`, max tokens 300) at the AI simulator. Then
//! `--requests` suggestions are asked one after another, then again with `--concurrency`
//! clients, and the tool prints p50/p95/p99/max for each, and the same less the delay.
//! Every suggestion must answer 200; the prompt's size (the simulator's token count) is
//! printed too.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use imix_ai::simulator::{self as ai_sim, SimulatorConfig, SIM_API_KEY};
use imix_whatsapp::{
    simulator::{Inbound, SimBusiness, SimPhoneNumber, Simulator},
    webhook::{InboundContent, InboundText},
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

const WABA: &str = "1400000000000001";
const PHONE: &str = "1400000000000002";
const SIM_TOKEN: &str = "EAAG-ai-latency-access-token-0123456789";
const SIM_SECRET: &str = "ai-latency-app-secret-0123456789abcdef";

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "Measures imix's AI suggested-reply latency against the AI simulator (p50/p95/p99, and the server's overhead)"
)]
struct Args {
    /// Suggestions asked in each phase (sequential, then concurrent).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Concurrent clients in the second phase.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The AI simulator's pause before each answer, in milliseconds (a provider's own
    /// latency; subtracted to give the server's overhead).
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Messages the customer writes before the suggestions (the prompt keeps at most 20).
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// Suggestions asked before measuring (connections, caches).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

fn run_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The API as one signed-in user.
#[derive(Clone)]
struct Api {
    client: Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), Error> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Result<Value, Error> {
        match self.send(method.clone(), path, body).await? {
            (s, v) if s == want => Ok(v),
            (s, v) => Err(format!("{method} {path}: {s} {v}").into()),
        }
    }
}

/// A token for `email` with `password`, changed to `new_password` when the server asks.
async fn signed_in(
    client: &Client,
    base: &str,
    email: &str,
    password: &str,
    new_password: &str,
) -> Result<String, Error> {
    let resp = client
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", email),
            ("password", password),
        ])
        .send()
        .await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("cannot sign in as {email}: {}", resp.status()).into());
    }
    let body: Value = resp.json().await?;
    let token = body["access_token"]
        .as_str()
        .ok_or("the token answer has no access_token")?
        .to_owned();
    if body["must_change_password"] != json!(true) {
        return Ok(token);
    }
    let api = Api {
        client: client.clone(),
        base: base.to_owned(),
        token,
    };
    let body = api
        .expect(
            Method::POST,
            "/api/v1/auth/change-password",
            Some(json!({"current_password": password, "new_password": new_password})),
            StatusCode::OK,
        )
        .await?;
    Ok(body["access_token"]
        .as_str()
        .ok_or("the password change answer has no access_token")?
        .to_owned())
}

async fn wait_healthy(base: &str) -> Result<(), Error> {
    let client = Client::new();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status() == StatusCode::OK {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the server at {base} did not become healthy").into())
}

/// What the customer writes: a varied, realistic mix of lengths.
fn customer_text(i: usize) -> String {
    const LINES: [&str; 5] = [
        "Hello, do you deliver to Atar this week?",
        "I would like to order two chocolate cakes for Saturday afternoon, one with the name Aminata written on it and one plain, and I need to know the price for both and whether you can deliver them before 3 pm.",
        "ok thanks",
        "Can I pay on delivery or do I have to pay in advance by bank transfer? Which bank?",
        "Also, is there anything without gluten? My daughter cannot eat wheat.",
    ];
    format!("{} (#{i})", LINES[i % LINES.len()])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn report(phase: &str, mut latencies: Vec<Duration>, elapsed: Duration, delay: Duration) {
    latencies.sort_unstable();
    let n = latencies.len();
    let over = |d: Duration| d.saturating_sub(delay);
    println!(
        "{phase}: {n} suggestions in {:.2} s ({:.1}/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "  latency ms    p50 {}  p95 {}  p99 {}  max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    println!(
        "  overhead ms   p50 {}  p95 {}  p99 {}  max {}   (latency minus the simulator's {} ms)",
        ms(over(percentile(&latencies, 50.0))),
        ms(over(percentile(&latencies, 95.0))),
        ms(over(percentile(&latencies, 99.0))),
        ms(over(latencies.last().copied().unwrap_or_default())),
        delay.as_millis(),
    );
}

/// Asks `total` suggestions with `concurrency` clients; the latency of each.
async fn phase(
    api: &Api,
    path: &str,
    total: usize,
    concurrency: usize,
) -> Result<(Vec<Duration>, Duration), Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (api, path, next) = (api.clone(), path.to_owned(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let at = Instant::now();
                let (status, body) = api.send(Method::POST, &path, Some(json!({}))).await?;
                let took = at.elapsed();
                if status != StatusCode::OK {
                    return Err::<Vec<Duration>, Error>(
                        format!("suggest-reply answered {status}: {body}").into(),
                    );
                }
                latencies.push(took);
            }
            Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all, started.elapsed()))
}

async fn run(args: Args) -> Result<(), Error> {
    let delay = Duration::from_millis(args.delay_ms);
    let ai = ai_sim::spawn(SimulatorConfig::default().with_response_delay(delay)).await?;
    let graph = Simulator::start(tokio::net::TcpListener::bind("127.0.0.1:0").await?).await?;

    let run = run_id();
    let dir = std::env::temp_dir().join(format!("imix-ai-latency-{run}"));
    let vars = HashMap::from([
        (
            "IMIX_DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
        (
            "IMIX_LOG_DIR".to_owned(),
            dir.join("logs").display().to_string(),
        ),
        ("IMIX_GRAPH_API_URL".to_owned(), graph.url()),
        (
            "SECRET_KEY".to_owned(),
            format!("ai-latency-secret-key-{run:x}-0123456789abcdef"),
        ),
        ("IMIX_LOG".to_owned(), "warn".to_owned()),
    ]);
    let config = imix_server::config::Config::from_vars(vars)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(imix_server::serve_with_options(
        config,
        listener,
        async {
            let _ = stopped.await;
        },
        imix_server::state::ServerOptions::default(),
    ));
    wait_healthy(&base).await?;

    let client = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    let platform = Api {
        client: client.clone(),
        base: base.clone(),
        token: signed_in(
            &client,
            &base,
            "admin@example.com",
            "admin123",
            "ai-latency-passphrase-1",
        )
        .await?,
    };
    let tenant = platform
        .expect(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": "Boulangerie Latency"})),
            StatusCode::CREATED,
        )
        .await?;
    let tenant = tenant["id"]
        .as_str()
        .ok_or("the tenant has no id")?
        .to_owned();
    let email = format!("agent-{run}@ai-latency.example");
    platform
        .expect(
            Method::POST,
            "/api/v1/users",
            Some(json!({
                "email": email, "first_name": "Quinn", "last_name": "Tester", "role": "admin",
                "tenant_id": tenant, "password": "initial-password-1",
            })),
            StatusCode::CREATED,
        )
        .await?;
    let api = Api {
        client: client.clone(),
        base: base.clone(),
        token: signed_in(
            &client,
            &base,
            &email,
            "initial-password-1",
            "river-stone-passphrase-7",
        )
        .await?,
    };
    graph.add_business(
        SimBusiness::new(WABA, SIM_SECRET, SIM_TOKEN)
            .with_webhook_url(format!("{base}/webhooks/whatsapp"))
            .with_phone_number(
                SimPhoneNumber::new(PHONE, "+1 555-014-0001").with_verified_name("Latency"),
            ),
    );
    api.expect(
        Method::POST,
        &format!("/api/v1/tenants/{tenant}/whatsapp-accounts"),
        Some(json!({
            "waba_id": WABA, "business_account_id": "1400000000000000",
            "phone_number_id": PHONE, "app_id": "1400000000000003",
            "display_phone_number": "+1 555-014-0001", "business_name": "Latency",
            "access_token": SIM_TOKEN, "app_secret": SIM_SECRET,
        })),
        StatusCode::CREATED,
    )
    .await?;

    // One customer writes the conversation, one message after another.
    for i in 0..args.messages {
        graph
            .send_inbound(
                PHONE,
                Inbound::new(
                    "22245000001",
                    "Aïcha",
                    InboundContent::Text {
                        text: InboundText {
                            body: customer_text(i),
                        },
                    },
                ),
            )
            .await?;
    }
    let started = Instant::now();
    let conversation = loop {
        let (_, list) = api
            .send(
                Method::GET,
                &format!("/api/v1/tenants/{tenant}/conversations"),
                None,
            )
            .await?;
        if let Some(id) = list["items"][0]["id"].as_str() {
            let (_, m) = api
                .send(
                    Method::GET,
                    &format!("/api/v1/tenants/{tenant}/conversations/{id}/messages?limit=100"),
                    None,
                )
                .await?;
            if m["items"].as_array().map_or(0, Vec::len) >= args.messages {
                break id.to_owned();
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the conversation did not receive its messages within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    platform
        .expect(
            Method::PUT,
            "/api/v1/settings/ai",
            Some(json!({
                "providers": {"chatgpt": {
                    "api_key": SIM_API_KEY, "model": "gpt-4o-mini", "temperature": 0.3,
                    "max_tokens": 300, "url": ai.openai_base_url(),
                }},
                "default_provider": "chatgpt",
            })),
            StatusCode::OK,
        )
        .await?;
    let path = format!("/api/v1/tenants/{tenant}/conversations/{conversation}/suggest-reply");
    let first = api
        .expect(Method::POST, &path, Some(json!({})), StatusCode::OK)
        .await?;
    println!(
        "setup: server {base} (in-process, embedded store), AI simulator {} answering after {} ms; \
         a conversation of {} customer messages; prompt {} tokens (simulator's count), answer {} tokens",
        ai.base_url,
        args.delay_ms,
        args.messages,
        first["usage"]["prompt_tokens"],
        first["usage"]["completion_tokens"],
    );
    phase(&api, &path, args.warmup, 1).await?;

    let (latencies, elapsed) = phase(&api, &path, args.requests, 1).await?;
    report("sequential", latencies, elapsed, delay);
    let (latencies, elapsed) = phase(&api, &path, args.requests, args.concurrency).await?;
    report(
        &format!("concurrency {}", args.concurrency),
        latencies,
        elapsed,
        delay,
    );

    let _ = stop.send(());
    if let Ok(Err(e)) = server.await {
        eprintln!("the server stopped with an error: {e}");
    }
    ai.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
