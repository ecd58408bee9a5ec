//! The records tenancy owns: tenants, users and single-use auth tokens.

mod auth_token;
mod tenant;
mod user;

pub use auth_token::{AuthToken, TokenPurpose};
pub use imix_core::directory::{TenantStatus, UsageLimits};
pub use tenant::{Tenant, TenantDocument};
pub use user::{normalize_email, PasswordHash, Role, User, UserStatus};
