//! Tenants on MongoDB.

#[allow(clippy::wildcard_imports)]
use super::*;

#[async_trait]
impl TenantRepository for MongoTenancy {
    async fn insert(&self, tenant: &Tenant) -> Result<()> {
        let doc = to_doc(tenant, &tenant.id.to_string(), "tenant")?;
        self.tenants()
            .insert_one(doc)
            .await
            .map_err(unique_err("tenant", "insert a tenant"))?;
        Ok(())
    }

    async fn get(&self, id: TenantId) -> Result<Tenant> {
        let found = self
            .tenants()
            .find_one(doc! { "_id": id.to_string() })
            .await
            .map_err(backend_err("read a tenant"))?;
        match found {
            Some(d) => from_doc(d, "tenant"),
            None => Err(Error::NotFound {
                entity: "tenant",
                id: id.to_string(),
            }),
        }
    }

    async fn update(&self, tenant: &Tenant) -> Result<Tenant> {
        let mut next = tenant.clone();
        next.version += 1;
        let id = tenant.id.to_string();
        let replacement = to_doc(&next, &id, "tenant")?;
        let result = self
            .tenants()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(tenant.version)? },
                replacement,
            )
            .await
            .map_err(backend_err("update a tenant"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(self
            .missing_or_stale(
                self.tenants(),
                Document::new(),
                "tenant",
                id,
                tenant.version,
            )
            .await)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Tenant>> {
        let mut filter = Document::new();
        if let Scope::Tenant(t) = scope {
            filter.insert("_id", doc! { "$eq": t.to_string() });
        }
        // Merge the cursor condition on `_id` with the scope condition on `_id`.
        let limit = page.effective_limit()?;
        if let Some(cursor) = page.validated_cursor()? {
            let id_cond = filter.get_document_mut("_id").ok();
            match id_cond {
                Some(cond) => {
                    cond.insert("$gt", cursor);
                }
                None => {
                    filter.insert("_id", doc! { "$gt": cursor });
                }
            }
        }
        let page = PageRequest {
            cursor: None,
            limit: Some(limit),
        };
        self.list_docs(self.tenants(), filter, page, "tenant", |t: &Tenant| {
            t.id.to_string()
        })
        .await
    }
}
