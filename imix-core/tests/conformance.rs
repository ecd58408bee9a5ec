//! The storage conformance suite: the same test bodies, run against every adapter.
//!
//! `sqlite::*` runs on a temporary directory; `mongodb::*` needs `IMIX_TEST_MONGODB_URI`
//! (the test command starts a MongoDB-wire server and sets it) and fails loudly without it.
//! Each MongoDB test uses its own database, dropped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod harness;

use std::collections::HashSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use imix_core::{
    id::{TemplateId, WhatsAppAccountId},
    model::{
        AuditEntry, AuthToken, MessageTemplate, PasswordHash, Role, SettingsDoc, SettingsScope,
        Tenant, TokenPurpose, User, UserStatus, Verification, VerificationStatus, WhatsAppAccount,
    },
    store::{
        transfer::{export, import, Record},
        PageRequest, Scope, Store,
    },
    Error, Language,
};

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::$case(&h.store).await;
                    h.cleanup().await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = crate::harness::Harness::mongodb().await;
                    crate::$case(&h.store).await;
                    h.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_idempotent_and_ping_answers,
    tenant_create_get_update,
    stale_versions_are_rejected,
    concurrent_updates_of_one_version_let_exactly_one_win,
    pagination_is_complete_stable_and_validated,
    user_email_is_unique_regardless_of_case,
    concurrent_signups_with_one_email_let_exactly_one_win,
    tenant_scoped_queries_never_see_other_tenants,
    settings_are_keyed_scoped_and_versioned,
    blobs_round_trip_byte_for_byte,
    export_then_import_into_an_empty_store_reproduces_every_record,
    audit_log_is_newest_first_and_tenant_scoped,
    tokens_are_single_use_and_expire,
    outbox_lists_newest_first_within_scope,
    outbox_claims_due_emails_with_a_lease,
    concurrent_outbox_claims_never_hand_out_one_email_twice,
    counters_add_up_to_the_limit_and_no_further,
    concurrent_counter_adds_never_exceed_the_limit,
    expired_counters_count_as_zero_and_restart,
    counter_subtract_floors_at_zero,
    counters_with_different_keys_are_independent,
    whatsapp_accounts_crud_and_unique_phone_number_id,
    whatsapp_accounts_are_tenant_scoped,
    whatsapp_accounts_paginate_and_reject_stale_versions,
    templates_crud_filters_and_unique_name_language_per_account,
    templates_are_tenant_scoped,
    orphaned_blobs_are_those_no_tenant_references,
    replaced_and_deleted_blobs_leave_no_stray_bytes,
);

fn tenant(name: &str) -> Tenant {
    let mut t = Tenant::new(name);
    t.organization = Some(format!("{name} SARL"));
    t.email = Some(format!("contact@{}.example", name.to_lowercase()));
    t.phone = Some("+22245000000".into());
    t.default_language = Language::Fr;
    t.limits.max_messages_per_day = Some(1000);
    t.limits.max_agents = Some(5);
    t
}

fn user(email: &str, tenant: Option<&Tenant>) -> User {
    let mut u = User::new(email, Role::Agent, tenant.map(|t| t.id));
    u.first_name = "Aïcha".into();
    u.last_name = "Ould Ahmed".into();
    u.default_language = Language::Ar;
    u
}

async fn migrations_are_idempotent_and_ping_answers(store: &Store) {
    let first = store.admin.migrate().await.unwrap();
    let second = store.admin.migrate().await.unwrap();
    assert_eq!(first, second);
    assert!(first >= 1);
    store.admin.ping().await.unwrap();
    assert!(store.admin.is_empty().await.unwrap());
}

