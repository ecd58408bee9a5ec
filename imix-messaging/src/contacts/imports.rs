//! Contact import as a durable background job with progress.
//!
//! [`ContactImports::start`] checks the whole file first (not CSV, no `phone` column, too
//! large: refused with nothing stored), then keeps the upload in the blob store and a
//! [`ContactImport`] job record, and returns at once. The [`ContactImports::run`] worker
//! claims queued jobs with a lease (several replicas share the work; none imports a file
//! another holds), imports the rows in file order through the contact service (Max
//! Contacts is reserved row by row, so it holds exactly mid-import and beside concurrent
//! creations), and saves its progress — the number of rows done, the counts and the
//! rejections — every [`ImportWorkerConfig::save_every_rows`] rows or
//! [`ImportWorkerConfig::save_every`], renewing its lease each time.
//!
//! A worker that dies (`kill -9`) leaves its job leased; once the lease runs out, a worker
//! takes it again and resumes after the last saved row. The rows imported since that save
//! are imported again, idempotently: each row looks its contact up by phone number and
//! WhatsApp id, and a contact a row creates gets an id derived from the job and the row,
//! so a row that finds "its" contact reports it created (not updated) and takes no second
//! Max Contacts slot. Counts are therefore exact across restarts.
//!
//! The report keeps the counts of every row and the first [`MAX_REJECTIONS_KEPT`]
//! rejected rows (row, code, field, reason); `rejections_truncated` says when more were
//! rejected than are kept.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use imix_core::{
    access::{AccessContext, Permission},
    id::{TenantId, UserId},
    store::{BlobStore, Page, PageRequest, Scope},
    Error as CoreError, Timestamp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    csv_file::{check_file, reader, RowOutcome},
    ContactService, Counted,
};

/// How many rows of a file are imported at once.
const ROWS_AT_ONCE: usize = 32;
use crate::{error::Result, records::ContactId, storage::imports::ContactImportRepository};

imix_core::define_id!(
    /// Identifies a contact import job.
    ContactImportId,
    "contact import"
);

/// How many rejected rows a job's report keeps (the counts cover every row).
pub const MAX_REJECTIONS_KEPT: usize = 1_000;

/// Where an import stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Stored, waiting for a worker.
    Queued,
    /// A worker is importing it (or one died doing so and another will resume it).
    Running,
    /// Every row was imported or rejected.
    Done,
    /// The job could not go on (its file is gone, or the store failed on every attempt);
    /// `error` says why. Rows imported before stay imported.
    Failed,
}

impl ImportStatus {
    /// The status's name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Whether the job is over (done or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// A rejected row of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRejection {
    /// The row's line in the file (the header is line 1).
    pub row: u64,
    /// Why, for programs: `invalid_field`, `limit_reached`, `phone_taken`, `wa_id_taken`,
    /// `not_found`.
    pub code: String,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// Why, for people.
    pub reason: String,
}

/// One contact import: the uploaded file's place, its progress and its report. Also the
/// worker's unit of work (claimed with a lease). Operational state, not in backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactImport {
    /// Its id.
    pub id: ContactImportId,
    /// The tenant the contacts are imported into.
    pub tenant_id: TenantId,
    /// Who uploaded the file.
    pub created_by: UserId,
    /// The uploaded file's name, as the client gave it.
    pub file_name: Option<String>,
    /// The blob store key of the uploaded file (deleted once the job is over).
    pub blob_key: String,
    /// Where it stands.
    pub status: ImportStatus,
    /// The file's data rows (known from the start: the file is checked whole).
    pub total_rows: Option<u64>,
    /// Rows imported or rejected so far, in file order: where a resumed job starts.
    pub processed_rows: u64,
    /// Contacts created.
    pub created: u64,
    /// Contacts updated (same phone number or WhatsApp id).
    pub updated: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// The first [`MAX_REJECTIONS_KEPT`] rejected rows, in file order.
    pub rejections: Vec<ImportRejection>,
    /// More rows were rejected than `rejections` keeps.
    #[serde(default)]
    pub rejections_truncated: bool,
    /// Why the job failed, or why its last attempt did.
    pub error: Option<String>,
    /// Claims so far.
    pub attempts: u32,
    /// When a worker may take it (again); `None` once finished.
    pub due_at: Option<Timestamp>,
    /// While a worker holds it: until when.
    pub lease_until: Option<Timestamp>,
    /// Created (uploaded).
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// When a worker first took it.
    pub started_at: Option<Timestamp>,
    /// When it finished (done or failed).
    pub finished_at: Option<Timestamp>,
    /// Optimistic-concurrency version.
    pub version: u64,
}

