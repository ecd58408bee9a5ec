//! # imix-whatsapp
//!
//! Owns everything WhatsApp: the Cloud API client trait and its reqwest adapter, webhook
//! signature verification and payload parsing, WhatsApp Business accounts
//! ([`accounts::AccountService`]), templates ([`templates::TemplateService`]),
//! contacts, conversations and messages, the outbound queue and dispatcher, and a faithful
//! local Graph API simulator (feature `simulator`). Its log events use the target
//! `imix_whatsapp`, which the server also writes to `whatsapp.log`.
//!
//! ## Features
//!
//! - `client` (default): [`GraphApiClient`], the reqwest (rustls) adapter of
//!   [`WhatsAppClient`]. Graph API version [`DEFAULT_GRAPH_API_VERSION`] (`v23.0`) unless
//!   configured otherwise.
//! - `simulator`: [`simulator::Simulator`], an in-memory Graph API server for tests and
//!   demos that also sends signed webhooks.
//! - `sqlite` (default): `storage::sqlite`, the repositories on the embedded SQLite
//!   database of `imix_core::store::Backend::Sqlite`.
//! - `mongodb`: `storage::mongo`, the repositories on MongoDB
//!   (`imix_core::store::Backend::Mongo`).
//! - `mock`: `MockWhatsAppClient`, a mockall mock of [`WhatsAppClient`], and
//!   `storage::MockWhatsAppAccountRepository` / `storage::MockTemplateRepository`.
//! - `testkit`: `testkit`, the storage conformance suite every adapter of the ports must
//!   pass, for integrators' own adapters.
//!
//! ## Storage
//!
//! The capability owns its records ([`records`]) and their ports ([`storage`]): its tables
//! or collections live in the database the core store was opened on, migrated by
//! [`storage::migrate`] and opened by [`storage::WhatsAppStorage::open`]; its records join
//! backups through [`storage::record_sets`].
#![forbid(unsafe_code)]

pub mod accounts;
pub mod client;
pub mod error;
#[cfg(feature = "client")]
pub mod http;
pub mod model;
pub mod records;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod storage;
pub mod templates;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod webhook;

#[cfg(feature = "mock")]
pub use client::MockWhatsAppClient;
pub use client::{
    list_all_templates, AccessToken, WhatsAppClient, DEFAULT_GRAPH_API_URL,
    DEFAULT_GRAPH_API_VERSION,
};
pub use error::{
    ApiError, Error, ErrorClass, GraphError, GraphErrorData, GraphErrorResponse, Result,
    ServiceError,
};
#[cfg(feature = "client")]
pub use http::{GraphApiClient, GraphApiConfig};
pub use records::{
    AccountHealth, MessageTemplate, Verification, VerificationStatus, WhatsAppAccount,
};
