//! The WhatsApp repositories on the embedded SQLite database: tables `whatsapp_accounts`
//! (`phone_number_id` a UNIQUE column, so two accounts can never claim one number,
//! whichever tenant adds them) and `message_templates` (`(account_id, name, language)` a
//! UNIQUE constraint). Each row keeps the entity as a JSON document beside the columns
//! queries filter on.

use async_trait::async_trait;
use imix_core::{
    id::{TemplateId, WhatsAppAccountId},
    store::{
        sqlite::{
            support::{
                db_err, exec, from_json, missing_or_stale, scope_param, to_json, unique_err,
                version_param,
            },
            Migration, SqliteDb, UniqueKey,
        },
        Page, PageRequest, Scope,
    },
    Error, Result,
};
use rusqlite::{params, OptionalExtension};

use super::{
    check_owner_stays_in_scope, TemplateFilter, TemplateRepository, WhatsAppAccountRepository,
};
use crate::records::{MessageTemplate, WhatsAppAccount};

/// The capability's schema steps. A database made by a release that recorded numbered
/// schema versions runs this step once more on upgrade: `IF NOT EXISTS` makes that a no-op
/// that keeps its tables and rows.
pub const MIGRATIONS: &[Migration] = &[Migration {
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
    unique: UNIQUE,
}];

/// The unique constraints of [`MIGRATIONS`] and the fields their violations name.
const UNIQUE: &[UniqueKey] = &[
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
];

const ACCOUNT: &str = "whatsapp account";
const TEMPLATE: &str = "template";

/// Both WhatsApp repositories on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteWhatsApp {
    db: SqliteDb,
}

impl SqliteWhatsApp {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

#[async_trait]
impl WhatsAppAccountRepository for SqliteWhatsApp {
    async fn insert(&self, account: &WhatsAppAccount) -> Result<()> {
        const ACTION: &str = "insert a whatsapp account";
        let doc = to_json(account, ACCOUNT)?;
        let id = account.id.to_string();
        let tenant = account.tenant_id.to_string();
        let phone = account.phone_number_id.clone();
        let version = version_param(account.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO whatsapp_accounts (id, tenant_id, phone_number_id, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, phone, version, doc],
                )
                .map_err(unique_err(UNIQUE, ACCOUNT, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: WhatsAppAccountId) -> Result<WhatsAppAccount> {
        const ACTION: &str = "read a whatsapp account";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let doc: Option<String> = c
                    .prepare_cached(
                        "SELECT doc FROM whatsapp_accounts
                         WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![id.to_string(), only], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db_err(ACTION))?;
                match doc {
                    Some(doc) => from_json(&doc, ACCOUNT),
                    None => Err(not_found(ACCOUNT, id)),
                }
            })
            .await
    }

    async fn find_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<WhatsAppAccount>> {
        const ACTION: &str = "find a whatsapp account by phone number id";
        let phone = phone_number_id.to_owned();
        self.db
            .read(ACTION, move |c| {
                let doc: Option<String> = c
                    .prepare_cached("SELECT doc FROM whatsapp_accounts WHERE phone_number_id = ?1")
                    .and_then(|mut s| s.query_row([phone], |r| r.get(0)).optional())
                    .map_err(db_err(ACTION))?;
                doc.map(|d| from_json(&d, ACCOUNT)).transpose()
            })
            .await
    }

