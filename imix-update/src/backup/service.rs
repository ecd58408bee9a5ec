//! The backup service: creates backups as background jobs with progress, verifies,
//! uploads, deletes and restores them, one at a time.
//!
//! A restore is made safe in this order: the archive is verified as a whole (and its schema
//! checked against the running one) before anything changes; a `pre-restore` backup of the
//! current data is taken; a marker file records that a restore is under way; the store is
//! wiped and the archive imported; the marker is removed. If the import fails, the
//! pre-restore backup is imported back. If the process dies in the middle, the marker is
//! found at the next start ([`Backups::resume_interrupted_restore`]) and the restore is
//! completed (or rolled back) before the server serves anything.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use futures::future::BoxFuture;
use imix_core::store::{transfer::Transfer, Store};
use serde::{Deserialize, Serialize};

use super::{
    archive::{import_archive, verify, write_backup, Progress, WriteOptions},
    BackupError, BackupInfo, BackupKind, BackupStore, Manifest, Result,
};

/// The marker file of a restore under way, in the backups directory.
const RESTORE_MARKER: &str = "restore-in-progress.json";

/// How backups are made and kept.
#[derive(Debug, Clone)]
pub struct BackupsConfig {
    /// Where archives live (`$IMIX_DATA_DIR/backups`).
    pub dir: PathBuf,
    /// Retention: how many backups of each kind are kept (`IMIX_BACKUP_KEEP`).
    pub keep: usize,
    /// The running version, recorded in every manifest.
    pub app_version: String,
    /// The executable to put in every archive (`std::env::current_exe()`); `None` leaves it
    /// out.
    pub executable: Option<PathBuf>,
}

/// Where a backup job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Being written.
    Running,
    /// Written and listed.
    Done,
    /// Stopped; `error` says why (nothing was listed).
    Failed,
}

/// A backup as the list shows it: a finished one, or a job running or failed.
#[derive(Debug, Clone)]
pub struct BackupJob {
    /// The backup's id.
    pub id: String,
    /// The version that made (or is making) it.
    pub app_version: String,
    /// When it was started (finished backups: their manifest's time).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Why it is made.
    pub kind: BackupKind,
    /// The archive's size (0 while running or failed).
    pub size: u64,
    /// Running, done or failed.
    pub status: JobStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Progress of a running job.
    pub progress: Option<Arc<Progress>>,
    /// The finished backup's details.
    pub info: Option<BackupInfo>,
}

