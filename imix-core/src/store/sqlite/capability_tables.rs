//! Tables of capabilities whose adapters still live here while they move to their crates.

use super::{Migration, UniqueKey};

pub(super) const TENANCY_MIGRATIONS: &[Migration] = &[
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
            table: "users",
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
            table: "auth_tokens",
            columns: &["token_hash"],
            field: "id",
        }],
    },
];
pub(super) const TENANCY_UNIQUE: &[UniqueKey] = TENANCY_MIGRATIONS[0].unique;
pub(super) const TOKENS_UNIQUE: &[UniqueKey] = TENANCY_MIGRATIONS[1].unique;

pub(super) const NOTIFY_MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_mail_outbox",
    sql: "CREATE TABLE IF NOT EXISTS mail_outbox (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        due_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS mail_outbox_due ON mail_outbox (due_ms) WHERE due_ms IS NOT NULL;
     CREATE INDEX IF NOT EXISTS mail_outbox_by_tenant ON mail_outbox (tenant_id, id);",
    unique: &[],
}];

pub(super) const WHATSAPP_MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_accounts_templates",
    sql: "CREATE TABLE IF NOT EXISTS whatsapp_accounts (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        phone_number_id TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS whatsapp_accounts_by_tenant ON whatsapp_accounts (tenant_id, id);
     CREATE TABLE IF NOT EXISTS message_templates (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        language TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (account_id, name, language)
     );
     CREATE INDEX IF NOT EXISTS message_templates_by_tenant ON message_templates (tenant_id, id);",
    unique: &[
        UniqueKey {
            table: "whatsapp_accounts",
            columns: &["phone_number_id"],
            field: "phone_number_id",
        },
        UniqueKey {
            table: "message_templates",
            columns: &["account_id", "name", "language"],
            field: "name",
        },
    ],
}];
pub(super) const WHATSAPP_UNIQUE: &[UniqueKey] = WHATSAPP_MIGRATIONS[0].unique;
