//! Usage counters on SQLite: table `counters (key, value, expires_at)`.
//!
//! Every write runs in the writer's `BEGIN IMMEDIATE` transaction (see [`super::engine`]), so
//! it is atomic even between two processes sharing the file. `try_add` is a conditional
//! `UPDATE … WHERE value + units <= limit`, falling back to an insert for a key never
//! written. Expiry times are fixed-width RFC 3339 strings (milliseconds, `Z`), so SQL string
//! comparison is time comparison; an expired row counts as 0. Expired rows are deleted
//! whenever a new counter is created, so daily counters do not pile up.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    store::{CounterOutcome, CounterRepository},
    Timestamp,
};

fn fixed(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Validates a counter key.
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 512 {
        return Err(Error::invalid("key", "must be 1-512 bytes"));
    }
    Ok(())
}

/// A count as SQLite stores it (its integers are `i64`).
fn to_i64(value: u64, field: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(field, "is out of range"))
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The counter's live value: `None` when there is no row, `Some(0)` when the
/// row has expired.
fn live_value(c: &Connection, key: &str, now: &str) -> rusqlite::Result<Option<u64>> {
    c.query_row(
        "SELECT CASE WHEN expires_at IS NOT NULL AND expires_at <= ?2 THEN 0 ELSE value END
         FROM counters WHERE key = ?1",
        params![key, now],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.map(to_u64))
}

#[async_trait]
impl CounterRepository for SqliteStore {
    async fn try_add(
        &self,
        key: &str,
        units: u64,
        limit: Option<u64>,
        expires_at: Option<Timestamp>,
    ) -> Result<CounterOutcome> {
        check_key(key)?;
        let key = key.to_owned();
        let units_i = to_i64(units, "units")?;
        // A limit beyond i64 is as good as none: no counter can reach it.
        let limit_i = limit.and_then(|l| i64::try_from(l).ok());
        let expires = expires_at.map(fixed);
        const ACTION: &str = "add to a counter";
        self.write(ACTION, move |c| {
            let now = fixed(crate::now());
            // An expired counter restarts from 0 (and takes the new expiry).
            let added: Option<i64> = c
                .query_row(
                    "UPDATE counters SET
                        value = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?4
                                     THEN ?2 ELSE value + ?2 END,
                        expires_at = ?5
                     WHERE key = ?1
                       AND (?3 IS NULL OR
                            (CASE WHEN expires_at IS NOT NULL AND expires_at <= ?4
                                  THEN 0 ELSE value END) + ?2 <= ?3)
                     RETURNING value",
                    params![key, units_i, limit_i, now, expires],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err(ACTION))?;
            let outcome = match added {
                Some(value) => CounterOutcome::Added {
                    value: to_u64(value),
                },
                None => match live_value(c, &key, &now).map_err(db_err(ACTION))? {
                    // The row exists: the limit refused the add.
                    Some(value) => CounterOutcome::Rejected { value },
                    None if limit_i.is_some_and(|l| units_i > l) => {
                        CounterOutcome::Rejected { value: 0 }
                    }
                    None => {
                        exec(c,
                            "DELETE FROM counters WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                            params![now],
                        )
                        .map_err(db_err(ACTION))?;
                        exec(c,
                            "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)",
                            params![key, units_i, expires],
                        )
                        .map_err(db_err(ACTION))?;
                        CounterOutcome::Added { value: units }
                    }
                },
            };
            Ok(outcome)
        })
        .await
    }

    async fn subtract(&self, key: &str, units: u64) -> Result<u64> {
        check_key(key)?;
        let key = key.to_owned();
        let units_i = to_i64(units, "units")?;
        const ACTION: &str = "subtract from a counter";
        self.write(ACTION, move |c| {
            let now = fixed(crate::now());
            let value: Option<i64> = c
                .query_row(
                    "UPDATE counters SET value = MAX(value - ?2, 0)
                     WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?3)
                     RETURNING value",
                    params![key, units_i, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err(ACTION))?;
            Ok(value.map(to_u64).unwrap_or(0))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<u64> {
        check_key(key)?;
        let key = key.to_owned();
        const ACTION: &str = "read a counter";
        self.read(ACTION, move |c| {
            let now = fixed(crate::now());
            let value = live_value(c, &key, &now).map_err(db_err(ACTION))?;
            Ok(value.unwrap_or(0))
        })
        .await
    }

    async fn set(&self, key: &str, value: u64, expires_at: Option<Timestamp>) -> Result<()> {
        check_key(key)?;
        let key = key.to_owned();
        let value = to_i64(value, "value")?;
        let expires = expires_at.map(fixed);
        const ACTION: &str = "set a counter";
        self.write(ACTION, move |c| {
            exec(
                c,
                "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET
                    value = excluded.value, expires_at = excluded.expires_at",
                params![key, value, expires],
            )
            .map_err(db_err(ACTION))?;
            Ok(())
        })
        .await
    }
}
