//! Settings documents on MongoDB.

#[allow(clippy::wildcard_imports)]
use super::*;

fn settings_id(scope: SettingsScope, key: &str) -> String {
    format!("{scope}/{key}")
}

#[async_trait]
impl SettingsRepository for MongoStore {
    async fn get(&self, scope: SettingsScope, key: &str) -> Result<Option<SettingsDoc>> {
        self.settings()
            .find_one(doc! { "_id": settings_id(scope, key) })
            .await
            .map_err(backend_err("read settings"))?
            .map(|d| from_doc(d, "settings"))
            .transpose()
    }

    async fn insert(&self, doc: &SettingsDoc) -> Result<()> {
        let d = to_doc(doc, &settings_id(doc.scope, &doc.key), "settings")?;
        self.settings().insert_one(d).await.map_err(|e| {
            if is_duplicate_key(&e) {
                Error::Duplicate {
                    entity: "settings",
                    field: "key",
                }
            } else {
                Error::backend("insert settings", e)
            }
        })?;
        Ok(())
    }

    async fn update(&self, doc: &SettingsDoc) -> Result<SettingsDoc> {
        let mut next = doc.clone();
        next.version += 1;
        let id = settings_id(doc.scope, &doc.key);
        let replacement = to_doc(&next, &id, "settings")?;
        let result = self
            .settings()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(doc.version)? },
                replacement,
            )
            .await
            .map_err(backend_err("update settings"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(self
            .missing_or_stale(
                self.settings(),
                Document::new(),
                "settings",
                id,
                doc.version,
            )
            .await)
    }

    async fn list_all(&self) -> Result<Vec<SettingsDoc>> {
        let docs: Vec<Document> = self
            .settings()
            .find(Document::new())
            .sort(doc! { "scope": 1, "key": 1 })
            .await
            .map_err(backend_err("list settings"))?
            .try_collect()
            .await
            .map_err(backend_err("list settings"))?;
        docs.into_iter().map(|d| from_doc(d, "settings")).collect()
    }
}
