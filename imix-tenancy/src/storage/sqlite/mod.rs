//! Tenants, users, auth tokens and API keys in the embedded SQLite database: tables
//! `tenants`, `users` (the normalized email UNIQUE), `auth_tokens` and `api_keys` (the key
//! hash UNIQUE). Entities are JSON documents
//! beside the columns that are queried or constrained.

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, UserId},
    store::{
        sqlite::{support::*, Migration, SqliteDb, UniqueKey},
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::{TenantRepository, UserRepository};
use crate::records::{normalize_email, Tenant, User};

mod api_keys;
mod auth_tokens;
mod tenants;
mod users;

const USERS: &str = "users";
const AUTH_TOKENS: &str = "auth_tokens";
const API_KEYS: &str = "api_keys";

/// The tenancy tables, as capability `tenancy`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_tenants_users",
        sql: "CREATE TABLE IF NOT EXISTS tenants (
            id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            doc TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY,
            tenant_id TEXT,
            email_lower TEXT NOT NULL UNIQUE,
            version INTEGER NOT NULL,
            doc TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS users_by_tenant ON users (tenant_id, id);",
        unique: &[UniqueKey {
            table: USERS,
            columns: &["email_lower"],
            field: "email",
        }],
    },
    Migration {
        name: "0002_auth_tokens",
        sql: "CREATE TABLE IF NOT EXISTS auth_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            tenant_id TEXT,
            purpose TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT
         );
         CREATE INDEX IF NOT EXISTS auth_tokens_by_user ON auth_tokens (user_id, purpose);",
        unique: &[UniqueKey {
            table: AUTH_TOKENS,
            columns: &["token_hash"],
            field: "id",
        }],
    },
    Migration {
        name: "0003_api_keys",
        sql: "CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            last_used_at TEXT,
            doc TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id, id);",
        unique: &[UniqueKey {
            table: API_KEYS,
            columns: &["key_hash"],
            field: "key",
        }],
    },
];
/// Every unique constraint above.
const UNIQUE: &[UniqueKey] = &[
    MIGRATIONS[0].unique[0],
    MIGRATIONS[1].unique[0],
    MIGRATIONS[2].unique[0],
];

/// The tenancy repositories on the embedded database.
#[derive(Clone, Debug)]
pub struct SqliteTenancy {
    db: SqliteDb,
}

impl SqliteTenancy {
    /// The repositories on `db` (migrated with [`crate::storage::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    async fn read<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.db.read(action, f).await
    }

    async fn write<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.db.write(action, f).await
    }
}
