//! The storage conformance suite of tenancy's ports, for the built-in adapters and an
//! integrator's own: every case takes the repositories ([`TenancyStorage`]) and a blob
//! store, and panics when the adapter breaks the port's contract.
//!
//! Run every case against a backend with [`crate::tenancy_conformance!`]:
//!
//! ```text
//! imix_tenancy::tenancy_conformance!(async {
//!     let storage = my_storage().await; // a TenancyStorage of your adapters
//!     imix_tenancy::testkit::Fixture::new(storage, my_blobs())
//! });
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a test kit fails loudly

use std::{collections::HashSet, sync::Arc};

use bytes::Bytes;
use futures::future::BoxFuture;
use imix_core::{
    id::DocumentId,
    store::{BlobStore, PageRequest, Scope},
    Error, Language,
};

use crate::{
    records::{
        AuthToken, PasswordHash, Role, Tenant, TenantDocument, TokenPurpose, User, UserStatus,
    },
    storage::{orphaned_blobs, TenancyStorage},
};

/// What a case runs on, and what to do after it.
pub struct Fixture {
    /// The repositories under test.
    pub storage: TenancyStorage,
    /// A blob store of the same backend.
    pub blobs: Arc<dyn BlobStore>,
    /// Run after the case (drop a database, say).
    pub cleanup: BoxFuture<'static, ()>,
}

impl Fixture {
    /// A fixture with nothing to clean up.
    pub fn new(storage: TenancyStorage, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            storage,
            blobs,
            cleanup: Box::pin(async {}),
        }
    }
}

/// Defines one `#[tokio::test]` per conformance case, each on a fixture from `$open` (an
/// expression evaluating to a future of [`Fixture`]).
#[macro_export]
macro_rules! tenancy_conformance {
    ($open:expr) => {
        $crate::tenancy_conformance!(@cases $open;
            tenant_create_get_update,
            stale_versions_are_rejected,
            concurrent_updates_of_one_version_let_exactly_one_win,
            pagination_is_complete_stable_and_validated,
            user_email_is_unique_regardless_of_case,
            concurrent_signups_with_one_email_let_exactly_one_win,
            tenant_scoped_queries_never_see_other_tenants,
            tokens_are_single_use_and_expire,
            orphaned_blobs_are_those_no_tenant_references);
    };
    (@cases $open:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::testkit::Fixture = $open.await;
                $crate::testkit::$case(&fixture.storage, fixture.blobs.as_ref()).await;
                fixture.cleanup.await;
            }
        )*
    };
}

/// A tenant with most fields set.
pub fn tenant(name: &str) -> Tenant {
    let mut t = Tenant::new(name);
    t.organization = Some(format!("{name} SARL"));
    t.email = Some(format!("contact@{}.example", name.to_lowercase()));
    t.phone = Some("+22245000000".into());
    t.default_language = Language::Fr;
    t.limits.max_messages_per_day = Some(1000);
    t.limits.max_agents = Some(5);
    t
}

/// An agent of `tenant` (a platform user for `None`).
pub fn user(email: &str, tenant: Option<&Tenant>) -> User {
    let mut u = User::new(email, Role::Agent, tenant.map(|t| t.id));
    u.first_name = "Aïcha".into();
    u.last_name = "Ould Ahmed".into();
    u.default_language = Language::Ar;
    u
}

