//! Run the OpenAI-compatible AI simulator of `imix-ai` on its own: a local stand-in for
//! ChatGPT (OpenAI) and DeepSeek with their documented response, stream, usage and error
//! shapes, deterministic answers (they quote the customer's last message) and, for
//! `deepseek-reasoner`, a separate `reasoning_content`.
//!
//! ```sh
//! cargo run -p imix-examples --example ai-simulator
//! # then point a provider at it: ChatGPT URL http://127.0.0.1:9090/v1,
//! # DeepSeek URL http://127.0.0.1:9090/api/v1, API key sk-sim-key-0001
//! ```
//!
//! Environment (all optional):
//! - `AI_SIMULATOR_BIND` — listen address, default `127.0.0.1:9090` (`127.0.0.1:0` picks a port)
//! - `AI_SIMULATOR_KEY` — the API key to accept, default `sk-sim-key-0001` (AI settings take keys of 8 characters or more)
//! - `AI_SIMULATOR_CHUNK_DELAY_MS` — pause before each stream chunk, default 40 (to watch
//!   answers stream in)
//! - `AI_SIMULATOR_RESPONSE_DELAY_MS` — pause before every answer, default 0 (a provider's
//!   own latency)

use std::time::Duration;

use imix_ai::simulator::{self, SimulatorConfig, SIM_API_KEY};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = env_or("AI_SIMULATOR_BIND", "127.0.0.1:9090");
    let key = env_or("AI_SIMULATOR_KEY", SIM_API_KEY);
    let delay: u64 = env_or("AI_SIMULATOR_CHUNK_DELAY_MS", "40")
        .parse()
        .map_err(|e| format!("AI_SIMULATOR_CHUNK_DELAY_MS: {e}"))?;

    let response_delay: u64 = env_or("AI_SIMULATOR_RESPONSE_DELAY_MS", "0")
        .parse()
        .map_err(|e| format!("AI_SIMULATOR_RESPONSE_DELAY_MS: {e}"))?;

    let config = SimulatorConfig {
        api_keys: vec![key.clone()],
        ..SimulatorConfig::default()
    }
    .with_chunk_delay(Duration::from_millis(delay))
    .with_response_delay(Duration::from_millis(response_delay));
    let models: Vec<String> = config
        .models
        .iter()
        .map(|m| {
            format!(
                "{} ({} tokens{})",
                m.name,
                m.context_tokens,
                if m.reasoner { ", reasoning" } else { "" }
            )
        })
        .collect();
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let sim = simulator::spawn_on(listener, config).await?;
    let url = &sim.base_url;

    println!("AI simulator listening on {url}");
    println!();
    println!("  ChatGPT API URL    {}", sim.openai_base_url());
    println!("  DeepSeek API URL   {}", sim.deepseek_base_url());
    println!("  API key            {key}");
    println!("  models             {}", models.join(", "));
    println!();
    println!("Ask for an answer (add \"stream\": true for server-sent events):");
    println!(
        "  curl -s {url}/api/v1/chat/completions -H 'Authorization: Bearer {key}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"deepseek-reasoner\",\"messages\":[{{\"role\":\"user\",\"content\":\"Do you ship on Fridays?\"}}]}}'"
    );
    println!(
        "Make the next answers fail (outcomes: answer, invalid_key, model_not_found, rate_limited,"
    );
    println!(
        "insufficient_quota, insufficient_balance, context_too_long, server_error, overloaded,"
    );
    println!("bad_json, slow, cut_stream, stream_error):");
    println!(
        "  curl -s {url}/__sim/script -H 'Content-Type: application/json' \\\n    -d '[{{\"kind\":\"rate_limited\",\"retry_after\":2}},{{\"kind\":\"server_error\"}}]'"
    );
    println!("See what was sent:");
    println!("  curl -s {url}/__sim/requests");
    println!();
    println!("Ctrl-C stops it.");

    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
