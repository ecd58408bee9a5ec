//! The REST API: one `Api` struct per resource module, combined into one OpenAPI service.

mod account;
mod ai;
mod annotations;
mod api_keys;
mod audit;
mod auto_reply;
mod backups;
mod contacts;
pub mod dto;
mod events;
mod files;
mod health;
mod inbox;
mod media;
mod messages;
mod outbox;
mod search;
mod smtp;
mod templates;
mod tenants;
pub mod token;
mod updates;
mod users;
pub mod views;
mod webhook_endpoints;
mod whatsapp_accounts;

use poem_openapi::{OpenApiService, Tags};

use crate::{error::ApiError, state::AppState};

pub use account::AccountApi;
pub use ai::AiApi;
pub use annotations::AnnotationsApi;
pub use api_keys::ApiKeysApi;
pub use audit::AuditApi;
pub use auto_reply::AutoReplyApi;
pub use backups::{BackupsApi, BACKUP_UPLOAD_PATH};
pub use contacts::ContactsApi;
pub use events::EventsApi;
pub use health::HealthApi;
pub use inbox::InboxApi;
pub use media::MediaApi;
pub use messages::MessagesApi;
pub use outbox::OutboxApi;
pub use search::SearchApi;
pub use smtp::SmtpApi;
pub use templates::TemplatesApi;
pub use tenants::TenantsApi;
pub use updates::UpdateApi;
pub use users::UsersApi;
pub use webhook_endpoints::WebhookEndpointsApi;
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
    /// The shared inbox: conversations, messages, contacts.
    Inbox,
    /// For integrators: API keys and webhook endpoints (event subscriptions).
    Integrations,
}

/// The platform's own APIs: health, system (backups, updates), accounts, tenants, users,
/// audit, settings, mail. poem-openapi combines at most 16 APIs per tuple, so the combined API
/// is a tuple of groups; add a new API to the group it belongs to.
pub type PlatformApis = (
    HealthApi,
    BackupsApi,
    UpdateApi,
    AccountApi,
    TenantsApi,
    UsersApi,
    AuditApi,
    SmtpApi,
    OutboxApi,
    ApiKeysApi,
    WebhookEndpointsApi,
    AiApi,
);

/// The messaging APIs: WhatsApp accounts and templates, the inbox, contacts, media, events.
pub type MessagingApis = (
    WhatsAppAccountsApi,
    TemplatesApi,
    InboxApi,
    MediaApi,
    ContactsApi,
    EventsApi,
    SearchApi,
    AnnotationsApi,
    MessagesApi,
    AutoReplyApi,
);

/// The combined API.
pub type ImixApi = (PlatformApis, MessagingApis);

/// Builds the OpenAPI service for `state`.
pub fn service(state: &AppState) -> OpenApiService<ImixApi, ()> {
    OpenApiService::new(
        (
            (
                HealthApi::new(state.clone()),
                BackupsApi::new(state.clone()),
                UpdateApi::new(state.clone()),
                AccountApi::new(state.clone()),
                TenantsApi::new(state.clone()),
                UsersApi::new(state.clone()),
                AuditApi::new(state.clone()),
                SmtpApi::new(state.clone()),
                OutboxApi::new(state.clone()),
                ApiKeysApi::new(state.clone()),
                WebhookEndpointsApi::new(state.clone()),
                AiApi::new(state.clone()),
            ),
            (
                WhatsAppAccountsApi::new(state.clone()),
                TemplatesApi::new(state.clone()),
                InboxApi::new(state.clone()),
                MediaApi::new(state.clone()),
                ContactsApi::new(state.clone()),
                EventsApi::new(state.clone()),
                SearchApi::new(state.clone()),
                AnnotationsApi::new(state.clone()),
                MessagesApi::new(state.clone()),
                AutoReplyApi::new(state.clone()),
            ),
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

/// Adds to every operation of an OpenAPI document the error statuses the edge can answer
/// whatever the handler's own response type says: 401 for operations that need a token,
/// 400, 408, 413, 415 and 422 for operations with a request body (malformed, stalled, too
/// large, wrong content type, a field of the wrong type or value), and 500 for all. Keeps the document's
/// formatting (pretty JSON); answers it unchanged if it is not JSON.
pub fn complete_responses(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    let error = serde_json::json!({"application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for op in paths
            .values_mut()
            .filter_map(|ops| ops.as_object_mut())
            .flat_map(|ops| ops.values_mut())
        {
            let secured = op
                .get("security")
                .and_then(|s| s.as_array())
                .is_some_and(|s| !s.is_empty());
            let has_body = op.get("requestBody").is_some();
            let mut add: Vec<(&str, &str)> = vec![("500", "Internal error")];
            if secured {
                add.push(("401", "Not authenticated"));
            }
            if has_body {
                add.extend([
                    ("400", "Malformed request"),
                    ("408", "The request body stalled"),
                    ("413", "Payload too large"),
                    ("415", "Unsupported media type"),
                    ("422", "Invalid field value; `details.field` names it"),
                ]);
            }
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for (status, description) in add {
                responses.entry(status).or_insert_with(
                    || serde_json::json!({"description": description, "content": error.clone()}),
                );
            }
            // Statuses in ascending order, as generated.
            let mut sorted: Vec<(String, serde_json::Value)> =
                std::mem::take(responses).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            responses.extend(sorted);
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}
