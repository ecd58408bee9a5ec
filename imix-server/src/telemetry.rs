//! Logging with `tracing`: human-readable lines on stdout, the same lines in
//! `<IMIX_LOG_DIR>/backend.log`, and events whose target starts with `imix_whatsapp` also in
//! `<IMIX_LOG_DIR>/whatsapp.log` — the files the admin guide's troubleshooting tails.
//! The log files are created `0600` and the log directory `0700`: they name users and
//! tenants.

use std::path::Path;

use imix_core::store::private_files;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{filter::Targets, fmt, layer::SubscriberExt, EnvFilter, Layer, Registry};

/// Keeps the background log writers alive; dropping it flushes them.
#[must_use = "logs are flushed when the guard is dropped"]
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

/// Builds the subscriber without installing it (tests install it for one scope).
pub fn subscriber(
    log_dir: &Path,
    filter: &str,
    with_stdout: bool,
) -> std::io::Result<(impl tracing::Subscriber + Send + Sync, LogGuard)> {
    private_files::create_dir_all(log_dir)?;
    let (backend, backend_guard) =
        tracing_appender::non_blocking(open_append(&log_dir.join("backend.log"))?);
    let (whatsapp, whatsapp_guard) =
        tracing_appender::non_blocking(open_append(&log_dir.join("whatsapp.log"))?);

    let env_filter = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout_layer = with_stdout.then(|| {
        use std::io::IsTerminal;
        fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(env_filter())
    });
    let backend_layer = fmt::layer()
        .with_ansi(false)
        .with_writer(backend)
        .with_filter(env_filter());
    let whatsapp_layer = fmt::layer()
        .with_ansi(false)
        .with_writer(whatsapp)
        .with_filter(Targets::new().with_target("imix_whatsapp", tracing::Level::TRACE))
        .with_filter(env_filter());

    let subscriber = Registry::default()
        .with(stdout_layer)
        .with(backend_layer)
        .with(whatsapp_layer);
    Ok((
        subscriber,
        LogGuard {
            _guards: vec![backend_guard, whatsapp_guard],
        },
    ))
}

/// Installs logging for the process.
pub fn init(log_dir: &Path, filter: &str) -> std::io::Result<LogGuard> {
    let (subscriber, guard) = subscriber(log_dir, filter, true)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(guard)
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    private_files::open_append(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_events_reach_both_files_others_only_backend() {
        let dir = tempfile::tempdir().unwrap();
        let (subscriber, guard) = subscriber(dir.path(), "info", false).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "imix_whatsapp::client", "graph call failed code=190");
            tracing::info!(target: "imix_server::app", "server started");
            tracing::debug!(target: "imix_whatsapp", "below the filter");
        });
        drop(guard);
        let backend = std::fs::read_to_string(dir.path().join("backend.log")).unwrap();
        let whatsapp = std::fs::read_to_string(dir.path().join("whatsapp.log")).unwrap();
        assert!(backend.contains("graph call failed") && backend.contains("server started"));
        assert!(whatsapp.contains("graph call failed"));
        assert!(!whatsapp.contains("server started"));
        assert!(!whatsapp.contains("below the filter"));
    }

    #[test]
    fn log_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("logs");
        let (_subscriber, guard) = subscriber(&dir, "info", false).unwrap();
        drop(guard);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("backend.log")), 0o600);
        assert_eq!(mode(&dir.join("whatsapp.log")), 0o600);
    }
}
