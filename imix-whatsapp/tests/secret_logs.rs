//! No secret reaches a log line or a `Debug` output, also when Meta refuses a call.
//!
//! This test is a binary of its own, with a process-wide subscriber: `tracing` caches per
//! call site whether anyone listens, and a thread-local subscriber of one test, set while
//! other tests of the same process reach the same call sites on other threads, misses
//! events at random.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::{Arc, Mutex};

use imix_whatsapp::model::OutboundMessage;
use imix_whatsapp::simulator::{Fault, SimBusiness, SimPhoneNumber, Simulator};
use imix_whatsapp::{AccessToken, GraphApiClient, GraphApiConfig, WhatsAppClient};
use tokio::net::TcpListener;

const WABA: &str = "102290129340398";
const PHONE: &str = "106540352242922";
const TOKEN: &str = "EAAGm0PX4ZCpsBAtest-token-123";
const SECRET: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
const USER: &str = "16505551234";

/// A `MakeWriter` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_logs_or_debug_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test binary");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener).await.unwrap();
    sim.add_business(SimBusiness::new(WABA, SECRET, TOKEN).with_phone_number(
        SimPhoneNumber::new(PHONE, "+1 555-078-3881").with_verified_name("Jasper's Market"),
    ));
    let client = GraphApiClient::new(GraphApiConfig::with_base_url(sim.url())).unwrap();
    let token = AccessToken::new(TOKEN);

    let text = OutboundMessage::text(USER, "hi", false);
    client.send_message(&token, PHONE, &text).await.unwrap();
    sim.inject_fault(Fault::graph(400, 100, "(#100) Invalid parameter"), 1);
    let err = client.send_message(&token, PHONE, &text).await.unwrap_err();
    sim.set_messages_per_second(PHONE, 0);
    let throttled = client.send_message(&token, PHONE, &text).await.unwrap_err();
    let bad = client
        .get_phone_number(&AccessToken::new(TOKEN.to_owned() + "x"), PHONE)
        .await
        .unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("imix_whatsapp"),
        "events are logged under the crate's target:\n{logs}"
    );
    assert!(logs.contains("Graph API call failed"), "{logs}");
    for text in [
        logs,
        format!("{token:?}"),
        format!("{client:?}"),
        format!("{err:?} {err}"),
        format!("{throttled:?} {throttled}"),
        format!("{bad:?} {bad}"),
        format!("{:?}", SimBusiness::new(WABA, SECRET, TOKEN)),
    ] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains(SECRET), "app secret leaked: {text}");
    }
}
