//! Messaging's repositories on MongoDB, in the shared database: collections `deliveries`,
//! `contacts` (unique on `(tenant_id, wa_id)`), `conversations` (unique on
//! `(account_id, contact_id)`), `messages` (unique on `(phone_number_id, wamid)`) and
//! `held_statuses`, each tenant-owned one indexed on `(tenant_id, _id)` for lists.
//!
//! Documents are the entities' own serde shapes with `_id` set to the entity id. Deliveries
//! also carry `due_ms` and `lease_ms` (their due instant and lease in Unix milliseconds,
//! absent when `None`): a claim is one `findOneAndUpdate` on those that sets the lease and
//! raises `attempts` and `version` in the same single-document atomic step, so two replicas
//! never claim one delivery. Taking held statuses deletes them one by one and returns only
//! those this call deleted. No write needs a multi-document transaction.

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{
        check_owner_stays_in_scope,
        mongo::{
            support::{
                backend_err, from_doc, list_docs, missing_or_stale, replace_scoped, scope_filter,
                to_doc, unique_err, version_bson,
            },
            IndexSpec, MongoMigration,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{self, doc, Bson, Document},
    options::ReturnDocument,
    Collection, Database,
};
use serde::Serialize;

use super::{
    AssigneeFilter, ContactRepository, ConversationFilter, ConversationRepository,
    DeliveryRepository, HeldStatusRepository, MessageRepository,
};
use crate::records::{
    Contact, ContactId, Conversation, ConversationId, Delivery, DeliveryId, HeldStatus, Message,
    MessageId,
};

/// The webhook deliveries' collection.
pub const DELIVERIES: &str = "deliveries";
/// The contacts' collection.
pub const CONTACTS: &str = "contacts";
/// The conversations' collection.
pub const CONVERSATIONS: &str = "conversations";
/// The messages' collection.
pub const MESSAGES: &str = "messages";
/// The held statuses' collection.
pub const HELD_STATUSES: &str = "held_statuses";

/// The field beside a delivery's own that holds its due instant.
const DUE_MS: &str = "due_ms";
/// The field beside a delivery's own that holds its lease's end.
const LEASE_MS: &str = "lease_ms";

/// Messaging's schema steps, recorded under capability [`super::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0001_inbox",
    indexes: INDEXES,
}];

