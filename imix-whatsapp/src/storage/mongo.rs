//! The WhatsApp repositories on MongoDB: collections `whatsapp_accounts` (a unique index on
//! `phone_number_id`, platform-wide) and `message_templates` (a unique index on
//! `(account_id, name, language)`), each with one on `(tenant_id, _id)` for lists.
//!
//! Documents are the entities' own serde shapes with `_id` set to the entity id. Every
//! write is a single-document atomic operation (a conditional replace on `version` for
//! updates), so it works on a standalone `mongod` and between several server replicas.

use async_trait::async_trait;
use imix_core::{
    id::{TemplateId, WhatsAppAccountId},
    store::{
        mongo::{
            support::{
                backend_err, from_doc, list_docs, replace_scoped, scope_filter, to_doc, unique_err,
            },
            IndexSpec, MongoMigration,
        },
        Page, PageRequest, Scope,
    },
    Error, Result,
};
use mongodb::{
    bson::{doc, Document},
    Collection, Database,
};

use super::{
    check_owner_stays_in_scope, TemplateFilter, TemplateRepository, WhatsAppAccountRepository,
};
use crate::records::{MessageTemplate, WhatsAppAccount};

/// The accounts' collection.
pub const WHATSAPP_ACCOUNTS: &str = "whatsapp_accounts";
/// The templates' collection.
pub const MESSAGE_TEMPLATES: &str = "message_templates";

/// The capability's schema steps. A database made by a release that recorded numbered
/// schema versions runs this step once more on upgrade: creating an existing index is a
/// no-op.
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0001_accounts_templates",
    indexes: INDEXES,
}];

/// The indexes of [`MIGRATIONS`]; the unique ones name the field their violations report.
const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: WHATSAPP_ACCOUNTS,
        name: "phone_number_id_unique",
        keys: &[("phone_number_id", 1)],
        unique_field: Some("phone_number_id"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: WHATSAPP_ACCOUNTS,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: MESSAGE_TEMPLATES,
        name: "account_name_language_unique",
        keys: &[("account_id", 1), ("name", 1), ("language", 1)],
        unique_field: Some("name"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: MESSAGE_TEMPLATES,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

const ACCOUNT: &str = "whatsapp account";
const TEMPLATE: &str = "template";

/// Both WhatsApp repositories on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoWhatsApp {
    db: Database,
}

impl MongoWhatsApp {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn accounts(&self) -> Collection<Document> {
        self.db.collection(WHATSAPP_ACCOUNTS)
    }

    fn templates(&self) -> Collection<Document> {
        self.db.collection(MESSAGE_TEMPLATES)
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

/// The document `_id` visible in `scope`.
fn scoped_id(id: String, scope: Scope) -> Document {
    let mut filter = doc! { "_id": id };
    scope_filter(&mut filter, scope);
    filter
}

#[async_trait]
impl WhatsAppAccountRepository for MongoWhatsApp {
    async fn insert(&self, account: &WhatsAppAccount) -> Result<()> {
        let doc = to_doc(account, &account.id.to_string(), ACCOUNT)?;
        self.accounts().insert_one(doc).await.map_err(unique_err(
            INDEXES,
            ACCOUNT,
            "insert a whatsapp account",
        ))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: WhatsAppAccountId) -> Result<WhatsAppAccount> {
        match self
            .accounts()
            .find_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("read a whatsapp account"))?
        {
            Some(d) => from_doc(d, ACCOUNT, &[]),
            None => Err(not_found(ACCOUNT, id)),
        }
    }

    async fn find_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<WhatsAppAccount>> {
        self.accounts()
            .find_one(doc! { "phone_number_id": phone_number_id })
            .await
            .map_err(backend_err("find a whatsapp account by phone number id"))?
            .map(|d| from_doc(d, ACCOUNT, &[]))
            .transpose()
    }

    async fn update(&self, scope: Scope, account: &WhatsAppAccount) -> Result<WhatsAppAccount> {
        check_owner_stays_in_scope(scope, account.tenant_id)?;
        let mut next = account.clone();
        next.version += 1;
        let id = account.id.to_string();
        let replacement = to_doc(&next, &id, ACCOUNT)?;
        replace_scoped(
            self.accounts(),
            scope,
            id,
            account.version,
            replacement,
            INDEXES,
            ACCOUNT,
            "update a whatsapp account",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: WhatsAppAccountId) -> Result<()> {
        let result = self
            .accounts()
            .delete_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("delete a whatsapp account"))?;
        if result.deleted_count == 1 {
            Ok(())
        } else {
            Err(not_found(ACCOUNT, id))
        }
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WhatsAppAccount>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(
            self.accounts(),
            filter,
            page,
            ACCOUNT,
            |a: &WhatsAppAccount| a.id.to_string(),
        )
        .await
    }
}

#[async_trait]
impl TemplateRepository for MongoWhatsApp {
    async fn insert(&self, template: &MessageTemplate) -> Result<()> {
        let doc = to_doc(template, &template.id.to_string(), TEMPLATE)?;
        self.templates().insert_one(doc).await.map_err(unique_err(
            INDEXES,
            TEMPLATE,
            "insert a template",
        ))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: TemplateId) -> Result<MessageTemplate> {
        match self
            .templates()
            .find_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("read a template"))?
        {
            Some(d) => from_doc(d, TEMPLATE, &[]),
            None => Err(not_found(TEMPLATE, id)),
        }
    }

    async fn update(&self, scope: Scope, template: &MessageTemplate) -> Result<MessageTemplate> {
        check_owner_stays_in_scope(scope, template.tenant_id)?;
        let mut next = template.clone();
        next.version += 1;
        let id = template.id.to_string();
        let replacement = to_doc(&next, &id, TEMPLATE)?;
        replace_scoped(
            self.templates(),
            scope,
            id,
            template.version,
            replacement,
            INDEXES,
            TEMPLATE,
            "update a template",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: TemplateId) -> Result<()> {
        let result = self
            .templates()
            .delete_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("delete a template"))?;
        if result.deleted_count == 1 {
            Ok(())
        } else {
            Err(not_found(TEMPLATE, id))
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
        list_docs(
            self.templates(),
            query,
            page,
            TEMPLATE,
            |t: &MessageTemplate| t.id.to_string(),
        )
        .await
    }
}