impl ContactImport {
    /// The id a contact created by line `line` of this job's file gets: the same on every
    /// attempt, and ordered as the rows are (a UUIDv7 with the job's creation time, bits
    /// of the job's id, and the line).
    pub fn row_contact_id(&self, line: u64) -> ContactId {
        let ms = u64::try_from(self.created_at.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
        let job = self.id.as_uuid().as_u128();
        // 34 bits of the job id (its random tail) keep two jobs created in the same
        // millisecond apart; 40 bits of line number keep its rows in order.
        let job_bits = (job as u64) & ((1 << 34) - 1);
        let line = line & ((1 << 40) - 1);
        let rand_a = (job_bits >> 22) & 0xfff;
        let rand_b = ((job_bits & ((1 << 22) - 1)) << 40) | line;
        let value: u128 = (u128::from(ms) << 80)
            | (0x7 << 76)
            | (u128::from(rand_a) << 64)
            | (0b10 << 62)
            | u128::from(rand_b);
        ContactId::from_uuid(uuid::Uuid::from_u128(value))
    }
}

/// How the import worker paces itself.
#[derive(Debug, Clone)]
pub struct ImportWorkerConfig {
    /// How long a claim (or a progress save) holds a job; a worker that dies leaves it to
    /// another this long after its last save.
    pub lease: Duration,
    /// How often to look for queued jobs when not woken.
    pub poll: Duration,
    /// Progress is saved after this many rows...
    pub save_every_rows: u64,
    /// ...or this long after the last save, whichever comes first.
    pub save_every: Duration,
    /// The delay after a failed attempt (the store failing), doubled each time.
    pub first_backoff: Duration,
    /// Attempts before the job is marked failed.
    pub max_attempts: u32,
}

impl Default for ImportWorkerConfig {
    fn default() -> Self {
        // Progress is saved (and the lease renewed) at least every second, so a 15 s
        // lease is never outrun by a live worker and a dead one's job resumes soon.
        Self {
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(1),
            save_every_rows: 500,
            save_every: Duration::from_secs(1),
            first_backoff: Duration::from_secs(2),
            max_attempts: 5,
        }
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The blob store key of an import's file: under an `imports/` prefix per tenant.
pub fn blob_key(tenant: TenantId, id: ContactImportId) -> String {
    format!("imports/{tenant}/{id}")
}

/// Starts, shows and runs contact imports. Cheap to clone.
#[derive(Clone)]
pub struct ContactImports {
    contacts: ContactService,
    jobs: Arc<dyn ContactImportRepository>,
    blobs: Arc<dyn BlobStore>,
    wake: Arc<Notify>,
    config: ImportWorkerConfig,
}

impl std::fmt::Debug for ContactImports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactImports")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What stopped the processing of a job before its end.
enum Interrupted {
    /// The server is stopping: progress saved, lease given back.
    Stopping,
    /// Another worker holds the job now (this one's lease ran out): leave it.
    LeaseLost,
    /// The store failed: retry later.
    Failed(String),
}

impl ContactImports {
    /// Imports through `contacts`, keeping jobs in `jobs` and files in `blobs`.
    pub fn new(
        contacts: ContactService,
        jobs: Arc<dyn ContactImportRepository>,
        blobs: Arc<dyn BlobStore>,
        config: ImportWorkerConfig,
    ) -> Self {
        Self {
            contacts,
            jobs,
            blobs,
            wake: Arc::new(Notify::new()),
            config,
        }
    }

    /// Starts importing `data`, a CSV file, into `tenant` (`contacts.manage`): the file is
    /// checked whole first (see [`super::csv_file`]; a file that is not CSV, has no `phone`
    /// column or is too large is refused naming `file`, and nothing is stored), then
    /// stored with a queued job, which is returned.
    pub async fn start(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        file_name: Option<String>,
        data: Vec<u8>,
    ) -> Result<ContactImport> {
        ctx.authorize(Permission::ContactsManage, tenant)?;
        let checked = check_file(&data)?;
        let id = ContactImportId::new();
        let now = imix_core::now();
        let job = ContactImport {
            id,
            tenant_id: tenant,
            created_by: ctx.user_id(),
            file_name: file_name
                .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect())
                .filter(|n: &String| !n.trim().is_empty()),
            blob_key: blob_key(tenant, id),
            status: ImportStatus::Queued,
            total_rows: Some(checked.rows),
            processed_rows: 0,
            created: 0,
            updated: 0,
            rejected: 0,
            rejections: Vec::new(),
            rejections_truncated: false,
            error: None,
            attempts: 0,
            due_at: Some(now),
            lease_until: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            version: 1,
        };
        self.blobs
            .put(&job.blob_key, "text/csv", Bytes::from(data))
            .await?;
        if let Err(e) = self.jobs.insert(&job).await {
            self.delete_file(&job).await;
            return Err(e.into());
        }
        tracing::info!(target: "imix_messaging", %tenant, import = %id, rows = checked.rows, "contact import queued");
        self.wake.notify_one();
        Ok(job)
    }

    /// One of `tenant`'s imports (`contacts.read`); another tenant's is not found.
    pub async fn get(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactImportId,
    ) -> Result<ContactImport> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.jobs.get(scope, id).await?)
    }

