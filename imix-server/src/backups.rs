//! Backups wired to the server: the [`Backups`] service over every capability's records
//! (`Storage::transfer`), its archives in `$IMIX_DATA_DIR/backups`, and what a restore must
//! recompute besides the records: the count-limit counters (templates, agents, contacts,
//! contact groups per tenant), which are operational state and not in a backup.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use imix_core::id::TenantId;
use imix_tenancy::quota::{CountKind, CountLimits};
use imix_update::backup::{Backups, BackupsConfig};

use crate::{config::Config, storage::Storage, ServerError};

/// The backup service for `storage`, configured from `config`.
pub fn service(config: &Config, storage: &Storage) -> Result<Backups, ServerError> {
    let executable = if config.backup_include_executable {
        match std::env::current_exe() {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::warn!(error = %e, "the running executable cannot be found; backups will not include it");
                None
            }
        }
    } else {
        None
    };
    Backups::new(
        storage.store.clone(),
        storage.transfer(),
        BackupsConfig {
            dir: config.data_dir.join("backups"),
            keep: config.backup_keep,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            executable,
        },
    )
    .map_err(ServerError::from)
}

/// Sets every tenant's count-limit counters from the records that exist (after a restore,
/// the counters, which are not in backups, start from nothing).
pub async fn reconcile_counts(storage: &Storage, counts: &CountLimits) {
    let transfer = storage.transfer();
    let wanted = ["tenant", "user", "template", "contact", "contact_group"];
    let skip: Vec<&str> = transfer.kinds().filter(|k| !wanted.contains(k)).collect();
    let mut per_tenant: BTreeMap<TenantId, [u64; 4]> = BTreeMap::new();
    let mut records = transfer.export_except(&skip);
    while let Some(record) = records.next().await {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot recount tenants' records after a restore");
                return;
            }
        };
        let field = |name: &str| record.fields.get(name).and_then(|v| v.as_str());
        let tenant = if record.kind == "tenant" {
            field("id")
        } else {
            field("tenant_id")
        };
        let Some(tenant) = tenant.and_then(|t| t.parse::<TenantId>().ok()) else {
            continue;
        };
        let slot = per_tenant.entry(tenant).or_default();
        match record.kind.as_str() {
            "template" => slot[0] += 1,
            "user" if field("status") != Some("deactivated") => slot[1] += 1,
            "contact" => slot[2] += 1,
            "contact_group" => slot[3] += 1,
            _ => {}
        }
    }
    for (tenant, n) in per_tenant {
        for (kind, actual) in [
            CountKind::Templates,
            CountKind::Agents,
            CountKind::Contacts,
            CountKind::ContactGroups,
        ]
        .into_iter()
        .zip(n)
        {
            if let Err(e) = counts.reconcile(tenant, kind, actual).await {
                tracing::error!(error = %e, %tenant, kind = %kind, "cannot reset a count after a restore");
            }
        }
    }
}

/// What the store keeps beside the records, rebuilt after a restore: every capability's
/// migrations run again (their idempotent steps rebuild derived data, such as the search
/// index, whose "done" records the wipe removed) and the count-limit counters are reset
/// from the records.
pub async fn refresh_after_restore(storage: &Storage, counts: &CountLimits) {
    if let Err(e) = storage.migrate().await {
        tracing::error!(error = %e, "cannot rebuild derived data after a restore");
    }
    reconcile_counts(storage, counts).await;
}

/// Runs [`refresh_after_restore`] after every restore made through `backups`.
pub fn refresh_after_every_restore(backups: &Backups, storage: &Storage, counts: &CountLimits) {
    let (storage, counts) = (storage.clone(), counts.clone());
    backups.set_after_restore(Arc::new(move || {
        let (storage, counts) = (storage.clone(), counts.clone());
        Box::pin(async move { refresh_after_restore(&storage, &counts).await })
    }));
}

/// The lock file in `$IMIX_DATA_DIR` that a running server holds (shared) and a restore
/// from the command line takes (exclusive), so that the command line never replaces the
/// data under a server, and a server does not start in the middle of such a restore.
pub const DATA_DIR_LOCK_FILE: &str = "imix-server.lock";

/// An advisory lock (`flock`) on [`DATA_DIR_LOCK_FILE`], released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn open(config: &Config) -> Result<(std::fs::File, std::path::PathBuf), ServerError> {
        let path = config.data_dir.join(DATA_DIR_LOCK_FILE);
        imix_core::store::private_files::create_dir_all(&config.data_dir).map_err(|source| {
            ServerError::Io {
                context: format!("cannot create IMIX_DATA_DIR {}", config.data_dir.display()),
                source,
            }
        })?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ServerError::Io {
                context: format!("cannot open the lock file {}", path.display()),
                source,
            })?;
        Ok((file, path))
    }

    /// The server's lock: shared (several servers may use one data directory), refused
    /// while a restore from the command line holds it exclusively.
    pub fn shared(config: &Config) -> Result<Self, ServerError> {
        let (file, path) = Self::open(config)?;
        match fs4::fs_std::FileExt::try_lock_shared(&file) {
            Ok(true) => Ok(Self { _file: file }),
            Ok(false) => Err(ServerError::Io {
                context: format!(
                    "a restore from the command line is running on IMIX_DATA_DIR {}; start \
                     the server once it has finished",
                    config.data_dir.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
            }),
            Err(source) => Err(ServerError::Io {
                context: format!("cannot lock {}", path.display()),
                source,
            }),
        }
    }

    /// The command line's lock for a restore: exclusive, refused while a server runs on
    /// this data directory.
    pub fn exclusive(config: &Config) -> Result<Self, ServerError> {
        let (file, path) = Self::open(config)?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(Self { _file: file }),
            Ok(false) => Err(ServerError::Io {
                context: format!(
                    "a server is running on IMIX_DATA_DIR {}: stop it before restoring from \
                     the command line, or restore through the API",
                    config.data_dir.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
            }),
            Err(source) => Err(ServerError::Io {
                context: format!("cannot lock {}", path.display()),
                source,
            }),
        }
    }
}
