//! What a capability needs to keep its own tables in the shared embedded database: named
//! migrations with the unique constraints they create, and the small helpers every SQLite
//! repository uses (JSON documents, scopes, versions, error mapping).
//!
//! A capability declares its schema beside its adapter and applies it with
//! [`SqliteDb::migrate`]:
//!
//! ```
//! use imix_core::store::sqlite::{Migration, SqliteDb, UniqueKey};
//!
//! const NOTES_UNIQUE: &[UniqueKey] = &[UniqueKey {
//!     table: "notes",
//!     columns: &["tenant_id", "title"],
//!     field: "title",
//! }];
//!
//! const MIGRATIONS: &[Migration] = &[Migration {
//!     name: "0001_notes",
//!     sql: "CREATE TABLE IF NOT EXISTS notes (
//!               id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, title TEXT NOT NULL,
//!               doc TEXT NOT NULL, UNIQUE (tenant_id, title));",
//!     unique: NOTES_UNIQUE,
//! }];
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> imix_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let db = SqliteDb::open_blocking(&dir.path().join("db.sqlite3"), 2)?;
//! assert_eq!(db.migrate("notes", MIGRATIONS).await?, 1);
//! assert_eq!(db.migrate("notes", MIGRATIONS).await?, 0); // applied once
//! # Ok(()) }
//! ```

use rusqlite::{params, Connection, ErrorCode};
use serde::{de::DeserializeOwned, Serialize};

use super::SqliteDb;
use crate::{store::Scope, Error, Result};

/// One named schema step of a capability. Applied once per database, in the order given;
/// recorded by `(capability, name)`, so capabilities never collide and a step that lands
/// late (out of order) is still applied.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// A name unique within the capability, such as `0001_accounts`.
    pub name: &'static str,
    /// The SQL batch. Prefer `IF NOT EXISTS`: databases made before the step was recorded
    /// under this name may already hold its tables.
    pub sql: &'static str,
    /// The unique constraints this step creates, so a violation is reported by field.
    pub unique: &'static [UniqueKey],
}

/// A unique constraint (a `UNIQUE` column or clause, a unique index on plain columns, or a
/// text primary key) and the API field a violation is reported under. SQLite names the
/// violated constraint by `table.column`, so table and column names must be plain
/// identifiers (no `.` or `, `); a unique index on an expression (`lower(x)`) is reported by
/// index name and is not recognised — store the normalized value in a column instead, as
/// the users' `email_lower` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueKey {
    /// The table.
    pub table: &'static str,
    /// The constrained columns, in any order.
    pub columns: &'static [&'static str],
    /// The field [`Error::Duplicate`] names.
    pub field: &'static str,
}

impl SqliteDb {
    /// Applies those of `capability`'s `migrations` not applied yet, in order, each in the
    /// same transaction as its record; returns how many were applied now. Safe to call from
    /// several processes at once: the writer's transaction serializes them.
    pub async fn migrate(
        &self,
        capability: &'static str,
        migrations: &'static [Migration],
    ) -> Result<usize> {
        const ACTION: &str = "migrate the schema";
        self.write(ACTION, move |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS capability_migrations (
                    capability TEXT NOT NULL,
                    name TEXT NOT NULL,
                    applied_at TEXT NOT NULL,
                    PRIMARY KEY (capability, name)
                 )",
            )
            .map_err(db_err(ACTION))?;
            let mut applied = 0;
            for m in migrations {
                let done: bool = c
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM capability_migrations
                         WHERE capability = ?1 AND name = ?2)",
                        params![capability, m.name],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                if done {
                    continue;
                }
                c.execute_batch(m.sql).map_err(|e| {
                    Error::backend(
                        ACTION,
                        format!("migration {capability}/{} failed: {e}", m.name),
                    )
                })?;
                exec(
                    c,
                    "INSERT INTO capability_migrations (capability, name, applied_at)
                     VALUES (?1, ?2, ?3)",
                    params![capability, m.name, crate::now().to_rfc3339()],
                )
                .map_err(db_err(ACTION))?;
                applied += 1;
            }
            Ok(applied)
        })
        .await
    }
}

/// Runs one statement through the connection's statement cache: the same few statements
/// run over and over, and preparing them is a large share of a small write's cost.
pub fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

/// Maps any SQLite error to [`Error::Backend`] with `action`.
pub fn db_err(action: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::backend(action, e)
}

