//! The background workers a server runs beside the API: the mail outbox, webhook ingest,
//! inbound media, contact imports and scheduled backups. They run until the server stops,
//! and a restore pauses them (see [`imix_update::backup::BackgroundWorkers`]): each is
//! stopped the way a shutdown stops it (a contact import saves where it is and gives its
//! job back, the webhook worker finishes the deliveries it holds, the mail worker the email
//! it is sending) and started again once the restored data is in place.

use std::{sync::Arc, time::Duration};

use futures::{future::BoxFuture, FutureExt};
use imix_update::backup::{
    schedule::{Scheduler, SystemClock},
    BackgroundWorkers,
};
use tokio::{sync::watch, task::JoinHandle};

use crate::state::AppState;

/// How long a worker may take to stop (pause or shutdown) before it is aborted.
const STOP_GRACE: Duration = crate::SHUTDOWN_GRACE;

/// A future that completes when its worker must stop.
type StopSignal = BoxFuture<'static, ()>;
/// Runs one worker until its stop signal.
type Runner = Arc<dyn Fn(StopSignal) -> BoxFuture<'static, ()> + Send + Sync>;

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The server's background workers. Cheap to clone.
#[derive(Clone)]
pub struct Workers {
    runners: Arc<Vec<(&'static str, Runner)>>,
    running: Arc<tokio::sync::Mutex<Vec<(&'static str, Running)>>>,
    /// Set at shutdown: a restore ending afterwards does not start them again.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

/// The scheduled-backups worker of `state` (its schedule in the platform settings).
pub fn backup_scheduler(state: &AppState) -> Scheduler {
    Scheduler::new(
        state.backups.clone(),
        state.store.settings.clone(),
        Arc::new(SystemClock),
    )
}

impl Workers {
    /// Starts every worker of `state`.
    pub fn start(state: &AppState) -> Self {
        let mut runners: Vec<(&'static str, Runner)> = Vec::new();
        let notifier = state.notifier.clone();
        runners.push((
            "mail outbox",
            Arc::new(move |stop| notifier.worker().run_supervised(stop).boxed()),
        ));
        let ingest = state.ingest.clone();
        runners.push((
            "webhook",
            Arc::new(move |stop| {
                let ingest = ingest.clone();
                async move { ingest.run(stop).await }.boxed()
            }),
        ));
        let media = state.media_worker.clone();
        runners.push((
            "media",
            Arc::new(move |stop| {
                let media = media.clone();
                async move { media.run(stop).await }.boxed()
            }),
        ));
        // The outbound dispatcher: hands queued messages to Meta, and marks `unknown` those
        // a crash left `sending`.
        let dispatcher = state.dispatcher.clone();
        runners.push((
            "dispatcher",
            Arc::new(move |stop| {
                let dispatcher = dispatcher.clone();
                async move { dispatcher.run(stop).await }.boxed()
            }),
        ));
        // Auto-replies: answers the assistant sends by itself, off the ingest worker.
        let auto_reply = state.auto_reply.clone();
        runners.push((
            "auto-reply",
            Arc::new(move |stop| {
                let auto_reply = auto_reply.clone();
                async move { auto_reply.run(stop).await }.boxed()
            }),
        ));
        let imports = state.contact_imports.clone();
        runners.push((
            "contact import",
            Arc::new(move |stop| {
                let imports = imports.clone();
                async move { imports.run(stop).await }.boxed()
            }),
        ));
        let scheduler = backup_scheduler(state);
        runners.push((
            "scheduled backups",
            Arc::new(move |stop| {
                let scheduler = scheduler.clone();
                async move { scheduler.run(stop).await }.boxed()
            }),
        ));
        let workers = Self {
            runners: Arc::new(runners),
            running: Arc::new(tokio::sync::Mutex::new(Vec::new())),
            closed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        if let Ok(mut running) = workers.running.try_lock() {
            *running = workers.spawn_all();
        }
        workers
    }

    fn spawn_all(&self) -> Vec<(&'static str, Running)> {
        self.runners
            .iter()
            .map(|(name, runner)| {
                let (stop, stopped) = watch::channel(false);
                let signal = async move {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|stop| *stop).await;
                }
                .boxed();
                let task = tokio::spawn(runner(signal));
                (*name, Running { stop, task })
            })
            .collect()
    }

    /// Stops every worker and waits (up to the shutdown grace each) until it has; one that
    /// does not stop in time is aborted, and its job is taken again once its lease runs
    /// out. Stopping twice is harmless.
    pub async fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().await);
        for (_, r) in &running {
            let _ = r.stop.send(true);
        }
        for (name, r) in running {
            let mut task = r.task;
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                tracing::warn!(
                    worker = name,
                    "a background worker did not stop in time; aborted (its job is taken again once its lease runs out)"
                );
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Stops every worker for good (server shutdown): see [`Workers::stop`].
    pub async fn shut_down(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop().await;
    }

    /// Starts the workers again after [`Workers::stop`] (nothing if they run, or after
    /// [`Workers::shut_down`]).
    pub async fn restart(&self) {
        let mut running = self.running.lock().await;
        if running.is_empty() && !self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            *running = self.spawn_all();
        }
    }
}

impl BackgroundWorkers for Workers {
    fn pause(&self) -> BoxFuture<'static, ()> {
        let this = self.clone();
        async move {
            tracing::info!("pausing the background workers for a restore");
            this.stop().await;
        }
        .boxed()
    }

    fn resume(&self) -> BoxFuture<'static, ()> {
        let this = self.clone();
        async move {
            this.restart().await;
            tracing::info!("background workers resumed");
        }
        .boxed()
    }
}
