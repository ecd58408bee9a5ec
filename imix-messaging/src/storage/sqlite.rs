//! Messaging's repositories on the embedded SQLite database, in the shared file: tables
//! `deliveries`, `contacts` (`(tenant_id, wa_id)` UNIQUE), `conversations`
//! (`(account_id, contact_id)` UNIQUE), `messages` (`(phone_number_id, wamid)` UNIQUE) and
//! `held_statuses`. Each row keeps the entity as a JSON document beside the columns queries
//! filter on or constraints cover.
//!
//! Deliveries carry their due instant and lease in Unix milliseconds (`due_ms`, NULL once
//! processed; `lease_ms`, NULL while no worker holds one), so a claim is one indexed lookup.
//! Claims and takes of held statuses run inside one write closure: the writer's
//! `IMMEDIATE` transaction (see [`imix_core::store::sqlite::engine`]) holds SQLite's write
//! lock from the read to the write, so even two processes sharing the file can neither
//! claim one delivery twice nor take one held status twice.

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{
        check_owner_stays_in_scope,
        sqlite::{
            support::{
                db_err, exec, from_json, missing_or_stale, scope_param, to_json, unique_err,
                version_param,
            },
            Migration, SqliteDb, UniqueKey,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension, Params};
use serde::de::DeserializeOwned;

use super::{
    AssigneeFilter, ContactRepository, ConversationFilter, ConversationRepository,
    DeliveryRepository, HeldStatusRepository, MessageRepository,
};
use crate::records::{
    Contact, ContactId, Conversation, ConversationId, ConversationStatus, Delivery, DeliveryId,
    HeldStatus, Message, MessageId,
};

/// Messaging's schema steps, recorded under capability [`super::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_inbox",
    sql: "CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY,
        due_ms INTEGER,
        lease_ms INTEGER,
        processed INTEGER NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due_ms) WHERE due_ms IS NOT NULL;
     CREATE INDEX IF NOT EXISTS deliveries_unprocessed ON deliveries (id) WHERE processed = 0;
     CREATE TABLE IF NOT EXISTS contacts (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        wa_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (tenant_id, wa_id)
     );
     CREATE INDEX IF NOT EXISTS contacts_by_tenant ON contacts (tenant_id, id);
     CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        contact_id TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (account_id, contact_id)
     );
     CREATE INDEX IF NOT EXISTS conversations_by_tenant ON conversations (tenant_id, id);
     CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        phone_number_id TEXT NOT NULL,
        wamid TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (phone_number_id, wamid)
     );
     CREATE INDEX IF NOT EXISTS messages_by_tenant ON messages (tenant_id, id);
     CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
     CREATE TABLE IF NOT EXISTS held_statuses (
        id TEXT PRIMARY KEY,
        phone_number_id TEXT NOT NULL,
        wamid TEXT NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS held_statuses_by_message
        ON held_statuses (phone_number_id, wamid, id);",
    unique: UNIQUE,
}];

/// The unique constraints of [`MIGRATIONS`] and the fields their violations name.
const UNIQUE: &[UniqueKey] = &[
    UniqueKey {
        table: "contacts",
        columns: &["tenant_id", "wa_id"],
        field: "wa_id",
    },
    UniqueKey {
        table: "conversations",
        columns: &["account_id", "contact_id"],
        field: "contact_id",
    },
    UniqueKey {
        table: "messages",
        columns: &["phone_number_id", "wamid"],
        field: "wamid",
    },
];

const DELIVERY: &str = "delivery";
const CONTACT: &str = "contact";
const CONVERSATION: &str = "conversation";
const MESSAGE: &str = "message";
const HELD_STATUS: &str = "held status";

/// Every messaging repository on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteMessaging {
    db: SqliteDb,
}

impl SqliteMessaging {
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

fn millis(t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

/// The `status` column: the status's serde name, so it matches the JSON document.
fn status_text(status: ConversationStatus) -> &'static str {
    match status {
        ConversationStatus::Open => "open",
        ConversationStatus::Pending => "pending",
        ConversationStatus::Resolved => "resolved",
    }
}

/// The one document `sql` selects, if any (shared by messaging's SQLite adapters).
pub(crate) fn query_doc<T: DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    entity: &'static str,
    action: &'static str,
) -> Result<Option<T>> {
    let doc: Option<String> = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, |r| r.get(0)).optional())
        .map_err(db_err(action))?;
    doc.map(|d| from_json(&d, entity)).transpose()
}

