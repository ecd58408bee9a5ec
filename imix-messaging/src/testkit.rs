//! The storage conformance suite of messaging's ports (feature `testkit`): every adapter of
//! [`DeliveryRepository`](crate::storage::DeliveryRepository),
//! [`ContactRepository`](crate::storage::ContactRepository),
//! [`ConversationRepository`](crate::storage::ConversationRepository),
//! [`MessageRepository`](crate::storage::MessageRepository) and
//! [`HeldStatusRepository`](crate::storage::HeldStatusRepository) (the SQLite and MongoDB
//! ones here, or an integrator's own) must pass each case.
//!
//! Each case is a public async function taking a [`MessagingStorage`] on an **empty**
//! database (the record-set case takes two: a source and an empty target); it panics on
//! the first violation. [`CASES`] names them all, and
//! [`messaging_storage_conformance!`](crate::messaging_storage_conformance) turns them into
//! one `#[tokio::test]` each, given an expression evaluating to a future of a [`Fixture`]:
//!
//! ```text
//! imix_messaging::messaging_storage_conformance!(async {
//!     let storage = my_storage().await; // a MessagingStorage of your adapters
//!     imix_messaging::testkit::Fixture::new(storage)
//! });
//! ```
//!
//! The cases use `tokio::spawn` (concurrent writers), so they need a multi-threaded runtime
//! (the macro asks for one).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test kit fails loudly

use std::{collections::HashSet, future::Future};

use futures::future::BoxFuture;
use imix_core::{
    id::{TenantId, UserId, WhatsAppAccountId},
    store::{transfer::Record, Page, PageRequest, Scope, MAX_PAGE_SIZE},
    Error, Timestamp,
};
use serde_json::json;

use crate::{
    records::{
        Contact, Conversation, ConversationStatus, Delivery, DeliveryState, Direction, HeldStatus,
        HeldStatusId, Message, MessageId, OptOut, StatusEvent,
    },
    storage::{ConversationFilter, MessagingStorage},
};

/// What a case runs on, and what to do after it.
pub struct Fixture {
    /// The repositories under test, on a fresh, migrated, empty database.
    pub storage: MessagingStorage,
    /// Run after the case (drop a database, remove a directory).
    pub cleanup: BoxFuture<'static, ()>,
}

impl Fixture {
    /// A fixture with nothing to clean up.
    pub fn new(storage: MessagingStorage) -> Self {
        Self {
            storage,
            cleanup: Box::pin(async {}),
        }
    }
}

/// The name of every case, in the order the macro runs them.
pub const CASES: &[&str] = &[
    "deliveries_round_trip_and_reject_stale_versions",
    "deliveries_are_claimed_oldest_first_under_a_lease",
    "concurrent_claims_never_hand_out_a_delivery_twice",
    "unprocessed_deliveries_are_counted",
    "contacts_round_trip_and_wa_id_is_unique_per_tenant",
    "contacts_are_tenant_scoped",
    "contacts_paginate_completely_in_order",
    "conversations_round_trip_and_are_unique_per_account_and_contact",
    "conversations_are_tenant_scoped_and_filtered",
    "messages_round_trip_and_wamid_is_unique_per_number",
    "concurrent_inserts_of_one_wamid_store_it_once",
    "messages_are_tenant_scoped_and_listed_per_conversation",
    "held_statuses_are_taken_oldest_first_and_once",
    "concurrent_takes_never_return_a_held_status_twice",
    "record_sets_export_and_import_every_record",
];

/// Defines one `#[tokio::test]` per conformance case, each on a fixture from `$open` (an
/// expression evaluating to a future of [`Fixture`]; the record-set case opens two).
/// Expand it in a test crate (or module) that depends on `tokio` with the `macros` and
/// `rt-multi-thread` features.
#[macro_export]
macro_rules! messaging_storage_conformance {
    ($open:expr) => {
        $crate::messaging_storage_conformance!(@cases $open;
            deliveries_round_trip_and_reject_stale_versions,
            deliveries_are_claimed_oldest_first_under_a_lease,
            concurrent_claims_never_hand_out_a_delivery_twice,
            unprocessed_deliveries_are_counted,
            contacts_round_trip_and_wa_id_is_unique_per_tenant,
            contacts_are_tenant_scoped,
            contacts_paginate_completely_in_order,
            conversations_round_trip_and_are_unique_per_account_and_contact,
            conversations_are_tenant_scoped_and_filtered,
            messages_round_trip_and_wamid_is_unique_per_number,
            concurrent_inserts_of_one_wamid_store_it_once,
            messages_are_tenant_scoped_and_listed_per_conversation,
            held_statuses_are_taken_oldest_first_and_once,
            concurrent_takes_never_return_a_held_status_twice,
            notes_round_trip_scoped_and_listed_per_conversation,
            labels_are_unique_and_filter_and_leave_conversations,
            canned_responses_are_unique_by_shortcut_and_filtered,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn record_sets_export_and_import_every_record() {
            let source: $crate::testkit::Fixture = $open.await;
            let target: $crate::testkit::Fixture = $open.await;
            $crate::testkit::record_sets_export_and_import_every_record(
                &source.storage,
                &target.storage,
            )
            .await;
            source.cleanup.await;
            target.cleanup.await;
        }
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::testkit::Fixture = $open.await;
                $crate::testkit::$case(&fixture.storage).await;
                fixture.cleanup.await;
            }
        )*
    };
}

pub mod annotations;
pub use annotations::{
    canned_responses_are_unique_by_shortcut_and_filtered,
    labels_are_unique_and_filter_and_leave_conversations,
    notes_round_trip_scoped_and_listed_per_conversation,
};

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

