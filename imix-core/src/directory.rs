//! What every capability may know of a tenant, without depending on the tenancy
//! capability that owns tenants: a read-only [`TenantDirectory`] of [`TenantProfile`]s.
//! `imix-tenancy` implements it over its tenant records; a capability that must check a
//! tenant is active, use its language or apply its usage limits takes
//! `Arc<dyn TenantDirectory>`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{id::TenantId, Language, Result};

/// Whether a tenant may use the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Its users can sign in and it can send messages.
    #[default]
    Active,
    /// Its users cannot sign in and nothing is sent on its behalf; its data stays intact.
    Deactivated,
}

/// A tenant's usage limits, from the admin guide's "Configure usage limits".
/// `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageLimits {
    /// Messages the tenant may send per UTC day.
    pub max_messages_per_day: Option<u64>,
    /// Media messages the tenant may send per UTC day.
    pub max_media_per_day: Option<u64>,
    /// Message templates the tenant may have.
    pub max_templates: Option<u64>,
    /// Users (agents) the tenant may have that are not deactivated.
    pub max_agents: Option<u64>,
    /// Contacts the tenant may have.
    pub max_contacts: Option<u64>,
    /// Contact groups the tenant may have.
    pub max_contact_groups: Option<u64>,
}

/// A tenant as other capabilities see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantProfile {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// Active or deactivated.
    pub status: TenantStatus,
    /// The language of its emails and messages when nothing else decides.
    pub default_language: Language,
    /// Its usage limits.
    pub limits: UsageLimits,
}

impl TenantProfile {
    /// Whether the tenant is active.
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
}

/// Looks tenants up by id, platform-wide.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TenantDirectory: Send + Sync {
    /// The tenant `id`; [`crate::Error::NotFound`] when there is none.
    async fn profile(&self, id: TenantId) -> Result<TenantProfile>;
}
