//! Message templates on SQLite. `(account_id, name, language)` is a UNIQUE constraint.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    id::TemplateId,
    model::MessageTemplate,
    store::{TemplateFilter, TemplateRepository},
};

const ENTITY: &str = "template";

fn not_found(id: impl ToString) -> Error {
    Error::NotFound {
        entity: ENTITY,
        id: id.to_string(),
    }
}

#[async_trait]
impl TemplateRepository for SqliteStore {
    async fn insert(&self, template: &MessageTemplate) -> Result<()> {
        let doc = to_json(template, ENTITY)?;
        let t = template.clone();
        let version = version_param(template.version)?;
        self.write("insert a template", move |c| {
            exec(
                c,
                "INSERT INTO message_templates
                   (id, tenant_id, account_id, name, language, status, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    t.id.to_string(),
                    t.tenant_id.to_string(),
                    t.account_id.to_string(),
                    t.name,
                    t.language,
                    t.status,
                    version,
                    doc
                ],
            )
            .map_err(unique_err(WHATSAPP_UNIQUE, ENTITY, "insert a template"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, scope: Scope, id: TemplateId) -> Result<MessageTemplate> {
        let only = scope_param(scope);
        self.read("read a template", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM message_templates
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read a template"))?;
            match doc {
                Some(doc) => from_json(&doc, ENTITY),
                None => Err(not_found(id)),
            }
        })
        .await
    }

    async fn update(&self, scope: Scope, template: &MessageTemplate) -> Result<MessageTemplate> {
        const ACTION: &str = "update a template";
        crate::store::check_owner_stays_in_scope(scope, Some(template.tenant_id))?;
        let mut next = template.clone();
        next.version += 1;
        let doc = to_json(&next, ENTITY)?;
        let t = next.clone();
        let (expected, new_version) = (
            version_param(template.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.write(ACTION, move |c| {
            let id = t.id.to_string();
            let changed = c
                .execute(
                    "UPDATE message_templates
                     SET version = ?1, doc = ?2, tenant_id = ?3, account_id = ?4, name = ?5,
                         language = ?6, status = ?7
                     WHERE id = ?8 AND version = ?9 AND (?10 IS NULL OR tenant_id = ?10)",
                    params![
                        new_version,
                        doc,
                        t.tenant_id.to_string(),
                        t.account_id.to_string(),
                        t.name,
                        t.language,
                        t.status,
                        id,
                        expected,
                        only
                    ],
                )
                .map_err(unique_err(WHATSAPP_UNIQUE, ENTITY, ACTION))?;
            if changed == 1 {
                return Ok(next);
            }
            Err(missing_or_stale(
                c,
                "message_templates",
                ENTITY,
                id,
                only,
                expected,
            ))
        })
        .await
    }

    async fn delete(&self, scope: Scope, id: TemplateId) -> Result<()> {
        let only = scope_param(scope);
        self.write("delete a template", move |c| {
            let n = c
                .execute(
                    "DELETE FROM message_templates WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                )
                .map_err(db_err("delete a template"))?;
            if n == 1 {
                Ok(())
            } else {
                Err(not_found(id))
            }
        })
        .await
    }

    async fn list(
        &self,
        scope: Scope,
        filter: TemplateFilter,
        page: PageRequest,
    ) -> Result<Page<MessageTemplate>> {
        const ACTION: &str = "list templates";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        let account = filter.account_id.map(|a| a.to_string());
        let status = filter.status;
        self.read(ACTION, move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM message_templates
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                       AND (?3 IS NULL OR account_id = ?3) AND (?4 IS NULL OR status = ?4)
                     ORDER BY id LIMIT ?5",
                )
                .map_err(db_err(ACTION))?;
            let rows = stmt
                .query_map(params![cursor, only, account, status, limit + 1], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_err(ACTION))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<MessageTemplate>(
                    &row.map_err(db_err(ACTION))?,
                    ENTITY,
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
        })
        .await
    }
}
