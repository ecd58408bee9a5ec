//! Load tool for imix's webhook ingest: posts distinct, correctly signed WhatsApp webhook
//! deliveries (`X-Hub-Signature-256`) at a running imix server, either at a target rate or
//! flat out on N connections, and reports deliveries/s acknowledged (HTTP 200), errors by
//! status and latency percentiles. Figures on the development machine are in
//! `docs/benchmarks.md` ("Webhook ingest").
//!
//! ```sh
//! # 1. a fresh server (embedded SQLite)
//! IMIX_DATA_DIR=/tmp/imix-load/data IMIX_LOG_DIR=/tmp/imix-load/logs IMIX_LOG=warn \
//!   cargo run --release -p imix-server
//! # 2. a tenant and a WhatsApp account with a known app secret (signs in as the default
//! #    administrator, changing its first password); prints the arguments for step 3
//! cargo run --release -p imix-examples --example webhook-load -- \
//!   --url http://127.0.0.1:8080 --setup
//! # 3. flat out on 64 connections for 20 s, or 10,000 deliveries/s for 20 s
//! cargo run --release -p imix-examples --example webhook-load -- \
//!   --url http://127.0.0.1:8080 --phone-number-id <id> --secret <secret> \
//!   --connections 64 --duration 20
//! cargo run --release -p imix-examples --example webhook-load -- \
//!   --url http://127.0.0.1:8080 --phone-number-id <id> --secret <secret> \
//!   --rate 10000 --duration 20
//! ```
//!
//! Each delivery is what Meta posts for one inbound text message: one entry, one
//! `messages` change whose `value` has `metadata.phone_number_id`, one contact and one
//! text message with a `wamid` no other delivery (of this or any run) has. Senders are
//! drawn round-robin from `--contacts` customers, so the server sees a realistic mix of new
//! and existing conversations.
//!
//! With `--drain` (and `--tenant`, `--admin-email`, `--admin-password`), after the load the
//! tool posts one marker delivery from a new customer and polls the tenant's conversations
//! through the API until the marker's conversation shows it: the server processes
//! deliveries oldest first, so that is how long the backlog took to drain.
//!
//! In rate mode latency is measured from each request's start; requests are started on
//! schedule from a ticker (open loop, so a slow answer does not delay the next request)
//! and the tool reports how late it started them, so a client that could not keep up is
//! visible rather than hidden. At most `--max-in-flight` requests are outstanding; a
//! request not started for that reason is counted as skipped.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use reqwest::{Client, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "Posts signed WhatsApp webhook deliveries at an imix server and reports throughput and latency"
)]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Create a tenant and a WhatsApp account with a known app secret, print the arguments
    /// to load it with, and exit.
    #[arg(long)]
    setup: bool,
    /// The platform administrator's email (setup and drain).
    #[arg(long, default_value = "admin@example.com")]
    admin_email: String,
    /// The platform administrator's password. At setup, when it is the default `admin123`
    /// of a fresh data directory, it is changed to `--new-admin-password` first.
    #[arg(long, default_value = "admin123")]
    admin_password: String,
    /// What setup changes the default administrator password to.
    #[arg(long, default_value = "load-tool-passphrase-1")]
    new_admin_password: String,
    /// The phone number id of an account on the server (printed by `--setup`).
    #[arg(long)]
    phone_number_id: Option<String>,
    /// That account's app secret (printed by `--setup`).
    #[arg(long, env = "WEBHOOK_LOAD_SECRET")]
    secret: Option<String>,
    /// The WhatsApp Business Account id written into each entry.
    #[arg(long, default_value = "1200000000000001")]
    waba_id: String,
    /// Path to post to: the app-level callback URL, or `/webhooks/whatsapp/<account_id>`.
    #[arg(long, default_value = "/webhooks/whatsapp")]
    path: String,
    /// Target deliveries per second (open loop). Without it, runs flat out.
    #[arg(long)]
    rate: Option<u64>,
    /// Connections (concurrent requests, each waiting for its answer) when flat out.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Distinct customers the messages come from.
    #[arg(long, default_value_t = 1000)]
    contacts: u64,
    /// Outstanding requests allowed in rate mode.
    #[arg(long, default_value_t = 2048)]
    max_in_flight: usize,
    /// Runtime threads of the tool (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// After the load, measure how long the server takes to process the backlog.
    #[arg(long)]
    drain: bool,
    /// The tenant whose conversations `--drain` polls (printed by `--setup`).
    #[arg(long)]
    tenant: Option<String>,
    /// Give up waiting for the drain after this many seconds.
    #[arg(long, default_value_t = 3600)]
    drain_timeout: u64,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Error> {
    let base = args.url.trim_end_matches('/').to_owned();
    let client = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    if args.setup {
        return setup(&client, &base, &args).await;
    }
    let (Some(phone_number_id), Some(secret)) = (args.phone_number_id.clone(), args.secret.clone())
    else {
        return Err("--phone-number-id and --secret are required (run --setup first)".into());
    };
    let target = Target {
        client: client.clone(),
        url: format!("{base}{}", args.path),
        maker: Arc::new(Maker::new(
            phone_number_id,
            args.waba_id.clone(),
            SecretString::from(secret),
            args.contacts.max(1),
        )),
    };
    let duration = Duration::from_secs(args.duration);
    let cpu_before = process_cpu_seconds();
    let report = match args.rate {
        Some(rate) => {
            println!(
                "posting {rate} deliveries/s for {}s to {}",
                args.duration, target.url
            );
            at_rate(&target, rate, duration, args.max_in_flight).await
        }
        None => {
            println!(
                "posting flat out on {} connections for {}s to {}",
                args.connections, args.duration, target.url
            );
            flat_out(&target, args.connections.max(1), duration).await
        }
    };
    let cpu = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    report.print(cpu);
    if args.drain {
        let Some(tenant) = args.tenant.as_deref() else {
            return Err("--drain needs --tenant (printed by --setup)".into());
        };
        let token = sign_in_as(&client, &base, &args.admin_email, &args.admin_password).await?;
        drain(
            &target,
            &base,
            &token,
            tenant,
            Duration::from_secs(args.drain_timeout),
        )
        .await?;
    }
    Ok(())
}

