//! Usage limits are enforced exactly, on every backend and across replicas.
//!
//! The same test bodies run on Redis (`IMIX_TEST_REDIS_URL`), on the SQLite store (a
//! temporary directory) and on MongoDB (`IMIX_TEST_MONGODB_URI`); a missing variable is a
//! failure with instructions, never a skip. Each fixture has two "replicas": independent
//! adapters with their own clients or connections, sharing one Redis, one SQLite file or one
//! MongoDB database. Each test uses its own Redis key prefix and its own database.
//!
//! Run with `--nocapture` to see the measured figures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use imix_core::{id::TenantId, store::Store, Timestamp};
use imix_tenancy::quota::{
    next_reset, utc_day, CountKind, CountLimits, DailyQuota, QuotaError, QuotaStore,
    RedisQuotaStore, StoreQuotaStore,
};
use tokio::sync::Barrier;

fn redis_url() -> String {
    std::env::var("IMIX_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "IMIX_TEST_REDIS_URL is not set: the quota tests need a Redis server. Run \
             scripts/test.sh, which starts one, or start `redis-server --port 6390 --save ''` \
             and set IMIX_TEST_REDIS_URL=redis://127.0.0.1:6390"
        )
    })
}

fn mongodb_uri() -> String {
    std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "IMIX_TEST_MONGODB_URI is not set: the quota tests need a MongoDB-wire server. Run \
             scripts/test.sh, which starts one, or point the variable at a mongod \
             (e.g. IMIX_TEST_MONGODB_URI=mongodb://127.0.0.1:27017)"
        )
    })
}

fn unique_name() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// One backend with two replicas of the quota store (and, on the stores, of the count
/// limits), each with its own client or connection.
struct Fixture {
    backend: &'static str,
    replicas: Vec<Arc<dyn QuotaStore>>,
    counts: Vec<CountLimits>,
    _dir: Option<tempfile::TempDir>,
    mongo_db: Option<String>,
}

impl Fixture {
    async fn redis() -> Self {
        let url = redis_url();
        let prefix = format!("imix-test:{}:", unique_name());
        let mut replicas: Vec<Arc<dyn QuotaStore>> = Vec::new();
        for _ in 0..2 {
            let store = RedisQuotaStore::connect(&url, prefix.clone())
                .await
                .unwrap_or_else(|e| panic!("cannot reach Redis at IMIX_TEST_REDIS_URL: {e}"));
            replicas.push(Arc::new(store));
        }
        Self {
            backend: "redis",
            replicas,
            counts: Vec::new(),
            _dir: None,
            mongo_db: None,
        }
    }

    fn from_stores(backend: &'static str, stores: &[Store]) -> Self {
        Self {
            backend,
            replicas: stores
                .iter()
                .map(|s| Arc::new(StoreQuotaStore::new(s.counters.clone())) as Arc<dyn QuotaStore>)
                .collect(),
            counts: stores
                .iter()
                .map(|s| CountLimits::new(s.counters.clone()))
                .collect(),
            _dir: None,
            mongo_db: None,
        }
    }

    /// Two connections to one SQLite file.
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut stores = Vec::new();
        for _ in 0..2 {
            let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
            store.admin.migrate().await.unwrap();
            stores.push(store);
        }
        let mut f = Self::from_stores("sqlite", &stores);
        f._dir = Some(dir);
        f
    }

    /// Two clients on one fresh MongoDB database.
    async fn mongodb() -> Self {
        let uri = mongodb_uri();
        let db = format!("imix_quota_{}", unique_name());
        let mut stores = Vec::new();
        for _ in 0..2 {
            let store = imix_core::store::mongo::open(&uri, &db).await.unwrap();
            store.admin.migrate().await.unwrap_or_else(|e| {
                panic!("cannot reach the MongoDB test server at IMIX_TEST_MONGODB_URI: {e}")
            });
            stores.push(store);
        }
        let mut f = Self::from_stores("mongodb", &stores);
        f.mongo_db = Some(db);
        f
    }

    async fn cleanup(self) {
        if let Some(db) = self.mongo_db {
            let client = ::mongodb::Client::with_uri_str(mongodb_uri())
                .await
                .unwrap();
            client.database(&db).drop().await.unwrap();
        }
    }
}