/// A delivery due at `due_at` (`None`: processed), with a non-ASCII body.
pub fn delivery(due_at: Option<Timestamp>) -> Delivery {
    let mut d = Delivery::new(
        r#"{"object":"whatsapp_business_account","entry":[{"id":"waba","changes":[{"value":{"messages":[{"text":{"body":"Salam \u00e7a va ? مرحبا"}}]}}]}]}"#
            .into(),
        vec![WhatsAppAccountId::new(), WhatsAppAccountId::new()],
    );
    d.due_at = due_at;
    if due_at.is_none() {
        d.processed_at = Some(d.received_at);
    }
    d
}

/// A contact of `tenant` with every field set.
pub fn contact(tenant: TenantId, wa_id: &str) -> Contact {
    let mut c = Contact::new(tenant, wa_id);
    c.phone = Some(format!("+{wa_id}"));
    c.name = Some("Aïcha Ould Ahmed".into());
    c.profile_name = Some("عائشة".into());
    c.tags = vec!["vip".into(), "nouakchott".into()];
    c.opt_out = Some(OptOut {
        opted_out: true,
        at: imix_core::now(),
        source: "message".into(),
        message_id: Some(MessageId::new()),
    });
    c
}

/// A conversation of `contact` on `account` with every field set.
pub fn conversation(contact: &Contact, account: WhatsAppAccountId) -> Conversation {
    let now = imix_core::now();
    let mut c = Conversation::new(contact.tenant_id, account, contact.id);
    c.assignee = Some(UserId::new());
    c.unread = 3;
    c.last_message_at = Some(now - ms(2_000));
    c.last_inbound_at = Some(now - ms(3_000));
    c.preview = Some("Salam, ça va ?".into());
    c.labels = vec![crate::annotations::LabelId::new()];
    c
}

/// An inbound message of `conversation` on number `phone_number_id`, with nested content
/// and a status.
pub fn message(conversation: &Conversation, phone_number_id: &str, wamid: &str) -> Message {
    let now = imix_core::now();
    Message {
        auto_reply: false,
        id: MessageId::new(),
        tenant_id: conversation.tenant_id,
        account_id: conversation.account_id,
        phone_number_id: phone_number_id.into(),
        conversation_id: conversation.id,
        contact_id: conversation.contact_id,
        wamid: wamid.into(),
        direction: Direction::Inbound,
        kind: "text".into(),
        content: json!({
            "text": { "body": "Salam, ça va ? مرحبا 👋" },
            "context": { "from": "22245000000", "id": "wamid.earlier" },
            "count": 3,
            "ratio": 0.5,
            "flags": [true, null, "x"],
        }),
        timestamp: now - ms(5_000),
        state: DeliveryState::Read,
        statuses: vec![
            status(DeliveryState::Delivered),
            status(DeliveryState::Read),
        ],
        version: 1,
        created_at: now,
    }
}

/// A status event of `state`, with pricing as Meta sends it.
pub fn status(state: DeliveryState) -> StatusEvent {
    StatusEvent {
        state,
        at: imix_core::now(),
        errors: None,
        pricing: Some(json!({ "billable": true, "category": "service", "pricing_model": "CBP" })),
        conversation: Some(json!({ "id": "conv-1", "origin": { "type": "service" } })),
    }
}

/// A status held for message `wamid` on number `phone_number_id`.
pub fn held_status(phone_number_id: &str, wamid: &str) -> HeldStatus {
    let mut event = status(DeliveryState::Failed);
    event.errors = Some(json!([{ "code": 131047, "title": "Re-engagement message" }]));
    HeldStatus {
        id: HeldStatusId::new(),
        phone_number_id: phone_number_id.into(),
        wamid: wamid.into(),
        event,
        received_at: imix_core::now(),
    }
}

fn unwrap<T>(result: imix_core::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn assert_invalid<T: std::fmt::Debug>(result: imix_core::Result<T>, field: &str) {
    match result {
        Err(Error::Invalid { field: f, .. }) if f == field => {}
        other => panic!("expected Invalid {field}, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: imix_core::Result<T>, what: &str) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "{what}: expected NotFound, got {result:?}"
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: imix_core::Result<T>, what: &str) {
    assert!(
        matches!(result, Err(Error::VersionConflict { .. })),
        "{what}: expected VersionConflict, got {result:?}"
    );
}

fn assert_duplicate<T: std::fmt::Debug>(
    result: imix_core::Result<T>,
    entity: &'static str,
    field: &'static str,
) {
    match result {
        Err(Error::Duplicate {
            entity: e,
            field: f,
        }) if e == entity && f == field => {}
        other => panic!("expected Duplicate {entity}.{field}, got {other:?}"),
    }
}

/// Every item of a paged list, page by page of `limit`, and how many pages it took. Each
/// page must hold at most `limit` items and only the last may lack a next cursor.
async fn all_pages<T, F, Fut>(limit: u32, mut list: F) -> (Vec<T>, usize)
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = imix_core::Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = unwrap(
            list(PageRequest {
                cursor,
                limit: Some(limit),
            })
            .await,
            "list a page",
        );
        assert!(page.items.len() <= limit as usize, "a page over its limit");
        pages += 1;
        items.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (items, pages),
        }
        assert!(pages < 1_000, "pagination does not end");
    }
}

/// Limits outside 1..=[`MAX_PAGE_SIZE`] and a cursor the API never issued are refused.
async fn assert_page_requests_validated<T, F, Fut>(mut list: F)
where
    T: std::fmt::Debug,
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = imix_core::Result<Page<T>>>,
{
    for bad in [0, MAX_PAGE_SIZE + 1] {
        assert_invalid(list(PageRequest::first(bad)).await, "limit");
    }
    assert_invalid(
        list(PageRequest {
            cursor: Some("' OR 1=1 --".into()),
            limit: None,
        })
        .await,
        "cursor",
    );
}

