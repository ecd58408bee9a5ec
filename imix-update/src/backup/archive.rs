//! Writing, verifying and reading backup archives.
//!
//! Writing streams: records are exported page by page and cut into files of at most
//! [`CHUNK_BYTES`], blobs go one at a time, the executable is copied through a hashing
//! reader; a blocking writer thread appends each to the tar + gzip stream and hashes it as
//! it goes. Verifying reads the whole archive once, hashing every file, counting every
//! record and comparing all of it with the manifest, before anything is changed.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use bytes::Bytes;
use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use futures::StreamExt;
use imix_core::store::{transfer::Record, transfer::Transfer, BlobMeta, Store};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{BackupError, BackupKind, FileDigest, Manifest, Result, FORMAT, FORMAT_VERSION};

/// The most bytes of records in one `records/*.jsonl` file.
pub(crate) const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// The largest records file or blob metadata file a reader accepts (a hostile archive must
/// not make it allocate without bound).
const MAX_TEXT_FILE: u64 = 64 * 1024 * 1024;
/// The largest blob a reader accepts (blobs are held in memory one at a time).
const MAX_BLOB: u64 = 1024 * 1024 * 1024;
/// The largest manifest a reader accepts.
const MAX_MANIFEST: u64 = 256 * 1024 * 1024;
/// How many blobs are listed per page while writing.
const BLOB_PAGE: u32 = 200;

const RECORDS_DIR: &str = "records/";
const BLOB_META_DIR: &str = "blob-meta/";
const BLOB_DATA_DIR: &str = "blob-data/";
const BIN_DIR: &str = "bin/";
const MANIFEST: &str = "manifest.json";

/// What a backup being written or restored has done so far, for progress reports.
#[derive(Debug, Default)]
pub struct Progress {
    stage: Mutex<String>,
    records: AtomicU64,
    blobs: AtomicU64,
    bytes: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// The current stage: `exporting records`, `copying blobs`, `copying the executable`,
    /// `verifying`, `restoring records`, …
    pub fn stage(&self) -> String {
        self.stage.lock().map(|s| s.clone()).unwrap_or_default()
    }
    /// Records written or restored so far (blobs not included).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
    /// Blobs written or restored so far.
    pub fn blobs(&self) -> u64 {
        self.blobs.load(Ordering::Relaxed)
    }
    /// Uncompressed bytes written or read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Records and blobs to restore in all, when known (0 otherwise).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    pub(crate) fn set_stage(&self, stage: &str) {
        if let Ok(mut s) = self.stage.lock() {
            stage.clone_into(&mut s);
        }
    }
    fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// What [`write_backup`] needs besides the store.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The backup's id.
    pub id: String,
    /// Why it is made.
    pub kind: BackupKind,
    /// The running version.
    pub app_version: String,
    /// The executable to include (`std::env::current_exe()`), if any.
    pub executable: Option<PathBuf>,
}

enum Piece {
    File { path: String, data: Vec<u8> },
    Executable { source: PathBuf, path: String },
    Finish(Box<Manifest>),
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes a backup of `store` (records through `transfer`, blobs through the blob port)
/// into `out`, which is flushed and fsynced; returns its manifest. Nothing but one chunk of
/// records or one blob is held in memory at a time.
pub async fn write_backup(
    store: &Store,
    transfer: &Transfer,
    options: WriteOptions,
    out: File,
    progress: &Progress,
) -> Result<Manifest> {
    let schema = store.backend.applied_migrations().await?;
    let (tx, rx) = mpsc::channel::<Piece>(2);
    let writer = tokio::task::spawn_blocking(move || run_writer(out, rx));
    let produced = produce(store, transfer, &options, schema, &tx, progress).await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| BackupError::io("write the archive")(std::io::Error::other(e)))?;
    // The producer's error says why it stopped; the writer's is then only the consequence.
    produced?;
    let manifest = written?;
    progress.set_stage("done");
    Ok(manifest)
}