/// Builds distinct signed deliveries.
struct Maker {
    phone_number_id: String,
    waba_id: String,
    secret: SecretString,
    contacts: u64,
    /// Distinguishes this run's wamids from every other run's.
    run: u64,
    next: AtomicU64,
}

impl Maker {
    fn new(phone_number_id: String, waba_id: String, secret: SecretString, contacts: u64) -> Self {
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Self {
            phone_number_id,
            waba_id,
            secret,
            contacts,
            run,
            next: AtomicU64::new(0),
        }
    }

    /// The next delivery: its body and signature header.
    fn next(&self) -> (Vec<u8>, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let customer = 22_245_000_000 + n % self.contacts;
        let text = format!("Hello, is order {n} ready for pick-up?");
        self.delivery(
            &customer.to_string(),
            &format!("Customer {customer}"),
            &text,
            n,
        )
    }

    fn delivery(&self, wa_id: &str, name: &str, text: &str, n: u64) -> (Vec<u8>, String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": self.waba_id,
                "changes": [{
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550100001",
                            "phone_number_id": self.phone_number_id,
                        },
                        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                        "messages": [{
                            "from": wa_id,
                            "id": format!("wamid.HBgL{:016X}{n:012X}", self.run),
                            "timestamp": now.to_string(),
                            "type": "text",
                            "text": {"body": text},
                        }],
                    },
                    "field": "messages",
                }],
            }],
        });
        let body = body.to_string().into_bytes();
        let signature = imix_whatsapp::webhook::sign(&self.secret, &body);
        (body, signature)
    }
}

/// Where deliveries go.
#[derive(Clone)]
struct Target {
    client: Client,
    url: String,
    maker: Arc<Maker>,
}

/// The outcome of one request.
enum Outcome {
    Status(StatusCode),
    Transport(&'static str),
}

impl Target {
    async fn post(&self, body: Vec<u8>, signature: String) -> Outcome {
        let sent = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(imix_whatsapp::webhook::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                // Read the answer to the end so the connection is reused.
                let _ = resp.bytes().await;
                Outcome::Status(status)
            }
            Err(e) if e.is_timeout() => Outcome::Transport("timeout"),
            Err(e) if e.is_connect() => Outcome::Transport("connect"),
            Err(_) => Outcome::Transport("other transport error"),
        }
    }
}

/// What a run measured.
#[derive(Default)]
struct Report {
    elapsed: Duration,
    /// Latency of each acknowledged (200) delivery, in microseconds.
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// Rate mode: how late requests were started against their schedule, microseconds.
    start_lag_us: Vec<u32>,
    skipped: u64,
}