/// A delivery reads back as stored; a second insert of its id is a duplicate; updates are
/// optimistic (stored version + 1, stale → conflict, unknown → not found).
pub async fn deliveries_round_trip_and_reject_stale_versions(storage: &MessagingStorage) {
    let repo = storage.deliveries.as_ref();
    let d = delivery(Some(imix_core::now()));
    unwrap(repo.insert(&d).await, "insert");
    assert_eq!(unwrap(repo.get(d.id).await, "get"), d);
    assert_duplicate(repo.insert(&d).await, "delivery", "id");

    let mut failed = d.clone();
    failed.attempts = 1;
    failed.last_error = Some("no account for phone number id 123".into());
    failed.due_at = Some(imix_core::now() + ms(30_000));
    let stored = unwrap(repo.update(&failed).await, "update");
    assert_eq!(stored.version, 2);
    assert_eq!(
        Delivery {
            version: 1,
            ..stored.clone()
        },
        failed
    );
    assert_eq!(unwrap(repo.get(d.id).await, "get"), stored);

    assert_conflict(repo.update(&failed).await, "a stale update");
    assert_eq!(
        unwrap(repo.get(d.id).await, "get"),
        stored,
        "a stale write changes nothing"
    );
    let ghost = delivery(Some(imix_core::now()));
    assert_not_found(repo.get(ghost.id).await, "get of an unknown delivery");
    assert_not_found(repo.update(&ghost).await, "update of an unknown delivery");
}

/// Claims hand out the oldest due delivery, raise `attempts` and `version` and set the
/// lease; a leased delivery is not claimed again until the lease runs out, and then the
/// first worker's late update is a conflict. Processed and future deliveries are never
/// claimed.
pub async fn deliveries_are_claimed_oldest_first_under_a_lease(storage: &MessagingStorage) {
    let repo = storage.deliveries.as_ref();
    let now = imix_core::now();
    let lease = now + ms(5_000);
    assert_eq!(unwrap(repo.claim_due(now, lease).await, "claim"), None);

    let processed = delivery(None);
    // Created after `processed` (ids are creation-ordered), due a little earlier than the
    // next one: the id, not the due time, decides which is oldest.
    let old = delivery(Some(now - ms(1_000)));
    let fresh = delivery(Some(now - ms(2_000)));
    let future = delivery(Some(now + ms(60_000)));
    for d in [&processed, &old, &fresh, &future] {
        unwrap(repo.insert(d).await, "insert");
    }

    let claimed = unwrap(repo.claim_due(now, lease).await, "claim").expect("a due delivery");
    let mut expected = old.clone();
    expected.attempts = 1;
    expected.lease_until = Some(lease);
    expected.version = 2;
    assert_eq!(claimed, expected, "the oldest due delivery, leased");
    assert_eq!(unwrap(repo.get(old.id).await, "get"), claimed);

    let second = unwrap(repo.claim_due(now, lease).await, "claim").expect("a due delivery");
    assert_eq!(second.id, fresh.id);
    assert_eq!((second.attempts, second.version), (1, 2));
    // Both due ones are leased; the future one is not due; the processed one never is.
    assert_eq!(unwrap(repo.claim_due(now, lease).await, "claim"), None);
    assert_eq!(
        unwrap(repo.claim_due(lease - ms(1), lease).await, "claim"),
        None,
        "a lease still running holds the delivery"
    );

    // The first worker died: once its lease runs out another takes the delivery over, and
    // the first worker's late report is rejected.
    let after = lease + ms(1);
    let retaken = unwrap(repo.claim_due(after, after + ms(5_000)).await, "claim")
        .expect("an expired lease frees the delivery");
    assert_eq!(retaken.id, old.id);
    assert_eq!((retaken.attempts, retaken.version), (2, 3));
    assert_eq!(retaken.lease_until, Some(after + ms(5_000)));
    let mut late = claimed.clone();
    late.due_at = None;
    late.processed_at = Some(after);
    assert_conflict(repo.update(&late).await, "the late worker's update");

    let mut done = retaken.clone();
    done.due_at = None;
    done.lease_until = None;
    done.processed_at = Some(after);
    let stored = unwrap(repo.update(&done).await, "finish");
    assert_eq!(stored.version, 4);
    assert_eq!(unwrap(repo.get(old.id).await, "get"), stored);

    // Far in the future only the unfinished ones come back, oldest first.
    let far = now + ms(3_600_000);
    let mut order = Vec::new();
    while let Some(d) = unwrap(repo.claim_due(far, far + ms(5_000)).await, "claim") {
        order.push(d.id);
        assert!(order.len() <= 4, "claims do not end");
    }
    assert_eq!(order, vec![fresh.id, future.id]);
    assert_eq!(unwrap(repo.get(processed.id).await, "get"), processed);
}

/// Twenty workers claim five due deliveries at once: none is handed out twice, and every
/// one is handed out.
pub async fn concurrent_claims_never_hand_out_a_delivery_twice(storage: &MessagingStorage) {
    let now = imix_core::now();
    let mut ids = HashSet::new();
    for _ in 0..5 {
        let d = delivery(Some(now - ms(1_000)));
        ids.insert(d.id);
        unwrap(storage.deliveries.insert(&d).await, "insert");
    }
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let storage = storage.clone();
            tokio::spawn(async move {
                storage
                    .deliveries
                    .claim_due(now, now + chrono::Duration::minutes(5))
                    .await
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        if let Some(d) = unwrap(t.await.unwrap(), "claim") {
            assert_eq!((d.attempts, d.version), (1, 2));
            claimed.push(d.id);
        }
    }
    let distinct: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "a delivery claimed twice");
    // Whatever the racing claims left (none, on the built-in adapters) is still claimable.
    while let Some(d) = unwrap(
        storage
            .deliveries
            .claim_due(now, now + chrono::Duration::minutes(5))
            .await,
        "claim",
    ) {
        assert!(!distinct.contains(&d.id), "a leased delivery claimed again");
        claimed.push(d.id);
    }
    assert_eq!(claimed.len(), 5);
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
}

