//! Whole-store operations a restore needs and no capability port offers: which schema
//! steps a database has had, and emptying every table or collection while keeping the
//! schema.
//!
//! A restore replaces the data as a whole. Capabilities' repositories have no "delete
//! everything" (and should not), so this works below them, on the backend: every table or
//! collection but the migration records is emptied, whichever capability owns it.

#[cfg(feature = "mongodb")]
use futures::TryStreamExt;

use super::{Backend, Store};
use crate::{Error, Result};

/// How many blobs are deleted per listing while wiping.
const BLOB_BATCH: u32 = 500;

impl Backend {
    /// The schema steps applied to this database, as `capability/name`, sorted: the
    /// database's schema version. Empty for [`Backend::Custom`].
    pub async fn applied_migrations(&self) -> Result<Vec<String>> {
        let mut steps = match self {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                const ACTION: &str = "read the applied migrations";
                db.read(ACTION, |c| {
                    let exists: bool = c
                        .query_row(
                            "SELECT EXISTS(SELECT 1 FROM sqlite_master
                             WHERE type = 'table' AND name = 'capability_migrations')",
                            [],
                            |r| r.get(0),
                        )
                        .map_err(|e| Error::backend(ACTION, e))?;
                    if !exists {
                        return Ok(Vec::new());
                    }
                    let mut stmt = c
                        .prepare("SELECT capability, name FROM capability_migrations")
                        .map_err(|e| Error::backend(ACTION, e))?;
                    let rows = stmt
                        .query_map([], |r| {
                            Ok(format!(
                                "{}/{}",
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?
                            ))
                        })
                        .map_err(|e| Error::backend(ACTION, e))?;
                    rows.collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| Error::backend(ACTION, e))
                })
                .await?
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                const ACTION: &str = "read the applied migrations";
                let docs: Vec<mongodb::bson::Document> = db
                    .collection::<mongodb::bson::Document>("_migrations")
                    .find(mongodb::bson::doc! {})
                    .await
                    .map_err(|e| Error::backend(ACTION, e))?
                    .try_collect()
                    .await
                    .map_err(|e| Error::backend(ACTION, e))?;
                docs.iter()
                    .filter_map(|d| {
                        Some(format!(
                            "{}/{}",
                            d.get_str("capability").ok()?,
                            d.get_str("name").ok()?
                        ))
                    })
                    .collect()
            }
            Backend::Custom => Vec::new(),
        };
        steps.sort();
        steps.dedup();
        Ok(steps)
    }

    /// Deletes every row of every table (SQLite) or every document of every collection
    /// (MongoDB, GridFS included) except the migration records: the schema, indexes and
    /// migration history stay. Blob files beside an SQLite database are not touched: use
    /// [`wipe`], which deletes blobs through the port first. [`Error::Invalid`] on
    /// [`Backend::Custom`], whose tables nobody here knows.
    pub async fn clear_all_records(&self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                const ACTION: &str = "empty the database";
                db.write(ACTION, |c| {
                    let tables: Vec<(String, bool)> = {
                        let mut stmt = c
                            .prepare(
                                "SELECT name, coalesce(sql, '') LIKE 'CREATE VIRTUAL TABLE%'
                                 FROM sqlite_master WHERE type = 'table'
                                 AND name NOT LIKE 'sqlite_%' AND name != 'capability_migrations'",
                            )
                            .map_err(|e| Error::backend(ACTION, e))?;
                        let rows = stmt
                            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
                            .map_err(|e| Error::backend(ACTION, e))?;
                        rows.collect::<std::result::Result<Vec<_>, _>>()
                            .map_err(|e| Error::backend(ACTION, e))?
                    };
                    // A virtual table (a full-text index) keeps its data in shadow tables
                    // named after it: those are emptied through the virtual table, never
                    // directly (that would corrupt the index).
                    let virtual_tables: Vec<&String> =
                        tables.iter().filter(|(_, v)| *v).map(|(n, _)| n).collect();
                    for (table, is_virtual) in &tables {
                        let shadow = !is_virtual
                            && virtual_tables
                                .iter()
                                .any(|v| table.starts_with(&format!("{v}_")));
                        if shadow {
                            continue;
                        }
                        // Names come from sqlite_master; quoting keeps any of them one
                        // identifier.
                        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
                        let deleted = c.execute(&format!("DELETE FROM {quoted}"), []);
                        if let Err(e) = deleted {
                            if !is_virtual {
                                return Err(Error::backend(ACTION, e));
                            }
                            // An FTS5 table with external or no content is emptied by its
                            // `delete-all` command instead.
                            c.execute(
                                &format!("INSERT INTO {quoted}({quoted}) VALUES('delete-all')"),
                                [],
                            )
                            .map_err(|e| Error::backend(ACTION, e))?;
                        }
                    }
                    Ok(())
                })
                .await
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                const ACTION: &str = "empty the database";
                let names = db
                    .list_collection_names()
                    .await
                    .map_err(|e| Error::backend(ACTION, e))?;
                for name in names {
                    if name == "_migrations" || name.starts_with("system.") {
                        continue;
                    }
                    // delete_many, not drop: the collection's indexes (unique keys) stay.
                    db.collection::<mongodb::bson::Document>(&name)
                        .delete_many(mongodb::bson::doc! {})
                        .await
                        .map_err(|e| Error::backend(ACTION, e))?;
                }
                Ok(())
            }
            Backend::Custom => Err(Error::invalid(
                "backend",
                "a custom backend cannot be emptied here; empty it by its own means",
            )),
        }
    }
}

/// Empties `store` as a whole, keeping its schema: every blob through the [`super::BlobStore`]
/// port (so files beside an SQLite database go too), then every record of every capability
/// and of the shared primitives, counters and operational state included (see
/// [`Backend::clear_all_records`]). For a restore, which then imports a backup.
pub async fn wipe(store: &Store) -> Result<()> {
    loop {
        let batch = store.blobs.list("", None, BLOB_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for meta in batch {
            match store.blobs.delete(&meta.key).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    store.backend.clear_all_records().await
}
