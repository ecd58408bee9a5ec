//! # imix-update
//!
//! Owns system updates and backups: checking the update manifest, downloading and verifying
//! signed releases, installing them safely, and creating, listing, downloading and restoring
//! backups (built on `imix_core::store::transfer`).
#![forbid(unsafe_code)]

pub mod backup;
pub mod update;