/// Tenant create get update.
pub async fn tenant_create_get_update(store: &TenancyStorage, _blobs: &dyn BlobStore) {
    let t = tenant("Acme");
    store.tenants.insert(&t).await.unwrap();
    assert_eq!(store.tenants.get(t.id).await.unwrap(), t);
    assert!(matches!(
        store.tenants.insert(&t).await,
        Err(Error::Duplicate {
            entity: "tenant",
            ..
        })
    ));

    let mut changed = t.clone();
    changed.name = "Acme Corp".into();
    changed.limits.max_contacts = Some(10);
    changed.private_notes = Some("pays late".into());
    let stored = store.tenants.update(&changed).await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(store.tenants.get(t.id).await.unwrap(), stored);

    let missing = Tenant::new("ghost");
    assert!(matches!(
        store.tenants.get(missing.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.tenants.update(&missing).await,
        Err(Error::NotFound { .. })
    ));
}

/// Stale versions are rejected.
pub async fn stale_versions_are_rejected(store: &TenancyStorage, _blobs: &dyn BlobStore) {
    let t = tenant("Stale");
    store.tenants.insert(&t).await.unwrap();
    let first = store.tenants.update(&t).await.unwrap();
    let err = store.tenants.update(&t).await.unwrap_err();
    assert!(
        matches!(err, Error::VersionConflict { expected: 1, .. }),
        "{err:?}"
    );
    // The stale write changed nothing.
    assert_eq!(store.tenants.get(t.id).await.unwrap(), first);

    let u = user("stale@example.com", Some(&t));
    store.users.insert(&u).await.unwrap();
    store.users.update(Scope::Platform, &u).await.unwrap();
    assert!(matches!(
        store.users.update(Scope::Platform, &u).await,
        Err(Error::VersionConflict { .. })
    ));
}

/// Concurrent updates of one version let exactly one win.
pub async fn concurrent_updates_of_one_version_let_exactly_one_win(
    store: &TenancyStorage,
    _blobs: &dyn BlobStore,
) {
    let t = tenant("Race");
    store.tenants.insert(&t).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let mut attempt = t.clone();
            attempt.name = format!("writer {i}");
            tokio::spawn(async move { store.tenants.update(&attempt).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(stored) => winners.push(stored),
            Err(Error::VersionConflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer of version 1 may win");
    assert_eq!(store.tenants.get(t.id).await.unwrap(), winners[0]);
}

/// Pagination is complete stable and validated.
pub async fn pagination_is_complete_stable_and_validated(
    store: &TenancyStorage,
    _blobs: &dyn BlobStore,
) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let t = tenant(&format!("Page{i}"));
        store.tenants.insert(&t).await.unwrap();
        ids.push(t.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .tenants
            .list(
                Scope::Platform,
                PageRequest {
                    cursor,
                    limit: Some(3),
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        pages += 1;
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every tenant once, in creation order");

    // The same page twice gives the same answer.
    let a = store
        .tenants
        .list(Scope::Platform, PageRequest::first(4))
        .await
        .unwrap();
    let b = store
        .tenants
        .list(Scope::Platform, PageRequest::first(4))
        .await
        .unwrap();
    assert_eq!(a, b);

    for bad in [0, 501] {
        let err = store
            .tenants
            .list(Scope::Platform, PageRequest::first(bad))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "limit"));
    }
    let err = store
        .users
        .list(
            Scope::Platform,
            PageRequest {
                cursor: Some("' OR 1=1 --".into()),
                limit: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { ref field, .. } if field == "cursor"));
}

/// User email is unique regardless of case.
pub async fn user_email_is_unique_regardless_of_case(
    store: &TenancyStorage,
    _blobs: &dyn BlobStore,
) {
    let t = tenant("Mail");
    store.tenants.insert(&t).await.unwrap();
    let mut alice = user("Alice@Example.com", Some(&t));
    alice.password_hash = Some(PasswordHash::new(
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    ));
    alice.must_change_password = true;
    store.users.insert(&alice).await.unwrap();

    let twin = user("alice@example.COM", None);
    let err = store.users.insert(&twin).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Duplicate {
                entity: "user",
                field: "email"
            }
        ),
        "{err:?}"
    );

    let found = store
        .users
        .find_by_email("  ALICE@example.com ")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, alice, "stored as entered, found case-insensitively");
    assert!(store
        .users
        .find_by_email("nobody@example.com")
        .await
        .unwrap()
        .is_none());

    // Changing another user's email to a taken one is refused too.
    let bob = user("bob@example.com", Some(&t));
    store.users.insert(&bob).await.unwrap();
    let mut bob_renamed = bob.clone();
    bob_renamed.email = "ALICE@EXAMPLE.COM".into();
    let err = store
        .users
        .update(Scope::Platform, &bob_renamed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Duplicate { field: "email", .. }),
        "{err:?}"
    );
    assert_eq!(store.users.get(Scope::Platform, bob.id).await.unwrap(), bob);
}

