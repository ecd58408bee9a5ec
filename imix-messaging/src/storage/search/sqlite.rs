//! The search index on the embedded SQLite database: an FTS5 table `search_fts` (compiled
//! into the bundled SQLite) holding each record's normalized tokens in column `body` and
//! one token naming its tenant and kind in column `scope`, so a query is one `MATCH`;
//! `search_records` maps a record id to its FTS row for replacement and deletion, and
//! `search_state` records the backfill as done.
//!
//! The tokenizer is `unicode61` without diacritics removal: the text is already normalized
//! in Rust ([`crate::search::normalize`]), the same function queries go through, so the
//! index and the queries agree whatever SQLite's Unicode tables say.
//!
//! [`put`] and [`remove`] run inside the messaging adapters' write closures: the record and
//! its entry are one transaction.

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::sqlite::{
        support::{db_err, exec, from_json},
        Migration, SqliteDb,
    },
    Result, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::{SearchEntry, SearchHit, SearchIndex, SearchKind};
use crate::{
    records::{Contact, Message},
    search::Terms,
};

/// The index's schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: super::MIGRATION,
    sql: "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
        scope,
        body,
        record_id UNINDEXED,
        conversation_id UNINDEXED,
        at_ms UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 0'
     );
     CREATE TABLE IF NOT EXISTS search_records (
        record_id TEXT PRIMARY KEY,
        fts_row INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS search_state (
        name TEXT PRIMARY KEY,
        done_at TEXT NOT NULL
     );",
    unique: &[],
}];

/// The `search_state` row recording the backfill as done.
const BACKFILLED: &str = "backfill";

/// The one token of column `scope`: the kind's letter and the tenant id's letters and
/// digits (an id's hyphens would split it into several tokens).
fn scope_token(tenant: TenantId, kind: SearchKind) -> String {
    let letter = match kind {
        SearchKind::Message => 'm',
        SearchKind::Contact => 'c',
    };
    std::iter::once(letter)
        .chain(
            tenant
                .to_string()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase()),
        )
        .collect()
}

/// Replaces the entry of `entry.record_id` with `entry`. Call inside the write closure that
/// stores the record.
pub fn put(c: &Connection, entry: &SearchEntry) -> rusqlite::Result<()> {
    remove(c, &entry.record_id)?;
    exec(
        c,
        "INSERT INTO search_fts (scope, body, record_id, conversation_id, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            scope_token(entry.tenant_id, entry.kind),
            entry.tokens.join(" "),
            entry.record_id,
            entry.conversation_id,
            entry.at_ms
        ],
    )?;
    let row = c.last_insert_rowid();
    exec(
        c,
        "INSERT INTO search_records (record_id, fts_row) VALUES (?1, ?2)",
        params![entry.record_id, row],
    )?;
    Ok(())
}

/// Removes the entry of `record_id`, if any. Call inside the write closure that deletes the
/// record.
pub fn remove(c: &Connection, record_id: &str) -> rusqlite::Result<()> {
    let row: Option<i64> = c
        .prepare_cached("SELECT fts_row FROM search_records WHERE record_id = ?1")?
        .query_row([record_id], |r| r.get(0))
        .optional()?;
    if let Some(row) = row {
        exec(c, "DELETE FROM search_fts WHERE rowid = ?1", [row])?;
        exec(
            c,
            "DELETE FROM search_records WHERE record_id = ?1",
            [record_id],
        )?;
    }
    Ok(())
}

