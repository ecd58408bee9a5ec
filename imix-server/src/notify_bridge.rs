//! The bridge between tenancy and notifications: the account emails of
//! [`imix_tenancy::emails::AccountEmails`] (invitations, password resets) rendered by
//! `imix-notify`'s localized templates (English, French, Arabic; HTML and plain text) and
//! put into its mail outbox, which persists each email before sending and retries it until
//! the mail server accepts it.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{directory::TenantDirectory, Language};
use imix_notify::{templates::EmailContent, MailError, Mailbox, Notifier, NotifyError};
use imix_tenancy::{emails::AccountEmails, User};
use secrecy::SecretString;

/// What invitations say the user is invited to when they belong to no tenant.
const PLATFORM_NAME: &str = "iMix";

/// Account emails through a [`Notifier`]: localized, queued in the outbox. An email is
/// "sent" for the caller as soon as it is stored; the outbox worker delivers it.
#[derive(Clone)]
pub struct NotifierAccountEmails {
    notifier: Notifier,
    tenants: Arc<dyn TenantDirectory>,
}

impl std::fmt::Debug for NotifierAccountEmails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierAccountEmails")
            .finish_non_exhaustive()
    }
}

impl NotifierAccountEmails {
    /// Emails through `notifier`; tenant names (for invitations) read from `tenants`.
    pub fn new(notifier: Notifier, tenants: Arc<dyn TenantDirectory>) -> Self {
        Self { notifier, tenants }
    }

    /// The organization an invitation names: the user's tenant, else the platform.
    async fn organization(&self, user: &User) -> String {
        match user.tenant_id {
            Some(id) => match self.tenants.profile(id).await {
                Ok(tenant) => tenant.name,
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %id, "cannot read the tenant's name for an invitation");
                    PLATFORM_NAME.to_owned()
                }
            },
            None => PLATFORM_NAME.to_owned(),
        }
    }

    async fn enqueue(
        &self,
        user: &User,
        language: Language,
        content: &EmailContent,
    ) -> Result<(), MailError> {
        self.notifier
            .send(user.tenant_id, mailbox(user), language, content)
            .await
            .map(|id| {
                tracing::info!(outbox_id = %id, user = %user.id, template = content.template_name(), "account email queued");
            })
            .map_err(queue_error)
    }
}

/// How the user is greeted: their name, else their email.
fn display_name(user: &User) -> String {
    let name = format!("{} {}", user.first_name.trim(), user.last_name.trim());
    let name = name.trim();
    if name.is_empty() {
        user.email.clone()
    } else {
        name.to_owned()
    }
}

fn mailbox(user: &User) -> Mailbox {
    let name = format!("{} {}", user.first_name.trim(), user.last_name.trim());
    if name.trim().is_empty() {
        Mailbox::new(user.email.clone())
    } else {
        Mailbox::named(name.trim(), user.email.clone())
    }
}

/// The tenancy port speaks [`MailError`]; queueing fails only on a bad address or a store
/// problem.
fn queue_error(e: NotifyError) -> MailError {
    match e {
        NotifyError::Mail(e) => e,
        NotifyError::Invalid(errors) => {
            let (field, reason) = errors
                .first()
                .map(|f| (f.field.to_owned(), f.message.clone()))
                .unwrap_or_else(|| ("email".to_owned(), "is invalid".to_owned()));
            MailError::invalid(field, reason)
        }
        other => MailError::other(format!("cannot queue the email: {other}")).caused_by(other),
    }
}

#[async_trait]
impl AccountEmails for NotifierAccountEmails {
    async fn invitation(
        &self,
        user: &User,
        language: Language,
        link: &str,
        valid_hours: i64,
    ) -> Result<(), MailError> {
        let content = EmailContent::Invitation {
            recipient_name: display_name(user),
            organization: self.organization(user).await,
            link: SecretString::from(link.to_owned()),
            valid_hours: Some(valid_hours),
        };
        self.enqueue(user, language, &content).await
    }

    async fn password_reset(
        &self,
        user: &User,
        language: Language,
        link: &str,
        valid_hours: i64,
    ) -> Result<(), MailError> {
        let content = EmailContent::PasswordReset {
            recipient_name: display_name(user),
            link: SecretString::from(link.to_owned()),
            valid_hours: Some(valid_hours),
        };
        self.enqueue(user, language, &content).await
    }

    async fn usage_warning(
        &self,
        admin: &User,
        tenant: &imix_tenancy::Tenant,
        percent: u8,
        used: u64,
        limit: u64,
    ) -> Result<(), MailError> {
        let threshold = if percent >= 100 {
            imix_notify::templates::UsageThreshold::Percent100
        } else {
            imix_notify::templates::UsageThreshold::Percent80
        };
        let content = EmailContent::UsageWarning {
            tenant_name: tenant.name.clone(),
            threshold,
            used,
            limit,
        };
        self.enqueue(admin, admin.default_language, &content).await
    }

    async fn contacts_warning(
        &self,
        admin: &User,
        tenant: &imix_tenancy::Tenant,
        threshold: imix_notify::templates::ContactsThreshold,
        count: u64,
        limit: u64,
    ) -> Result<(), MailError> {
        let content = EmailContent::ContactsWarning {
            tenant_name: tenant.name.clone(),
            threshold,
            count,
            limit,
        };
        self.enqueue(admin, admin.default_language, &content).await
    }
}
