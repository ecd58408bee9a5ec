//! Storage of what contact management adds to the inbox's records: contact groups and
//! their memberships, and the contact operations the inbox does not need (delete, find by
//! phone, count). Ports here, adapters in [`sqlite`] and [`mongo`], recorded under the
//! capability [`super::CAPABILITY`] as migration `0002_groups`.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        transfer::{paged, RecordSet},
        Backend, Page, PageRequest, Scope,
    },
    Result,
};

use crate::{
    contacts::groups::{ContactGroup, ContactGroupId, GroupMember},
    records::{Contact, ContactId},
};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Contact operations beyond [`super::ContactRepository`]'s.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ContactBookRepository: Send + Sync {
    /// Deletes the contact `id` if visible in `scope`, with its group memberships; returns
    /// it. Of two concurrent deletes only one gets the contact, the other
    /// [`imix_core::Error::NotFound`], so a counted slot is given back once.
    async fn delete_contact(&self, scope: Scope, id: ContactId) -> Result<Contact>;
    /// The tenant's contact with this E.164 phone number.
    async fn find_by_phone(&self, tenant: TenantId, phone: &str) -> Result<Option<Contact>>;
    /// How many contacts the tenant has.
    async fn count_contacts(&self, tenant: TenantId) -> Result<u64>;
}

/// Contact groups and memberships. A group's name is unique per tenant
/// ([`imix_core::Error::Duplicate`] with field `name`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait GroupRepository: Send + Sync {
    /// Stores a new group.
    async fn insert(&self, group: &ContactGroup) -> Result<()>;
    /// The group `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: ContactGroupId) -> Result<ContactGroup>;
    /// Replaces the group if visible in `scope` and at version `group.version`.
    async fn update(&self, scope: Scope, group: &ContactGroup) -> Result<ContactGroup>;
    /// Deletes the group `id` if visible in `scope`, with its memberships; returns it (of
    /// two concurrent deletes only one does).
    async fn delete(&self, scope: Scope, id: ContactGroupId) -> Result<ContactGroup>;
    /// Groups visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ContactGroup>>;
    /// How many groups the tenant has.
    async fn count(&self, tenant: TenantId) -> Result<u64>;
    /// Adds a membership; `false` when the contact already was a member.
    async fn add_member(&self, member: &GroupMember) -> Result<bool>;
    /// Removes a membership visible in `scope`; whether there was one.
    async fn remove_member(
        &self,
        scope: Scope,
        group: ContactGroupId,
        contact: ContactId,
    ) -> Result<bool>;
    /// The members of `group` visible in `scope`, in the order they were added.
    async fn members(
        &self,
        scope: Scope,
        group: ContactGroupId,
        page: PageRequest,
    ) -> Result<Page<GroupMember>>;
    /// Every membership visible in `scope`, in the order they were added (for backups).
    async fn memberships(&self, scope: Scope, page: PageRequest) -> Result<Page<GroupMember>>;
}

/// The repositories of this module on `backend`, as `(contact book, groups)`.
pub fn open(
    backend: &Backend,
) -> Result<(Arc<dyn ContactBookRepository>, Arc<dyn GroupRepository>)> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => {
            let a = Arc::new(sqlite::SqliteGroups::new(db.clone()));
            Ok((a.clone(), a))
        }
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            let a = Arc::new(mongo::MongoGroups::new(db.clone()));
            Ok((a.clone(), a))
        }
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Creates or upgrades the groups' tables or indexes on `backend`. Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => db
            .migrate(super::CAPABILITY, sqlite::MIGRATIONS)
            .await
            .map(drop),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, super::CAPABILITY, mongo::MIGRATIONS)
                .await
                .map(drop)
        }
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Groups, then memberships, for backups (after contacts, which memberships refer to).
pub fn record_sets(groups: &Arc<dyn GroupRepository>) -> Vec<Arc<dyn RecordSet>> {
    let (out, into) = (groups.clone(), groups.clone());
    let (members_out, members_in) = (groups.clone(), groups.clone());
    vec![
        paged(
            "contact_group",
            move |page| {
                let repo = out.clone();
                async move { repo.list(Scope::Platform, page).await }
            },
            move |group: ContactGroup| {
                let repo = into.clone();
                async move { repo.insert(&group).await }
            },
        ),
        paged(
            "contact_group_member",
            move |page| {
                let repo = members_out.clone();
                async move { repo.memberships(Scope::Platform, page).await }
            },
            move |member: GroupMember| {
                let repo = members_in.clone();
                async move { repo.add_member(&member).await.map(drop) }
            },
        ),
    ]
}