/// The indexes of [`MIGRATIONS`]; the unique ones name the field their violations report.
const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: DELIVERIES,
        name: "by_due",
        keys: &[(DUE_MS, 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACTS,
        name: "tenant_wa_id_unique",
        keys: &[("tenant_id", 1), ("wa_id", 1)],
        unique_field: Some("wa_id"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONTACTS,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONVERSATIONS,
        name: "account_contact_unique",
        keys: &[("account_id", 1), ("contact_id", 1)],
        unique_field: Some("contact_id"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONVERSATIONS,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: MESSAGES,
        name: "phone_wamid_unique",
        keys: &[("phone_number_id", 1), ("wamid", 1)],
        unique_field: Some("wamid"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: MESSAGES,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: MESSAGES,
        name: "by_conversation",
        keys: &[("conversation_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: HELD_STATUSES,
        name: "by_message",
        keys: &[("phone_number_id", 1), ("wamid", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

const DELIVERY: &str = "delivery";
const CONTACT: &str = "contact";
const CONVERSATION: &str = "conversation";
const MESSAGE: &str = "message";
const HELD_STATUS: &str = "held status";

/// Every messaging repository on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoMessaging {
    db: Database,
}

impl MongoMessaging {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn deliveries(&self) -> Collection<Document> {
        self.db.collection(DELIVERIES)
    }

    fn contacts(&self) -> Collection<Document> {
        self.db.collection(CONTACTS)
    }

    fn conversations(&self) -> Collection<Document> {
        self.db.collection(CONVERSATIONS)
    }

    fn messages(&self) -> Collection<Document> {
        self.db.collection(MESSAGES)
    }

    fn held_statuses(&self) -> Collection<Document> {
        self.db.collection(HELD_STATUSES)
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

/// The document `_id` visible in `scope`.
fn scoped_id(id: String, scope: Scope) -> Document {
    let mut filter = doc! { "_id": id };
    scope_filter(&mut filter, scope);
    filter
}

fn bson_of<T: Serialize>(value: &T, entity: &'static str) -> Result<Bson> {
    bson::to_bson(value).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

fn delivery_doc(delivery: &Delivery) -> Result<Document> {
    let mut d = to_doc(delivery, &delivery.id.to_string(), DELIVERY)?;
    if let Some(due) = delivery.due_at {
        d.insert(DUE_MS, due.timestamp_millis());
    }
    if let Some(lease) = delivery.lease_until {
        d.insert(LEASE_MS, lease.timestamp_millis());
    }
    Ok(d)
}

fn decode_delivery(d: Document) -> Result<Delivery> {
    from_doc(d, DELIVERY, &[DUE_MS, LEASE_MS])
}

#[async_trait]
impl DeliveryRepository for MongoMessaging {
    async fn insert(&self, delivery: &Delivery) -> Result<()> {
        self.deliveries()
            .insert_one(delivery_doc(delivery)?)
            .await
            .map_err(unique_err(INDEXES, DELIVERY, "store a webhook delivery"))?;
        Ok(())
    }

    async fn get(&self, id: DeliveryId) -> Result<Delivery> {
        match self
            .deliveries()
            .find_one(doc! { "_id": id.to_string() })
            .await
            .map_err(backend_err("read a webhook delivery"))?
        {
            Some(d) => decode_delivery(d),
            None => Err(not_found(DELIVERY, id)),
        }
    }

    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Delivery>> {
        let now_ms = now.timestamp_millis();
        let filter = doc! {
            DUE_MS: { "$lte": now_ms },
            "$or": [
                { LEASE_MS: Bson::Null },
                { LEASE_MS: { "$lte": now_ms } },
            ],
        };
        // Mirrors SqliteMessaging's claim field by field.
        let update = doc! {
            "$set": {
                "lease_until": bson_of(&lease_until, DELIVERY)?,
                LEASE_MS: lease_until.timestamp_millis(),
            },
            "$inc": { "attempts": 1_i64, "version": 1_i64 },
        };
        self.deliveries()
            .find_one_and_update(filter, update)
            .sort(doc! { "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_err("claim a webhook delivery"))?
            .map(decode_delivery)
            .transpose()
    }

    async fn update(&self, delivery: &Delivery) -> Result<Delivery> {
        let mut next = delivery.clone();
        next.version += 1;
        let id = delivery.id.to_string();
        let result = self
            .deliveries()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(delivery.version)? },
                delivery_doc(&next)?,
            )
            .await
            .map_err(backend_err("update a webhook delivery"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(missing_or_stale(
            self.deliveries(),
            Document::new(),
            DELIVERY,
            id,
            delivery.version,
        )
        .await)
    }

    async fn count_unprocessed(&self) -> Result<u64> {
        // A processed delivery is no longer due: it has no `due_ms`.
        self.deliveries()
            .count_documents(doc! { DUE_MS: { "$ne": Bson::Null } })
            .await
            .map_err(backend_err("count unprocessed webhook deliveries"))
    }
}

#[async_trait]
impl ContactRepository for MongoMessaging {
    async fn insert(&self, contact: &Contact) -> Result<()> {
        let doc = to_doc(contact, &contact.id.to_string(), CONTACT)?;
        // Indexed first: a crash in between leaves an entry without its contact (ignored
        // by search), never a contact that cannot be found.
        super::search::mongo::put(&self.db, &super::search::SearchEntry::of_contact(contact))
            .await?;
        if let Err(e) = self.contacts().insert_one(doc).await {
            super::search::mongo::remove(&self.db, &contact.id.to_string()).await?;
            return Err(unique_err(INDEXES, CONTACT, "insert a contact")(e));
        }
        Ok(())
    }

    async fn get(&self, scope: Scope, id: ContactId) -> Result<Contact> {
        match self
            .contacts()
            .find_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("read a contact"))?
        {
            Some(d) => from_doc(d, CONTACT, &[]),
            None => Err(not_found(CONTACT, id)),
        }
    }

    async fn find_by_wa_id(&self, tenant: TenantId, wa_id: &str) -> Result<Option<Contact>> {
        self.contacts()
            .find_one(doc! { "tenant_id": tenant.to_string(), "wa_id": wa_id })
            .await
            .map_err(backend_err("find a contact by wa_id"))?
            .map(|d| from_doc(d, CONTACT, &[]))
            .transpose()
    }

    async fn update(&self, scope: Scope, contact: &Contact) -> Result<Contact> {
        check_owner_stays_in_scope(scope, Some(contact.tenant_id))?;
        let mut next = contact.clone();
        next.version += 1;
        let id = contact.id.to_string();
        let replacement = to_doc(&next, &id, CONTACT)?;
        // New tokens before the change, old ones removed after it (see storage::search).
        let entry = super::search::SearchEntry::of_contact(&next);
        super::search::mongo::put(&self.db, &entry).await?;
        replace_scoped(
            self.contacts(),
            scope,
            id,
            contact.version,
            replacement,
            INDEXES,
            CONTACT,
            "update a contact",
        )
        .await?;
        super::search::mongo::prune(&self.db, &entry).await?;
        Ok(next)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Contact>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(self.contacts(), filter, page, CONTACT, |c: &Contact| {
            c.id.to_string()
        })
        .await
    }
}

#[async_trait]
impl ConversationRepository for MongoMessaging {
    async fn insert(&self, conversation: &Conversation) -> Result<()> {
        let doc = to_doc(conversation, &conversation.id.to_string(), CONVERSATION)?;
        self.conversations()
            .insert_one(doc)
            .await
            .map_err(unique_err(INDEXES, CONVERSATION, "insert a conversation"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: ConversationId) -> Result<Conversation> {
        match self
            .conversations()
            .find_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("read a conversation"))?
        {
            Some(d) => from_doc(d, CONVERSATION, &[]),
            None => Err(not_found(CONVERSATION, id)),
        }
    }

    async fn find(
        &self,
        account: WhatsAppAccountId,
        contact: ContactId,
    ) -> Result<Option<Conversation>> {
        self.conversations()
            .find_one(doc! {
                "account_id": account.to_string(),
                "contact_id": contact.to_string(),
            })
            .await
            .map_err(backend_err("find a conversation"))?
            .map(|d| from_doc(d, CONVERSATION, &[]))
            .transpose()
    }

    async fn update(&self, scope: Scope, conversation: &Conversation) -> Result<Conversation> {
        check_owner_stays_in_scope(scope, Some(conversation.tenant_id))?;
        let mut next = conversation.clone();
        next.version += 1;
        let id = conversation.id.to_string();
        let replacement = to_doc(&next, &id, CONVERSATION)?;
        replace_scoped(
            self.conversations(),
            scope,
            id,
            conversation.version,
            replacement,
            INDEXES,
            CONVERSATION,
            "update a conversation",
        )
        .await?;
        Ok(next)
    }

    async fn list(
        &self,
        scope: Scope,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>> {
        let mut query = Document::new();
        scope_filter(&mut query, scope);
        if let Some(status) = filter.status {
            // The status as the document holds it (its serde name).
            query.insert("status", bson_of(&status, CONVERSATION)?);
        }
        if let Some(account) = filter.account_id {
            query.insert("account_id", account.to_string());
        }
        match filter.assignee {
            None => {}
            Some(AssigneeFilter::Unassigned) => {
                query.insert("assignee", mongodb::bson::Bson::Null);
            }
            Some(AssigneeFilter::User(u)) => {
                query.insert("assignee", u.to_string());
            }
            Some(AssigneeFilter::UserOrUnassigned(u)) => {
                query.insert(
                    "$or",
                    vec![
                        mongodb::bson::doc! { "assignee": mongodb::bson::Bson::Null },
                        mongodb::bson::doc! { "assignee": u.to_string() },
                    ],
                );
            }
        }
        if filter.unread_only {
            query.insert("unread", mongodb::bson::doc! { "$gt": 0 });
        }
        if filter.handoff_only {
            // Null or missing (documents from before the flag existed) both mean unflagged.
            query.insert(
                "handoff_requested_at",
                mongodb::bson::doc! { "$ne": mongodb::bson::Bson::Null },
            );
        }
        if let Some(label) = filter.label {
            // An array field matches when any element equals the value.
            query.insert("labels", label.to_string());
        }
        if let Some(tag) = filter.tag {
            // Tags live on contacts: first the ids of the scope's contacts with the tag
            // (no $lookup needed, which not every MongoDB-wire server has).
            let mut contacts = mongodb::bson::doc! { "tags": tag };
            scope_filter(&mut contacts, scope);
            let ids: Vec<String> = self
                .contacts()
                .find(contacts)
                .projection(mongodb::bson::doc! { "_id": 1 })
                .await
                .map_err(backend_err("list contacts by tag"))?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(backend_err("list contacts by tag"))?
                .into_iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                .collect();
            query.insert("contact_id", mongodb::bson::doc! { "$in": ids });
        }
        list_docs(
            self.conversations(),
            query,
            page,
            CONVERSATION,
            |c: &Conversation| c.id.to_string(),
        )
        .await
    }
}

#[async_trait]
impl MessageRepository for MongoMessaging {
    async fn insert(&self, message: &Message) -> Result<()> {
        let doc = to_doc(message, &message.id.to_string(), MESSAGE)?;
        // Indexed first: a crash in between leaves an entry without its message (ignored
        // by search), never a message that cannot be found.
        super::search::mongo::put(&self.db, &super::search::SearchEntry::of_message(message))
            .await?;
        if let Err(e) = self.messages().insert_one(doc).await {
            // A redelivered message: the entry of this id would point at nothing.
            super::search::mongo::remove(&self.db, &message.id.to_string()).await?;
            return Err(unique_err(INDEXES, MESSAGE, "insert a message")(e));
        }
        Ok(())
    }

    async fn get(&self, scope: Scope, id: MessageId) -> Result<Message> {
        match self
            .messages()
            .find_one(scoped_id(id.to_string(), scope))
            .await
            .map_err(backend_err("read a message"))?
        {
            Some(d) => from_doc(d, MESSAGE, &[]),
            None => Err(not_found(MESSAGE, id)),
        }
    }

    async fn find_by_wamid(&self, phone_number_id: &str, wamid: &str) -> Result<Option<Message>> {
        self.messages()
            .find_one(doc! { "phone_number_id": phone_number_id, "wamid": wamid })
            .await
            .map_err(backend_err("find a message by wamid"))?
            .map(|d| from_doc(d, MESSAGE, &[]))
            .transpose()
    }

    async fn update(&self, scope: Scope, message: &Message) -> Result<Message> {
        check_owner_stays_in_scope(scope, Some(message.tenant_id))?;
        let mut next = message.clone();
        next.version += 1;
        let id = message.id.to_string();
        let replacement = to_doc(&next, &id, MESSAGE)?;
        replace_scoped(
            self.messages(),
            scope,
            id,
            message.version,
            replacement,
            INDEXES,
            MESSAGE,
            "update a message",
        )
        .await?;
        Ok(next)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Message>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(self.messages(), filter, page, MESSAGE, |m: &Message| {
            m.id.to_string()
        })
        .await
    }

    async fn list_for_conversation(
        &self,
        scope: Scope,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>> {
        let mut filter = doc! { "conversation_id": conversation.to_string() };
        scope_filter(&mut filter, scope);
        list_docs(self.messages(), filter, page, MESSAGE, |m: &Message| {
            m.id.to_string()
        })
        .await
    }
}

#[async_trait]
impl HeldStatusRepository for MongoMessaging {
    async fn insert(&self, held: &HeldStatus) -> Result<()> {
        let doc = to_doc(held, &held.id.to_string(), HELD_STATUS)?;
        self.held_statuses()
            .insert_one(doc)
            .await
            .map_err(unique_err(INDEXES, HELD_STATUS, "hold a message status"))?;
        Ok(())
    }

    async fn take(&self, phone_number_id: &str, wamid: &str) -> Result<Vec<HeldStatus>> {
        const ACTION: &str = "take held message statuses";
        let found: Vec<Document> = self
            .held_statuses()
            .find(doc! { "phone_number_id": phone_number_id, "wamid": wamid })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(backend_err(ACTION))?
            .try_collect()
            .await
            .map_err(backend_err(ACTION))?;
        let mut taken = Vec::with_capacity(found.len());
        for d in found {
            let held: HeldStatus = from_doc(d, HELD_STATUS, &[])?;
            // Only the call whose delete removed the document returns it: a concurrent
            // take that found it too gets a delete count of 0 and skips it.
            let deleted = self
                .held_statuses()
                .delete_one(doc! { "_id": held.id.to_string() })
                .await
                .map_err(backend_err(ACTION))?;
            if deleted.deleted_count == 1 {
                taken.push(held);
            }
        }
        Ok(taken)
    }
}
