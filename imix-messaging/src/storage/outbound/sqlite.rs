//! Outbound records on the embedded SQLite database: table `outbound_messages` (primary
//! key the message id, `dedupe` UNIQUE), the record as a JSON document beside the columns
//! queries filter on: `status`, `due_ms` (set only while queued) and `lease_ms`. A claim
//! reads and leases in one write closure (the writer's `IMMEDIATE` transaction), so two
//! processes sharing the file never claim one message twice.

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        sqlite::{
            support::{db_err, exec, scope_param, to_json, unique_err, version_param},
            Migration, SqliteDb, UniqueKey,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, Connection};

use super::OutboundRepository;
use crate::{
    outbound::{OutboundRecord, OutboundStatus},
    records::MessageId,
    storage::sqlite::{query_doc, query_docs},
};

/// The outbound table's schema step, recorded under capability
/// [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0010_outbound",
    sql: "CREATE TABLE IF NOT EXISTS outbound_messages (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        status TEXT NOT NULL,
        dedupe TEXT NOT NULL UNIQUE,
        due_ms INTEGER,
        lease_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS outbound_due ON outbound_messages (due_ms) WHERE due_ms IS NOT NULL;
     CREATE INDEX IF NOT EXISTS outbound_sending ON outbound_messages (lease_ms) WHERE status = 'sending';
     CREATE INDEX IF NOT EXISTS outbound_by_status ON outbound_messages (tenant_id, status, id);",
    unique: UNIQUE,
}];

const UNIQUE: &[UniqueKey] = &[UniqueKey {
    table: "outbound_messages",
    columns: &["dedupe"],
    field: "idempotency_key",
}];

const ENTITY: &str = "message";

/// Outbound records on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteOutbound {
    db: SqliteDb,
}

impl SqliteOutbound {
    /// The records on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

struct Row {
    id: String,
    tenant_id: String,
    status: &'static str,
    dedupe: String,
    due_ms: Option<i64>,
    lease_ms: Option<i64>,
    version: i64,
    doc: String,
}

impl Row {
    fn of(r: &OutboundRecord) -> Result<Self> {
        Ok(Self {
            id: r.id.to_string(),
            tenant_id: r.tenant_id.to_string(),
            status: r.status.as_str(),
            dedupe: r.dedupe.clone(),
            // Only a queued message is ever claimed.
            due_ms: r
                .due_at
                .filter(|_| r.status == OutboundStatus::Queued)
                .map(|t| t.timestamp_millis()),
            lease_ms: r.lease_until.map(|t| t.timestamp_millis()),
            version: version_param(r.version)?,
            doc: to_json(r, ENTITY)?,
        })
    }

    fn replace(&self, c: &Connection, expected: i64, action: &'static str) -> Result<bool> {
        let changed = exec(
            c,
            "UPDATE outbound_messages SET status = ?1, due_ms = ?2, lease_ms = ?3, version = ?4,
             doc = ?5 WHERE id = ?6 AND version = ?7",
            params![
                self.status,
                self.due_ms,
                self.lease_ms,
                self.version,
                self.doc,
                self.id,
                expected
            ],
        )
        .map_err(db_err(action))?;
        Ok(changed == 1)
    }
}

fn not_found(id: impl ToString) -> Error {
    Error::NotFound {
        entity: ENTITY,
        id: id.to_string(),
    }
}

#[async_trait]
impl OutboundRepository for SqliteOutbound {
    async fn insert(&self, record: &OutboundRecord) -> Result<()> {
        const ACTION: &str = "queue a message";
        let row = Row::of(record)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO outbound_messages
                     (id, tenant_id, status, dedupe, due_ms, lease_ms, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        row.id,
                        row.tenant_id,
                        row.status,
                        row.dedupe,
                        row.due_ms,
                        row.lease_ms,
                        row.version,
                        row.doc
                    ],
                )
                .map_err(unique_err(UNIQUE, ENTITY, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: MessageId) -> Result<OutboundRecord> {
        const ACTION: &str = "read an outbound message";
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM outbound_messages
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), scope_param(scope)],
                    ENTITY,
                    ACTION,
                )?
                .ok_or_else(|| not_found(id))
            })
            .await
    }

    async fn find_by_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<OutboundRecord>> {
        const ACTION: &str = "find a message by idempotency key";
        let dedupe = OutboundRecord::dedupe_of(tenant, key);
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM outbound_messages WHERE dedupe = ?1",
                    [dedupe],
                    ENTITY,
                    ACTION,
                )
            })
            .await
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboundRecord>> {
        const ACTION: &str = "claim outbound messages";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .write(ACTION, move |c| {
                let due: Vec<OutboundRecord> = query_docs(
                    c,
                    "SELECT doc FROM outbound_messages
                     WHERE due_ms IS NOT NULL AND due_ms <= ?1
                       AND (lease_ms IS NULL OR lease_ms <= ?1)
                     ORDER BY due_ms, id LIMIT ?2",
                    params![now.timestamp_millis(), limit],
                    ENTITY,
                    ACTION,
                )?;
                let mut claimed = Vec::with_capacity(due.len());
                for mut r in due {
                    let expected = version_param(r.version)?;
                    r.lease_until = Some(lease_until);
                    r.version += 1;
                    // The write lock is held since the read: the rows cannot have changed.
                    if Row::of(&r)?.replace(c, expected, ACTION)? {
                        claimed.push(r);
                    }
                }
                Ok(claimed)
            })
            .await
    }

    async fn stale_sending(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboundRecord>> {
        const ACTION: &str = "find messages left sending";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(ACTION, move |c| {
                query_docs(
                    c,
                    "SELECT doc FROM outbound_messages
                     WHERE status = 'sending' AND (lease_ms IS NULL OR lease_ms <= ?1)
                     ORDER BY lease_ms, id LIMIT ?2",
                    params![now.timestamp_millis(), limit],
                    ENTITY,
                    ACTION,
                )
            })
            .await
    }

    async fn update(&self, record: &OutboundRecord) -> Result<OutboundRecord> {
        const ACTION: &str = "update an outbound message";
        let mut next = record.clone();
        next.version += 1;
        let row = Row::of(&next)?;
        let expected = version_param(record.version)?;
        self.db
            .write(ACTION, move |c| {
                if row.replace(c, expected, ACTION)? {
                    return Ok(next);
                }
                let exists: bool = c
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM outbound_messages WHERE id = ?1)",
                        [&row.id],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                Err(if exists {
                    Error::VersionConflict {
                        entity: ENTITY,
                        id: row.id,
                        expected: expected.max(0) as u64,
                    }
                } else {
                    not_found(row.id)
                })
            })
            .await
    }

    async fn list(
        &self,
        scope: Scope,
        status: Option<OutboundStatus>,
        page: PageRequest,
    ) -> Result<Page<OutboundRecord>> {
        const ACTION: &str = "list outbound messages";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        let status = status.map(OutboundStatus::as_str);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<OutboundRecord> = query_docs(
                    c,
                    "SELECT doc FROM outbound_messages
                     WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR status = ?2)
                       AND (?3 IS NULL OR id > ?3)
                     ORDER BY id LIMIT ?4",
                    params![only, status, cursor, limit + 1],
                    ENTITY,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}
