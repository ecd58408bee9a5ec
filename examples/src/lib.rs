//! Small programs and templates for integrators, each using one imix crate on its own.
//!
//! The programs live beside this crate as `[[example]]` targets (`cargo run -p
//! imix-examples --example <name>`). This library holds what they and the tests share:
//!
//! * [`memory_outbox`]: the notify capability's storage port implemented by hand, in
//!   memory, and checked with the conformance suite the capability exports. A template for
//!   keeping a capability's records in a backend of your own.
#![forbid(unsafe_code)]

pub mod memory_outbox;
