//! The search index and service on both backends: records indexed as they are stored
//! (messages, contacts created, changed, deleted), normalization across English, French
//! and Arabic, tenants kept apart, agents limited to their own and unassigned
//! conversations, the migration's backfill of records stored before the index existed,
//! and an import through the transfer registry leaving the index complete.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;

use imix_core::{
    access::{AccessContext, Permission, Principal},
    id::{TenantId, UserId, WhatsAppAccountId},
    store::{Backend, Scope},
};
use imix_messaging::{
    records::{Contact, Conversation, DeliveryState, Direction, Message, MessageId},
    search::{SearchService, Terms},
    storage::{self, search::SearchKind, MessagingStorage},
    MessagingError,
};
use serde_json::json;

struct Opened {
    backend: Backend,
    storage: MessagingStorage,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn sqlite() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    opened(store.backend.clone(), Box::new(dir)).await
}

async fn mongodb() -> Opened {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI")
        .unwrap_or_else(|_| panic!("IMIX_TEST_MONGODB_URI is not set"));
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap();
    opened(store.backend.clone(), Box::new(())).await
}

async fn opened(backend: Backend, keep: Box<dyn std::any::Any + Send>) -> Opened {
    storage::migrate(&backend).await.unwrap();
    storage::migrate(&backend).await.unwrap();
    Opened {
        storage: MessagingStorage::open(&backend).unwrap(),
        backend,
        _keep: keep,
    }
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$case(crate::sqlite().await, || Box::pin(crate::sqlite())).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$case(crate::mongodb().await, || Box::pin(crate::mongodb())).await;
                }
            )*
        }
    };
}

on_both_backends!(
    records_are_found_as_stored_changed_and_deleted,
    agents_and_tenants_see_only_their_own,
    the_migration_backfills_and_an_import_is_searchable,
);

type Open = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Opened> + Send>>;

fn ctx(tenant: TenantId, user: UserId, permissions: &[Permission]) -> AccessContext {
    AccessContext::new(
        Principal::new(user, "someone@example.com"),
        Some(tenant),
        false,
        permissions.iter().copied().collect::<BTreeSet<_>>(),
        None,
    )
}

fn manager(tenant: TenantId) -> AccessContext {
    ctx(
        tenant,
        UserId::new(),
        &[
            Permission::ConversationsRead,
            Permission::ConversationsReadAll,
            Permission::ContactsRead,
        ],
    )
}

struct Thread {
    contact: Contact,
    conversation: Conversation,
}

async fn thread(s: &MessagingStorage, tenant: TenantId, wa_id: &str) -> Thread {
    let mut contact = Contact::new(tenant, wa_id);
    contact.phone = Some(format!("+{wa_id}"));
    contact.profile_name = Some(format!("Customer {wa_id}"));
    s.contacts.insert(&contact).await.unwrap();
    let conversation = Conversation::new(tenant, WhatsAppAccountId::new(), contact.id);
    s.conversations.insert(&conversation).await.unwrap();
    Thread {
        contact,
        conversation,
    }
}

async fn message(
    s: &MessagingStorage,
    t: &Thread,
    secs: i64,
    content: serde_json::Value,
) -> Message {
    let kind = content["type"].as_str().unwrap_or("text").to_owned();
    let m = Message {
        auto_reply: false,
        id: MessageId::new(),
        tenant_id: t.contact.tenant_id,
        account_id: t.conversation.account_id,
        phone_number_id: "2001".into(),
        conversation_id: t.conversation.id,
        contact_id: t.contact.id,
        wamid: format!("wamid.{}", MessageId::new()),
        direction: Direction::Inbound,
        kind,
        content,
        timestamp: chrono::DateTime::from_timestamp(1_760_000_000 + secs, 0).unwrap(),
        state: DeliveryState::Received,
        statuses: Vec::new(),
        version: 1,
        created_at: imix_core::now(),
    };
    s.messages.insert(&m).await.unwrap();
    m
}

fn text(body: &str) -> serde_json::Value {
    json!({"type": "text", "text": {"body": body}})
}

async fn snippets(
    s: &MessagingStorage,
    c: &AccessContext,
    tenant: TenantId,
    q: &str,
) -> Vec<String> {
    SearchService::new(s.clone())
        .search(c, tenant, q, None)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.snippet)
        .collect()
}

