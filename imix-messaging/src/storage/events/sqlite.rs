//! The event log on the embedded SQLite database: table `event_heads` (each tenant's last
//! number) and `events` (primary key `(tenant_id, seq)`, the event as a JSON document).
//! An append raises the head and inserts the event in one write closure (the writer's
//! `IMMEDIATE` transaction), so numbers are dense and appear in order even with several
//! processes on one file.

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::sqlite::{
        support::{db_err, exec, from_json, to_json},
        Migration, SqliteDb,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, OptionalExtension};

use crate::events::{Event, EventLog, NewEvent};

/// The event log's schema steps, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0003_events",
    sql: "CREATE TABLE IF NOT EXISTS event_heads (
        tenant_id TEXT PRIMARY KEY,
        last INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS events (
        tenant_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant_id, seq)
     ) WITHOUT ROWID;
     CREATE INDEX IF NOT EXISTS events_by_age ON events (at_ms);",
    unique: &[],
}];

const EVENT: &str = "event";

/// The event log on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteEventLog {
    db: SqliteDb,
}

impl SqliteEventLog {
    /// The log on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::invalid("seq", "is out of range"))
}

#[async_trait]
impl EventLog for SqliteEventLog {
    async fn append(&self, event: NewEvent) -> Result<Event> {
        const ACTION: &str = "record a live event";
        self.db
            .write(ACTION, move |c| {
                let tenant = event.tenant_id.to_string();
                let seq: i64 = c
                    .query_row(
                        "INSERT INTO event_heads (tenant_id, last) VALUES (?1, 1)
                         ON CONFLICT (tenant_id) DO UPDATE SET last = last + 1
                         RETURNING last",
                        [&tenant],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                let recorded = Event {
                    tenant_id: event.tenant_id,
                    seq: seq.max(0) as u64,
                    kind: event.kind,
                    data: event.data,
                    at: imix_core::now(),
                };
                exec(
                    c,
                    "INSERT INTO events (tenant_id, seq, at_ms, doc) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        tenant,
                        seq,
                        recorded.at.timestamp_millis(),
                        to_json(&recorded, EVENT)?
                    ],
                )
                .map_err(db_err(ACTION))?;
                Ok(recorded)
            })
            .await
    }

    async fn read_after(&self, tenant: TenantId, after: u64, limit: u32) -> Result<Vec<Event>> {
        const ACTION: &str = "read live events";
        let after = seq_param(after)?;
        self.db
            .read(ACTION, move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM events WHERE tenant_id = ?1 AND seq > ?2
                         ORDER BY seq LIMIT ?3",
                    )
                    .map_err(db_err(ACTION))?;
                let rows = stmt
                    .query_map(params![tenant.to_string(), after, limit], |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(db_err(ACTION))?;
                let mut events = Vec::new();
                for row in rows {
                    events.push(from_json(&row.map_err(db_err(ACTION))?, EVENT)?);
                }
                Ok(events)
            })
            .await
    }

    async fn head(&self, tenant: TenantId) -> Result<u64> {
        const ACTION: &str = "read the live events' head";
        self.db
            .read(ACTION, move |c| {
                let last: Option<i64> = c
                    .query_row(
                        "SELECT last FROM event_heads WHERE tenant_id = ?1",
                        [tenant.to_string()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err(ACTION))?;
                Ok(last.unwrap_or(0).max(0) as u64)
            })
            .await
    }

    async fn oldest(&self, tenant: TenantId) -> Result<Option<u64>> {
        const ACTION: &str = "read the oldest live event";
        self.db
            .read(ACTION, move |c| {
                let first: Option<i64> = c
                    .query_row(
                        "SELECT MIN(seq) FROM events WHERE tenant_id = ?1",
                        [tenant.to_string()],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                Ok(first.map(|s| s.max(0) as u64))
            })
            .await
    }

    async fn prune(&self, keep_per_tenant: u64, before: Timestamp) -> Result<u64> {
        const ACTION: &str = "prune live events";
        let keep = seq_param(keep_per_tenant)?;
        self.db
            .write(ACTION, move |c| {
                let old = exec(
                    c,
                    "DELETE FROM events WHERE at_ms < ?1",
                    [before.timestamp_millis()],
                )
                .map_err(db_err(ACTION))?;
                let surplus = exec(
                    c,
                    "DELETE FROM events WHERE seq <= (
                        SELECT h.last FROM event_heads h WHERE h.tenant_id = events.tenant_id
                     ) - ?1",
                    [keep],
                )
                .map_err(db_err(ACTION))?;
                Ok((old + surplus) as u64)
            })
            .await
    }
}
