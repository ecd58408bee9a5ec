//! Contact groups: named lists of a tenant's contacts, and their memberships.

use imix_core::{id::TenantId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::records::ContactId;

imix_core::define_id!(
    /// Identifies a contact group.
    ContactGroupId,
    "contact group"
);
imix_core::define_id!(
    /// Identifies one membership (creation-ordered: members list in the order added).
    GroupMemberId,
    "group member"
);

/// A named list of contacts of one tenant. The name is unique per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactGroup {
    /// Its id.
    pub id: ContactGroupId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its name, unique within the tenant.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl ContactGroup {
    /// A new, empty group of `tenant`.
    pub fn new(tenant_id: TenantId, name: impl Into<String>) -> Self {
        let now = imix_core::now();
        Self {
            id: ContactGroupId::new(),
            tenant_id,
            name: name.into(),
            description: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// One contact's membership of one group. `(group_id, contact_id)` is unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// Its id.
    pub id: GroupMemberId,
    /// The group.
    pub group_id: ContactGroupId,
    /// The contact.
    pub contact_id: ContactId,
    /// The tenant of both.
    pub tenant_id: TenantId,
    /// When the contact was added.
    pub added_at: Timestamp,
}

impl GroupMember {
    /// `contact` joining `group` of `tenant` now.
    pub fn new(tenant_id: TenantId, group_id: ContactGroupId, contact_id: ContactId) -> Self {
        Self {
            id: GroupMemberId::new(),
            group_id,
            contact_id,
            tenant_id,
            added_at: imix_core::now(),
        }
    }
}
