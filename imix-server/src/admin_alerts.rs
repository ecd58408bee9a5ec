//! Emails to a tenant's admins about something that needs them (a number's sending paused
//! because Meta refused its token, an event-subscription endpoint disabled), queued in the
//! mail outbox with `imix-notify`'s localized templates, each admin in their own language.
//! The callers send one alert per event: on the change of state, not per message or
//! delivery.

use std::sync::Arc;

use imix_core::{
    directory::TenantDirectory,
    id::TenantId,
    store::{PageRequest, Scope, MAX_PAGE_SIZE},
};
use imix_notify::{templates::EmailContent, Mailbox, Notifier};
use imix_tenancy::{
    records::{Role, UserStatus},
    storage::UserRepository,
};

/// Queues alerts for tenants' admins. Cheap to clone.
#[derive(Clone)]
pub struct AdminAlerts {
    notifier: Notifier,
    users: Arc<dyn UserRepository>,
    tenants: Arc<dyn TenantDirectory>,
}

impl std::fmt::Debug for AdminAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAlerts").finish_non_exhaustive()
    }
}

impl AdminAlerts {
    /// Alerts through `notifier`'s outbox, to the admins among `users`, naming tenants as
    /// `tenants` knows them.
    pub fn new(
        notifier: Notifier,
        users: Arc<dyn UserRepository>,
        tenants: Arc<dyn TenantDirectory>,
    ) -> Self {
        Self {
            notifier,
            users,
            tenants,
        }
    }

    /// Queues `content(tenant name)` for every active admin of `tenant`; answers how many.
    /// Failures are logged: an alert never fails what caused it.
    pub async fn tell_admins(
        &self,
        tenant: TenantId,
        content: impl Fn(String) -> EmailContent,
    ) -> usize {
        let name = match self.tenants.profile(tenant).await {
            Ok(t) => t.name,
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "cannot read the tenant's name for an alert");
                tenant.to_string()
            }
        };
        let email = content(name);
        let mut queued = 0;
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let list = match self.users.list(Scope::Tenant(tenant), page.clone()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%tenant, error = %e, template = email.template_name(), "cannot list the tenant's admins for an alert");
                    return queued;
                }
            };
            for admin in list
                .items
                .iter()
                .filter(|u| u.role == Role::Admin && u.status != UserStatus::Deactivated)
            {
                let name = format!("{} {}", admin.first_name.trim(), admin.last_name.trim());
                let to = if name.trim().is_empty() {
                    Mailbox::new(admin.email.clone())
                } else {
                    Mailbox::named(name.trim(), admin.email.clone())
                };
                match self
                    .notifier
                    .send(Some(tenant), to, admin.default_language, &email)
                    .await
                {
                    Ok(id) => {
                        queued += 1;
                        tracing::info!(outbox_id = %id, admin = %admin.id, template = email.template_name(), "admin alert queued");
                    }
                    Err(e) => {
                        tracing::warn!(admin = %admin.id, error = %e, template = email.template_name(), "admin alert not queued");
                    }
                }
            }
            match list.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return queued,
            }
        }
    }
}

#[async_trait::async_trait]
impl imix_subscriptions::EndpointAlerts for AdminAlerts {
    async fn endpoint_disabled(&self, tenant: TenantId, url: &str, reason: &str) {
        self.tell_admins(tenant, |tenant_name| {
            EmailContent::WebhookEndpointDisabled {
                tenant_name,
                url: url.to_owned(),
                reason: reason.to_owned(),
            }
        })
        .await;
    }
}
