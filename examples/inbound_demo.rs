//! Inbound demo: a WhatsApp conversation arrives in imix with no Meta account.
//!
//! ```sh
//! cargo run -p imix-examples --example inbound-demo
//! ```
//!
//! The demo starts the Graph API simulator and, in the same process, an imix server on
//! the embedded store in a temporary directory (its Graph API URL set to the simulator).
//! It signs in as the default administrator (`admin@example.com` / `admin123`, changing
//! that first password as every new installation must), creates a tenant and a WhatsApp
//! account whose number, app secret and token are the simulator's, and points the
//! simulated business's webhooks at the account's callback URL
//! (`/webhooks/whatsapp/{account_id}`).
//!
//! The simulator then sends, as signed Meta webhooks: a customer's first message from a
//! Click-to-WhatsApp ad, a photo (whose first download the simulator fails, so the media
//! job has to retry), a voice note, a location, a tap on a reply button, a reaction and a
//! forwarded text — all in one batch delivery, posted twice as Meta does when it misses
//! the first 200 — then `sent`/`delivered`/`read` statuses posted in reverse order, each
//! twice. It prints what the API shows afterwards: the contact, the conversation (unread
//! count, preview, 24-hour window), each message once with its content and statuses, and
//! the media served by `GET /api/v1/tenants/{t}/messages/{id}/media`.
//!
//! Against a server you run yourself, start the simulator on a fixed address, give the
//! server that address as its Graph API URL, and pass the server's URL (and, if you
//! changed it, the administrator's password):
//!
//! ```sh
//! IMIX_GRAPH_API_URL=http://127.0.0.1:4010 cargo run -p imix-server &
//! cargo run -p imix-examples --example inbound-demo -- \
//!   --server http://127.0.0.1:8080 --sim-listen 127.0.0.1:4010
//! ```
//!
//! Until the send API exists the server has no business messages of its own, so the demo's
//! statuses name the customer's first message: what they show is that each is recorded
//! once, with Meta's time, whatever order and however often they arrive.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use imix_whatsapp::simulator::{
    SendMode, SimBatch, SimBusiness, SimPhoneNumber, SimStatus, SimUser, Simulator,
};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "Shows a simulated WhatsApp conversation arriving in imix, no Meta account needed"
)]
struct Args {
    /// A running imix server (whose IMIX_GRAPH_API_URL is the simulator's address);
    /// without it the demo runs its own server in-process.
    #[arg(long)]
    server: Option<String>,
    /// Where the simulator listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    sim_listen: String,
    /// The administrator to sign in as.
    #[arg(long, default_value = "admin@example.com")]
    admin_email: String,
    /// Its password (the installation default, changed at first sign-in).
    #[arg(long, default_value = "admin123")]
    admin_password: String,
    /// The password the demo gives the administrator when it must change the default.
    #[arg(long, default_value = "demo-passphrase-2026")]
    new_admin_password: String,
}

/// A server running inside the demo, stopped (and its directory removed) at the end.
struct LocalServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), imix_server::ServerError>>,
    dir: std::path::PathBuf,
}

