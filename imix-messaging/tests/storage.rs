//! Messaging's storage conformance suite (`imix_messaging::testkit`) on both built-in
//! backends.
//!
//! `sqlite::*` runs on a temporary directory; `mongodb::*` needs `IMIX_TEST_MONGODB_URI`
//! (the test command starts a MongoDB-wire server and sets it) and fails loudly without it.
//! Each case gets a database of its own, dropped (or removed) afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use imix_core::store::Backend;
use imix_messaging::{
    storage::{self, MessagingStorage},
    testkit::Fixture,
};

/// Migrates `backend` (twice: the second run must apply nothing and fail nothing) and opens
/// the repositories on it.
async fn migrated(backend: &Backend) -> MessagingStorage {
    storage::migrate(backend).await.unwrap();
    storage::migrate(backend).await.unwrap();
    MessagingStorage::open(backend).unwrap()
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    let storage = migrated(&store.backend).await;
    Fixture {
        storage,
        cleanup: Box::pin(async move { drop(dir) }),
    }
}

async fn mongodb_fixture() -> Fixture {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "IMIX_TEST_MONGODB_URI is not set: the MongoDB conformance tests need a \
             MongoDB-wire server. Run scripts/test.sh, which starts one, or point the \
             variable at a mongod."
        )
    });
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap_or_else(|e| {
        panic!("cannot reach the MongoDB test server at IMIX_TEST_MONGODB_URI: {e}")
    });
    let storage = migrated(&store.backend).await;
    Fixture {
        storage,
        cleanup: Box::pin(async move {
            let client = ::mongodb::Client::with_uri_str(&uri).await.unwrap();
            client.database(&name).drop().await.unwrap();
        }),
    }
}

mod sqlite {
    imix_messaging::messaging_storage_conformance!(crate::sqlite_fixture());
}

mod mongodb {
    imix_messaging::messaging_storage_conformance!(crate::mongodb_fixture());
}

/// Every case of the test kit is run on both backends by the macro.
#[test]
fn the_macro_runs_every_case() {
    assert_eq!(imix_messaging::testkit::CASES.len(), 15);
}

/// The schema is recorded under capability `messaging`, step `0001_inbox`, on both
/// backends, and applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_once_under_the_capability() {
    assert_eq!(storage::CAPABILITY, "messaging");
    let names: Vec<_> = storage::sqlite::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["0001_inbox"]);
    let names: Vec<_> = storage::mongo::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["0001_inbox"]);

    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    let Backend::Sqlite(db) = &store.backend else {
        panic!("a SQLite store has a SQLite backend");
    };
    assert_eq!(
        db.migrate(storage::CAPABILITY, storage::sqlite::MIGRATIONS)
            .await
            .unwrap(),
        1
    );
    storage::migrate(&store.backend).await.unwrap();
    assert_eq!(
        db.migrate(storage::CAPABILITY, storage::sqlite::MIGRATIONS)
            .await
            .unwrap(),
        0
    );
}

/// A backend with no adapter here is refused, naming the capability.
#[test]
fn a_custom_backend_is_refused() {
    let err = MessagingStorage::open(&Backend::Custom).unwrap_err();
    assert!(
        matches!(err, imix_core::Error::Invalid { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("messaging"), "{err}");
}
