//! The storage conformance suite of the WhatsApp ports (feature `testkit`): every adapter
//! of [`WhatsAppAccountRepository`] and [`TemplateRepository`] (the SQLite and MongoDB ones
//! here, or an integrator's own) must pass each case.
//!
//! Each case is a public async function taking a [`WhatsAppStorage`] on an **empty**
//! database; it panics on the first violation. [`CASES`] names them all, and the
//! [`whatsapp_storage_conformance!`](crate::whatsapp_storage_conformance) macro turns them
//! into one `#[tokio::test]` each, given a [`Harness`] that opens a fresh storage:
//!
//! ```text
//! struct MyHarness { storage: WhatsAppStorage /* , the database to drop */ }
//!
//! #[async_trait::async_trait]
//! impl imix_whatsapp::testkit::Harness for MyHarness {
//!     async fn start() -> Self { /* a fresh, migrated database */ }
//!     fn storage(&self) -> &WhatsAppStorage { &self.storage }
//!     async fn finish(self) { /* drop the database */ }
//! }
//!
//! imix_whatsapp::whatsapp_storage_conformance!(MyHarness);
//! ```
//!
//! The cases use `tokio::spawn` (concurrent writers), so they need a multi-threaded runtime
//! (the macro asks for one).

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{TemplateId, TenantId, WhatsAppAccountId},
    store::{transfer::Record, PageRequest, Scope},
    Error,
};

use crate::{
    records::{MessageTemplate, Verification, VerificationStatus, WhatsAppAccount},
    storage::{
        TemplateFilter, TemplateRepository, WhatsAppAccountRepository, WhatsAppStorage,
        ACCOUNT_KIND, TEMPLATE_KIND,
    },
};

/// Opens a fresh storage for one case and cleans up after it.
#[async_trait]
pub trait Harness: Sized + Send + Sync {
    /// A storage on a fresh, empty, migrated database.
    async fn start() -> Self;
    /// The storage under test.
    fn storage(&self) -> &WhatsAppStorage;
    /// Releases what [`Harness::start`] made (drops the database, removes the directory).
    async fn finish(self);
}

/// The name of every case, in the order the macro runs them.
pub const CASES: &[&str] = &[
    "whatsapp_accounts_crud_and_unique_phone_number_id",
    "whatsapp_accounts_are_tenant_scoped",
    "whatsapp_accounts_paginate_and_reject_stale_versions",
    "templates_crud_filters_and_unique_name_language_per_account",
    "templates_are_tenant_scoped",
    "record_sets_export_and_reimport_every_record",
];

/// One `#[tokio::test]` per case of [`crate::testkit`], each on a fresh storage from the
/// given [`Harness`] type. Expand it in a test crate (or module) that depends on `tokio`
/// with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! whatsapp_storage_conformance {
    ($harness:ty) => {
        $crate::whatsapp_storage_conformance!(@cases $harness;
            whatsapp_accounts_crud_and_unique_phone_number_id,
            whatsapp_accounts_are_tenant_scoped,
            whatsapp_accounts_paginate_and_reject_stale_versions,
            templates_crud_filters_and_unique_name_language_per_account,
            templates_are_tenant_scoped,
            record_sets_export_and_reimport_every_record,
        );
    };
    (@cases $harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = <$harness as $crate::testkit::Harness>::start().await;
                $crate::testkit::$case($crate::testkit::Harness::storage(&harness)).await;
                $crate::testkit::Harness::finish(harness).await;
            }
        )*
    };
}

