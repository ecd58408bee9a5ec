//! Backups are complete across capabilities: a store populated through every capability's
//! repositories exports through the server's one transfer registry, and a round trip
//! SQLite → MongoDB → SQLite gives back exactly the same records. Needs
//! `IMIX_TEST_MONGODB_URI` (the test command starts a server); fails loudly without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use bytes::Bytes;
use futures::TryStreamExt;
use imix_core::{
    model::{AuditEntry, SettingsDoc, SettingsScope},
    store::transfer::Record,
    Error,
};
use imix_server::storage::Storage;
use imix_tenancy::{PasswordHash, Role, TenantStatus, User};
use imix_whatsapp::testkit::{message_template, whatsapp_account};

async fn sqlite(dir: &std::path::Path) -> Storage {
    let storage = Storage::on(imix_core::store::sqlite::open(dir).await.unwrap()).unwrap();
    storage.migrate().await.unwrap();
    storage
}

async fn mongodb(name: &str) -> Storage {
    let store = imix_core::store::mongo::open(&common::mongodb_uri(), name)
        .await
        .unwrap();
    let storage = Storage::on(store).unwrap();
    storage.migrate().await.unwrap();
    storage
}

async fn drop_mongodb(name: &str) {
    let client = mongodb::Client::with_uri_str(&common::mongodb_uri())
        .await
        .unwrap();
    client.database(name).drop().await.unwrap();
}

