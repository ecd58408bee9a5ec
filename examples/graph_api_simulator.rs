//! Run the Graph API simulator of `imix-whatsapp` on its own: a local stand-in for Meta's
//! Cloud API with one demo business, access token and two approved templates, a verified
//! phone number and an unverified one (to walk request-code → verify-code → register).
//! Messages sent to it get `sent` → `delivered` → `read` status webhooks (or a `failed`
//! 131047 outside the 24-hour window), new templates are approved at once, and every
//! verification code it "sends" is printed (Meta would text or call the number).
//!
//! ```sh
//! cargo run -p imix-examples --example graph-api-simulator
//! # then, in another shell, point imix at it:
//! IMIX_GRAPH_API_URL=http://127.0.0.1:9080 cargo run -p imix-server
//! ```
//!
//! Environment (all optional):
//! - `GRAPH_SIMULATOR_BIND` — listen address, default `127.0.0.1:9080` (`127.0.0.1:0` picks a port)
//! - `GRAPH_SIMULATOR_WEBHOOK_URL` — where webhooks go, e.g.
//!   `http://127.0.0.1:8000/webhooks/whatsapp/<account_id>`
//! - `GRAPH_SIMULATOR_TOKEN` — the access token to accept, default `demo-access-token`
//! - `GRAPH_SIMULATOR_APP_SECRET` — the app secret that signs webhooks, default `demo-app-secret`

use imix_whatsapp::simulator::{SimBusiness, SimPhoneNumber, SimTemplate, Simulator};

const WABA_ID: &str = "100000000000001";
const PHONE_NUMBER_ID: &str = "100000000000002";
const UNVERIFIED_PHONE_NUMBER_ID: &str = "100000000000003";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = env_or("GRAPH_SIMULATOR_BIND", "127.0.0.1:9080");
    let token = env_or("GRAPH_SIMULATOR_TOKEN", "demo-access-token");
    let app_secret = env_or("GRAPH_SIMULATOR_APP_SECRET", "demo-app-secret");
    let webhook_url = std::env::var("GRAPH_SIMULATOR_WEBHOOK_URL").ok();

    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let sim = Simulator::start(listener).await?;
    let mut business = SimBusiness::new(WABA_ID, app_secret.clone(), token.clone())
        .with_phone_number(
            SimPhoneNumber::new(PHONE_NUMBER_ID, "+1 555-010-0002").with_verified_name("imix Demo"),
        )
        .with_phone_number(
            SimPhoneNumber::new(UNVERIFIED_PHONE_NUMBER_ID, "+1 555-010-0003")
                .with_verified_name("imix Demo")
                .unverified(),
        )
        .with_template(SimTemplate::approved(
            "hello_world",
            "en_US",
            None,
            "Hello World",
        ))
        .with_template(SimTemplate::approved(
            "order_update",
            "en_US",
            Some("Order {{1}}"),
            "Hi {{1}}, your order {{2}} ships on {{3}}.",
        ));
    if let Some(url) = &webhook_url {
        business = business.with_webhook_url(url);
    }
    sim.add_business(business);
    sim.set_auto_statuses(true);
    sim.set_auto_approve_templates(true);
    let mut codes = sim.verification_codes();
    tokio::spawn(async move {
        while let Some(sent) = codes.recv().await {
            println!(
                "verification code {} sent by {} to phone number id {}",
                sent.code, sent.code_method, sent.phone_number_id
            );
        }
    });

    let url = sim.url();
    println!("Graph API simulator listening on {url}");
    println!();
    println!("  IMIX_GRAPH_API_URL   {url}");
    println!("  access token         {token}");
    println!("  app secret           {app_secret}");
    println!("  WABA id              {WABA_ID}");
    println!("  phone number id      {PHONE_NUMBER_ID} (verified, registered)");
    println!("  unverified number    {UNVERIFIED_PHONE_NUMBER_ID} (walk request-code, verify-code, register)");
    println!(
        "  webhooks to          {}",
        webhook_url
            .as_deref()
            .unwrap_or("(none: set GRAPH_SIMULATOR_WEBHOOK_URL)")
    );
    println!();
    println!("Send a message:");
    println!(
        "  curl -s {url}/v23.0/{PHONE_NUMBER_ID}/messages -H 'Authorization: Bearer {token}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"messaging_product\":\"whatsapp\",\"to\":\"16505551234\",\"type\":\"template\",\"template\":{{\"name\":\"hello_world\",\"language\":{{\"policy\":\"deterministic\",\"code\":\"en_US\"}}}}}}'"
    );
    println!("Make a customer write in (sends a signed inbound webhook):");
    println!(
        "  curl -s {url}/_simulator/inbound -H 'Content-Type: application/json' \\\n    -d '{{\"phone_number_id\":\"{PHONE_NUMBER_ID}\",\"from\":\"16505551234\",\"name\":\"Sheena\",\"text\":\"Hi!\"}}'"
    );
    println!("Read the last verification code sent to a number (it is also printed here):");
    println!(
        "  curl -s '{url}/_simulator/verification_code?phone_number_id={UNVERIFIED_PHONE_NUMBER_ID}'"
    );
    println!();
    println!("Ctrl-C stops it.");

    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
