//! Contact import jobs on the embedded SQLite database: table `contact_imports`, the job
//! as a JSON document beside the columns claims and lists filter on: `tenant_id`,
//! `due_ms` (NULL once the job is done or failed) and `lease_ms` (NULL while no worker
//! holds it). A claim reads and leases in one write closure (the writer's `IMMEDIATE`
//! transaction), so two processes sharing the file never claim one job twice.

use async_trait::async_trait;
use imix_core::{
    store::{
        sqlite::{
            support::{
                db_err, exec, from_json, missing_or_stale, scope_param, to_json, version_param,
            },
            Migration, SqliteDb,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::ContactImportRepository;
use crate::contacts::imports::{ContactImport, ContactImportId};

/// The import jobs' schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0004_imports",
    sql: "CREATE TABLE IF NOT EXISTS contact_imports (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        due_ms INTEGER,
        lease_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS contact_imports_by_tenant ON contact_imports (tenant_id, id);
     CREATE INDEX IF NOT EXISTS contact_imports_due ON contact_imports (due_ms)
        WHERE due_ms IS NOT NULL;",
    unique: &[],
}];

const JOB: &str = "contact import";
const TABLE: &str = "contact_imports";

/// Import jobs on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteContactImports {
    db: SqliteDb,
}

impl SqliteContactImports {
    /// The jobs on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

/// The columns a job row keeps beside its document.
struct Row {
    id: String,
    tenant_id: String,
    due_ms: Option<i64>,
    lease_ms: Option<i64>,
    version: i64,
    doc: String,
}

impl Row {
    fn of(job: &ContactImport) -> Result<Self> {
        Ok(Self {
            id: job.id.to_string(),
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
            "UPDATE contact_imports SET due_ms = ?1, lease_ms = ?2, version = ?3, doc = ?4
             WHERE id = ?5 AND version = ?6",
            params![
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

fn read_doc(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    action: &'static str,
) -> Result<Option<ContactImport>> {
    let doc: Option<String> = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(p, |r| r.get(0)).optional())
        .map_err(db_err(action))?;
    doc.map(|d| from_json(&d, JOB)).transpose()
}

#[async_trait]
impl ContactImportRepository for SqliteContactImports {
    async fn insert(&self, job: &ContactImport) -> Result<()> {
        const ACTION: &str = "store a contact import";
        let row = Row::of(job)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO contact_imports (id, tenant_id, due_ms, lease_ms, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        row.id,
                        row.tenant_id,
                        row.due_ms,
                        row.lease_ms,
                        row.version,
                        row.doc
                    ],
                )
                .map_err(db_err(ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: ContactImportId) -> Result<ContactImport> {
        const ACTION: &str = "read a contact import";
        self.db
            .read(ACTION, move |c| {
                read_doc(
                    c,
                    "SELECT doc FROM contact_imports
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), scope_param(scope)],
                    ACTION,
                )?
                .ok_or_else(|| Error::NotFound {
                    entity: JOB,
                    id: id.to_string(),
                })
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ContactImport>> {
        const ACTION: &str = "list contact imports";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM contact_imports
                         WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR tenant_id = ?2)
                         ORDER BY id DESC LIMIT ?3",
                    )
                    .map_err(db_err(ACTION))?;
                let docs = stmt
                    .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                    .map_err(db_err(ACTION))?
                    .collect::<rusqlite::Result<Vec<String>>>()
                    .map_err(db_err(ACTION))?;
                let items = docs
                    .iter()
                    .map(|d| from_json(d, JOB))
                    .collect::<Result<Vec<ContactImport>>>()?;
                Ok(Page::from_overfetch(items, limit, |j| j.id.to_string()))
            })
            .await
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ContactImport>> {
        const ACTION: &str = "claim a contact import";
        self.db
            .write(ACTION, move |c| {
                let Some(mut job) = read_doc(
                    c,
                    "SELECT doc FROM contact_imports
                     WHERE due_ms IS NOT NULL AND due_ms <= ?1
                       AND (lease_ms IS NULL OR lease_ms <= ?1)
                     ORDER BY due_ms, id LIMIT 1",
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

    async fn update(&self, job: &ContactImport) -> Result<ContactImport> {
        const ACTION: &str = "update a contact import";
        let mut next = job.clone();
        next.version += 1;
        let row = Row::of(&next)?;
        let expected = version_param(job.version)?;
        self.db
            .write(ACTION, move |c| {
                if row.replace(c, expected, ACTION)? {
                    return Ok(next);
                }
                Err(missing_or_stale(c, TABLE, JOB, row.id, None, expected))
            })
            .await
    }
}