impl From<BackupInfo> for BackupJob {
    fn from(info: BackupInfo) -> Self {
        Self {
            id: info.id.clone(),
            app_version: info.app_version.clone(),
            created_at: info.created_at,
            kind: info.kind,
            size: info.size,
            status: JobStatus::Done,
            error: None,
            progress: None,
            info: Some(info),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// The manifest of the restored backup.
    pub manifest: Manifest,
    /// Records and blobs stored.
    pub restored: u64,
    /// The backup of the data as it was before, taken first.
    pub pre_restore_backup: Option<String>,
}

/// What [`Backups::resume_interrupted_restore`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreSummary {
    /// The interrupted restore of this backup was completed.
    Completed(String),
    /// It could not be completed; the pre-restore backup (this id) was put back.
    RolledBack(String),
}

/// The highest numbered step of each capability among `steps` (`capability/NNNN_name`);
/// a step without a number counts as 0.
fn schema_levels(steps: &[String]) -> BTreeMap<String, u32> {
    let mut levels: BTreeMap<String, u32> = BTreeMap::new();
    for step in steps {
        let (cap, name) = step.split_once('/').unwrap_or((step.as_str(), ""));
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        let level = digits.parse().unwrap_or(0);
        let slot = levels.entry(cap.to_owned()).or_default();
        *slot = (*slot).max(level);
    }
    levels
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    backup: String,
    pre_restore: Option<String>,
}

/// Runs after every restore, with the store holding the restored data: recomputes what the
/// store keeps beside the records (say, count-limit counters).
pub type AfterRestore = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The background workers that write to the store (imports, webhook ingest, media, mail):
/// a restore pauses them before it changes anything and resumes them when it is over, so
/// none writes into the store while it is emptied and refilled.
pub trait BackgroundWorkers: Send + Sync {
    /// Stops them and completes once none is working (a job in hand saved and given back).
    fn pause(&self) -> BoxFuture<'static, ()>;
    /// Starts them again.
    fn resume(&self) -> BoxFuture<'static, ()>;
}

/// The backup service. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    transfer: Transfer,
    config: BackupsConfig,
    backups: BackupStore,
    /// One backup, upload, delete or restore at a time.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// Jobs running or failed since start, by id (finished ones are read from the directory).
    jobs: Mutex<BTreeMap<String, BackupJob>>,
    restoring: AtomicBool,
    /// Held from the moment a restore was left for the next start
    /// ([`PendingRestore::schedule`]) until this process ends: no backup or restore may
    /// run (and remove the marker) while the server restarts.
    held: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
    after_restore: Mutex<Option<AfterRestore>>,
    workers: Mutex<Option<Arc<dyn BackgroundWorkers>>>,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

impl Backups {
    /// The service over `store`, whose records `transfer` exports and imports.
    pub fn new(store: Store, transfer: Transfer, config: BackupsConfig) -> Result<Self> {
        let backups = BackupStore::open(&config.dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                transfer,
                config,
                backups,
                busy: Arc::new(tokio::sync::Mutex::new(())),
                jobs: Mutex::new(BTreeMap::new()),
                restoring: AtomicBool::new(false),
                held: Mutex::new(None),
                after_restore: Mutex::new(None),
                workers: Mutex::new(None),
            }),
        })
    }

    /// Sets what runs after every restore.
    pub fn set_after_restore(&self, hook: AfterRestore) {
        if let Ok(mut slot) = self.inner.after_restore.lock() {
            *slot = Some(hook);
        }
    }

    /// Sets the background workers every restore pauses while it runs.
    pub fn set_workers(&self, workers: Arc<dyn BackgroundWorkers>) {
        if let Ok(mut slot) = self.inner.workers.lock() {
            *slot = Some(workers);
        }
    }

    fn workers(&self) -> Option<Arc<dyn BackgroundWorkers>> {
        self.inner.workers.lock().ok().and_then(|w| w.clone())
    }

    /// The archives' directory.
    pub fn store(&self) -> &BackupStore {
        &self.inner.backups
    }

    /// Whether a restore is replacing the data right now (the server answers 503 then).
    pub fn is_restoring(&self) -> bool {
        self.inner.restoring.load(Ordering::SeqCst)
    }

    fn lock(&self) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        self.inner
            .busy
            .clone()
            .try_lock_owned()
            .map_err(|_| BackupError::Busy)
    }

    /// Every backup, newest first: jobs running or failed since start, then the archives.
    pub fn list(&self) -> Result<Vec<BackupJob>> {
        let mut out: Vec<BackupJob> = self
            .inner
            .jobs
            .lock()
            .map(|j| j.values().cloned().collect())
            .unwrap_or_default();
        out.extend(self.inner.backups.list()?.into_iter().map(BackupJob::from));
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// One backup (or job).
    pub fn get(&self, id: &str) -> Result<BackupJob> {
        if let Some(job) = self.inner.jobs.lock().ok().and_then(|j| j.get(id).cloned()) {
            return Ok(job);
        }
        Ok(self.inner.backups.get(id)?.into())
    }

    /// Starts a backup of `kind` in the background and answers at once with the running
    /// job; [`BackupError::Busy`] if another backup or restore runs.
    pub fn start(&self, kind: BackupKind) -> Result<BackupJob> {
        let guard = self.lock()?;
        let id = uuid::Uuid::now_v7().to_string();
        let progress = Arc::new(Progress::default());
        let job = BackupJob {
            id: id.clone(),
            app_version: self.inner.config.app_version.clone(),
            created_at: imix_core::now(),
            kind,
            size: 0,
            status: JobStatus::Running,
            error: None,
            progress: Some(progress.clone()),
            info: None,
        };
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.insert(id.clone(), job.clone());
        }
        let this = self.clone();
        tokio::spawn(async move {
            let made = this.create_locked(&id, kind, &progress).await;
            if let Ok(mut jobs) = this.inner.jobs.lock() {
                match &made {
                    Ok(_) => {
                        jobs.remove(&id);
                    }
                    Err(e) => {
                        tracing::error!(backup = %id, error = %e, "backup failed");
                        if let Some(job) = jobs.get_mut(&id) {
                            job.status = JobStatus::Failed;
                            job.error = Some(e.to_string());
                            job.progress = None;
                        }
                    }
                }
            }
            drop(guard);
        });
        Ok(job)
    }

    /// Makes a backup of `kind` now and waits for it (CLI, pre-update, schedule);
    /// [`BackupError::Busy`] if another backup or restore runs.
    pub async fn create(&self, kind: BackupKind, progress: &Progress) -> Result<BackupInfo> {
        let _guard = self.lock()?;
        let id = uuid::Uuid::now_v7().to_string();
        self.create_locked(&id, kind, progress).await
    }

    /// Writes, lists and prunes one backup; the caller holds the lock.
    async fn create_locked(
        &self,
        id: &str,
        kind: BackupKind,
        progress: &Progress,
    ) -> Result<BackupInfo> {
        let temp = self.inner.backups.temp_file()?;
        let out = temp
            .as_file()
            .try_clone()
            .map_err(BackupError::io("create the backup file"))?;
        let options = WriteOptions {
            id: id.to_owned(),
            kind,
            app_version: self.inner.config.app_version.clone(),
            executable: self.inner.config.executable.clone(),
        };
        let manifest = write_backup(
            &self.inner.store,
            &self.inner.transfer,
            options,
            out,
            progress,
        )
        .await?;
        let backups = self.inner.backups.clone();
        let keep = self.inner.config.keep;
        tokio::task::spawn_blocking(move || {
            let info = backups.commit(temp, &manifest, false)?;
            let pruned = backups.prune(kind, keep)?;
            if !pruned.is_empty() {
                tracing::info!(
                    kind = kind.as_str(),
                    ?pruned,
                    "old backups removed (retention)"
                );
            }
            tracing::info!(backup = %info.id, kind = kind.as_str(), size = info.size,
                records = manifest.total_records(), "backup written");
            Ok(info)
        })
        .await
        .map_err(|e| BackupError::io("store the backup")(std::io::Error::other(e)))?
    }

    /// Verifies backup `id` as a restore would (every checksum, the manifest, the counts),
    /// changing nothing.
    pub async fn verify(&self, id: &str) -> Result<Manifest> {
        let path = self.inner.backups.archive_path(id)?;
        tokio::task::spawn_blocking(move || verify(&path, None))
            .await
            .map_err(|e| BackupError::io("verify the backup")(std::io::Error::other(e)))?
    }

    /// Adds the archive in `file` (an upload) to the list after verifying it as a whole;
    /// a damaged or foreign file is refused and nothing is listed.
    pub async fn upload(&self, mut file: std::fs::File) -> Result<BackupInfo> {
        let _guard = self.lock()?;
        let backups = self.inner.backups.clone();
        tokio::task::spawn_blocking(move || {
            let mut temp = backups.temp_file()?;
            std::io::copy(&mut file, temp.as_file_mut())
                .map_err(BackupError::io("store the upload"))?;
            let manifest = verify(temp.path(), None)?;
            backups.commit(temp, &manifest, true)
        })
        .await
        .map_err(|e| BackupError::io("store the upload")(std::io::Error::other(e)))?
    }

    /// Deletes backup `id`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let _guard = self.lock()?;
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            if jobs.get(id).is_some_and(|j| j.status == JobStatus::Failed) {
                jobs.remove(id);
                return Ok(());
            }
        }
        let backups = self.inner.backups.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || backups.delete(&id))
            .await
            .map_err(|e| BackupError::io("delete the backup")(std::io::Error::other(e)))?
    }

    /// Checks that the running schema can take the archive's data
    /// ([`BackupError::Unsupported`] otherwise, naming the steps it is missing). Steps are compared by
    /// capability and number (`messaging/0003_events` is step 3 of `messaging`), not by
    /// name, since a step's name may differ between backends (`core/0001_settings` on
    /// MongoDB, `core/0001_settings_blobs` on SQLite): an archive whose capability is at a
    /// step the running version does not have was taken by a newer version and is refused;
    /// an older one is read into the current record shapes.
    pub async fn check_schema(&self, manifest: &Manifest) -> Result<()> {
        let running = schema_levels(&self.inner.store.backend.applied_migrations().await?);
        let newer: Vec<String> = schema_levels(&manifest.schema)
            .into_iter()
            .filter(|(cap, level)| running.get(cap).is_none_or(|have| level > have))
            .map(|(cap, level)| format!("{cap} step {level}"))
            .collect();
        if newer.is_empty() {
            Ok(())
        } else {
            Err(BackupError::Unsupported(format!(
                "it was taken by a newer version (version {}, schema beyond this one: {}); \
                 restore it with that version or newer",
                manifest.app_version,
                newer.join(", ")
            )))
        }
    }

    /// Restores backup `id`, replacing all data: verifies it first (nothing changes if it
    /// is damaged, foreign or too new), takes a pre-restore backup, then wipes the store
    /// and imports the archive. If the import fails the pre-restore backup is put back.
    ///
    /// The background workers ([`Backups::set_workers`]) are paused once the archive is
    /// verified, before the pre-restore backup, and resumed when the restore is over
    /// (either way): a contact import in progress is saved and given back rather than
    /// writing rows into the emptied store.
    pub async fn restore(&self, id: &str, progress: &Progress) -> Result<RestoreOutcome> {
        let _guard = self.lock()?;
        progress.set_stage("verifying");
        let manifest = self.verify(id).await?;
        self.check_schema(&manifest).await?;
        let workers = self.workers();
        if let Some(workers) = &workers {
            progress.set_stage("pausing background work");
            workers.pause().await;
        }
        let outcome = self.restore_verified(id, manifest, progress).await;
        if let Some(workers) = &workers {
            workers.resume().await;
        }
        outcome
    }

    /// [`Backups::restore`] once the archive is verified and the workers paused.
    async fn restore_verified(
        &self,
        id: &str,
        manifest: Manifest,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        progress.set_stage("backing up the current data");
        let pre_id = uuid::Uuid::now_v7().to_string();
        let pre = self
            .create_locked(&pre_id, BackupKind::PreRestore, &Progress::default())
            .await?;
        self.write_marker(&Marker {
            backup: id.to_owned(),
            pre_restore: Some(pre.id.clone()),
        })?;
        let restored = match self.replace_with(id, &manifest, progress).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(backup = id, error = %e, "restore failed; putting the previous data back");
                let rolled = self.roll_back(&pre.id).await;
                self.finish_restore().await;
                return Err(match rolled {
                    Ok(()) => BackupError::Corrupt(format!(
                        "{e}; the data as it was before the restore was put back"
                    )),
                    Err(again) => BackupError::Corrupt(format!(
                        "{e}; putting the previous data back failed too ({again}): restore \
                         backup {} by hand",
                        pre.id
                    )),
                });
            }
        };
        self.finish_restore().await;
        tracing::info!(backup = id, restored, pre_restore = %pre.id, "backup restored");
        Ok(RestoreOutcome {
            manifest,
            restored,
            pre_restore_backup: Some(pre.id),
        })
    }

    /// Wipes the store and imports the verified archive `id`.
    async fn replace_with(
        &self,
        id: &str,
        manifest: &Manifest,
        progress: &Progress,
    ) -> Result<u64> {
        let path = self.inner.backups.archive_path(id)?;
        self.inner.restoring.store(true, Ordering::SeqCst);
        progress.set_stage("clearing the store");
        imix_core::store::reset::wipe(&self.inner.store).await?;
        import_archive(
            &self.inner.store,
            &self.inner.transfer,
            &path,
            manifest,
            progress,
        )
        .await
    }

    async fn roll_back(&self, pre_id: &str) -> Result<()> {
        let manifest = self.verify(pre_id).await?;
        self.replace_with(pre_id, &manifest, &Progress::default())
            .await
            .map(|_| ())
    }

    /// Ends a restore (either way): the hook runs, the marker goes, requests are served.
    async fn finish_restore(&self) {
        let hook = self.inner.after_restore.lock().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            hook().await;
        }
        let marker = self.inner.backups.dir().join(RESTORE_MARKER);
        if let Err(e) = std::fs::remove_file(&marker) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(error = %e, "cannot remove the restore marker");
            }
        }
        self.inner.restoring.store(false, Ordering::SeqCst);
    }

    fn write_marker(&self, marker: &Marker) -> Result<()> {
        let mut temp = self.inner.backups.temp_file()?;
        serde_json::to_writer(temp.as_file_mut(), marker)
            .map_err(|e| BackupError::io("write the restore marker")(e.into()))?;
        temp.as_file()
            .sync_all()
            .map_err(BackupError::io("write the restore marker"))?;
        temp.persist(self.inner.backups.dir().join(RESTORE_MARKER))
            .map_err(|e| BackupError::io("write the restore marker")(e.error))?;
        std::fs::File::open(self.inner.backups.dir())
            .and_then(|d| d.sync_all())
            .map_err(BackupError::io("write the restore marker"))
    }

    /// The first half of a restore that the archive's own version completes (a backup of
    /// another version, whose executable is put in place): takes the lock (kept until
    /// [`PendingRestore::schedule`] or drop) and a `pre-restore` backup of the current
    /// data. Nothing else changes; the caller then writes its own markers, calls
    /// [`PendingRestore::schedule`] and replaces the executable.
    pub async fn prepare_restore_at_start(&self, id: &str) -> Result<PendingRestore> {
        let guard = self.lock()?;
        // The archive must exist (and stay: retention never removes what is being restored
        // because no backup runs while the lock is held).
        self.inner.backups.archive_path(id)?;
        let pre_id = uuid::Uuid::now_v7().to_string();
        let pre = self
            .create_locked(&pre_id, BackupKind::PreRestore, &Progress::default())
            .await?;
        Ok(PendingRestore {
            backups: self.clone(),
            guard: Some(guard),
            backup: id.to_owned(),
            pre_restore: pre,
        })
    }

    /// At start, before serving: if a restore was interrupted (the process died while it
    /// replaced the data), completes it, or, if that fails, puts the pre-restore backup
    /// back. `Ok(None)` when no restore was interrupted; an error means the store may be
    /// half restored and must not be served.
    pub async fn resume_interrupted_restore(&self) -> Result<Option<RestoreSummary>> {
        let path = self.inner.backups.dir().join(RESTORE_MARKER);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackupError::io("read the restore marker")(e)),
        };
        let marker: Marker = serde_json::from_slice(&text)
            .map_err(|e| BackupError::Corrupt(format!("the restore marker is damaged ({e})")))?;
        let _guard = self.lock()?;
        tracing::warn!(backup = %marker.backup, "a restore was interrupted; completing it");
        let completed = match self.verify(&marker.backup).await {
            Ok(manifest) => self
                .replace_with(&marker.backup, &manifest, &Progress::default())
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        let summary = match (completed, &marker.pre_restore) {
            (Ok(()), _) => RestoreSummary::Completed(marker.backup.clone()),
            (Err(e), Some(pre)) => {
                tracing::error!(error = %e, "the interrupted restore cannot be completed; \
                    putting the pre-restore backup back");
                self.roll_back(pre).await?;
                RestoreSummary::RolledBack(pre.clone())
            }
            (Err(e), None) => return Err(e),
        };
        self.finish_restore().await;
        Ok(Some(summary))
    }
}

