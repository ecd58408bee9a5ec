//! Response bodies of users, tenants and the audit log.

use chrono::{DateTime, Utc};
use imix_core::model::AuditEntry;
use imix_tenancy::{Tenant, TenantDocument, UsageLimits, User};
use poem_openapi::Object;

use super::dto::{LanguageDto, RoleDto, TenantStatusDto, UserStatusDto};

/// A user.
#[derive(Debug, Clone, Object)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Tenant; null for platform users.
    pub tenant_id: Option<String>,
    /// Language.
    pub default_language: LanguageDto,
    /// Role.
    pub role: RoleDto,
    /// Explicit permissions (custom role only).
    pub permissions: Vec<String>,
    /// Status.
    pub status: UserStatusDto,
    /// Must change the password before anything else.
    pub must_change_password: bool,
    /// Version, raised by every change.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Last sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            tenant_id: u.tenant_id.map(|t| t.to_string()),
            default_language: u.default_language.into(),
            role: u.role.into(),
            permissions: u.permissions,
            status: u.status.into(),
            must_change_password: u.must_change_password,
            version: u.version,
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_login_at: u.last_login_at,
        }
    }
}

/// A page of users.
#[derive(Debug, Clone, Object)]
pub struct UserList {
    /// Users, oldest first.
    pub items: Vec<UserView>,
    /// Cursor of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Usage limits; null means unlimited.
#[derive(Debug, Clone, Default, Object)]
pub struct LimitsView {
    /// Messages per UTC day.
    pub max_messages_per_day: Option<u64>,
    /// Media messages per UTC day.
    pub max_media_per_day: Option<u64>,
    /// Message templates.
    pub max_templates: Option<u64>,
    /// Users that are not deactivated.
    pub max_agents: Option<u64>,
    /// Contacts.
    pub max_contacts: Option<u64>,
    /// Contact groups.
    pub max_contact_groups: Option<u64>,
}

impl From<UsageLimits> for LimitsView {
    fn from(l: UsageLimits) -> Self {
        Self {
            max_messages_per_day: l.max_messages_per_day,
            max_media_per_day: l.max_media_per_day,
            max_templates: l.max_templates,
            max_agents: l.max_agents,
            max_contacts: l.max_contacts,
            max_contact_groups: l.max_contact_groups,
        }
    }
}

impl From<LimitsView> for UsageLimits {
    fn from(l: LimitsView) -> Self {
        Self {
            max_messages_per_day: l.max_messages_per_day,
            max_media_per_day: l.max_media_per_day,
            max_templates: l.max_templates,
            max_agents: l.max_agents,
            max_contacts: l.max_contacts,
            max_contact_groups: l.max_contact_groups,
        }
    }
}

/// A tenant. `private_notes` is present for platform users only.
#[derive(Debug, Clone, Object)]
pub struct TenantView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Organization.
    pub organization: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Phone (E.164).
    pub phone: Option<String>,
    /// Mobile (E.164).
    pub mobile: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Internal notes (platform users only).
    #[oai(skip_serializing_if_is_none)]
    pub private_notes: Option<String>,
    /// Default language.
    pub default_language: LanguageDto,
    /// Status.
    pub status: TenantStatusDto,
    /// Limits.
    pub limits: LimitsView,
    /// Where to download the logo; null without one.
    pub logo_url: Option<String>,
    /// Version, raised by every change.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl TenantView {
    /// The view of `t`; `with_notes` for platform users.
    pub fn of(t: Tenant, with_notes: bool) -> Self {
        let id = t.id.to_string();
        Self {
            logo_url: t
                .logo_blob_key
                .as_ref()
                .map(|_| format!("/api/v1/tenants/{id}/logo")),
            id,
            name: t.name,
            organization: t.organization,
            address: t.address,
            phone: t.phone,
            mobile: t.mobile,
            email: t.email,
            private_notes: if with_notes { t.private_notes } else { None },
            default_language: t.default_language.into(),
            status: t.status.into(),
            limits: t.limits.into(),
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A page of tenants.
#[derive(Debug, Clone, Object)]
pub struct TenantList {
    /// Tenants, oldest first.
    pub items: Vec<TenantView>,
    /// Cursor of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A tenant's document (metadata).
#[derive(Debug, Clone, Object)]
pub struct DocumentView {
    /// Id.
    pub id: String,
    /// The name it was uploaded with.
    pub file_name: String,
    /// Type detected from its bytes.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Where to download it.
    pub download_url: String,
}

impl DocumentView {
    /// The view of `d` of tenant `tenant_id`.
    pub fn of(tenant_id: &str, d: TenantDocument) -> Self {
        Self {
            download_url: format!("/api/v1/tenants/{tenant_id}/documents/{}", d.id),
            id: d.id.to_string(),
            file_name: d.file_name,
            content_type: d.content_type,
            size: d.size,
            uploaded_at: d.uploaded_at,
        }
    }
}

/// A tenant's documents.
#[derive(Debug, Clone, Object)]
pub struct DocumentList {
    /// Documents, oldest first.
    pub items: Vec<DocumentView>,
    /// Always null: a tenant's documents come in one page.
    pub next_cursor: Option<String>,
}

/// An audit-log entry.
#[derive(Debug, Clone, Object)]
pub struct AuditView {
    /// Id.
    pub id: String,
    /// Tenant concerned; null for platform actions.
    pub tenant_id: Option<String>,
    /// Who acted.
    pub actor_id: Option<String>,
    /// The actor's email (for failed sign-ins: the email tried).
    pub actor_email: Option<String>,
    /// What was done, e.g. `user.deactivate`.
    pub action: String,
    /// Kind of target.
    pub target_type: String,
    /// Target id.
    pub target_id: Option<String>,
    /// Client address.
    pub client_addr: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id.to_string(),
            tenant_id: e.tenant_id.map(|t| t.to_string()),
            actor_id: e.actor_id.map(|a| a.to_string()),
            actor_email: e.actor_email,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            client_addr: e.client_addr,
            at: e.at,
        }
    }
}

/// A page of audit entries.
#[derive(Debug, Clone, Object)]
pub struct AuditList {
    /// Entries, newest first.
    pub items: Vec<AuditView>,
    /// Cursor of the next (older) page; null on the last.
    pub next_cursor: Option<String>,
}
