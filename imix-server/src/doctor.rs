//! `imix-server doctor`: the admin guide's Troubleshooting section as a command. Each check
//! prints one line, `ok` or `FAIL`, with a hint for failures; the exit code is non-zero if any
//! check failed.

use std::{io::Write, path::Path};

use crate::{config::Config, probe, state};

/// The least free space, in bytes, on the data directory's file system before doctor fails.
pub const MIN_FREE_BYTES: u64 = 512 * 1024 * 1024;

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
    checks.push(store(config).await);
    checks.push(redis(config).await);
    checks
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
        std::fs::create_dir_all(dir)?;
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

async fn store(config: &Config) -> Check {
    let backend = config.store_backend();
    let hint = match backend {
        "mongodb" => {
            "check MONGODB_URI and that mongod runs: mongosh --eval 'db.runCommand({ ping: 1 })'"
        }
        _ => "check that IMIX_DATA_DIR is writable and not on a network file system",
    };
    let store = match state::open_store(config).await {
        Ok(store) => store,
        Err(e) => {
            return Check::fail(
                "store",
                format!(
                    "{backend}: cannot open: {}",
                    probe::one_line(&e.to_string())
                ),
                hint,
            )
        }
    };
    let result = probe::store(&store).await;
    match result.error {
        None => Check::pass(
            "store",
            format!(
                "{backend} ping {:.3} ms",
                result.latency_ms().unwrap_or_default()
            ),
        ),
        Some(e) => Check::fail("store", format!("{backend}: ping failed: {e}"), hint),
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
