//! `imix-server backup create | list | verify <file> | restore <file>`: backups from the
//! command line, on the store and data directory the configuration names (the same
//! opening as `serve` and `init-db`). Progress is a bar on a terminal (standard error) and
//! plain lines otherwise; results go to standard output.
//!
//! `restore` takes the data directory's lock exclusively
//! ([`crate::backups::DataDirLock`]): it refuses while a server runs on that directory (a
//! running server restores through the API instead), and a server does not start while it
//! runs.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use clap::Subcommand;
use imix_tenancy::quota::CountLimits;
use imix_update::backup::{self, BackupError, BackupKind, Backups, Progress};

use crate::{backups::DataDirLock, config::Config, storage::Storage, ServerError};

/// What `imix-server backup` does.
#[derive(Debug, Clone, Subcommand)]
pub enum BackupCommand {
    /// Make a backup of all data now (kind `manual`) into $IMIX_DATA_DIR/backups.
    Create,
    /// List the backups in $IMIX_DATA_DIR/backups, newest first.
    List,
    /// Check an archive as a restore would (every checksum, the manifest, the counts),
    /// changing nothing.
    Verify {
        /// The `.tar.gz` archive.
        file: PathBuf,
    },
    /// Replace all data with an archive's: verified first (nothing changes if it is
    /// damaged, foreign or too new), added to the list, a `pre-restore` backup of the
    /// current data taken, then restored. Refused while a server runs on this data
    /// directory. An archive of another version whose executable runs here has that
    /// executable put in place (the previous one kept) and is restored by it at the
    /// server's next start, on probation like an update.
    Restore {
        /// The `.tar.gz` archive (a file of $IMIX_DATA_DIR/backups or any other).
        file: PathBuf,
    },
}

/// Why a backup command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Opening the store, the lock, …
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The backup itself.
    #[error(transparent)]
    Backup(#[from] BackupError),
}