/// Sends every piece of the backup to the writer; the last is the manifest.
async fn produce(
    store: &Store,
    transfer: &Transfer,
    options: &WriteOptions,
    schema: Vec<String>,
    tx: &mpsc::Sender<Piece>,
    progress: &Progress,
) -> Result<()> {
    let closed = || BackupError::io("write the archive")(std::io::Error::other("writer stopped"));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    progress.set_stage("exporting records");
    let mut records = transfer.export_except(&["blob"]);
    let mut chunk: Vec<u8> = Vec::new();
    let mut chunk_no = 0u32;
    while let Some(record) = records.next().await {
        let record = record?;
        *counts.entry(record.kind.clone()).or_default() += 1;
        serde_json::to_writer(&mut chunk, &record)
            .map_err(|e| BackupError::io("encode a record")(e.into()))?;
        chunk.push(b'\n');
        progress.records.fetch_add(1, Ordering::Relaxed);
        if chunk.len() >= CHUNK_BYTES {
            chunk_no += 1;
            progress.add_bytes(chunk.len() as u64);
            let data = std::mem::take(&mut chunk);
            tx.send(Piece::File {
                path: format!("{RECORDS_DIR}{chunk_no:06}.jsonl"),
                data,
            })
            .await
            .map_err(|_| closed())?;
        }
    }
    if !chunk.is_empty() {
        chunk_no += 1;
        progress.add_bytes(chunk.len() as u64);
        tx.send(Piece::File {
            path: format!("{RECORDS_DIR}{chunk_no:06}.jsonl"),
            data: chunk,
        })
        .await
        .map_err(|_| closed())?;
    }

    progress.set_stage("copying blobs");
    let mut after: Option<String> = None;
    let mut blobs = 0u64;
    loop {
        let page = store.blobs.list("", after.clone(), BLOB_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for listed in page {
            // A blob deleted since it was listed is simply not in the backup.
            let blob = match store.blobs.get(&listed.key).await {
                Ok(blob) => blob,
                Err(imix_core::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let meta = serde_json::to_vec(&blob.meta)
                .map_err(|e| BackupError::io("encode blob metadata")(e.into()))?;
            tx.send(Piece::File {
                path: format!("{BLOB_META_DIR}{}", blob.meta.key),
                data: meta,
            })
            .await
            .map_err(|_| closed())?;
            progress.add_bytes(blob.data.len() as u64);
            tx.send(Piece::File {
                path: format!("{BLOB_DATA_DIR}{}", blob.meta.key),
                data: blob.data.to_vec(),
            })
            .await
            .map_err(|_| closed())?;
            blobs += 1;
            progress.blobs.fetch_add(1, Ordering::Relaxed);
        }
    }
    if blobs > 0 {
        counts.insert("blob".to_owned(), blobs);
    }

    let executable = match &options.executable {
        Some(source) => {
            progress.set_stage("copying the executable");
            let name = source
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .unwrap_or("imix-server")
                .to_owned();
            let path = format!("{BIN_DIR}{name}");
            tx.send(Piece::Executable {
                source: source.clone(),
                path: path.clone(),
            })
            .await
            .map_err(|_| closed())?;
            Some(path)
        }
        None => None,
    };
    progress.set_stage("writing the manifest");
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        id: options.id.clone(),
        app_version: options.app_version.clone(),
        schema,
        created_at: imix_core::now(),
        kind: options.kind,
        backend: store.backend.name().to_owned(),
        counts,
        files: BTreeMap::new(),
        target: executable
            .as_ref()
            .map(|_| crate::update::TARGET.to_owned()),
        executable,
    };
    tx.send(Piece::Finish(Box::new(manifest)))
        .await
        .map_err(|_| closed())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// The writer thread: appends each piece to the archive, hashing it, and ends with the
/// manifest, the gzip trailer and an fsync.
fn run_writer(out: File, mut rx: mpsc::Receiver<Piece>) -> Result<Manifest> {
    let write = BackupError::io("write the archive");
    let gz = GzEncoder::new(BufWriter::with_capacity(1 << 20, out), Compression::new(3));
    let mut tar = tar::Builder::new(gz);
    let mut files: BTreeMap<String, FileDigest> = BTreeMap::new();
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::File { path, data } => {
                let digest = FileDigest {
                    size: data.len() as u64,
                    sha256: hex_sha256(&data),
                };
                let mut h = header(digest.size);
                tar.append_data(&mut h, &path, data.as_slice())
                    .map_err(BackupError::io("write the archive"))?;
                files.insert(path, digest);
            }
            Piece::Executable { source, path } => {
                let file = File::open(&source).map_err(BackupError::io("read the executable"))?;
                let size = file
                    .metadata()
                    .map_err(BackupError::io("read the executable"))?
                    .len();
                let mut reader = Hashing {
                    inner: BufReader::new(file).take(size),
                    hasher: Sha256::new(),
                    read: 0,
                };
                let mut h = header(size);
                h.set_mode(0o755);
                tar.append_data(&mut h, &path, &mut reader)
                    .map_err(BackupError::io("write the archive"))?;
                // tar pads to the header's size only for what it read: a file that shrank
                // while being copied would leave a broken archive.
                if reader.read != size {
                    return Err(BackupError::io("read the executable")(
                        std::io::Error::other("the executable changed while it was copied"),
                    ));
                }
                files.insert(
                    path,
                    FileDigest {
                        size,
                        sha256: hex::encode(reader.hasher.finalize()),
                    },
                );
            }
            Piece::Finish(mut manifest) => {
                manifest.files = std::mem::take(&mut files);
                let json = serde_json::to_vec_pretty(&manifest)
                    .map_err(|e| BackupError::io("encode the manifest")(e.into()))?;
                let mut h = header(json.len() as u64);
                tar.append_data(&mut h, MANIFEST, json.as_slice())
                    .map_err(BackupError::io("write the archive"))?;
                let gz = tar
                    .into_inner()
                    .map_err(BackupError::io("write the archive"))?;
                let mut buffered = gz.finish().map_err(BackupError::io("write the archive"))?;
                buffered
                    .flush()
                    .map_err(BackupError::io("write the archive"))?;
                let file = buffered
                    .into_inner()
                    .map_err(|e| BackupError::io("write the archive")(e.into_error()))?;
                file.sync_all().map_err(write)?;
                return Ok(*manifest);
            }
        }
    }
    Err(write(std::io::Error::other(
        "the backup stopped before its manifest was written",
    )))
}

/// The kind of one records line; the rest of the line is checked by the import.
#[derive(serde::Deserialize)]
struct KindOnly {
    kind: String,
}

/// What reading an archive found in one file.
enum Found {
    Records(Vec<u8>),
    BlobMeta(BlobMeta),
    BlobData { key: String, data: Vec<u8> },
    Other,
}

/// Reads the archive at `path` entry by entry, hashing each file; `on_file` gets each file
/// but the manifest (its path, digest and what it holds: records and blobs are read into
/// memory only when `load` says so), then the manifest is returned. Errors say whether the
/// file is not a backup at all ([`BackupError::Foreign`]) or a damaged one.
fn scan(
    path: &Path,
    load: bool,
    progress: Option<&Progress>,
    mut on_file: impl FnMut(&str, FileDigest, Found) -> Result<()>,
) -> Result<Manifest> {
    let file = File::open(path).map_err(BackupError::io("open the backup"))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(1 << 20, file)));
    let entries = archive
        .entries()
        .map_err(|e| BackupError::Foreign(format!("not a gzip-compressed tar archive ({e})")))?;
    let mut manifest: Option<Manifest> = None;
    let mut seen_any = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if seen_any {
                BackupError::Corrupt(format!("the archive cannot be read past a point ({e})"))
            } else {
                BackupError::Foreign(format!("not a gzip-compressed tar archive ({e})"))
            }
        })?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
            .ok_or_else(|| BackupError::Corrupt("a file name is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::GNUSparse) {
            return Err(if seen_any {
                BackupError::Corrupt(format!("{name} is not a regular file"))
            } else {
                BackupError::Foreign(format!("{name} is not part of an imix backup"))
            });
        }
        if manifest.is_some() {
            return Err(BackupError::Corrupt(format!(
                "{name} follows the manifest, which must be last"
            )));
        }
        let size = entry.size();
        let read_err = |e: std::io::Error| {
            BackupError::Corrupt(format!("{name} cannot be read to its end ({e})"))
        };
        if name == MANIFEST {
            if size > MAX_MANIFEST {
                return Err(BackupError::Corrupt("the manifest is too large".into()));
            }
            let mut json = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut json).map_err(read_err)?;
            let value: serde_json::Value = serde_json::from_slice(&json)
                .map_err(|e| BackupError::Corrupt(format!("the manifest is not JSON ({e})")))?;
            if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
                return Err(BackupError::Foreign(
                    "its manifest is not an imix backup manifest".into(),
                ));
            }
            let version = value
                .get("format_version")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            if version > u64::from(FORMAT_VERSION) {
                return Err(BackupError::Unsupported(format!(
                    "archive format version {version} is newer than this version reads \
                     ({FORMAT_VERSION}); restore it with the version that made it or newer"
                )));
            }
            manifest =
                Some(serde_json::from_value(value).map_err(|e| {
                    BackupError::Corrupt(format!("the manifest is incomplete ({e})"))
                })?);
            continue;
        }
        seen_any = true;
        let known = [RECORDS_DIR, BLOB_META_DIR, BLOB_DATA_DIR, BIN_DIR]
            .iter()
            .any(|d| name.starts_with(d) && name.len() > d.len());
        if !known {
            return Err(BackupError::Corrupt(format!(
                "{name} is not part of an imix backup"
            )));
        }
        let (digest, found) = if name.starts_with(RECORDS_DIR) || name.starts_with(BLOB_META_DIR) {
            if size > MAX_TEXT_FILE {
                return Err(BackupError::Corrupt(format!("{name} is too large")));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(read_err)?;
            let digest = FileDigest {
                size: data.len() as u64,
                sha256: hex_sha256(&data),
            };
            if name.starts_with(RECORDS_DIR) {
                (digest, Found::Records(data))
            } else {
                let meta: BlobMeta = serde_json::from_slice(&data).map_err(|e| {
                    BackupError::Corrupt(format!("{name} is not blob metadata ({e})"))
                })?;
                (digest, Found::BlobMeta(meta))
            }
        } else if name.starts_with(BLOB_DATA_DIR) && load {
            if size > MAX_BLOB {
                return Err(BackupError::Corrupt(format!("{name} is too large")));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(read_err)?;
            let digest = FileDigest {
                size: data.len() as u64,
                sha256: hex_sha256(&data),
            };
            let key = name[BLOB_DATA_DIR.len()..].to_owned();
            (digest, Found::BlobData { key, data })
        } else {
            let mut reader = Hashing {
                inner: &mut entry,
                hasher: Sha256::new(),
                read: 0,
            };
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(read_err)?;
            let digest = FileDigest {
                size: reader.read,
                sha256: hex::encode(reader.hasher.finalize()),
            };
            (digest, Found::Other)
        };
        if let Some(p) = progress {
            p.add_bytes(digest.size);
        }
        on_file(&name, digest, found)?;
    }
    manifest.ok_or_else(|| {
        if seen_any {
            BackupError::Corrupt("the archive has no manifest (it was cut short?)".into())
        } else {
            BackupError::Foreign("the archive holds no imix backup".into())
        }
    })
}

