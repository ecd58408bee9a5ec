//! WhatsApp Business accounts on SQLite. `phone_number_id` is a UNIQUE column, so two
//! accounts can never claim one number, whichever tenant adds them.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{id::WhatsAppAccountId, model::WhatsAppAccount, store::WhatsAppAccountRepository};

const ENTITY: &str = "whatsapp account";

fn not_found(id: impl ToString) -> Error {
    Error::NotFound {
        entity: ENTITY,
        id: id.to_string(),
    }
}

#[async_trait]
impl WhatsAppAccountRepository for SqliteStore {
    async fn insert(&self, account: &WhatsAppAccount) -> Result<()> {
        let doc = to_json(account, ENTITY)?;
        let id = account.id.to_string();
        let tenant = account.tenant_id.to_string();
        let phone = account.phone_number_id.clone();
        let version = version_param(account.version)?;
        self.write("insert a whatsapp account", move |c| {
            exec(
                c,
                "INSERT INTO whatsapp_accounts (id, tenant_id, phone_number_id, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, tenant, phone, version, doc],
            )
            .map_err(unique_err(
                WHATSAPP_UNIQUE,
                ENTITY,
                "insert a whatsapp account",
            ))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, scope: Scope, id: WhatsAppAccountId) -> Result<WhatsAppAccount> {
        let only = scope_param(scope);
        self.read("read a whatsapp account", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM whatsapp_accounts
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read a whatsapp account"))?;
            match doc {
                Some(doc) => from_json(&doc, ENTITY),
                None => Err(not_found(id)),
            }
        })
        .await
    }

    async fn find_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<WhatsAppAccount>> {
        let phone = phone_number_id.to_owned();
        self.read("find a whatsapp account by phone number id", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM whatsapp_accounts WHERE phone_number_id = ?1",
                    [phone],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("find a whatsapp account by phone number id"))?;
            doc.map(|d| from_json(&d, ENTITY)).transpose()
        })
        .await
    }

    async fn update(&self, scope: Scope, account: &WhatsAppAccount) -> Result<WhatsAppAccount> {
        const ACTION: &str = "update a whatsapp account";
        crate::store::check_owner_stays_in_scope(scope, Some(account.tenant_id))?;
        let mut next = account.clone();
        next.version += 1;
        let doc = to_json(&next, ENTITY)?;
        let id = account.id.to_string();
        let tenant = account.tenant_id.to_string();
        let phone = account.phone_number_id.clone();
        let (expected, new_version) = (
            version_param(account.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.write(ACTION, move |c| {
            let changed = c
                .execute(
                    "UPDATE whatsapp_accounts
                     SET version = ?1, doc = ?2, tenant_id = ?3, phone_number_id = ?4
                     WHERE id = ?5 AND version = ?6 AND (?7 IS NULL OR tenant_id = ?7)",
                    params![new_version, doc, tenant, phone, id, expected, only],
                )
                .map_err(unique_err(WHATSAPP_UNIQUE, ENTITY, ACTION))?;
            if changed == 1 {
                return Ok(next);
            }
            Err(missing_or_stale(
                c,
                "whatsapp_accounts",
                ENTITY,
                id,
                only,
                expected,
            ))
        })
        .await
    }

    async fn delete(&self, scope: Scope, id: WhatsAppAccountId) -> Result<()> {
        let only = scope_param(scope);
        self.write("delete a whatsapp account", move |c| {
            let n = c
                .execute(
                    "DELETE FROM whatsapp_accounts WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                )
                .map_err(db_err("delete a whatsapp account"))?;
            if n == 1 {
                Ok(())
            } else {
                Err(not_found(id))
            }
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WhatsAppAccount>> {
        const ACTION: &str = "list whatsapp accounts";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.read(ACTION, move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM whatsapp_accounts
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_err(ACTION))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                .map_err(db_err(ACTION))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<WhatsAppAccount>(
                    &row.map_err(db_err(ACTION))?,
                    ENTITY,
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |a| a.id.to_string()))
        })
        .await
    }
}