/// A restore left for the next start: the pre-restore backup is made and the lock held
/// (see [`Backups::prepare_restore_at_start`]).
#[derive(Debug)]
pub struct PendingRestore {
    backups: Backups,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    backup: String,
    pre_restore: BackupInfo,
}

impl PendingRestore {
    /// The backup to restore.
    pub fn backup_id(&self) -> &str {
        &self.backup
    }

    /// The backup of the data as it was, made first.
    pub fn pre_restore(&self) -> &BackupInfo {
        &self.pre_restore
    }

    /// Writes the durable marker that has the next start restore the backup before it
    /// serves anything: the same marker an interrupted restore leaves, so any version
    /// that detects interrupted restores honours it. It names no pre-restore backup: the
    /// version that starts must not put back data of another version; if it cannot
    /// complete the restore it refuses to serve, and the update's probation puts the
    /// previous executable and the pre-restore data back. From here on no backup or
    /// restore runs in this process (the lock is held until it ends).
    pub fn schedule(&mut self) -> Result<()> {
        self.backups.write_marker(&Marker {
            backup: self.backup.clone(),
            pre_restore: None,
        })?;
        if let (Ok(mut held), Some(guard)) = (self.backups.inner.held.lock(), self.guard.take()) {
            *held = Some(guard);
        }
        Ok(())
    }

