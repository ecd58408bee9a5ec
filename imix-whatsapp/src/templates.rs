//! Message templates: list, create (submitted to Meta for review, stored `PENDING`),
//! delete (at Meta and here), and sync (reconcile with Meta's full list).
//!
//! The tenant's Max Templates is enforced through a [`TemplateCounter`]: a slot is
//! reserved atomically before Meta is asked, and released if the creation fails or when the
//! template is deleted, so concurrent creations never exceed the limit. A sync sets the
//! count to the number of templates that really exist.
//!
//! Every operation takes the caller's [`AccessContext`] and the tenant named in the path,
//! and checks `templates.read` / `templates.manage` and the tenant before touching storage.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use imix_core::{
    access::{AccessContext, AuditSink, Permission},
    id::{TemplateId, TenantId, WhatsAppAccountId},
    store::{Page, PageRequest, Scope},
    Error as CoreError,
};

use crate::{
    accounts::{invalid, AccountService, ServiceResult, WhatsAppRepos},
    client::{list_all_templates, WhatsAppClient},
    error::ServiceError,
    model::{
        NewTemplate, Template, TemplateDefinitionComponent, TEMPLATE_CATEGORIES, TEMPLATE_STATUSES,
    },
    records::{MessageTemplate, WhatsAppAccount},
    storage::TemplateFilter,
};

/// Counts each tenant's templates against its Max Templates, atomically (the server
/// implements it with `imix_tenancy::quota::CountLimits`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TemplateCounter: Send + Sync {
    /// Reserves one template for `tenant` if it has fewer than `limit` (`None` =
    /// unlimited); otherwise [`ServiceError::LimitReached`] and nothing changes.
    async fn reserve(&self, tenant: TenantId, limit: Option<u64>) -> ServiceResult<()>;
    /// Gives one back (a template deleted, or a creation that failed).
    async fn release(&self, tenant: TenantId) -> ServiceResult<()>;
    /// Sets the tenant's count to `actual`, the number of templates stored.
    async fn reconcile(&self, tenant: TenantId, actual: u64) -> ServiceResult<()>;
}

/// A template to submit, as the client sent it: every field, the account id and the
/// components included, is validated by [`TemplateService::create`] after the caller's
/// access is checked (so a refused caller learns nothing from a validation answer).
#[derive(Debug, Clone)]
pub struct NewTemplateRequest {
    /// The account (WABA) to create it on: a [`WhatsAppAccountId`] as text.
    pub account_id: String,
    /// Lowercase letters, digits and underscores.
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// Meta's components (`HEADER`, `BODY`, `FOOTER`, `BUTTONS`), each a JSON object in
    /// the shape of [`TemplateDefinitionComponent`].
    pub components: Vec<serde_json::Value>,
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Templates Meta has that were not stored.
    pub added: u64,
    /// Stored templates whose status, category or components changed.
    pub updated: u64,
    /// Stored templates Meta no longer has.
    pub removed: u64,
    /// The tenant's templates after the sync.
    pub total: u64,
}

/// Templates over their storage ports, the Graph API client, the account service (for
/// tokens) and the audit log.
#[derive(Clone)]
pub struct TemplateService {
    repos: WhatsAppRepos,
    client: Arc<dyn WhatsAppClient>,
    accounts: AccountService,
    counter: Arc<dyn TemplateCounter>,
    audit: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for TemplateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateService").finish_non_exhaustive()
    }
}

