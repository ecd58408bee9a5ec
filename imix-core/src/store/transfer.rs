//! Export and import of all data, as a stream of [`Record`]s, through one registry.
//!
//! Built only on the storage ports, so it works between any two backends: a backup taken on
//! SQLite restores into MongoDB and back. Each capability registers its records with a
//! [`Transfer`] as [`RecordSet`]s, in the order an import needs them (a tenant before its
//! users, an account before its templates); the shared primitives (settings documents, the
//! audit log, blobs) always come last.
//!
//! ```no_run
//! # async fn demo(from: imix_core::store::Store, to: imix_core::store::Store) -> imix_core::Result<()> {
//! use imix_core::store::transfer::Transfer;
//! // A capability adds its sets: `source.register(...)`, see `RecordSet` and `paged`.
//! let source = Transfer::new(&from);
//! let target = Transfer::new(&to);
//! let copied = target.import(source.export()).await?;
//! println!("copied {} records", copied.total());
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, future::Future, sync::Arc};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use futures::{stream::BoxStream, Stream, StreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{BlobMeta, BlobStore, Page, PageRequest, Scope, Store, MAX_PAGE_SIZE};
use crate::{Error, Result};

/// One exported record: its kind (`tenant`, `user`, `blob`, …) and its fields. Serializes as
/// `{"kind": …, "record": {…}}`, one record per line in backup files; the record's fields
/// are kept apart from `kind`, so a record may have a field of any name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which [`RecordSet`] it belongs to.
    pub kind: String,
    /// The record's own fields.
    #[serde(rename = "record")]
    pub fields: Map<String, Value>,
}

impl Record {
    /// A record of `kind` from a serializable value (which must serialize as an object).
    pub fn of<T: Serialize>(kind: &str, value: &T) -> Result<Self> {
        match serde_json::to_value(value) {
            Ok(Value::Object(fields)) => Ok(Self {
                kind: kind.to_owned(),
                fields,
            }),
            Ok(_) => Err(Error::invalid("record", "does not serialize as an object")),
            Err(e) => Err(Error::Corrupt {
                entity: "record",
                source: e.into(),
            }),
        }
    }

    /// The record's fields as `T`.
    pub fn parse<T: DeserializeOwned>(self) -> Result<T> {
        serde_json::from_value(Value::Object(self.fields))
            .map_err(|e| Error::invalid(self.kind, format!("is not a valid record: {e}")))
    }
}

/// The records of one kind, as a capability registers them with a [`Transfer`].
#[async_trait]
pub trait RecordSet: Send + Sync {
    /// The kind its records carry; unique within a registry.
    fn kind(&self) -> &'static str;
    /// A page of records after `cursor` (`None`: from the start) and the cursor of the
    /// next page (`None` when this was the last).
    async fn export_page(&self, cursor: Option<String>) -> Result<(Vec<Record>, Option<String>)>;
    /// Stores one exported record as it was.
    async fn import(&self, record: Record) -> Result<()>;
    /// Whether the set holds no record. The default reads a first page; override it when
    /// that is costly.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.export_page(None).await?.0.is_empty())
    }
}

