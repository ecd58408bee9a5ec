//! [`MemoryOutbox`] passes the notify capability's storage conformance suite
//! (`imix_notify::testkit`): the same cases the shipped SQLite and MongoDB adapters pass.
//! An integrator's own adapter is checked the same way: one test per case, each on a fresh,
//! empty outbox.

use std::sync::Arc;

use imix_examples::memory_outbox::MemoryOutbox;
use imix_notify::{storage::MailOutboxRepository, testkit};

/// A fresh, empty outbox: the cases count what is due, so none may share one.
fn outbox() -> Arc<dyn MailOutboxRepository> {
    Arc::new(MemoryOutbox::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_lists_newest_first_within_scope() {
    testkit::outbox_lists_newest_first_within_scope(outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_claims_due_emails_with_a_lease() {
    testkit::outbox_claims_due_emails_with_a_lease(outbox()).await;
}

// Multi-threaded, so the eight claiming workers really run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_outbox_claims_never_hand_out_one_email_twice() {
    testkit::concurrent_outbox_claims_never_hand_out_one_email_twice(outbox()).await;
}
