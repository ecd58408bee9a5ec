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
    id::TenantId,
    model::{AuditEntry, SettingsDoc, SettingsScope},
    store::{
        transfer::{Record, Transfer},
        PageRequest, Scope, Store,
    },
    Error,
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
    settings_are_keyed_scoped_and_versioned,
    blobs_round_trip_byte_for_byte,
    export_then_import_into_an_empty_store_reproduces_every_record,
    audit_log_is_newest_first_and_tenant_scoped,
    counters_add_up_to_the_limit_and_no_further,
    concurrent_counter_adds_never_exceed_the_limit,
    expired_counters_count_as_zero_and_restart,
    counter_subtract_floors_at_zero,
    counters_with_different_keys_are_independent,
    replaced_and_deleted_blobs_leave_no_stray_bytes,
);

/// Only a tenant's id matters to the shared primitives.
struct TenantRef {
    id: TenantId,
}

fn tenant(_name: &str) -> TenantRef {
    TenantRef {
        id: TenantId::new(),
    }
}

async fn migrations_are_idempotent_and_ping_answers(store: &Store) {
    // The harness migrated already: nothing is left to apply, however often it runs.
    assert_eq!(store.admin.migrate().await.unwrap(), 0);
    assert_eq!(store.admin.migrate().await.unwrap(), 0);
    store.admin.ping().await.unwrap();
    assert!(store.admin.is_empty().await.unwrap());
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

/// Fills the shared primitives with a little of everything.
async fn populate(store: &Store) {
    let t = tenant("Export");
    let s = SettingsDoc::new(
        SettingsScope::Platform,
        "smtp",
        serde_json::json!({"host": "h", "password_enc": "AQID"}),
    );
    store.settings.insert(&s).await.unwrap();
    store.settings.update(&s).await.unwrap();
    store
        .settings
        .insert(&SettingsDoc::new(
            SettingsScope::Tenant(t.id),
            "smtp",
            serde_json::json!({"host": "t"}),
        ))
        .await
        .unwrap();
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
}

async fn collect(store: &Store) -> Vec<Record> {
    Transfer::new(store).export().try_collect().await.unwrap()
}

async fn export_then_import_into_an_empty_store_reproduces_every_record(store: &Store) {
    populate(store).await;
    let exported = collect(store).await;
    assert_eq!(exported.len(), 2 + 1 + 2);

    // Round-trip through JSON lines, as a backup file would.
    let lines: Vec<String> = exported
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let parsed = lines
        .iter()
        .map(|l| Ok(serde_json::from_str::<Record>(l).unwrap()));

    let target = harness::Harness::sqlite().await;
    let counts = Transfer::new(&target.store)
        .import(futures::stream::iter(parsed))
        .await
        .unwrap();
    assert_eq!(counts.total(), exported.len() as u64);
    assert_eq!(collect(&target.store).await, exported);

    // A second import into the now non-empty store is refused and changes nothing.
    let err = Transfer::new(&target.store)
        .import(Transfer::new(store).export())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { ref field, .. } if field == "store"));
    assert_eq!(collect(&target.store).await.len(), exported.len());
    target.cleanup().await;

    // And the other way: whatever this backend is, MongoDB also takes its export.
    let mongo = harness::Harness::mongodb().await;
    Transfer::new(&mongo.store)
        .import(Transfer::new(store).export())
        .await
        .unwrap();
    assert_eq!(collect(&mongo.store).await, exported);
    assert_eq!(
        Transfer::new(&mongo.store).export().count().await,
        exported.len()
    );
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
