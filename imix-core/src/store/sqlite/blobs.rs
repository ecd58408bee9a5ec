//! Blobs on SQLite: files in the data directory, metadata in a table.

#[allow(clippy::wildcard_imports)]
use super::*;

fn write_file_durably(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

fn meta_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn meta_from_tuple(t: (String, String, i64, String, String)) -> Result<BlobMeta> {
    let created_at = chrono::DateTime::parse_from_rfc3339(&t.4)
        .map_err(|e| Error::Corrupt {
            entity: "blob",
            source: e.into(),
        })?
        .with_timezone(&chrono::Utc);
    Ok(BlobMeta {
        key: t.0,
        content_type: t.1,
        size: t.2.max(0) as u64,
        sha256: t.3,
        created_at,
    })
}

/// Removes a blob file that no committed row points to. Best effort: a file left behind
/// only costs space.
fn remove_unreferenced(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a blob file"),
    }
}

/// The stored content hash of `key`, if it has a row.
fn stored_sha(c: &Connection, key: &str, action: &'static str) -> Result<Option<String>> {
    c.query_row("SELECT sha256 FROM blobs WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
    .map_err(db_err(action))
}

#[async_trait]
impl BlobStore for SqliteStore {
    async fn restore(&self, meta: &BlobMeta, data: Bytes) -> Result<()> {
        const ACTION: &str = "store a blob";
        check_blob(meta, &data)?;
        let blob_dir = self.blob_dir.clone();
        let row = meta.clone();
        // The bytes go to disk (and are synced) before the metadata row is written, and
        // outside the writer: a large upload does not hold up anyone else's writes.
        let path = Self::blob_path(&blob_dir, &row.key, &row.sha256);
        {
            let (dir, path) = (blob_dir.clone(), path.clone());
            tokio::task::spawn_blocking(move || write_file_durably(&dir, &path, &data))
                .await
                .map_err(|e| Error::backend(ACTION, e))?
                .map_err(|e| Error::backend(ACTION, e))?;
        }
        let key = row.key.clone();
        let new_sha = row.sha256.clone();
        let written = self
            .write(ACTION, move |c| {
                let previous = stored_sha(c, &row.key, ACTION)?;
                exec(
                    c,
                    "INSERT INTO blobs (key, content_type, size, sha256, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type,
                        size = excluded.size, sha256 = excluded.sha256,
                        created_at = excluded.created_at",
                    params![
                        row.key,
                        row.content_type,
                        row.size as i64,
                        row.sha256,
                        row.created_at.to_rfc3339()
                    ],
                )
                .map_err(db_err(ACTION))?;
                Ok(previous)
            })
            .await;
        match written {
            Ok(previous) => {
                // The replaced content's file is no longer referenced by any row.
                if let Some(old) = previous.filter(|old| *old != new_sha) {
                    remove_unreferenced(&Self::blob_path(&blob_dir, &key, &old));
                }
                remove_unreferenced(&Self::legacy_blob_path(&blob_dir, &key));
                Ok(())
            }
            Err(e) => {
                // Keep the file only if a committed row (an identical earlier upload) uses it.
                let k = key.clone();
                let current = self
                    .read(ACTION, move |c| stored_sha(c, &k, ACTION))
                    .await
                    .ok()
                    .flatten();
                if current.as_deref() != Some(new_sha.as_str()) {
                    remove_unreferenced(&path);
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Blob> {
        const ACTION: &str = "read a blob";
        validate_blob_key(key)?;
        let key = key.to_owned();
        let blob_dir = self.blob_dir.clone();
        self.read(ACTION, move |c| {
            let row = c
                .query_row(
                    "SELECT key, content_type, size, sha256, created_at FROM blobs WHERE key = ?1",
                    [&key],
                    meta_from_row,
                )
                .optional()
                .map_err(db_err(ACTION))?
                .ok_or_else(|| Error::NotFound {
                    entity: "blob",
                    id: key.clone(),
                })?;
            let meta = meta_from_tuple(row)?;
            let data = match std::fs::read(Self::blob_path(&blob_dir, &key, &meta.sha256)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::read(Self::legacy_blob_path(&blob_dir, &key))
                }
                other => other,
            }
            .map_err(|e| Error::backend(ACTION, e))?;
            if sha256_hex(&data) != meta.sha256 {
                return Err(Error::Corrupt {
                    entity: "blob",
                    source: format!("blob {key} does not match its recorded SHA-256").into(),
                });
            }
            Ok(Blob {
                meta,
                data: Bytes::from(data),
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        const ACTION: &str = "delete a blob";
        validate_blob_key(key)?;
        let key = key.to_owned();
        let k = key.clone();
        let sha = self
            .write(ACTION, move |c| {
                let sha = stored_sha(c, &k, ACTION)?.ok_or_else(|| Error::NotFound {
                    entity: "blob",
                    id: k.clone(),
                })?;
                exec(c, "DELETE FROM blobs WHERE key = ?1", [&k]).map_err(db_err(ACTION))?;
                Ok(sha)
            })
            .await?;
        // The row is gone (committed): its file is unreferenced.
        remove_unreferenced(&Self::blob_path(&self.blob_dir, &key, &sha));
        remove_unreferenced(&Self::legacy_blob_path(&self.blob_dir, &key));
        Ok(())
    }

    async fn stray_files(&self, written_before: crate::Timestamp) -> Result<Vec<String>> {
        const ACTION: &str = "look for stray blob files";
        let referenced: std::collections::HashSet<String> = self
            .read(ACTION, |c| {
                let mut stmt = c
                    .prepare("SELECT key, sha256 FROM blobs")
                    .map_err(db_err(ACTION))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(db_err(ACTION))?;
                let mut names = std::collections::HashSet::new();
                for row in rows {
                    let (key, sha) = row.map_err(db_err(ACTION))?;
                    let key_hash = sha256_hex(key.as_bytes());
                    names.insert(format!("{key_hash}-{sha}"));
                    // A blob of the older layout may still live in its one-per-key file.
                    names.insert(key_hash);
                }
                Ok(names)
            })
            .await?;
        let dir = self.blob_dir.clone();
        let cutoff: std::time::SystemTime = written_before.into();
        tokio::task::spawn_blocking(move || {
            let mut strays = Vec::new();
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::backend(ACTION, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::backend(ACTION, e))?;
                let meta = entry.metadata().map_err(|e| Error::backend(ACTION, e))?;
                let old_enough = meta.modified().is_ok_and(|m| m < cutoff);
                let name = entry.file_name().to_string_lossy().into_owned();
                if meta.is_file() && old_enough && !referenced.contains(&name) {
                    strays.push(name);
                }
            }
            strays.sort();
            Ok(strays)
        })
        .await
        .map_err(|e| Error::backend(ACTION, e))?
    }

    async fn list(&self, prefix: &str, after: Option<String>, limit: u32) -> Result<Vec<BlobMeta>> {
        let prefix = prefix.to_owned();
        self.read("list blobs", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key, content_type, size, sha256, created_at FROM blobs
                     WHERE substr(key, 1, length(?1)) = ?1 AND (?2 IS NULL OR key > ?2)
                     ORDER BY key LIMIT ?3",
                )
                .map_err(db_err("list blobs"))?;
            let rows = stmt
                .query_map(params![prefix, after, limit], meta_from_row)
                .map_err(db_err("list blobs"))?;
            let mut metas = Vec::new();
            for row in rows {
                metas.push(meta_from_tuple(row.map_err(db_err("list blobs"))?)?);
            }
            Ok(metas)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, by: Duration) {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        file.set_modified(std::time::SystemTime::now() - by)
            .expect("set mtime");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stray_files_are_the_bytes_no_row_points_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        store.migrate().await.expect("migrate");
        let meta = store
            .put("k/live", "text/plain", Bytes::from_static(b"live"))
            .await
            .expect("put");
        let blob_dir = dir.path().join("blobs");
        // Bytes a crashed write left behind, and a file of the older one-per-key layout
        // that a live row still uses.
        let stray = blob_dir.join(format!("{}-{}", sha256_hex(b"k/gone"), sha256_hex(b"x")));
        std::fs::write(&stray, b"x").expect("plant");
        let live = SqliteStore::blob_path(&blob_dir, "k/live", &meta.sha256);
        let legacy = SqliteStore::legacy_blob_path(&blob_dir, "k/live");
        std::fs::rename(&live, &legacy).expect("move to the old layout");
        for path in [&stray, &legacy] {
            age(path, Duration::from_secs(3600));
        }
        let an_hour_ago = crate::now() - chrono::Duration::minutes(10);
        let strays = store.stray_files(an_hour_ago).await.expect("strays");
        let stray_name = stray
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .expect("name");
        assert_eq!(strays, vec![stray_name]);
        // The live blob is still served from its old-layout file.
        assert_eq!(
            BlobStore::get(&store, "k/live").await.expect("get").data,
            "live"
        );
        // A fresh stray is left alone: it may be a write in flight.
        std::fs::write(blob_dir.join("fresh"), b"y").expect("plant");
        assert_eq!(
            store.stray_files(an_hour_ago).await.expect("strays").len(),
            1
        );
    }
}