/// Empties the index and indexes every stored message and contact; returns how many.
fn reindex_all(c: &Connection, action: &'static str) -> Result<u64> {
    c.execute_batch("DELETE FROM search_fts; DELETE FROM search_records;")
        .map_err(db_err(action))?;
    let mut count = 0;
    let mut entries = Vec::new();
    {
        let mut stmt = c
            .prepare("SELECT doc FROM messages ORDER BY id")
            .map_err(db_err(action))?;
        let mut rows = stmt.query([]).map_err(db_err(action))?;
        while let Some(row) = rows.next().map_err(db_err(action))? {
            let doc: String = row.get(0).map_err(db_err(action))?;
            match from_json::<Message>(&doc, "message") {
                Ok(m) => entries.push(SearchEntry::of_message(&m)),
                Err(e) => tracing::warn!(error = %e, "search backfill: unreadable message skipped"),
            }
        }
    }
    {
        let mut stmt = c
            .prepare("SELECT doc FROM contacts ORDER BY id")
            .map_err(db_err(action))?;
        let mut rows = stmt.query([]).map_err(db_err(action))?;
        while let Some(row) = rows.next().map_err(db_err(action))? {
            let doc: String = row.get(0).map_err(db_err(action))?;
            match from_json::<Contact>(&doc, "contact") {
                Ok(ct) => entries.push(SearchEntry::of_contact(&ct)),
                Err(e) => tracing::warn!(error = %e, "search backfill: unreadable contact skipped"),
            }
        }
    }
    for entry in &entries {
        put(c, entry).map_err(db_err(action))?;
        count += 1;
    }
    Ok(count)
}

/// The FTS5 query for `terms` within one tenant's records of one kind. Tokens are letters
/// and digits only, so quoting them needs no escaping.
fn match_expression(tenant: TenantId, kind: SearchKind, terms: &Terms) -> String {
    let mut q = format!("scope : \"{}\"", scope_token(tenant, kind));
    for t in &terms.exact {
        q.push_str(&format!(" AND body : \"{t}\""));
    }
    q.push_str(&format!(" AND body : \"{}\" *", terms.prefix));
    q
}

/// The search index on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteSearch {
    db: SqliteDb,
}

impl SqliteSearch {
    /// The index on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    /// Fills the index from the stored records unless that was done before. One write: the
    /// entries and the record of the backfill commit together.
    pub async fn backfill(&self) -> Result<()> {
        const ACTION: &str = "backfill the search index";
        let indexed = self
            .db
            .write(ACTION, move |c| {
                let done: bool = c
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM search_state WHERE name = ?1)",
                        [BACKFILLED],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                if done {
                    return Ok(None);
                }
                let n = reindex_all(c, ACTION)?;
                exec(
                    c,
                    "INSERT INTO search_state (name, done_at) VALUES (?1, ?2)",
                    params![BACKFILLED, imix_core::now().to_rfc3339()],
                )
                .map_err(db_err(ACTION))?;
                Ok(Some(n))
            })
            .await?;
        if let Some(n) = indexed {
            tracing::info!(records = n, "search index backfilled");
        }
        Ok(())
    }
}

#[async_trait]
impl SearchIndex for SqliteSearch {
    async fn search(
        &self,
        tenant: TenantId,
        kind: SearchKind,
        terms: &Terms,
        max: usize,
    ) -> Result<Vec<SearchHit>> {
        const ACTION: &str = "search";
        let expression = match_expression(tenant, kind, terms);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .read(ACTION, move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT record_id, conversation_id, at_ms FROM search_fts
                         WHERE search_fts MATCH ?1 ORDER BY at_ms DESC, record_id DESC LIMIT ?2",
                    )
                    .map_err(db_err(ACTION))?;
                let rows = stmt
                    .query_map(params![expression, max], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })
                    .map_err(db_err(ACTION))?;
                let mut hits = Vec::new();
                for row in rows {
                    let (record_id, conversation_id, at_ms) = row.map_err(db_err(ACTION))?;
                    hits.push(SearchHit {
                        record_id,
                        conversation_id,
                        at: Timestamp::from_timestamp_millis(at_ms).unwrap_or_default(),
                    });
                }
                Ok(hits)
            })
            .await
    }

    async fn rebuild(&self) -> Result<u64> {
        const ACTION: &str = "rebuild the search index";
        self.db.write(ACTION, move |c| reindex_all(c, ACTION)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_is_one_token_and_terms_are_quoted() {
        let tenant = TenantId::new();
        let s = scope_token(tenant, SearchKind::Message);
        assert!(s.starts_with('m') && s.chars().all(|c| c.is_ascii_alphanumeric()));
        let terms = Terms::parse("coût comb").unwrap();
        let q = match_expression(tenant, SearchKind::Contact, &terms);
        assert!(
            q.ends_with("AND body : \"cout\" AND body : \"comb\" *"),
            "{q}"
        );
    }
}
