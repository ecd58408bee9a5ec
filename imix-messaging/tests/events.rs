//! The live events' log on both backends (numbering per tenant, reads after an id, head,
//! oldest, pruning by count and age) and the streams over it: resume after an id, `reset`
//! when the id was pruned, a subscriber that lags behind the fan-out's buffer catching up
//! from the log without gaps, contact events only for callers who may read contacts, the
//! permission checked, streams ending when closed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use imix_core::{
    access::{AccessContext, Permission, Principal},
    id::{TenantId, UserId},
    store::Backend,
};
use imix_messaging::{
    events::{
        EventBus, EventKind, EventLog, EventRetention, EventService, EventSink, LocalFanout,
        NewEvent, StreamConfig, StreamItem,
    },
    storage, MessagingError,
};
use serde_json::json;

struct Log {
    log: Arc<dyn EventLog>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn sqlite_log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    opened(&store.backend, Box::new(dir)).await
}

async fn mongodb_log() -> Log {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI")
        .unwrap_or_else(|_| panic!("IMIX_TEST_MONGODB_URI is not set"));
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap();
    opened(&store.backend, Box::new(())).await
}

async fn opened(backend: &Backend, keep: Box<dyn std::any::Any + Send>) -> Log {
    // Twice: the second migration applies nothing and fails nothing.
    storage::migrate(backend).await.unwrap();
    storage::migrate(backend).await.unwrap();
    Log {
        log: storage::events::open(backend).unwrap(),
        _keep: keep,
    }
}

fn event(tenant: TenantId, n: u32) -> NewEvent {
    NewEvent {
        tenant_id: tenant,
        kind: EventKind::MessageReceived,
        // Unassigned: shown to agents (callers without conversations.read_all) too.
        data: json!({ "n": n, "assignee": null }),
    }
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$case(crate::sqlite_log().await.log).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$case(crate::mongodb_log().await.log).await;
                }
            )*
        }
    };
}

on_both_backends!(
    numbers_are_per_tenant_dense_and_read_back_in_order,
    concurrent_appends_get_distinct_dense_numbers,
    pruning_keeps_the_newest_per_tenant_and_drops_old_ones,
    a_resumed_stream_replays_then_follows_live,
    a_pruned_id_resumes_with_a_reset,
);

async fn numbers_are_per_tenant_dense_and_read_back_in_order(log: Arc<dyn EventLog>) {
    let (a, b) = (TenantId::new(), TenantId::new());
    assert_eq!(log.head(a).await.unwrap(), 0);
    assert_eq!(log.oldest(a).await.unwrap(), None);
    for n in 1..=3 {
        let e = log.append(event(a, n)).await.unwrap();
        assert_eq!(e.seq, u64::from(n));
        assert_eq!(e.tenant_id, a);
    }
    assert_eq!(
        log.append(event(b, 1)).await.unwrap().seq,
        1,
        "B counts on its own"
    );
    assert_eq!(log.head(a).await.unwrap(), 3);
    assert_eq!(log.oldest(a).await.unwrap(), Some(1));
    let after_one = log.read_after(a, 1, 10).await.unwrap();
    assert_eq!(after_one.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(after_one[0].data, json!({"n": 2, "assignee": null}));
    assert_eq!(after_one[0].kind, EventKind::MessageReceived);
    assert_eq!(log.read_after(a, 0, 2).await.unwrap().len(), 2, "limit");
    assert!(log.read_after(a, 3, 10).await.unwrap().is_empty());
    let of_b = log.read_after(b, 0, 10).await.unwrap();
    assert_eq!(of_b.len(), 1, "never another tenant's");
}

async fn concurrent_appends_get_distinct_dense_numbers(log: Arc<dyn EventLog>) {
    let tenant = TenantId::new();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(event(tenant, n)).await.unwrap().seq })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    assert_eq!(log.read_after(tenant, 0, 100).await.unwrap().len(), 20);
}

async fn pruning_keeps_the_newest_per_tenant_and_drops_old_ones(log: Arc<dyn EventLog>) {
    let (a, b) = (TenantId::new(), TenantId::new());
    for n in 1..=5 {
        log.append(event(a, n)).await.unwrap();
    }
    log.append(event(b, 1)).await.unwrap();
    let long_ago = imix_core::now() - chrono::Duration::hours(1);
    let removed = log.prune(3, long_ago).await.unwrap();
    assert!(removed >= 2, "removed {removed}");
    assert_eq!(log.oldest(a).await.unwrap(), Some(3));
    assert_eq!(log.oldest(b).await.unwrap(), Some(1));
    assert_eq!(log.head(a).await.unwrap(), 5, "the head survives pruning");
    // Everything older than now goes; numbering goes on where it was.
    let later = imix_core::now() + chrono::Duration::seconds(1);
    log.prune(1000, later).await.unwrap();
    assert_eq!(log.oldest(a).await.unwrap(), None);
    assert_eq!(log.append(event(a, 6)).await.unwrap().seq, 6);
}

