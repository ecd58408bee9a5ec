//! Groups and the contact book on the embedded SQLite database: tables `contact_groups`
//! (`(tenant_id, name)` UNIQUE) and `contact_group_members` (`(group_id, contact_id)`
//! UNIQUE), and an index of `contacts` by tenant and phone (read from the JSON document,
//! so the inbox's adapter needs no new column). Deletes read and delete in one write
//! closure, so of two concurrent deletes only one returns the record.

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        check_owner_stays_in_scope,
        sqlite::{
            support::{
                db_err, exec, missing_or_stale, scope_param, to_json, unique_err, version_param,
            },
            Migration, SqliteDb, UniqueKey,
        },
        Page, PageRequest, Scope,
    },
    Error, Result,
};
use rusqlite::{params, Connection};

use super::{ContactBookRepository, GroupRepository};
use crate::{
    contacts::groups::{ContactGroup, ContactGroupId, GroupMember},
    records::{Contact, ContactId},
};

/// The steps of this module, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0002_groups",
    sql: "CREATE TABLE IF NOT EXISTS contact_groups (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (tenant_id, name)
     );
     CREATE INDEX IF NOT EXISTS contact_groups_by_tenant ON contact_groups (tenant_id, id);
     CREATE TABLE IF NOT EXISTS contact_group_members (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        group_id TEXT NOT NULL,
        contact_id TEXT NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (group_id, contact_id)
     );
     CREATE INDEX IF NOT EXISTS contact_group_members_by_group
        ON contact_group_members (group_id, id);
     CREATE INDEX IF NOT EXISTS contact_group_members_by_contact
        ON contact_group_members (contact_id);
     CREATE INDEX IF NOT EXISTS contacts_by_phone
        ON contacts (tenant_id, json_extract(doc, '$.phone'));",
    unique: UNIQUE,
}];

/// The unique constraints of [`MIGRATIONS`] and the fields their violations name.
const UNIQUE: &[UniqueKey] = &[
    UniqueKey {
        table: "contact_groups",
        columns: &["tenant_id", "name"],
        field: "name",
    },
    UniqueKey {
        table: "contact_group_members",
        columns: &["group_id", "contact_id"],
        field: "contact_id",
    },
];

const CONTACT: &str = "contact";
const GROUP: &str = "contact group";
const MEMBER: &str = "group member";

/// The repositories of [`super`] on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteGroups {
    db: SqliteDb,
}

impl SqliteGroups {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

use crate::storage::sqlite::{query_doc, query_docs};

fn count(c: &Connection, sql: &str, tenant: TenantId, action: &'static str) -> Result<u64> {
    let n: i64 = c
        .query_row(sql, [tenant.to_string()], |r| r.get(0))
        .map_err(db_err(action))?;
    Ok(n.max(0) as u64)
}

#[async_trait]
impl ContactBookRepository for SqliteGroups {
    async fn delete_contact(&self, scope: Scope, id: ContactId) -> Result<Contact> {
        const ACTION: &str = "delete a contact";
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let id = id.to_string();
                let contact: Contact = query_doc(
                    c,
                    "SELECT doc FROM contacts WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id, only],
                    CONTACT,
                    ACTION,
                )?
                .ok_or_else(|| not_found(CONTACT, &id))?;
                exec(c, "DELETE FROM contacts WHERE id = ?1", [&id]).map_err(db_err(ACTION))?;
                crate::storage::search::sqlite::remove(c, &id).map_err(db_err(ACTION))?;
                exec(
                    c,
                    "DELETE FROM contact_group_members WHERE contact_id = ?1",
                    [&id],
                )
                .map_err(db_err(ACTION))?;
                Ok(contact)
            })
            .await
    }

    async fn find_by_phone(&self, tenant: TenantId, phone: &str) -> Result<Option<Contact>> {
        const ACTION: &str = "find a contact by phone";
        let phone = phone.to_owned();
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM contacts
                     WHERE tenant_id = ?1 AND json_extract(doc, '$.phone') = ?2
                     ORDER BY id LIMIT 1",
                    params![tenant.to_string(), phone],
                    CONTACT,
                    ACTION,
                )
            })
            .await
    }

    async fn count_contacts(&self, tenant: TenantId) -> Result<u64> {
        const ACTION: &str = "count contacts";
        self.db
            .read(ACTION, move |c| {
                count(
                    c,
                    "SELECT COUNT(*) FROM contacts WHERE tenant_id = ?1",
                    tenant,
                    ACTION,
                )
            })
            .await
    }
}

