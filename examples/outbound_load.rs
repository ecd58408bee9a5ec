//! Load tool for imix's outbound messaging: queues text messages through the send API
//! (`POST /api/v1/tenants/{id}/messages`) against the Graph API simulator, and reports
//! how fast the API accepts them (HTTP 202), how fast the dispatcher hands them to "Meta"
//! (the simulator), how long the queue took to drain, and — from the simulator's own
//! record of every send it accepted — the highest number of sends in any one-second
//! sliding window per phone number, against the number's configured rate. Figures on the
//! development machine are in `docs/benchmarks.md` ("Outbound dispatch").
//!
//! ```sh
//! # one number at 1,000 messages/s (the highest rate Meta grants), embedded store
//! cargo run --release -p imix-examples --example outbound-load -- \
//!   --numbers 1 --rate 1000 --messages 20000
//! # 20 numbers at 1,000/s each
//! cargo run --release -p imix-examples --example outbound-load -- \
//!   --numbers 20 --rate 1000 --messages 60000
//! # exact pacing at a low rate, on MongoDB (IMIX_TEST_MONGODB_URI), two replicas
//! cargo run --release -p imix-examples --example outbound-load -- \
//!   --numbers 2 --rate 80 --messages 2000 --backend mongodb --replicas 2
//! ```
//!
//! By default the tool runs everything in one process: the simulator, and one imix server
//! (or two, `--replicas 2`, sharing the store and, when given, Redis) on a fresh store —
//! a temporary data directory, or a new database on `IMIX_TEST_MONGODB_URI` with
//! `--backend mongodb`. With `--url` it loads a server you run yourself instead; that
//! server's `IMIX_GRAPH_API_URL` must be the simulator's address (`--sim-listen`).
//!
//! Setup, through the API: signs in as the platform administrator (changing the default
//! password of a fresh installation), creates a tenant with no daily message limit and an
//! administrator of it, `--numbers` WhatsApp accounts (numbers of one simulated
//! business), verifies each (the simulator answers as Meta) and sets its
//! `max_messages_per_second` to `--rate`; then `--contacts` customers write to every number
//! (signed inbound webhooks from the simulator), which opens each conversation's 24-hour
//! window so free-form text may be sent. The simulator itself is told to accept any rate,
//! so a send above the configured rate shows in its record instead of being refused
//! (130429) and retried.
//!
//! The load: `--concurrency` clients post `--messages` messages (each text unique, spread
//! round-robin over the numbers and their conversations) as fast as the API answers.
//! Then the tool waits until the simulator has accepted every message and the API shows
//! none `queued` or `sending`, and reports. It checks that every message reached the
//! simulator exactly once (by its unique text).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use imix_whatsapp::{
    model::MessageContent,
    simulator::{Inbound, SimBusiness, SimPhoneNumber, Simulator},
    webhook::{InboundContent, InboundText},
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

const WABA: &str = "1300000000000001";
const SIM_TOKEN: &str = "EAAG-outbound-load-access-token-0123456789";
const SIM_SECRET: &str = "outbound-load-app-secret-0123456789abcdef";

/// The store of the servers the tool starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreBackend {
    /// The embedded store in a temporary data directory.
    Sqlite,
    /// A new database on `IMIX_TEST_MONGODB_URI`.
    Mongodb,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "Queues messages through imix's send API against the Graph API simulator and reports accepted/s, sent/s and per-number pacing"
)]
struct Args {
    /// A running imix server whose IMIX_GRAPH_API_URL is the simulator's address
    /// (`--sim-listen`); without it the tool runs its own server(s) in-process.
    #[arg(long)]
    url: Option<String>,
    /// Where the simulator listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    sim_listen: String,
    /// The store of the in-process server(s).
    #[arg(long, value_enum, default_value_t = StoreBackend::Sqlite)]
    backend: StoreBackend,
    /// In-process servers sharing the store (and Redis, when `--redis-url` or
    /// `IMIX_TEST_REDIS_URL` is set); the clients alternate between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    replicas: u8,
    /// Redis for the in-process servers (daily counters, rate buckets, queue, when the
    /// server uses it). Defaults to `IMIX_TEST_REDIS_URL` with two replicas.
    #[arg(long)]
    redis_url: Option<String>,
    /// WhatsApp numbers (accounts) to send from.
    #[arg(long, default_value_t = 1)]
    numbers: usize,
    /// Messages to queue in all.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Each number's `max_messages_per_second` (1 to 1,000).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Concurrent API clients queueing messages.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Customers writing to every number (conversations = numbers × contacts).
    #[arg(long, default_value_t = 200)]
    contacts: usize,
    /// The platform administrator's email.
    #[arg(long, default_value = "admin@example.com")]
    admin_email: String,
    /// Its password (the installation default, changed at first sign-in).
    #[arg(long, default_value = "admin123")]
    admin_password: String,
    /// What the tool changes the default administrator password to.
    #[arg(long, default_value = "load-tool-passphrase-1")]
    new_admin_password: String,
    /// Give up waiting for the queue to drain after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// Servers running inside the tool, stopped (and their directory removed) at the end.
struct LocalServers {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), imix_server::ServerError>>>,
    dir: std::path::PathBuf,
}

