//! Authentication at the HTTP edge: the OAuth2 password-flow security scheme whose checker
//! turns a bearer token into an [`AuthContext`]. Handlers that take [`Auth`] cannot be
//! reached without a valid, current token.
//!
//! The same bearer header also takes a tenant's API key (`imix_…`, told apart by its
//! prefix): it acts with its role's permissions in its tenant, looked up on every request
//! so a deleted key is refused at once. Keys are for programs: the signed-in user's own
//! account routes (`/api/v1/me`, `/api/v1/auth/…`) refuse them.

use imix_tenancy::{records::API_KEY_PREFIX, AuthContext, TenancyService};
use poem::Request;
use poem_openapi::{auth::Bearer, SecurityScheme};

use crate::{error::ApiError, state::AppState};

/// Paths a user who must change their password may still call.
const ALLOWED_BEFORE_PASSWORD_CHANGE: &[&str] = &["/api/v1/me", "/api/v1/auth/change-password"];

/// A bearer access token from `POST {TOKEN_URL}` (OAuth2 password flow).
#[derive(SecurityScheme)]
#[oai(
    rename = "OAuth2",
    ty = "oauth2",
    flows(password(token_url = "/auth/token")),
    checker = "check_bearer"
)]
pub struct Auth(pub AuthContext);

/// The client address: the socket peer (a proxy's `X-Forwarded-For` is not trusted by
/// default, since any client can send it).
pub fn client_addr(req: &Request) -> Option<String> {
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_string())
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<AuthContext> {
    let state = req.data::<AppState>().ok_or_else(|| {
        poem::Error::from(ApiError::new(
            poem::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "state missing",
        ))
    })?;
    if bearer.token.starts_with(API_KEY_PREFIX) {
        let path = req.uri().path();
        if path == "/api/v1/me" || path.starts_with("/api/v1/auth/") {
            return Err(ApiError::new(
                poem::http::StatusCode::FORBIDDEN,
                "forbidden",
                "API keys cannot use the signed-in user's account routes",
            )
            .into());
        }
        let key = secrecy::SecretString::from(bearer.token);
        return Ok(state
            .tenancy
            .authenticate_api_key(&key, client_addr(req))
            .await
            .map_err(ApiError::from)?);
    }
    let ctx = state
        .tenancy
        .authenticate(&bearer.token, client_addr(req))
        .await
        .map_err(ApiError::from)?;
    if !ALLOWED_BEFORE_PASSWORD_CHANGE.contains(&req.uri().path()) {
        TenancyService::require_password_current(&ctx).map_err(ApiError::from)?;
    }
    Ok(ctx)
}