async fn tenant_create_get_update(store: &Store) {
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
    assert!(!store.admin.is_empty().await.unwrap());

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

async fn stale_versions_are_rejected(store: &Store) {
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

async fn concurrent_updates_of_one_version_let_exactly_one_win(store: &Store) {
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

async fn pagination_is_complete_stable_and_validated(store: &Store) {
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

async fn user_email_is_unique_regardless_of_case(store: &Store) {
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

async fn concurrent_signups_with_one_email_let_exactly_one_win(store: &Store) {
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

async fn tenant_scoped_queries_never_see_other_tenants(store: &Store) {
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

async fn settings_are_keyed_scoped_and_versioned(store: &Store) {
    let t = tenant("Settings");
    let platform = SettingsScope::Platform;
    let scoped = SettingsScope::Tenant(t.id);
    assert!(store
        .settings
        .get(platform, "smtp")
        .await
        .unwrap()
        .is_none());

    let doc = SettingsDoc::new(
        platform,
        "smtp",
        serde_json::json!({"host": "mail.example", "port": 587}),
    );
    store.settings.insert(&doc).await.unwrap();
    assert!(matches!(
        store.settings.insert(&doc).await,
        Err(Error::Duplicate {
            entity: "settings",
            ..
        })
    ));
    let tenant_doc = SettingsDoc::new(
        scoped,
        "smtp",
        serde_json::json!({"host": "tenant.example"}),
    );
    store.settings.insert(&tenant_doc).await.unwrap();

    assert_eq!(
        store.settings.get(platform, "smtp").await.unwrap().unwrap(),
        doc
    );
    assert_eq!(
        store.settings.get(scoped, "smtp").await.unwrap().unwrap(),
        tenant_doc
    );

    let mut edit = doc.clone();
    edit.value["port"] = 465.into();
    let stored = store.settings.update(&edit).await.unwrap();
    assert_eq!(stored.version, 2);
    assert!(matches!(
        store.settings.update(&edit).await,
        Err(Error::VersionConflict { .. })
    ));
    assert_eq!(
        store.settings.get(platform, "smtp").await.unwrap().unwrap(),
        stored
    );
    assert_eq!(store.settings.list_all().await.unwrap().len(), 2);
    let absent = SettingsDoc::new(platform, "ai", serde_json::json!({}));
    assert!(matches!(
        store.settings.update(&absent).await,
        Err(Error::NotFound { .. })
    ));
}

fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn blobs_round_trip_byte_for_byte(store: &Store) {
    let big = pseudo_random_bytes(3 * 1024 * 1024 + 17, 42); // spans several GridFS chunks
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("tenants/a/logo", "image/png", big.clone()),
        (
            "tenants/a/documents/empty.pdf",
            "application/pdf",
            Vec::new(),
        ),
        (
            "tenants/a/documents/nul",
            "application/octet-stream",
            vec![0, 255, 0, 10, 13],
        ),
        ("tenants/b/logo", "image/webp", b"RIFF....WEBP".to_vec()),
    ];
    for (key, ct, data) in &cases {
        let meta = store
            .blobs
            .put(key, ct, Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.key, *key);
    }
    for (key, ct, data) in &cases {
        let blob = store.blobs.get(key).await.unwrap();
        assert_eq!(blob.meta.content_type, *ct);
        assert!(
            blob.data.as_ref() == data.as_slice(),
            "{key} must round-trip exactly"
        );
    }

    // Replacing keeps one blob under the key, with the new bytes.
    store
        .blobs
        .put("tenants/a/logo", "image/jpeg", Bytes::from_static(b"jpeg"))
        .await
        .unwrap();
    let replaced = store.blobs.get("tenants/a/logo").await.unwrap();
    assert_eq!(replaced.data.as_ref(), b"jpeg");
    assert_eq!(replaced.meta.content_type, "image/jpeg");

    let keys = |metas: Vec<imix_core::store::BlobMeta>| {
        metas.into_iter().map(|m| m.key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.blobs.list("tenants/a/", None, 10).await.unwrap()),
        vec![
            "tenants/a/documents/empty.pdf",
            "tenants/a/documents/nul",
            "tenants/a/logo"
        ]
    );
    let first = store.blobs.list("tenants/", None, 2).await.unwrap();
    let rest = store
        .blobs
        .list("tenants/", first.last().map(|m| m.key.clone()), 10)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 4);

    store.blobs.delete("tenants/a/logo").await.unwrap();
    assert!(matches!(
        store.blobs.get("tenants/a/logo").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.blobs.delete("tenants/a/logo").await,
        Err(Error::NotFound { .. })
    ));
    for bad in ["", "../etc/passwd", "a//b", "a/./b", "spaces are bad"] {
        assert!(
            matches!(
                store.blobs.put(bad, "text/plain", Bytes::new()).await,
                Err(Error::Invalid { .. })
            ),
            "key {bad:?} must be rejected"
        );
    }
}

/// Fills a store with a little of everything.
async fn populate(store: &Store) {
    let t = tenant("Export");
    store.tenants.insert(&t).await.unwrap();
    let mut t2 = tenant("Export Two");
    t2.status = imix_core::model::TenantStatus::Deactivated;
    store.tenants.insert(&t2).await.unwrap();
    let t2 = store.tenants.update(&t2).await.unwrap();
    let mut u = user("export@example.com", Some(&t));
    u.password_hash = Some(PasswordHash::new(
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    ));
    u.last_login_at = Some(imix_core::now());
    store.users.insert(&u).await.unwrap();
    store
        .users
        .insert(&User::new("root@agency.example", Role::Admin, None))
        .await
        .unwrap();
    store
        .users
        .insert(&user("two@example.com", Some(&t2)))
        .await
        .unwrap();
    let s = SettingsDoc::new(
        SettingsScope::Platform,
        "smtp",
        serde_json::json!({"host": "h", "password_enc": "AQID"}),
    );
    store.settings.insert(&s).await.unwrap();
    store.settings.update(&s).await.unwrap();
    store
        .blobs
        .put(
            "tenants/x/logo",
            "image/png",
            Bytes::from(pseudo_random_bytes(70_000, 7)),
        )
        .await
        .unwrap();
    store
        .blobs
        .put("backups/empty", "application/octet-stream", Bytes::new())
        .await
        .unwrap();
    let mut entry = AuditEntry::new("tenant.create", "tenant");
    entry.tenant_id = Some(t.id);
    entry.target_id = Some(t.id.to_string());
    store.audit.append(&entry).await.unwrap();
    let account = whatsapp_account(&t, "9100");
    store.whatsapp_accounts.insert(&account).await.unwrap();
    store
        .templates
        .insert(&message_template(&account, "welcome", "en_US", "APPROVED"))
        .await
        .unwrap();
}

async fn collect(store: &Store) -> Vec<Record> {
    export(store).try_collect().await.unwrap()
}

async fn export_then_import_into_an_empty_store_reproduces_every_record(store: &Store) {
    populate(store).await;
    let exported = collect(store).await;
    assert_eq!(exported.len(), 2 + 3 + 1 + 1 + 2 + 1 + 1);

    // Round-trip through JSON lines, as a backup file would.
    let lines: Vec<String> = exported
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let parsed = lines
        .iter()
        .map(|l| Ok(serde_json::from_str::<Record>(l).unwrap()));

    let target = harness::Harness::sqlite().await;
    let counts = import(&target.store, futures::stream::iter(parsed))
        .await
        .unwrap();
    assert_eq!(counts.total(), exported.len() as u64);
    assert_eq!(collect(&target.store).await, exported);

    // A second import into the now non-empty store is refused and changes nothing.
    let err = import(&target.store, export(store)).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { ref field, .. } if field == "store"));
    assert_eq!(collect(&target.store).await.len(), exported.len());
    target.cleanup().await;

    // And the other way: whatever this backend is, MongoDB also takes its export.
    let mongo = harness::Harness::mongodb().await;
    import(&mongo.store, export(store)).await.unwrap();
    assert_eq!(collect(&mongo.store).await, exported);
    assert_eq!(export(&mongo.store).count().await, exported.len());
    mongo.cleanup().await;
}

async fn audit_log_is_newest_first_and_tenant_scoped(store: &Store) {
    let a = tenant("AuditA");
    let b = tenant("AuditB");
    let mut a_entries = Vec::new();
    for (i, t) in [&a, &b, &a, &a].into_iter().enumerate() {
        let mut e = AuditEntry::new(format!("user.update.{i}"), "user");
        e.tenant_id = Some(t.id);
        e.client_addr = Some("203.0.113.7".into());
        store.audit.append(&e).await.unwrap();
        if t.id == a.id {
            a_entries.push(e);
        }
    }
    let platform_entry = AuditEntry::new("settings.smtp.update", "settings");
    store.audit.append(&platform_entry).await.unwrap();

    let page = store
        .audit
        .list(Scope::Tenant(a.id), PageRequest::first(2))
        .await
        .unwrap();
    a_entries.reverse();
    assert_eq!(
        page.items,
        a_entries[..2].to_vec(),
        "newest first, only tenant A"
    );
    let rest = store
        .audit
        .list(
            Scope::Tenant(a.id),
            PageRequest {
                cursor: page.next_cursor,
                limit: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items, a_entries[2..].to_vec());
    assert!(rest.next_cursor.is_none());
    let all = store
        .audit
        .list(Scope::Platform, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.items[0], platform_entry);
}

async fn tokens_are_single_use_and_expire(store: &Store) {
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

fn outbox_email(tenant: Option<&Tenant>, due_in_ms: i64) -> imix_core::model::OutboxEmail {
    use imix_core::model::{OutboxEmail, OutboxId, OutboxStatus};
    let now = imix_core::now();
    OutboxEmail {
        id: OutboxId::new(),
        tenant_id: tenant.map(|t| t.id),
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

async fn outbox_lists_newest_first_within_scope(store: &Store) {
    let (a, b) = (tenant("OutA"), tenant("OutB"));
    let first = outbox_email(Some(&a), 0);
    let platform = outbox_email(None, 0);
    let last = outbox_email(Some(&a), 0);
    for e in [&first, &platform, &last] {
        store.outbox.insert(e).await.unwrap();
    }
    assert!(matches!(
        store.outbox.insert(&first).await,
        Err(Error::Duplicate { .. })
    ));
    assert_eq!(
        store.outbox.get(Scope::Platform, first.id).await.unwrap(),
        first
    );
    assert!(matches!(
        store.outbox.get(Scope::Tenant(b.id), first.id).await,
        Err(Error::NotFound { .. })
    ));

    let all = store
        .outbox
        .list(Scope::Platform, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![last.id, platform.id]
    );
    let rest = store
        .outbox
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

    let mine = store
        .outbox
        .list(Scope::Tenant(a.id), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(mine.items, vec![last.clone(), first.clone()]);
    let none = store
        .outbox
        .list(Scope::Tenant(b.id), PageRequest::default())
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert!(matches!(
        store
            .outbox
            .list(Scope::Platform, PageRequest::first(0))
            .await,
        Err(Error::Invalid { .. })
    ));
}

async fn outbox_claims_due_emails_with_a_lease(store: &Store) {
    use imix_core::model::OutboxStatus;
    let ms = chrono::Duration::milliseconds;
    let now = imix_core::now();
    assert_eq!(store.outbox.next_due_at().await.unwrap(), None);
    assert_eq!(
        store.outbox.claim_due(now, now + ms(1000)).await.unwrap(),
        None
    );

    let later = outbox_email(None, 60_000);
    let due = outbox_email(None, -1_000);
    store.outbox.insert(&later).await.unwrap();
    store.outbox.insert(&due).await.unwrap();
    assert_eq!(
        store.outbox.next_due_at().await.unwrap(),
        Some(due.next_attempt_at)
    );

    let lease = now + ms(5_000);
    let claimed = store.outbox.claim_due(now, lease).await.unwrap().unwrap();
    let mut expected = due.clone();
    expected.apply_claim(now, lease);
    assert_eq!(claimed, expected);
    assert_eq!(claimed.status, OutboxStatus::Sending);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.version, 2);
    assert_eq!(
        store.outbox.get(Scope::Platform, due.id).await.unwrap(),
        claimed
    );
    // Leased: nothing else is due now; the lease end is the next due instant.
    assert_eq!(
        store.outbox.claim_due(now, now + ms(5_000)).await.unwrap(),
        None
    );
    assert_eq!(store.outbox.next_due_at().await.unwrap(), Some(lease));

    // The worker died: once the lease expires another worker takes the email over, and
    // the first worker's late report is rejected.
    let after_lease = lease + ms(1);
    let retaken = store
        .outbox
        .claim_due(after_lease, after_lease + ms(5_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retaken.id, due.id);
    assert_eq!(retaken.attempts, 2);
    let mut late = claimed.clone();
    late.status = OutboxStatus::Sent;
    assert!(matches!(
        store.outbox.update(&late).await,
        Err(Error::VersionConflict { .. })
    ));

    let mut sent = retaken.clone();
    sent.status = OutboxStatus::Sent;
    sent.lease_until = None;
    sent.sent_at = Some(after_lease);
    sent.server_reply = Some("250 OK".into());
    let stored = store.outbox.update(&sent).await.unwrap();
    assert_eq!(stored.version, retaken.version + 1);
    assert_eq!(
        store.outbox.get(Scope::Platform, due.id).await.unwrap(),
        stored
    );
    // Sent emails are never due again; the later one is due at its own time.
    assert_eq!(
        store.outbox.next_due_at().await.unwrap(),
        Some(later.next_attempt_at)
    );
    let far = later.next_attempt_at + ms(1);
    let next = store
        .outbox
        .claim_due(far, far + ms(5_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, later.id);
    let missing = outbox_email(None, 0);
    assert!(matches!(
        store.outbox.update(&missing).await,
        Err(Error::NotFound { .. })
    ));
}

async fn concurrent_outbox_claims_never_hand_out_one_email_twice(store: &Store) {
    let mut ids = HashSet::new();
    for _ in 0..10 {
        let e = outbox_email(None, -1_000);
        ids.insert(e.id);
        store.outbox.insert(&e).await.unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let now = imix_core::now();
                    let lease = now + chrono::Duration::minutes(5);
                    match store.outbox.claim_due(now, lease).await.unwrap() {
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

// --- Usage counters ----------------------------------------------------------------------

fn counter_key(name: &str) -> String {
    format!("test:{}:{name}", uuid::Uuid::now_v7().simple())
}

async fn counters_add_up_to_the_limit_and_no_further(store: &Store) {
    use imix_core::store::CounterOutcome::{Added, Rejected};
    let c = &store.counters;
    let key = counter_key("messages");
    let later = Some(imix_core::now() + chrono::Duration::hours(1));
    assert_eq!(c.get(&key).await.unwrap(), 0, "a key never written reads 0");
    assert_eq!(
        c.try_add(&key, 3, Some(5), later).await.unwrap(),
        Added { value: 3 }
    );
    assert_eq!(
        c.try_add(&key, 2, Some(5), later).await.unwrap(),
        Added { value: 5 }
    );
    // Full: nothing changes, the current value is reported.
    assert_eq!(
        c.try_add(&key, 1, Some(5), later).await.unwrap(),
        Rejected { value: 5 }
    );
    assert_eq!(c.get(&key).await.unwrap(), 5);
    // A raised limit makes room; no limit never refuses.
    assert_eq!(
        c.try_add(&key, 1, Some(6), later).await.unwrap(),
        Added { value: 6 }
    );
    assert_eq!(
        c.try_add(&key, 1_000_000, None, later).await.unwrap(),
        Added { value: 1_000_006 }
    );
    // More units than the limit on a fresh key: rejected, and the key stays unwritten.
    let fresh = counter_key("media");
    assert_eq!(
        c.try_add(&fresh, 4, Some(3), None).await.unwrap(),
        Rejected { value: 0 }
    );
    assert_eq!(c.get(&fresh).await.unwrap(), 0);
    // A limit of 0 refuses everything but zero units.
    assert_eq!(
        c.try_add(&fresh, 1, Some(0), None).await.unwrap(),
        Rejected { value: 0 }
    );
    assert!(c
        .try_add(&fresh, 0, Some(0), None)
        .await
        .unwrap()
        .is_added());
    // Set overrides whatever was there (reconciliation).
    c.set(&key, 2, None).await.unwrap();
    assert_eq!(c.get(&key).await.unwrap(), 2);
    assert!(matches!(
        c.try_add("", 1, None, None).await,
        Err(Error::Invalid { .. })
    ));
}

async fn concurrent_counter_adds_never_exceed_the_limit(store: &Store) {
    let key = counter_key("race");
    let expires = Some(imix_core::now() + chrono::Duration::hours(1));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (counters, key, barrier) = (store.counters.clone(), key.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                counters.try_add(&key, 1, Some(20), expires).await.unwrap()
            })
        })
        .collect();
    let mut added = 0;
    let mut seen = HashSet::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        if outcome.is_added() {
            added += 1;
            // Every successful add saw a distinct value: no lost updates.
            assert!(seen.insert(outcome.value()), "{outcome:?} seen twice");
        } else {
            assert_eq!(outcome.value(), 20, "{outcome:?}");
        }
    }
    assert_eq!(added, 20);
    assert_eq!(store.counters.get(&key).await.unwrap(), 20);
}

async fn expired_counters_count_as_zero_and_restart(store: &Store) {
    use imix_core::store::CounterOutcome::{Added, Rejected};
    let c = &store.counters;
    let key = counter_key("daily");
    let past = Some(imix_core::now() - chrono::Duration::seconds(1));
    let later = Some(imix_core::now() + chrono::Duration::hours(1));
    // Written with an expiry already passed: it reads as 0 at once.
    assert_eq!(
        c.try_add(&key, 4, Some(5), past).await.unwrap(),
        Added { value: 4 }
    );
    assert_eq!(c.get(&key).await.unwrap(), 0);
    // The next add starts from 0 (4 + 3 would exceed 5), and takes the new expiry.
    assert_eq!(
        c.try_add(&key, 3, Some(5), later).await.unwrap(),
        Added { value: 3 }
    );
    assert_eq!(c.get(&key).await.unwrap(), 3);
    assert_eq!(
        c.try_add(&key, 3, Some(5), later).await.unwrap(),
        Rejected { value: 3 }
    );
    // Subtracting from an expired counter leaves 0.
    let gone = counter_key("gone");
    c.set(&gone, 9, past).await.unwrap();
    assert_eq!(c.subtract(&gone, 1).await.unwrap(), 0);
    assert_eq!(c.get(&gone).await.unwrap(), 0);
    // A rejected add on an expired counter reports 0 and changes nothing.
    assert_eq!(
        c.try_add(&gone, 6, Some(5), later).await.unwrap(),
        Rejected { value: 0 }
    );
    assert_eq!(c.get(&gone).await.unwrap(), 0);
}

async fn counter_subtract_floors_at_zero(store: &Store) {
    let c = &store.counters;
    let key = counter_key("agents");
    assert_eq!(c.subtract(&key, 3).await.unwrap(), 0, "missing key");
    assert_eq!(c.get(&key).await.unwrap(), 0);
    c.try_add(&key, 5, Some(10), None).await.unwrap();
    assert_eq!(c.subtract(&key, 2).await.unwrap(), 3);
    assert_eq!(c.subtract(&key, 7).await.unwrap(), 0);
    assert_eq!(c.get(&key).await.unwrap(), 0);
    assert_eq!(
        c.try_add(&key, 10, Some(10), None).await.unwrap().value(),
        10
    );
    // Concurrent subtracts never go below 0 and lose nothing: 10 - 4×2 = 2, then floors.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (counters, key) = (store.counters.clone(), key.clone());
            tokio::spawn(async move { counters.subtract(&key, 2).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.get(&key).await.unwrap(), 2);
    assert_eq!(c.subtract(&key, 5).await.unwrap(), 0);
}

async fn counters_with_different_keys_are_independent(store: &Store) {
    let c = &store.counters;
    let a = counter_key("a");
    let b = counter_key("b");
    assert!(c.try_add(&a, 2, Some(2), None).await.unwrap().is_added());
    assert!(!c.try_add(&a, 1, Some(2), None).await.unwrap().is_added());
    assert!(c.try_add(&b, 2, Some(2), None).await.unwrap().is_added());
    c.subtract(&a, 1).await.unwrap();
    assert_eq!(c.get(&a).await.unwrap(), 1);
    assert_eq!(c.get(&b).await.unwrap(), 2);
    // Counters are operational state: they do not make a store non-empty.
    assert!(store.admin.is_empty().await.unwrap());
}

fn whatsapp_account(tenant: &Tenant, phone_number_id: &str) -> WhatsAppAccount {
    let now = imix_core::now();
    WhatsAppAccount {
        id: WhatsAppAccountId::new(),
        tenant_id: tenant.id,
        waba_id: format!("waba-{phone_number_id}"),
        business_account_id: "biz-1".into(),
        phone_number_id: phone_number_id.into(),
        app_id: "app-1".into(),
        display_phone_number: "+1 555-010-0001".into(),
        business_name: "Acme Café".into(),
        access_token_enc: "AQIDBAUG-sealed-token".into(),
        access_token_hint: "****1234".into(),
        app_secret_enc: "AQIDBAUG-sealed-secret".into(),
        app_secret_hint: "****abcd".into(),
        webhook_verify_token: "verify-token-0123456789-0123456789".into(),
        verification: Verification {
            status: VerificationStatus::Unverified,
            ..Verification::default()
        },
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn message_template(
    account: &WhatsAppAccount,
    name: &str,
    language: &str,
    status: &str,
) -> MessageTemplate {
    let now = imix_core::now();
    MessageTemplate {
        id: TemplateId::new(),
        tenant_id: account.tenant_id,
        account_id: account.id,
        meta_id: format!("meta-{name}-{language}"),
        name: name.into(),
        language: language.into(),
        category: "UTILITY".into(),
        status: status.into(),
        components: serde_json::json!([
            {"type": "BODY", "text": "Hello {{1}}", "example": {"body_text": [["Ada"]]}},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Yes"}]}
        ]),
        rejected_reason: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

async fn whatsapp_accounts_crud_and_unique_phone_number_id(store: &Store) {
    let t = tenant("Wa");
    let other = tenant("Wa Other");
    store.tenants.insert(&t).await.unwrap();
    store.tenants.insert(&other).await.unwrap();
    let a = whatsapp_account(&t, "2001");
    store.whatsapp_accounts.insert(&a).await.unwrap();
    assert!(!store.admin.is_empty().await.unwrap());
    assert_eq!(
        store
            .whatsapp_accounts
            .get(Scope::Tenant(t.id), a.id)
            .await
            .unwrap(),
        a
    );
    assert_eq!(
        store
            .whatsapp_accounts
            .find_by_phone_number_id("2001")
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store
            .whatsapp_accounts
            .find_by_phone_number_id("nope")
            .await
            .unwrap(),
        None
    );

    // One phone number id per platform, whichever tenant asks.
    let dup = whatsapp_account(&other, "2001");
    assert!(matches!(
        store.whatsapp_accounts.insert(&dup).await,
        Err(Error::Duplicate {
            field: "phone_number_id",
            ..
        })
    ));

    let mut changed = a.clone();
    changed.business_name = "Acme Café Nouakchott".into();
    changed.verification.status = VerificationStatus::Verified;
    changed.verification.verified_name = Some("Acme".into());
    changed.verification.checked_at = Some(imix_core::now());
    let stored = store
        .whatsapp_accounts
        .update(Scope::Tenant(t.id), &changed)
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(
        store
            .whatsapp_accounts
            .get(Scope::Platform, a.id)
            .await
            .unwrap(),
        stored
    );

    // Moving an account onto a number another account has is a duplicate too.
    let b = whatsapp_account(&t, "2002");
    store.whatsapp_accounts.insert(&b).await.unwrap();
    let mut clash = b.clone();
    clash.phone_number_id = "2001".into();
    assert!(matches!(
        store
            .whatsapp_accounts
            .update(Scope::Tenant(t.id), &clash)
            .await,
        Err(Error::Duplicate {
            field: "phone_number_id",
            ..
        })
    ));

    store
        .whatsapp_accounts
        .delete(Scope::Tenant(t.id), a.id)
        .await
        .unwrap();
    assert!(matches!(
        store.whatsapp_accounts.get(Scope::Platform, a.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.whatsapp_accounts.delete(Scope::Platform, a.id).await,
        Err(Error::NotFound { .. })
    ));
    // Its number is free again.
    store.whatsapp_accounts.insert(&dup).await.unwrap();
}

async fn whatsapp_accounts_are_tenant_scoped(store: &Store) {
    let a_tenant = tenant("Scoped A");
    let b_tenant = tenant("Scoped B");
    store.tenants.insert(&a_tenant).await.unwrap();
    store.tenants.insert(&b_tenant).await.unwrap();
    let a = whatsapp_account(&a_tenant, "3001");
    let b = whatsapp_account(&b_tenant, "3002");
    store.whatsapp_accounts.insert(&a).await.unwrap();
    store.whatsapp_accounts.insert(&b).await.unwrap();
    let as_b = Scope::Tenant(b_tenant.id);

    assert!(matches!(
        store.whatsapp_accounts.get(as_b, a.id).await,
        Err(Error::NotFound { .. })
    ));
    let mut edited = a.clone();
    edited.business_name = "hijacked".into();
    assert!(matches!(
        store.whatsapp_accounts.update(as_b, &edited).await,
        Err(Error::Invalid { .. } | Error::NotFound { .. })
    ));
    // Even claiming the record for B does not reach A's account.
    let mut moved = a.clone();
    moved.tenant_id = b_tenant.id;
    assert!(matches!(
        store.whatsapp_accounts.update(as_b, &moved).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.whatsapp_accounts.delete(as_b, a.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        store
            .whatsapp_accounts
            .get(Scope::Platform, a.id)
            .await
            .unwrap(),
        a
    );
    let seen = store
        .whatsapp_accounts
        .list(as_b, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(seen.items, vec![b.clone()]);
    let all = store
        .whatsapp_accounts
        .list(Scope::Platform, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items, vec![a, b]);
}

async fn whatsapp_accounts_paginate_and_reject_stale_versions(store: &Store) {
    let t = tenant("Paged");
    store.tenants.insert(&t).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let a = whatsapp_account(&t, &format!("40{i:02}"));
        store.whatsapp_accounts.insert(&a).await.unwrap();
        ids.push(a.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .whatsapp_accounts
            .list(
                Scope::Tenant(t.id),
                PageRequest {
                    cursor: cursor.clone(),
                    limit: Some(3),
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|a| a.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert!(matches!(
        store
            .whatsapp_accounts
            .list(Scope::Tenant(t.id), PageRequest::first(0))
            .await,
        Err(Error::Invalid { ref field, .. }) if field == "limit"
    ));

    let a = store
        .whatsapp_accounts
        .get(Scope::Platform, ids[0])
        .await
        .unwrap();
    let stored = store
        .whatsapp_accounts
        .update(Scope::Tenant(t.id), &a)
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert!(matches!(
        store
            .whatsapp_accounts
            .update(Scope::Tenant(t.id), &a)
            .await,
        Err(Error::VersionConflict { expected: 1, .. })
    ));

    // Concurrent writers of one version: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let mut edit = stored.clone();
            edit.business_name = format!("writer {i}");
            tokio::spawn(async move {
                store
                    .whatsapp_accounts
                    .update(Scope::Platform, &edit)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

async fn templates_crud_filters_and_unique_name_language_per_account(store: &Store) {
    let t = tenant("Templates");
    store.tenants.insert(&t).await.unwrap();
    let a = whatsapp_account(&t, "5001");
    let b = whatsapp_account(&t, "5002");
    store.whatsapp_accounts.insert(&a).await.unwrap();
    store.whatsapp_accounts.insert(&b).await.unwrap();
    let scope = Scope::Tenant(t.id);

    let welcome = message_template(&a, "welcome", "en_US", "PENDING");
    store.templates.insert(&welcome).await.unwrap();
    assert_eq!(
        store.templates.get(scope, welcome.id).await.unwrap(),
        welcome
    );
    // Same name and language on the same account: duplicate.
    assert!(matches!(
        store
            .templates
            .insert(&message_template(&a, "welcome", "en_US", "APPROVED"))
            .await,
        Err(Error::Duplicate { field: "name", .. })
    ));
    // Another language, or another account: fine.
    let welcome_fr = message_template(&a, "welcome", "fr", "APPROVED");
    store.templates.insert(&welcome_fr).await.unwrap();
    let welcome_b = message_template(&b, "welcome", "en_US", "APPROVED");
    store.templates.insert(&welcome_b).await.unwrap();

    let mut approved = welcome.clone();
    approved.status = "APPROVED".into();
    let approved = store.templates.update(scope, &approved).await.unwrap();
    assert_eq!(approved.version, 2);
    assert!(matches!(
        store.templates.update(scope, &welcome).await,
        Err(Error::VersionConflict { .. })
    ));

    let rejected = message_template(&a, "promo", "en_US", "REJECTED");
    store.templates.insert(&rejected).await.unwrap();
    let list = |filter: imix_core::store::TemplateFilter| async move {
        store
            .templates
            .list(scope, filter, PageRequest::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(Default::default()).await,
        vec![welcome.id, welcome_fr.id, welcome_b.id, rejected.id]
    );
    assert_eq!(
        list(imix_core::store::TemplateFilter {
            account_id: Some(a.id),
            status: Some("APPROVED".into()),
        })
        .await,
        vec![welcome.id, welcome_fr.id]
    );
    assert_eq!(
        list(imix_core::store::TemplateFilter {
            account_id: None,
            status: Some("REJECTED".into()),
        })
        .await,
        vec![rejected.id]
    );
    let first = store
        .templates
        .list(scope, Default::default(), PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let rest = store
        .templates
        .list(
            scope,
            Default::default(),
            PageRequest {
                cursor: first.next_cursor,
                limit: Some(3),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_cursor, None);

    store.templates.delete(scope, welcome.id).await.unwrap();
    assert!(matches!(
        store.templates.get(scope, welcome.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.templates.delete(scope, welcome.id).await,
        Err(Error::NotFound { .. })
    ));
    // Its name and language are free again on that account.
    store
        .templates
        .insert(&message_template(&a, "welcome", "en_US", "PENDING"))
        .await
        .unwrap();
}

async fn templates_are_tenant_scoped(store: &Store) {
    let a_tenant = tenant("Tpl A");
    let b_tenant = tenant("Tpl B");
    store.tenants.insert(&a_tenant).await.unwrap();
    store.tenants.insert(&b_tenant).await.unwrap();
    let a = whatsapp_account(&a_tenant, "6001");
    store.whatsapp_accounts.insert(&a).await.unwrap();
    let tpl = message_template(&a, "order_update", "en_US", "APPROVED");
    store.templates.insert(&tpl).await.unwrap();
    let as_b = Scope::Tenant(b_tenant.id);
    assert!(matches!(
        store.templates.get(as_b, tpl.id).await,
        Err(Error::NotFound { .. })
    ));
    let mut moved = tpl.clone();
    moved.tenant_id = b_tenant.id;
    assert!(matches!(
        store.templates.update(as_b, &moved).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.templates.update(as_b, &tpl).await,
        Err(Error::Invalid { .. } | Error::NotFound { .. })
    ));
    assert!(matches!(
        store.templates.delete(as_b, tpl.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(store
        .templates
        .list(as_b, Default::default(), PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .templates
            .get(Scope::Tenant(a_tenant.id), tpl.id)
            .await
            .unwrap(),
        tpl
    );
}

async fn orphaned_blobs_are_those_no_tenant_references(store: &Store) {
    use imix_core::{id::DocumentId, model::TenantDocument, store::orphaned_blobs};
    let mut t = tenant("Files");
    store.tenants.insert(&t).await.unwrap();
    let png = Bytes::from_static(b"\x89PNG logo");
    let logo = format!("tenants/{}/logos/a", t.id);
    let doc_key = format!("tenants/{}/documents/d", t.id);
    let stray_doc = format!("tenants/{}/documents/stray", t.id);
    let stray_other = "tenants/unknown-tenant/logos/b".to_owned();
    for key in [&logo, &doc_key, &stray_doc, &stray_other] {
        store
            .blobs
            .put(key, "image/png", png.clone())
            .await
            .unwrap();
    }
    // Blobs outside the tenants' prefix belong to no tenant record and are not judged.
    store
        .blobs
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
    let mut orphans: Vec<String> = orphaned_blobs(store, later)
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
    assert!(orphaned_blobs(store, earlier).await.unwrap().is_empty());

    store.blobs.delete(&stray_doc).await.unwrap();
    store.blobs.delete(&stray_other).await.unwrap();
    assert!(orphaned_blobs(store, later).await.unwrap().is_empty());
}

async fn replaced_and_deleted_blobs_leave_no_stray_bytes(store: &Store) {
    for round in 0..3u8 {
        let data = Bytes::from(vec![round; 1000 + usize::from(round)]);
        store
            .blobs
            .put("k/replaced", "application/octet-stream", data)
            .await
            .unwrap();
    }
    store
        .blobs
        .put("k/deleted", "text/plain", Bytes::from_static(b"bye"))
        .await
        .unwrap();
    store.blobs.delete("k/deleted").await.unwrap();
    // Everything written so far is older than a second from now.
    let later = imix_core::now() + chrono::Duration::seconds(5);
    assert_eq!(
        store.blobs.stray_files(later).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.blobs.get("k/replaced").await.unwrap().data,
        Bytes::from(vec![2u8; 1002])
    );
}
