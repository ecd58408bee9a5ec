//! Backup and restore on the embedded SQLite store at size: seeds a store with `--messages`
//! messages (default 100,000) through the messaging storage ports (spread over
//! `--conversations` conversations of one tenant and one WhatsApp account), then times
//! creating a backup, verifying it, and restoring it (verify, pre-restore backup, wipe,
//! import, and the rebuild of derived data such as the search index a server runs after a
//! restore), and reports the archive's size. Figures on the development machine are in
//! `docs/benchmarks.md` ("Backup and restore").
//!
//! ```sh
//! cargo run --release -p imix-examples --example backup-bench
//! cargo run --release -p imix-examples --example backup-bench -- --messages 10000 --dir /tmp/bb
//! ```
//!
//! The executable is left out of the archive (`IMIX_BACKUP_INCLUDE_EXECUTABLE=false`): with
//! it, add the executable's size (compressed) to the archive and a little time.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use imix_server::storage::Storage;
use imix_update::backup::{BackupKind, Backups, BackupsConfig, Progress};

/// Backup and restore timings for a store of N messages.
#[derive(Parser)]
struct Args {
    /// Messages to seed.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Conversations (one contact each) the messages are spread over.
    #[arg(long, default_value_t = 1_000)]
    conversations: usize,
    /// Work directory (a temporary one, removed at the end, when not given).
    #[arg(long)]
    dir: Option<PathBuf>,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// How long each stage of the restore took, in order.
static STAGES: std::sync::Mutex<Vec<(String, Duration)>> = std::sync::Mutex::new(Vec::new());

/// Polls `progress` and records each stage's duration in [`STAGES`] until aborted.
async fn stage_times(progress: Arc<Progress>) {
    let mut current = (String::new(), Instant::now());
    loop {
        let stage = progress.stage();
        if stage != current.0 {
            if !current.0.is_empty() {
                if let Ok(mut s) = STAGES.lock() {
                    s.push((current.0.clone(), current.1.elapsed()));
                }
            }
            current = (stage, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let store = imix_core::store::sqlite::open(&data).await?;
    let storage = Storage::on(store.clone())?;
    storage.migrate().await?;

    // Seed: a tenant, an account, contacts and conversations, then the messages, 32 writes
    // at a time (each waits on its own durable write).
    let started = Instant::now();
    let tenant = imix_tenancy::testkit::tenant("Bench");
    storage.tenancy.tenants.insert(&tenant).await?;
    let account = imix_whatsapp::testkit::whatsapp_account(tenant.id, "9100");
    storage.whatsapp.accounts.insert(&account).await?;
    let mut threads = Vec::with_capacity(args.conversations);
    for i in 0..args.conversations {
        let contact = imix_messaging::Contact::new(tenant.id, format!("2224{i:07}"));
        storage.messaging.contacts.insert(&contact).await?;
        let conversation = imix_messaging::Conversation::new(tenant.id, account.id, contact.id);
        storage
            .messaging
            .conversations
            .insert(&conversation)
            .await?;
        threads.push((contact.id, conversation.id));
    }
    let threads = Arc::new(threads);
    let messages = storage.messaging.messages.clone();
    futures::stream::iter(0..args.messages)
        .map(|n| {
            let (threads, messages, account) = (threads.clone(), messages.clone(), &account);
            async move {
                let (contact_id, conversation_id) = threads[n % threads.len()];
                let inbound = n % 3 != 0;
                let message = imix_messaging::Message {
                    auto_reply: false,
                    id: imix_messaging::MessageId::new(),
                    tenant_id: tenant.id,
                    account_id: account.id,
                    phone_number_id: account.phone_number_id.clone(),
                    conversation_id,
                    contact_id,
                    wamid: format!("wamid.bench.{n:09}"),
                    direction: if inbound {
                        imix_messaging::Direction::Inbound
                    } else {
                        imix_messaging::Direction::Outbound
                    },
                    kind: "text".into(),
                    content: serde_json::json!({"type": "text", "text": {"body": format!(
                        "Bonjour, message {n}: est-ce que ma commande est partie ? Merci !"
                    )}}),
                    timestamp: imix_core::now(),
                    state: if inbound {
                        imix_messaging::DeliveryState::Received
                    } else {
                        imix_messaging::DeliveryState::Delivered
                    },
                    statuses: Vec::new(),
                    version: 1,
                    created_at: imix_core::now(),
                };
                messages.insert(&message).await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let seeded = started.elapsed();
    let db_size: u64 = std::fs::read_dir(&data)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    println!(
        "seeded {} messages in {} conversations: {} (store files {})",
        args.messages,
        args.conversations,
        secs(seeded),
        mib(db_size)
    );

    let backups = Backups::new(
        store.clone(),
        storage.transfer(),
        BackupsConfig {
            dir: dir.join("backups"),
            keep: 10,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            executable: None,
        },
    )?;
    // What a server does after a restore: the capabilities' migrations again (derived
    // data such as the search index is rebuilt).
    let refresh = storage.clone();
    let rebuild_time = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let rebuild_slot = rebuild_time.clone();
    backups.set_after_restore(Arc::new(move || {
        let (storage, slot) = (refresh.clone(), rebuild_slot.clone());
        Box::pin(async move {
            let started = Instant::now();
            if let Err(e) = storage.migrate().await {
                eprintln!("rebuild after restore failed: {e}");
            }
            if let Ok(mut t) = slot.lock() {
                *t = started.elapsed();
            }
        })
    }));

    let started = Instant::now();
    let info = backups
        .create(BackupKind::Manual, &Progress::default())
        .await?;
    let created = started.elapsed();
    let records: u64 = info.counts.values().sum();
    println!(
        "create: {} — archive {} ({} records, {} messages)",
        secs(created),
        mib(info.size),
        records,
        info.counts.get("message").copied().unwrap_or(0)
    );

    let started = Instant::now();
    backups.verify(&info.id).await?;
    let verified = started.elapsed();
    println!("verify: {}", secs(verified));

    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let stages = tokio::spawn(stage_times(progress.clone()));
    let outcome = backups.restore(&info.id, &progress).await?;
    let restored = started.elapsed();
    stages.abort();
    let _ = stages.await;
    println!(
        "restore: {} — {} records and blobs (includes verifying, the pre-restore backup, \
         the wipe, the import and the rebuild)",
        secs(restored),
        outcome.restored
    );
    for (stage, took) in STAGES.lock().map(|s| s.clone()).unwrap_or_default() {
        println!("  {stage}: {}", secs(took));
    }
    let rebuild = rebuild_time.lock().map(|t| *t).unwrap_or_default();
    println!(
        "  (of which the rebuild after the import: {})",
        secs(rebuild)
    );

    // The restored store holds every message again.
    let count = storage
        .transfer()
        .export()
        .try_fold(0u64, |n, r| async move {
            Ok(n + u64::from(r.kind == "message"))
        })
        .await?;
    if count != args.messages as u64 {
        return Err(format!("restored {count} messages, expected {}", args.messages).into());
    }
    println!("checked: {count} messages after the restore");
    Ok(())
}
