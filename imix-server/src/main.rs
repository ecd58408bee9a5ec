//! The `imix-server` binary: `serve` (the default), `init-db`, `doctor`, `backup …`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imix_server::{config::Config, doctor, telemetry};

/// imix: multi-tenant WhatsApp Business CRM server.
///
/// Configuration comes from the environment and a `.env` file; see `.env.example`.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create or upgrade the database schema, then exit. Idempotent.
    InitDb,
    /// Check the store, Redis, directories and disk space; exit non-zero on any failure.
    Doctor,
    /// Backups: create, list, verify <file>, restore <file>.
    Backup {
        #[command(subcommand)]
        command: imix_server::backup_cli::BackupCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let _guard = match telemetry::init(&config.log_dir, &config.log_filter) {
                    Ok(guard) => guard,
                    Err(e) => {
                        return fail(&format!(
                            "cannot write logs to IMIX_LOG_DIR {}: {e}",
                            config.log_dir.display()
                        ))
                    }
                };
                let shutdown = match imix_server::shutdown_signal() {
                    Ok(shutdown) => shutdown,
                    Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
                };
                let served = imix_server::serve(config, shutdown).await;
                // An update (or its rollback) asked for a restart: exit with the code the
                // supervisor restarts on, or re-execute (IMIX_UPDATE_RESTART).
                if let Some(code) = imix_server::updates::restart_if_requested() {
                    return code;
                }
                match served {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "imix-server failed");
                        fail(&e)
                    }
                }
            }
            Command::InitDb => {
                let storage = match imix_server::storage::Storage::open(&config).await {
                    Ok(storage) => storage,
                    Err(e) => return fail(&e),
                };
                match storage.migrate().await {
                    Ok(()) => println!("{} schema is up to date", storage.store.admin.backend()),
                    Err(e) => return fail(&e),
                }
                match imix_tenancy::bootstrap::ensure_default_admin(&storage.store, &storage.tenancy, &config.admin_email, &config.admin_password).await {
                    Ok(true) => {
                        println!("created the default administrator {} (change its password at first sign-in)", config.admin_email);
                        ExitCode::SUCCESS
                    }
                    Ok(false) => {
                        println!("users exist already; no default administrator created");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&e),
                }
            }
            Command::Backup { command } => {
                match imix_server::backup_cli::run(&config, command, &mut std::io::stdout()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&e),
                }
            }
            Command::Doctor => {
                if doctor::run_and_print(&config, &mut std::io::stdout()).await {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    })
}

/// Prints one line naming the problem and returns a failure exit code.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!(
        "imix-server: {}",
        imix_server::probe::one_line(&error.to_string())
    );
    ExitCode::FAILURE
}
