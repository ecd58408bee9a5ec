//! Groups and the contact book on MongoDB: collections `contact_groups` (unique on
//! `(tenant_id, name)`) and `contact_group_members` (unique on `(group_id, contact_id)`),
//! and an index of `contacts` by tenant and phone. A delete is one `findOneAndDelete`, so
//! of two concurrent deletes only one returns the record; memberships of a deleted contact
//! or group are removed after it.

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        check_owner_stays_in_scope,
        mongo::{
            support::{
                backend_err, from_doc, is_duplicate_key, list_docs, replace_scoped, scope_filter,
                to_doc, unique_err,
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

use super::{ContactBookRepository, GroupRepository};
use crate::{
    contacts::groups::{ContactGroup, ContactGroupId, GroupMember},
    records::{Contact, ContactId},
};

/// The contacts' collection (the inbox's).
const CONTACTS: &str = "contacts";
/// The groups' collection.
pub const CONTACT_GROUPS: &str = "contact_groups";
/// The memberships' collection.
pub const CONTACT_GROUP_MEMBERS: &str = "contact_group_members";

/// The steps of this module, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0002_groups",
    indexes: INDEXES,
}];

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: CONTACT_GROUPS,
        name: "tenant_name_unique",
        keys: &[("tenant_id", 1), ("name", 1)],
        unique_field: Some("name"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACT_GROUPS,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACT_GROUP_MEMBERS,
        name: "group_contact_unique",
        keys: &[("group_id", 1), ("contact_id", 1)],
        unique_field: Some("contact_id"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACT_GROUP_MEMBERS,
        name: "by_group",
        keys: &[("group_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACT_GROUP_MEMBERS,
        name: "by_contact",
        keys: &[("contact_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACTS,
        name: "by_tenant_phone",
        keys: &[("tenant_id", 1), ("phone", 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

const CONTACT: &str = "contact";
const GROUP: &str = "contact group";
const MEMBER: &str = "group member";

/// The repositories of [`super`] on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoGroups {
    db: Database,
}

impl MongoGroups {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn contacts(&self) -> Collection<Document> {
        self.db.collection(CONTACTS)
    }

    fn groups(&self) -> Collection<Document> {
        self.db.collection(CONTACT_GROUPS)
    }

    fn members_coll(&self) -> Collection<Document> {
        self.db.collection(CONTACT_GROUP_MEMBERS)
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

fn scoped_id(id: String, scope: Scope) -> Document {
    let mut filter = doc! { "_id": id };
    scope_filter(&mut filter, scope);
    filter
}

#[async_trait]
impl ContactBookRepository for MongoGroups {
    async fn delete_contact(&self, scope: Scope, id: ContactId) -> Result<Contact> {
        const ACTION: &str = "delete a contact";
        let found = self
            .contacts()
            .find_one_and_delete(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err(ACTION))?
            .ok_or_else(|| not_found(CONTACT, id))?;
        let contact: Contact = from_doc(found, CONTACT, &[])?;
        crate::storage::search::mongo::remove(&self.db, &id.to_string()).await?;
        self.members_coll()
            .delete_many(doc! { "contact_id": id.to_string() })
            .await
            .map_err(backend_err(ACTION))?;
        Ok(contact)
    }

    async fn find_by_phone(&self, tenant: TenantId, phone: &str) -> Result<Option<Contact>> {
        self.contacts()
            .find_one(doc! { "tenant_id": tenant.to_string(), "phone": phone })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(backend_err("find a contact by phone"))?
            .map(|d| from_doc(d, CONTACT, &[]))
            .transpose()
    }

    async fn count_contacts(&self, tenant: TenantId) -> Result<u64> {
        self.contacts()
            .count_documents(doc! { "tenant_id": tenant.to_string() })
            .await
            .map_err(backend_err("count contacts"))
    }
}

#[async_trait]
impl GroupRepository for MongoGroups {
    async fn insert(&self, group: &ContactGroup) -> Result<()> {
        let doc = to_doc(group, &group.id.to_string(), GROUP)?;
        self.groups().insert_one(doc).await.map_err(unique_err(
            INDEXES,
            GROUP,
            "insert a contact group",
        ))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: ContactGroupId) -> Result<ContactGroup> {
        match self
            .groups()
            .find_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("read a contact group"))?
        {
            Some(d) => from_doc(d, GROUP, &[]),
            None => Err(not_found(GROUP, id)),
        }
    }

    async fn update(&self, scope: Scope, group: &ContactGroup) -> Result<ContactGroup> {
        check_owner_stays_in_scope(scope, Some(group.tenant_id))?;
        let mut next = group.clone();
        next.version += 1;
        let id = group.id.to_string();
        let replacement = to_doc(&next, &id, GROUP)?;
        replace_scoped(
            self.groups(),
            scope,
            id,
            group.version,
            replacement,
            INDEXES,
            GROUP,
            "update a contact group",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: ContactGroupId) -> Result<ContactGroup> {
        const ACTION: &str = "delete a contact group";
        let found = self
            .groups()
            .find_one_and_delete(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err(ACTION))?
            .ok_or_else(|| not_found(GROUP, id))?;
        let group: ContactGroup = from_doc(found, GROUP, &[])?;
        self.members_coll()
            .delete_many(doc! { "group_id": id.to_string() })
            .await
            .map_err(backend_err(ACTION))?;
        Ok(group)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ContactGroup>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(self.groups(), filter, page, GROUP, |g: &ContactGroup| {
            g.id.to_string()
        })
        .await
    }

    async fn count(&self, tenant: TenantId) -> Result<u64> {
        self.groups()
            .count_documents(doc! { "tenant_id": tenant.to_string() })
            .await
            .map_err(backend_err("count contact groups"))
    }

    async fn add_member(&self, member: &GroupMember) -> Result<bool> {
        let doc = to_doc(member, &member.id.to_string(), MEMBER)?;
        match self.members_coll().insert_one(doc).await {
            Ok(_) => Ok(true),
            // Already a member: the (group_id, contact_id) index refused the second one.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(backend_err("add a group member")(e)),
        }
    }

    async fn remove_member(
        &self,
        scope: Scope,
        group: ContactGroupId,
        contact: ContactId,
    ) -> Result<bool> {
        let mut filter = doc! { "group_id": group.to_string(), "contact_id": contact.to_string() };
        scope_filter(&mut filter, scope);
        let result = self
            .members_coll()
            .delete_one(filter)
            .await
            .map_err(backend_err("remove a group member"))?;
        Ok(result.deleted_count == 1)
    }

    async fn members(
        &self,
        scope: Scope,
        group: ContactGroupId,
        page: PageRequest,
    ) -> Result<Page<GroupMember>> {
        let mut filter = doc! { "group_id": group.to_string() };
        scope_filter(&mut filter, scope);
        list_docs(
            self.members_coll(),
            filter,
            page,
            MEMBER,
            |m: &GroupMember| m.id.to_string(),
        )
        .await
    }

    async fn memberships(&self, scope: Scope, page: PageRequest) -> Result<Page<GroupMember>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(
            self.members_coll(),
            filter,
            page,
            MEMBER,
            |m: &GroupMember| m.id.to_string(),
        )
        .await
    }
}
