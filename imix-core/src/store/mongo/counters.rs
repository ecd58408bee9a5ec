//! Usage counters on MongoDB: collection `counters`, documents
//! `{_id: key, value: i64, expires_at: date | null}`.
//!
//! Only single-document atomic operations, so it works on a standalone `mongod` and between
//! replicas. `try_add` is one conditional find-one-and-update whose filter carries the limit
//! (`value <= limit - units`) and liveness (`expires_at` null or in the future). When it
//! matches nothing, the document is read to tell the cases apart: missing (the first add
//! inserts it; a concurrent first add loses on `_id` with E11000 and retries), expired
//! (reset by a conditional `$set`), full (rejected), or changed a moment ago (retry).
//!
//! The first add is an explicit insert rather than an upsert on purpose: every write then
//! has an unambiguous outcome. (SecantusDB, the test server, sometimes answers a concurrent
//! upserting find-one-and-update with "no document" although it applied the update; a
//! retry would count twice.) A TTL index on `expires_at` removes expired counters
//! eventually; the logical expiry check does not depend on it.

use mongodb::options::ReturnDocument;

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    store::{CounterOutcome, CounterRepository},
    Timestamp,
};

pub(super) const COUNTERS: &str = "counters";

/// How often a conditional write is retried after losing a race. Each retry follows a
/// change by another writer, so running out means sustained contention on one counter.
const MAX_ATTEMPTS: usize = 64;

fn date(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 512 {
        return Err(Error::invalid("key", "must be 1-512 bytes"));
    }
    Ok(())
}

fn to_i64(value: u64, field: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(field, "is out of range"))
}

fn value_of(d: &Document) -> Result<u64> {
    let v = match d.get("value") {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        // Integral doubles only; anything else is not a counter this adapter wrote.
        Some(Bson::Double(v)) if v.fract() == 0.0 => *v as i64,
        _ => {
            return Err(Error::Corrupt {
                entity: "counter",
                source: "value is not an integer".into(),
            })
        }
    };
    Ok(u64::try_from(v).unwrap_or(0))
}

/// Whether the counter document has expired at `now`.
fn expired(d: &Document, now: bson::DateTime) -> bool {
    matches!(d.get("expires_at"), Some(Bson::DateTime(e)) if *e <= now)
}

/// A filter clause matching counters that have not expired at `now`.
fn live(now: bson::DateTime) -> Document {
    doc! { "$or": [ { "expires_at": Bson::Null }, { "expires_at": { "$gt": now } } ] }
}

impl MongoStore {
    fn counters(&self) -> Collection<Document> {
        self.db.collection(COUNTERS)
    }

    async fn read_counter(&self, key: &str) -> Result<Option<Document>> {
        self.counters()
            .find_one(doc! { "_id": key })
            .await
            .map_err(backend_err("read a counter"))
    }
}