/// Verifies the archive at `path` as a whole, without changing anything: it is an imix
/// backup of a format this version reads, every file is listed in the manifest with the
/// size and SHA-256 it has (and every listed file is there, once), every records line names
/// its kind and the counts per kind match, and each blob's bytes match its metadata.
/// Blocking: call it on a blocking thread.
pub fn verify(path: &Path, progress: Option<&Progress>) -> Result<Manifest> {
    let mut digests: BTreeMap<String, FileDigest> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_meta: Option<BlobMeta> = None;
    let manifest = scan(path, false, progress, |name, digest, found| {
        match found {
            Found::Records(data) => {
                for (i, line) in data.split(|b| *b == b'\n').enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    let k: KindOnly = serde_json::from_slice(line).map_err(|e| {
                        BackupError::Corrupt(format!("{name} line {} is not a record ({e})", i + 1))
                    })?;
                    *counts.entry(k.kind).or_default() += 1;
                }
            }
            Found::BlobMeta(meta) => {
                if format!("{BLOB_META_DIR}{}", meta.key) != name {
                    return Err(BackupError::Corrupt(format!(
                        "{name} describes another blob ({})",
                        meta.key
                    )));
                }
                imix_core::store::validate_blob_key(&meta.key)
                    .map_err(|e| BackupError::Corrupt(format!("{name}: {e}")))?;
                last_meta = Some(meta);
            }
            Found::BlobData { .. } | Found::Other => {
                if let Some(key) = name.strip_prefix(BLOB_DATA_DIR) {
                    let meta = last_meta.take().filter(|m| m.key == key).ok_or_else(|| {
                        BackupError::Corrupt(format!("{name} has no metadata before it"))
                    })?;
                    if meta.size != digest.size || meta.sha256 != digest.sha256 {
                        return Err(BackupError::Corrupt(format!(
                            "{name} does not match its recorded size and SHA-256"
                        )));
                    }
                    *counts.entry("blob".to_owned()).or_default() += 1;
                }
            }
        }
        if digests.insert(name.to_owned(), digest).is_some() {
            return Err(BackupError::Corrupt(format!(
                "{name} is in the archive twice"
            )));
        }
        Ok(())
    })?;
    for (name, digest) in &digests {
        match manifest.files.get(name) {
            None => {
                return Err(BackupError::Corrupt(format!(
                    "{name} is not listed in the manifest"
                )))
            }
            Some(listed) if listed != digest => {
                return Err(BackupError::Corrupt(format!(
                    "{name} does not match its checksum (SHA-256 {} expected, {} found)",
                    listed.sha256, digest.sha256
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(missing) = manifest.files.keys().find(|k| !digests.contains_key(*k)) {
        return Err(BackupError::Corrupt(format!(
            "{missing} is listed in the manifest but missing"
        )));
    }
    let listed: BTreeMap<&String, &u64> = manifest.counts.iter().filter(|(_, n)| **n > 0).collect();
    let found: BTreeMap<&String, &u64> = counts.iter().collect();
    if listed != found {
        return Err(BackupError::Corrupt(format!(
            "the records do not match the manifest's counts (listed {listed:?}, found {found:?})"
        )));
    }
    if let Some(exe) = &manifest.executable {
        if !manifest.files.contains_key(exe) {
            return Err(BackupError::Corrupt(format!(
                "the executable {exe} is not in the archive"
            )));
        }
    }
    Ok(manifest)
}

/// Copies the executable of the verified archive at `path` (whose manifest is `manifest`)
/// into a new file in `dir` named `prefix…`, checking its size and SHA-256 against the
/// manifest on the way, flushed to disk; answers the file's path (removed when dropped).
/// An archive without an executable is [`BackupError::Unsupported`]. Blocking: call it on
/// a blocking thread.
pub fn extract_executable(
    path: &Path,
    manifest: &Manifest,
    dir: &Path,
    prefix: &str,
) -> Result<tempfile::TempPath> {
    let name = manifest
        .executable
        .as_deref()
        .ok_or_else(|| BackupError::Unsupported("the archive holds no executable".into()))?;
    let expected = manifest.files.get(name).ok_or_else(|| {
        BackupError::Corrupt(format!("the executable {name} is not in the manifest"))
    })?;
    let file = File::open(path).map_err(BackupError::io("open the backup"))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(1 << 20, file)));
    let entries = archive
        .entries()
        .map_err(|e| BackupError::Corrupt(format!("the archive cannot be read ({e})")))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| BackupError::Corrupt(format!("the archive cannot be read ({e})")))?;
        let is_it = entry
            .path()
            .ok()
            .and_then(|p| p.to_str().map(|p| p == name))
            == Some(true);
        if !is_it {
            continue;
        }
        let mut temp = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(dir)
            .map_err(BackupError::io("create the executable's file"))?;
        let mut reader = Hashing {
            inner: entry,
            hasher: Sha256::new(),
            read: 0,
        };
        std::io::copy(&mut reader, temp.as_file_mut())
            .map_err(|e| BackupError::Corrupt(format!("{name} cannot be read ({e})")))?;
        let sha256 = hex::encode(reader.hasher.finalize());
        if reader.read != expected.size || sha256 != expected.sha256 {
            return Err(BackupError::Corrupt(format!(
                "{name} does not match its checksum (SHA-256 {} expected, {sha256} found)",
                expected.sha256
            )));
        }
        temp.as_file()
            .sync_all()
            .map_err(BackupError::io("write the executable's file"))?;
        // Closed before it is run: a file open for writing cannot be executed (ETXTBSY).
        return Ok(temp.into_temp_path());
    }
    Err(BackupError::Corrupt(format!(
        "the executable {name} is not in the archive"
    )))
}

/// Reads only as far as needed to return the manifest of the archive at `path`, without
/// checking the files against it (for listing; a restore always runs [`verify`]).
pub fn read_manifest_summary(path: &Path) -> Result<Manifest> {
    scan(path, false, None, |_, _, _| Ok(()))
}

/// One blob read back from a verified archive.
pub(crate) struct Item(BlobMeta, Bytes);

/// Reads `path` again (after [`verify`]) and sends its records on `records`, then its blobs
/// on `blobs`; each file is checked once more against `expected` (the file must not have
/// changed since it was verified). Blocking.
fn read_items(
    path: &Path,
    expected: &Manifest,
    records: mpsc::Sender<imix_core::Result<Record>>,
    blobs: mpsc::Sender<Item>,
) -> Result<()> {
    let mut records = Some(records);
    let mut meta: Option<BlobMeta> = None;
    let stopped = || BackupError::io("restore")(std::io::Error::other("the restore stopped"));
    scan(path, true, None, |name, digest, found| {
        if expected.files.get(name) != Some(&digest) {
            return Err(BackupError::Corrupt(format!(
                "{name} changed since the archive was verified"
            )));
        }
        match found {
            Found::Records(data) => {
                let Some(tx) = &records else {
                    return Err(BackupError::Corrupt(format!(
                        "{name} comes after the blobs"
                    )));
                };
                for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let record: imix_core::Result<Record> = serde_json::from_slice(line)
                        .map_err(|e| imix_core::Error::invalid("record", e.to_string()));
                    tx.blocking_send(record).map_err(|_| stopped())?;
                }
            }
            Found::BlobMeta(m) => {
                // The records are all sent: the import may finish while blobs are read.
                records = None;
                meta = Some(m);
            }
            Found::BlobData { key, data } => {
                let m = meta
                    .take()
                    .filter(|m| m.key == key)
                    .ok_or_else(|| BackupError::Corrupt(format!("{name} has no metadata")))?;
                blobs
                    .blocking_send(Item(m, Bytes::from(data)))
                    .map_err(|_| stopped())?;
            }
            Found::Other => {}
        }
        Ok(())
    })?;
    Ok(())
}

