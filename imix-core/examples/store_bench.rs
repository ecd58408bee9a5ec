//! Load benchmark of the embedded (SQLite) store: small inserts from many concurrent tasks,
//! with and without 20 MB blob uploads running, and the latency of reads meanwhile.
//!
//! ```sh
//! cargo run --release -p imix-core --example store_bench            # 64 writers, 5 s per phase
//! cargo run --release -p imix-core --example store_bench -- 64 10   # writers, seconds
//! cargo run --release -p imix-core --example store_bench -- 64 5 inserts  # one phase only
//! ```
//!
//! Results go to `docs/benchmarks.md`. A benchmark, not a test: it asserts nothing.
#![allow(clippy::expect_used)] // a failed store call ends the benchmark loudly, by design

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use imix_core::{
    id::TenantId,
    model::{AuditEntry, SettingsDoc, SettingsScope},
    store::Store,
};

const READERS: usize = 4;
const BLOB_BYTES: usize = 20 * 1024 * 1024;

struct Phase {
    inserts: u64,
    seconds: f64,
    reads: Vec<Duration>,
    uploads: u64,
}

/// The tenant the benchmark writes audit entries for.
struct TenantRef {
    id: TenantId,
}

async fn phase(
    store: &Store,
    tenant: &TenantRef,
    writers: usize,
    secs: u64,
    upload: bool,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let uploads = Arc::new(AtomicU64::new(0));
    let mut writer_tasks = Vec::new();
    for _ in 0..writers {
        let (store, stop, inserted, tenant_id) =
            (store.clone(), stop.clone(), inserted.clone(), tenant.id);
        writer_tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut entry = AuditEntry::new("bench.insert", "bench");
                entry.tenant_id = Some(tenant_id);
                store.audit.append(&entry).await.expect("insert");
                inserted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut reader_tasks = Vec::new();
    for _ in 0..READERS {
        let (store, stop, id) = (store.clone(), stop.clone(), tenant.id);
        reader_tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                store
                    .settings
                    .get(SettingsScope::Tenant(id), "bench")
                    .await
                    .expect("read");
                latencies.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            latencies
        }));
    }
    let uploader = upload.then(|| {
        let (store, stop, uploads) = (store.clone(), stop.clone(), uploads.clone());
        tokio::spawn(async move {
            let data = bytes::Bytes::from(
                (0..BLOB_BYTES)
                    .map(|i| (i * 31 % 251) as u8)
                    .collect::<Vec<u8>>(),
            );
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A different key each time: every upload writes and syncs 20 MB anew.
                let key = format!("bench/upload-{n}");
                store
                    .blobs
                    .put(&key, "application/octet-stream", data.clone())
                    .await
                    .expect("upload");
                uploads.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        })
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let measured = started.elapsed().as_secs_f64();
    let total = inserted.load(Ordering::Relaxed);
    for t in writer_tasks {
        t.await.expect("writer");
    }
    let mut reads = Vec::new();
    for t in reader_tasks {
        reads.extend(t.await.expect("reader"));
    }
    if let Some(u) = uploader {
        u.await.expect("uploader");
    }
    Phase {
        inserts: total,
        seconds: measured,
        reads,
        uploads: uploads.load(Ordering::Relaxed),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut p: Phase) {
    p.reads.sort();
    println!(
        "| {name} | {:.0} inserts/s ({} in {:.1} s) | {} reads, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms | {} uploads of 20 MB |",
        p.inserts as f64 / p.seconds,
        p.inserts,
        p.seconds,
        p.reads.len(),
        percentile(&p.reads, 0.50).as_secs_f64() * 1e3,
        percentile(&p.reads, 0.99).as_secs_f64() * 1e3,
        p.reads.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        p.uploads,
    );
}

#[tokio::main]
async fn main() -> imix_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let writers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    // `inserts` or `uploads` runs that phase only (for profiling one of them).
    let only = args.next();
    let dir = tempfile::tempdir().map_err(|e| imix_core::Error::backend("tempdir", e))?;
    let store = imix_core::store::sqlite::open(dir.path()).await?;
    store.admin.migrate().await?;
    // Reads look up one small keyed document, as a sign-in or a settings read does.
    let tenant = TenantRef {
        id: TenantId::new(),
    };
    store
        .settings
        .insert(&SettingsDoc::new(
            SettingsScope::Tenant(tenant.id),
            "bench",
            serde_json::json!({"name": "Bench"}),
        ))
        .await?;
    println!("embedded store, {writers} concurrent writers, {READERS} readers, {secs} s per phase");
    println!("| phase | small inserts | reads meanwhile | uploads |");
    println!("|---|---|---|---|");
    if only.as_deref() != Some("uploads") {
        report(
            "inserts only",
            phase(&store, &tenant, writers, secs, false).await,
        );
    }
    if only.as_deref() != Some("inserts") {
        report(
            "inserts + 20 MB uploads",
            phase(&store, &tenant, writers, secs, true).await,
        );
    }
    Ok(())
}