async fn start_local_server(graph_api_url: &str) -> Result<(String, LocalServer), Error> {
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let dir = std::env::temp_dir().join(format!("imix-inbound-demo-{run}"));
    let vars = HashMap::from([
        (
            "IMIX_DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
        (
            "IMIX_LOG_DIR".to_owned(),
            dir.join("logs").display().to_string(),
        ),
        ("IMIX_GRAPH_API_URL".to_owned(), graph_api_url.to_owned()),
    ]);
    let config = imix_server::config::Config::from_vars(vars)?;
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
    Ok((base, LocalServer { stop, task, dir }))
}

/// The API as one signed-in user.
struct Api {
    client: Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
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

    async fn get(&self, path: &str) -> Result<Value, Error> {
        match self.send(reqwest::Method::GET, path, None).await? {
            (StatusCode::OK, body) => Ok(body),
            (status, body) => Err(format!("GET {path}: {status} {body}").into()),
        }
    }
}

/// Signs in (waiting for a server that is still starting), changing the default password
/// when the server asks for it.
async fn sign_in(client: &Client, base: &str, args: &Args) -> Result<String, Error> {
    let attempt = |password: String| async move {
        let mut last = String::new();
        for _ in 0..100 {
            match client
                .post(format!("{base}/auth/token"))
                .form(&[
                    ("grant_type", "password"),
                    ("username", args.admin_email.as_str()),
                    ("password", password.as_str()),
                ])
                .send()
                .await
            {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    let body: Value = resp.json().await?;
                    return Ok::<_, Error>(Some(body));
                }
                // Refused: a wrong password, not a server still starting.
                Ok(_) => return Ok(None),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("the server at {base} does not answer: {last}").into())
    };
    let (body, password) = match attempt(args.admin_password.clone()).await? {
        Some(body) => (body, args.admin_password.clone()),
        // A second run against the same server: the default was changed already.
        None => match attempt(args.new_admin_password.clone()).await? {
            Some(body) => (body, args.new_admin_password.clone()),
            None => return Err(format!("cannot sign in as {}", args.admin_email).into()),
        },
    };
    let token = body["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned();
    if body["must_change_password"] != json!(true) {
        return Ok(token);
    }
    let resp = client
        .post(format!("{base}/api/v1/auth/change-password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": password, "new_password": args.new_admin_password}))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if status != StatusCode::OK {
        return Err(format!("changing the default password: {status} {body}").into());
    }
    println!(
        "signed in as {} (first password changed to {:?})",
        args.admin_email, args.new_admin_password
    );
    Ok(body["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// One line about a message's content, whatever its type.
fn summary(m: &Value) -> String {
    let c = &m["content"];
    let kind = m["kind"].as_str().unwrap_or("?");
    let mut s = match kind {
        "text" => format!("{:?}", c["text"]["body"].as_str().unwrap_or("")),
        "image" | "video" | "audio" | "document" | "sticker" => format!(
            "{} media {} {}",
            c[kind]["mime_type"].as_str().unwrap_or(""),
            c[kind]["id"].as_str().unwrap_or(""),
            c[kind]["caption"]
                .as_str()
                .map(|x| format!("{x:?}"))
                .unwrap_or_default()
        ),
        "location" => format!(
            "{} ({}, {})",
            c["location"]["name"].as_str().unwrap_or(""),
            c["location"]["latitude"],
            c["location"]["longitude"]
        ),
        "interactive" => format!(
            "tapped {:?}",
            c.pointer("/interactive/button_reply/title")
                .or_else(|| c.pointer("/interactive/list_reply/title"))
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
        "reaction" => format!(
            "{} to {}",
            c["reaction"]["emoji"].as_str().unwrap_or(""),
            c["reaction"]["message_id"].as_str().unwrap_or("")
        ),
        _ => c.to_string(),
    };
    if let Some(r) = c.get("referral") {
        s.push_str(&format!(
            " [from ad {:?}]",
            r["headline"].as_str().unwrap_or("")
        ));
    }
    if c.pointer("/context/forwarded") == Some(&json!(true)) {
        s.push_str(" [forwarded]");
    } else if let Some(id) = c.pointer("/context/id").and_then(Value::as_str) {
        s.push_str(&format!(" [in reply to {id}]"));
    }
    s
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let sim = Simulator::start(tokio::net::TcpListener::bind(&args.sim_listen).await?).await?;
    println!("Graph API simulator at {}", sim.url());
    let (base, local) = match &args.server {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let (base, server) = start_local_server(&sim.url()).await?;
            println!(
                "imix server (in-process, embedded store in {}) at {base}",
                server.dir.display()
            );
            (base, Some(server))
        }
    };
    let result = demo(&args, &sim, &base).await;
    if let Some(server) = local {
        let _ = server.stop.send(());
        let _ = server.task.await;
        let _ = std::fs::remove_dir_all(&server.dir);
    }
    sim.shutdown().await;
    result
}

async fn demo(args: &Args, sim: &Simulator, base: &str) -> Result<(), Error> {
    let client = Client::new();
    let token = sign_in(&client, base, args).await?;
    let api = Api {
        client,
        base: base.to_owned(),
        token,
    };

    // A tenant and its WhatsApp account: the simulator's business, number, token, secret.
    let run = unix_now();
    let (waba, phone) = (
        format!("{}", 104_000_000_000_000 + run % 1_000_000),
        format!("{}", 106_000_000_000_000 + run % 1_000_000),
    );
    let (token, secret) = (
        "EAAG-demo-access-token-0123456789",
        format!("demo-app-secret-{run:x}"),
    );
    sim.add_business(SimBusiness::new(&waba, &secret, token).with_phone_number(
        SimPhoneNumber::new(&phone, "+1 555-010-0001").with_verified_name("Demo Trading"),
    ));
    let (status, tenant) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({"name": format!("Demo Trading {run}")})),
        )
        .await?;
    if status != StatusCode::CREATED {
        return Err(format!("creating the tenant: {status} {tenant}").into());
    }
    let tenant_id = tenant["id"].as_str().ok_or("tenant without id")?.to_owned();
    let (status, account) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{tenant_id}/whatsapp-accounts"),
            Some(json!({
                "waba_id": waba,
                "business_account_id": "1000",
                "phone_number_id": phone,
                "app_id": "3003",
                "display_phone_number": "+1 555-010-0001",
                "business_name": "Demo Trading",
                "access_token": token,
                "app_secret": secret,
            })),
        )
        .await?;
    if status != StatusCode::CREATED {
        return Err(format!("adding the WhatsApp account: {status} {account}").into());
    }
    let account_id = account["id"].as_str().ok_or("account without id")?;
    sim.set_webhook_url(&waba, &format!("{base}/webhooks/whatsapp/{account_id}"));
    println!("tenant {tenant_id}, WhatsApp account {account_id} (phone number id {phone})\n");

    // The customer's side of the conversation, one batch, posted twice.
    let aicha = SimUser::new("22245000001", "Aïcha");
    let photo = sim.add_inbound_media(
        &phone,
        "image/jpeg",
        Bytes::from_static(b"\xff\xd8\xff\xe0 a photo of the dress \xff\xd9"),
    )?;
    sim.fail_media_downloads(&photo.id, 1, 503);
    let voice = sim.add_inbound_media(
        &phone,
        "audio/ogg",
        Bytes::from_static(b"OggS a voice note"),
    )?;
    let t0 = unix_now() - 300;
    let first = aicha
        .text("Hello! Is the blue dress still available?")
        .from_ad("120226305854810726", "Summer collection")
        .at(t0);
    let offer = "wamid.HBgLMjIyNDUwMDAwMDEVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA";
    let messages = vec![
        first.clone(),
        aicha.image(&photo, Some("this one")).at(t0 + 10),
        aicha.audio(&voice, true).at(t0 + 20),
        aicha
            .location(18.0735, -15.9582, "Marché Capitale", "Nouakchott", None)
            .at(t0 + 30),
        aicha
            .button_reply(offer, "reserve", "Reserve it")
            .at(t0 + 40),
        aicha.reaction(&first.id, "❤️").at(t0 + 50),
        aicha
            .text("My sister wants one too")
            .forwarded(false)
            .at(t0 + 60),
    ];
    let total = messages.len();
    let sent = sim
        .send_batch(
            &SimBatch::new().messages(&phone, messages),
            SendMode {
                duplicate: true,
                ..SendMode::default()
            },
        )
        .await?;
    println!(
        "simulator: {total} messages of 6 types in one delivery, posted {} times -> HTTP {:?}",
        sent.deliveries.len(),
        sent.deliveries.iter().map(|d| d.status).collect::<Vec<_>>()
    );
    let statuses = sim
        .send_batch(
            &SimBatch::new().statuses(&phone, SimStatus::sequence(&first.id, &aicha.wa_id, t0 + 1)),
            SendMode {
                duplicate: true,
                statuses_out_of_order: true,
                ..SendMode::default()
            },
        )
        .await?;
    let order: Vec<String> = statuses
        .deliveries
        .iter()
        .filter_map(|d| d.json())
        .filter_map(|j| {
            j.pointer("/entry/0/changes/0/value/statuses/0/status")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    println!(
        "simulator: statuses posted in this order: {}\n",
        order.join(", ")
    );

    // What imix shows: wait for the background processing (messages, statuses, media).
    let t = format!("/api/v1/tenants/{tenant_id}");
    let mut conversation = Value::Null;
    let mut msgs = Vec::new();
    for _ in 0..150 {
        let list = api.get(&format!("{t}/conversations")).await?;
        if let Some(c) = list["items"].as_array().and_then(|l| l.first()) {
            conversation = c.clone();
            let id = c["id"].as_str().unwrap_or_default();
            msgs = api
                .get(&format!("{t}/conversations/{id}/messages?limit=100"))
                .await?["items"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let statuses: usize = msgs
                .iter()
                .filter_map(|m| m["statuses"].as_array())
                .map(Vec::len)
                .sum();
            let photo_in = match msgs.iter().find(|m| m["kind"] == "image") {
                Some(m) => {
                    api.get(&format!(
                        "{t}/messages/{}/media/status",
                        m["id"].as_str().unwrap_or("")
                    ))
                    .await?["state"]
                        == "available"
                }
                None => false,
            };
            if msgs.len() == total && statuses == 3 && photo_in {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let contacts = api.get(&format!("{t}/contacts")).await?;
    for c in contacts["items"].as_array().into_iter().flatten() {
        println!(
            "contact       {} {} (wa_id {})",
            c["profile_name"].as_str().unwrap_or(""),
            c["phone"].as_str().unwrap_or(""),
            c["wa_id"].as_str().unwrap_or("")
        );
    }
    println!(
        "conversation  {} status {} unread {} preview {:?} window open until {}",
        conversation["id"].as_str().unwrap_or("(none)"),
        conversation["status"],
        conversation["unread"],
        conversation["preview"].as_str().unwrap_or(""),
        conversation["window_expires_at"].as_str().unwrap_or("-")
    );
    println!(
        "messages      {} (sent {total}, each delivered twice)",
        msgs.len()
    );
    for m in &msgs {
        println!(
            "  {}  {:<11} {}",
            m["timestamp"].as_str().unwrap_or(""),
            m["kind"].as_str().unwrap_or(""),
            summary(m)
        );
        for s in m["statuses"].as_array().into_iter().flatten() {
            println!(
                "      status {} at {}",
                s["state"].as_str().unwrap_or(""),
                s["at"].as_str().unwrap_or("")
            );
        }
        if ["image", "audio"].contains(&m["kind"].as_str().unwrap_or("")) {
            let id = m["id"].as_str().unwrap_or("");
            let status = api.get(&format!("{t}/messages/{id}/media/status")).await?;
            let resp = api
                .client
                .get(format!("{base}{t}/messages/{id}/media"))
                .bearer_auth(&api.token)
                .send()
                .await?;
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let code = resp.status();
            let size = resp.bytes().await?.len();
            println!(
                "      media {} after {} download attempt(s): GET .../media -> {code} {ct}, {size} bytes",
                status["state"].as_str().unwrap_or("?"),
                status["attempts"]
            );
        }
    }
    if msgs.len() != total {
        return Err(format!("expected {total} messages, the API shows {}", msgs.len()).into());
    }
    Ok(())
}