impl TemplateService {
    /// The service.
    pub fn new(
        repos: WhatsAppRepos,
        client: Arc<dyn WhatsAppClient>,
        accounts: AccountService,
        counter: Arc<dyn TemplateCounter>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            repos,
            client,
            accounts,
            counter,
            audit,
        }
    }

    /// `tenant`'s templates (`templates.read`), oldest first; `status` (any case) narrows
    /// to one of Meta's statuses, `account_id` (an account id as text, as the client sent
    /// it) to one account.
    pub async fn list(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        account_id: Option<&str>,
        status: Option<&str>,
        page: PageRequest,
    ) -> ServiceResult<Page<MessageTemplate>> {
        let scope = ctx.authorize(Permission::TemplatesRead, tenant)?;
        let account_id = account_id
            .map(|raw| {
                raw.trim()
                    .parse::<WhatsAppAccountId>()
                    .map_err(|_| invalid("account_id", "not a valid id"))
            })
            .transpose()?;
        let status = status.map(valid_status).transpose()?;
        Ok(self
            .repos
            .templates
            .list(scope, TemplateFilter { account_id, status }, page)
            .await?)
    }

    /// One of `tenant`'s templates (`templates.read`).
    pub async fn get(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: TemplateId,
    ) -> ServiceResult<MessageTemplate> {
        let scope = ctx.authorize(Permission::TemplatesRead, tenant)?;
        Ok(self.repos.templates.get(scope, id).await?)
    }

    /// Submits a template to Meta and stores it with Meta's id and status (`PENDING` until
    /// Meta reviews it); `templates.manage`. Over the tenant's Max Templates:
    /// [`ServiceError::LimitReached`].
    pub async fn create(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        req: NewTemplateRequest,
    ) -> ServiceResult<MessageTemplate> {
        let scope = ctx.authorize(Permission::TemplatesManage, tenant)?;
        let account_id = req
            .account_id
            .trim()
            .parse::<WhatsAppAccountId>()
            .map_err(|_| invalid("account_id", "not a valid id"))?;
        let components = req
            .components
            .into_iter()
            .map(serde_json::from_value::<TemplateDefinitionComponent>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("components", e.to_string()))?;
        let account = match self.repos.accounts.get(scope, account_id).await {
            Ok(a) => a,
            Err(CoreError::NotFound { .. }) => {
                return Err(invalid(
                    "account_id",
                    "no such WhatsApp account in this tenant",
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let name = req.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 512
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(
                "name",
                "must be 1 to 512 lowercase letters, digits and underscores",
            ));
        }
        let language = req.language.trim().to_owned();
        if language.is_empty()
            || language.len() > 16
            || !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid("language", "must be a language code such as en_US"));
        }
        let category = req.category.trim().to_ascii_uppercase();
        if !TEMPLATE_CATEGORIES.contains(&category.as_str()) {
            return Err(invalid(
                "category",
                "must be MARKETING, UTILITY or AUTHENTICATION",
            ));
        }
        if !components
            .iter()
            .any(|c| c.kind.eq_ignore_ascii_case("BODY"))
        {
            return Err(invalid("components", "must include a BODY component"));
        }
        let limit = self
            .repos
            .tenants
            .profile(tenant)
            .await?
            .limits
            .max_templates;
        let token = self.accounts.access_token(&account)?;

        self.counter.reserve(tenant, limit).await?;
        let new = NewTemplate {
            name,
            category,
            language,
            components,
        };
        let created = match self
            .client
            .create_template(&token, &account.waba_id, &new)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.release_quietly(tenant).await;
                return Err(e.into());
            }
        };
        let now = imix_core::now();
        let template = MessageTemplate {
            id: TemplateId::new(),
            tenant_id: tenant,
            account_id: account.id,
            meta_id: created.id.clone(),
            name: new.name.clone(),
            language: new.language.clone(),
            category: if created.category.is_empty() {
                new.category.clone()
            } else {
                created.category
            },
            status: if created.status.is_empty() {
                "PENDING".to_owned()
            } else {
                created.status
            },
            components: serde_json::to_value(&new.components).map_err(|e| CoreError::Corrupt {
                entity: "template",
                source: e.into(),
            })?,
            rejected_reason: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.repos.templates.insert(&template).await {
            self.release_quietly(tenant).await;
            // Do not leave at Meta what imix does not know about.
            if let Err(meta) = self
                .client
                .delete_template(&token, &account.waba_id, &new.name, Some(&created.id))
                .await
            {
                tracing::warn!(target: "imix_whatsapp", error = %meta, "could not withdraw a template after a failed insert");
            }
            return Err(e.into());
        }
        tracing::info!(target: "imix_whatsapp", template = %template.id, account = %account.id, "template submitted");
        self.audit
            .record(
                ctx,
                "template.create",
                "template",
                template.id.to_string(),
                Some(tenant),
            )
            .await;
        Ok(template)
    }

    /// Deletes one of `tenant`'s templates at Meta (this language only) and here
    /// (`templates.manage`). A template Meta no longer has is simply removed here.
    pub async fn delete(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: TemplateId,
    ) -> ServiceResult<()> {
        let scope = ctx.authorize(Permission::TemplatesManage, tenant)?;
        let template = self.repos.templates.get(scope, id).await?;
        let account = self.repos.accounts.get(scope, template.account_id).await?;
        let token = self.accounts.access_token(&account)?;
        match self
            .client
            .delete_template(
                &token,
                &account.waba_id,
                &template.name,
                Some(&template.meta_id),
            )
            .await
        {
            Ok(()) => {}
            // 100 with subcode 2593002: "Message template … can't be found".
            Err(e) if e.code() == Some(100) && is_template_missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.repos.templates.delete(scope, id).await?;
        self.counter.release(template.tenant_id).await?;
        self.audit
            .record(
                ctx,
                "template.delete",
                "template",
                id.to_string(),
                Some(tenant),
            )
            .await;
        Ok(())
    }

    /// Reconciles the tenant's templates (of one account, or of all its accounts) with
    /// Meta's full lists (`templates.manage`): inserts what Meta has and imix does not,
    /// updates status, category and components, deletes what Meta no longer has, then sets
    /// the tenant's template count to what is stored.
    pub async fn sync(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        account_id: Option<WhatsAppAccountId>,
    ) -> ServiceResult<SyncReport> {
        let scope = ctx.authorize(Permission::TemplatesManage, tenant)?;
        let accounts = match account_id {
            Some(id) => vec![self.repos.accounts.get(scope, id).await?],
            None => self.all_accounts(scope).await?,
        };
        let mut report = SyncReport::default();
        for account in accounts {
            self.sync_account(scope, &account, &mut report).await?;
        }
        let total = self.count(scope).await?;
        self.counter.reconcile(tenant, total).await?;
        report.total = total;
        self.audit
            .record(
                ctx,
                "template.sync",
                "tenant",
                tenant.to_string(),
                Some(tenant),
            )
            .await;
        Ok(report)
    }

    async fn sync_account(
        &self,
        scope: Scope,
        account: &WhatsAppAccount,
        report: &mut SyncReport,
    ) -> ServiceResult<()> {
        let token = self.accounts.access_token(account)?;
        let remote =
            list_all_templates(self.client.as_ref(), &token, &account.waba_id, None).await?;
        let mut local: HashMap<(String, String), MessageTemplate> = self
            .all_templates(scope, account.id)
            .await?
            .into_iter()
            .map(|t| ((t.name.clone(), t.language.clone()), t))
            .collect();
        let now = imix_core::now();
        for r in remote {
            let components = components_json(&r)?;
            match local.remove(&(r.name.clone(), r.language.clone())) {
                Some(mut t) => {
                    if t.meta_id != r.id
                        || t.status != r.status
                        || t.category != r.category
                        || t.components != components
                    {
                        t.meta_id = r.id;
                        t.status = r.status;
                        t.category = r.category;
                        t.components = components;
                        if t.status != "REJECTED" {
                            t.rejected_reason = None;
                        }
                        t.updated_at = now;
                        self.repos.templates.update(scope, &t).await?;
                        report.updated += 1;
                    }
                }
                None => {
                    let t = MessageTemplate {
                        id: TemplateId::new(),
                        tenant_id: account.tenant_id,
                        account_id: account.id,
                        meta_id: r.id,
                        name: r.name,
                        language: r.language,
                        category: r.category,
                        status: r.status,
                        components,
                        rejected_reason: None,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    };
                    match self.repos.templates.insert(&t).await {
                        Ok(()) => report.added += 1,
                        // Created concurrently by another request: it is there.
                        Err(CoreError::Duplicate { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        for (_, gone) in local {
            match self.repos.templates.delete(scope, gone.id).await {
                Ok(()) => report.removed += 1,
                Err(CoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn all_accounts(&self, scope: Scope) -> ServiceResult<Vec<WhatsAppAccount>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .repos
                .accounts
                .list(
                    scope,
                    PageRequest {
                        cursor,
                        limit: Some(500),
                    },
                )
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    async fn all_templates(
        &self,
        scope: Scope,
        account: WhatsAppAccountId,
    ) -> ServiceResult<Vec<MessageTemplate>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .repos
                .templates
                .list(
                    scope,
                    TemplateFilter {
                        account_id: Some(account),
                        status: None,
                    },
                    PageRequest {
                        cursor,
                        limit: Some(500),
                    },
                )
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    async fn count(&self, scope: Scope) -> ServiceResult<u64> {
        let mut n = 0;
        let mut cursor = None;
        loop {
            let page = self
                .repos
                .templates
                .list(
                    scope,
                    TemplateFilter::default(),
                    PageRequest {
                        cursor,
                        limit: Some(500),
                    },
                )
                .await?;
            n += page.items.len() as u64;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    async fn release_quietly(&self, tenant: TenantId) {
        if let Err(e) = self.counter.release(tenant).await {
            tracing::warn!(target: "imix_whatsapp", error = %e, "could not release a template slot; a sync will reconcile the count");
        }
    }
}

fn components_json(t: &Template) -> ServiceResult<serde_json::Value> {
    serde_json::to_value(&t.components).map_err(|e| {
        CoreError::Corrupt {
            entity: "template",
            source: e.into(),
        }
        .into()
    })
}

fn is_template_missing(e: &crate::Error) -> bool {
    e.graph_error()
        .is_some_and(|g| g.error_subcode == Some(2593002) || g.error_subcode == Some(33))
}

fn valid_status(status: &str) -> ServiceResult<String> {
    let upper = status.trim().to_ascii_uppercase();
    if TEMPLATE_STATUSES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(ServiceError::Invalid {
            field: "status",
            message: format!("must be one of {}", TEMPLATE_STATUSES.join(", ")),
        })
    }
}