/// Runs `attempts` concurrent `try_consume(1)` against `limit`, spread over `replicas`,
/// all released at once by a barrier; checks every outcome and returns the successes.
async fn race(label: &str, replicas: &[Arc<dyn QuotaStore>], attempts: usize, limit: u64) -> usize {
    let tenant = TenantId::new();
    let now = imix_core::now();
    let barrier = Arc::new(Barrier::new(attempts));
    let started = Instant::now();
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let quotas = replicas[i % replicas.len()].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                quotas
                    .try_consume(tenant, DailyQuota::Messages, 1, Some(limit), now)
                    .await
            })
        })
        .collect();
    let mut used_values = BTreeSet::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => {
                assert!(c.used <= limit, "{c:?}");
                assert!(
                    used_values.insert(c.used),
                    "two consumes saw used = {}",
                    c.used
                );
            }
            Err(QuotaError::LimitReached {
                quota,
                limit: l,
                used,
                resets_at,
            }) => {
                assert_eq!((quota, l, used), (DailyQuota::Messages, limit, limit));
                assert_eq!(resets_at, next_reset(utc_day(now)));
                refused += 1;
            }
            Err(e) => panic!("{label}: unexpected error {e}"),
        }
    }
    let elapsed = started.elapsed();
    let successes = used_values.len();
    eprintln!(
        "{label}: {successes}/{attempts} consumes succeeded against a limit of {limit} \
         ({refused} refused) across {} replica(s) in {elapsed:.2?}",
        replicas.len()
    );
    // No lost update: the successes took exactly the values 1..=successes.
    assert_eq!(
        used_values.into_iter().collect::<Vec<_>>(),
        (1..=successes as u64).collect::<Vec<_>>()
    );
    for quotas in replicas {
        let usage = quotas.usage(tenant, now).await.unwrap();
        assert_eq!(usage.messages, successes as u64, "{label}");
        assert_eq!(usage.media, 0, "{label}");
    }
    successes
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let f = crate::Fixture::redis().await;
                    crate::$case(&f).await;
                    f.cleanup().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let f = crate::Fixture::sqlite().await;
                    crate::$case(&f).await;
                    f.cleanup().await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let f = crate::Fixture::mongodb().await;
                    crate::$case(&f).await;
                    f.cleanup().await;
                }
            )*
        }
    };
}

on_every_backend!(
    exactly_50_of_200_concurrent_consumes_succeed,
    two_replicas_share_one_limit_exactly,
    the_day_rolls_over_at_utc_midnight,
    release_refunds_units_and_never_goes_below_zero,
    unlimited_never_refuses,
);

/// Same, for the count limits (always on the store).
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod store_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let f = crate::Fixture::sqlite().await;
                    crate::$case(&f).await;
                    f.cleanup().await;
                }
            )*
        }
        mod store_mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let f = crate::Fixture::mongodb().await;
                    crate::$case(&f).await;
                    f.cleanup().await;
                }
            )*
        }
    };
}

on_every_store!(
    exactly_10_of_100_concurrent_reservations_succeed_across_replicas,
    count_reservations_release_and_reconcile,
);

async fn exactly_50_of_200_concurrent_consumes_succeed(f: &Fixture) {
    let label = format!("{} (one replica)", f.backend);
    assert_eq!(race(&label, &f.replicas[..1], 200, 50).await, 50);
}

async fn two_replicas_share_one_limit_exactly(f: &Fixture) {
    let label = format!("{} (two replicas)", f.backend);
    assert_eq!(race(&label, &f.replicas, 200, 50).await, 50);
}

fn at(day: chrono::NaiveDate, h: u32, m: u32, s: u32) -> Timestamp {
    day.and_hms_opt(h, m, s).unwrap().and_utc()
}

