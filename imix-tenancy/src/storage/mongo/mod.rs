//! Tenants, users, auth tokens and API keys on MongoDB: collections `tenants`, `users`
//! (unique index on the normalized email), `auth_tokens` and `api_keys` (unique index on the
//! key hash). Every write is a single-document atomic
//! operation, so replicas sharing a standalone `mongod` stay consistent.

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, UserId},
    store::{
        check_owner_stays_in_scope,
        mongo::{
            support::{self, backend_err, scope_filter, to_doc, version_bson},
            IndexSpec, MongoMigration,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{self, doc, Bson, Document},
    Collection, Database,
};
use serde::de::DeserializeOwned;

use super::{TenantRepository, UserRepository};
use crate::records::{normalize_email, Tenant, User};

mod api_keys;
mod auth_tokens;
mod tenants;
mod users;

const TENANTS: &str = "tenants";
const USERS: &str = "users";
const AUTH_TOKENS: &str = "auth_tokens";
const API_KEYS: &str = "api_keys";

/// The tenancy indexes, as capability `tenancy`.
pub(crate) const MIGRATIONS: &[MongoMigration] = &[
    MongoMigration {
        name: "0001_tenants_users",
        indexes: &[
            IndexSpec {
                collection: USERS,
                name: "email_unique",
                keys: &[("email_lower", 1)],
                unique_field: Some("email"),
                expire_at_field: false,
            },
            IndexSpec {
                collection: USERS,
                name: "by_tenant",
                keys: &[("tenant_id", 1), ("_id", 1)],
                unique_field: None,
                expire_at_field: false,
            },
        ],
    },
    MongoMigration {
        name: "0002_auth_tokens",
        indexes: &[IndexSpec {
            collection: AUTH_TOKENS,
            name: "by_user",
            keys: &[("user_id", 1), ("purpose", 1)],
            unique_field: None,
            expire_at_field: false,
        }],
    },
    MongoMigration {
        name: "0003_api_keys",
        indexes: &[
            IndexSpec {
                collection: API_KEYS,
                name: "key_hash_unique",
                keys: &[("key_hash", 1)],
                unique_field: Some("key"),
                expire_at_field: false,
            },
            IndexSpec {
                collection: API_KEYS,
                name: "by_tenant",
                keys: &[("tenant_id", 1), ("_id", 1)],
                unique_field: None,
                expire_at_field: false,
            },
        ],
    },
];

/// The unique indexes above.
const UNIQUE: &[IndexSpec] = &[MIGRATIONS[0].indexes[0], MIGRATIONS[2].indexes[0]];

/// The tenancy repositories on one MongoDB database.
#[derive(Clone, Debug)]
pub struct MongoTenancy {
    db: Database,
}

impl MongoTenancy {
    /// The repositories on `db` (migrated with [`crate::storage::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn tenants(&self) -> Collection<Document> {
        self.db.collection(TENANTS)
    }

    fn users(&self) -> Collection<Document> {
        self.db.collection(USERS)
    }

    async fn list_docs<T: DeserializeOwned>(
        &self,
        coll: Collection<Document>,
        filter: Document,
        page: PageRequest,
        entity: &'static str,
        id_of: impl Fn(&T) -> String,
    ) -> Result<Page<T>> {
        support::list_docs(coll, filter, page, entity, id_of).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn replace_scoped(
        &self,
        coll: Collection<Document>,
        scope: Scope,
        id: String,
        expected: u64,
        replacement: Document,
        entity: &'static str,
        action: &'static str,
    ) -> Result<()> {
        support::replace_scoped(
            coll,
            scope,
            id,
            expected,
            replacement,
            UNIQUE,
            entity,
            action,
        )
        .await
    }

    async fn missing_or_stale(
        &self,
        coll: Collection<Document>,
        filter: Document,
        entity: &'static str,
        id: String,
        expected: u64,
    ) -> Error {
        support::missing_or_stale(coll, filter, entity, id, expected).await
    }
}

fn unique_err(
    entity: &'static str,
    action: &'static str,
) -> impl Fn(mongodb::error::Error) -> Error {
    support::unique_err(UNIQUE, entity, action)
}

/// Users carry their normalized email as an extra field for the unique index.
fn from_doc<T: DeserializeOwned>(doc: Document, entity: &'static str) -> Result<T> {
    support::from_doc(doc, entity, &["email_lower"])
}
