//! # imix-core
//!
//! The foundation every other imix crate stands on:
//!
//! - [`id`]: UUIDv7 identifiers, one newtype per entity, sortable by creation time.
//! - [`access`]: the access context every service operation takes ([`access::AccessContext`]:
//!   the caller, their tenant or the platform, their [`access::Permission`]s) and its checks.
//! - [`Language`]: the three languages the product speaks (English, French, Arabic).
//! - [`secret`] and [`crypto`]: credentials in memory ([`secrecy`]) and the at-rest cipher
//!   (AES-256-GCM) whose ciphertexts carry a key id so keys can be rotated.
//! - [`model`]: the entities the store persists (tenants, users, settings documents).
//! - [`store`]: the storage ports (traits) and their adapters, SQLite (feature `sqlite`,
//!   the default) and MongoDB (feature `mongodb`), plus export/import of all data.
//! - [`Error`]: the one error enum of this crate.
//!
//! A crate that only needs the types can depend on `imix-core` with
//! `default-features = false` and pull neither SQLite nor MongoDB.
//!
//! ```
//! use imix_core::{id::TenantId, Language};
//!
//! let id = TenantId::new();
//! let parsed: TenantId = id.to_string().parse().unwrap();
//! assert_eq!(id, parsed);
//! assert_eq!("ar".parse::<Language>().unwrap(), Language::Ar);
//! ```
#![forbid(unsafe_code)]

pub mod access;
pub mod crypto;
pub mod directory;
mod error;
pub mod id;
mod language;
pub mod model;
pub mod secret;
pub mod store;

pub use error::{BoxError, Error, Result};
pub use language::Language;

/// Timestamps used throughout imix: UTC, serialized as RFC 3339.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time, truncated to milliseconds so that it round-trips through every backend
/// (MongoDB stores milliseconds) without changing.
pub fn now() -> Timestamp {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(3)
}
