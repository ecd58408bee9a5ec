//! Runs the notify capability's storage conformance suite (`imix_notify::testkit`) against
//! [`MemoryOutbox`], an outbox adapter written outside imix: how an integrator checks a
//! backend of their own.
//!
//! ```text
//! cargo run -p imix-examples --example memory-outbox
//! ```
//!
//! Prints `ok <case>` per passing case and exits with status 1 if any case fails.

use std::{future::Future, pin::Pin, process::ExitCode, sync::Arc};

use imix_examples::memory_outbox::MemoryOutbox;
use imix_notify::{storage::MailOutboxRepository, testkit};

/// One conformance case: given a fresh outbox, panics on the first broken promise.
type Case = fn(Arc<dyn MailOutboxRepository>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

const CASES: &[(&str, Case)] = &[
    ("outbox_lists_newest_first_within_scope", |o| {
        Box::pin(testkit::outbox_lists_newest_first_within_scope(o))
    }),
    ("outbox_claims_due_emails_with_a_lease", |o| {
        Box::pin(testkit::outbox_claims_due_emails_with_a_lease(o))
    }),
    (
        "concurrent_outbox_claims_never_hand_out_one_email_twice",
        |o| Box::pin(testkit::concurrent_outbox_claims_never_hand_out_one_email_twice(o)),
    ),
];

// Multi-threaded, so the concurrent-claims case really overlaps its workers.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut failed = 0;
    for (name, case) in CASES {
        // Each case on a fresh, empty outbox: the cases count what is due.
        let outbox: Arc<dyn MailOutboxRepository> = Arc::new(MemoryOutbox::new());
        // The cases panic on failure; a task turns that panic into a JoinError (the panic
        // message itself is already printed by the default hook).
        match tokio::spawn(case(outbox)).await {
            Ok(()) => println!("ok {name}"),
            Err(e) => {
                failed += 1;
                println!("FAILED {name}: {e}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} of {} cases failed", CASES.len());
        ExitCode::FAILURE
    }
}