impl LocalServers {
    async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            if let Ok(Err(e)) = task.await {
                eprintln!("a server stopped with an error: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

async fn start_local_servers(
    args: &Args,
    graph_api_url: &str,
) -> Result<(Vec<String>, LocalServers), Error> {
    let run = run_id();
    let dir = std::env::temp_dir().join(format!("imix-outbound-load-{run}"));
    let mut vars = HashMap::from([
        (
            "IMIX_DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
        (
            "IMIX_LOG_DIR".to_owned(),
            dir.join("logs").display().to_string(),
        ),
        ("IMIX_GRAPH_API_URL".to_owned(), graph_api_url.to_owned()),
        // Replicas must open each other's secrets and tokens.
        (
            "SECRET_KEY".to_owned(),
            format!("outbound-load-secret-key-{run:x}-0123456789abcdef"),
        ),
    ]);
    if args.backend == StoreBackend::Mongodb {
        let uri = std::env::var("IMIX_TEST_MONGODB_URI")
            .map_err(|_| "--backend mongodb needs IMIX_TEST_MONGODB_URI")?;
        vars.insert("MONGODB_URI".into(), uri);
        vars.insert("DB_NAME".into(), format!("imix_outbound_load_{run}"));
    }
    let redis = args.redis_url.clone().or_else(|| {
        (args.replicas > 1)
            .then(|| std::env::var("IMIX_TEST_REDIS_URL").ok())
            .flatten()
    });
    if let Some(url) = redis {
        vars.insert("REDIS_URL".into(), url);
    }
    let mut bases = Vec::new();
    let mut servers = LocalServers {
        stops: Vec::new(),
        tasks: Vec::new(),
        dir,
    };
    for _ in 0..args.replicas {
        let config = imix_server::config::Config::from_vars(vars.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(imix_server::serve_with_options(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            imix_server::state::ServerOptions::default(),
        ));
        servers.stops.push(stop);
        servers.tasks.push(task);
        // The first one creates the schema; the second opens it.
        wait_healthy(&base).await?;
        bases.push(base);
    }
    Ok((bases, servers))
}

async fn wait_healthy(base: &str) -> Result<(), Error> {
    let client = Client::new();
    let mut last = String::new();
    for _ in 0..600 {
        match client.get(format!("{base}/health")).send().await {
            Ok(r) if r.status() == StatusCode::OK => return Ok(()),
            Ok(r) => last = r.status().to_string(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the server at {base} did not become healthy: {last}").into())
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

/// Signs in with the password grant; `Some((token, must change password))`, `None` when
/// refused.
async fn sign_in(
    client: &Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<Option<(String, bool)>, Error> {
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
        return Ok(None);
    }
    let body: Value = resp.json().await?;
    let token = body["access_token"]
        .as_str()
        .ok_or("the token answer has no access_token")?
        .to_owned();
    Ok(Some((token, body["must_change_password"] == json!(true))))
}

/// A token for `email`, changing its password to `new_password` when the server asks.
async fn signed_in(
    client: &Client,
    base: &str,
    email: &str,
    passwords: [&str; 2],
) -> Result<String, Error> {
    let [first, new_password] = passwords;
    let (mut current, mut signed) = (first, sign_in(client, base, email, first).await?);
    if signed.is_none() {
        // A second run against the same server: the default was changed already.
        current = new_password;
        signed = sign_in(client, base, email, new_password).await?;
    }
    match signed {
        None => Err(format!("cannot sign in as {email}").into()),
        Some((token, false)) => Ok(token),
        Some((token, true)) => {
            let api = Api {
                client: client.clone(),
                base: base.to_owned(),
                token,
            };
            let body = api
                .expect(
                    Method::POST,
                    "/api/v1/auth/change-password",
                    Some(json!({"current_password": current, "new_password": new_password})),
                    StatusCode::OK,
                )
                .await?;
            Ok(body["access_token"]
                .as_str()
                .ok_or("the password change answer has no access_token")?
                .to_owned())
        }
    }
}

/// What setup made: the tenant, its administrator's API handle per server, and the
/// conversations to send to with their account's phone number id.
struct World {
    tenant: String,
    apis: Vec<Api>,
    conversations: Vec<String>,
    phone_number_ids: Vec<String>,
}

async fn setup(args: &Args, bases: &[String], sim: &Simulator) -> Result<World, Error> {
    let client = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    let base = &bases[0];
    let platform = Api {
        client: client.clone(),
        base: base.clone(),
        token: signed_in(
            &client,
            base,
            &args.admin_email,
            [&args.admin_password, &args.new_admin_password],
        )
        .await?,
    };
    let run = run_id();
    let tenant = platform
        .expect(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({
                "name": format!("Outbound load {run}"),
                "limits": {"max_messages_per_day": 1_000_000_000u64, "max_media_per_day": 1_000_000_000u64},
            })),
            StatusCode::CREATED,
        )
        .await?;
    let tenant = tenant["id"]
        .as_str()
        .ok_or("the tenant has no id")?
        .to_owned();
    let email = format!("load-{run}@outbound-load.example");
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
    let token = signed_in(
        &client,
        base,
        &email,
        ["initial-password-1", "river-stone-passphrase-7"],
    )
    .await?;
    let apis: Vec<Api> = bases
        .iter()
        .map(|b| Api {
            client: client.clone(),
            base: b.clone(),
            token: token.clone(),
        })
        .collect();
    let api = &apis[0];

    // The numbers: one simulated business; the simulator accepts any rate, so the tool
    // sees what the dispatcher does rather than Meta's refusals.
    let phone_number_ids: Vec<String> = (0..args.numbers)
        .map(|n| format!("14{:09}{n:04}", run % 1_000_000_000))
        .collect();
    let mut business = SimBusiness::new(WABA, SIM_SECRET, SIM_TOKEN)
        .with_webhook_url(format!("{base}/webhooks/whatsapp"));
    for (n, id) in phone_number_ids.iter().enumerate() {
        business = business.with_phone_number(
            SimPhoneNumber::new(id, format!("+1 555-013-{n:04}"))
                .with_verified_name("Load Test Trading")
                .with_messages_per_second(u32::MAX),
        );
    }
    sim.add_business(business);
    let mut accounts = Vec::new();
    for (n, phone) in phone_number_ids.iter().enumerate() {
        let a = api
            .expect(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/whatsapp-accounts"),
                Some(json!({
                    "waba_id": WABA,
                    "business_account_id": "1300000000000000",
                    "phone_number_id": phone,
                    "app_id": "1300000000000003",
                    "display_phone_number": format!("+1 555-013-{n:04}"),
                    "business_name": "Load Test Trading",
                    "access_token": SIM_TOKEN,
                    "app_secret": SIM_SECRET,
                })),
                StatusCode::CREATED,
            )
            .await?;
        let id = a["id"].as_str().ok_or("the account has no id")?.to_owned();
        api.expect(
            Method::POST,
            &format!("/api/v1/whatsapp-accounts/{id}/verify"),
            Some(json!({})),
            StatusCode::OK,
        )
        .await?;
        api.expect(
            Method::PATCH,
            &format!("/api/v1/whatsapp-accounts/{id}"),
            Some(json!({"max_messages_per_second": args.rate})),
            StatusCode::OK,
        )
        .await?;
        accounts.push(id);
    }

    // Every customer writes to every number: the conversations' windows open.
    let started = Instant::now();
    let writes: Vec<(String, usize)> = phone_number_ids
        .iter()
        .flat_map(|phone| (0..args.contacts).map(move |k| (phone.clone(), k)))
        .collect();
    let results: Vec<_> = futures::stream::iter(writes)
        .map(|(phone, k)| async move {
            sim.send_inbound(
                &phone,
                Inbound::new(
                    format!("4477{k:08}"),
                    format!("Customer {k}"),
                    InboundContent::Text {
                        text: InboundText {
                            body: "Hello! Any news about my order?".into(),
                        },
                    },
                ),
            )
            .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let want = args.numbers * args.contacts;
    let conversations = loop {
        let open = open_conversations(api, &tenant, &accounts).await?;
        if open.len() >= want {
            break open;
        }
        if started.elapsed() > Duration::from_secs(args.timeout) {
            return Err(format!(
                "only {} of {want} conversations opened their window",
                open.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "setup: tenant {tenant}, {} numbers at {}/s, {} conversations with an open window ({:.1} s)",
        args.numbers,
        args.rate,
        conversations.len(),
        started.elapsed().as_secs_f64()
    );
    // Round-robin over numbers first: message i goes from number i % numbers.
    let mut by_account: Vec<Vec<String>> = vec![Vec::new(); accounts.len()];
    for (conversation, account) in conversations {
        if let Some(n) = accounts.iter().position(|a| *a == account) {
            by_account[n].push(conversation);
        }
    }
    let mut ordered = Vec::with_capacity(want);
    for k in 0..args.contacts {
        for list in &by_account {
            if let Some(c) = list.get(k) {
                ordered.push(c.clone());
            }
        }
    }
    Ok(World {
        tenant,
        apis,
        conversations: ordered,
        phone_number_ids,
    })
}

/// The tenant's conversations on `accounts` whose 24-hour window is open: (id, account).
async fn open_conversations(
    api: &Api,
    tenant: &str,
    accounts: &[String],
) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/tenants/{tenant}/conversations?limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.expect(Method::GET, &path, None, StatusCode::OK).await?;
        for c in page["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (Some(id), Some(account)) = (c["id"].as_str(), c["account_id"].as_str()) else {
                continue;
            };
            if c["window_expires_at"].is_string() && accounts.iter().any(|a| a == account) {
                out.push((id.to_owned(), account.to_owned()));
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

/// How the queueing went.
#[derive(Default)]
struct Queued {
    accepted: u64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

async fn queue(args: &Args, world: &World, run: u64) -> Queued {
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let conversations = Arc::new(world.conversations.clone());
    for c in 0..args.concurrency.max(1) {
        let api = world.apis[c % world.apis.len()].clone();
        let path = format!("/api/v1/tenants/{}/messages", world.tenant);
        let (next, accepted, conversations) =
            (next.clone(), accepted.clone(), conversations.clone());
        let total = args.messages;
        tasks.spawn(async move {
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let conversation = &conversations[i % conversations.len()];
                let body = json!({
                    "conversation_id": conversation,
                    "type": "text",
                    "text": {"body": format!("Your order is on its way (load {run:x} #{i})")},
                });
                let at = Instant::now();
                match api.send(Method::POST, &path, Some(body)).await {
                    Ok((StatusCode::ACCEPTED, _)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        latencies.push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok((status, v)) => {
                        let code = v["error"]["code"].as_str().unwrap_or_default();
                        *errors.entry(format!("{status} {code}")).or_default() += 1;
                    }
                    Err(e) => *errors.entry(format!("transport: {e}")).or_default() += 1,
                }
            }
            (errors, latencies)
        });
    }
    let mut out = Queued::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok((errors, latencies)) = done {
            for (k, v) in errors {
                *out.errors.entry(k).or_default() += v;
            }
            out.latencies_us.extend(latencies);
        }
    }
    out.elapsed = started.elapsed();
    out.accepted = accepted.load(Ordering::Relaxed);
    out
}

/// How many of the tenant's messages are in `status` (up to `limit`).
async fn count_status(api: &Api, tenant: &str, status: &str, limit: usize) -> Result<usize, Error> {
    let page = api
        .expect(
            Method::GET,
            &format!("/api/v1/tenants/{tenant}/messages?status={status}&limit={limit}"),
            None,
            StatusCode::OK,
        )
        .await?;
    Ok(page["items"].as_array().map_or(0, Vec::len))
}

/// The highest number of sends in any one-second window `[t, t + 1 s)` of sorted `times`.
fn max_per_second(times: &[Instant]) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end].duration_since(*t) < Duration::from_secs(1) {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Args) -> Result<(), Error> {
    if args.numbers == 0 || args.messages == 0 || args.contacts == 0 {
        return Err("--numbers, --messages and --contacts must be at least 1".into());
    }
    let listener = tokio::net::TcpListener::bind(&args.sim_listen).await?;
    let sim = Simulator::start(listener).await?;
    let (bases, local) = match &args.url {
        Some(url) => (vec![url.trim_end_matches('/').to_owned()], None),
        None => {
            let (bases, servers) = start_local_servers(&args, &sim.url()).await?;
            (bases, Some(servers))
        }
    };
    println!(
        "simulator {}; server(s) {} ({})",
        sim.url(),
        bases.join(", "),
        match (&args.url, args.backend) {
            (Some(_), _) => "external",
            (None, StoreBackend::Sqlite) => "in-process, embedded store",
            (None, StoreBackend::Mongodb) => "in-process, MongoDB",
        }
    );
    let world = setup(&args, &bases, &sim).await?;
    let run = run_id();
    let before = sim.sent_count();
    println!(
        "queueing {} messages on {} clients over {} numbers at {}/s each",
        args.messages, args.concurrency, args.numbers, args.rate
    );
    let started = Instant::now();
    let sim_started = Instant::now();

    // Progress while queueing.
    let queueing = queue(&args, &world, run);
    let watch = async {
        let mut last = before;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = sim.sent_count();
            println!(
                "  t={:>5.1} s  sent {:>7} (+{}/s)",
                started.elapsed().as_secs_f64(),
                now - before,
                now - last
            );
            last = now;
        }
    };
    let queued = tokio::select! {
        q = queueing => q,
        () = watch => unreachable!("the progress loop never ends"),
    };
    let accepted = usize::try_from(queued.accepted).unwrap_or(usize::MAX);
    // Drain: every accepted message at the simulator, none queued or sending in the API.
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last_print = Instant::now();
    loop {
        let now = sim.sent_count() - before;
        if now >= accepted {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not drained after {} s: {now} of {accepted} sent",
                args.timeout
            )
            .into());
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            println!(
                "  t={:>5.1} s  sent {now:>7}",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_at_sim = started.elapsed();
    let api = &world.apis[0];
    loop {
        let left = count_status(api, &world.tenant, "queued", 1).await?
            + count_status(api, &world.tenant, "sending", 1).await?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err("messages still queued or sending at the deadline".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed();
    let failed = count_status(api, &world.tenant, "failed", 100).await?;
    let unknown = count_status(api, &world.tenant, "unknown", 100).await?;

    // The simulator's record of this run's sends.
    let times = sim.send_times();
    let records = sim.sent_messages();
    let mut per_number: HashMap<&str, Vec<Instant>> = HashMap::new();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for (phone, at) in times.iter().skip(before) {
        if *at < sim_started {
            continue;
        }
        per_number.entry(phone.as_str()).or_default().push(*at);
        first = Some(first.map_or(*at, |f: Instant| f.min(*at)));
        last = Some(last.map_or(*at, |l: Instant| l.max(*at)));
    }
    let prefix = format!("(load {run:x} #");
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for r in records.iter().skip(before) {
        if let MessageContent::Text { text } = &r.message.content {
            if text.body.contains(&prefix) && !seen.insert(text.body.clone()) {
                duplicates += 1;
            }
        }
    }

    let q_secs = queued.elapsed.as_secs_f64();
    let mut lat = queued.latencies_us;
    lat.sort_unstable();
    println!();
    println!(
        "accepted (202)     {} in {q_secs:.2} s = {:.0}/s (latency p50 {:.1} ms, p99 {:.1} ms)",
        queued.accepted,
        queued.accepted as f64 / q_secs.max(f64::MIN_POSITIVE),
        f64::from(percentile(&lat, 50.0)) / 1000.0,
        f64::from(percentile(&lat, 99.0)) / 1000.0,
    );
    for (what, n) in &queued.errors {
        println!("  refused {what:<24} {n}");
    }
    let sent_total: usize = per_number.values().map(Vec::len).sum();
    let span = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "sent (at Meta)     {sent_total} = {:.0}/s from the first send to the last ({span:.2} s); {:.0}/s from the first POST",
        sent_total as f64 / span.max(f64::MIN_POSITIVE),
        sent_total as f64 / drained_at_sim.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    println!(
        "drained            {:.2} s after the first POST (all at Meta), {:.2} s (none queued/sending in the API)",
        drained_at_sim.as_secs_f64(),
        drained.as_secs_f64()
    );
    println!("failed {failed}, unknown {unknown} (first 100 counted), sent twice {duplicates}");
    let mut worst = 0;
    let mut phones: Vec<&String> = world.phone_number_ids.iter().collect();
    phones.sort();
    println!("per number (configured {}/s):", args.rate);
    let mut over = 0;
    for phone in phones {
        let mut t = per_number.remove(phone.as_str()).unwrap_or_default();
        t.sort_unstable();
        let max = max_per_second(&t);
        worst = worst.max(max);
        if max > args.rate as usize {
            over += 1;
        }
        let span = match (t.first(), t.last()) {
            (Some(f), Some(l)) => l.duration_since(*f).as_secs_f64(),
            _ => 0.0,
        };
        println!(
            "  {phone}  {:>7} sent, {:>6.0}/s average, max in any 1 s window {max}{}",
            t.len(),
            t.len() as f64 / span.max(f64::MIN_POSITIVE),
            if max > args.rate as usize {
                "  ABOVE THE RATE"
            } else {
                ""
            }
        );
    }
    println!(
        "max in any 1 s window, any number: {worst} (configured {}); numbers above the rate: {over}",
        args.rate
    );
    sim.shutdown().await;
    if let Some(servers) = local {
        servers.stop().await;
    }
    Ok(())
}
