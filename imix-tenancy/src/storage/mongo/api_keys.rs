//! API keys on MongoDB: collection `api_keys`, `_id` the key's id, a unique index on the key
//! hash; every write is one single-document operation.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    records::{ApiKey, ApiKeyId},
    storage::ApiKeyRepository,
};

fn not_found(id: ApiKeyId) -> Error {
    Error::NotFound {
        entity: "api_key",
        id: id.to_string(),
    }
}

impl MongoTenancy {
    fn api_keys(&self) -> Collection<Document> {
        self.db.collection(API_KEYS)
    }
}

#[async_trait]
impl ApiKeyRepository for MongoTenancy {
    async fn insert(&self, key: &ApiKey) -> Result<()> {
        let doc = to_doc(key, &key.id.to_string(), "api key")?;
        self.api_keys()
            .insert_one(doc)
            .await
            .map_err(unique_err("api key", "store an api key"))?;
        Ok(())
    }

    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        self.api_keys()
            .find_one(doc! { "key_hash": key_hash })
            .await
            .map_err(backend_err("find an api key"))?
            .map(|d| support::from_doc(d, "api key", &[]))
            .transpose()
    }

    async fn get(&self, scope: Scope, id: ApiKeyId) -> Result<ApiKey> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .api_keys()
            .find_one(filter)
            .await
            .map_err(backend_err("read an api key"))?
        {
            Some(d) => support::from_doc(d, "api key", &[]),
            None => Err(not_found(id)),
        }
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ApiKey>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        support::list_docs(self.api_keys(), filter, page, "api key", |k: &ApiKey| {
            k.id.to_string()
        })
        .await
    }

    async fn delete(&self, scope: Scope, id: ApiKeyId) -> Result<()> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        let gone = self
            .api_keys()
            .delete_one(filter)
            .await
            .map_err(backend_err("delete an api key"))?;
        if gone.deleted_count == 1 {
            Ok(())
        } else {
            Err(not_found(id))
        }
    }

    async fn touch(&self, id: ApiKeyId, at: Timestamp) -> Result<()> {
        // Serialized exactly as the field is in the document (`to_doc`).
        let at = bson::to_bson(&at).map_err(|e| Error::Corrupt {
            entity: "api key",
            source: e.into(),
        })?;
        self.api_keys()
            .update_one(
                doc! { "_id": id.to_string() },
                doc! { "$set": { "last_used_at": at } },
            )
            .await
            .map_err(backend_err("record an api key's use"))?;
        Ok(())
    }
}
