//! Opens fresh stores for the conformance suite.

use imix_core::store::Store;

pub struct Harness {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    mongo_db: Option<(String, String)>,
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
        store.admin.migrate().await.unwrap();
        Self {
            store,
            _dir: Some(dir),
            mongo_db: None,
        }
    }

    /// A fresh database on the MongoDB server named by `IMIX_TEST_MONGODB_URI`. Panics with
    /// instructions when it is unset: a missing service is a failure, never a skip.
    pub async fn mongodb() -> Self {
        let uri = std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
            panic!(
                "IMIX_TEST_MONGODB_URI is not set: the MongoDB conformance tests need a \
                 MongoDB-wire server. Run scripts/test.sh, which starts one, or point the \
                 variable at a mongod."
            )
        });
        let db = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
        let store = imix_core::store::mongo::open(&uri, &db).await.unwrap();
        store.admin.migrate().await.unwrap_or_else(|e| {
            panic!("cannot reach the MongoDB test server at IMIX_TEST_MONGODB_URI: {e}")
        });
        Self {
            store,
            _dir: None,
            mongo_db: Some((uri, db)),
        }
    }

    pub async fn cleanup(self) {
        if let Some((uri, db)) = self.mongo_db {
            let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
            client.database(&db).drop().await.unwrap();
        }
    }
}
