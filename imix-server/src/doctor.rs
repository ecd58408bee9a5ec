//! `imix-server doctor`: the admin guide's Troubleshooting section as a command. Each check
//! prints one line, `ok` or `FAIL`, with a hint for failures; the exit code is non-zero if any
//! check failed.

use std::{io::Write, path::Path};

use crate::storage::Storage;

use crate::{config::Config, probe};

/// The least free space, in bytes, on the data directory's file system before doctor fails.
pub const MIN_FREE_BYTES: u64 = 512 * 1024 * 1024;

/// Blobs younger than this are never reported as orphaned: an upload stores its bytes just
/// before the record that lists them.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// Short name, e.g. `store`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    pub hint: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
            hint: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    /// The line doctor prints.
    pub fn line(&self) -> String {
        let status = if self.ok { "ok  " } else { "FAIL" };
        match &self.hint {
            Some(hint) => format!("{status} {:<10} {} (hint: {hint})", self.name, self.detail),
            None => format!("{status} {:<10} {}", self.name, self.detail),
        }
    }
}

/// Runs every check.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut checks = vec![
        writable("data dir", &config.data_dir, "IMIX_DATA_DIR"),
        writable("log dir", &config.log_dir, "IMIX_LOG_DIR"),
        disk_space(&config.data_dir),
    ];
    let (store_check, store) = store(config).await;
    checks.push(store_check);
    if let Some(store) = store {
        let grace = chrono::Duration::from_std(ORPHAN_GRACE).unwrap_or_default();
        checks.push(orphaned_blobs(&store, imix_core::now() - grace).await);
    }
    checks.push(redis(config).await);
    checks
}

/// The `blobs` check: every stored tenant file (logo, document) is listed by its tenant.
/// Blobs written at or after `created_before` are left out (uploads in flight).
pub async fn orphaned_blobs(storage: &Storage, created_before: imix_core::Timestamp) -> Check {
    let store = &storage.store;
    const HINT: &str = "uploads that failed before their record was written left these \
        bytes; nothing lists or serves them, they only take space: after a backup, delete \
        them (the keys are listed above) or restore a consistent backup";
    match store.admin.is_empty().await {
        Ok(true) => return Check::pass("blobs", "no orphaned blobs (the store is empty)"),
        Ok(false) => {}
        // A data directory no server has started on yet has no tables: nothing is stored.
        Err(e) if e.to_string().contains("no such table") => {
            return Check::pass("blobs", "no orphaned blobs (the schema is not created yet)")
        }
        Err(e) => {
            return Check::fail(
                "blobs",
                format!("cannot read the store: {}", probe::one_line(&e.to_string())),
                "see the store check above",
            )
        }
    }
    // Bytes no blob's metadata points to (a write that died half-way) come first: they are
    // invisible to everything else.
    match store.blobs.stray_files(created_before).await {
        Ok(strays) if strays.is_empty() => {}
        Ok(strays) => {
            let shown: Vec<&str> = strays.iter().take(5).map(String::as_str).collect();
            let more = if strays.len() > shown.len() {
                format!(" and {} more", strays.len() - shown.len())
            } else {
                String::new()
            };
            return Check::fail(
                "blobs",
                format!(
                    "{} stored file(s) no blob record points to: {}{more}",
                    strays.len(),
                    shown.join(", ")
                ),
                "a write stopped between storing its bytes and recording them; nothing \
                 serves these files: after a backup, delete them (SQLite: under \
                 IMIX_DATA_DIR/blobs; MongoDB: the GridFS files with these ids)",
            );
        }
        Err(e) => {
            return Check::fail(
                "blobs",
                format!(
                    "cannot list stored files: {}",
                    probe::one_line(&e.to_string())
                ),
                "see the store check above",
            )
        }
    }
    match imix_tenancy::storage::orphaned_blobs(
        storage.tenancy.tenants.as_ref(),
        store.blobs.as_ref(),
        created_before,
    )
    .await
    {
        Ok(orphans) if orphans.is_empty() => Check::pass("blobs", "no orphaned blobs"),
        Ok(orphans) => {
            let bytes: u64 = orphans.iter().map(|m| m.size).sum();
            let shown: Vec<&str> = orphans.iter().take(5).map(|m| m.key.as_str()).collect();
            let more = if orphans.len() > shown.len() {
                format!(" and {} more", orphans.len() - shown.len())
            } else {
                String::new()
            };
            Check::fail(
                "blobs",
                format!(
                    "{} orphaned blob(s) ({}) no tenant references: {}{more}",
                    orphans.len(),
                    human_bytes(bytes),
                    shown.join(", ")
                ),
                HINT,
            )
        }
        Err(e) => Check::fail(
            "blobs",
            format!("cannot list blobs: {}", probe::one_line(&e.to_string())),
            "see the store check above",
        ),
    }
}

