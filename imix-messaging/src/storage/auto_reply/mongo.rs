//! Auto-reply jobs on MongoDB: collection `auto_reply_jobs`, `_id` the message id (one job per
//! message), the job's own serde shape plus `due_ms` and `lease_ms` (Unix milliseconds,
//! absent when `None`). A claim is one `findOneAndUpdate` that sets the lease and raises
//! `attempts` and `version` in the same single-document atomic step, so two replicas
//! never claim one job.

use async_trait::async_trait;
use imix_core::{
    store::{
        mongo::{
            support::{
                backend_err, from_doc, missing_or_stale, scope_filter, to_doc, unique_err,
                version_bson,
            },
            IndexSpec, MongoMigration,
        },
        Scope,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{self, doc, Bson, Document},
    options::ReturnDocument,
    Collection, Database,
};

use super::AutoReplyJobRepository;
use crate::{auto_reply::AutoReplyJob, records::MessageId};

/// The auto-reply jobs' collection.
pub const AUTO_REPLY_JOBS: &str = "auto_reply_jobs";

const DUE_MS: &str = "due_ms";
const LEASE_MS: &str = "lease_ms";
const JOB: &str = "auto-reply job";

/// The auto-reply jobs' schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0012_auto_reply",
    indexes: INDEXES,
}];

/// `_id` is the message id, unique by itself; claims look up by due time.
const INDEXES: &[IndexSpec] = &[IndexSpec {
    collection: AUTO_REPLY_JOBS,
    name: "by_due",
    keys: &[(DUE_MS, 1), ("_id", 1)],
    unique_field: None,
    expire_at_field: false,
}];

/// Auto-reply jobs on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoAutoReplyJobs {
    db: Database,
}

impl MongoAutoReplyJobs {
    /// The jobs on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn jobs(&self) -> Collection<Document> {
        self.db.collection(AUTO_REPLY_JOBS)
    }
}

fn job_doc(job: &AutoReplyJob) -> Result<Document> {
    let mut d = to_doc(job, &job.message_id.to_string(), JOB)?;
    if let Some(due) = job.due_at {
        d.insert(DUE_MS, due.timestamp_millis());
    }
    if let Some(lease) = job.lease_until {
        d.insert(LEASE_MS, lease.timestamp_millis());
    }
    Ok(d)
}

fn decode(d: Document) -> Result<AutoReplyJob> {
    from_doc(d, JOB, &[DUE_MS, LEASE_MS])
}

#[async_trait]
impl AutoReplyJobRepository for MongoAutoReplyJobs {
    async fn insert(&self, job: &AutoReplyJob) -> Result<()> {
        match self.jobs().insert_one(job_doc(job)?).await {
            Ok(_) => Ok(()),
            // `_id` has no declared index: its violation is the message's second job.
            Err(e) if imix_core::store::mongo::support::is_duplicate_key(&e) => {
                Err(Error::Duplicate {
                    entity: JOB,
                    field: "message_id",
                })
            }
            Err(e) => Err(unique_err(INDEXES, JOB, "store an auto-reply job")(e)),
        }
    }

    async fn get(&self, scope: Scope, id: MessageId) -> Result<AutoReplyJob> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .jobs()
            .find_one(filter)
            .await
            .map_err(backend_err("read an auto-reply job"))?
        {
            Some(d) => decode(d),
            None => Err(Error::NotFound {
                entity: JOB,
                id: id.to_string(),
            }),
        }
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<AutoReplyJob>> {
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
        // Mirrors SqliteAutoReplyJobs's claim field by field.
        let update = doc! {
            "$set": { "lease_until": lease, LEASE_MS: lease_until.timestamp_millis() },
            "$inc": { "attempts": 1_i64, "version": 1_i64 },
        };
        self.jobs()
            .find_one_and_update(filter, update)
            .sort(doc! { DUE_MS: 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_err("claim an auto-reply job"))?
            .map(decode)
            .transpose()
    }

    async fn update(&self, job: &AutoReplyJob) -> Result<AutoReplyJob> {
        let mut next = job.clone();
        next.version += 1;
        let id = job.message_id.to_string();
        let result = self
            .jobs()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(job.version)? },
                job_doc(&next)?,
            )
            .await
            .map_err(backend_err("update an auto-reply job"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(missing_or_stale(self.jobs(), Document::new(), JOB, id, job.version).await)
    }
}