/// Deliveries still due (leased or not, due now or later) count as unprocessed; processed
/// ones do not.
pub async fn unprocessed_deliveries_are_counted(storage: &MessagingStorage) {
    let repo = storage.deliveries.as_ref();
    let now = imix_core::now();
    assert_eq!(unwrap(repo.count_unprocessed().await, "count"), 0);
    let due = delivery(Some(now - ms(1_000)));
    for d in [&due, &delivery(Some(now + ms(60_000))), &delivery(None)] {
        unwrap(repo.insert(d).await, "insert");
    }
    assert_eq!(unwrap(repo.count_unprocessed().await, "count"), 2);
    let mut claimed =
        unwrap(repo.claim_due(now, now + ms(5_000)).await, "claim").expect("a due delivery");
    assert_eq!(claimed.id, due.id);
    assert_eq!(
        unwrap(repo.count_unprocessed().await, "count"),
        2,
        "a leased delivery is not processed yet"
    );
    claimed.due_at = None;
    claimed.lease_until = None;
    claimed.processed_at = Some(now);
    unwrap(repo.update(&claimed).await, "finish");
    assert_eq!(unwrap(repo.count_unprocessed().await, "count"), 1);
}

/// A contact reads back as stored and is found by `wa_id` within its tenant; `wa_id` is
/// unique per tenant (on insert and on update), the same `wa_id` in another tenant is
/// fine; updates are optimistic.
pub async fn contacts_round_trip_and_wa_id_is_unique_per_tenant(storage: &MessagingStorage) {
    let repo = storage.contacts.as_ref();
    let (a, b) = (TenantId::new(), TenantId::new());
    let c = contact(a, "22245000001");
    unwrap(repo.insert(&c).await, "insert");
    assert_eq!(unwrap(repo.get(Scope::Platform, c.id).await, "get"), c);
    assert_eq!(unwrap(repo.get(Scope::Tenant(a), c.id).await, "get"), c);

    let mut same_id = contact(a, "22245000099");
    same_id.id = c.id;
    assert_duplicate(repo.insert(&same_id).await, "contact", "id");
    assert_duplicate(
        repo.insert(&contact(a, "22245000001")).await,
        "contact",
        "wa_id",
    );
    let twin = contact(b, "22245000001");
    unwrap(repo.insert(&twin).await, "the same wa_id in another tenant");

    assert_eq!(
        unwrap(repo.find_by_wa_id(a, "22245000001").await, "find"),
        Some(c.clone())
    );
    assert_eq!(
        unwrap(repo.find_by_wa_id(b, "22245000001").await, "find"),
        Some(twin.clone())
    );
    assert_eq!(
        unwrap(repo.find_by_wa_id(a, "22245000002").await, "find"),
        None
    );
    assert_eq!(
        unwrap(
            repo.find_by_wa_id(TenantId::new(), "22245000001").await,
            "find"
        ),
        None
    );

    let mut renamed = c.clone();
    renamed.name = Some("Aïcha".into());
    renamed.tags.push("wholesale".into());
    renamed.opt_out = None;
    let stored = unwrap(repo.update(Scope::Tenant(a), &renamed).await, "update");
    assert_eq!(stored.version, 2);
    assert_eq!(unwrap(repo.get(Scope::Platform, c.id).await, "get"), stored);
    assert_conflict(repo.update(Scope::Platform, &renamed).await, "stale update");
    assert_eq!(unwrap(repo.get(Scope::Platform, c.id).await, "get"), stored);

    // Changing a wa_id to one the tenant already has is refused and changes nothing.
    let other = contact(a, "22245000003");
    unwrap(repo.insert(&other).await, "insert");
    let mut clash = other.clone();
    clash.wa_id = "22245000001".into();
    assert_duplicate(
        repo.update(Scope::Platform, &clash).await,
        "contact",
        "wa_id",
    );
    assert_eq!(
        unwrap(repo.get(Scope::Platform, other.id).await, "get"),
        other
    );
    let mut moved = other.clone();
    moved.wa_id = "22245000004".into();
    let moved = unwrap(repo.update(Scope::Platform, &moved).await, "update");
    assert_eq!(
        unwrap(repo.find_by_wa_id(a, "22245000004").await, "find"),
        Some(moved)
    );
    assert_eq!(
        unwrap(repo.find_by_wa_id(a, "22245000003").await, "find"),
        None
    );

    let ghost = contact(a, "22245000009");
    assert_not_found(repo.get(Scope::Platform, ghost.id).await, "get unknown");
    assert_not_found(repo.update(Scope::Platform, &ghost).await, "update unknown");
}

/// Another tenant's contact looks exactly like a missing one, to reads, writes and lists;
/// a tenant-scoped write cannot move a contact to another tenant.
pub async fn contacts_are_tenant_scoped(storage: &MessagingStorage) {
    let repo = storage.contacts.as_ref();
    let (a, b) = (TenantId::new(), TenantId::new());
    let mine: Vec<Contact> = (0..3)
        .map(|i| contact(a, &format!("2224510000{i}")))
        .collect();
    for c in &mine {
        unwrap(repo.insert(c).await, "insert");
    }
    let theirs = contact(b, "22245200000");
    unwrap(repo.insert(&theirs).await, "insert");

    assert_not_found(
        repo.get(Scope::Tenant(a), theirs.id).await,
        "another tenant's contact",
    );
    let mut hijack = theirs.clone();
    hijack.tenant_id = a;
    hijack.name = Some("hijacked".into());
    assert_not_found(
        repo.update(Scope::Tenant(a), &hijack).await,
        "a write claiming another tenant's contact",
    );
    let mut moved = mine[0].clone();
    moved.tenant_id = b;
    assert_invalid(repo.update(Scope::Tenant(a), &moved).await, "tenant_id");
    assert_eq!(
        unwrap(repo.get(Scope::Platform, theirs.id).await, "get"),
        theirs
    );
    assert_eq!(
        unwrap(repo.get(Scope::Platform, mine[0].id).await, "get"),
        mine[0]
    );

    let (listed, _) = all_pages(1, |p| repo.list(Scope::Tenant(a), p)).await;
    assert_eq!(listed, mine);
    let (listed, _) = all_pages(1, |p| repo.list(Scope::Tenant(b), p)).await;
    assert_eq!(listed, vec![theirs.clone()]);
    let (everyone, _) = all_pages(10, |p| repo.list(Scope::Platform, p)).await;
    assert_eq!(everyone.len(), 4);
}

