//! Conformance cases of the annotations' storage ([`crate::storage::annotations`]): notes,
//! labels (and a conversation's labels), canned responses, and the conversation list's
//! label and tag filters.

use imix_core::{
    id::{TenantId, UserId, WhatsAppAccountId},
    store::Scope,
};

use super::{
    all_pages, assert_conflict, assert_duplicate, assert_not_found, contact, conversation, unwrap,
};
use crate::{
    annotations::{CannedResponse, CannedResponseId, Label, LabelId, Note, NoteId},
    records::ConversationId,
    storage::{ConversationFilter, MessagingStorage},
};

/// A note of `tenant` on `conversation` with non-ASCII, multi-line text.
pub fn note(tenant: TenantId, conversation: ConversationId) -> Note {
    let now = imix_core::now();
    Note {
        id: NoteId::new(),
        tenant_id: tenant,
        conversation_id: conversation,
        author_id: UserId::new(),
        author_name: "Mariem Mint Ahmed".into(),
        body: "Rappeler demain.\n\tمرحبا — ça va".into(),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A label of `tenant` named `name`.
pub fn label(tenant: TenantId, name: &str) -> Label {
    let now = imix_core::now();
    Label {
        id: LabelId::new(),
        tenant_id: tenant,
        name: name.into(),
        color: "#a1b2c3".into(),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A canned response of `tenant` with `shortcut` and `title`.
pub fn canned(tenant: TenantId, shortcut: &str, title: &str) -> CannedResponse {
    let now = imix_core::now();
    CannedResponse {
        id: CannedResponseId::new(),
        tenant_id: tenant,
        shortcut: shortcut.into(),
        title: title.into(),
        body: "Bonjour !\nNous sommes ouverts de 8h à 18h. شكرا".into(),
        language: Some("fr".into()),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// Notes read back as stored, within their tenant only; updates are optimistic; they list
/// per conversation in order; a delete returns the note once.
pub async fn notes_round_trip_scoped_and_listed_per_conversation(storage: &MessagingStorage) {
    let notes = &storage.annotations.notes;
    let (a, b) = (TenantId::new(), TenantId::new());
    let (c1, c2) = (ConversationId::new(), ConversationId::new());
    let first = note(a, c1);
    let second = note(a, c1);
    let elsewhere = note(a, c2);
    let foreign = note(b, ConversationId::new());
    for n in [&first, &second, &elsewhere, &foreign] {
        unwrap(notes.insert(n).await, "insert a note");
    }
    assert_eq!(
        unwrap(notes.get(Scope::Tenant(a), first.id).await, "get"),
        first
    );
    assert_not_found(
        notes.get(Scope::Tenant(b), first.id).await,
        "another tenant",
    );
    let (got, _) = all_pages(1, |p| notes.list_for_conversation(Scope::Tenant(a), c1, p)).await;
    assert_eq!(got, vec![first.clone(), second.clone()]);
    let (got, _) = all_pages(50, |p| notes.list_for_conversation(Scope::Tenant(b), c1, p)).await;
    assert!(got.is_empty());
    let (got, _) = all_pages(2, |p| notes.list(Scope::Platform, p)).await;
    assert_eq!(got.len(), 4);

    let mut edited = first.clone();
    edited.body = "Rappelé.".into();
    let stored = unwrap(notes.update(Scope::Tenant(a), &edited).await, "update");
    assert_eq!(stored.version, 2);
    assert_conflict(notes.update(Scope::Tenant(a), &edited).await, "stale");
    assert_not_found(
        notes.delete(Scope::Tenant(b), first.id).await,
        "foreign delete",
    );
    assert_eq!(
        unwrap(notes.delete(Scope::Tenant(a), first.id).await, "delete"),
        stored
    );
    assert_not_found(
        notes.delete(Scope::Tenant(a), first.id).await,
        "deleted twice",
    );
}

/// Label names are unique per tenant whatever their case (renames too); labels of another
/// tenant are not found; deleting a label removes it from its conversations, raising their
/// versions; the list filters on labels and on the contact's tags.
pub async fn labels_are_unique_and_filter_and_leave_conversations(storage: &MessagingStorage) {
    let labels = &storage.annotations.labels;
    let (a, b) = (TenantId::new(), TenantId::new());
    let vip = label(a, "VIP");
    let late = label(a, "En retard");
    unwrap(labels.insert(&vip).await, "insert");
    unwrap(labels.insert(&late).await, "insert");
    assert_duplicate(labels.insert(&label(a, "vip")).await, "label", "name");
    let b_vip = label(b, "VIP");
    unwrap(labels.insert(&b_vip).await, "same name, other tenant");
    let mut renamed = late.clone();
    renamed.name = "Vip".into();
    assert_duplicate(
        labels.update(Scope::Tenant(a), &renamed).await,
        "label",
        "name",
    );
    renamed.name = "Urgent".into();
    let late = unwrap(labels.update(Scope::Tenant(a), &renamed).await, "rename");
    assert_conflict(labels.update(Scope::Tenant(a), &renamed).await, "stale");
    assert_not_found(labels.get(Scope::Tenant(b), vip.id).await, "another tenant");
    let (got, _) = all_pages(1, |p| labels.list(Scope::Tenant(a), p)).await;
    assert_eq!(got, vec![vip.clone(), late.clone()]);

    // Two conversations: one with both labels and a tagged contact, one with `late`.
    let account = WhatsAppAccountId::new();
    let (k1, mut k2) = (contact(a, "22245800001"), contact(a, "22245800002"));
    k2.tags = vec!["grossiste".into()];
    let other = contact(b, "22245800003");
    for k in [&k1, &k2, &other] {
        unwrap(storage.contacts.insert(k).await, "insert a contact");
    }
    let mut c1 = conversation(&k1, account);
    c1.labels = vec![vip.id, late.id];
    let mut c2 = conversation(&k2, account);
    c2.labels = vec![late.id];
    let mut c3 = conversation(&other, WhatsAppAccountId::new());
    c3.labels = vec![b_vip.id];
    for c in [&c1, &c2, &c3] {
        unwrap(
            storage.conversations.insert(c).await,
            "insert a conversation",
        );
    }
    let ids = |filter: ConversationFilter, scope: Scope| async move {
        let (got, _) =
            all_pages(50, |p| storage.conversations.list(scope, filter.clone(), p)).await;
        got.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    let by_label = |l: LabelId| ConversationFilter {
        label: Some(l),
        ..ConversationFilter::default()
    };
    let by_tag = |t: &str| ConversationFilter {
        tag: Some(t.into()),
        ..ConversationFilter::default()
    };
    assert_eq!(ids(by_label(vip.id), Scope::Tenant(a)).await, vec![c1.id]);
    assert_eq!(
        ids(by_label(late.id), Scope::Tenant(a)).await,
        vec![c1.id, c2.id]
    );
    assert_eq!(ids(by_label(b_vip.id), Scope::Tenant(b)).await, vec![c3.id]);
    assert_eq!(
        ids(by_tag("grossiste"), Scope::Tenant(a)).await,
        vec![c2.id]
    );
    assert_eq!(ids(by_tag("vip"), Scope::Tenant(a)).await, vec![c1.id]);
    assert_eq!(ids(by_tag("vip"), Scope::Tenant(b)).await, vec![c3.id]);
    assert!(
        ids(by_tag("VIP"), Scope::Tenant(a)).await.is_empty(),
        "tags match exactly"
    );
    assert!(ids(by_tag("absent"), Scope::Platform).await.is_empty());
    let both = ConversationFilter {
        label: Some(vip.id),
        tag: Some("nouakchott".into()),
        ..ConversationFilter::default()
    };
    assert_eq!(ids(both, Scope::Tenant(a)).await, vec![c1.id]);

    // Delete: another tenant's scope finds nothing; the owner's removes it everywhere.
    assert_not_found(
        labels.delete(Scope::Tenant(b), late.id).await,
        "foreign delete",
    );
    assert_eq!(
        unwrap(labels.delete(Scope::Tenant(a), late.id).await, "delete"),
        late
    );
    let after =
        |id| async move { unwrap(storage.conversations.get(Scope::Platform, id).await, "get") };
    let c1_after = after(c1.id).await;
    assert_eq!(c1_after.labels, vec![vip.id]);
    assert_eq!(c1_after.version, c1.version + 1, "version raised");
    assert!(after(c2.id).await.labels.is_empty());
    // The stale version of a cleared conversation conflicts, so no writer puts it back.
    assert_conflict(
        storage.conversations.update(Scope::Tenant(a), &c2).await,
        "stale",
    );
    assert!(ids(by_label(late.id), Scope::Platform).await.is_empty());
    assert_not_found(labels.get(Scope::Tenant(a), late.id).await, "deleted");
    // A label with no conversation deletes too.
    unwrap(labels.delete(Scope::Tenant(a), vip.id).await, "delete");
    assert!(after(c1.id).await.labels.is_empty());
}

/// Shortcuts are unique per tenant (renames too); the list filters by shortcut prefix or
/// title substring, literally (no pattern characters); a look-up by shortcut stays within
/// the tenant.
pub async fn canned_responses_are_unique_by_shortcut_and_filtered(storage: &MessagingStorage) {
    let canned_repo = &storage.annotations.canned;
    let (a, b) = (TenantId::new(), TenantId::new());
    let greet = canned(a, "greet", "Salutation");
    let hours = canned(a, "hours", "Horaires d'ouverture");
    let odd = canned(a, "greet_en", "100% English (en_US)");
    for c in [&greet, &hours, &odd] {
        unwrap(canned_repo.insert(c).await, "insert");
    }
    assert_duplicate(
        canned_repo.insert(&canned(a, "greet", "x")).await,
        "canned response",
        "shortcut",
    );
    let foreign = canned(b, "greet", "Salutation");
    unwrap(canned_repo.insert(&foreign).await, "other tenant");
    let list = |q: Option<&str>| {
        let q = q.map(str::to_owned);
        async move {
            let (got, _) = all_pages(1, |p| canned_repo.list(Scope::Tenant(a), q.clone(), p)).await;
            got.into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None).await, vec![greet.id, hours.id, odd.id]);
    assert_eq!(list(Some("gre")).await, vec![greet.id, odd.id]);
    assert_eq!(
        list(Some("ours")).await,
        Vec::<CannedResponseId>::new(),
        "prefix only"
    );
    assert_eq!(
        list(Some("OUVERT")).await,
        vec![hours.id],
        "title, any case"
    );
    assert_eq!(list(Some("100%")).await, vec![odd.id]);
    assert_eq!(list(Some("n_U")).await, vec![odd.id], "`_` is literal");
    assert!(list(Some("%")).await.len() == 1, "`%` is literal");
    assert!(list(Some(".*")).await.is_empty(), "no patterns");

    assert_eq!(
        unwrap(
            canned_repo
                .find_by_shortcut(Scope::Tenant(a), "greet")
                .await,
            "find"
        ),
        Some(greet.clone())
    );
    assert_eq!(
        unwrap(
            canned_repo
                .find_by_shortcut(Scope::Tenant(b), "greet")
                .await,
            "find"
        ),
        Some(foreign.clone())
    );
    assert_eq!(
        unwrap(
            canned_repo.find_by_shortcut(Scope::Tenant(a), "gree").await,
            "find"
        ),
        None
    );
    let mut moved = greet.clone();
    moved.shortcut = "hours".into();
    assert_duplicate(
        canned_repo.update(Scope::Tenant(a), &moved).await,
        "canned response",
        "shortcut",
    );
    moved.shortcut = "hello".into();
    let stored = unwrap(canned_repo.update(Scope::Tenant(a), &moved).await, "update");
    assert_eq!(stored.version, 2);
    assert_conflict(canned_repo.update(Scope::Tenant(a), &moved).await, "stale");
    assert_not_found(canned_repo.get(Scope::Tenant(b), greet.id).await, "scope");
    assert_eq!(
        unwrap(
            canned_repo
                .find_by_shortcut(Scope::Tenant(a), "greet")
                .await,
            "find"
        ),
        None,
        "the old shortcut is free"
    );
    assert_not_found(
        canned_repo.delete(Scope::Tenant(b), greet.id).await,
        "foreign delete",
    );
    assert_eq!(
        unwrap(
            canned_repo.delete(Scope::Tenant(a), greet.id).await,
            "delete"
        ),
        stored
    );
    assert_not_found(canned_repo.get(Scope::Tenant(a), greet.id).await, "deleted");
}