impl Report {
    fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Status(StatusCode::OK) => self
                .latencies_us
                .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX)),
            Outcome::Status(status) => *self.errors.entry(status.to_string()).or_default() += 1,
            Outcome::Transport(kind) => *self.errors.entry(kind.to_owned()).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Report) {
        self.latencies_us.extend(other.latencies_us);
        self.start_lag_us.extend(other.start_lag_us);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.skipped += other.skipped;
    }

    fn print(mut self, cpu: Option<f64>) {
        let secs = self.elapsed.as_secs_f64();
        let ok = self.latencies_us.len();
        let failed: u64 = self.errors.values().sum();
        println!("elapsed            {secs:.2} s");
        println!(
            "acknowledged (200) {ok} = {:.0} deliveries/s",
            ok as f64 / secs.max(f64::MIN_POSITIVE)
        );
        println!("errors             {failed}");
        for (what, n) in &self.errors {
            println!("  {what:<16} {n}");
        }
        if self.skipped > 0 {
            println!(
                "skipped            {} (in-flight cap reached: the server fell behind)",
                self.skipped
            );
        }
        self.latencies_us.sort_unstable();
        let ms = |us: u32| f64::from(us) / 1000.0;
        if let (Some(&max), false) = (self.latencies_us.last(), self.latencies_us.is_empty()) {
            println!(
                "latency of 200s    p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
                ms(percentile(&self.latencies_us, 50.0)),
                ms(percentile(&self.latencies_us, 90.0)),
                ms(percentile(&self.latencies_us, 99.0)),
                ms(percentile(&self.latencies_us, 99.9)),
                ms(max),
            );
        }
        if !self.start_lag_us.is_empty() {
            self.start_lag_us.sort_unstable();
            println!(
                "start lag          p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (how late the tool started requests)",
                ms(percentile(&self.start_lag_us, 50.0)),
                ms(percentile(&self.start_lag_us, 99.0)),
                ms(*self.start_lag_us.last().unwrap_or(&0)),
            );
        }
        if let Some(cpu) = cpu {
            println!(
                "tool CPU           {cpu:.1} s ({:.0}% of one core)",
                100.0 * cpu / secs.max(f64::MIN_POSITIVE)
            );
        }
    }
}

/// The `p`th percentile of sorted `values` (nearest rank).
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// This process's user + system CPU time (Linux), in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