/// Lists return every contact once, in creation order, page after page; limits and cursors
/// are validated.
pub async fn contacts_paginate_completely_in_order(storage: &MessagingStorage) {
    let repo = storage.contacts.as_ref();
    let (a, b) = (TenantId::new(), TenantId::new());
    let mut all = Vec::new();
    let mut of_a = Vec::new();
    for i in 0..9 {
        let c = contact(if i % 4 == 3 { b } else { a }, &format!("22245300{i:03}"));
        unwrap(repo.insert(&c).await, "insert");
        if c.tenant_id == a {
            of_a.push(c.id);
        }
        all.push(c.id);
    }
    assert_eq!(of_a.len(), 7);
    let (items, pages) = all_pages(3, |p| repo.list(Scope::Tenant(a), p)).await;
    assert_eq!(pages, 3);
    assert_eq!(items.iter().map(|c| c.id).collect::<Vec<_>>(), of_a);
    let (items, pages) = all_pages(4, |p| repo.list(Scope::Platform, p)).await;
    assert_eq!(pages, 3);
    assert_eq!(items.iter().map(|c| c.id).collect::<Vec<_>>(), all);

    let first = unwrap(
        repo.list(Scope::Platform, PageRequest::first(4)).await,
        "list",
    );
    let again = unwrap(
        repo.list(Scope::Platform, PageRequest::first(4)).await,
        "list",
    );
    assert_eq!(first, again, "the same page twice gives the same answer");
    assert_page_requests_validated(|p| repo.list(Scope::Platform, p)).await;
}

/// A conversation reads back as stored and is found by account and contact; a second one
/// for the same account and contact is a duplicate (on insert and on update), the same
/// contact on another account is fine; updates are optimistic.
pub async fn conversations_round_trip_and_are_unique_per_account_and_contact(
    storage: &MessagingStorage,
) {
    let repo = storage.conversations.as_ref();
    let t = TenantId::new();
    let (account, other_account) = (WhatsAppAccountId::new(), WhatsAppAccountId::new());
    let customer = contact(t, "22245400000");
    let conv = conversation(&customer, account);
    unwrap(repo.insert(&conv).await, "insert");
    assert_eq!(
        unwrap(repo.get(Scope::Platform, conv.id).await, "get"),
        conv
    );
    assert_eq!(
        unwrap(repo.get(Scope::Tenant(t), conv.id).await, "get"),
        conv
    );
    assert_eq!(
        unwrap(repo.find(account, customer.id).await, "find"),
        Some(conv.clone())
    );
    assert_eq!(
        unwrap(repo.find(other_account, customer.id).await, "find"),
        None
    );

    let mut same_id = conversation(&contact(t, "22245400009"), account);
    same_id.id = conv.id;
    assert_duplicate(repo.insert(&same_id).await, "conversation", "id");
    assert_duplicate(
        repo.insert(&conversation(&customer, account)).await,
        "conversation",
        "contact_id",
    );
    let elsewhere = conversation(&customer, other_account);
    unwrap(
        repo.insert(&elsewhere).await,
        "the contact on another number",
    );
    assert_eq!(
        unwrap(repo.find(other_account, customer.id).await, "find"),
        Some(elsewhere.clone())
    );

    let mut resolved = conv.clone();
    resolved.status = ConversationStatus::Resolved;
    resolved.unread = 0;
    resolved.assignee = None;
    let stored = unwrap(repo.update(Scope::Tenant(t), &resolved).await, "update");
    assert_eq!(stored.version, 2);
    assert_eq!(
        unwrap(repo.get(Scope::Platform, conv.id).await, "get"),
        stored
    );
    assert_conflict(
        repo.update(Scope::Platform, &resolved).await,
        "stale update",
    );

    let mut clash = elsewhere.clone();
    clash.account_id = account;
    assert_duplicate(
        repo.update(Scope::Platform, &clash).await,
        "conversation",
        "contact_id",
    );
    assert_eq!(
        unwrap(repo.get(Scope::Platform, elsewhere.id).await, "get"),
        elsewhere
    );

    let ghost = conversation(&customer, WhatsAppAccountId::new());
    assert_not_found(repo.get(Scope::Platform, ghost.id).await, "get unknown");
    assert_not_found(repo.update(Scope::Platform, &ghost).await, "update unknown");
}

