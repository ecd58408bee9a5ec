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

#[async_trait]
impl BlobStore for SqliteStore {
    async fn restore(&self, meta: &BlobMeta, data: Bytes) -> Result<()> {
        check_blob(meta, &data)?;
        let blob_dir = self.blob_dir.clone();
        let row = meta.clone();
        self.call("store a blob", move |c| {
            let path = Self::blob_path(&blob_dir, &row.key);
            write_file_durably(&blob_dir, &path, &data).map_err(|e| Error::backend("store a blob", e))?;
            c.execute(
                "INSERT INTO blobs (key, content_type, size, sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type,
                    size = excluded.size, sha256 = excluded.sha256, created_at = excluded.created_at",
                params![row.key, row.content_type, row.size as i64, row.sha256, row.created_at.to_rfc3339()],
            )
            .map_err(db_err("store a blob"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Blob> {
        validate_blob_key(key)?;
        let key = key.to_owned();
        let blob_dir = self.blob_dir.clone();
        self.call("read a blob", move |c| {
            let row = c
                .query_row(
                    "SELECT key, content_type, size, sha256, created_at FROM blobs WHERE key = ?1",
                    [&key],
                    meta_from_row,
                )
                .optional()
                .map_err(db_err("read a blob"))?
                .ok_or_else(|| Error::NotFound {
                    entity: "blob",
                    id: key.clone(),
                })?;
            let meta = meta_from_tuple(row)?;
            let data = std::fs::read(Self::blob_path(&blob_dir, &key))
                .map_err(|e| Error::backend("read a blob", e))?;
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
        validate_blob_key(key)?;
        let key = key.to_owned();
        let blob_dir = self.blob_dir.clone();
        self.call("delete a blob", move |c| {
            let deleted = c
                .execute("DELETE FROM blobs WHERE key = ?1", [&key])
                .map_err(db_err("delete a blob"))?;
            if deleted == 0 {
                return Err(Error::NotFound {
                    entity: "blob",
                    id: key,
                });
            }
            match std::fs::remove_file(Self::blob_path(&blob_dir, &key)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::backend("delete a blob", e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str, after: Option<String>, limit: u32) -> Result<Vec<BlobMeta>> {
        let prefix = prefix.to_owned();
        self.call("list blobs", move |c| {
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
