//! The ingest worker processing many deliveries at once, on both built-in backends: every
//! message stored once, every status applied whatever the order it arrived in (statuses
//! delivered before their messages wait and are applied), conversations counting every
//! message, nothing left held or unprocessed.
//!
//! `mongodb` needs `IMIX_TEST_MONGODB_URI` (the test command starts a MongoDB-wire server
//! and sets it) and fails loudly without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{Backend, PageRequest, Scope},
};
use imix_messaging::{
    ingest::{AccountDirectory, AccountKey, IngestWorker, Processor, Receiver, WorkerConfig},
    records::DeliveryState,
    storage::{self, ConversationFilter, MessagingStorage},
};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Notify;

const PHONE: &str = "5550001";
const SECRET: &str = "ingest-test-app-secret";

struct OneAccount(AccountKey);

#[async_trait]
impl AccountDirectory for OneAccount {
    async fn by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> imix_messaging::Result<Option<AccountKey>> {
        Ok((phone_number_id == PHONE).then(|| self.0.clone()))
    }
}

async fn sqlite() -> (Backend, Box<dyn std::any::Any + Send>) {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    (store.backend, Box::new(dir))
}

async fn mongodb() -> (Backend, Box<dyn std::any::Any + Send>) {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "IMIX_TEST_MONGODB_URI is not set: this test needs a MongoDB-wire server. Run \
             scripts/test.sh, which starts one, or point the variable at a mongod."
        )
    });
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap();
    (store.backend, Box::new(()))
}

fn message(wa_id: &str, wamid: &str, ts: u64) -> serde_json::Value {
    json!({"from": wa_id, "id": wamid, "timestamp": ts.to_string(), "type": "text",
           "text": {"body": format!("hello {wamid}")}})
}

fn delivery(
    wa_id: &str,
    messages: Vec<serde_json::Value>,
    statuses: Vec<serde_json::Value>,
) -> String {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001", "phone_number_id": PHONE},
        "contacts": [{"profile": {"name": format!("Customer {wa_id}")}, "wa_id": wa_id}],
    });
    if !messages.is_empty() {
        value["messages"] = json!(messages);
    }
    if !statuses.is_empty() {
        value["statuses"] = json!(statuses);
    }
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]})
    .to_string()
}

fn status(wamid: &str, state: &str, ts: u64) -> serde_json::Value {
    json!({"id": wamid, "status": state, "timestamp": ts.to_string(), "recipient_id": "1"})
}

/// `customers` × `per_customer` messages, each message in its own delivery, and for each message
/// three statuses (`read`, `delivered`, `sent`, in that order) in deliveries received
/// BEFORE the messages, all processed 32 at a time: statuses that find no message are
/// held, and whichever side comes second (the message, or the status looking again after
/// holding) applies them, so none is left behind.
async fn concurrent_processing_loses_nothing(backend: Backend, customers: u64, per_customer: u64) {
    storage::migrate(&backend).await.unwrap();
    let storage = MessagingStorage::open(&backend).unwrap();
    let tenant = TenantId::new();
    let account = WhatsAppAccountId::new();
    let directory = Arc::new(OneAccount(AccountKey {
        account_id: account,
        tenant_id: tenant,
        phone_number_id: PHONE.into(),
        app_secret: SecretString::from(SECRET),
    }));
    let wake = Arc::new(Notify::new());
    let receiver = Receiver::new(directory.clone(), storage.deliveries.clone(), wake.clone());
    let secret = SecretString::from(SECRET);
    let base = 1_760_000_000u64;
    let mut bodies = Vec::new();
    for c in 0..customers {
        let wa_id = format!("3361234{c:04}");
        for m in 0..per_customer {
            let wamid = format!("wamid.C{c}M{m}");
            for (i, state) in ["read", "delivered", "sent"].into_iter().enumerate() {
                let ts = base + c * 100 + m * 10 + 5 - i as u64;
                bodies.push((0, delivery(&wa_id, vec![], vec![status(&wamid, state, ts)])));
            }
            bodies.push((
                1,
                delivery(
                    &wa_id,
                    vec![message(&wa_id, &wamid, base + c * 100 + m * 10)],
                    vec![],
                ),
            ));
        }
    }
    // Statuses first, then messages; and one duplicate of every message delivery.
    bodies.sort_by_key(|(order, _)| *order);
    let duplicates: Vec<_> = bodies.iter().filter(|(o, _)| *o == 1).cloned().collect();
    bodies.extend(duplicates);
    for (_, body) in &bodies {
        let signature = imix_whatsapp::webhook::sign(&secret, body.as_bytes());
        receiver
            .receive(body.as_bytes(), Some(&signature))
            .await
            .unwrap();
    }

    let worker = IngestWorker::new(
        storage.deliveries.clone(),
        Processor::new(storage.clone(), directory),
        wake,
        WorkerConfig {
            concurrency: 32,
            ..WorkerConfig::default()
        },
    );
    let handled = worker.drain().await.unwrap();
    assert_eq!(handled, bodies.len());
    assert_eq!(storage.deliveries.count_unprocessed().await.unwrap(), 0);

    let scope = Scope::Tenant(tenant);
    let messages = storage
        .messages
        .list(scope, PageRequest::first(500))
        .await
        .unwrap()
        .items;
    assert_eq!(
        messages.len(),
        usize::try_from(customers * per_customer).unwrap(),
        "every message once, duplicates ignored"
    );
    for m in &messages {
        // Statuses of an inbound message are recorded but do not change its state.
        assert_eq!(m.state, DeliveryState::Received, "{}", m.wamid);
        assert_eq!(
            m.statuses.len(),
            3,
            "{}: every status recorded once",
            m.wamid
        );
        assert!(
            storage
                .held_statuses
                .take(PHONE, &m.wamid)
                .await
                .unwrap()
                .is_empty(),
            "{}: a status was left held",
            m.wamid
        );
    }
    let conversations = storage
        .conversations
        .list(
            scope,
            ConversationFilter::default(),
            PageRequest::first(100),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        conversations.len() as u64,
        customers,
        "one conversation per customer"
    );
    for c in &conversations {
        assert_eq!(
            u64::from(c.unread),
            per_customer,
            "every message counted once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_processing_loses_nothing() {
    let (backend, _keep) = sqlite().await;
    concurrent_processing_loses_nothing(backend, 20, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_concurrent_processing_loses_nothing() {
    let (backend, _keep) = mongodb().await;
    // The MongoDB-wire test server is slow: a smaller load, the same interleavings.
    concurrent_processing_loses_nothing(backend, 8, 4).await;
}