/// A little of every capability's records.
async fn populate(s: &Storage) {
    let t = imix_tenancy::testkit::tenant("Export");
    s.tenancy.tenants.insert(&t).await.unwrap();
    let mut t2 = imix_tenancy::testkit::tenant("Export Two");
    t2.status = TenantStatus::Deactivated;
    s.tenancy.tenants.insert(&t2).await.unwrap();
    let t2 = s.tenancy.tenants.update(&t2).await.unwrap();
    let mut u = imix_tenancy::testkit::user("export@example.com", Some(&t));
    u.password_hash = Some(PasswordHash::new(
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    ));
    u.last_login_at = Some(imix_core::now());
    s.tenancy.users.insert(&u).await.unwrap();
    s.tenancy
        .users
        .insert(&User::new("root@agency.example", Role::Admin, None))
        .await
        .unwrap();
    s.tenancy
        .users
        .insert(&imix_tenancy::testkit::user("two@example.com", Some(&t2)))
        .await
        .unwrap();
    // A webhook endpoint (its secret stays sealed with the at-rest key).
    s.subscriptions
        .endpoints
        .insert(&imix_subscriptions::WebhookEndpoint {
            id: imix_subscriptions::WebhookEndpointId::new(),
            tenant_id: t.id,
            url: "https://hooks.example.com/imix".into(),
            events: vec!["message.received".into()],
            description: "CRM".into(),
            status: imix_subscriptions::EndpointStatus::Active,
            disabled_reason: None,
            secret_enc: "sealed".into(),
            version: 1,
            created_at: imix_core::now(),
            updated_at: imix_core::now(),
        })
        .await
        .unwrap();
    // An API key (its hash travels, so the key keeps working after a restore).
    s.tenancy
        .api_keys
        .insert(&imix_tenancy::ApiKey {
            id: imix_tenancy::ApiKeyId::new(),
            tenant_id: t.id,
            name: "Export key".into(),
            role: Role::Agent,
            permissions: Vec::new(),
            key_hash: imix_tenancy::token::token_hash("imix_export-key"),
            hint: "imix_export-".into(),
            created_by: Some(u.id),
            created_at: imix_core::now(),
            last_used_at: Some(imix_core::now()),
        })
        .await
        .unwrap();
    let account = whatsapp_account(t.id, "9100");
    s.whatsapp.accounts.insert(&account).await.unwrap();
    s.whatsapp
        .templates
        .insert(&message_template(&account, "welcome", "en_US", "APPROVED"))
        .await
        .unwrap();
    let contact = imix_messaging::Contact::new(t.id, "22245000001");
    s.messaging.contacts.insert(&contact).await.unwrap();
    let conversation = imix_messaging::Conversation::new(t.id, account.id, contact.id);
    s.messaging
        .conversations
        .insert(&conversation)
        .await
        .unwrap();
    let message = imix_messaging::Message {
        auto_reply: false,
        id: imix_messaging::MessageId::new(),
        tenant_id: t.id,
        account_id: account.id,
        phone_number_id: account.phone_number_id.clone(),
        conversation_id: conversation.id,
        contact_id: contact.id,
        wamid: "wamid.export".into(),
        direction: imix_messaging::Direction::Inbound,
        kind: "text".into(),
        content: serde_json::json!({"type": "text", "kind": "a field named kind", "text": {"body": "hi"}}),
        timestamp: imix_core::now(),
        state: imix_messaging::DeliveryState::Received,
        statuses: Vec::new(),
        version: 1,
        created_at: imix_core::now(),
    };
    s.messaging.messages.insert(&message).await.unwrap();
    // The inbox's annotations: a label (also set on the conversation), a note, a canned
    // response.
    use imix_messaging::annotations::{
        CannedResponse, CannedResponseId, Label, LabelId, Note, NoteId,
    };
    let now = imix_core::now();
    let label = Label {
        id: LabelId::new(),
        tenant_id: t.id,
        name: "VIP".into(),
        color: "#a1b2c3".into(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    s.messaging.annotations.labels.insert(&label).await.unwrap();
    let mut labelled = s
        .messaging
        .conversations
        .get(imix_core::store::Scope::Platform, conversation.id)
        .await
        .unwrap();
    labelled.labels = vec![label.id];
    s.messaging
        .conversations
        .update(imix_core::store::Scope::Platform, &labelled)
        .await
        .unwrap();
    let note = Note {
        id: NoteId::new(),
        tenant_id: t.id,
        conversation_id: conversation.id,
        author_id: imix_core::id::UserId::new(),
        author_name: "Mariem".into(),
        body: "Rappeler.\nمرحبا".into(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    s.messaging.annotations.notes.insert(&note).await.unwrap();
    let canned = CannedResponse {
        id: CannedResponseId::new(),
        tenant_id: t.id,
        shortcut: "greet".into(),
        title: "Salutation".into(),
        body: "Bonjour !".into(),
        language: Some("fr".into()),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    s.messaging
        .annotations
        .canned
        .insert(&canned)
        .await
        .unwrap();
    // A message queued through the send API, with its idempotency key and fingerprint: a
    // restore keeps it queued, readable, and its key refusing a second send.
    let queued = imix_messaging::outbound::OutboundRecord {
        auto_reply: false,
        id: imix_messaging::MessageId::new(),
        tenant_id: t.id,
        account_id: account.id,
        phone_number_id: account.phone_number_id.clone(),
        conversation_id: conversation.id,
        contact_id: contact.id,
        to: contact.wa_id.clone(),
        kind: "text".into(),
        content: serde_json::json!({"type": "text", "text": {"body": "À demain"}}),
        dedupe: imix_messaging::outbound::OutboundRecord::dedupe_of(t.id, "export-key-1"),
        idempotency_key: Some("export-key-1".into()),
        request_fingerprint: Some("ab".repeat(32)),
        created_by: Some(imix_core::id::UserId::new()),
        status: imix_messaging::outbound::OutboundStatus::Queued,
        wamid: None,
        sending_at: None,
        sent_at: None,
        delivered_at: None,
        read_at: None,
        failed_at: None,
        unknown_at: None,
        error: None,
        last_error: Some("throughput: retry".into()),
        attempts: 1,
        due_at: Some(now),
        lease_until: None,
        quota: Some(imix_messaging::outbound::QuotaTaken {
            day: now.date_naive(),
            media: false,
            returned: false,
        }),
        version: 2,
        created_at: now,
        updated_at: now,
    };
    s.messaging.outbound.insert(&queued).await.unwrap();
    let doc = SettingsDoc::new(
        SettingsScope::Platform,
        "smtp",
        serde_json::json!({"host": "h", "password_enc": "AQID"}),
    );
    s.store.settings.insert(&doc).await.unwrap();
    s.store.settings.update(&doc).await.unwrap();
    let logo: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
    s.store
        .blobs
        .put(
            &format!("tenants/{}/logo", t.id),
            "image/png",
            Bytes::from(logo),
        )
        .await
        .unwrap();
    let mut entry = AuditEntry::new("tenant.create", "tenant");
    entry.tenant_id = Some(t.id);
    entry.target_id = Some(t.id.to_string());
    s.store.audit.append(&entry).await.unwrap();
}

async fn export(s: &Storage) -> Vec<Record> {
    s.transfer().export().try_collect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_store_round_trips_sqlite_to_mongodb_to_sqlite_identically() {
    let first_dir = tempfile::tempdir().unwrap();
    let first = sqlite(first_dir.path()).await;
    populate(&first).await;
    let exported = export(&first).await;
    let kinds: Vec<&str> = exported.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "tenant",
            "tenant",
            "user",
            "user",
            "user",
            "api_key",
            "whatsapp_account",
            "template",
            "contact",
            "conversation",
            "message",
            "label",
            "conversation_note",
            "canned_response",
            "outbound_message",
            "webhook_endpoint",
            "settings",
            "audit",
            "blob"
        ],
        "every capability's records, tenants before what refers to them"
    );

    // Through JSON lines, as a backup file holds them.
    let lines: Vec<String> = exported
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let parsed = lines
        .iter()
        .map(|l| Ok(serde_json::from_str::<Record>(l).unwrap()));

    let name = format!("imix_transfer_{}", uuid::Uuid::now_v7().simple());
    let middle = mongodb(&name).await;
    let counts = middle
        .transfer()
        .import(futures::stream::iter(parsed))
        .await
        .unwrap();
    assert_eq!(counts.total(), exported.len() as u64);
    assert_eq!((counts.get("tenant"), counts.get("template")), (2, 1));
    assert_eq!(export(&middle).await, exported);

    let last_dir = tempfile::tempdir().unwrap();
    let last = sqlite(last_dir.path()).await;
    last.transfer()
        .import(middle.transfer().export())
        .await
        .unwrap();
    assert_eq!(export(&last).await, exported, "SQLite → MongoDB → SQLite");

    // The imported records work as records, not just as rows: lookups by their indexes.
    let original = exported
        .iter()
        .find(|r| r.kind == "outbound_message")
        .map(|r| {
            r.clone()
                .parse::<imix_messaging::outbound::OutboundRecord>()
                .unwrap()
        })
        .unwrap();
    let found = last
        .messaging
        .outbound
        .find_by_idempotency_key(original.tenant_id, "export-key-1")
        .await
        .unwrap()
        .expect("the idempotency key survives the round trip");
    assert_eq!(found, original);
    assert_eq!(
        found.request_fingerprint.as_deref(),
        Some("ab".repeat(32).as_str())
    );
    let mut twice = found.clone();
    twice.id = imix_messaging::MessageId::new();
    assert!(
        matches!(
            last.messaging.outbound.insert(&twice).await,
            Err(Error::Duplicate { .. })
        ),
        "the restored key still refuses a second message"
    );
    let due = last
        .messaging
        .outbound
        .claim_due(imix_core::now(), imix_core::now(), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the queued message is still waiting");
    let user = last
        .tenancy
        .users
        .find_by_email("EXPORT@example.com")
        .await
        .unwrap();
    assert!(user.is_some());
    assert!(last
        .tenancy
        .api_keys
        .find_by_hash(&imix_tenancy::token::token_hash("imix_export-key"))
        .await
        .unwrap()
        .is_some());
    assert!(last
        .whatsapp
        .accounts
        .find_by_phone_number_id("9100")
        .await
        .unwrap()
        .is_some());

    // A store holding data refuses an import and keeps what it had.
    let err = last
        .transfer()
        .import(first.transfer().export())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { ref field, .. } if field == "store"));
    assert_eq!(export(&last).await.len(), exported.len());
    drop_mongodb(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_an_unknown_kind_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let target = sqlite(dir.path()).await;
    let record: Record =
        serde_json::from_str(r#"{"kind":"spaceship","record":{"name":"x"}}"#).unwrap();
    let err = target
        .transfer()
        .import(futures::stream::iter([Ok(record)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, ref message } if field == "kind" && message.contains("spaceship")),
        "{err:?}"
    );
}
