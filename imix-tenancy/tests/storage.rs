//! Tenancy's storage conformance suite on both built-in backends. `mongodb::*` needs
//! `IMIX_TEST_MONGODB_URI` (the test command starts a MongoDB-wire server and sets it) and
//! fails loudly without it; each case gets its own database, dropped afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use imix_tenancy::{
    storage::{migrate, TenancyStorage},
    testkit::Fixture,
};

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    migrate(&store.backend).await.unwrap();
    let storage = TenancyStorage::open(&store.backend).unwrap();
    Fixture {
        storage,
        blobs: store.blobs.clone(),
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
    migrate(&store.backend).await.unwrap();
    let storage = TenancyStorage::open(&store.backend).unwrap();
    Fixture {
        storage,
        blobs: store.blobs.clone(),
        cleanup: Box::pin(async move {
            let client = ::mongodb::Client::with_uri_str(&uri).await.unwrap();
            client.database(&name).drop().await.unwrap();
        }),
    }
}

mod sqlite {
    imix_tenancy::tenancy_conformance!(crate::sqlite_fixture());
}

mod mongodb {
    imix_tenancy::tenancy_conformance!(crate::mongodb_fixture());
}
