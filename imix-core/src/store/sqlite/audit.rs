//! The audit log on SQLite.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{model::AuditEntry, store::AuditLogRepository};

#[async_trait]
impl AuditLogRepository for SqliteStore {
    async fn append(&self, entry: &AuditEntry) -> Result<()> {
        let doc = to_json(entry, "audit entry")?;
        let id = entry.id.to_string();
        let tenant = entry.tenant_id.map(|t| t.to_string());
        self.write("append to the audit log", move |c| {
            exec(
                c,
                "INSERT INTO audit_log (id, tenant_id, doc) VALUES (?1, ?2, ?3)",
                params![id, tenant, doc],
            )
            .map_err(unique_err(&[], "audit entry", "append to the audit log"))?;
            Ok(())
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<AuditEntry>> {
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.read("list the audit log", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM audit_log
                     WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(db_err("list the audit log"))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                .map_err(db_err("list the audit log"))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<AuditEntry>(
                    &row.map_err(db_err("list the audit log"))?,
                    "audit entry",
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
        })
        .await
    }
}
