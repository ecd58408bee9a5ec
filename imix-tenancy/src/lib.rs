//! # imix-tenancy
//!
//! Owns tenants, users, roles and permissions, authentication (password sign-in, tokens,
//! invitations), usage limits and quota enforcement (Redis and in-process), and the audit log.
//! The persisted entities and their storage ports live in `imix-core`; the services that
//! enforce the rules live here.
#![forbid(unsafe_code)]
