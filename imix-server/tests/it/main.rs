//! The server's integration tests, in one test binary: each module was its own binary, and
//! thirty-odd copies of the whole server, linked with debug info, filled a CI machine's disk.
//! One binary also links once instead of twenty-three times.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[macro_use]
mod common;

mod ai;
mod ai_auto_reply;
mod ai_limits;
mod annotations;
mod api_keys;
mod auto_assign;
mod auto_reply_edges;
mod backup_ops;
mod backups;
mod cli;
mod contact_import;
mod contacts;
mod contacts_blocked;
mod docs;
mod edge;
mod event_visibility;
mod events;
mod file_modes;
mod inbound;
mod inbound_media;
mod isolation;
mod notify;
mod outbound;
mod outbound_alerts;
mod outbound_crash;
mod outbound_media;
mod outbound_redis;
mod replicas;
mod restore_versions;
mod search;
mod server;
mod simulated_inbound;
mod tenancy;
mod transfer;
mod updates;
mod upgrade;
mod webhook_endpoints;
mod whatsapp;
