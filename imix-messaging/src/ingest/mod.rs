//! Webhook ingest: [`Receiver`] verifies and stores a delivery before Meta is answered;
//! [`IngestWorker`] processes stored deliveries with [`Processor`], from the store, so an
//! acknowledged delivery survives a crash and is processed once it is back.

mod account_events;
mod process;
mod receive;
mod worker;

pub use account_events::{AccountEvents, IgnoreAccountEvents};
pub use process::{advance, opt_out_intent, ProcessReport, Processor};
#[cfg(feature = "mock")]
pub use receive::MockAccountDirectory;
pub use receive::{
    named_phone_number_ids, nesting_depth, AccountDirectory, AccountKey, NamedIds, Receipt,
    Receiver, MAX_DELIVERY_DEPTH,
};
pub use worker::{IngestWorker, WorkerConfig};
