//! Outbound dispatch shared by replicas through the real Redis (`IMIX_TEST_REDIS_URL`):
//! two dispatchers on one store and one Redis send for one number at its rate R, and the
//! Graph API simulator (which refuses, with 130429, any request that would put more than R
//! in a sliding one-second window of the number) refuses none and records every message
//! exactly once; a dispatcher killed while holding queue entries has them taken over by the
//! other, each sent once (or `unknown` if it was mid-call), none stuck.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use common::{
    outbound_world::{OutboundWorld, Setup, CUSTOMER},
    Backend,
};
use imix_core::store::Scope;
use imix_messaging::{
    outbound::{
        DispatchConfig, OutboundQueue, OutboundStatus, QueueEntry, QueueError, StreamConfig,
    },
    MessageId,
};
use imix_server::outbound_redis::{namespace, RedisStreamQueue};
use imix_whatsapp::simulator::Simulator;
use serde_json::{json, Value};

on_both_backends!(
    two_replicas_share_the_rate_and_send_each_message_once,
    a_killed_dispatchers_entries_are_taken_over_and_sent_once,
    a_stopped_servers_dispatcher_takes_no_more_entries,
);

/// A server on `backend` sharing the test Redis, a WhatsApp account whose number sends at
/// `rate` (in imix and at the simulator), and a conversation whose window is open.
async fn world(backend: Backend, rate: u32) -> (OutboundWorld, String) {
    let w = OutboundWorld::start(
        backend,
        Setup {
            // A number of its own: the rate key in the shared Redis is per number.
            phone: Some(format!("29{:010}", rand::random::<u32>())),
            sim_rate: Some(rate),
            rate: Some(rate),
            vars: vec![("REDIS_URL", common::redis_url())],
            ..Setup::default()
        },
    )
    .await;
    let (conversation, _, _) = w.inbound(CUSTOMER, "hello").await;
    (w, conversation)
}