/// Every document `sql` selects, in the order it gives them.
pub(crate) fn query_docs<T: DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    entity: &'static str,
    action: &'static str,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err(action))?;
    let rows = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(db_err(action))?;
    let mut items = Vec::new();
    for row in rows {
        items.push(from_json(&row.map_err(db_err(action))?, entity)?);
    }
    Ok(items)
}

/// The columns a delivery row keeps beside its document.
struct DeliveryColumns {
    id: String,
    due_ms: Option<i64>,
    lease_ms: Option<i64>,
    processed: bool,
    version: i64,
    doc: String,
}

impl DeliveryColumns {
    fn of(delivery: &Delivery) -> Result<Self> {
        Ok(Self {
            id: delivery.id.to_string(),
            due_ms: millis(delivery.due_at),
            lease_ms: millis(delivery.lease_until),
            // A delivery that is no longer due is done with: never claimed again.
            processed: delivery.due_at.is_none(),
            version: version_param(delivery.version)?,
            doc: to_json(delivery, DELIVERY)?,
        })
    }

    /// Replaces the row `id` at version `expected`; whether it did.
    fn replace(&self, c: &Connection, expected: i64, action: &'static str) -> Result<bool> {
        let changed = exec(
            c,
            "UPDATE deliveries
             SET due_ms = ?1, lease_ms = ?2, processed = ?3, version = ?4, doc = ?5
             WHERE id = ?6 AND version = ?7",
            params![
                self.due_ms,
                self.lease_ms,
                self.processed,
                self.version,
                self.doc,
                self.id,
                expected
            ],
        )
        .map_err(db_err(action))?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl DeliveryRepository for SqliteMessaging {
    async fn insert(&self, delivery: &Delivery) -> Result<()> {
        const ACTION: &str = "store a webhook delivery";
        let row = DeliveryColumns::of(delivery)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO deliveries (id, due_ms, lease_ms, processed, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        row.id,
                        row.due_ms,
                        row.lease_ms,
                        row.processed,
                        row.version,
                        row.doc
                    ],
                )
                .map_err(unique_err(UNIQUE, DELIVERY, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, id: DeliveryId) -> Result<Delivery> {
        const ACTION: &str = "read a webhook delivery";
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM deliveries WHERE id = ?1",
                    [id.to_string()],
                    DELIVERY,
                    ACTION,
                )?
                .ok_or_else(|| not_found(DELIVERY, id))
            })
            .await
    }

    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Delivery>> {
        Ok(self
            .claim_due_batch(now, lease_until, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn claim_due_batch(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        const ACTION: &str = "claim webhook deliveries";
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.db
            .write(ACTION, move |c| {
                let found: Vec<Delivery> = query_docs(
                    c,
                    // Oldest first along the partial index of unprocessed rows: the
                    // planner otherwise picks `deliveries_due` and sorts the whole backlog
                    // for each claim (82 ms at 54k unprocessed, inside the writer).
                    "SELECT doc FROM deliveries INDEXED BY deliveries_unprocessed
                     WHERE processed = 0 AND due_ms IS NOT NULL AND due_ms <= ?1
                       AND (lease_ms IS NULL OR lease_ms <= ?1)
                     ORDER BY id LIMIT ?2",
                    rusqlite::params![now.timestamp_millis(), limit],
                    DELIVERY,
                    ACTION,
                )?;
                let mut claimed = Vec::with_capacity(found.len());
                for mut delivery in found {
                    let expected = version_param(delivery.version)?;
                    delivery.attempts = delivery.attempts.saturating_add(1);
                    delivery.lease_until = Some(lease_until);
                    delivery.version += 1;
                    // The write lock was held since the read, so the row cannot have
                    // changed.
                    if DeliveryColumns::of(&delivery)?.replace(c, expected, ACTION)? {
                        claimed.push(delivery);
                    }
                }
                Ok(claimed)
            })
            .await
    }

    async fn update(&self, delivery: &Delivery) -> Result<Delivery> {
        const ACTION: &str = "update a webhook delivery";
        let mut next = delivery.clone();
        next.version += 1;
        let row = DeliveryColumns::of(&next)?;
        let expected = version_param(delivery.version)?;
        self.db
            .write(ACTION, move |c| {
                if row.replace(c, expected, ACTION)? {
                    return Ok(next);
                }
                let exists: bool = c
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM deliveries WHERE id = ?1)",
                        [&row.id],
                        |r| r.get(0),
                    )
                    .map_err(db_err(ACTION))?;
                Err(if exists {
                    Error::VersionConflict {
                        entity: DELIVERY,
                        id: row.id,
                        expected: expected.max(0) as u64,
                    }
                } else {
                    not_found(DELIVERY, row.id)
                })
            })
            .await
    }

    async fn count_unprocessed(&self) -> Result<u64> {
        const ACTION: &str = "count unprocessed webhook deliveries";
        let n: i64 = self
            .db
            .read(ACTION, |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE processed = 0",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err(ACTION))
            })
            .await?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl ContactRepository for SqliteMessaging {
    async fn insert(&self, contact: &Contact) -> Result<()> {
        const ACTION: &str = "insert a contact";
        let doc = to_json(contact, CONTACT)?;
        let (id, tenant) = (contact.id.to_string(), contact.tenant_id.to_string());
        let wa_id = contact.wa_id.clone();
        let version = version_param(contact.version)?;
        let entry = super::search::SearchEntry::of_contact(contact);
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO contacts (id, tenant_id, wa_id, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, wa_id, version, doc],
                )
                .map_err(unique_err(UNIQUE, CONTACT, ACTION))?;
                // Same transaction: the contact is findable exactly when it is stored.
                super::search::sqlite::put(c, &entry).map_err(db_err(ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: ContactId) -> Result<Contact> {
        const ACTION: &str = "read a contact";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM contacts WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    CONTACT,
                    ACTION,
                )?
                .ok_or_else(|| not_found(CONTACT, id))
            })
            .await
    }