async fn the_day_rolls_over_at_utc_midnight(f: &Fixture) {
    let (a, b) = (&f.replicas[0], &f.replicas[1]);
    let tenant = TenantId::new();
    // Today, by the real clock: stored counters expire by it.
    let today = utc_day(imix_core::now());
    let tomorrow = today.succ_opt().unwrap();
    let last_second = at(today, 23, 59, 59);
    let midnight = at(tomorrow, 0, 0, 0);

    let first = a
        .try_consume(tenant, DailyQuota::Messages, 2, Some(2), last_second)
        .await
        .unwrap();
    assert_eq!(
        (first.day, first.used, first.remaining()),
        (today, 2, Some(0))
    );
    assert_eq!(first.resets_at, midnight);
    match b
        .try_consume(tenant, DailyQuota::Messages, 1, Some(2), last_second)
        .await
    {
        Err(QuotaError::LimitReached {
            quota: DailyQuota::Messages,
            limit: 2,
            used: 2,
            resets_at,
        }) => assert_eq!(resets_at, midnight),
        other => panic!("expected LimitReached, got {other:?}"),
    }

    // 00:00:00 UTC: a new day, counted from 0.
    let next = b
        .try_consume(tenant, DailyQuota::Messages, 1, Some(2), midnight)
        .await
        .unwrap();
    assert_eq!((next.day, next.used), (tomorrow, 1));
    assert_eq!(next.resets_at, next_reset(tomorrow));

    let yesterday = a.usage(tenant, last_second).await.unwrap();
    assert_eq!((yesterday.day, yesterday.messages), (today, 2));
    assert_eq!(yesterday.resets_at, midnight);
    let usage = a.usage(tenant, midnight).await.unwrap();
    assert_eq!((usage.day, usage.messages, usage.media), (tomorrow, 1, 0));
    // A refund after midnight lands on the day the units were taken.
    assert_eq!(
        b.release(tenant, DailyQuota::Messages, 1, first.day)
            .await
            .unwrap(),
        1
    );
    assert_eq!(a.usage(tenant, midnight).await.unwrap().messages, 1);
    eprintln!("{}: day rollover at {midnight} checked", f.backend);
}

async fn release_refunds_units_and_never_goes_below_zero(f: &Fixture) {
    let (a, b) = (&f.replicas[0], &f.replicas[1]);
    let tenant = TenantId::new();
    let now = imix_core::now();
    let taken = a
        .try_consume(tenant, DailyQuota::Media, 3, Some(3), now)
        .await
        .unwrap();
    assert!(b
        .try_consume(tenant, DailyQuota::Media, 1, Some(3), now)
        .await
        .unwrap_err()
        .is_limit_reached());
    // The send never reached Meta: one unit back, and it can be taken again.
    assert_eq!(
        b.release(tenant, DailyQuota::Media, 1, taken.day)
            .await
            .unwrap(),
        2
    );
    let again = a
        .try_consume(tenant, DailyQuota::Media, 1, Some(3), now)
        .await
        .unwrap();
    assert_eq!(again.used, 3);
    // Never below 0, and releasing a day never used creates nothing.
    assert_eq!(
        a.release(tenant, DailyQuota::Media, 10, taken.day)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        a.release(tenant, DailyQuota::Messages, 1, taken.day)
            .await
            .unwrap(),
        0
    );
    let usage = b.usage(tenant, now).await.unwrap();
    assert_eq!((usage.messages, usage.media), (0, 0));
    // Messages and media, and tenants, are counted apart.
    let other = TenantId::new();
    a.try_consume(tenant, DailyQuota::Messages, 1, Some(1), now)
        .await
        .unwrap();
    a.try_consume(other, DailyQuota::Messages, 1, Some(1), now)
        .await
        .unwrap();
    a.try_consume(tenant, DailyQuota::Media, 1, Some(1), now)
        .await
        .unwrap();
    let usage = b.usage(tenant, now).await.unwrap();
    assert_eq!((usage.messages, usage.media), (1, 1));
}

async fn unlimited_never_refuses(f: &Fixture) {
    let tenant = TenantId::new();
    let now = imix_core::now();
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let quotas = f.replicas[i % 2].clone();
            tokio::spawn(async move {
                quotas
                    .try_consume(tenant, DailyQuota::Messages, 1_000, None, now)
                    .await
            })
        })
        .collect();
    for t in tasks {
        let c = t.await.unwrap().unwrap();
        assert_eq!((c.limit, c.remaining()), (None, None));
    }
    let usage = f.replicas[0].usage(tenant, now).await.unwrap();
    assert_eq!(usage.messages, 100_000);
    eprintln!(
        "{}: 100/100 unlimited consumes of 1000 units succeeded in {:.2?}",
        f.backend,
        started.elapsed()
    );
    // A limit of 0 refuses everything.
    assert!(matches!(
        f.replicas[1]
            .try_consume(tenant, DailyQuota::Media, 1, Some(0), now)
            .await,
        Err(QuotaError::LimitReached {
            limit: 0,
            used: 0,
            ..
        })
    ));
}

