//! A restore pauses the background workers before it changes anything and resumes them
//! when it is over: a worker that keeps writing while it runs writes nothing between the
//! pause and the resume, so nothing of it lands in the restored data; an archive refused at
//! verification pauses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

use futures::{future::BoxFuture, FutureExt};
use imix_core::{
    model::{SettingsDoc, SettingsScope},
    store::{transfer::Transfer, Store},
};
use imix_update::backup::{BackgroundWorkers, BackupKind, Backups, BackupsConfig, Progress};

/// A worker writing a settings document every millisecond while it runs.
struct Writer {
    store: Store,
    running: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    pauses: AtomicUsize,
    resumes: AtomicUsize,
    /// Documents written when the last pause completed.
    at_pause: AtomicUsize,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Writer {
    fn start(&self) {
        self.running.store(true, Ordering::SeqCst);
        let (store, running, written) = (
            self.store.clone(),
            self.running.clone(),
            self.written.clone(),
        );
        *self.task.lock().unwrap() = Some(tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                let n = written.fetch_add(1, Ordering::SeqCst);
                store
                    .settings
                    .insert(&SettingsDoc::new(
                        SettingsScope::Platform,
                        format!("worker-{n}"),
                        serde_json::json!({ "n": n }),
                    ))
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }));
    }
}

struct Shared(Arc<Writer>);

impl BackgroundWorkers for Shared {
    fn pause(&self) -> BoxFuture<'static, ()> {
        let w = self.0.clone();
        async move {
            w.pauses.fetch_add(1, Ordering::SeqCst);
            w.running.store(false, Ordering::SeqCst);
            let task = w.task.lock().unwrap().take();
            if let Some(task) = task {
                task.await.unwrap();
            }
            w.at_pause
                .store(w.written.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        .boxed()
    }

    fn resume(&self) -> BoxFuture<'static, ()> {
        let w = self.0.clone();
        async move {
            w.resumes.fetch_add(1, Ordering::SeqCst);
            w.start();
        }
        .boxed()
    }
}

async fn worker_docs(store: &Store) -> usize {
    store
        .settings
        .list_all()
        .await
        .unwrap()
        .iter()
        .filter(|d| d.key.starts_with("worker-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_pauses_the_workers_and_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    let backups = Backups::new(
        store.clone(),
        Transfer::new(&store),
        BackupsConfig {
            dir: dir.path().join("backups"),
            keep: 10,
            app_version: "9.9.9".into(),
            executable: None,
        },
    )
    .unwrap();
    // A backup with no worker document.
    let empty = backups
        .create(BackupKind::Manual, &Progress::default())
        .await
        .unwrap();
    let writer = Arc::new(Writer {
        store: store.clone(),
        running: Arc::new(AtomicBool::new(false)),
        written: Arc::new(AtomicUsize::new(0)),
        pauses: AtomicUsize::new(0),
        resumes: AtomicUsize::new(0),
        at_pause: AtomicUsize::new(0),
        task: std::sync::Mutex::new(None),
    });
    writer.start();
    backups.set_workers(Arc::new(Shared(writer.clone())));
    while writer.written.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    // A damaged (truncated) archive is refused before anything is paused.
    let path = backups.store().archive_path(&empty.id).unwrap();
    let good = std::fs::read(&path).unwrap();
    // Cut short (a flipped byte may fall in the tar's trailing padding, which nothing
    // reads).
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(backups
        .restore(&empty.id, &Progress::default())
        .await
        .is_err());
    assert_eq!(writer.pauses.load(Ordering::SeqCst), 0);
    std::fs::write(&path, &good).unwrap();

    backups
        .restore(&empty.id, &Progress::default())
        .await
        .unwrap();
    assert_eq!(writer.pauses.load(Ordering::SeqCst), 1);
    assert_eq!(writer.resumes.load(Ordering::SeqCst), 1);
    // Only the documents written since the resume exist (nothing was written while paused,
    // so the count at the pause is the count at the resume); stop the writer to count.
    let at_resume = writer.at_pause.load(Ordering::SeqCst);
    Shared(writer.clone()).pause().await;
    let after = writer.written.load(Ordering::SeqCst);
    assert_eq!(
        worker_docs(&store).await,
        after - at_resume,
        "a document written while the restore ran survived it"
    );
}