    /// Undoes [`PendingRestore::schedule`] (the executable could not be replaced): the
    /// marker goes and backups may run again.
    pub fn cancel(&mut self) -> Result<()> {
        drop_restore_at_start(self.backups.inner.backups.dir())?;
        if let Ok(mut held) = self.backups.inner.held.lock() {
            held.take();
        }
        self.guard.take();
        Ok(())
    }
}

/// The backup a restore left for the next start (or interrupted) names, if any, in the
/// backups directory `dir`.
pub fn restore_at_start(dir: &std::path::Path) -> Result<Option<String>> {
    match std::fs::read(dir.join(RESTORE_MARKER)) {
        Ok(text) => serde_json::from_slice::<Marker>(&text)
            .map(|m| Some(m.backup))
            .map_err(|e| BackupError::Corrupt(format!("the restore marker is damaged ({e})"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("read the restore marker")(e)),
    }
}

/// Removes the restore marker of the backups directory `dir` (durably), answering the
/// backup it named: for a start that puts other data back anyway (a rolled-back update or
/// cross-version restore), completing the restore first would be wasted, or wrong.
pub fn drop_restore_at_start(dir: &std::path::Path) -> Result<Option<String>> {
    let named = match restore_at_start(dir) {
        Ok(named) => named,
        // A damaged marker is dropped all the same.
        Err(BackupError::Corrupt(_)) => Some(String::new()),
        Err(e) => return Err(e),
    };
    match std::fs::remove_file(dir.join(RESTORE_MARKER)) {
        Ok(()) => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(BackupError::io("remove the restore marker"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackupError::io("remove the restore marker")(e)),
    }
    Ok(named)
}