/// An account of `tenant` with every field set (a non-ASCII business name, sealed secrets).
pub fn whatsapp_account(tenant: TenantId, phone_number_id: &str) -> WhatsAppAccount {
    let now = imix_core::now();
    WhatsAppAccount {
        id: WhatsAppAccountId::new(),
        tenant_id: tenant,
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
        health: crate::records::AccountHealth::default(),
        max_messages_per_second: Some(250),
        verification: Verification {
            status: VerificationStatus::Unverified,
            ..Verification::default()
        },
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A template of `account` with nested JSON components.
pub fn message_template(
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

fn unwrap<T>(result: imix_core::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Create, read (by id and by phone number id), update, delete; a phone number id is
/// unique platform-wide, on insert and on update, and free again once its account is gone.
pub async fn whatsapp_accounts_crud_and_unique_phone_number_id(storage: &WhatsAppStorage) {
    let accounts = storage.accounts.as_ref();
    let t = TenantId::new();
    let other = TenantId::new();
    let a = whatsapp_account(t, "2001");
    unwrap(accounts.insert(&a).await, "insert");
    assert_eq!(unwrap(accounts.get(Scope::Tenant(t), a.id).await, "get"), a);
    assert_eq!(
        unwrap(accounts.find_by_phone_number_id("2001").await, "find"),
        Some(a.clone())
    );
    assert_eq!(
        unwrap(accounts.find_by_phone_number_id("nope").await, "find"),
        None
    );

    // One phone number id per platform, whichever tenant asks.
    let dup = whatsapp_account(other, "2001");
    let result = accounts.insert(&dup).await;
    assert!(
        matches!(
            result,
            Err(Error::Duplicate {
                field: "phone_number_id",
                ..
            })
        ),
        "a second account on one phone number id: {result:?}"
    );

    let mut changed = a.clone();
    changed.business_name = "Acme Café Nouakchott".into();
    changed.verification.status = VerificationStatus::Verified;
    changed.verification.verified_name = Some("Acme".into());
    changed.verification.checked_at = Some(imix_core::now());
    let stored = unwrap(accounts.update(Scope::Tenant(t), &changed).await, "update");
    assert_eq!(stored.version, 2);
    assert_eq!(
        unwrap(accounts.get(Scope::Platform, a.id).await, "get"),
        stored
    );

    // Moving an account onto a number another account has is a duplicate too.
    let b = whatsapp_account(t, "2002");
    unwrap(accounts.insert(&b).await, "insert");
    let mut clash = b.clone();
    clash.phone_number_id = "2001".into();
    let result = accounts.update(Scope::Tenant(t), &clash).await;
    assert!(
        matches!(
            result,
            Err(Error::Duplicate {
                field: "phone_number_id",
                ..
            })
        ),
        "moving an account onto a taken phone number id: {result:?}"
    );

    unwrap(accounts.delete(Scope::Tenant(t), a.id).await, "delete");
    assert!(matches!(
        accounts.get(Scope::Platform, a.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        accounts.delete(Scope::Platform, a.id).await,
        Err(Error::NotFound { .. })
    ));
    // Its number is free again.
    unwrap(accounts.insert(&dup).await, "insert on a freed number");
}

/// A tenant scope never reads, changes, deletes or lists another tenant's account, not
/// even by claiming the record for itself.
pub async fn whatsapp_accounts_are_tenant_scoped(storage: &WhatsAppStorage) {
    let accounts = storage.accounts.as_ref();
    let a_tenant = TenantId::new();
    let b_tenant = TenantId::new();
    let a = whatsapp_account(a_tenant, "3001");
    let b = whatsapp_account(b_tenant, "3002");
    unwrap(accounts.insert(&a).await, "insert");
    unwrap(accounts.insert(&b).await, "insert");
    let as_b = Scope::Tenant(b_tenant);

    assert!(matches!(
        accounts.get(as_b, a.id).await,
        Err(Error::NotFound { .. })
    ));
    let mut edited = a.clone();
    edited.business_name = "hijacked".into();
    assert!(matches!(
        accounts.update(as_b, &edited).await,
        Err(Error::Invalid { .. } | Error::NotFound { .. })
    ));
    // Even claiming the record for B does not reach A's account.
    let mut moved = a.clone();
    moved.tenant_id = b_tenant;
    assert!(matches!(
        accounts.update(as_b, &moved).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        accounts.delete(as_b, a.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(unwrap(accounts.get(Scope::Platform, a.id).await, "get"), a);
    let seen = unwrap(accounts.list(as_b, PageRequest::default()).await, "list");
    assert_eq!(seen.items, vec![b.clone()]);
    let all = unwrap(
        accounts.list(Scope::Platform, PageRequest::default()).await,
        "list",
    );
    assert_eq!(all.items, vec![a, b]);
}

/// Pages are complete and ordered, a bad limit is refused, a stale version is a conflict,
/// and of concurrent writers of one version exactly one wins.
pub async fn whatsapp_accounts_paginate_and_reject_stale_versions(storage: &WhatsAppStorage) {
    let accounts = storage.accounts.as_ref();
    let t = TenantId::new();
    let mut ids = Vec::new();
    for i in 0..7 {
        let a = whatsapp_account(t, &format!("40{i:02}"));
        unwrap(accounts.insert(&a).await, "insert");
        ids.push(a.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = unwrap(
            accounts
                .list(
                    Scope::Tenant(t),
                    PageRequest {
                        cursor: cursor.clone(),
                        limit: Some(3),
                    },
                )
                .await,
            "list",
        );
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|a| a.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert!(matches!(
        accounts.list(Scope::Tenant(t), PageRequest::first(0)).await,
        Err(Error::Invalid { ref field, .. }) if field == "limit"
    ));

    let a = unwrap(accounts.get(Scope::Platform, ids[0]).await, "get");
    let stored = unwrap(accounts.update(Scope::Tenant(t), &a).await, "update");
    assert_eq!(stored.version, 2);
    assert!(matches!(
        accounts.update(Scope::Tenant(t), &a).await,
        Err(Error::VersionConflict { expected: 1, .. })
    ));

    // Concurrent writers of one version: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let accounts: Arc<dyn WhatsAppAccountRepository> = storage.accounts.clone();
            let mut edit = stored.clone();
            edit.business_name = format!("writer {i}");
            tokio::spawn(async move { accounts.update(Scope::Platform, &edit).await.is_ok() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap_or_else(|e| panic!("writer task: {e}")));
    }
    assert_eq!(wins, 1);
}

/// Create, read, update, delete; `(account, name, language)` is unique; lists filter by
/// account and status and page.
pub async fn templates_crud_filters_and_unique_name_language_per_account(
    storage: &WhatsAppStorage,
) {
    let accounts = storage.accounts.as_ref();
    let templates: &dyn TemplateRepository = storage.templates.as_ref();
    let t = TenantId::new();
    let a = whatsapp_account(t, "5001");
    let b = whatsapp_account(t, "5002");
    unwrap(accounts.insert(&a).await, "insert");
    unwrap(accounts.insert(&b).await, "insert");
    let scope = Scope::Tenant(t);

    let welcome = message_template(&a, "welcome", "en_US", "PENDING");
    unwrap(templates.insert(&welcome).await, "insert");
    assert_eq!(
        unwrap(templates.get(scope, welcome.id).await, "get"),
        welcome
    );
    // Same name and language on the same account: duplicate.
    let result = templates
        .insert(&message_template(&a, "welcome", "en_US", "APPROVED"))
        .await;
    assert!(
        matches!(result, Err(Error::Duplicate { field: "name", .. })),
        "a second template with one account, name and language: {result:?}"
    );
    // Another language, or another account: fine.
    let welcome_fr = message_template(&a, "welcome", "fr", "APPROVED");
    unwrap(templates.insert(&welcome_fr).await, "insert");
    let welcome_b = message_template(&b, "welcome", "en_US", "APPROVED");
    unwrap(templates.insert(&welcome_b).await, "insert");

    let mut approved = welcome.clone();
    approved.status = "APPROVED".into();
    let approved = unwrap(templates.update(scope, &approved).await, "update");
    assert_eq!(approved.version, 2);
    assert!(matches!(
        templates.update(scope, &welcome).await,
        Err(Error::VersionConflict { .. })
    ));

    let rejected = message_template(&a, "promo", "en_US", "REJECTED");
    unwrap(templates.insert(&rejected).await, "insert");
    let list = |filter: TemplateFilter| async move {
        unwrap(
            templates.list(scope, filter, PageRequest::default()).await,
            "list",
        )
        .items
        .into_iter()
        .map(|t| t.id)
        .collect::<Vec<_>>()
    };
    assert_eq!(
        list(TemplateFilter::default()).await,
        vec![welcome.id, welcome_fr.id, welcome_b.id, rejected.id]
    );
    assert_eq!(
        list(TemplateFilter {
            account_id: Some(a.id),
            status: Some("APPROVED".into()),
        })
        .await,
        vec![welcome.id, welcome_fr.id]
    );
    assert_eq!(
        list(TemplateFilter {
            account_id: None,
            status: Some("REJECTED".into()),
        })
        .await,
        vec![rejected.id]
    );
    let first = unwrap(
        templates
            .list(scope, TemplateFilter::default(), PageRequest::first(3))
            .await,
        "list",
    );
    assert_eq!(first.items.len(), 3);
    let rest = unwrap(
        templates
            .list(
                scope,
                TemplateFilter::default(),
                PageRequest {
                    cursor: first.next_cursor,
                    limit: Some(3),
                },
            )
            .await,
        "list",
    );
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_cursor, None);

    unwrap(templates.delete(scope, welcome.id).await, "delete");
    assert!(matches!(
        templates.get(scope, welcome.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        templates.delete(scope, welcome.id).await,
        Err(Error::NotFound { .. })
    ));
    // Its name and language are free again on that account.
    unwrap(
        templates
            .insert(&message_template(&a, "welcome", "en_US", "PENDING"))
            .await,
        "insert on a freed name",
    );
}

/// A tenant scope never reads, changes, deletes or lists another tenant's template.
pub async fn templates_are_tenant_scoped(storage: &WhatsAppStorage) {
    let templates = storage.templates.as_ref();
    let a_tenant = TenantId::new();
    let b_tenant = TenantId::new();
    let a = whatsapp_account(a_tenant, "6001");
    unwrap(storage.accounts.insert(&a).await, "insert");
    let tpl = message_template(&a, "order_update", "en_US", "APPROVED");
    unwrap(templates.insert(&tpl).await, "insert");
    let as_b = Scope::Tenant(b_tenant);
    assert!(matches!(
        templates.get(as_b, tpl.id).await,
        Err(Error::NotFound { .. })
    ));
    let mut moved = tpl.clone();
    moved.tenant_id = b_tenant;
    assert!(matches!(
        templates.update(as_b, &moved).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        templates.update(as_b, &tpl).await,
        Err(Error::Invalid { .. } | Error::NotFound { .. })
    ));
    assert!(matches!(
        templates.delete(as_b, tpl.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(unwrap(
        templates
            .list(as_b, TemplateFilter::default(), PageRequest::default())
            .await,
        "list"
    )
    .items
    .is_empty());
    assert_eq!(
        unwrap(templates.get(Scope::Tenant(a_tenant), tpl.id).await, "get"),
        tpl
    );
}

/// [`WhatsAppStorage::record_sets`] exports accounts, then templates, every field intact
/// (through JSON, as a backup file holds them), and imports them back into the emptied
/// storage as they were.
pub async fn record_sets_export_and_reimport_every_record(storage: &WhatsAppStorage) {
    let t = TenantId::new();
    let a = whatsapp_account(t, "7001");
    let mut b = whatsapp_account(TenantId::new(), "7002");
    b.verification = Verification {
        status: VerificationStatus::Failed,
        last_error: Some("token expired".into()),
        checked_at: Some(imix_core::now()),
        ..Verification::default()
    };
    unwrap(storage.accounts.insert(&a).await, "insert");
    unwrap(storage.accounts.insert(&b).await, "insert");
    // Made in id order, which is the order lists return.
    let welcome = message_template(&a, "welcome", "en_US", "APPROVED");
    let mut rejected = message_template(&a, "promo", "en_US", "REJECTED");
    rejected.rejected_reason = Some("INVALID_FORMAT".into());
    let templates = [
        welcome,
        rejected,
        message_template(&b, "welcome", "fr", "PENDING"),
    ];
    for tpl in &templates {
        unwrap(storage.templates.insert(tpl).await, "insert");
    }

    let sets = storage.record_sets();
    let kinds: Vec<_> = sets.iter().map(|s| s.kind()).collect();
    assert_eq!(kinds, [ACCOUNT_KIND, TEMPLATE_KIND]);
    assert_eq!(kinds, ["whatsapp_account", "template"]);
    let mut exported = Vec::new();
    for set in &sets {
        let mut cursor = None;
        loop {
            let (records, next) = unwrap(set.export_page(cursor).await, "export");
            exported.extend(records);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    assert_eq!(exported.len(), 5);
    assert!(exported[..2].iter().all(|r| r.kind == "whatsapp_account"));
    assert!(exported[2..].iter().all(|r| r.kind == "template"));
    let lines: Vec<String> = exported
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_else(|e| panic!("serialize: {e}")))
        .collect();

    for tpl in &templates {
        unwrap(
            storage.templates.delete(Scope::Platform, tpl.id).await,
            "delete",
        );
    }
    for account in [&a, &b] {
        unwrap(
            storage.accounts.delete(Scope::Platform, account.id).await,
            "delete",
        );
    }
    for line in &lines {
        let record: Record =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("parse {line}: {e}"));
        let set = sets
            .iter()
            .find(|s| s.kind() == record.kind)
            .unwrap_or_else(|| panic!("no set of kind {}", record.kind));
        unwrap(set.import(record).await, "import");
    }

    let accounts = unwrap(
        storage
            .accounts
            .list(Scope::Platform, PageRequest::default())
            .await,
        "list",
    );
    assert_eq!(accounts.items, vec![a, b]);
    let stored = unwrap(
        storage
            .templates
            .list(
                Scope::Platform,
                TemplateFilter::default(),
                PageRequest::default(),
            )
            .await,
        "list",
    );
    assert_eq!(stored.items, templates.to_vec());
}