/// Runs every check, prints one line each to `out`, and says whether all passed.
pub async fn run_and_print(config: &Config, out: &mut impl Write) -> bool {
    let checks = run(config).await;
    for check in &checks {
        let _ = writeln!(out, "{}", check.line());
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let _ = if failed == 0 {
        writeln!(out, "all {} checks passed", checks.len())
    } else {
        writeln!(out, "{failed} of {} checks failed", checks.len())
    };
    failed == 0
}

fn writable(name: &'static str, dir: &Path, variable: &str) -> Check {
    let attempt = || -> std::io::Result<()> {
        imix_core::store::private_files::create_dir_all(dir)?;
        let probe = tempfile::NamedTempFile::new_in(dir)?;
        probe.as_file().write_all(b"imix doctor")?;
        probe.as_file().sync_all()?;
        Ok(())
    };
    match attempt() {
        Ok(()) => Check::pass(name, format!("{} is writable", dir.display())),
        Err(e) => Check::fail(
            name,
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "create it and give the server's user write access, or point {variable} elsewhere"
            ),
        ),
    }
}

fn disk_space(dir: &Path) -> Check {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    match fs4::available_space(existing) {
        Ok(free) if free >= MIN_FREE_BYTES => {
            Check::pass("disk", format!("{} free", human_bytes(free)))
        }
        Ok(free) => Check::fail(
            "disk",
            format!(
                "only {} free on the data directory's file system",
                human_bytes(free)
            ),
            format!(
                "free space or move IMIX_DATA_DIR; at least {} is needed",
                human_bytes(MIN_FREE_BYTES)
            ),
        ),
        Err(e) => Check::fail(
            "disk",
            format!("cannot read free space: {e}"),
            "check that IMIX_DATA_DIR exists",
        ),
    }
}

/// The `store` check, and the opened store for the checks that read it.
async fn store(config: &Config) -> (Check, Option<Storage>) {
    let backend = config.store_backend();
    let hint = match backend {
        "mongodb" => {
            "check MONGODB_URI and that mongod runs: mongosh --eval 'db.runCommand({ ping: 1 })'"
        }
        _ => "check that IMIX_DATA_DIR is writable and not on a network file system",
    };
    let store = match Storage::open(config).await {
        Ok(storage) => storage,
        Err(e) => {
            let check = Check::fail(
                "store",
                format!(
                    "{backend}: cannot open: {}",
                    probe::one_line(&e.to_string())
                ),
                hint,
            );
            return (check, None);
        }
    };
    let result = probe::store(&store.store).await;
    match result.error {
        None => (
            Check::pass(
                "store",
                format!(
                    "{backend} ping {:.3} ms",
                    result.latency_ms().unwrap_or_default()
                ),
            ),
            Some(store),
        ),
        Some(e) => (
            Check::fail("store", format!("{backend}: ping failed: {e}"), hint),
            None,
        ),
    }
}

