//! Blobs on MongoDB: GridFS files, with metadata keyed by blob key.

#[allow(clippy::wildcard_imports)]
use super::*;

// Blob metadata lives in its own collection, keyed by blob key, pointing at the GridFS
// file that holds the bytes: listing is then an exact, ordered, paginated query, and a
// replaced blob's old file is found and removed without scanning revisions.

fn blob_meta_doc(meta: &BlobMeta, file_id: &Bson) -> Result<Document> {
    Ok(doc! {
        "_id": &meta.key,
        "file_id": file_id.clone(),
        "content_type": &meta.content_type,
        "size": i64::try_from(meta.size).map_err(|_| Error::invalid("data", "is too large"))?,
        "sha256": &meta.sha256,
        "created_at": meta.created_at.to_rfc3339(),
    })
}

fn meta_from_doc(d: &Document) -> Result<BlobMeta> {
    let corrupt = |what: &str| Error::Corrupt {
        entity: "blob",
        source: format!("blob metadata is missing {what}").into(),
    };
    let created_at = d.get_str("created_at").map_err(|_| corrupt("created_at"))?;
    Ok(BlobMeta {
        key: d.get_str("_id").map_err(|_| corrupt("its key"))?.to_owned(),
        content_type: d
            .get_str("content_type")
            .map_err(|_| corrupt("content_type"))?
            .to_owned(),
        size: d.get_i64("size").map_err(|_| corrupt("size"))?.max(0) as u64,
        sha256: d
            .get_str("sha256")
            .map_err(|_| corrupt("sha256"))?
            .to_owned(),
        created_at: chrono::DateTime::parse_from_rfc3339(created_at)
            .map_err(|_| corrupt("a valid created_at"))?
            .with_timezone(&chrono::Utc),
    })
}

impl MongoStore {
    fn blob_meta(&self) -> Collection<Document> {
        self.db.collection(BLOB_META)
    }
}

#[async_trait]
impl BlobStore for MongoStore {
    async fn restore(&self, meta: &BlobMeta, data: Bytes) -> Result<()> {
        check_blob(meta, &data)?;
        let key = meta.key.as_str();
        let mut upload = self
            .bucket
            .open_upload_stream(key)
            .await
            .map_err(backend_err("store a blob"))?;
        upload
            .write_all(&data)
            .await
            .map_err(|e| Error::backend("store a blob", e))?;
        upload
            .close()
            .await
            .map_err(|e| Error::backend("store a blob", e))?;
        let file_id = upload.id().clone();
        // The metadata swap is the commit point: readers see the old file or the new one.
        let previous = self
            .blob_meta()
            .find_one_and_replace(doc! { "_id": key }, blob_meta_doc(meta, &file_id)?)
            .upsert(true)
            .await
            .map_err(backend_err("store a blob"))?;
        if let Some(old_id) = previous.and_then(|d| d.get("file_id").cloned()) {
            if old_id != file_id {
                self.bucket
                    .delete(old_id)
                    .await
                    .map_err(backend_err("store a blob"))?;
            }
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Blob> {
        validate_blob_key(key)?;
        let not_found = || Error::NotFound {
            entity: "blob",
            id: key.to_owned(),
        };
        let d = self
            .blob_meta()
            .find_one(doc! { "_id": key })
            .await
            .map_err(backend_err("read a blob"))?
            .ok_or_else(not_found)?;
        let meta = meta_from_doc(&d)?;
        let file_id = d.get("file_id").cloned().ok_or_else(not_found)?;
        let mut download = self
            .bucket
            .open_download_stream(file_id)
            .await
            .map_err(backend_err("read a blob"))?;
        let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        download
            .read_to_end(&mut data)
            .await
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
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_blob_key(key)?;
        let removed = self
            .blob_meta()
            .find_one_and_delete(doc! { "_id": key })
            .await
            .map_err(backend_err("delete a blob"))?
            .ok_or_else(|| Error::NotFound {
                entity: "blob",
                id: key.to_owned(),
            })?;
        if let Some(file_id) = removed.get("file_id").cloned() {
            self.bucket
                .delete(file_id)
                .await
                .map_err(backend_err("delete a blob"))?;
        }
        Ok(())
    }

    async fn stray_files(&self, written_before: crate::Timestamp) -> Result<Vec<String>> {
        const ACTION: &str = "look for stray GridFS files";
        let referenced: Vec<Bson> = self
            .blob_meta()
            .distinct("file_id", doc! {})
            .await
            .map_err(backend_err(ACTION))?;
        let cutoff = bson::DateTime::from_millis(written_before.timestamp_millis());
        let files: Vec<mongodb::gridfs::FilesCollectionDocument> = self
            .bucket
            .find(doc! { "uploadDate": { "$lt": cutoff } })
            .await
            .map_err(backend_err(ACTION))?
            .try_collect()
            .await
            .map_err(backend_err(ACTION))?;
        let mut strays: Vec<String> = files
            .into_iter()
            .filter(|f| !referenced.contains(&f.id))
            .map(|f| match (&f.id, f.filename.as_deref()) {
                (Bson::ObjectId(id), Some(name)) => format!("{id} ({name})"),
                (id, Some(name)) => format!("{id} ({name})"),
                (id, None) => id.to_string(),
            })
            .collect();
        strays.sort();
        Ok(strays)
    }

    async fn list(&self, prefix: &str, after: Option<String>, limit: u32) -> Result<Vec<BlobMeta>> {
        let lower = match after {
            Some(after) if after.as_str() >= prefix => doc! { "$gt": after },
            _ => doc! { "$gte": prefix },
        };
        let docs: Vec<Document> = self
            .blob_meta()
            .find(doc! { "_id": lower })
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(backend_err("list blobs"))?
            .try_collect()
            .await
            .map_err(backend_err("list blobs"))?;
        docs.iter()
            .map(meta_from_doc)
            .take_while(|m| m.as_ref().map_or(true, |m| m.key.starts_with(prefix)))
            .collect()
    }
}
