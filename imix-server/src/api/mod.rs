//! The REST API: one `Api` struct per resource module, combined into one OpenAPI service.

mod health;

use poem_openapi::{OpenApiService, Tags};

use crate::state::AppState;

pub use health::HealthApi;

/// Groups operations in the OpenAPI spec and Swagger UI.
#[derive(Tags)]
pub enum ApiTags {
    /// Liveness, readiness and version.
    System,
}

/// The combined API (a tuple of every resource's `Api` once there are several).
pub type ImixApi = HealthApi;

/// Builds the OpenAPI service for `state`.
pub fn service(state: &AppState) -> OpenApiService<ImixApi, ()> {
    OpenApiService::new(
        HealthApi::new(state.clone()),
        "imix",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Multi-tenant WhatsApp Business (Meta Cloud API) CRM. Errors always have the shape \
             `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    )
    .server(
        state
            .config
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned(),
    )
}