/// `connections` loops, each posting its next delivery as soon as the last is answered.
async fn flat_out(target: &Target, connections: usize, duration: Duration) -> Report {
    let started = Instant::now();
    let deadline = started + duration;
    let mut loops = Vec::with_capacity(connections);
    for _ in 0..connections {
        let target = target.clone();
        loops.push(tokio::spawn(async move {
            let mut report = Report::default();
            while Instant::now() < deadline {
                let (body, signature) = target.maker.next();
                let at = Instant::now();
                let outcome = target.post(body, signature).await;
                report.record(outcome, at.elapsed());
            }
            report
        }));
    }
    let mut report = Report::default();
    for handle in loops {
        // A loop that panicked loses its counts; there is nothing to recover from it.
        if let Ok(r) = handle.await {
            report.merge(r);
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// Starts `rate` requests a second on schedule for `duration`, then waits for the answers.
async fn at_rate(target: &Target, rate: u64, duration: Duration, max_in_flight: usize) -> Report {
    let shared = Arc::new(Mutex::new(Report::default()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let total = rate.saturating_mul(duration.as_secs());
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent: u64 = 0;
    let mut lags = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut skipped = 0;
    let mut tasks = tokio::task::JoinSet::new();
    while sent < total {
        ticker.tick().await;
        let now = Instant::now();
        // Request k is due at k / rate: the first at once.
        let due = ((now - started).as_secs_f64() * rate as f64) as u64 + 1;
        while sent < due.min(total) {
            let scheduled = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            lags.push(
                u32::try_from(now.saturating_duration_since(scheduled).as_micros())
                    .unwrap_or(u32::MAX),
            );
            sent += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                skipped += 1;
                continue;
            };
            let target = target.clone();
            let shared = shared.clone();
            tasks.spawn(async move {
                let (body, signature) = target.maker.next();
                let at = Instant::now();
                let outcome = target.post(body, signature).await;
                let latency = at.elapsed();
                drop(permit);
                if let Ok(mut report) = shared.lock() {
                    report.record(outcome, latency);
                }
            });
        }
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut report = match Arc::try_unwrap(shared) {
        Ok(m) => m.into_inner().unwrap_or_default(),
        Err(shared) => shared
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default(),
    };
    report.elapsed = started.elapsed();
    report.start_lag_us = lags;
    report.skipped = skipped;
    report
}

/// Posts a marker delivery from a customer no other delivery comes from, then polls the
/// tenant's conversations until one shows the marker as its preview.
async fn drain(
    target: &Target,
    base: &str,
    token: &str,
    tenant: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let marker = format!("drain marker {:016X}", target.maker.run);
    let wa_id = format!("2229{:08}", target.maker.run % 100_000_000);
    let (body, signature) = target
        .maker
        .delivery(&wa_id, "Drain Marker", &marker, u64::MAX);
    let posted = Instant::now();
    match target.post(body, signature).await {
        Outcome::Status(StatusCode::OK) => {}
        Outcome::Status(s) => return Err(format!("the marker delivery was answered {s}").into()),
        Outcome::Transport(e) => return Err(format!("the marker delivery failed: {e}").into()),
    }
    println!("marker posted; waiting for the server to process everything before it");
    let mut polls = 0u64;
    loop {
        polls += 1;
        if marker_seen(&target.client, base, token, tenant, &marker).await? {
            println!(
                "backlog drained   {:.1} s after the load ended ({polls} polls)",
                posted.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if posted.elapsed() > timeout {
            return Err(format!("not drained after {}s", timeout.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether any of `tenant`'s conversations has `marker` as its preview.
async fn marker_seen(
    client: &Client,
    base: &str,
    token: &str,
    tenant: &str,
    marker: &str,
) -> Result<bool, Error> {
    let mut cursor: Option<String> = None;
    loop {
        let mut req = client
            .get(format!("{base}/api/v1/tenants/{tenant}/conversations"))
            .bearer_auth(token)
            .query(&[("limit", "100")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let page: Value = resp.json().await?;
        if status != StatusCode::OK {
            return Err(format!("listing conversations: {status} {page}").into());
        }
        let items = page["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if items.iter().any(|c| c["preview"].as_str() == Some(marker)) {
            return Ok(true);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(false),
        }
    }
}

/// Signs in with the password grant; returns `(access token, must change password)`.
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

/// A token for `email`, or an error naming the failed sign-in.
async fn sign_in_as(
    client: &Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<String, Error> {
    match sign_in(client, base, email, password).await? {
        Some((token, false)) => Ok(token),
        Some((_, true)) => {
            Err(format!("{email} must change its password first (run --setup)").into())
        }
        None => Err(format!("cannot sign in as {email}").into()),
    }
}

/// A request as `token` with a JSON body; returns status and JSON answer.
async fn send_json(
    client: &Client,
    token: &str,
    url: String,
    body: Value,
) -> Result<(StatusCode, Value), Error> {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Signs in as the platform administrator (changing the default password of a fresh data
/// directory), creates a tenant and a WhatsApp account, and prints how to load it.
async fn setup(client: &Client, base: &str, args: &Args) -> Result<(), Error> {
    let mut admin_password = args.admin_password.clone();
    let signed_in = match sign_in(client, base, &args.admin_email, &admin_password).await? {
        Some(s) => s,
        None => {
            // A second setup on the same data directory: the password was changed already.
            admin_password = args.new_admin_password.clone();
            sign_in(client, base, &args.admin_email, &admin_password)
                .await?
                .ok_or_else(|| format!("cannot sign in as {}", args.admin_email))?
        }
    };
    let token = match signed_in {
        (token, false) => token,
        (token, true) => {
            let (status, body) = send_json(
                client,
                &token,
                format!("{base}/api/v1/auth/change-password"),
                json!({"current_password": admin_password, "new_password": args.new_admin_password}),
            )
            .await?;
            if status != StatusCode::OK {
                return Err(format!("changing the administrator password: {status} {body}").into());
            }
            admin_password = args.new_admin_password.clone();
            body["access_token"]
                .as_str()
                .ok_or("the password change answer has no access_token")?
                .to_owned()
        }
    };
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let (status, tenant) = send_json(
        client,
        &token,
        format!("{base}/api/v1/tenants"),
        json!({"name": format!("Load test {run}")}),
    )
    .await?;
    if status != StatusCode::CREATED {
        return Err(format!("creating the tenant: {status} {tenant}").into());
    }
    let tenant_id = tenant["id"]
        .as_str()
        .ok_or("the tenant has no id")?
        .to_owned();
    // Distinct per setup: a phone number id belongs to one account platform-wide.
    let phone_number_id = format!("13{:013}", run % 10_000_000_000_000);
    let secret = format!(
        "load-app-secret-{run:x}-{:x}",
        run.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    let (status, account) = send_json(
        client,
        &token,
        format!("{base}/api/v1/tenants/{tenant_id}/whatsapp-accounts"),
        json!({
            "waba_id": args.waba_id,
            "business_account_id": "1200000000000000",
            "phone_number_id": phone_number_id,
            "app_id": "1200000000000003",
            "display_phone_number": "+1 555-010-0001",
            "business_name": "Load Test Trading",
            "access_token": "EAAG-load-test-access-token-0123456789",
            "app_secret": secret,
        }),
    )
    .await?;
    if status != StatusCode::CREATED {
        return Err(format!("adding the WhatsApp account: {status} {account}").into());
    }
    let account_id = account["id"].as_str().unwrap_or_default();
    println!("tenant            {tenant_id}");
    println!("account           {account_id}");
    println!("phone number id   {phone_number_id}");
    println!("app secret        {secret}");
    println!("administrator     {} / {admin_password}", args.admin_email);
    println!();
    println!(
        "--url {base} --phone-number-id {phone_number_id} --secret {secret} --waba-id {} --tenant {tenant_id} --admin-password {admin_password}",
        args.waba_id
    );
    Ok(())
}