    async fn update(&self, scope: Scope, account: &WhatsAppAccount) -> Result<WhatsAppAccount> {
        const ACTION: &str = "update a whatsapp account";
        check_owner_stays_in_scope(scope, account.tenant_id)?;
        let mut next = account.clone();
        next.version += 1;
        let doc = to_json(&next, ACCOUNT)?;
        let id = account.id.to_string();
        let tenant = account.tenant_id.to_string();
        let phone = account.phone_number_id.clone();
        let (expected, new_version) = (
            version_param(account.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE whatsapp_accounts
                     SET version = ?1, doc = ?2, tenant_id = ?3, phone_number_id = ?4
                     WHERE id = ?5 AND version = ?6 AND (?7 IS NULL OR tenant_id = ?7)",
                    params![new_version, doc, tenant, phone, id, expected, only],
                )
                .map_err(unique_err(UNIQUE, ACCOUNT, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "whatsapp_accounts",
                    ACCOUNT,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: WhatsAppAccountId) -> Result<()> {
        const ACTION: &str = "delete a whatsapp account";
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let n = exec(
                    c,
                    "DELETE FROM whatsapp_accounts WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                )
                .map_err(db_err(ACTION))?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(not_found(ACCOUNT, id))
                }
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WhatsAppAccount>> {
        const ACTION: &str = "list whatsapp accounts";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM whatsapp_accounts
                         WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                         ORDER BY id LIMIT ?3",
                    )
                    .map_err(db_err(ACTION))?;
                let rows = stmt
                    .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                    .map_err(db_err(ACTION))?;
                let mut items = Vec::new();
                for row in rows {
                    items.push(from_json::<WhatsAppAccount>(
                        &row.map_err(db_err(ACTION))?,
                        ACCOUNT,
                    )?);
                }
                Ok(Page::from_overfetch(items, limit, |a| a.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl TemplateRepository for SqliteWhatsApp {
    async fn insert(&self, template: &MessageTemplate) -> Result<()> {
        const ACTION: &str = "insert a template";
        let doc = to_json(template, TEMPLATE)?;
        let t = template.clone();
        let version = version_param(template.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO message_templates
                       (id, tenant_id, account_id, name, language, status, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        t.id.to_string(),
                        t.tenant_id.to_string(),
                        t.account_id.to_string(),
                        t.name,
                        t.language,
                        t.status,
                        version,
                        doc
                    ],
                )
                .map_err(unique_err(UNIQUE, TEMPLATE, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: TemplateId) -> Result<MessageTemplate> {
        const ACTION: &str = "read a template";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let doc: Option<String> = c
                    .prepare_cached(
                        "SELECT doc FROM message_templates
                         WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![id.to_string(), only], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db_err(ACTION))?;
                match doc {
                    Some(doc) => from_json(&doc, TEMPLATE),
                    None => Err(not_found(TEMPLATE, id)),
                }
            })
            .await
    }

    async fn update(&self, scope: Scope, template: &MessageTemplate) -> Result<MessageTemplate> {
        const ACTION: &str = "update a template";
        check_owner_stays_in_scope(scope, template.tenant_id)?;
        let mut next = template.clone();
        next.version += 1;
        let doc = to_json(&next, TEMPLATE)?;
        let t = next.clone();
        let (expected, new_version) = (
            version_param(template.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let id = t.id.to_string();
                let changed = exec(
                    c,
                    "UPDATE message_templates
                     SET version = ?1, doc = ?2, tenant_id = ?3, account_id = ?4, name = ?5,
                         language = ?6, status = ?7
                     WHERE id = ?8 AND version = ?9 AND (?10 IS NULL OR tenant_id = ?10)",
                    params![
                        new_version,
                        doc,
                        t.tenant_id.to_string(),
                        t.account_id.to_string(),
                        t.name,
                        t.language,
                        t.status,
                        id,
                        expected,
                        only
                    ],
                )
                .map_err(unique_err(UNIQUE, TEMPLATE, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "message_templates",
                    TEMPLATE,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: TemplateId) -> Result<()> {
        const ACTION: &str = "delete a template";
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let n = exec(
                    c,
                    "DELETE FROM message_templates WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                )
                .map_err(db_err(ACTION))?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(not_found(TEMPLATE, id))
                }
            })
            .await
    }

    async fn list(
        &self,
        scope: Scope,
        filter: TemplateFilter,
        page: PageRequest,
    ) -> Result<Page<MessageTemplate>> {
        const ACTION: &str = "list templates";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        let account = filter.account_id.map(|a| a.to_string());
        let status = filter.status;
        self.db
            .read(ACTION, move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM message_templates
                         WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                           AND (?3 IS NULL OR account_id = ?3) AND (?4 IS NULL OR status = ?4)
                         ORDER BY id LIMIT ?5",
                    )
                    .map_err(db_err(ACTION))?;
                let rows = stmt
                    .query_map(params![cursor, only, account, status, limit + 1], |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(db_err(ACTION))?;
                let mut items = Vec::new();
                for row in rows {
                    items.push(from_json::<MessageTemplate>(
                        &row.map_err(db_err(ACTION))?,
                        TEMPLATE,
                    )?);
                }
                Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
            })
            .await
    }
}