/// A [`RecordSet`] from a list function (paged by id, platform-wide) and an insert
/// function, for the common case of a repository with `list` and `insert`.
///
/// ```text
/// let repo = tenants.clone();
/// let insert_repo = tenants.clone();
/// transfer.register(paged(
///     "tenant",
///     move |page| { let r = repo.clone(); async move { r.list(Scope::Platform, page).await } },
///     move |t: Tenant| { let r = insert_repo.clone(); async move { r.insert(&t).await } },
/// ));
/// ```
pub fn paged<T, L, LF, I, IF>(kind: &'static str, list: L, insert: I) -> Arc<dyn RecordSet>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    L: Fn(PageRequest) -> LF + Send + Sync + 'static,
    LF: Future<Output = Result<Page<T>>> + Send,
    I: Fn(T) -> IF + Send + Sync + 'static,
    IF: Future<Output = Result<()>> + Send,
{
    Arc::new(Paged {
        kind,
        list,
        insert,
        _record: std::marker::PhantomData::<fn() -> T>,
    })
}

struct Paged<T, L, I> {
    kind: &'static str,
    list: L,
    insert: I,
    _record: std::marker::PhantomData<fn() -> T>,
}

#[async_trait]
impl<T, L, LF, I, IF> RecordSet for Paged<T, L, I>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    L: Fn(PageRequest) -> LF + Send + Sync + 'static,
    LF: Future<Output = Result<Page<T>>> + Send,
    I: Fn(T) -> IF + Send + Sync + 'static,
    IF: Future<Output = Result<()>> + Send,
{
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn export_page(&self, cursor: Option<String>) -> Result<(Vec<Record>, Option<String>)> {
        let page = (self.list)(PageRequest {
            cursor,
            limit: Some(MAX_PAGE_SIZE),
        })
        .await?;
        let records = page
            .items
            .iter()
            .map(|item| Record::of(self.kind, item))
            .collect::<Result<Vec<_>>>()?;
        Ok((records, page.next_cursor))
    }

    async fn import(&self, record: Record) -> Result<()> {
        (self.insert)(record.parse()?).await
    }

    async fn is_empty(&self) -> Result<bool> {
        let page = (self.list)(PageRequest::first(1)).await?;
        Ok(page.items.is_empty())
    }
}

/// How many records an import stored, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCounts(BTreeMap<String, u64>);

impl ImportCounts {
    /// How many records of `kind`.
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// How many records in all.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Every kind with its count, by kind.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// The registry of every capability's records: exports them all as one stream and imports
/// such a stream into an empty store.
#[derive(Clone)]
pub struct Transfer {
    sets: Vec<Arc<dyn RecordSet>>,
    shared: Vec<Arc<dyn RecordSet>>,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}

impl Transfer {
    /// A registry holding the shared primitives of `store` (settings, audit log, blobs);
    /// capabilities [`Transfer::register`] theirs.
    pub fn new(store: &Store) -> Self {
        let settings = store.settings.clone();
        let settings_in = store.settings.clone();
        let audit = store.audit.clone();
        let audit_in = store.audit.clone();
        let shared: Vec<Arc<dyn RecordSet>> = vec![
            Arc::new(SettingsSet {
                settings,
                settings_in,
            }),
            paged(
                "audit",
                move |page| {
                    let audit = audit.clone();
                    async move { audit.list(Scope::Platform, page).await }
                },
                move |entry: crate::model::AuditEntry| {
                    let audit = audit_in.clone();
                    async move { audit.append(&entry).await }
                },
            ),
            Arc::new(BlobSet {
                blobs: store.blobs.clone(),
            }),
        ];
        Self {
            sets: Vec::new(),
            shared,
        }
    }

    /// Adds a capability's records; they are exported after those registered before.
    /// Registering a kind twice is a programming error and panics.
    pub fn register(&mut self, set: Arc<dyn RecordSet>) -> &mut Self {
        assert!(
            !self.kinds().any(|k| k == set.kind()),
            "record kind {} registered twice",
            set.kind()
        );
        self.sets.push(set);
        self
    }

    /// The kinds, in export order.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.all().map(|s| s.kind())
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn RecordSet>> {
        self.sets.iter().chain(self.shared.iter())
    }

    /// Every record, kind by kind in registration order, the shared primitives last.
    pub fn export(&self) -> BoxStream<'static, Result<Record>> {
        self.export_except(&[])
    }

    /// [`Transfer::export`] without the records of the `skip` kinds (whose sets are never
    /// read): a backup writes blobs' bytes as files of their own instead of `blob` records.
    pub fn export_except(&self, skip: &[&str]) -> BoxStream<'static, Result<Record>> {
        let sets: Vec<Arc<dyn RecordSet>> = self
            .all()
            .filter(|s| !skip.contains(&s.kind()))
            .cloned()
            .collect();
        let state = (sets, 0usize, None::<String>, false);
        futures::stream::unfold(state, |(sets, index, cursor, failed)| async move {
            if failed {
                return None;
            }
            let mut index = index;
            let mut cursor = cursor;
            loop {
                let set = sets.get(index)?;
                match set.export_page(cursor.take()).await {
                    Err(e) => return Some((vec![Err(e)], (sets, index, None, true))),
                    Ok((records, next)) => {
                        let (next_index, next_cursor) = match next {
                            Some(c) => (index, Some(c)),
                            None => (index + 1, None),
                        };
                        if records.is_empty() && next_cursor.is_none() {
                            index = next_index;
                            continue;
                        }
                        let batch = records.into_iter().map(Ok).collect::<Vec<_>>();
                        return Some((batch, (sets, next_index, next_cursor, false)));
                    }
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    /// Whether no registered set holds a record.
    pub async fn is_empty(&self) -> Result<bool> {
        for set in self.all() {
            if !set.is_empty().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stores every record of `records` into this (empty) store. Refuses a store that
    /// holds data, and a record of a kind nobody registered. Not atomic: when a record is
    /// refused, those before it stay stored (the error says how many) and the store must be
    /// emptied (a fresh data directory or database) before the import is retried.
    pub async fn import<S>(&self, records: S) -> Result<ImportCounts>
    where
        S: Stream<Item = Result<Record>> + Send,
    {
        if !self.is_empty().await? {
            return Err(Error::invalid(
                "store",
                "import needs an empty store; this one already holds data",
            ));
        }
        let by_kind: BTreeMap<&'static str, &Arc<dyn RecordSet>> =
            self.all().map(|s| (s.kind(), s)).collect();
        let mut counts = ImportCounts::default();
        let mut records = std::pin::pin!(records);
        let mut position = 0u64;
        // Records of one kind are stored several at a time (a store commits concurrent
        // writes together: the embedded one in one transaction, MongoDB in parallel), but a
        // kind is finished before the next starts, since later kinds refer to earlier ones.
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut current_kind: Option<String> = None;
        // The records stored so far stay: say where it stopped and what to do.
        let stopped = |e: Error, position: u64, stored: u64| {
            tracing::error!(
                record = position,
                stored,
                error = %e,
                "import stopped; the store holds the records stored before it and must be \
                 emptied before the import is retried"
            );
            match e {
                Error::Invalid { field, message } => Error::Invalid {
                    field,
                    message: format!(
                        "{message} (record {position}; {stored} records were stored before \
                         it: empty the store before retrying)"
                    ),
                },
                other => other,
            }
        };
        loop {
            let next = records.next().await;
            let kind_changes = match &next {
                Some(Ok(record)) => current_kind.as_deref() != Some(record.kind.as_str()),
                _ => true,
            };
            // Finish the in-flight writes when the kind changes, when the window is full,
            // and at the end (or an unreadable record).
            while !in_flight.is_empty() && (kind_changes || in_flight.len() >= IMPORT_WINDOW) {
                if let Some((result, at, kind)) = in_flight.next().await {
                    let result: Result<()> = result;
                    result.map_err(|e| stopped(e, at, counts.total()))?;
                    *counts.0.entry(kind).or_default() += 1;
                }
                if !kind_changes {
                    break;
                }
            }
            let Some(record) = next else { break };
            position += 1;
            let record = record.map_err(|e| stopped(e, position, counts.total()))?;
            let Some(set) = by_kind.get(record.kind.as_str()).copied() else {
                return Err(stopped(
                    Error::invalid(
                        "kind",
                        format!("no capability stores records of kind {:?}", record.kind),
                    ),
                    position,
                    counts.total(),
                ));
            };
            let kind = record.kind.clone();
            current_kind = Some(kind.clone());
            let at = position;
            in_flight.push(async move { (set.import(record).await, at, kind) });
        }
        Ok(counts)
    }
}

/// How many records of one kind an import stores at once.
const IMPORT_WINDOW: usize = 64;

/// Settings documents: few, exported in one page.
struct SettingsSet {
    settings: Arc<dyn super::SettingsRepository>,
    settings_in: Arc<dyn super::SettingsRepository>,
}

#[async_trait]
impl RecordSet for SettingsSet {
    fn kind(&self) -> &'static str {
        "settings"
    }

    async fn export_page(&self, _cursor: Option<String>) -> Result<(Vec<Record>, Option<String>)> {
        let docs = self.settings.list_all().await?;
        let records = docs
            .iter()
            .map(|d| Record::of("settings", d))
            .collect::<Result<Vec<_>>>()?;
        Ok((records, None))
    }

    async fn import(&self, record: Record) -> Result<()> {
        self.settings_in.insert(&record.parse()?).await
    }
}

/// Blobs, with their bytes in base64, a few per page.
struct BlobSet {
    blobs: Arc<dyn BlobStore>,
}

#[derive(Serialize, Deserialize)]
struct BlobRecord {
    meta: BlobMeta,
    data_base64: String,
}

#[async_trait]
impl RecordSet for BlobSet {
    fn kind(&self) -> &'static str {
        "blob"
    }

    async fn export_page(&self, cursor: Option<String>) -> Result<(Vec<Record>, Option<String>)> {
        const BLOB_PAGE: u32 = 16;
        let metas = self.blobs.list("", cursor, BLOB_PAGE).await?;
        let next = if metas.len() == BLOB_PAGE as usize {
            metas.last().map(|m| m.key.clone())
        } else {
            None
        };
        let mut records = Vec::with_capacity(metas.len());
        for meta in metas {
            let blob = self.blobs.get(&meta.key).await?;
            records.push(Record::of(
                "blob",
                &BlobRecord {
                    meta: blob.meta,
                    data_base64: STANDARD.encode(&blob.data),
                },
            )?);
        }
        Ok((records, next))
    }

    async fn import(&self, record: Record) -> Result<()> {
        let BlobRecord { meta, data_base64 } = record.parse()?;
        let data = STANDARD
            .decode(data_base64)
            .map_err(|_| Error::invalid("data_base64", "is not valid base64"))?;
        self.blobs.restore(&meta, data.into()).await
    }

    async fn is_empty(&self) -> Result<bool> {
        Ok(self.blobs.list("", None, 1).await?.is_empty())
    }
}
