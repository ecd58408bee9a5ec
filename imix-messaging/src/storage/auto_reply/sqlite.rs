//! Auto-reply jobs on the embedded SQLite database: table `auto_reply_jobs` (primary key
//! `message_id`, so a message has one job however often its delivery is processed), the
//! job as a JSON document beside the columns claims filter on: `due_ms` (NULL once the
//! job is done) and `lease_ms` (NULL while no worker holds it). A
//! claim reads and leases in one write closure (the writer's `IMMEDIATE` transaction), so
//! two processes sharing the file never claim one job twice.

use async_trait::async_trait;
use imix_core::{
    store::{
        sqlite::{
            support::{db_err, exec, from_json, scope_param, to_json, unique_err, version_param},
            Migration, SqliteDb, UniqueKey,
        },
        Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::AutoReplyJobRepository;
use crate::{auto_reply::AutoReplyJob, records::MessageId};

/// The auto-reply jobs' schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0012_auto_reply",
    sql: "CREATE TABLE IF NOT EXISTS auto_reply_jobs (
        message_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        due_ms INTEGER,
        lease_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS auto_reply_jobs_due ON auto_reply_jobs (due_ms) WHERE due_ms IS NOT NULL;",
    unique: UNIQUE,
}];

const UNIQUE: &[UniqueKey] = &[UniqueKey {
    table: "auto_reply_jobs",
    columns: &["message_id"],
    field: "message_id",
}];

const JOB: &str = "auto-reply job";

/// Auto-reply jobs on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteAutoReplyJobs {
    db: SqliteDb,
}

impl SqliteAutoReplyJobs {
    /// The jobs on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn not_found(id: impl ToString) -> Error {
    Error::NotFound {
        entity: JOB,
        id: id.to_string(),
    }
}

/// The columns a job row keeps beside its document.
struct Row {
    message_id: String,
    tenant_id: String,
    due_ms: Option<i64>,
    lease_ms: Option<i64>,
    version: i64,
    doc: String,
}

impl Row {
    fn of(job: &AutoReplyJob) -> Result<Self> {
        Ok(Self {
            message_id: job.message_id.to_string(),
            tenant_id: job.tenant_id.to_string(),
            due_ms: job.due_at.map(|t| t.timestamp_millis()),
            lease_ms: job.lease_until.map(|t| t.timestamp_millis()),
            version: version_param(job.version)?,
            doc: to_json(job, JOB)?,
        })
    }

    /// Replaces the row at version `expected`; whether it did.
    fn replace(&self, c: &Connection, expected: i64, action: &'static str) -> Result<bool> {
        let changed = exec(
            c,
            "UPDATE auto_reply_jobs SET due_ms = ?1, lease_ms = ?2, version = ?3, doc = ?4
             WHERE message_id = ?5 AND version = ?6",
            params![
                self.due_ms,
                self.lease_ms,
                self.version,
                self.doc,
                self.message_id,
                expected
            ],
        )
        .map_err(db_err(action))?;
        Ok(changed == 1)
    }
}

fn read_doc(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    action: &'static str,
) -> Result<Option<AutoReplyJob>> {
    let doc: Option<String> = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(p, |r| r.get(0)).optional())
        .map_err(db_err(action))?;
    doc.map(|d| from_json(&d, JOB)).transpose()
}

#[async_trait]
impl AutoReplyJobRepository for SqliteAutoReplyJobs {
    async fn insert(&self, job: &AutoReplyJob) -> Result<()> {
        const ACTION: &str = "store an auto-reply job";
        let row = Row::of(job)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO auto_reply_jobs (message_id, tenant_id, due_ms, lease_ms, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        row.message_id,
                        row.tenant_id,
                        row.due_ms,
                        row.lease_ms,
                        row.version,
                        row.doc
                    ],
                )
                .map_err(unique_err(UNIQUE, JOB, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: MessageId) -> Result<AutoReplyJob> {
        const ACTION: &str = "read an auto-reply job";
        self.db
            .read(ACTION, move |c| {
                read_doc(
                    c,
                    "SELECT doc FROM auto_reply_jobs
                     WHERE message_id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), scope_param(scope)],
                    ACTION,
                )?
                .ok_or_else(|| not_found(id))
            })
            .await
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<AutoReplyJob>> {
        const ACTION: &str = "claim an auto-reply job";
        self.db
            .write(ACTION, move |c| {
                let Some(mut job) = read_doc(
                    c,
                    "SELECT doc FROM auto_reply_jobs
                     WHERE due_ms IS NOT NULL AND due_ms <= ?1
                       AND (lease_ms IS NULL OR lease_ms <= ?1)
                     ORDER BY due_ms, message_id LIMIT 1",
                    [now.timestamp_millis()],
                    ACTION,
                )?
                else {
                    return Ok(None);
                };
                let expected = version_param(job.version)?;
                job.attempts = job.attempts.saturating_add(1);
                job.lease_until = Some(lease_until);
                job.version += 1;
                // The write lock is held since the read: the row cannot have changed.
                let claimed = Row::of(&job)?.replace(c, expected, ACTION)?;
                Ok(claimed.then_some(job))
            })
            .await
    }

    async fn update(&self, job: &AutoReplyJob) -> Result<AutoReplyJob> {
        const ACTION: &str = "update an auto-reply job";
        let mut next = job.clone();
        next.version += 1;
        let row = Row::of(&next)?;
        let expected = version_param(job.version)?;
        self.db
            .write(ACTION, move |c| {
                if row.replace(c, expected, ACTION)? {
                    return Ok(next);
                }
                let exists: bool = c
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM auto_reply_jobs WHERE message_id = ?1)",
                        [&row.message_id],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                Err(if exists {
                    Error::VersionConflict {
                        entity: JOB,
                        id: row.message_id,
                        expected: expected.max(0) as u64,
                    }
                } else {
                    not_found(row.message_id)
                })
            })
            .await
    }
}
