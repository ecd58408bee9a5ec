//! The records tenancy owns: tenants, users, single-use auth tokens and API keys.

mod api_key;
mod auth_token;
mod tenant;
mod user;

pub use api_key::{ApiKey, ApiKeyId, API_KEY_HINT_CHARS, API_KEY_PREFIX};
pub use auth_token::{AuthToken, TokenPurpose};
pub use imix_core::directory::{TenantStatus, UsageLimits};
pub use tenant::{Tenant, TenantDocument};
pub use user::{normalize_email, PasswordHash, Role, User, UserStatus};