async fn redis(config: &Config) -> Check {
    use secrecy::ExposeSecret;
    let Some(url) = &config.redis_url else {
        return Check::pass(
            "redis",
            "not configured (REDIS_URL unset): in-process counters and queues",
        );
    };
    let hint = "check REDIS_URL and that redis-server runs: redis-cli -u \"$REDIS_URL\" ping";
    let client = match redis::Client::open(url.expose_secret()) {
        Ok(c) => c,
        Err(e) => return Check::fail("redis", format!("bad REDIS_URL: {e}"), hint),
    };
    let result = probe::redis(&client).await;
    match result.error {
        None => Check::pass(
            "redis",
            format!("ping {:.3} ms", result.latency_ms().unwrap_or_default()),
        ),
        Some(e) => Check::fail("redis", format!("ping failed: {e}"), hint),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

    use bytes::Bytes;
    use imix_tenancy::Tenant;

    use super::*;

    async fn orphan_check_reports_strays_only(store: &Storage) {
        let later = imix_core::now() + chrono::Duration::seconds(1);
        let empty = orphaned_blobs(store, later).await;
        assert!(empty.ok, "{}", empty.line());

        let mut t = Tenant::new("Doctor");
        store.tenancy.tenants.insert(&t).await.unwrap();
        let logo = format!("tenants/{}/logos/current", t.id);
        let stray = format!("tenants/{}/documents/stray", t.id);
        for key in [&logo, &stray] {
            store
                .store
                .blobs
                .put(key, "image/png", Bytes::from_static(b"bytes"))
                .await
                .unwrap();
        }
        t.logo_blob_key = Some(logo);
        store.tenancy.tenants.update(&t).await.unwrap();

        let later = imix_core::now() + chrono::Duration::seconds(1);
        let check = orphaned_blobs(store, later).await;
        let line = check.line();
        assert!(!check.ok, "{line}");
        assert!(line.starts_with("FAIL blobs"), "{line}");
        assert!(
            line.contains(&stray) && line.contains("1 orphaned"),
            "{line}"
        );
        assert!(!line.contains("logos/current"), "{line}");
        assert!(line.contains("hint:"), "{line}");

        // Within the grace period a blob may belong to an upload still in flight.
        let earlier = imix_core::now() - chrono::Duration::seconds(60);
        assert!(orphaned_blobs(store, earlier).await.ok);

        store.store.blobs.delete(&stray).await.unwrap();
        assert!(orphaned_blobs(store, later).await.ok);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphaned_blobs_fail_the_check_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::on(imix_core::store::sqlite::open(dir.path()).await.unwrap()).unwrap();
        // Before the schema exists (a fresh data directory) there is nothing to report.
        assert!(orphaned_blobs(&store, imix_core::now()).await.ok);
        store.migrate().await.unwrap();
        orphan_check_reports_strays_only(&store).await;

        // Bytes a crashed write left in the blob directory, with no row pointing at them.
        let planted = dir.path().join("blobs").join("deadbeef-stray");
        std::fs::write(&planted, b"x").unwrap();
        let later = imix_core::now() + chrono::Duration::seconds(5);
        let check = orphaned_blobs(&store, later).await;
        let line = check.line();
        assert!(!check.ok, "{line}");
        assert!(
            line.contains("deadbeef-stray") && line.contains("1 stored file"),
            "{line}"
        );
        std::fs::remove_file(&planted).unwrap();
        assert!(orphaned_blobs(&store, later).await.ok);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphaned_blobs_fail_the_check_on_mongodb() {
        let uri = std::env::var("IMIX_TEST_MONGODB_URI")
            .expect("IMIX_TEST_MONGODB_URI is not set: run scripts/test.sh");
        let db = format!("imix_doctor_{}", uuid::Uuid::now_v7().simple());
        let store = Storage::on(imix_core::store::mongo::open(&uri, &db).await.unwrap()).unwrap();
        store.migrate().await.unwrap();
        orphan_check_reports_strays_only(&store).await;
    }
}