/// Lists filter by status and account within the scope, completely and in creation order;
/// another tenant's conversation looks like a missing one.
pub async fn conversations_are_tenant_scoped_and_filtered(storage: &MessagingStorage) {
    let repo = storage.conversations.as_ref();
    let (a, b) = (TenantId::new(), TenantId::new());
    let (a1, a2, b1) = (
        WhatsAppAccountId::new(),
        WhatsAppAccountId::new(),
        WhatsAppAccountId::new(),
    );
    let statuses = [
        ConversationStatus::Open,
        ConversationStatus::Pending,
        ConversationStatus::Resolved,
    ];
    let mut of_a = Vec::new();
    for i in 0..9 {
        let customer = contact(a, &format!("22245500{i:03}"));
        let mut conv = conversation(&customer, if i < 5 { a1 } else { a2 });
        conv.status = statuses[i % 3];
        unwrap(repo.insert(&conv).await, "insert");
        of_a.push(conv);
    }
    let mut theirs = conversation(&contact(b, "22245500100"), b1);
    theirs.status = ConversationStatus::Open;
    unwrap(repo.insert(&theirs).await, "insert");

    let expect = |status: Option<ConversationStatus>, account: Option<WhatsAppAccountId>| {
        of_a.iter()
            .filter(|c| status.is_none_or(|s| c.status == s))
            .filter(|c| account.is_none_or(|x| c.account_id == x))
            .cloned()
            .collect::<Vec<_>>()
    };
    for status in [
        None,
        Some(ConversationStatus::Open),
        Some(ConversationStatus::Resolved),
    ] {
        for account in [None, Some(a1), Some(a2)] {
            let filter = ConversationFilter {
                status,
                account_id: account,
                ..ConversationFilter::default()
            };
            let (items, _) = all_pages(2, |p| repo.list(Scope::Tenant(a), filter.clone(), p)).await;
            assert_eq!(items, expect(status, account), "{filter:?}");
        }
    }
    let open_everywhere = ConversationFilter {
        status: Some(ConversationStatus::Open),
        account_id: None,
        ..ConversationFilter::default()
    };
    let (items, _) = all_pages(50, |p| {
        repo.list(Scope::Platform, open_everywhere.clone(), p)
    })
    .await;
    assert_eq!(items.len(), 4);
    assert_eq!(items.last(), Some(&theirs));
    let (items, _) = all_pages(50, |p| {
        repo.list(
            Scope::Tenant(a),
            ConversationFilter {
                status: None,
                account_id: Some(b1),
                ..ConversationFilter::default()
            },
            p,
        )
    })
    .await;
    assert!(items.is_empty(), "another tenant's number lists nothing");

    assert_not_found(
        repo.get(Scope::Tenant(a), theirs.id).await,
        "another tenant's conversation",
    );
    let mut hijack = theirs.clone();
    hijack.tenant_id = a;
    hijack.status = ConversationStatus::Resolved;
    assert_not_found(
        repo.update(Scope::Tenant(a), &hijack).await,
        "a write claiming another tenant's conversation",
    );
    let mut moved = of_a[0].clone();
    moved.tenant_id = b;
    assert_invalid(repo.update(Scope::Tenant(a), &moved).await, "tenant_id");
    assert_eq!(
        unwrap(repo.get(Scope::Platform, theirs.id).await, "get"),
        theirs
    );
    assert_page_requests_validated(|p| {
        repo.list(Scope::Platform, ConversationFilter::default(), p)
    })
    .await;
}

/// A message reads back as stored (nested JSON content intact) and is found by number and
/// `wamid`; `(phone_number_id, wamid)` is unique, the same `wamid` on another number is
/// fine; updates are optimistic.
pub async fn messages_round_trip_and_wamid_is_unique_per_number(storage: &MessagingStorage) {
    let repo = storage.messages.as_ref();
    let t = TenantId::new();
    let conv = conversation(&contact(t, "22245600000"), WhatsAppAccountId::new());
    let m = message(&conv, "1001", "wamid.AAA=");
    unwrap(repo.insert(&m).await, "insert");
    assert_eq!(unwrap(repo.get(Scope::Platform, m.id).await, "get"), m);
    assert_eq!(unwrap(repo.get(Scope::Tenant(t), m.id).await, "get"), m);
    assert_eq!(
        unwrap(repo.find_by_wamid("1001", "wamid.AAA=").await, "find"),
        Some(m.clone())
    );
    assert_eq!(
        unwrap(repo.find_by_wamid("1002", "wamid.AAA=").await, "find"),
        None
    );

    let mut same_id = message(&conv, "1001", "wamid.OTHER");
    same_id.id = m.id;
    assert_duplicate(repo.insert(&same_id).await, "message", "id");
    assert_duplicate(
        repo.insert(&message(&conv, "1001", "wamid.AAA=")).await,
        "message",
        "wamid",
    );
    let other_number = message(&conv, "1002", "wamid.AAA=");
    unwrap(
        repo.insert(&other_number).await,
        "the wamid on another number",
    );

    let mut failed = m.clone();
    failed.state = DeliveryState::Failed;
    let mut event = status(DeliveryState::Failed);
    event.errors = Some(json!([{ "code": 131026, "title": "Message undeliverable" }]));
    failed.statuses.push(event);
    let stored = unwrap(repo.update(Scope::Tenant(t), &failed).await, "update");
    assert_eq!(stored.version, 2);
    assert_eq!(unwrap(repo.get(Scope::Platform, m.id).await, "get"), stored);
    assert_conflict(repo.update(Scope::Platform, &failed).await, "stale update");

    let mut clash = other_number.clone();
    clash.phone_number_id = "1001".into();
    assert_duplicate(
        repo.update(Scope::Platform, &clash).await,
        "message",
        "wamid",
    );
    assert_eq!(
        unwrap(repo.get(Scope::Platform, other_number.id).await, "get"),
        other_number
    );

    let ghost = message(&conv, "1001", "wamid.GHOST");
    assert_not_found(repo.get(Scope::Platform, ghost.id).await, "get unknown");
    assert_not_found(repo.update(Scope::Platform, &ghost).await, "update unknown");
}