impl OutboundWorld {
    async fn send_text(&self, conversation: &str, body: &str) -> String {
        let (status, v) = self
            .send(json!({"conversation_id": conversation, "type": "text", "text": {"body": body}}))
            .await;
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// The texts the simulator accepted from our number, each with how often.
    fn texts_sent(&self) -> HashMap<String, usize> {
        texts_sent(&self.sim, &self.phone)
    }

    /// How many sends the simulator refused for the number's throughput (130429): each
    /// one a request that would have put more than the rate in one second.
    fn throughput_refusals(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/{}/messages", self.phone)))
            .filter(|r| r.status == 429 || String::from_utf8_lossy(&r.response).contains("130429"))
            .count()
    }
}

/// The texts the simulator accepted from `phone`, each with how often.
fn texts_sent(sim: &Simulator, phone: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in sim.sent_messages() {
        if r.phone_number_id != phone {
            continue;
        }
        let body = serde_json::to_value(&r.message).unwrap();
        let text = body
            .pointer("/text/body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        *seen.entry(text).or_insert(0) += 1;
    }
    seen
}

/// A queue that counts what its consumer read and took over.
#[derive(Debug)]
struct Counting {
    inner: RedisStreamQueue,
    read: AtomicUsize,
    reclaimed: AtomicUsize,
}

#[async_trait]
impl OutboundQueue for Counting {
    fn consumer(&self) -> &str {
        self.inner.consumer()
    }
    async fn push(&self, message: MessageId) -> Result<(), QueueError> {
        self.inner.push(message).await
    }
    async fn read(&self, max: usize, block: Duration) -> Result<Vec<QueueEntry>, QueueError> {
        let got = self.inner.read(max, block).await?;
        self.read.fetch_add(got.len(), Ordering::SeqCst);
        Ok(got)
    }
    async fn reclaim(&self, idle: Duration, max: usize) -> Result<Vec<QueueEntry>, QueueError> {
        let got = self.inner.reclaim(idle, max).await?;
        self.reclaimed.fetch_add(got.len(), Ordering::SeqCst);
        Ok(got)
    }
    async fn ack(&self, entries: &[String]) -> Result<(), QueueError> {
        self.inner.ack(entries).await
    }
}

/// How many entries `queue`'s consumer read and has not acknowledged (Redis's pending
/// entries list of the consumer).
async fn pending_of(queue: &Counting) -> usize {
    let mut conn = redis::Client::open(common::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(queue.inner.stream())
        .arg(RedisStreamQueue::GROUP)
        .arg("-")
        .arg("+")
        .arg(1000)
        .arg(queue.consumer())
        .query_async(&mut conn)
        .await
        .unwrap();
    pending.len()
}

/// Another replica on the same store and Redis: its state, a counting queue on the same
/// stream, and its dispatcher (paced by `config`).
async fn replica(
    vars: &HashMap<String, String>,
    config: Option<DispatchConfig>,
) -> (
    imix_server::state::AppState,
    Arc<Counting>,
    imix_messaging::outbound::Dispatcher,
) {
    let config_of = imix_server::config::Config::from_vars(vars.clone()).unwrap();
    let ns = namespace(&config_of);
    let state = imix_server::state::AppState::start(config_of)
        .await
        .unwrap();
    let queue = Arc::new(Counting {
        inner: RedisStreamQueue::new(redis::Client::open(common::redis_url()).unwrap(), &ns),
        read: AtomicUsize::new(0),
        reclaimed: AtomicUsize::new(0),
    });
    let mut dispatcher = state.dispatcher.clone();
    if let Some(c) = config {
        dispatcher = dispatcher.with_config(c);
    }
    let dispatcher = dispatcher.with_queue(queue.clone(), StreamConfig::default());
    (state, queue, dispatcher)
}

fn run(
    dispatcher: imix_messaging::outbound::Dispatcher,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        dispatcher
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    (task, stop)
}

async fn two_replicas_share_the_rate_and_send_each_message_once(backend: Backend) {
    const RATE: u32 = 20;
    const N: usize = 60;
    let (w, conversation) = world(backend, RATE).await;
    // Replica two (the test server is replica one; both dispatch in Redis mode).
    let (_two_state, two_queue, two) = replica(&w.vars, None).await;
    let (two_task, two_stop) = run(two);
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            w.send_text(&conversation, &format!("shared rate {i}"))
                .await,
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sent = w.texts_sent().values().sum::<usize>();
        if sent >= N {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {sent} of {N} sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    // Both replicas took part.
    let by_two = two_queue.read.load(Ordering::SeqCst);
    eprintln!("outbound_redis: {N} messages at {RATE}/s in {elapsed:?}; replica two read {by_two}");
    assert!(by_two > 0 && by_two < N, "replica two read {by_two} of {N}");
    eprintln!(
        "outbound_redis: {} throughput refusals",
        w.throughput_refusals()
    );
    // Never above the rate: the simulator refused nothing for throughput; and the sends
    // took at least as long as the rate needs.
    assert_eq!(
        w.throughput_refusals(),
        0,
        "the simulator saw more than {RATE} in a second"
    );
    assert!(
        elapsed
            >= Duration::from_secs_f64((N as f64 - 1.0) / f64::from(RATE))
                - Duration::from_millis(50)
    );
    // Every message exactly once.
    let texts = w.texts_sent();
    assert_eq!(texts.len(), N, "{texts:?}");
    assert!(texts.values().all(|n| *n == 1), "{texts:?}");
    // Each one's outcome is stored (a moment after Meta answered, on a loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            let m = w.message(id).await;
            if ["sent", "delivered", "read"].contains(&m["status"].as_str().unwrap()) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{m}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let _ = two_stop.send(());
    two_task.await.unwrap();
    w.s.stop().await;
}

async fn a_killed_dispatchers_entries_are_taken_over_and_sent_once(backend: Backend) {
    const RATE: u32 = 5;
    const N: usize = 15;
    let (w, conversation) = world(backend, RATE).await;
    // One message the normal way: its record is the pattern of the queued ones below.
    let first = w.send_text(&conversation, "pattern").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !w.texts_sent().contains_key("pattern") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first message was never sent"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let OutboundWorld {
        sim,
        s,
        vars,
        tenant,
        admin,
        phone,
        ..
    } = w;
    // The test server stops: from here on, the two replicas below are the only dispatchers.
    let dir = s.stop().await;
    // Short leases, so that the take-over happens within the test.
    let short = DispatchConfig {
        lease: Duration::from_secs(3),
        poll: Duration::from_millis(200),
        ..DispatchConfig::default()
    };
    let (one_state, one_queue, one) = replica(&vars, Some(short.clone())).await;
    let (_two_state, two_queue, two) = replica(&vars, Some(short)).await;
    // Each call takes a while at Meta, so some are mid-call when replica one dies.
    sim.set_response_delay(Some(Duration::from_millis(300)));
    // Queue N messages, stored first and then announced, as the send API does.
    let records = one_state.outbound.records().clone();
    let pattern = records
        .get(Scope::Platform, first.parse().unwrap())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..N {
        let mut r = pattern.clone();
        let id = MessageId::new();
        r.id = id;
        r.dedupe = format!("id:{id}");
        r.idempotency_key = None;
        r.request_fingerprint = None;
        r.content = json!({"type": "text", "text": {"body": format!("take over {i}")}});
        r.status = OutboundStatus::Queued;
        r.wamid = None;
        r.sending_at = None;
        r.sent_at = None;
        r.delivered_at = None;
        r.read_at = None;
        r.attempts = 0;
        r.due_at = Some(imix_core::now());
        r.lease_until = None;
        r.version = 1;
        records.insert(&r).await.unwrap();
        ids.push(id);
    }
    // Replica one alone reads them all, then dies holding its entries.
    let (one_task, _one_stop) = run(one);
    for id in &ids {
        one_queue.push(*id).await.unwrap();
    }
    // Replica one reads all N (no other consumer reads: the stopped test server's
    // dispatcher gave its blocked read up, see a_stopped_servers_dispatcher_takes_no_more_entries).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while one_queue.read.load(Ordering::SeqCst) < N {
        assert!(
            std::time::Instant::now() < deadline,
            "replica one read only {} of its {N} entries",
            one_queue.read.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    one_task.abort();
    let _ = one_task.await;
    assert_eq!(one_queue.read.load(Ordering::SeqCst), N);
    let sent_before = sim
        .sent_messages()
        .iter()
        .filter(|r| r.phone_number_id == phone)
        .count();
    assert!(sent_before < N, "replica one sent everything before dying");
    // What it held when it died: read, never acknowledged.
    let held = pending_of(&one_queue).await;
    assert!(held > 0, "replica one held nothing when it died");
    // Replica two takes over.
    let (two_task, two_stop) = run(two);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let settled = loop {
        let mut statuses = Vec::new();
        for id in &ids {
            statuses.push(records.get(Scope::Platform, *id).await.unwrap().status);
        }
        if statuses.iter().all(|s| {
            matches!(
                s,
                OutboundStatus::Sent
                    | OutboundStatus::Delivered
                    | OutboundStatus::Read
                    | OutboundStatus::Unknown
            )
        }) {
            break statuses;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all settled: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let unknown = settled
        .iter()
        .filter(|s| **s == OutboundStatus::Unknown)
        .count();
    eprintln!("outbound_redis: replica one held {held} entries; {unknown} of {N} unknown (mid-call when replica one died)");
    // Every entry replica one held is taken over (the store's sweep may have settled a
    // message before its entry is, so wait for the entries themselves).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pending_of(&one_queue).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "replica one still holds entries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (It may take an entry over more than once: one it took over while replica one's
    // store lease still held the message stays with it and is looked at again later.)
    let reclaimed = two_queue.reclaimed.load(Ordering::SeqCst);
    assert!(
        reclaimed >= held,
        "replica two took over {reclaimed} entries, replica one held {held}"
    );
    // Never sent twice, and each one sent exactly once unless its outcome is unknown.
    let seen = texts_sent(&sim, &phone);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let mut unknown_texts = HashSet::new();
    for (i, s) in settled.iter().enumerate() {
        let text = format!("take over {i}");
        if *s == OutboundStatus::Unknown {
            unknown_texts.insert(text);
        } else {
            assert_eq!(seen.get(&text), Some(&1), "{text} was not sent once");
        }
    }
    // The number's rate held throughout (both replicas, and the one that died).
    let refusals = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&format!("/{phone}/messages")))
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(
        refusals, 0,
        "the simulator saw more than {RATE} in a second"
    );
    let _ = two_stop.send(());
    two_task.await.unwrap();
    let _ = (tenant, admin, dir, unknown_texts);
}

/// A stopped server's dispatcher reads nothing more: its last blocking read (`XREADGROUP …
/// BLOCK`, up to a second at Redis) ends with it, instead of handing the next entry pushed
/// to a consumer nobody runs any more (where it waited for another replica's take-over: the
/// cause of a flaky a_killed_dispatchers_entries_are_taken_over_and_sent_once).
async fn a_stopped_servers_dispatcher_takes_no_more_entries(backend: Backend) {
    let (w, _conversation) = world(backend, 5).await;
    let ns = namespace(&imix_server::config::Config::from_vars(w.vars.clone()).unwrap());
    let _dir = w.s.stop().await;
    // Right after the stop, while the dispatcher's last read would still be blocked.
    let queue = Counting {
        inner: RedisStreamQueue::new(redis::Client::open(common::redis_url()).unwrap(), &ns),
        read: AtomicUsize::new(0),
        reclaimed: AtomicUsize::new(0),
    };
    for _ in 0..5 {
        queue.push(MessageId::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = redis::Client::open(common::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(queue.inner.stream())
        .arg(RedisStreamQueue::GROUP)
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis::Value::Array(parts) = &summary else {
        panic!("{summary:?}")
    };
    assert_eq!(
        parts.first(),
        Some(&redis::Value::Int(0)),
        "entries went to a stopped server: {summary:?}"
    );
    // All five are there for a running dispatcher to read.
    let read = queue.read(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(read.len(), 5);
}