/// Concurrent signups with one email let exactly one win.
pub async fn concurrent_signups_with_one_email_let_exactly_one_win(
    store: &TenancyStorage,
    _blobs: &dyn BlobStore,
) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@example.com"
            };
            let u = user(email, None);
            tokio::spawn(async move { store.users.insert(&u).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::Duplicate { field: "email", .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(ok, 1);
}

/// Tenant scoped queries never see other tenants.
pub async fn tenant_scoped_queries_never_see_other_tenants(
    store: &TenancyStorage,
    _blobs: &dyn BlobStore,
) {
    let a = tenant("Alpha");
    let b = tenant("Beta");
    store.tenants.insert(&a).await.unwrap();
    store.tenants.insert(&b).await.unwrap();
    let mut a_users = Vec::new();
    for i in 0..3 {
        let u = user(&format!("a{i}@alpha.example"), Some(&a));
        store.users.insert(&u).await.unwrap();
        a_users.push(u);
    }
    let b_user = user("b@beta.example", Some(&b));
    store.users.insert(&b_user).await.unwrap();
    let operator = User::new("ops@agency.example", Role::Admin, None);
    store.users.insert(&operator).await.unwrap();

    let listed = store
        .users
        .list(Scope::Tenant(a.id), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items, a_users);
    let tenants = store
        .tenants
        .list(Scope::Tenant(a.id), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(tenants.items, vec![a.clone()]);
    let everyone = store
        .users
        .list(Scope::Platform, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(everyone.items.len(), 5);

    // Another tenant's user, and a platform user, look exactly like missing ones.
    for hidden in [&b_user, &operator] {
        let err = store
            .users
            .get(Scope::Tenant(a.id), hidden.id)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound { entity: "user", .. }),
            "{err:?}"
        );
    }
    // A write that claims tenant A for B's user does not reach B's record.
    let mut hijack = b_user.clone();
    hijack.tenant_id = Some(a.id);
    hijack.status = UserStatus::Deactivated;
    let err = store
        .users
        .update(Scope::Tenant(a.id), &hijack)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // Nor can a tenant-scoped write move one of A's users to B.
    let mut moved = a_users[0].clone();
    moved.tenant_id = Some(b.id);
    let err = store
        .users
        .update(Scope::Tenant(a.id), &moved)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { ref field, .. } if field == "tenant_id"));
    assert_eq!(
        store.users.get(Scope::Platform, b_user.id).await.unwrap(),
        b_user
    );
    assert_eq!(
        store
            .users
            .get(Scope::Platform, a_users[0].id)
            .await
            .unwrap(),
        a_users[0]
    );

    // Pagination inside a scope does not leak either.
    let mut seen = HashSet::new();
    let mut cursor = None;
    loop {
        let page = store
            .users
            .list(
                Scope::Tenant(b.id),
                PageRequest {
                    cursor,
                    limit: Some(1),
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, HashSet::from([b_user.id]));
}

/// Tokens are single use and expire.
pub async fn tokens_are_single_use_and_expire(store: &TenancyStorage, _blobs: &dyn BlobStore) {
    let now = imix_core::now();
    let u = user("token@example.com", None);
    let token = |hash: &str, purpose, ttl_secs: i64| AuthToken {
        token_hash: hash.to_owned(),
        user_id: u.id,
        tenant_id: None,
        purpose,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(ttl_secs),
        used_at: None,
    };
    store
        .auth_tokens
        .insert(&token("h-invite", TokenPurpose::Invitation, 3600))
        .await
        .unwrap();
    store
        .auth_tokens
        .insert(&token("h-expired", TokenPurpose::Invitation, -1))
        .await
        .unwrap();
    store
        .auth_tokens
        .insert(&token("h-reset", TokenPurpose::PasswordReset, 3600))
        .await
        .unwrap();

    // Wrong purpose, expired, unknown: all look the same.
    for (hash, purpose) in [
        ("h-invite", TokenPurpose::PasswordReset),
        ("h-expired", TokenPurpose::Invitation),
        ("nope", TokenPurpose::Invitation),
    ] {
        let err = store
            .auth_tokens
            .consume(hash, purpose, now)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{hash}: {err:?}");
    }

    // Looking does not use it up.
    for _ in 0..2 {
        let found = store
            .auth_tokens
            .find("h-invite", TokenPurpose::Invitation, now)
            .await
            .unwrap();
        assert_eq!((found.user_id, found.used_at), (u.id, None));
    }
    assert!(store
        .auth_tokens
        .find("h-expired", TokenPurpose::Invitation, now)
        .await
        .is_err());

    // Twenty concurrent uses of one token: exactly one succeeds.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .auth_tokens
                    .consume("h-invite", TokenPurpose::Invitation, now)
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if let Ok(used) = t.await.unwrap() {
            assert_eq!(used.user_id, u.id);
            assert!(used.used_at.is_some());
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert!(
        store
            .auth_tokens
            .find("h-invite", TokenPurpose::Invitation, now)
            .await
            .is_err(),
        "used"
    );

    // A new reset supersedes older ones.
    assert_eq!(
        store
            .auth_tokens
            .revoke_for_user(u.id, TokenPurpose::PasswordReset, now)
            .await
            .unwrap(),
        1
    );
    assert!(store
        .auth_tokens
        .consume("h-reset", TokenPurpose::PasswordReset, now)
        .await
        .is_err());
}

/// Orphaned blobs are those no tenant references.
pub async fn orphaned_blobs_are_those_no_tenant_references(
    store: &TenancyStorage,
    blobs: &dyn BlobStore,
) {
    let mut t = tenant("Files");
    store.tenants.insert(&t).await.unwrap();
    let png = Bytes::from_static(b"\x89PNG logo");
    let logo = format!("tenants/{}/logos/a", t.id);
    let doc_key = format!("tenants/{}/documents/d", t.id);
    let stray_doc = format!("tenants/{}/documents/stray", t.id);
    let stray_other = "tenants/unknown-tenant/logos/b".to_owned();
    for key in [&logo, &doc_key, &stray_doc, &stray_other] {
        blobs.put(key, "image/png", png.clone()).await.unwrap();
    }
    // Blobs outside the tenants' prefix belong to no tenant record and are not judged.
    blobs
        .put(
            "backups/2026-01-01.jsonl",
            "application/x-ndjson",
            png.clone(),
        )
        .await
        .unwrap();
    t.logo_blob_key = Some(logo.clone());
    t.documents.push(TenantDocument {
        id: DocumentId::new(),
        file_name: "a.pdf".into(),
        content_type: "application/pdf".into(),
        size: png.len() as u64,
        blob_key: doc_key.clone(),
        uploaded_at: imix_core::now(),
    });
    store.tenants.update(&t).await.unwrap();

    let later = imix_core::now() + chrono::Duration::seconds(1);
    let mut orphans: Vec<String> = orphaned_blobs(store.tenants.as_ref(), blobs, later)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    orphans.sort();
    let mut expected = vec![stray_doc.clone(), stray_other.clone()];
    expected.sort();
    assert_eq!(orphans, expected);

    // Blobs newer than the margin may belong to an upload still in flight: left alone.
    let earlier = imix_core::now() - chrono::Duration::seconds(60);
    assert!(orphaned_blobs(store.tenants.as_ref(), blobs, earlier)
        .await
        .unwrap()
        .is_empty());

    blobs.delete(&stray_doc).await.unwrap();
    blobs.delete(&stray_other).await.unwrap();
    assert!(orphaned_blobs(store.tenants.as_ref(), blobs, later)
        .await
        .unwrap()
        .is_empty());
}
