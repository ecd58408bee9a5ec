//! Indexes of capabilities whose adapters still live here while they move to their crates.

use super::{IndexSpec, MongoMigration};

pub(super) const TENANCY_MIGRATIONS: &[MongoMigration] = &[
    MongoMigration {
        name: "0001_tenants_users",
        indexes: &[
            IndexSpec {
                collection: "users",
                name: "email_unique",
                keys: &[("email_lower", 1)],
                unique_field: Some("email"),
                expire_at_field: false,
            },
            IndexSpec {
                collection: "users",
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
            collection: "auth_tokens",
            name: "by_user",
            keys: &[("user_id", 1), ("purpose", 1)],
            unique_field: None,
            expire_at_field: false,
        }],
    },
];

pub(super) const NOTIFY_MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0001_mail_outbox",
    indexes: &[
        IndexSpec {
            collection: "mail_outbox",
            name: "by_due",
            keys: &[("due_ms", 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
        IndexSpec {
            collection: "mail_outbox",
            name: "by_tenant",
            keys: &[("tenant_id", 1), ("_id", -1)],
            unique_field: None,
            expire_at_field: false,
        },
    ],
}];

pub(super) const WHATSAPP_MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0001_accounts_templates",
    indexes: &[
        IndexSpec {
            collection: "whatsapp_accounts",
            name: "phone_number_id_unique",
            keys: &[("phone_number_id", 1)],
            unique_field: Some("phone_number_id"),
            expire_at_field: false,
        },
        IndexSpec {
            collection: "whatsapp_accounts",
            name: "by_tenant",
            keys: &[("tenant_id", 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
        IndexSpec {
            collection: "message_templates",
            name: "account_name_language_unique",
            keys: &[("account_id", 1), ("name", 1), ("language", 1)],
            unique_field: Some("name"),
            expire_at_field: false,
        },
        IndexSpec {
            collection: "message_templates",
            name: "by_tenant",
            keys: &[("tenant_id", 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
    ],
}];