    /// `tenant`'s imports, newest first (`contacts.read`).
    pub async fn list(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ContactImport>> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.jobs.list(scope, page).await?)
    }

    /// Waits up to `timeout` for one of `tenant`'s imports to finish (`contacts.read`);
    /// returns it as it then stands, finished or not. Reads the store, so it sees a job
    /// whichever replica imports it.
    pub async fn wait(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactImportId,
        timeout: Duration,
    ) -> Result<ContactImport> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.get(ctx, tenant, id).await?;
            if job.status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Claims and imports queued jobs until none is due; returns how many it handled.
    pub async fn drain(&self) -> Result<usize> {
        self.drain_until(&AtomicBool::new(false)).await
    }

    async fn drain_until(&self, stopping: &AtomicBool) -> Result<usize> {
        let mut handled = 0;
        while !stopping.load(Ordering::Relaxed) {
            let now = imix_core::now();
            let lease_until = now + chrono_of(self.config.lease);
            let Some(job) = self.jobs.claim_due(now, lease_until).await? else {
                break;
            };
            self.handle(job, stopping).await?;
            handled += 1;
        }
        Ok(handled)
    }

    /// Runs until `stop` completes, importing jobs as they come (those a crash left
    /// leased once their lease runs out). A job being imported when `stop` completes is
    /// saved where it is and given back, so the next start resumes it at once.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let stopping = AtomicBool::new(false);
        let work = async {
            while !stopping.load(Ordering::Relaxed) {
                if let Err(e) = self.drain_until(&stopping).await {
                    tracing::error!(target: "imix_messaging", error = %e, "contact imports failed; retrying");
                }
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.config.poll) => {}
                }
            }
        };
        let signal = async {
            stop.await;
            stopping.store(true, Ordering::Relaxed);
            self.wake.notify_one();
        };
        tokio::join!(work, signal);
    }

    async fn handle(&self, job: ContactImport, stopping: &AtomicBool) -> Result<()> {
        let id = job.id;
        let (mut job, outcome) = self.process(job, stopping).await;
        let now = imix_core::now();
        job.lease_until = None;
        job.updated_at = now;
        match outcome {
            Ok(()) => {
                job.status = ImportStatus::Done;
                job.due_at = None;
                job.finished_at = Some(now);
                job.error = None;
            }
            Err(Interrupted::LeaseLost) => return Ok(()),
            Err(Interrupted::Stopping) => {
                job.due_at = Some(now);
            }
            Err(Interrupted::Failed(error)) if job.attempts >= self.config.max_attempts => {
                tracing::error!(target: "imix_messaging", import = %id, %error, "contact import failed for good");
                job.status = ImportStatus::Failed;
                job.due_at = None;
                job.finished_at = Some(now);
                job.error = Some(error);
            }
            Err(Interrupted::Failed(error)) => {
                let exponent = job.attempts.saturating_sub(1).min(10);
                let delay = self.config.first_backoff.saturating_mul(1u32 << exponent);
                tracing::warn!(target: "imix_messaging", import = %id, attempt = job.attempts, %error, retry_in = ?delay, "contact import interrupted; will resume");
                job.due_at = Some(now + chrono_of(delay));
                job.error = Some(error);
            }
        }
        match self.jobs.update(&job).await {
            Ok(saved) => {
                if saved.status.is_finished() {
                    tracing::info!(target: "imix_messaging", tenant = %saved.tenant_id, import = %id, created = saved.created, updated = saved.updated, rejected = saved.rejected, "contact import finished");
                    self.delete_file(&saved).await;
                }
                Ok(())
            }
            Err(CoreError::VersionConflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Imports the job's rows from where it stands; returns the job as far as it got.
    async fn process(
        &self,
        mut job: ContactImport,
        stopping: &AtomicBool,
    ) -> (ContactImport, std::result::Result<(), Interrupted>) {
        let data = match self.blobs.get(&job.blob_key).await {
            Ok(blob) => blob.data,
            Err(CoreError::NotFound { .. }) => {
                job.attempts = self.config.max_attempts;
                return (
                    job,
                    Err(Interrupted::Failed("the uploaded file is gone".into())),
                );
            }
            Err(e) => return (job, Err(Interrupted::Failed(e.to_string()))),
        };
        let checked = match check_file(&data) {
            Ok(c) => c,
            Err(e) => {
                job.attempts = self.config.max_attempts;
                return (job, Err(Interrupted::Failed(e.to_string())));
            }
        };
        let tenant = job.tenant_id;
        let limit = match self.contacts.limit(tenant, Counted::Contacts).await {
            Ok(l) => l,
            Err(e) => return (job, Err(Interrupted::Failed(e.to_string()))),
        };
        let now = imix_core::now();
        job.status = ImportStatus::Running;
        job.total_rows = Some(checked.rows);
        job.started_at.get_or_insert(now);
        job = match self.save(job).await {
            Ok(j) => j,
            Err((j, why)) => return (j, Err(why)),
        };
        let mut input = reader(&data);
        let mut lines = super::csv_file::LineNumbers::new(&data);
        let mut record = csv::StringRecord::new();
        // Rows up to the saved offset were imported (and counted) before: skip them.
        let mut skip = job.processed_rows;
        let mut since_save = 0u64;
        let mut last_save = tokio::time::Instant::now();
        let mut unreadable = None;
        while unreadable.is_none() {
            if stopping.load(Ordering::Relaxed) {
                return (job, Err(Interrupted::Stopping));
            }
            // The next chunk of rows, each with its line in the file.
            let mut chunk: Vec<(u64, csv::StringRecord)> = Vec::with_capacity(ROWS_AT_ONCE);
            while chunk.len() < ROWS_AT_ONCE {
                match input.read_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        unreadable = Some(format!("file: is not CSV: {e}"));
                        break;
                    }
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
                chunk.push((line, record.clone()));
            }
            if chunk.is_empty() {
                break;
            }
            let rows = match self
                .import_chunk(&job, limit, &checked.columns, &chunk)
                .await
            {
                Ok(rows) => rows,
                // Nothing of the chunk is counted: a retry redoes it, and rows it created
                // are recognised by their per-row contact id.
                Err(e) => return (job, Err(Interrupted::Failed(e.to_string()))),
            };
            for row in rows {
                match row.outcome {
                    RowOutcome::Created => job.created += 1,
                    RowOutcome::Updated => job.updated += 1,
                    RowOutcome::Rejected => {
                        job.rejected += 1;
                        if job.rejections.len() < MAX_REJECTIONS_KEPT {
                            job.rejections.push(ImportRejection {
                                row: row.row,
                                code: row.code.unwrap_or_default(),
                                field: row.field,
                                reason: row.reason.unwrap_or_default(),
                            });
                        } else {
                            job.rejections_truncated = true;
                        }
                    }
                }
                job.processed_rows += 1;
                since_save += 1;
            }
            if since_save >= self.config.save_every_rows
                || last_save.elapsed() >= self.config.save_every
            {
                job = match self.save(job).await {
                    Ok(j) => j,
                    Err((j, why)) => return (j, Err(why)),
                };
                since_save = 0;
                last_save = tokio::time::Instant::now();
            }
        }
        if let Some(why) = unreadable {
            job.attempts = self.config.max_attempts;
            return (job, Err(Interrupted::Failed(why)));
        }
        (job, Ok(()))
    }

    /// Imports one chunk of rows; their outcomes in file order, as importing them one by
    /// one would give. Rows run concurrently (each waits on its own writes) unless the
    /// tenant is near Max Contacts, where which row gets the last slot must follow the
    /// file; a row refused as taken while running concurrently may have lost to a row of
    /// the same chunk (a repeated number), which one-by-one would have updated it: it is
    /// done again after the others.
    async fn import_chunk(
        &self,
        job: &ContactImport,
        limit: Option<u64>,
        columns: &[super::csv_file::Column],
        chunk: &[(u64, csv::StringRecord)],
    ) -> Result<Vec<super::csv_file::ImportRow>> {
        let tenant = job.tenant_id;
        let room = match limit {
            None => true,
            Some(max) => {
                let stored = self.contacts.stored_contacts(tenant).await?;
                stored.saturating_add(2 * ROWS_AT_ONCE as u64) <= max
            }
        };
        if !room {
            let mut rows = Vec::with_capacity(chunk.len());
            for (line, record) in chunk {
                rows.push(self.import_one(job, limit, columns, *line, record).await?);
            }
            return Ok(rows);
        }
        let results = futures::future::join_all(
            chunk
                .iter()
                .map(|(line, record)| self.import_one(job, limit, columns, *line, record)),
        )
        .await;
        let mut rows = Vec::with_capacity(chunk.len());
        for ((line, record), result) in chunk.iter().zip(results) {
            let row = result?;
            let taken = row.outcome == RowOutcome::Rejected
                && row.code.as_deref().is_some_and(|c| c.ends_with("_taken"));
            rows.push(if taken {
                self.import_one(job, limit, columns, *line, record).await?
            } else {
                row
            });
        }
        Ok(rows)
    }

    /// Imports one row of `job`'s file.
    async fn import_one(
        &self,
        job: &ContactImport,
        limit: Option<u64>,
        columns: &[super::csv_file::Column],
        line: u64,
        record: &csv::StringRecord,
    ) -> Result<super::csv_file::ImportRow> {
        let tenant = job.tenant_id;
        self.contacts
            .import_row(
                Scope::Tenant(tenant),
                tenant,
                limit,
                columns,
                record,
                line,
                job.row_contact_id(line),
            )
            .await
    }

    /// Saves the job's progress and renews its lease.
    async fn save(
        &self,
        mut job: ContactImport,
    ) -> std::result::Result<ContactImport, (ContactImport, Interrupted)> {
        let now = imix_core::now();
        job.updated_at = now;
        job.lease_until = Some(now + chrono_of(self.config.lease));
        match self.jobs.update(&job).await {
            Ok(saved) => Ok(saved),
            Err(CoreError::VersionConflict { .. }) => Err((job, Interrupted::LeaseLost)),
            Err(e) => Err((job, Interrupted::Failed(e.to_string()))),
        }
    }

    async fn delete_file(&self, job: &ContactImport) {
        match self.blobs.delete(&job.blob_key).await {
            Ok(()) | Err(CoreError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(target: "imix_messaging", import = %job.id, error = %e, "could not delete an import's file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_gets_the_same_id_every_time_and_rows_stay_in_order() {
        let tenant = TenantId::new();
        let id = ContactImportId::new();
        let now = imix_core::now();
        let job = ContactImport {
            id,
            tenant_id: tenant,
            created_by: UserId::new(),
            file_name: None,
            blob_key: blob_key(tenant, id),
            status: ImportStatus::Queued,
            total_rows: None,
            processed_rows: 0,
            created: 0,
            updated: 0,
            rejected: 0,
            rejections: Vec::new(),
            rejections_truncated: false,
            error: None,
            attempts: 0,
            due_at: None,
            lease_until: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            version: 1,
        };
        assert_eq!(job.row_contact_id(2), job.row_contact_id(2));
        assert!(job.row_contact_id(2) < job.row_contact_id(3));
        assert!(job.row_contact_id(99_999) < job.row_contact_id(100_000));
        let uuid = job.row_contact_id(7).as_uuid();
        assert_eq!(uuid.get_version_num(), 7);
        let mut other = job.clone();
        other.id = ContactImportId::new();
        assert_ne!(job.row_contact_id(2), other.row_contact_id(2));
    }
}
