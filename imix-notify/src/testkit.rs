//! The storage conformance suite of the mail outbox (feature `testkit`): what every
//! [`MailOutboxRepository`] must do, as test bodies an integrator runs against an adapter
//! of their own. The SQLite and MongoDB adapters pass it (`tests/it/storage.rs`).
//!
//! Each function panics on the first broken promise. Give each a fresh, migrated and empty
//! outbox: they count what is due.
//!
//! ```no_run
//! # async fn run(outbox: std::sync::Arc<dyn imix_notify::storage::MailOutboxRepository>) {
//! imix_notify::testkit::outbox_lists_newest_first_within_scope(outbox.clone()).await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test kit fails loudly, by design

use std::{collections::HashSet, sync::Arc};

use imix_core::{
    id::TenantId,
    store::{PageRequest, Scope},
    Error, Language,
};

use crate::{
    outbox_record::{OutboxEmail, OutboxId, OutboxStatus},
    storage::MailOutboxRepository,
};

/// A pending email of `tenant` (`None` = platform email), due `due_in_ms` from now
/// (negative: overdue).
pub fn outbox_email(tenant: Option<TenantId>, due_in_ms: i64) -> OutboxEmail {
    let now = imix_core::now();
    OutboxEmail {
        id: OutboxId::new(),
        tenant_id: tenant,
        to_email: "agent@example.com".into(),
        to_name: Some("Aïcha".into()),
        subject: "Bienvenue".into(),
        template: "invitation".into(),
        language: Language::Fr,
        sealed_body: "opaque".into(),
        redacted_text: "Lien : [redacted]".into(),
        status: OutboxStatus::Pending,
        attempts: 0,
        max_attempts: 5,
        next_attempt_at: now + chrono::Duration::milliseconds(due_in_ms),
        lease_until: None,
        last_error: None,
        server_reply: None,
        created_at: now,
        updated_at: now,
        sent_at: None,
        version: 1,
    }
}

/// Inserts are unique by id; reads and listings see only their scope's emails; listings
/// are newest first, paginate completely and refuse a zero limit.
pub async fn outbox_lists_newest_first_within_scope(outbox: Arc<dyn MailOutboxRepository>) {
    let (a, b) = (TenantId::new(), TenantId::new());
    let first = outbox_email(Some(a), 0);
    let platform = outbox_email(None, 0);
    let last = outbox_email(Some(a), 0);
    for e in [&first, &platform, &last] {
        outbox.insert(e).await.unwrap();
    }
    assert!(
        matches!(outbox.insert(&first).await, Err(Error::Duplicate { .. })),
        "a second insert of one id is a duplicate"
    );
    assert_eq!(outbox.get(Scope::Platform, first.id).await.unwrap(), first);
    assert!(
        matches!(
            outbox.get(Scope::Tenant(b), first.id).await,
            Err(Error::NotFound { .. })
        ),
        "another tenant's email is not found"
    );

    let all = outbox
        .list(Scope::Platform, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![last.id, platform.id]
    );
    let rest = outbox
        .list(
            Scope::Platform,
            PageRequest {
                cursor: all.next_cursor.clone(),
                limit: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items, vec![first.clone()]);
    assert_eq!(rest.next_cursor, None);

    let mine = outbox
        .list(Scope::Tenant(a), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(mine.items, vec![last.clone(), first.clone()]);
    let none = outbox
        .list(Scope::Tenant(b), PageRequest::default())
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert!(matches!(
        outbox.list(Scope::Platform, PageRequest::first(0)).await,
        Err(Error::Invalid { .. })
    ));
}

/// A claim takes the longest-due email under a lease (exactly [`OutboxEmail::apply_claim`]);
/// a leased email is due again when its lease ends, and the first worker's late report is
/// then a version conflict; sent emails are never due again.
pub async fn outbox_claims_due_emails_with_a_lease(outbox: Arc<dyn MailOutboxRepository>) {
    let ms = chrono::Duration::milliseconds;
    let now = imix_core::now();
    assert_eq!(outbox.next_due_at().await.unwrap(), None);
    assert_eq!(outbox.claim_due(now, now + ms(1000)).await.unwrap(), None);

    let later = outbox_email(None, 60_000);
    let due = outbox_email(None, -1_000);
    outbox.insert(&later).await.unwrap();
    outbox.insert(&due).await.unwrap();
    assert_eq!(
        outbox.next_due_at().await.unwrap(),
        Some(due.next_attempt_at)
    );

    let lease = now + ms(5_000);
    let claimed = outbox.claim_due(now, lease).await.unwrap().unwrap();
    let mut expected = due.clone();
    expected.apply_claim(now, lease);
    assert_eq!(claimed, expected);
    assert_eq!(claimed.status, OutboxStatus::Sending);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.version, 2);
    assert_eq!(outbox.get(Scope::Platform, due.id).await.unwrap(), claimed);
    // Leased: nothing else is due now; the lease end is the next due instant.
    assert_eq!(outbox.claim_due(now, now + ms(5_000)).await.unwrap(), None);
    assert_eq!(outbox.next_due_at().await.unwrap(), Some(lease));

    // The worker died: once the lease expires another worker takes the email over, and
    // the first worker's late report is rejected.
    let after_lease = lease + ms(1);
    let retaken = outbox
        .claim_due(after_lease, after_lease + ms(5_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retaken.id, due.id);
    assert_eq!(retaken.attempts, 2);
    let mut late = claimed.clone();
    late.status = OutboxStatus::Sent;
    assert!(matches!(
        outbox.update(&late).await,
        Err(Error::VersionConflict { .. })
    ));

    let mut sent = retaken.clone();
    sent.status = OutboxStatus::Sent;
    sent.lease_until = None;
    sent.sent_at = Some(after_lease);
    sent.server_reply = Some("250 OK".into());
    let stored = outbox.update(&sent).await.unwrap();
    assert_eq!(stored.version, retaken.version + 1);
    assert_eq!(outbox.get(Scope::Platform, due.id).await.unwrap(), stored);
    // Sent emails are never due again; the later one is due at its own time.
    assert_eq!(
        outbox.next_due_at().await.unwrap(),
        Some(later.next_attempt_at)
    );
    let far = later.next_attempt_at + ms(1);
    let next = outbox
        .claim_due(far, far + ms(5_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, later.id);
    let missing = outbox_email(None, 0);
    assert!(matches!(
        outbox.update(&missing).await,
        Err(Error::NotFound { .. })
    ));
}

/// Eight workers claiming ten due emails at once: each email is handed out exactly once.
/// Run it on a multi-threaded runtime so the claims really overlap.
pub async fn concurrent_outbox_claims_never_hand_out_one_email_twice(
    outbox: Arc<dyn MailOutboxRepository>,
) {
    let mut ids = HashSet::new();
    for _ in 0..10 {
        let e = outbox_email(None, -1_000);
        ids.insert(e.id);
        outbox.insert(&e).await.unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let now = imix_core::now();
                    let lease = now + chrono::Duration::minutes(5);
                    match outbox.claim_due(now, lease).await.unwrap() {
                        Some(e) => mine.push(e.id),
                        None => return mine,
                    }
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    assert_eq!(claimed.len(), 10, "every due email claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
}