/// Twenty concurrent inserts of one message (a redelivered webhook processed by several
/// workers): exactly one is stored, the others are duplicates naming `wamid`.
pub async fn concurrent_inserts_of_one_wamid_store_it_once(storage: &MessagingStorage) {
    let conv = conversation(
        &contact(TenantId::new(), "22245700000"),
        WhatsAppAccountId::new(),
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let storage = storage.clone();
            let m = message(&conv, "2001", "wamid.RACE");
            tokio::spawn(async move { storage.messages.insert(&m).await.map(|()| m) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(m) => winners.push(m),
            Err(Error::Duplicate {
                entity: "message",
                field: "wamid",
            }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert of a wamid may win");
    assert_eq!(
        unwrap(
            storage.messages.find_by_wamid("2001", "wamid.RACE").await,
            "find"
        ),
        Some(winners.remove(0))
    );
    let (all, _) = all_pages(50, |p| storage.messages.list(Scope::Platform, p)).await;
    assert_eq!(all.len(), 1);
}

/// A conversation's messages list completely, in creation order, within the scope only;
/// another tenant's message looks like a missing one; a tenant-scoped write cannot move a
/// message to another tenant.
pub async fn messages_are_tenant_scoped_and_listed_per_conversation(storage: &MessagingStorage) {
    let repo = storage.messages.as_ref();
    let (a, b) = (TenantId::new(), TenantId::new());
    let account = WhatsAppAccountId::new();
    let first = conversation(&contact(a, "22245800001"), account);
    let second = conversation(&contact(a, "22245800002"), account);
    let theirs = conversation(&contact(b, "22245800003"), WhatsAppAccountId::new());
    let mut in_first = Vec::new();
    let mut of_a = Vec::new();
    for i in 0..7 {
        let conv = if i % 3 == 2 { &second } else { &first };
        let m = message(conv, "3001", &format!("wamid.{i}"));
        unwrap(repo.insert(&m).await, "insert");
        if conv.id == first.id {
            in_first.push(m.clone());
        }
        of_a.push(m);
    }
    let other = message(&theirs, "3002", "wamid.B");
    unwrap(repo.insert(&other).await, "insert");

    assert_eq!(in_first.len(), 5);
    let (items, pages) = all_pages(2, |p| {
        repo.list_for_conversation(Scope::Tenant(a), first.id, p)
    })
    .await;
    assert_eq!(pages, 3);
    assert_eq!(items, in_first);
    let (items, _) = all_pages(50, |p| {
        repo.list_for_conversation(Scope::Platform, first.id, p)
    })
    .await;
    assert_eq!(items, in_first);
    let (items, _) = all_pages(50, |p| {
        repo.list_for_conversation(Scope::Tenant(b), first.id, p)
    })
    .await;
    assert!(items.is_empty(), "another tenant sees none of A's messages");
    let (items, _) = all_pages(50, |p| {
        repo.list_for_conversation(Scope::Tenant(a), theirs.id, p)
    })
    .await;
    assert!(items.is_empty(), "nor A any of B's");

    let (items, _) = all_pages(3, |p| repo.list(Scope::Tenant(a), p)).await;
    assert_eq!(items, of_a);
    let (items, _) = all_pages(3, |p| repo.list(Scope::Platform, p)).await;
    assert_eq!(items.len(), 8);
    assert_eq!(items.last(), Some(&other));

    assert_not_found(
        repo.get(Scope::Tenant(a), other.id).await,
        "another tenant's message",
    );
    let mut hijack = other.clone();
    hijack.tenant_id = a;
    hijack.state = DeliveryState::Failed;
    assert_not_found(
        repo.update(Scope::Tenant(a), &hijack).await,
        "a write claiming another tenant's message",
    );
    let mut moved = of_a[0].clone();
    moved.tenant_id = b;
    assert_invalid(repo.update(Scope::Tenant(a), &moved).await, "tenant_id");
    assert_eq!(
        unwrap(repo.get(Scope::Platform, other.id).await, "get"),
        other
    );

    assert_page_requests_validated(|p| repo.list(Scope::Platform, p)).await;
    assert_page_requests_validated(|p| repo.list_for_conversation(Scope::Platform, first.id, p))
        .await;
}

/// Taking a message's held statuses returns them oldest first and removes them (a second
/// take is empty); other messages' statuses stay.
pub async fn held_statuses_are_taken_oldest_first_and_once(storage: &MessagingStorage) {
    let repo = storage.held_statuses.as_ref();
    assert!(unwrap(repo.take("4001", "wamid.X").await, "take").is_empty());
    let held: Vec<HeldStatus> = (0..3).map(|_| held_status("4001", "wamid.X")).collect();
    let same_wamid_other_number = held_status("4002", "wamid.X");
    let other_wamid = held_status("4001", "wamid.Y");
    // Inserted newest first: the order taken is the order they were made in.
    for h in held.iter().rev() {
        unwrap(repo.insert(h).await, "insert");
    }
    unwrap(repo.insert(&same_wamid_other_number).await, "insert");
    unwrap(repo.insert(&other_wamid).await, "insert");
    assert_duplicate(repo.insert(&held[0]).await, "held status", "id");

    assert_eq!(unwrap(repo.take("4001", "wamid.X").await, "take"), held);
    assert!(unwrap(repo.take("4001", "wamid.X").await, "take").is_empty());
    assert_eq!(
        unwrap(repo.take("4002", "wamid.X").await, "take"),
        vec![same_wamid_other_number]
    );
    assert_eq!(
        unwrap(repo.take("4001", "wamid.Y").await, "take"),
        vec![other_wamid]
    );
}

/// Twenty concurrent takes of one message's ten held statuses: each status is returned by
/// exactly one of them.
pub async fn concurrent_takes_never_return_a_held_status_twice(storage: &MessagingStorage) {
    let mut ids = HashSet::new();
    for _ in 0..10 {
        let h = held_status("5001", "wamid.TAKE");
        ids.insert(h.id);
        unwrap(storage.held_statuses.insert(&h).await, "insert");
    }
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let storage = storage.clone();
            tokio::spawn(async move { storage.held_statuses.take("5001", "wamid.TAKE").await })
        })
        .collect();
    let mut taken = Vec::new();
    for t in tasks {
        let batch = unwrap(t.await.unwrap(), "take");
        assert!(
            batch.windows(2).all(|w| w[0].id < w[1].id),
            "each take is oldest first"
        );
        taken.extend(batch.into_iter().map(|h| h.id));
    }
    assert_eq!(taken.len(), 10, "every held status returned exactly once");
    assert_eq!(taken.into_iter().collect::<HashSet<_>>(), ids);
    assert!(unwrap(
        storage.held_statuses.take("5001", "wamid.TAKE").await,
        "take"
    )
    .is_empty());
}

/// [`MessagingStorage::record_sets`] exports contacts, then conversations, then messages,
/// every field intact through JSON (as a backup file holds them); importing them into the
/// empty `target` stores them as they were. Deliveries and held statuses are not exported.
pub async fn record_sets_export_and_import_every_record(
    source: &MessagingStorage,
    target: &MessagingStorage,
) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let contacts = [contact(a, "22245900001"), contact(b, "22245900002")];
    let conversations = [
        conversation(&contacts[0], WhatsAppAccountId::new()),
        conversation(&contacts[1], WhatsAppAccountId::new()),
    ];
    let messages = [
        message(&conversations[0], "6001", "wamid.1"),
        message(&conversations[0], "6001", "wamid.2"),
        message(&conversations[1], "6002", "wamid.1"),
    ];
    for c in &contacts {
        unwrap(source.contacts.insert(c).await, "insert");
    }
    for c in &conversations {
        unwrap(source.conversations.insert(c).await, "insert");
    }
    for m in &messages {
        unwrap(source.messages.insert(m).await, "insert");
    }
    unwrap(
        source
            .deliveries
            .insert(&delivery(Some(imix_core::now())))
            .await,
        "insert",
    );
    unwrap(
        source
            .held_statuses
            .insert(&held_status("6001", "wamid.9"))
            .await,
        "insert",
    );
    let label = annotations::label(a, "VIP");
    let note = annotations::note(a, conversations[0].id);
    let canned = annotations::canned(b, "greet", "Salutation");
    unwrap(source.annotations.labels.insert(&label).await, "insert");
    unwrap(source.annotations.notes.insert(&note).await, "insert");
    unwrap(source.annotations.canned.insert(&canned).await, "insert");
    // A queued outbound message with its idempotency key and request fingerprint.
    let now = imix_core::now();
    let outbound = crate::outbound::OutboundRecord {
        auto_reply: false,
        id: MessageId::new(),
        tenant_id: a,
        account_id: conversations[0].account_id,
        phone_number_id: "6001".into(),
        conversation_id: conversations[0].id,
        contact_id: contacts[0].id,
        to: contacts[0].wa_id.clone(),
        kind: "text".into(),
        content: json!({"type": "text", "text": {"body": "hi"}}),
        dedupe: crate::outbound::OutboundRecord::dedupe_of(a, "key-1"),
        idempotency_key: Some("key-1".into()),
        request_fingerprint: Some("cd".repeat(32)),
        created_by: None,
        status: crate::outbound::OutboundStatus::Queued,
        wamid: None,
        sending_at: None,
        sent_at: None,
        delivered_at: None,
        read_at: None,
        failed_at: None,
        unknown_at: None,
        error: None,
        last_error: None,
        attempts: 0,
        due_at: Some(now),
        lease_until: None,
        quota: None,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    unwrap(source.outbound.insert(&outbound).await, "insert");

    let sets = source.record_sets();
    let kinds: Vec<_> = sets.iter().map(|s| s.kind()).collect();
    assert_eq!(
        kinds,
        [
            "contact",
            "conversation",
            "message",
            "contact_group",
            "contact_group_member",
            "label",
            "conversation_note",
            "canned_response",
            "outbound_message"
        ]
    );
    let mut lines = Vec::new();
    for set in &sets {
        let mut cursor = None;
        loop {
            let (records, next) = unwrap(set.export_page(cursor).await, "export");
            for r in records {
                assert_eq!(r.kind, set.kind());
                lines.push(serde_json::to_string(&r).unwrap_or_else(|e| panic!("serialize: {e}")));
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    assert_eq!(lines.len(), 11);

    let targets = target.record_sets();
    for set in &targets {
        assert!(unwrap(set.is_empty().await, "is_empty"), "target not empty");
    }
    for line in &lines {
        let record: Record =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("parse {line}: {e}"));
        let set = targets
            .iter()
            .find(|s| s.kind() == record.kind)
            .unwrap_or_else(|| panic!("no set of kind {}", record.kind));
        unwrap(set.import(record).await, "import");
    }

    let (got, _) = all_pages(50, |p| target.contacts.list(Scope::Platform, p)).await;
    assert_eq!(got, contacts.to_vec());
    let (got, _) = all_pages(50, |p| {
        target
            .conversations
            .list(Scope::Platform, ConversationFilter::default(), p)
    })
    .await;
    assert_eq!(got, conversations.to_vec());
    let (got, _) = all_pages(50, |p| target.messages.list(Scope::Platform, p)).await;
    assert_eq!(got, messages.to_vec());
    let (got, _) = all_pages(50, |p| target.annotations.labels.list(Scope::Platform, p)).await;
    assert_eq!(got, vec![label]);
    let (got, _) = all_pages(50, |p| target.annotations.notes.list(Scope::Platform, p)).await;
    assert_eq!(got, vec![note]);
    let (got, _) = all_pages(50, |p| {
        target.annotations.canned.list(Scope::Platform, None, p)
    })
    .await;
    assert_eq!(got, vec![canned]);
    let (got, _) = all_pages(50, |p| target.outbound.list(Scope::Platform, None, p)).await;
    assert_eq!(got, vec![outbound.clone()]);
    let found = unwrap(
        target.outbound.find_by_idempotency_key(a, "key-1").await,
        "find by key",
    );
    assert_eq!(found, Some(outbound));
    assert_eq!(
        unwrap(target.deliveries.count_unprocessed().await, "count"),
        0
    );
    assert!(unwrap(target.held_statuses.take("6001", "wamid.9").await, "take").is_empty());
}
