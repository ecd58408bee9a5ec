//! `POST {TOKEN_URL}`: the OAuth2 password-flow token endpoint (RFC 6749 §4.3). Mounted at
//! the configured path outside the OpenAPI service, and added to the published spec.

use imix_core::model::AuditEntry;
use poem::{
    handler,
    http::StatusCode,
    web::{Data, Json},
    Body, Request,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::{auth::client_addr, error::ApiError, state::AppState};

/// The form of a token request.
pub struct TokenForm {
    /// Must be `password` when given.
    grant_type: Option<String>,
    /// The email.
    username: String,
    /// The password.
    password: String,
}

impl TokenForm {
    /// Reads the `application/x-www-form-urlencoded` body of a token request: 415
    /// `unsupported_media_type` for another type, 422 `invalid_field` naming a missing field,
    /// 400 `malformed_body` naming a repeated one.
    async fn read(req: &Request, body: Body) -> Result<Self, ApiError> {
        let essence = req
            .content_type()
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase());
        if essence.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the token request must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = body.into_bytes().await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        let (mut grant_type, mut username, mut password) = (None, None, None);
        for (key, value) in url::form_urlencoded::parse(&bytes) {
            let slot = match key.as_ref() {
                "grant_type" => &mut grant_type,
                "username" => &mut username,
                "password" => &mut password,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_body",
                    format!("`{key}` is given more than once"),
                )
                .with_details(serde_json::json!({ "field": key })));
            }
        }
        let required = |v: Option<String>, field: &str| {
            v.ok_or_else(|| ApiError::invalid_field(field, "is required"))
        };
        Ok(Self {
            grant_type,
            username: required(username, "username")?,
            password: required(password, "password")?,
        })
    }
}

/// The token response.
#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    must_change_password: bool,
}

/// Exchanges email and password for an access token.
#[handler]
pub async fn issue_token(
    req: &Request,
    Data(state): Data<&AppState>,
    body: Body,
) -> Result<poem::Response, ApiError> {
    let addr = req.remote_addr().as_socket_addr().map(|a| a.ip());
    if let Err(refused) = state.sign_in_flood.check(addr) {
        // Before the body is read or a password hashed: a flood costs us next to nothing
        // (one audit entry per address a minute at most).
        if let Some(address) = refused.audit {
            let mut entry = AuditEntry::new("auth.sign_in_address_throttled", "address");
            entry.target_id = Some(address);
            entry.client_addr = client_addr(req);
            if let Err(e) = state.store.audit.append(&entry).await {
                tracing::error!(error = %e, action = %entry.action, "cannot write the audit log");
            }
        }
        let retry_after_secs = refused.retry_after_secs;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many sign-in attempts from this address; try again in {retry_after_secs} seconds"
            ),
        )
        .with_retry_after(retry_after_secs));
    }
    let form = TokenForm::read(req, body).await?;
    if form.grant_type.as_deref().is_some_and(|g| g != "password") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=password is supported",
        ));
    }
    let signed_in = state
        .tenancy
        .sign_in(
            &form.username,
            &SecretString::from(form.password),
            client_addr(req),
        )
        .await?;
    let body = TokenResponse {
        access_token: signed_in.token.token.expose_secret().to_owned(),
        token_type: "bearer",
        expires_in: signed_in.token.expires_in,
        must_change_password: signed_in.must_change_password,
    };
    let mut resp = poem::IntoResponse::into_response(Json(body));
    resp.headers_mut().insert(
        poem::http::header::CACHE_CONTROL,
        poem::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// The token operation, for the published OpenAPI document.
pub fn spec_operation() -> serde_json::Value {
    serde_json::json!({
        "post": {
            "tags": ["Account"],
            "summary": "Sign in (OAuth2 password flow)",
            "description": "Exchanges `username` (the email) and `password` for a bearer token. A password longer than 1,024 bytes gets 422 without being checked. After 5 failed attempts for one account within 15 minutes, further attempts get 429 with Retry-After; so do attempts from one client address beyond SIGN_IN_ATTEMPTS_PER_MINUTE (default 60).",
            "operationId": "issue_token",
            "requestBody": {
                "required": true,
                "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["password"]},
                        "username": {"type": "string", "description": "The email"},
                        "password": {"type": "string", "format": "password", "writeOnly": true}
                    }
                }}}
            },
            "responses": {
                "200": {"description": "Signed in", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in", "must_change_password"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"type": "string", "enum": ["bearer"]},
                        "expires_in": {"type": "integer", "description": "seconds"},
                        "must_change_password": {"type": "boolean"}
                    }
                }}}},
                "400": {"description": "Malformed body (a field given twice) or `unsupported_grant_type`", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "401": {"description": "Invalid email or password", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "403": {"description": "Account or tenant deactivated", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "413": {"description": "The body is larger than 64 KiB", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "415": {"description": "The body is not application/x-www-form-urlencoded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "422": {"description": "`username` or `password` missing (`details.field` names it), or the password is longer than 1,024 bytes", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "429": {"description": "Too many failed attempts", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
                "500": {"description": "Internal error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            }
        }
    })
}

/// The published spec: the service's, plus the token operation at `token_url`.
pub fn published_spec(spec: &str, token_url: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        paths.insert(token_url.to_owned(), spec_operation());
    }
    if let Some(flow) = doc.pointer_mut("/components/securitySchemes/OAuth2/flows/password") {
        flow["tokenUrl"] = serde_json::Value::String(token_url.to_owned());
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}