#[async_trait]
impl GroupRepository for SqliteGroups {
    async fn insert(&self, group: &ContactGroup) -> Result<()> {
        const ACTION: &str = "insert a contact group";
        let doc = to_json(group, GROUP)?;
        let (id, tenant, name) = (
            group.id.to_string(),
            group.tenant_id.to_string(),
            group.name.clone(),
        );
        let version = version_param(group.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO contact_groups (id, tenant_id, name, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, name, version, doc],
                )
                .map_err(unique_err(UNIQUE, GROUP, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: ContactGroupId) -> Result<ContactGroup> {
        const ACTION: &str = "read a contact group";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM contact_groups
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    GROUP,
                    ACTION,
                )?
                .ok_or_else(|| not_found(GROUP, id))
            })
            .await
    }

    async fn update(&self, scope: Scope, group: &ContactGroup) -> Result<ContactGroup> {
        const ACTION: &str = "update a contact group";
        check_owner_stays_in_scope(scope, Some(group.tenant_id))?;
        let mut next = group.clone();
        next.version += 1;
        let doc = to_json(&next, GROUP)?;
        let (id, name) = (group.id.to_string(), group.name.clone());
        let (expected, new_version) = (version_param(group.version)?, version_param(next.version)?);
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE contact_groups SET version = ?1, doc = ?2, name = ?3
                     WHERE id = ?4 AND version = ?5 AND (?6 IS NULL OR tenant_id = ?6)",
                    params![new_version, doc, name, id, expected, only],
                )
                .map_err(unique_err(UNIQUE, GROUP, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "contact_groups",
                    GROUP,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: ContactGroupId) -> Result<ContactGroup> {
        const ACTION: &str = "delete a contact group";
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let id = id.to_string();
                let group: ContactGroup = query_doc(
                    c,
                    "SELECT doc FROM contact_groups
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id, only],
                    GROUP,
                    ACTION,
                )?
                .ok_or_else(|| not_found(GROUP, &id))?;
                exec(c, "DELETE FROM contact_groups WHERE id = ?1", [&id])
                    .map_err(db_err(ACTION))?;
                exec(
                    c,
                    "DELETE FROM contact_group_members WHERE group_id = ?1",
                    [&id],
                )
                .map_err(db_err(ACTION))?;
                Ok(group)
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ContactGroup>> {
        const ACTION: &str = "list contact groups";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<ContactGroup> = query_docs(
                    c,
                    "SELECT doc FROM contact_groups
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1],
                    GROUP,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }

    async fn count(&self, tenant: TenantId) -> Result<u64> {
        const ACTION: &str = "count contact groups";
        self.db
            .read(ACTION, move |c| {
                count(
                    c,
                    "SELECT COUNT(*) FROM contact_groups WHERE tenant_id = ?1",
                    tenant,
                    ACTION,
                )
            })
            .await
    }

    async fn add_member(&self, member: &GroupMember) -> Result<bool> {
        const ACTION: &str = "add a group member";
        let doc = to_json(member, MEMBER)?;
        let m = member.clone();
        self.db
            .write(ACTION, move |c| {
                let added = exec(
                    c,
                    "INSERT INTO contact_group_members (id, tenant_id, group_id, contact_id, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (group_id, contact_id) DO NOTHING",
                    params![
                        m.id.to_string(),
                        m.tenant_id.to_string(),
                        m.group_id.to_string(),
                        m.contact_id.to_string(),
                        doc
                    ],
                )
                .map_err(unique_err(UNIQUE, MEMBER, ACTION))?;
                Ok(added == 1)
            })
            .await
    }

    async fn remove_member(
        &self,
        scope: Scope,
        group: ContactGroupId,
        contact: ContactId,
    ) -> Result<bool> {
        const ACTION: &str = "remove a group member";
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let removed = exec(
                    c,
                    "DELETE FROM contact_group_members
                     WHERE group_id = ?1 AND contact_id = ?2 AND (?3 IS NULL OR tenant_id = ?3)",
                    params![group.to_string(), contact.to_string(), only],
                )
                .map_err(db_err(ACTION))?;
                Ok(removed == 1)
            })
            .await
    }

    async fn members(
        &self,
        scope: Scope,
        group: ContactGroupId,
        page: PageRequest,
    ) -> Result<Page<GroupMember>> {
        const ACTION: &str = "list group members";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<GroupMember> = query_docs(
                    c,
                    "SELECT doc FROM contact_group_members
                     WHERE group_id = ?1 AND (?2 IS NULL OR id > ?2)
                       AND (?3 IS NULL OR tenant_id = ?3)
                     ORDER BY id LIMIT ?4",
                    params![group.to_string(), cursor, only, limit + 1],
                    MEMBER,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }

    async fn memberships(&self, scope: Scope, page: PageRequest) -> Result<Page<GroupMember>> {
        const ACTION: &str = "list group memberships";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<GroupMember> = query_docs(
                    c,
                    "SELECT doc FROM contact_group_members
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1],
                    MEMBER,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}