/// Maps a unique-constraint violation to [`Error::Duplicate`] naming the field of the
/// declared constraint it violated (SQLite reports the violated constraint as its table and
/// columns); any other error to [`Error::Backend`]. A violation of a constraint not in
/// `keys` is a backend error too, except a primary key on `id` (field `id`).
pub fn unique_err(
    keys: &'static [UniqueKey],
    entity: &'static str,
    action: &'static str,
) -> impl Fn(rusqlite::Error) -> Error {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == ErrorCode::ConstraintViolation =>
        {
            match violated_unique(msg) {
                Some((table, columns)) => match keys.iter().find(|k| k.matches(&table, &columns)) {
                    Some(key) => Error::Duplicate {
                        entity,
                        field: key.field,
                    },
                    None if columns == ["id"] => Error::Duplicate {
                        entity,
                        field: "id",
                    },
                    None => Error::backend(action, e),
                },
                None => Error::backend(action, e),
            }
        }
        _ => Error::backend(action, e),
    }
}

impl UniqueKey {
    fn matches(&self, table: &str, columns: &[String]) -> bool {
        self.table == table
            && self.columns.len() == columns.len()
            && self.columns.iter().all(|c| columns.iter().any(|x| x == c))
    }
}

/// Parses SQLite's `UNIQUE constraint failed: t.a, t.b` (also reported for a text primary
/// key) into the table and its columns.
fn violated_unique(message: &str) -> Option<(String, Vec<String>)> {
    // SQLite reports primary keys this way too.
    let list = message.strip_prefix("UNIQUE constraint failed: ")?;
    let mut table = None;
    let mut columns = Vec::new();
    for qualified in list.split(", ") {
        let (t, c) = qualified.trim().split_once('.')?;
        match &table {
            None => table = Some(t.to_owned()),
            Some(known) if known != t => return None,
            Some(_) => {}
        }
        columns.push(c.to_owned());
    }
    Some((table?, columns))
}

/// Serializes an entity as the JSON document a row stores.
pub fn to_json<T: Serialize>(value: &T, entity: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

/// Reads an entity back from a row's JSON document.
pub fn from_json<T: DeserializeOwned>(text: &str, entity: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

/// The `tenant_id` a query is limited to: `NULL` (no limit) for the platform scope. Use as
/// `(?n IS NULL OR tenant_id = ?n)`.
pub fn scope_param(scope: Scope) -> Option<String> {
    match scope {
        Scope::Platform => None,
        Scope::Tenant(t) => Some(t.to_string()),
    }
}

/// A record version as SQLite stores it.
pub fn version_param(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::invalid("version", "is out of range"))
}

/// After an optimistic update of a tenant-owned row (columns `id`, `tenant_id`) changed
/// nothing: tells a stale version ([`Error::VersionConflict`]) from a row that is missing
/// or outside `scope` ([`Error::NotFound`]). `table` must be one of the caller's own table
/// names, never input.
pub fn missing_or_stale(
    c: &Connection,
    table: &'static str,
    entity: &'static str,
    id: String,
    scope: Option<String>,
    expected: i64,
) -> Error {
    let sql = format!(
        "SELECT EXISTS(SELECT 1 FROM {table} WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2))"
    );
    match c.query_row(&sql, params![id, scope], |r| r.get::<_, bool>(0)) {
        Ok(true) => Error::VersionConflict {
            entity,
            id,
            expected: expected.max(0) as u64,
        },
        Ok(false) => Error::NotFound { entity, id },
        Err(e) => Error::backend("update a record", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_parsed_into_table_and_columns() {
        assert_eq!(
            violated_unique("UNIQUE constraint failed: t.a, t.b"),
            Some(("t".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            violated_unique("UNIQUE constraint failed: notes.title_lower"),
            Some(("notes".into(), vec!["title_lower".into()]))
        );
        assert_eq!(violated_unique("NOT NULL constraint failed: t.a"), None);
        assert_eq!(violated_unique("UNIQUE constraint failed: t.a, u.b"), None);
    }

    #[test]
    fn keys_match_columns_in_any_order_but_not_subsets() {
        let key = UniqueKey {
            table: "t",
            columns: &["a", "b"],
            field: "a",
        };
        assert!(key.matches("t", &["b".into(), "a".into()]));
        assert!(!key.matches("t", &["a".into()]));
        assert!(!key.matches("u", &["a".into(), "b".into()]));
    }
}
