//! Contact import jobs on MongoDB: collection `contact_imports`, `_id` the job id, the
//! job's own serde shape plus `due_ms` and `lease_ms` (Unix milliseconds, absent when
//! `None`). A claim is one `findOneAndUpdate` that sets the lease and raises `attempts`
//! and `version` in the same single-document atomic step, so two replicas never claim one
//! job.

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    store::{
        mongo::{
            support::{
                backend_err, from_doc, missing_or_stale, scope_filter, to_doc, version_bson,
            },
            IndexSpec, MongoMigration,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{self, doc, Bson, Document},
    options::ReturnDocument,
    Collection, Database,
};

use super::ContactImportRepository;
use crate::contacts::imports::{ContactImport, ContactImportId};

/// The import jobs' collection.
pub const CONTACT_IMPORTS: &str = "contact_imports";

const DUE_MS: &str = "due_ms";
const LEASE_MS: &str = "lease_ms";
const JOB: &str = "contact import";

/// The import jobs' schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0004_imports",
    indexes: INDEXES,
}];

/// Lists read a tenant's jobs by id; claims look up by due time.
const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: CONTACT_IMPORTS,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACT_IMPORTS,
        name: "by_due",
        keys: &[(DUE_MS, 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

/// Import jobs on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoContactImports {
    db: Database,
}

impl MongoContactImports {
    /// The jobs on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn jobs(&self) -> Collection<Document> {
        self.db.collection(CONTACT_IMPORTS)
    }
}

fn job_doc(job: &ContactImport) -> Result<Document> {
    let mut d = to_doc(job, &job.id.to_string(), JOB)?;
    if let Some(due) = job.due_at {
        d.insert(DUE_MS, due.timestamp_millis());
    }
    if let Some(lease) = job.lease_until {
        d.insert(LEASE_MS, lease.timestamp_millis());
    }
    Ok(d)
}

fn decode(d: Document) -> Result<ContactImport> {
    from_doc(d, JOB, &[DUE_MS, LEASE_MS])
}

#[async_trait]
impl ContactImportRepository for MongoContactImports {
    async fn insert(&self, job: &ContactImport) -> Result<()> {
        self.jobs()
            .insert_one(job_doc(job)?)
            .await
            .map(drop)
            .map_err(backend_err("store a contact import"))
    }

    async fn get(&self, scope: Scope, id: ContactImportId) -> Result<ContactImport> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .jobs()
            .find_one(filter)
            .await
            .map_err(backend_err("read a contact import"))?
        {
            Some(d) => decode(d),
            None => Err(Error::NotFound {
                entity: JOB,
                id: id.to_string(),
            }),
        }
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ContactImport>> {
        let limit = page.effective_limit()?;
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        if let Some(cursor) = page.validated_cursor()? {
            filter.insert("_id", doc! { "$lt": cursor });
        }
        let docs: Vec<Document> = self
            .jobs()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(backend_err("list contact imports"))?
            .try_collect()
            .await
            .map_err(backend_err("list contact imports"))?;
        let items = docs
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<ContactImport>>>()?;
        Ok(Page::from_overfetch(items, limit, |j| j.id.to_string()))
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ContactImport>> {
        let now_ms = now.timestamp_millis();
        let filter = doc! {
            DUE_MS: { "$lte": now_ms },
            "$or": [
                { LEASE_MS: Bson::Null },
                { LEASE_MS: { "$lte": now_ms } },
            ],
        };
        let lease = bson::to_bson(&lease_until).map_err(|e| Error::Corrupt {
            entity: JOB,
            source: e.into(),
        })?;
        // Mirrors SqliteContactImports's claim field by field.
        let update = doc! {
            "$set": { "lease_until": lease, LEASE_MS: lease_until.timestamp_millis() },
            "$inc": { "attempts": 1_i64, "version": 1_i64 },
        };
        self.jobs()
            .find_one_and_update(filter, update)
            .sort(doc! { DUE_MS: 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_err("claim a contact import"))?
            .map(decode)
            .transpose()
    }

    async fn update(&self, job: &ContactImport) -> Result<ContactImport> {
        let mut next = job.clone();
        next.version += 1;
        let id = job.id.to_string();
        let result = self
            .jobs()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(job.version)? },
                job_doc(&next)?,
            )
            .await
            .map_err(backend_err("update a contact import"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(missing_or_stale(self.jobs(), Document::new(), JOB, id, job.version).await)
    }
}
