//! Message templates on MongoDB: collection `message_templates`, with a unique index on
//! `(account_id, name, language)`.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    id::TemplateId,
    model::MessageTemplate,
    store::{TemplateFilter, TemplateRepository},
};

pub(super) const MESSAGE_TEMPLATES: &str = "message_templates";
const ENTITY: &str = "template";

impl MongoStore {
    fn message_templates(&self) -> Collection<Document> {
        self.db.collection(MESSAGE_TEMPLATES)
    }
}

#[async_trait]
impl TemplateRepository for MongoStore {
    async fn insert(&self, template: &MessageTemplate) -> Result<()> {
        let doc = to_doc(template, &template.id.to_string(), ENTITY)?;
        self.message_templates()
            .insert_one(doc)
            .await
            .map_err(unique_err(ENTITY, "insert a template"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: TemplateId) -> Result<MessageTemplate> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .message_templates()
            .find_one(filter)
            .await
            .map_err(backend_err("read a template"))?
        {
            Some(d) => from_doc(d, ENTITY),
            None => Err(Error::NotFound {
                entity: ENTITY,
                id: id.to_string(),
            }),
        }
    }

    async fn update(&self, scope: Scope, template: &MessageTemplate) -> Result<MessageTemplate> {
        check_owner_stays_in_scope(scope, Some(template.tenant_id))?;
        let mut next = template.clone();
        next.version += 1;
        let id = template.id.to_string();
        let replacement = to_doc(&next, &id, ENTITY)?;
        self.replace_scoped(
            self.message_templates(),
            scope,
            id,
            template.version,
            replacement,
            ENTITY,
            "update a template",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: TemplateId) -> Result<()> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        let result = self
            .message_templates()
            .delete_one(filter)
            .await
            .map_err(backend_err("delete a template"))?;
        if result.deleted_count == 1 {
            Ok(())
        } else {
            Err(Error::NotFound {
                entity: ENTITY,
                id: id.to_string(),
            })
        }
    }

    async fn list(
        &self,
        scope: Scope,
        filter: TemplateFilter,
        page: PageRequest,
    ) -> Result<Page<MessageTemplate>> {
        let mut query = Document::new();
        scope_filter(&mut query, scope);
        if let Some(account) = filter.account_id {
            query.insert("account_id", account.to_string());
        }
        if let Some(status) = filter.status {
            query.insert("status", status);
        }
        self.list_docs(
            self.message_templates(),
            query,
            page,
            ENTITY,
            |t: &MessageTemplate| t.id.to_string(),
        )
        .await
    }
}
