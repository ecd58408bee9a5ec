//! The REST API: one `Api` struct per resource module, combined into one OpenAPI service.

mod account;
mod audit;
pub mod dto;
mod files;
mod health;
mod outbox;
mod smtp;
mod templates;
mod tenants;
pub mod token;
mod users;
pub mod views;
mod whatsapp_accounts;

use poem_openapi::{OpenApiService, Tags};

use crate::{error::ApiError, state::AppState};

pub use account::AccountApi;
pub use audit::AuditApi;
pub use health::HealthApi;
pub use outbox::OutboxApi;
pub use smtp::SmtpApi;
pub use templates::TemplatesApi;
pub use tenants::TenantsApi;
pub use users::UsersApi;
pub use whatsapp_accounts::WhatsAppAccountsApi;

/// Groups operations in the OpenAPI spec and Swagger UI.
#[derive(Tags)]
pub enum ApiTags {
    /// Liveness, readiness, version and the mail outbox.
    System,
    /// The signed-in user's own account and passwords.
    Account,
    /// Tenants (client businesses), their logo and documents.
    Tenants,
    /// Users and roles.
    Users,
    /// The audit log.
    Audit,
    /// Platform and tenant settings (SMTP).
    Settings,
    /// WhatsApp accounts and message templates.
    WhatsApp,
}

/// The combined API.
pub type ImixApi = (
    HealthApi,
    AccountApi,
    TenantsApi,
    UsersApi,
    AuditApi,
    SmtpApi,
    OutboxApi,
    WhatsAppAccountsApi,
    TemplatesApi,
);

/// Builds the OpenAPI service for `state`.
pub fn service(state: &AppState) -> OpenApiService<ImixApi, ()> {
    OpenApiService::new(
        (
            HealthApi::new(state.clone()),
            AccountApi::new(state.clone()),
            TenantsApi::new(state.clone()),
            UsersApi::new(state.clone()),
            AuditApi::new(state.clone()),
            SmtpApi::new(state.clone()),
            OutboxApi::new(state.clone()),
            WhatsAppAccountsApi::new(state.clone()),
            TemplatesApi::new(state.clone()),
        ),
        "imix",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Multi-tenant WhatsApp Business (Meta Cloud API) CRM. Sign in with the OAuth2 password \
         flow (Authorize button); errors always have the shape \
         `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    )
    // No `servers` entry: the document's own origin is the server, so /docs "Try it out"
    // and Authorize call whatever address the browser reached the server at.
}

/// Parses a path id; a malformed one is reported like a missing record.
pub fn parse_id<T: std::str::FromStr>(raw: &str, entity: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            poem::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("{entity} not found"),
        )
    })
}