/// Imports the verified archive at `path` (whose manifest is `manifest`) into `store`,
/// which must be empty: records through `transfer`, then blobs through the blob port.
/// Checks that every record and blob was stored.
pub(crate) async fn import_archive(
    store: &Store,
    transfer: &Transfer,
    path: &Path,
    manifest: &Manifest,
    progress: &Progress,
) -> Result<u64> {
    progress
        .total
        .store(manifest.total_records(), Ordering::Relaxed);
    progress.set_stage("restoring records");
    let (record_tx, record_rx) = mpsc::channel::<imix_core::Result<Record>>(256);
    let (blob_tx, mut blob_rx) = mpsc::channel::<Item>(1);
    let reader = {
        let path = path.to_path_buf();
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || read_items(&path, &manifest, record_tx, blob_tx))
    };
    let counted = futures::stream::unfold(record_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    })
    .inspect(|_| {
        progress.records.fetch_add(1, Ordering::Relaxed);
    });
    let imported = transfer.import(counted).await;
    let imported = match imported {
        Ok(counts) => counts,
        Err(e) => {
            // The reader's own error (a damaged file) is the real cause, when there is one.
            drop(blob_rx);
            if let Ok(Err(read)) = reader.await {
                return Err(read);
            }
            return Err(e.into());
        }
    };
    progress.set_stage("restoring blobs");
    let mut blobs = 0u64;
    while let Some(Item(meta, data)) = blob_rx.recv().await {
        store.blobs.restore(&meta, data).await?;
        blobs += 1;
        progress.blobs.fetch_add(1, Ordering::Relaxed);
    }
    reader
        .await
        .map_err(|e| BackupError::io("read the backup")(std::io::Error::other(e)))??;
    let mut got: BTreeMap<String, u64> = imported.iter().map(|(k, n)| (k.to_owned(), n)).collect();
    if blobs > 0 {
        got.insert("blob".to_owned(), blobs);
    }
    let want: BTreeMap<String, u64> = manifest
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    if got != want {
        return Err(BackupError::Corrupt(format!(
            "the restore stored {got:?}, the manifest lists {want:?}"
        )));
    }
    progress.set_stage("done");
    Ok(imported.total() + blobs)
}