    async fn find_by_wa_id(&self, tenant: TenantId, wa_id: &str) -> Result<Option<Contact>> {
        const ACTION: &str = "find a contact by wa_id";
        let wa_id = wa_id.to_owned();
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM contacts WHERE tenant_id = ?1 AND wa_id = ?2",
                    params![tenant.to_string(), wa_id],
                    CONTACT,
                    ACTION,
                )
            })
            .await
    }

    async fn update(&self, scope: Scope, contact: &Contact) -> Result<Contact> {
        const ACTION: &str = "update a contact";
        check_owner_stays_in_scope(scope, Some(contact.tenant_id))?;
        let mut next = contact.clone();
        next.version += 1;
        let doc = to_json(&next, CONTACT)?;
        let (id, tenant) = (contact.id.to_string(), contact.tenant_id.to_string());
        let wa_id = contact.wa_id.clone();
        let (expected, new_version) = (
            version_param(contact.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        let entry = super::search::SearchEntry::of_contact(&next);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE contacts SET version = ?1, doc = ?2, tenant_id = ?3, wa_id = ?4
                     WHERE id = ?5 AND version = ?6 AND (?7 IS NULL OR tenant_id = ?7)",
                    params![new_version, doc, tenant, wa_id, id, expected, only],
                )
                .map_err(unique_err(UNIQUE, CONTACT, ACTION))?;
                if changed == 1 {
                    super::search::sqlite::put(c, &entry).map_err(db_err(ACTION))?;
                    return Ok(next);
                }
                Err(missing_or_stale(c, "contacts", CONTACT, id, only, expected))
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Contact>> {
        const ACTION: &str = "list contacts";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<Contact> = query_docs(
                    c,
                    "SELECT doc FROM contacts
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1],
                    CONTACT,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl ConversationRepository for SqliteMessaging {
    async fn insert(&self, conversation: &Conversation) -> Result<()> {
        const ACTION: &str = "insert a conversation";
        let doc = to_json(conversation, CONVERSATION)?;
        let t = conversation.clone();
        let version = version_param(conversation.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO conversations
                       (id, tenant_id, account_id, contact_id, status, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        t.id.to_string(),
                        t.tenant_id.to_string(),
                        t.account_id.to_string(),
                        t.contact_id.to_string(),
                        status_text(t.status),
                        version,
                        doc
                    ],
                )
                .map_err(unique_err(UNIQUE, CONVERSATION, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: ConversationId) -> Result<Conversation> {
        const ACTION: &str = "read a conversation";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM conversations
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    CONVERSATION,
                    ACTION,
                )?
                .ok_or_else(|| not_found(CONVERSATION, id))
            })
            .await
    }

    async fn find(
        &self,
        account: WhatsAppAccountId,
        contact: ContactId,
    ) -> Result<Option<Conversation>> {
        const ACTION: &str = "find a conversation";
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM conversations WHERE account_id = ?1 AND contact_id = ?2",
                    params![account.to_string(), contact.to_string()],
                    CONVERSATION,
                    ACTION,
                )
            })
            .await
    }

    async fn update(&self, scope: Scope, conversation: &Conversation) -> Result<Conversation> {
        const ACTION: &str = "update a conversation";
        check_owner_stays_in_scope(scope, Some(conversation.tenant_id))?;
        let mut next = conversation.clone();
        next.version += 1;
        let doc = to_json(&next, CONVERSATION)?;
        let t = next.clone();
        let (expected, new_version) = (
            version_param(conversation.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let id = t.id.to_string();
                let changed = exec(
                    c,
                    "UPDATE conversations
                     SET version = ?1, doc = ?2, tenant_id = ?3, account_id = ?4,
                         contact_id = ?5, status = ?6
                     WHERE id = ?7 AND version = ?8 AND (?9 IS NULL OR tenant_id = ?9)",
                    params![
                        new_version,
                        doc,
                        t.tenant_id.to_string(),
                        t.account_id.to_string(),
                        t.contact_id.to_string(),
                        status_text(t.status),
                        id,
                        expected,
                        only
                    ],
                )
                .map_err(unique_err(UNIQUE, CONVERSATION, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "conversations",
                    CONVERSATION,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn list(
        &self,
        scope: Scope,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>> {
        const ACTION: &str = "list conversations";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        let status = filter.status.map(status_text);
        let account = filter.account_id.map(|a| a.to_string());
        // (mode, user): mode 1 = unassigned, 2 = this user's, 3 = this user's or unassigned.
        let (assignee_mode, assignee) = match filter.assignee {
            None => (0i64, None),
            Some(AssigneeFilter::Unassigned) => (1, None),
            Some(AssigneeFilter::User(u)) => (2, Some(u.to_string())),
            Some(AssigneeFilter::UserOrUnassigned(u)) => (3, Some(u.to_string())),
        };
        let unread_only = filter.unread_only;
        let label = filter.label.map(|l| l.to_string());
        let tag = filter.tag;
        let handoff_only = filter.handoff_only;
        self.db
            .read(ACTION, move |c| {
                // Labels are read from the conversation's document, tags from its
                // contact's (same tenant), so neither needs a column of its own.
                let items: Vec<Conversation> = query_docs(
                    c,
                    "SELECT doc FROM conversations
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                       AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR account_id = ?4)
                       AND (?6 = 0
                            OR (?6 = 1 AND json_extract(doc, '$.assignee') IS NULL)
                            OR (?6 = 2 AND json_extract(doc, '$.assignee') = ?7)
                            OR (?6 = 3 AND (json_extract(doc, '$.assignee') IS NULL
                                            OR json_extract(doc, '$.assignee') = ?7)))
                       AND (?8 = 0 OR json_extract(doc, '$.unread') > 0)
                       AND (?9 IS NULL OR EXISTS (
                            SELECT 1 FROM json_each(conversations.doc, '$.labels') AS l
                            WHERE l.value = ?9))
                       AND (?10 IS NULL OR EXISTS (
                            SELECT 1 FROM contacts AS k, json_each(k.doc, '$.tags') AS t
                            WHERE k.id = conversations.contact_id
                              AND k.tenant_id = conversations.tenant_id AND t.value = ?10))
                       AND (?11 = 0 OR json_extract(doc, '$.handoff_requested_at') IS NOT NULL)
                     ORDER BY id LIMIT ?5",
                    params![
                        cursor,
                        only,
                        status,
                        account,
                        limit + 1,
                        assignee_mode,
                        assignee,
                        unread_only,
                        label,
                        tag,
                        handoff_only
                    ],
                    CONVERSATION,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl MessageRepository for SqliteMessaging {
    async fn insert(&self, message: &Message) -> Result<()> {
        const ACTION: &str = "insert a message";
        let doc = to_json(message, MESSAGE)?;
        let m = message.clone();
        let version = version_param(message.version)?;
        let entry = super::search::SearchEntry::of_message(message);
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO messages
                       (id, tenant_id, conversation_id, phone_number_id, wamid, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        m.id.to_string(),
                        m.tenant_id.to_string(),
                        m.conversation_id.to_string(),
                        m.phone_number_id,
                        m.wamid,
                        version,
                        doc
                    ],
                )
                .map_err(unique_err(UNIQUE, MESSAGE, ACTION))?;
                // Same transaction: the message is findable exactly when it is stored.
                super::search::sqlite::put(c, &entry).map_err(db_err(ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: MessageId) -> Result<Message> {
        const ACTION: &str = "read a message";
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM messages WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    MESSAGE,
                    ACTION,
                )?
                .ok_or_else(|| not_found(MESSAGE, id))
            })
            .await
    }

    async fn find_by_wamid(&self, phone_number_id: &str, wamid: &str) -> Result<Option<Message>> {
        const ACTION: &str = "find a message by wamid";
        let (phone, wamid) = (phone_number_id.to_owned(), wamid.to_owned());
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM messages WHERE phone_number_id = ?1 AND wamid = ?2",
                    params![phone, wamid],
                    MESSAGE,
                    ACTION,
                )
            })
            .await
    }

    async fn update(&self, scope: Scope, message: &Message) -> Result<Message> {
        const ACTION: &str = "update a message";
        check_owner_stays_in_scope(scope, Some(message.tenant_id))?;
        let mut next = message.clone();
        next.version += 1;
        let doc = to_json(&next, MESSAGE)?;
        let m = next.clone();
        let (expected, new_version) = (
            version_param(message.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let id = m.id.to_string();
                let changed = exec(
                    c,
                    "UPDATE messages
                     SET version = ?1, doc = ?2, tenant_id = ?3, conversation_id = ?4,
                         phone_number_id = ?5, wamid = ?6
                     WHERE id = ?7 AND version = ?8 AND (?9 IS NULL OR tenant_id = ?9)",
                    params![
                        new_version,
                        doc,
                        m.tenant_id.to_string(),
                        m.conversation_id.to_string(),
                        m.phone_number_id,
                        m.wamid,
                        id,
                        expected,
                        only
                    ],
                )
                .map_err(unique_err(UNIQUE, MESSAGE, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(c, "messages", MESSAGE, id, only, expected))
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Message>> {
        const ACTION: &str = "list messages";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<Message> = query_docs(
                    c,
                    "SELECT doc FROM messages
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1],
                    MESSAGE,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }

    async fn list_for_conversation(
        &self,
        scope: Scope,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>> {
        const ACTION: &str = "list a conversation's messages";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<Message> = query_docs(
                    c,
                    "SELECT doc FROM messages
                     WHERE conversation_id = ?1 AND (?2 IS NULL OR id > ?2)
                       AND (?3 IS NULL OR tenant_id = ?3)
                     ORDER BY id LIMIT ?4",
                    params![conversation.to_string(), cursor, only, limit + 1],
                    MESSAGE,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl HeldStatusRepository for SqliteMessaging {
    async fn insert(&self, held: &HeldStatus) -> Result<()> {
        const ACTION: &str = "hold a message status";
        let doc = to_json(held, HELD_STATUS)?;
        let id = held.id.to_string();
        let (phone, wamid) = (held.phone_number_id.clone(), held.wamid.clone());
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO held_statuses (id, phone_number_id, wamid, doc)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, phone, wamid, doc],
                )
                .map_err(unique_err(UNIQUE, HELD_STATUS, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn take(&self, phone_number_id: &str, wamid: &str) -> Result<Vec<HeldStatus>> {
        const ACTION: &str = "take held message statuses";
        let (phone, wamid) = (phone_number_id.to_owned(), wamid.to_owned());
        self.db
            .write(ACTION, move |c| {
                // Read and delete under the one write lock: a concurrent take waits for it
                // and then finds nothing.
                let held: Vec<HeldStatus> = query_docs(
                    c,
                    "SELECT doc FROM held_statuses
                     WHERE phone_number_id = ?1 AND wamid = ?2 ORDER BY id",
                    params![phone, wamid],
                    HELD_STATUS,
                    ACTION,
                )?;
                if !held.is_empty() {
                    exec(
                        c,
                        "DELETE FROM held_statuses WHERE phone_number_id = ?1 AND wamid = ?2",
                        params![phone, wamid],
                    )
                    .map_err(db_err(ACTION))?;
                }
                Ok(held)
            })
            .await
    }
}