async fn exactly_10_of_100_concurrent_reservations_succeed_across_replicas(f: &Fixture) {
    let tenant = TenantId::new();
    let barrier = Arc::new(Barrier::new(100));
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let counts = f.counts[i % f.counts.len()].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                counts.reserve(tenant, CountKind::Agents, Some(10)).await
            })
        })
        .collect();
    let mut counts_seen = BTreeSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => assert!(counts_seen.insert(n), "two reservations saw {n}"),
            Err(QuotaError::CountLimitReached {
                kind,
                limit,
                current,
            }) => assert_eq!((kind, limit, current), (CountKind::Agents, 10, 10)),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    eprintln!(
        "{} (two replicas): {}/100 agent reservations succeeded against a limit of 10 in {:.2?}",
        f.backend,
        counts_seen.len(),
        started.elapsed()
    );
    assert_eq!(
        counts_seen.into_iter().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        f.counts[1]
            .current(tenant, CountKind::Agents)
            .await
            .unwrap(),
        10
    );
}

async fn count_reservations_release_and_reconcile(f: &Fixture) {
    let (a, b) = (&f.counts[0], &f.counts[1]);
    let tenant = TenantId::new();
    assert_eq!(
        a.reserve(tenant, CountKind::Templates, Some(2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.reserve(tenant, CountKind::Templates, Some(2))
            .await
            .unwrap(),
        2
    );
    let full = a
        .reserve(tenant, CountKind::Templates, Some(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            full,
            QuotaError::CountLimitReached {
                kind: CountKind::Templates,
                limit: 2,
                current: 2
            }
        ),
        "{full:?}"
    );
    assert!(full.to_string().contains("limit of 2 templates"), "{full}");
    // A template deleted frees a slot; releasing never goes below 0.
    assert_eq!(b.release(tenant, CountKind::Templates).await.unwrap(), 1);
    assert_eq!(
        a.reserve(tenant, CountKind::Templates, Some(2))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        a.release_many(tenant, CountKind::Templates, 5)
            .await
            .unwrap(),
        0
    );
    // A bulk reservation is all or nothing.
    assert_eq!(
        a.reserve_many(tenant, CountKind::Contacts, 8, Some(10))
            .await
            .unwrap(),
        8
    );
    assert!(a
        .reserve_many(tenant, CountKind::Contacts, 3, Some(10))
        .await
        .unwrap_err()
        .is_limit_reached());
    assert_eq!(b.current(tenant, CountKind::Contacts).await.unwrap(), 8);
    // Unlimited never refuses; kinds and tenants are counted apart.
    for _ in 0..3 {
        b.reserve(tenant, CountKind::ContactGroups, None)
            .await
            .unwrap();
    }
    b.reserve(TenantId::new(), CountKind::Contacts, Some(1))
        .await
        .unwrap();
    // Reconcile sets the count from the records that exist (say, after a restore).
    a.reconcile(tenant, CountKind::Agents, 4).await.unwrap();
    let counts = b.counts(tenant).await.unwrap();
    assert_eq!(
        (
            counts.templates,
            counts.agents,
            counts.contacts,
            counts.contact_groups
        ),
        (0, 4, 8, 3)
    );
    assert_eq!(counts.get(CountKind::Agents), 4);
}

/// Not a backend test: the error figures are what the server puts in its 429 details.
#[test]
fn limit_reached_says_what_when_and_how_much() {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let err = QuotaError::LimitReached {
        quota: DailyQuota::Messages,
        limit: 50,
        used: 50,
        resets_at: next_reset(day),
    };
    let text = err.to_string();
    assert!(text.contains("daily limit of 50 messages"), "{text}");
    assert!(text.contains("2026-11-27 00:00:00 UTC"), "{text}");
    assert!(err.is_limit_reached());
}
