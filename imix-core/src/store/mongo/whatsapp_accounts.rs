//! WhatsApp Business accounts on MongoDB: collection `whatsapp_accounts`, with a unique
//! index on `phone_number_id` (platform-wide) and one on `(tenant_id, _id)` for lists.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{id::WhatsAppAccountId, model::WhatsAppAccount, store::WhatsAppAccountRepository};

pub(super) const WHATSAPP_ACCOUNTS: &str = "whatsapp_accounts";
const ENTITY: &str = "whatsapp account";

impl MongoStore {
    fn whatsapp_accounts(&self) -> Collection<Document> {
        self.db.collection(WHATSAPP_ACCOUNTS)
    }
}

#[async_trait]
impl WhatsAppAccountRepository for MongoStore {
    async fn insert(&self, account: &WhatsAppAccount) -> Result<()> {
        let doc = to_doc(account, &account.id.to_string(), ENTITY)?;
        self.whatsapp_accounts()
            .insert_one(doc)
            .await
            .map_err(unique_err(ENTITY, "insert a whatsapp account"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: WhatsAppAccountId) -> Result<WhatsAppAccount> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .whatsapp_accounts()
            .find_one(filter)
            .await
            .map_err(backend_err("read a whatsapp account"))?
        {
            Some(d) => from_doc(d, ENTITY),
            None => Err(Error::NotFound {
                entity: ENTITY,
                id: id.to_string(),
            }),
        }
    }

    async fn find_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<WhatsAppAccount>> {
        self.whatsapp_accounts()
            .find_one(doc! { "phone_number_id": phone_number_id })
            .await
            .map_err(backend_err("find a whatsapp account by phone number id"))?
            .map(|d| from_doc(d, ENTITY))
            .transpose()
    }

    async fn update(&self, scope: Scope, account: &WhatsAppAccount) -> Result<WhatsAppAccount> {
        check_owner_stays_in_scope(scope, Some(account.tenant_id))?;
        let mut next = account.clone();
        next.version += 1;
        let id = account.id.to_string();
        let replacement = to_doc(&next, &id, ENTITY)?;
        self.replace_scoped(
            self.whatsapp_accounts(),
            scope,
            id,
            account.version,
            replacement,
            ENTITY,
            "update a whatsapp account",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: WhatsAppAccountId) -> Result<()> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        let result = self
            .whatsapp_accounts()
            .delete_one(filter)
            .await
            .map_err(backend_err("delete a whatsapp account"))?;
        if result.deleted_count == 1 {
            Ok(())
        } else {
            Err(Error::NotFound {
                entity: ENTITY,
                id: id.to_string(),
            })
        }
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WhatsAppAccount>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        self.list_docs(
            self.whatsapp_accounts(),
            filter,
            page,
            ENTITY,
            |a: &WhatsAppAccount| a.id.to_string(),
        )
        .await
    }
}
