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