/// Shows a [`Progress`] until dropped: a bar (or spinner) redrawn on a terminal, a line
/// per stage otherwise.
struct Reporter {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    fn start(what: &'static str, progress: Arc<Progress>) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_prefix(what);
                bar
            });
            let mut last_stage = String::new();
            loop {
                let stage = progress.stage();
                let (records, blobs, bytes, total) = (
                    progress.records(),
                    progress.blobs(),
                    progress.bytes(),
                    progress.total(),
                );
                let msg = format!(
                    "{stage}: {records} records, {blobs} blobs, {}",
                    human_bytes(bytes)
                );
                match &bar {
                    Some(bar) => {
                        if total > 0 {
                            bar.set_length(total);
                            bar.set_position(records + blobs);
                        }
                        bar.set_message(msg);
                        bar.tick();
                    }
                    None if stage != last_stage && !stage.is_empty() => {
                        eprintln!("{what}: {stage}");
                        last_stage = stage;
                    }
                    None => {}
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Self { stop, task }
    }

    async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Opens the store as the server does (migrating it), with the backup service over it;
/// an interrupted restore is finished first, as at a server's start.
async fn open(config: &Config) -> Result<(Storage, Backups), CliError> {
    let storage = Storage::open(config).await?;
    storage.migrate().await?;
    let backups = crate::backups::service(config, &storage)?;
    let counts = CountLimits::new(storage.store.counters.clone());
    crate::backups::refresh_after_every_restore(&backups, &storage, &counts);
    if let Some(summary) = backups.resume_interrupted_restore().await? {
        eprintln!("an interrupted restore was finished first: {summary:?}");
    }
    Ok((storage, backups))
}

/// Runs `command`, writing results to `out`.
pub async fn run(
    config: &Config,
    command: BackupCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let io = |source| {
        CliError::from(BackupError::Io {
            action: "write the output",
            source,
        })
    };
    match command {
        BackupCommand::Create => {
            let (_storage, backups) = open(config).await?;
            let progress = Arc::new(Progress::default());
            let reporter = Reporter::start("backup", progress.clone());
            let made = backups.create(BackupKind::Manual, &progress).await;
            reporter.finish().await;
            let info = made?;
            let path = backups.store().archive_path(&info.id)?;
            writeln!(
                out,
                "created backup {} ({}, {} records) {}",
                info.id,
                human_bytes(info.size),
                info.counts.values().sum::<u64>(),
                path.display()
            )
            .map_err(io)?;
        }
        BackupCommand::List => {
            let store = backup::BackupStore::open(config.data_dir.join("backups"))?;
            let list = store.list()?;
            writeln!(
                out,
                "{:<36}  {:<20}  {:<11}  {:<9}  {:>10}  {:<7}  uploaded",
                "id", "created_at", "kind", "version", "size", "backend"
            )
            .map_err(io)?;
            for b in list {
                writeln!(
                    out,
                    "{:<36}  {:<20}  {:<11}  {:<9}  {:>10}  {:<7}  {}",
                    b.id,
                    b.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    b.kind.as_str(),
                    b.app_version,
                    human_bytes(b.size),
                    b.backend,
                    if b.uploaded { "yes" } else { "no" }
                )
                .map_err(io)?;
            }
        }
        BackupCommand::Verify { file } => {
            let manifest = verify_file(&file).await?;
            writeln!(
                out,
                "ok: backup {} ({}) made {} by version {} on {}: {} records and blobs, {} files checked",
                manifest.id,
                manifest.kind.as_str(),
                manifest.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                manifest.app_version,
                manifest.backend,
                manifest.total_records(),
                manifest.files.len()
            )
            .map_err(io)?;
        }
        BackupCommand::Restore { file } => {
            let _lock = DataDirLock::exclusive(config)?;
            // Checked before the store is opened: a foreign or damaged file changes nothing.
            let manifest = verify_file(&file).await?;
            let (storage, backups) = open(config).await?;
            let id = match backups.store().get(&manifest.id) {
                Ok(listed) => listed.id,
                Err(BackupError::NotFound(_)) => {
                    let f = std::fs::File::open(&file).map_err(|source| BackupError::Io {
                        action: "open the archive",
                        source,
                    })?;
                    backups.upload(f).await?.id
                }
                Err(e) => return Err(e.into()),
            };
            // A backup of another version whose executable runs here: its executable is put
            // in place as by the API, and the next start (of that version) restores it.
            if let crate::updates::RestorePlan::OtherVersion(release) =
                crate::updates::plan_restore(config, &backups, &id).await?
            {
                let version = release.version.clone();
                let updates = crate::updates::cli_updates(config, &storage, &backups)?;
                let exe = updates.service.config().executable.clone();
                let timeout = updates.service.config().health_timeout + release.extra_time;
                let mut data = crate::updates::ServerRestoreData::new(backups.clone(), &id);
                let status = updates
                    .service
                    .install_from_backup(release, &mut data)
                    .await
                    .map_err(ServerError::from)?;
                writeln!(
                    out,
                    "backup {id} was made by version {version}: its executable is now {} (the                      previous one is kept as {}). Start the server (systemctl start imix):                      version {version} restores the backup before it serves; if it is not                      healthy within {} s, the previous executable and the data as it was                      (backup {}) are put back. Follow GET /api/v1/system/update/status.",
                    exe.display(),
                    imix_update::update::swap::previous_path(&exe).display(),
                    timeout.as_secs(),
                    status.backup_id.as_deref().unwrap_or("(none)")
                )
                .map_err(io)?;
                return Ok(());
            }
            let progress = Arc::new(Progress::default());
            let reporter = Reporter::start("restore", progress.clone());
            let restored = backups.restore(&id, &progress).await;
            reporter.finish().await;
            let outcome = restored?;
            writeln!(
                out,
                "restored backup {id}: {} records and blobs; the data as it was before is backup {}",
                outcome.restored,
                outcome.pre_restore_backup.as_deref().unwrap_or("(none)")
            )
            .map_err(io)?;
        }
    }
    Ok(())
}

/// Verifies the archive at `path` with progress shown.
async fn verify_file(path: &Path) -> Result<backup::Manifest, CliError> {
    let progress = Arc::new(Progress::default());
    let reporter = Reporter::start("verify", progress.clone());
    let (p, file) = (progress.clone(), path.to_path_buf());
    let verified = tokio::task::spawn_blocking(move || {
        // Name the path and say what is wrong with it: "entity not found" for a directory or
        // /dev/zero told an operator nothing.
        let problem = match std::fs::metadata(&file) {
            Err(e) => Some(format!("{}: {e}", file.display())),
            Ok(m) if !m.is_file() => Some(format!("{} is not a regular file", file.display())),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            return Err(BackupError::Io {
                action: "open the archive",
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, problem),
            });
        }
        backup::verify(&file, Some(&p))
    })
    .await
    .map_err(|e| BackupError::Io {
        action: "verify the archive",
        source: std::io::Error::other(e),
    });
    reporter.finish().await;
    Ok(verified??)
}
