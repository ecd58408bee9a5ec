//! # imix-tenancy
//!
//! Owns tenants, users, roles and permissions, authentication (password sign-in, tokens,
//! invitations), usage limits and quota enforcement (Redis and in-process), and the audit log.
//! The persisted entities and their storage ports live in `imix-core`; the services that
//! enforce the rules live here.
//!
//! Every operation takes an [`AuthContext`], which only [`TenancyService::authenticate`]
//! can make: permissions are checked here, tenant isolation in the store.
#![forbid(unsafe_code)]

pub mod bootstrap;
mod context;
pub mod emails;
mod error;
pub mod password;
pub mod permission;
pub mod quota;
pub mod records;
mod service;
pub mod storage;
pub mod throttle;
pub mod token;
pub mod validate;

pub use context::AuthContext;
pub use error::{FieldProblem, TenancyError};
pub use imix_core::access::{AccessContext, AccessDenied, AuditLog};
pub use permission::Permission;
pub use records::{
    normalize_email, ApiKey, ApiKeyId, AuthToken, PasswordHash, Role, Tenant, TenantDocument,
    TenantStatus, TokenPurpose, UsageLimits, User, UserStatus,
};
pub use service::{
    NewApiKey, NewApiKeyCreated, NewTenant, NewUser, SignIn, StoredFile, TenancyConfig,
    TenancyRepos, TenancyService, TenantPatch, Usage, UserPatch, API_KEY_TOUCH_EVERY_SECS,
    INVITATION_VALID_HOURS, MAX_DOCUMENT_BYTES, MAX_LOGO_BYTES, RESET_VALID_HOURS,
};
#[cfg(feature = "testkit")]
pub mod testkit;
