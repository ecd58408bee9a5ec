//! The outbox storage conformance suite (`imix_notify::testkit`) on both adapters: SQLite
//! on a temporary directory, MongoDB on a fresh database of the server named by
//! `IMIX_TEST_MONGODB_URI` (a missing server is a failure, never a skip).

use std::{future::Future, sync::Arc};

use imix_core::store::{sqlite::SqliteDb, Backend};
use imix_notify::storage::MailOutboxRepository;

/// A migrated outbox on a fresh SQLite database; `f` runs on it.
async fn on_sqlite<F, Fut>(f: F)
where
    F: FnOnce(Arc<dyn MailOutboxRepository>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imix.sqlite3");
    let db = tokio::task::spawn_blocking(move || SqliteDb::open_blocking(&path, 2))
        .await
        .unwrap()
        .unwrap();
    let backend = Backend::Sqlite(db);
    imix_notify::storage::migrate(&backend).await.unwrap();
    // Applied once: a second run finds nothing to do and succeeds.
    imix_notify::storage::migrate(&backend).await.unwrap();
    f(imix_notify::storage::open(&backend).unwrap()).await;
}

/// A migrated outbox on a fresh MongoDB database, dropped afterwards; `f` runs on it.
async fn on_mongodb<F, Fut>(f: F)
where
    F: FnOnce(Arc<dyn MailOutboxRepository>) -> Fut,
    Fut: Future<Output = ()>,
{
    let uri = std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "IMIX_TEST_MONGODB_URI is not set: the outbox storage tests need a MongoDB-wire \
             server. Run scripts/test.sh, which starts one, or point the variable at a mongod \
             (e.g. `source /tmp/svc/env.sh`)."
        )
    });
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let client = ::mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("IMIX_TEST_MONGODB_URI ({uri}) is not usable: {e}"));
    let db = client.database(&name);
    let backend = Backend::Mongo(db.clone());
    imix_notify::storage::migrate(&backend)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the MongoDB test server at {uri}: {e}"));
    imix_notify::storage::migrate(&backend).await.unwrap();
    let outbox = imix_notify::storage::open(&backend).unwrap();
    // Dropped even when the test body fails, so no test database is left behind.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(f(outbox))).await;
    db.drop().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_sqlite(imix_notify::testkit::$case).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_mongodb(imix_notify::testkit::$case).await;
                }
            )*
        }
    };
}

conformance!(
    outbox_lists_newest_first_within_scope,
    outbox_claims_due_emails_with_a_lease,
    concurrent_outbox_claims_never_hand_out_one_email_twice,
);

#[tokio::test]
async fn a_custom_backend_has_no_outbox_adapter() {
    let err = imix_notify::storage::open(&Backend::Custom).err().unwrap();
    assert!(matches!(err, imix_core::Error::Invalid { .. }), "{err:?}");
    assert!(imix_notify::storage::migrate(&Backend::Custom)
        .await
        .is_err());
}
