//! A database made by the release before capability-owned storage (commit 8b5626e:
//! numbered versions in `schema_migrations`, every table created by imix-core) opens with
//! this release: every capability's steps run once more as no-ops, and every record is
//! still there, readable, and still constrained.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use imix_core::{
    id::WhatsAppAccountId,
    model::SettingsScope,
    store::{Backend, Scope},
    Error,
};
use imix_server::storage::Storage;
use imix_tenancy::{Role, Tenant, User};

/// The previous release's schema, exactly as it created it (versions 1 to 5).
const OLD_SCHEMA: &str = r#"
CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE TABLE users (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        email_lower TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX users_by_tenant ON users (tenant_id, id);
     CREATE TABLE settings (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (scope, key)
     );
     CREATE TABLE blobs (
        key TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        doc TEXT NOT NULL
     );
     CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
     CREATE TABLE auth_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        tenant_id TEXT,
        purpose TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
     );
     CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id, purpose);
CREATE TABLE mail_outbox (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        due_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX mail_outbox_due ON mail_outbox (due_ms) WHERE due_ms IS NOT NULL;
     CREATE INDEX mail_outbox_by_tenant ON mail_outbox (tenant_id, id);
CREATE TABLE counters (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        expires_at TEXT
     );
     CREATE INDEX counters_by_expiry ON counters (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE whatsapp_accounts (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        phone_number_id TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX whatsapp_accounts_by_tenant ON whatsapp_accounts (tenant_id, id);
     CREATE TABLE message_templates (
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
     CREATE INDEX message_templates_by_tenant ON message_templates (tenant_id, id);
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
INSERT INTO schema_migrations VALUES (1, '2026-11-30T10:00:00Z'), (2, '2026-11-30T10:00:00Z'),
    (3, '2026-11-30T10:00:00Z'), (4, '2026-11-30T10:00:00Z'), (5, '2026-11-30T10:00:00Z');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_release_opens_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    let Backend::Sqlite(db) = store.backend.clone() else {
        panic!("an embedded store");
    };
    // Rows as the previous release wrote them: JSON documents beside their columns.
    let tenant = Tenant::new("Old Times");
    let user = User::new("Old.Timer@Example.com", Role::Admin, Some(tenant.id));
    let tenant_json = serde_json::to_string(&tenant).unwrap();
    let user_json = serde_json::to_string(&user).unwrap();
    let (tenant_id, user_id) = (tenant.id.to_string(), user.id.to_string());
    db.write("lay out the previous release's database", move |c| {
        c.execute_batch(OLD_SCHEMA)
            .map_err(|e| Error::backend("old schema", e))?;
        c.execute(
            "INSERT INTO tenants (id, version, doc) VALUES (?1, 1, ?2)",
            [&tenant_id, &tenant_json],
        )
        .map_err(|e| Error::backend("old tenant", e))?;
        c.execute(
            "INSERT INTO users (id, tenant_id, email_lower, version, doc) VALUES (?1, ?2, ?3, 1, ?4)",
            [&user_id, &tenant_id, &"old.timer@example.com".to_owned(), &user_json],
        )
        .map_err(|e| Error::backend("old user", e))?;
        c.execute(
            "INSERT INTO settings (scope, key, version, doc) VALUES ('platform', 'smtp', 1, ?1)",
            [&serde_json::json!({"scope": "platform", "key": "smtp", "value": {"host": "mx.old"}, "version": 1, "updated_at": "2026-11-30T10:00:00Z"}).to_string()],
        )
        .map_err(|e| Error::backend("old settings", e))?;
        Ok(())
    })
    .await
    .unwrap();

    // This release: every capability migrates, twice (a restart), without an error.
    let storage = Storage::on(store).unwrap();
    storage.migrate().await.unwrap();
    storage.migrate().await.unwrap();

    let read = storage.tenancy.tenants.get(tenant.id).await.unwrap();
    assert_eq!(read, tenant);
    let found = storage
        .tenancy
        .users
        .find_by_email("OLD.TIMER@example.com")
        .await
        .unwrap()
        .expect("the old user");
    assert_eq!(found.id, user.id);
    let smtp = storage
        .store
        .settings
        .get(SettingsScope::Platform, "smtp")
        .await
        .unwrap()
        .expect("the old settings");
    assert_eq!(smtp.value["host"], "mx.old");
    // The old unique constraint still holds, and is still reported by field.
    let twin = User::new("old.timer@EXAMPLE.com", Role::Agent, None);
    let err = storage.tenancy.users.insert(&twin).await.unwrap_err();
    assert!(
        matches!(err, Error::Duplicate { field: "email", .. }),
        "{err:?}"
    );
    // New capabilities' tables exist beside the old ones.
    let contacts = storage
        .messaging
        .contacts
        .list(
            Scope::Tenant(tenant.id),
            imix_core::store::PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(contacts.items.is_empty());
    // Unused ids of the other capabilities still read as missing, not as errors.
    assert!(matches!(
        storage
            .whatsapp
            .accounts
            .get(Scope::Platform, WhatsAppAccountId::new())
            .await,
        Err(Error::NotFound { .. })
    ));
}