fn ctx(tenant: TenantId, permissions: &[Permission]) -> AccessContext {
    AccessContext::new(
        Principal::new(UserId::new(), "agent@example.com"),
        Some(tenant),
        false,
        permissions.iter().copied().collect::<BTreeSet<_>>(),
        None,
    )
}

fn config() -> StreamConfig {
    StreamConfig {
        poll_every: Duration::from_millis(100),
        gap_grace: Duration::from_millis(200),
        page: 3,
    }
}

async fn next(stream: &mut (impl futures::Stream<Item = StreamItem> + Unpin)) -> StreamItem {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an item in time")
        .expect("the stream goes on")
}

fn seq_of(item: &StreamItem) -> u64 {
    match item {
        StreamItem::Event(e) => e.seq,
        StreamItem::Reset { seq } => panic!("unexpected reset at {seq}"),
    }
}

async fn a_resumed_stream_replays_then_follows_live(log: Arc<dyn EventLog>) {
    let tenant = TenantId::new();
    // A one-event buffer: the subscriber below lags as soon as two events are published
    // while it is not reading, and must get what the buffer dropped from the log.
    let fanout = Arc::new(LocalFanout::new(1));
    let bus = EventBus::new(log.clone(), fanout.clone());
    let service = EventService::new(log.clone(), fanout, config());
    for n in 1..=7 {
        bus.publish(event(tenant, n)).await;
    }
    let reader = ctx(tenant, &[Permission::ConversationsRead]);
    let mut stream = service.open(&reader, tenant, Some("2")).await.unwrap();
    // Replayed over several pages (page size 3).
    for expected in 3..=7 {
        assert_eq!(seq_of(&next(&mut stream).await), expected);
    }
    // Live, including after lagging behind the one-event buffer.
    for n in 8..=12 {
        bus.publish(event(tenant, n)).await;
    }
    bus.publish(NewEvent {
        tenant_id: tenant,
        kind: EventKind::ContactCreated,
        data: json!({}),
    })
    .await;
    bus.publish(event(tenant, 14)).await;
    for expected in 8..=12 {
        assert_eq!(seq_of(&next(&mut stream).await), expected);
    }
    // The contact event (13) is skipped for a caller without contacts:read.
    assert_eq!(seq_of(&next(&mut stream).await), 14);

    // Another tenant's events never show; a caller with contacts:read sees contact events.
    let full = ctx(
        tenant,
        &[Permission::ConversationsRead, Permission::ContactsRead],
    );
    let mut with_contacts = service.open(&full, tenant, Some("12")).await.unwrap();
    bus.publish(event(TenantId::new(), 1)).await;
    match next(&mut with_contacts).await {
        StreamItem::Event(e) => assert_eq!((e.seq, e.kind), (13, EventKind::ContactCreated)),
        other => panic!("{other:?}"),
    }
    assert_eq!(seq_of(&next(&mut with_contacts).await), 14);

    // Without conversations:read, or for another tenant: refused.
    let denied = service
        .open(&ctx(tenant, &[Permission::ContactsRead]), tenant, None)
        .await;
    assert!(matches!(denied, Err(MessagingError::Denied(_))));
    let foreign = service.open(&full, TenantId::new(), None).await;
    assert!(matches!(foreign, Err(MessagingError::Denied(_))));

    // Closing ends open streams.
    service.close_all();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(end.is_none());
}

async fn a_pruned_id_resumes_with_a_reset(log: Arc<dyn EventLog>) {
    let tenant = TenantId::new();
    let fanout = Arc::new(LocalFanout::default());
    let bus = EventBus::new(log.clone(), fanout.clone());
    let service = EventService::new(log.clone(), fanout, config());
    for n in 1..=6 {
        bus.publish(event(tenant, n)).await;
    }
    bus.prune(EventRetention {
        max_per_tenant: 2,
        max_age: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    let reader = ctx(tenant, &[Permission::ConversationsRead]);
    // Event 2 is gone (only 5 and 6 are kept): refetch, then go on after the head.
    let mut stream = service.open(&reader, tenant, Some("2")).await.unwrap();
    assert_eq!(next(&mut stream).await, StreamItem::Reset { seq: 6 });
    bus.publish(event(tenant, 7)).await;
    assert_eq!(seq_of(&next(&mut stream).await), 7);
    // The last kept id still resumes normally.
    let mut kept = service.open(&reader, tenant, Some("4")).await.unwrap();
    assert_eq!(seq_of(&next(&mut kept).await), 5);
    // An id from the future resets too.
    let mut future = service.open(&reader, tenant, Some("99")).await.unwrap();
    assert_eq!(next(&mut future).await, StreamItem::Reset { seq: 7 });
}
