//! The mail outbox on SQLite, in the shared embedded database.
//!
//! Beside the JSON document, `due_ms` holds [`OutboxEmail::due_at`] in Unix milliseconds
//! (NULL once sent or failed), indexed, so a claim is one indexed lookup. A claim runs in the
//! writer's `IMMEDIATE` transaction (see [`imix_core::store::sqlite::engine`]): it takes
//! SQLite's write lock before reading, so even two processes sharing the file cannot claim
//! the same email.

use async_trait::async_trait;
use imix_core::{
    store::{
        sqlite::{
            support::{db_err, exec, from_json, scope_param, to_json, unique_err, version_param},
            Migration, SqliteDb,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, OptionalExtension};

use super::MailOutboxRepository;
use crate::outbox_record::{OutboxEmail, OutboxId};

const ENTITY: &str = "outbox email";

/// The outbox's tables, recorded under capability [`super::CAPABILITY`]. The names and SQL
/// are those the store applied before the outbox moved here, so existing databases see
/// them as applied already.
pub const MIGRATIONS: &[Migration] = &[Migration {
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

/// [`MailOutboxRepository`] on the shared SQLite database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteOutbox {
    db: SqliteDb,
}

impl SqliteOutbox {
    /// The outbox in `db` (apply [`MIGRATIONS`] first, see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn due_ms(email: &OutboxEmail) -> Option<i64> {
    email.due_at().map(|t| t.timestamp_millis())
}

fn from_millis(ms: i64) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::Corrupt {
        entity: ENTITY,
        source: "due instant out of range".into(),
    })
}

#[async_trait]
impl MailOutboxRepository for SqliteOutbox {
    async fn insert(&self, email: &OutboxEmail) -> Result<()> {
        const ACTION: &str = "insert an outbox email";
        let doc = to_json(email, ENTITY)?;
        let id = email.id.to_string();
        let tenant = email.tenant_id.map(|t| t.to_string());
        let version = version_param(email.version)?;
        let due = due_ms(email);
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO mail_outbox (id, tenant_id, due_ms, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, due, version, doc],
                )
                .map_err(unique_err(MIGRATIONS[0].unique, ENTITY, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: OutboxId) -> Result<OutboxEmail> {
        const ACTION: &str = "read an outbox email";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let doc: Option<String> = c
                    .query_row(
                        "SELECT doc FROM mail_outbox
                         WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                        params![id.to_string(), only],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err(ACTION))?;
                match doc {
                    Some(doc) => from_json(&doc, ENTITY),
                    None => Err(Error::NotFound {
                        entity: ENTITY,
                        id: id.to_string(),
                    }),
                }
            })
            .await
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<OutboxEmail>> {
        const ACTION: &str = "claim an outbox email";
        self.db
            .write(ACTION, move |c| {
                let doc: Option<String> = c
                    .query_row(
                        "SELECT doc FROM mail_outbox
                         WHERE due_ms IS NOT NULL AND due_ms <= ?1
                         ORDER BY due_ms, id LIMIT 1",
                        [now.timestamp_millis()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err(ACTION))?;
                let Some(doc) = doc else {
                    return Ok(None);
                };
                let mut email: OutboxEmail = from_json(&doc, ENTITY)?;
                let expected = version_param(email.version)?;
                email.apply_claim(now, lease_until);
                let changed = c
                    .execute(
                        "UPDATE mail_outbox SET due_ms = ?1, version = ?2, doc = ?3
                         WHERE id = ?4 AND version = ?5",
                        params![
                            due_ms(&email),
                            version_param(email.version)?,
                            to_json(&email, ENTITY)?,
                            email.id.to_string(),
                            expected
                        ],
                    )
                    .map_err(db_err(ACTION))?;
                // The write lock was held since the read, so the row cannot have changed.
                Ok((changed == 1).then_some(email))
            })
            .await
    }

    async fn update(&self, email: &OutboxEmail) -> Result<OutboxEmail> {
        const ACTION: &str = "update an outbox email";
        let mut next = email.clone();
        next.version += 1;
        let doc = to_json(&next, ENTITY)?;
        let id = email.id.to_string();
        let due = due_ms(&next);
        let (expected, new_version) = (version_param(email.version)?, version_param(next.version)?);
        self.db
            .write(ACTION, move |c| {
                let changed = c
                    .execute(
                        "UPDATE mail_outbox SET due_ms = ?1, version = ?2, doc = ?3
                         WHERE id = ?4 AND version = ?5",
                        params![due, new_version, doc, id, expected],
                    )
                    .map_err(db_err(ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                let exists: bool = c
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM mail_outbox WHERE id = ?1)",
                        [&id],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                Err(if exists {
                    Error::VersionConflict {
                        entity: ENTITY,
                        id,
                        expected: expected.max(0) as u64,
                    }
                } else {
                    Error::NotFound { entity: ENTITY, id }
                })
            })
            .await
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        const ACTION: &str = "read the next outbox due time";
        let ms: Option<i64> = self
            .db
            .read(ACTION, |c| {
                c.query_row(
                    "SELECT MIN(due_ms) FROM mail_outbox WHERE due_ms IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err(ACTION))
            })
            .await?;
        ms.map(from_millis).transpose()
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<OutboxEmail>> {
        const ACTION: &str = "list outbox emails";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM mail_outbox
                         WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR tenant_id = ?2)
                         ORDER BY id DESC LIMIT ?3",
                    )
                    .map_err(db_err(ACTION))?;
                let rows = stmt
                    .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                    .map_err(db_err(ACTION))?;
                let mut items = Vec::new();
                for row in rows {
                    items.push(from_json::<OutboxEmail>(
                        &row.map_err(db_err(ACTION))?,
                        ENTITY,
                    )?);
                }
                Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
            })
            .await
    }
}
