//! The WhatsApp storage conformance suite (`imix_whatsapp::testkit`) on both adapters.
//!
//! `sqlite::*` runs on a temporary directory; `mongodb::*` needs `IMIX_TEST_MONGODB_URI`
//! (the test command starts a MongoDB-wire server and sets it) and fails loudly without it.
//! Each MongoDB case uses a database of its own, dropped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use imix_core::store::{sqlite::SqliteDb, Backend};
use imix_whatsapp::storage::{self, WhatsAppStorage};

/// Migrates `backend` (twice: the second run must apply nothing and fail nothing) and opens
/// the repositories on it.
async fn migrated(backend: &Backend) -> WhatsAppStorage {
    storage::migrate(backend).await.unwrap();
    storage::migrate(backend).await.unwrap();
    WhatsAppStorage::open(backend).unwrap()
}

struct SqliteHarness {
    storage: WhatsAppStorage,
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl imix_whatsapp::testkit::Harness for SqliteHarness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imix.sqlite3");
        let db = tokio::task::spawn_blocking(move || SqliteDb::open_blocking(&path, 2))
            .await
            .unwrap()
            .unwrap();
        let storage = migrated(&Backend::Sqlite(db)).await;
        Self { storage, _dir: dir }
    }

    fn storage(&self) -> &WhatsAppStorage {
        &self.storage
    }

    async fn finish(self) {}
}

struct MongoHarness {
    storage: WhatsAppStorage,
    db: ::mongodb::Database,
}

#[async_trait::async_trait]
impl imix_whatsapp::testkit::Harness for MongoHarness {
    /// A fresh database on the server named by `IMIX_TEST_MONGODB_URI`. Panics with
    /// instructions when it is unset: a missing service is a failure, never a skip.
    async fn start() -> Self {
        let uri = std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
            panic!(
                "IMIX_TEST_MONGODB_URI is not set: the MongoDB storage tests need a \
                 MongoDB-wire server. Run scripts/test.sh, which starts one, or point the \
                 variable at a mongod."
            )
        });
        let mut options = ::mongodb::options::ClientOptions::parse(&uri)
            .await
            .unwrap_or_else(|e| panic!("IMIX_TEST_MONGODB_URI is not a MongoDB URI: {e}"));
        options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        let client = ::mongodb::Client::with_options(options).unwrap();
        let db = client.database(&format!("imix_test_{}", uuid::Uuid::now_v7().simple()));
        storage::migrate(&Backend::Mongo(db.clone()))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach the MongoDB test server at IMIX_TEST_MONGODB_URI: {e}")
            });
        let storage = migrated(&Backend::Mongo(db.clone())).await;
        Self { storage, db }
    }

    fn storage(&self) -> &WhatsAppStorage {
        &self.storage
    }

    async fn finish(self) {
        self.db.drop().await.unwrap();
    }
}

mod sqlite {
    imix_whatsapp::whatsapp_storage_conformance!(crate::SqliteHarness);
}

mod mongodb {
    imix_whatsapp::whatsapp_storage_conformance!(crate::MongoHarness);
}

/// The migrations are recorded under the names imix-core gave them, so a database core
/// migrated before the tables moved here is not migrated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_keep_the_capability_and_names_core_recorded() {
    assert_eq!(storage::CAPABILITY, "whatsapp");
    let names: Vec<_> = storage::sqlite::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["0001_accounts_templates"]);
    let names: Vec<_> = storage::mongo::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["0001_accounts_templates"]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imix.sqlite3");
    let db = tokio::task::spawn_blocking(move || SqliteDb::open_blocking(&path, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.migrate(storage::CAPABILITY, storage::sqlite::MIGRATIONS)
            .await
            .unwrap(),
        1
    );
    storage::migrate(&Backend::Sqlite(db.clone()))
        .await
        .unwrap();
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
    let err = WhatsAppStorage::open(&Backend::Custom).unwrap_err();
    assert!(
        matches!(err, imix_core::Error::Invalid { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("whatsapp"), "{err}");
}
