//! The audit log on MongoDB.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{model::AuditEntry, store::AuditLogRepository};

#[async_trait]
impl AuditLogRepository for MongoStore {
    async fn append(&self, entry: &AuditEntry) -> Result<()> {
        let doc = to_doc(entry, &entry.id.to_string(), "audit entry")?;
        self.db
            .collection::<Document>(AUDIT_LOG)
            .insert_one(doc)
            .await
            .map_err(unique_err("audit entry", "append to the audit log"))?;
        Ok(())
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<AuditEntry>> {
        let limit = page.effective_limit()?;
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        if let Some(cursor) = page.validated_cursor()? {
            filter.insert("_id", doc! { "$lt": cursor });
        }
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(AUDIT_LOG)
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(backend_err("list the audit log"))?
            .try_collect()
            .await
            .map_err(backend_err("list the audit log"))?;
        let items = docs
            .into_iter()
            .map(|d| from_doc(d, "audit entry"))
            .collect::<Result<Vec<AuditEntry>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
    }
}
