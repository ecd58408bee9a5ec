//! API keys on SQLite: table `api_keys`, the key hash UNIQUE, the last-used time in a
//! column of its own so that [`ApiKeyRepository::touch`] is one small update.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    records::{ApiKey, ApiKeyId},
    storage::ApiKeyRepository,
};

fn with_last_used(doc: &str, last_used: Option<String>) -> Result<ApiKey> {
    let mut key: ApiKey = from_json(doc, "api key")?;
    key.last_used_at = match last_used {
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| Error::Corrupt {
                    entity: "api key",
                    source: e.into(),
                })?,
        ),
        None => None,
    };
    Ok(key)
}

fn not_found(id: ApiKeyId) -> Error {
    Error::NotFound {
        entity: "api_key",
        id: id.to_string(),
    }
}

#[async_trait]
impl ApiKeyRepository for SqliteTenancy {
    async fn insert(&self, key: &ApiKey) -> Result<()> {
        let doc = to_json(key, "api key")?;
        let (id, tenant, hash) = (
            key.id.to_string(),
            key.tenant_id.to_string(),
            key.key_hash.clone(),
        );
        let last_used = key.last_used_at.map(|t| t.to_rfc3339());
        self.write("store an api key", move |c| {
            exec(
                c,
                "INSERT INTO api_keys (id, tenant_id, key_hash, last_used_at, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, tenant, hash, last_used, doc],
            )
            .map_err(unique_err(UNIQUE, "api key", "store an api key"))?;
            Ok(())
        })
        .await
    }

    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let hash = key_hash.to_owned();
        self.read("find an api key", move |c| {
            let row: Option<(String, Option<String>)> = c
                .query_row(
                    "SELECT doc, last_used_at FROM api_keys WHERE key_hash = ?1",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err("find an api key"))?;
            row.map(|(doc, used)| with_last_used(&doc, used))
                .transpose()
        })
        .await
    }

    async fn get(&self, scope: Scope, id: ApiKeyId) -> Result<ApiKey> {
        let only = scope_param(scope);
        self.read("read an api key", move |c| {
            let row: Option<(String, Option<String>)> = c
                .query_row(
                    "SELECT doc, last_used_at FROM api_keys
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err("read an api key"))?;
            match row {
                Some((doc, used)) => with_last_used(&doc, used),
                None => Err(not_found(id)),
            }
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ApiKey>> {
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.read("list api keys", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc, last_used_at FROM api_keys
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_err("list api keys"))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(db_err("list api keys"))?;
            let mut items = Vec::new();
            for row in rows {
                let (doc, used) = row.map_err(db_err("list api keys"))?;
                items.push(with_last_used(&doc, used)?);
            }
            Ok(Page::from_overfetch(items, limit, |k: &ApiKey| {
                k.id.to_string()
            }))
        })
        .await
    }

    async fn delete(&self, scope: Scope, id: ApiKeyId) -> Result<()> {
        let only = scope_param(scope);
        self.write("delete an api key", move |c| {
            let gone = exec(
                c,
                "DELETE FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                params![id.to_string(), only],
            )
            .map_err(db_err("delete an api key"))?;
            if gone == 1 {
                Ok(())
            } else {
                Err(not_found(id))
            }
        })
        .await
    }

    async fn touch(&self, id: ApiKeyId, at: Timestamp) -> Result<()> {
        let at = at.to_rfc3339();
        self.write("record an api key's use", move |c| {
            exec(
                c,
                "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
                params![at, id.to_string()],
            )
            .map_err(db_err("record an api key's use"))?;
            Ok(())
        })
        .await
    }
}
