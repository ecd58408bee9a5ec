//! The embedded database engine: one SQLite file in WAL mode, read by a small pool of
//! read-only connections and written by one writer thread that commits concurrently
//! submitted writes together (group commit).
//!
//! Why this shape:
//! - WAL lets readers run beside the writer, so reads never wait for a write (or for an
//!   fsync) to finish; each read sees the last committed state.
//! - SQLite has one writer at a time anyway. Funnelling writes through one thread lets that
//!   thread wrap every write submitted meanwhile in **one** transaction, so one `fsync`
//!   (`synchronous = FULL`) makes a whole batch durable: write throughput grows with the
//!   number of concurrent writers instead of being capped at one fsync per write.
//! - Each write runs inside its own `SAVEPOINT`, so a write that fails (a unique
//!   constraint, a stale version, a panic) is rolled back alone and the rest of the batch
//!   commits. A write's result is delivered only **after** the batch's `COMMIT` returned:
//!   an acknowledged write is on disk and survives `kill -9` of the process and a power cut.
//! - The writer's transaction is `BEGIN IMMEDIATE`: it holds SQLite's write lock before it
//!   reads, so a write's read-then-update is atomic, also against another process on the
//!   same file.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{Error, Result};

/// How many read connections serve reads at once.
pub const DEFAULT_READERS: usize = 4;
/// The most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Prepared statements kept per connection: more than the adapters have distinct ones.
const STATEMENT_CACHE: usize = 256;
/// How many submitted writes may wait for the writer before submitters wait too.
const QUEUE_DEPTH: usize = 8192;

/// A handle to the embedded database. Cheap to clone; the writer thread stops when the
/// last clone is dropped (after finishing what was submitted).
#[derive(Clone)]
pub struct SqliteDb {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Mutex<Vec<Connection>>,
    read_permits: Arc<Semaphore>,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDb")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Settings every connection gets. `synchronous = FULL`: in WAL mode each commit fsyncs the
/// WAL, so a committed (and so acknowledged) transaction survives a crash of the process
/// or of the machine; group commit makes that one fsync per batch, not per write.
const CONNECTION_PRAGMAS: &str = "PRAGMA synchronous = FULL;
     PRAGMA foreign_keys = ON;
     PRAGMA busy_timeout = 5000;";

impl SqliteDb {
    /// Opens (creating if needed) the database file at `path`, switches it to WAL and starts
    /// the writer thread. Blocking: call it on a blocking thread.
    pub fn open_blocking(path: &Path, readers: usize) -> Result<Self> {
        let writer_conn =
            Connection::open(path).map_err(|e| Error::backend("open the SQLite database", e))?;
        writer_conn
            .execute_batch(&format!("PRAGMA journal_mode = WAL; {CONNECTION_PRAGMAS}"))
            .map_err(|e| Error::backend("configure the SQLite database", e))?;
        writer_conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let readers = readers.max(1);
        let mut pool = Vec::with_capacity(readers);
        for _ in 0..readers {
            pool.push(open_reader(path)?);
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("imix-sqlite-writer".into())
            .spawn(move || run_writer(writer_conn, rx))
            .map_err(|e| Error::backend("start the SQLite writer", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: tx,
                readers: Mutex::new(pool),
                read_permits: Arc::new(Semaphore::new(readers)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a read connection, on the blocking pool. The connection is read-only:
    /// a write through it fails.
    pub async fn read<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(action, e))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = inner
                .readers
                .lock()
                .map_err(|_| Error::backend(action, "the reader pool lock was poisoned"))?
                .pop();
            // A connection lost to a panic is replaced, so the pool never shrinks.
            let conn = match taken {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::backend(action, e))?
    }

    /// Runs `f` on the writer connection inside the current batch's transaction (in a
    /// savepoint of its own) and answers once the batch is committed. An `Err` from `f`
    /// rolls back `f`'s changes only. `f` must not begin or commit transactions itself.
    pub async fn write<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            action,
            run: f,
            reply,
        });
        self.inner
            .writer
            .send(job)
            .await
            .map_err(|_| Error::backend(action, "the SQLite writer has stopped"))?;
        answer.await.map_err(|_| {
            Error::backend(
                action,
                "the write was abandoned (it panicked); nothing was stored",
            )
        })?
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Error::backend("open a SQLite read connection", e))?;
    conn.execute_batch(CONNECTION_PRAGMAS)
        .map_err(|e| Error::backend("configure a SQLite read connection", e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A submitted write, type-erased so one queue carries writes of every result type.
trait WriteJob: Send {
    /// Runs the write; returns whether it succeeded and how to deliver its result once the
    /// batch's fate is known.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Delivery>);
    /// The batch could not even start: answers with the error, running nothing.
    fn fail(self: Box<Self>, reason: &str);
}

/// A write's result, waiting for its batch's commit.
trait Delivery: Send {
    /// `commit` is `None` when the batch committed, else why it did not.
    fn deliver(self: Box<Self>, commit: Option<&str>);
}

struct Job<T, F> {
    action: &'static str,
    run: F,
    reply: oneshot::Sender<Result<T>>,
}

struct Pending<T> {
    action: &'static str,
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Delivery>) {
        let Job { action, run, reply } = *self;
        let result = run(conn);
        (
            result.is_ok(),
            Box::new(Pending {
                action,
                result,
                reply,
            }),
        )
    }

    fn fail(self: Box<Self>, reason: &str) {
        let _ = self
            .reply
            .send(Err(Error::backend(self.action, reason.to_owned())));
    }
}

impl<T: Send> Delivery for Pending<T> {
    fn deliver(self: Box<Self>, commit: Option<&str>) {
        let result = match commit {
            None => self.result,
            Some(reason) => Err(Error::backend(
                self.action,
                format!("the transaction did not commit: {reason}"),
            )),
        };
        let _ = self.reply.send(result);
    }
}

fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        // Everything submitted while the previous batch was committing joins this one.
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, &mut batch);
    }
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn WriteJob>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let reason = e.to_string();
        for job in batch.drain(..) {
            job.fail(&reason);
        }
        return;
    }
    let mut done: Vec<Box<dyn Delivery>> = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        if let Err(e) = run_cached(conn, "SAVEPOINT write_job") {
            job.fail(&e.to_string());
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job.run(conn))) {
            Ok((true, delivery)) => {
                release(conn, false);
                done.push(delivery);
            }
            Ok((false, delivery)) => {
                release(conn, true);
                done.push(delivery);
            }
            // The job's reply sender was dropped with it: its caller learns it was abandoned.
            Err(_) => release(conn, true),
        }
    }
    let commit = conn.execute_batch("COMMIT").err().map(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    });
    if let Some(reason) = &commit {
        tracing::error!(%reason, writes = done.len(), "a SQLite write batch did not commit");
    }
    for delivery in done {
        delivery.deliver(commit.as_deref());
    }
}