#[async_trait]
impl CounterRepository for MongoStore {
    async fn try_add(
        &self,
        key: &str,
        units: u64,
        limit: Option<u64>,
        expires_at: Option<Timestamp>,
    ) -> Result<CounterOutcome> {
        const ACTION: &str = "add to a counter";
        check_key(key)?;
        let units_i = to_i64(units, "units")?;
        // A limit beyond i64 is as good as none: no counter can reach it.
        let limit_i = limit.and_then(|l| i64::try_from(l).ok());
        let expiry = expires_at.map(date).map_or(Bson::Null, Bson::DateTime);
        if limit_i.is_some_and(|l| units_i > l) {
            let value = CounterRepository::get(self, key).await?;
            return Ok(CounterOutcome::Rejected { value });
        }
        for _ in 0..MAX_ATTEMPTS {
            let now = date(crate::now());
            // A live counter with room for the units: increment it.
            let mut filter = doc! { "_id": key };
            filter.extend(live(now));
            if let Some(l) = limit_i {
                filter.insert("value", doc! { "$lte": l - units_i });
            }
            let added = self
                .counters()
                .find_one_and_update(
                    filter,
                    doc! { "$inc": { "value": units_i }, "$set": { "expires_at": expiry.clone() } },
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(backend_err(ACTION))?;
            if let Some(d) = added {
                return Ok(CounterOutcome::Added {
                    value: value_of(&d)?,
                });
            }
            // No match: missing, expired, full, or changed a moment ago.
            let Some(current) = self.read_counter(key).await? else {
                // The first add creates it. Two first adds race on `_id`: the loser
                // retries and increments the winner's document.
                let created = self
                    .counters()
                    .insert_one(doc! { "_id": key, "value": units_i, "expires_at": expiry.clone() })
                    .await;
                match created {
                    Ok(_) => return Ok(CounterOutcome::Added { value: units }),
                    Err(e) if is_duplicate_key(&e) => continue,
                    Err(e) => return Err(Error::backend(ACTION, e)),
                }
            };
            if expired(&current, now) {
                let reset = self
                    .counters()
                    .find_one_and_update(
                        doc! { "_id": key, "expires_at": { "$lte": now } },
                        doc! { "$set": { "value": units_i, "expires_at": expiry.clone() } },
                    )
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(backend_err(ACTION))?;
                match reset {
                    Some(d) => {
                        return Ok(CounterOutcome::Added {
                            value: value_of(&d)?,
                        })
                    }
                    None => continue, // someone else reset it first
                }
            }
            let value = value_of(&current)?;
            if let Some(l) = limit_i {
                if to_i64(value, "value")? + units_i > l {
                    return Ok(CounterOutcome::Rejected { value });
                }
            }
            // It has room now: it was lowered concurrently. Try again.
        }
        Err(Error::backend(
            ACTION,
            format!("counter {key} kept changing under {MAX_ATTEMPTS} attempts"),
        ))
    }

    async fn subtract(&self, key: &str, units: u64) -> Result<u64> {
        const ACTION: &str = "subtract from a counter";
        check_key(key)?;
        let units_i = to_i64(units, "units")?;
        for _ in 0..MAX_ATTEMPTS {
            let now = date(crate::now());
            // Enough to take off: decrement.
            let mut filter = doc! { "_id": key, "value": { "$gte": units_i } };
            filter.extend(live(now));
            let updated = self
                .counters()
                .find_one_and_update(filter, doc! { "$inc": { "value": -units_i } })
                .return_document(ReturnDocument::After)
                .await
                .map_err(backend_err(ACTION))?;
            if let Some(d) = updated {
                return value_of(&d);
            }
            // Less than that: floor at 0.
            let mut filter = doc! { "_id": key, "value": { "$lt": units_i } };
            filter.extend(live(now));
            let floored = self
                .counters()
                .find_one_and_update(filter, doc! { "$set": { "value": 0_i64 } })
                .await
                .map_err(backend_err(ACTION))?;
            if floored.is_some() {
                return Ok(0);
            }
            // Neither matched: missing or expired (0), or the value changed in between.
            match self.read_counter(key).await? {
                None => return Ok(0),
                Some(d) if expired(&d, now) => return Ok(0),
                Some(_) => continue,
            }
        }
        Err(Error::backend(
            ACTION,
            format!("counter {key} kept changing under {MAX_ATTEMPTS} attempts"),
        ))
    }

    async fn get(&self, key: &str) -> Result<u64> {
        check_key(key)?;
        let now = date(crate::now());
        match self.read_counter(key).await? {
            Some(d) if !expired(&d, now) => value_of(&d),
            _ => Ok(0),
        }
    }

    async fn set(&self, key: &str, value: u64, expires_at: Option<Timestamp>) -> Result<()> {
        const ACTION: &str = "set a counter";
        check_key(key)?;
        let value = to_i64(value, "value")?;
        let expiry = expires_at.map(date).map_or(Bson::Null, Bson::DateTime);
        let update = doc! { "$set": { "value": value, "expires_at": expiry } };
        // Two concurrent upserts of a missing key: one inserts, the other hits E11000 and
        // then updates the document that now exists.
        for _ in 0..2 {
            match self
                .counters()
                .update_one(doc! { "_id": key }, update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_duplicate_key(&e) => continue,
                Err(e) => return Err(Error::backend(ACTION, e)),
            }
        }
        Err(Error::backend(
            ACTION,
            format!("counter {key} could not be written"),
        ))
    }
}