async fn contacts(
    s: &MessagingStorage,
    c: &AccessContext,
    tenant: TenantId,
    q: &str,
) -> Vec<String> {
    SearchService::new(s.clone())
        .search(c, tenant, q, None)
        .await
        .unwrap()
        .contacts
        .into_iter()
        .map(|c| c.wa_id)
        .collect()
}

async fn records_are_found_as_stored_changed_and_deleted(o: Opened, _: Open) {
    let s = &o.storage;
    let tenant = TenantId::new();
    let admin = manager(tenant);
    let t = thread(s, tenant, "33612345678").await;
    message(s, &t, 0, text("Ça coûte combien?")).await;
    message(s, &t, 1, text("أُرِيدُ السِّعْرَ مِنْ فَضْلِكَ")).await;
    message(s, &t, 2, json!({"type": "document", "document": {"id": "d", "caption": "Facture d'été", "filename": "facture-juin.pdf"}})).await;
    message(s, &t, 3, json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Jean Müller"}, "phones": [{"phone": "+49 30 1234"}]}]})).await;
    message(
        s,
        &t,
        4,
        json!({"type": "reaction", "reaction": {"emoji": "👍", "message_id": "x"}}),
    )
    .await;

    assert_eq!(
        snippets(s, &admin, tenant, "cout").await,
        ["Ça coûte combien?"]
    );
    assert_eq!(snippets(s, &admin, tenant, "ÇA COÛTE comb").await.len(), 1);
    assert_eq!(snippets(s, &admin, tenant, "اريد السعر").await.len(), 1);
    assert_eq!(snippets(s, &admin, tenant, "أريد").await.len(), 1);
    assert_eq!(
        snippets(s, &admin, tenant, "ete").await.len(),
        1,
        "captions"
    );
    assert_eq!(
        snippets(s, &admin, tenant, "juin").await.len(),
        1,
        "file names"
    );
    assert_eq!(
        snippets(s, &admin, tenant, "muller").await.len(),
        1,
        "shared contacts"
    );
    assert!(
        snippets(s, &admin, tenant, "cout prix").await.is_empty(),
        "every word"
    );

    // Contacts: by phone digits and profile name; changes and deletes follow.
    assert_eq!(contacts(s, &admin, tenant, "336123").await, ["33612345678"]);
    assert_eq!(
        contacts(s, &admin, tenant, "customer 3361").await,
        ["33612345678"]
    );
    let mut c = s
        .contacts
        .get(Scope::Tenant(tenant), t.contact.id)
        .await
        .unwrap();
    c.name = Some("Zoé Ångström".into());
    c.profile_name = None;
    let c = s.contacts.update(Scope::Tenant(tenant), &c).await.unwrap();
    assert_eq!(
        contacts(s, &admin, tenant, "zoe angstrom").await,
        ["33612345678"]
    );
    assert!(contacts(s, &admin, tenant, "customer").await.is_empty());
    // The index itself holds no stale tokens of the old profile name.
    let terms = Terms::parse("customer").unwrap();
    assert!(s
        .search
        .search(tenant, SearchKind::Contact, &terms, 10)
        .await
        .unwrap()
        .is_empty());
    s.contact_book
        .delete_contact(Scope::Tenant(tenant), c.id)
        .await
        .unwrap();
    assert!(contacts(s, &admin, tenant, "zoe").await.is_empty());
    let terms = Terms::parse("zoe").unwrap();
    assert!(s
        .search
        .search(tenant, SearchKind::Contact, &terms, 10)
        .await
        .unwrap()
        .is_empty());

    // Bad queries change nothing and name q.
    for q in ["", "  ", &"x".repeat(201)] {
        match SearchService::new(s.clone())
            .search(&admin, tenant, q, None)
            .await
        {
            Err(MessagingError::Store(imix_core::Error::Invalid { field, .. })) => {
                assert_eq!(field, "q")
            }
            other => panic!("{q:?}: {other:?}"),
        }
    }
}

async fn agents_and_tenants_see_only_their_own(o: Opened, _: Open) {
    let s = &o.storage;
    let (tenant, other) = (TenantId::new(), TenantId::new());
    let (me, someone) = (UserId::new(), UserId::new());
    let mine = thread(s, tenant, "111").await;
    let theirs = thread(s, tenant, "222").await;
    let open = thread(s, tenant, "333").await;
    let foreign = thread(s, other, "111").await;
    for (t, secs) in [(&mine, 1), (&theirs, 2), (&open, 3), (&foreign, 4)] {
        message(s, t, secs, text("invoice overdue")).await;
    }
    for (t, who) in [(&mine, me), (&theirs, someone)] {
        let mut c = t.conversation.clone();
        c.assignee = Some(who);
        s.conversations
            .update(Scope::Tenant(tenant), &c)
            .await
            .unwrap();
    }
    let agent = ctx(
        tenant,
        me,
        &[Permission::ConversationsRead, Permission::ContactsRead],
    );
    let found = SearchService::new(s.clone())
        .search(&agent, tenant, "invoice", None)
        .await
        .unwrap();
    let conversations: Vec<_> = found
        .messages
        .iter()
        .map(|m| m.message.conversation_id)
        .collect();
    assert_eq!(
        conversations,
        [open.conversation.id, mine.conversation.id],
        "newest first"
    );
    let all = SearchService::new(s.clone())
        .search(&manager(tenant), tenant, "invoice", Some(2))
        .await
        .unwrap();
    assert_eq!(all.messages.len(), 2, "limit");
    assert_eq!(
        all.messages[0].message.conversation_id,
        open.conversation.id
    );
    // The other tenant's records stay there; its tenant is "not found" to this one's users.
    assert_eq!(contacts(s, &manager(other), other, "111").await, ["111"]);
    assert_eq!(
        snippets(s, &manager(other), other, "invoice").await.len(),
        1
    );
    match SearchService::new(s.clone())
        .search(&manager(tenant), other, "invoice", None)
        .await
    {
        // Denied as "not found": the tenant's existence does not leak.
        Err(e) if format!("{e:?}").contains("NotFound") => {}
        other => panic!("{other:?}"),
    }
    // Without contacts.read no contacts, messages still.
    let no_contacts = ctx(tenant, me, &[Permission::ConversationsRead]);
    let found = SearchService::new(s.clone())
        .search(&no_contacts, tenant, "111", None)
        .await
        .unwrap();
    assert!(found.contacts.is_empty());
}

/// Empties the index and forgets the backfill, as a database from before the search
/// migration would be.
async fn forget_index(backend: &Backend) {
    match backend {
        Backend::Sqlite(db) => db
            .write("test: forget the index", |c| {
                c.execute_batch(
                    "DELETE FROM search_fts; DELETE FROM search_records; DELETE FROM search_state;",
                )
                .unwrap();
                Ok(())
            })
            .await
            .unwrap(),
        Backend::Mongo(db) => {
            for coll in ["search_tokens", "search_state"] {
                db.collection::<::mongodb::bson::Document>(coll)
                    .delete_many(::mongodb::bson::doc! {})
                    .await
                    .unwrap();
            }
        }
        _ => unreachable!(),
    }
}

async fn the_migration_backfills_and_an_import_is_searchable(o: Opened, open: Open) {
    let s = &o.storage;
    let tenant = TenantId::new();
    let admin = manager(tenant);
    let t = thread(s, tenant, "212600000001").await;
    message(s, &t, 0, text("مـــرحبا بكم")).await;
    message(s, &t, 1, text("Bonjour, où est ma commande ?")).await;
    forget_index(&o.backend).await;
    assert!(snippets(s, &admin, tenant, "commande").await.is_empty());
    storage::migrate(&o.backend).await.unwrap();
    assert_eq!(snippets(s, &admin, tenant, "ou est").await.len(), 1);
    assert_eq!(snippets(s, &admin, tenant, "مرحبا").await.len(), 1);
    assert_eq!(
        contacts(s, &admin, tenant, "212600").await,
        ["212600000001"]
    );
    // rebuild() gives the same answers.
    assert_eq!(s.search.rebuild().await.unwrap(), 3);
    assert_eq!(snippets(s, &admin, tenant, "commande").await.len(), 1);

    // Export every record set, import into an empty store: search works there.
    let target = open().await;
    let from = s.record_sets();
    let into = target.storage.record_sets();
    for (out, inn) in from.iter().zip(into.iter()) {
        assert_eq!(out.kind(), inn.kind());
        let mut cursor = None;
        loop {
            let (records, next) = out.export_page(cursor).await.unwrap();
            for r in records {
                inn.import(r).await.unwrap();
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    let t2 = &target.storage;
    assert_eq!(snippets(t2, &admin, tenant, "commande").await.len(), 1);
    assert_eq!(snippets(t2, &admin, tenant, "مرحبا").await.len(), 1);
    assert_eq!(
        contacts(t2, &admin, tenant, "customer").await,
        ["212600000001"]
    );
}