/// Ends the current job's savepoint, first undoing its changes when `rollback`.
fn release(conn: &Connection, rollback: bool) {
    if rollback {
        let _ = run_cached(conn, "ROLLBACK TO write_job");
    }
    let _ = run_cached(conn, "RELEASE write_job");
}

/// Runs a parameterless statement, prepared once per connection: the savepoint statements
/// run twice per write, and parsing them each time would cost more than the write.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    async fn db() -> (tempfile::TempDir, SqliteDb) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.sqlite3");
        let db = tokio::task::spawn_blocking(move || SqliteDb::open_blocking(&path, 2))
            .await
            .expect("join")
            .expect("open");
        db.write("create", |c| {
            c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")
                .map_err(|e| Error::backend("create", e))
        })
        .await
        .expect("create");
        (dir, db)
    }

    fn insert(id: i64, v: &str) -> impl FnOnce(&Connection) -> Result<()> + Send + 'static {
        let v = v.to_owned();
        move |c| {
            c.execute("INSERT INTO t (id, v) VALUES (?1, ?2)", params![id, v])
                .map(|_| ())
                .map_err(|e| Error::backend("insert", e))
        }
    }

    async fn count(db: &SqliteDb) -> i64 {
        db.read("count", |c| {
            c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .map_err(|e| Error::backend("count", e))
        })
        .await
        .expect("count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_all_commit_and_a_failing_one_is_rolled_back_alone() {
        let (_dir, db) = db().await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let db = db.clone();
            // Every 10th write collides with the value of write 0: it must fail alone.
            let v = if i % 10 == 5 {
                "v0".to_owned()
            } else {
                format!("v{i}")
            };
            tasks.push(tokio::spawn(async move {
                db.write("insert", insert(i, &v)).await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.expect("join").is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 20);
        assert_eq!(count(&db).await, 180);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
        let (_dir, db) = db().await;
        let err = db
            .write("panic", |c| -> Result<()> {
                c.execute("INSERT INTO t (id, v) VALUES (1, 'x')", [])
                    .map_err(|e| Error::backend("insert", e))?;
                panic!("boom")
            })
            .await
            .expect_err("a panicking write fails");
        assert!(err.to_string().contains("abandoned"), "{err}");
        db.write("insert", insert(2, "y"))
            .await
            .expect("writer alive");
        assert_eq!(count(&db).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_connections_refuse_writes() {
        let (_dir, db) = db().await;
        let refused = db.read("sneaky write", insert(1, "x")).await;
        assert!(refused.is_err());
        assert_eq!(count(&db).await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_is_visible_to_reads_once_acknowledged() {
        let (_dir, db) = db().await;
        for i in 0..50 {
            db.write("insert", insert(i, &format!("v{i}")))
                .await
                .expect("insert");
            assert_eq!(count(&db).await, i + 1);
        }
    }
}
