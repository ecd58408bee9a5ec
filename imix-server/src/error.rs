//! The one JSON error shape of the API, and the mapping of every error to it:
//!
//! ```json
//! {"error": {"code": "not_found", "message": "no route for GET /nope", "details": {}}}
//! ```
//!
//! Handlers return [`ApiError`]; [`ErrorShapeMiddleware`] turns every other error that
//! reaches the edge (unknown routes, malformed JSON, bad path parameters, wrong methods) into
//! the same shape, so clients parse one format whatever went wrong.

use std::{
    borrow::Cow,
    sync::{atomic::Ordering, Arc},
};

use poem::{
    error::ResponseError as _, http::StatusCode, Endpoint, IntoResponse, Middleware, Request,
    Response, Result,
};
use poem_openapi::{
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    ApiResponse, Object,
};
use serde_json::Value;

use crate::body::{
    limit_body, read_limited, BodyFlags, FieldProblem, ReadFailure, RequestRules,
    BODY_PROGRESS_TIMEOUT,
};

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorDetail {
    /// Stable, snake_case, for programs: `not_found`, `invalid_field`, `conflict`, …
    pub code: String,
    /// For people.
    pub message: String,
    /// Structured context, e.g. `{"field": "email"}` for a field error.
    pub details: Value,
}

/// An API error: an HTTP status and the JSON body of [`ErrorBody`]. Boxed, so `Result`s
/// carrying it stay small.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ErrorParts>);

#[derive(Debug, Clone)]
struct ErrorParts {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    details: Value,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with an empty `details` object.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(ErrorParts {
            status,
            code: code.into(),
            message: message.into(),
            details: Value::Object(Default::default()),
            retry_after_secs: None,
        }))
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after_secs = Some(seconds);
        self
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = details;
        self
    }

    /// 422 naming the invalid field (`details.field`, `details.reason`, and `details.errors`
    /// listing it, as multi-field 422s list every field).
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {message}"),
        )
        .with_details(serde_json::json!({
            "field": field, "reason": message,
            "errors": [{ "field": field, "reason": message }],
        }))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The error code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The JSON body this error answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.0.code.to_string(),
                message: self.0.message.clone(),
                details: self.0.details.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.code,
            self.0.message
        )
    }
}

impl std::error::Error for ApiError {}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.0.status
    }

    fn as_response(&self) -> Response {
        let mut resp = poem::web::Json(self.body()).into_response();
        resp.set_status(self.0.status);
        if let Some(secs) = self.0.retry_after_secs {
            resp.headers_mut()
                .insert(poem::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Statuses an operation can fail with, documented in the OpenAPI spec.
const DOCUMENTED_STATUSES: &[(u16, &str)] = &[
    (400, "Malformed request"),
    (401, "Not authenticated"),
    (403, "Not allowed"),
    (404, "Not found (also for another tenant's resources)"),
    (409, "Conflict or duplicate"),
    (413, "Payload too large"),
    (422, "Invalid field value; `details.field` names it"),
    (429, "Limit reached"),
    (500, "Internal error"),
    (503, "A backing service is unavailable"),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED_STATUSES
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}

impl From<imix_core::Error> for ApiError {
    fn from(err: imix_core::Error) -> Self {
        use imix_core::Error as E;
        match &err {
            E::NotFound { entity, .. } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{entity} not found"),
            ),
            E::Duplicate { entity, field } => Self::new(
                StatusCode::CONFLICT,
                format!("{field}_taken"),
                format!("a {entity} with this {field} already exists"),
            )
            .with_details(serde_json::json!({ "field": field })),
            E::VersionConflict { entity, .. } => Self::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("the {entity} was changed by someone else; reload and try again"),
            ),
            E::Invalid { field, message } => Self::invalid_field(field, message.clone()),
            E::Crypto(_) | E::Corrupt { .. } | E::Backend { .. } => {
                // The cause goes to the log, never to the client.
                tracing::error!(error = %err, "storage failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

/// Turns any error leaving the application into the JSON error shape, and enforces the
/// request body limits (see [`crate::body`]) on the bytes actually read.
pub struct ErrorShapeMiddleware {
    rules: Arc<RequestRules>,
}

impl ErrorShapeMiddleware {
    /// The middleware for the operations described by `rules`.
    pub fn new(rules: Arc<RequestRules>) -> Self {
        Self { rules }
    }
}

impl<E: Endpoint> Middleware<E> for ErrorShapeMiddleware {
    type Output = ErrorShapeEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        ErrorShapeEndpoint {
            inner: ep,
            rules: self.rules.clone(),
        }
    }
}

/// The endpoint made by [`ErrorShapeMiddleware`].
pub struct ErrorShapeEndpoint<E> {
    inner: E,
    rules: Arc<RequestRules>,
}

/// 413 for a body over `limit` bytes.
fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
    .with_details(serde_json::json!({ "max_bytes": limit }))
}

/// 415 `unsupported_content_encoding` for a body with a `Content-Encoding` other than
/// `identity`: bodies are never decompressed, and must not be read as if they were plain.
fn unsupported_encoding(req: &Request) -> Option<ApiError> {
    let values: Vec<&poem::http::HeaderValue> = req
        .headers()
        .get_all(poem::http::header::CONTENT_ENCODING)
        .iter()
        .collect();
    let mut refused = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else {
            refused.push("(not text)".to_owned());
            continue;
        };
        refused.extend(
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
                .map(str::to_owned),
        );
    }
    let first = refused.first()?;
    Some(
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!(
                "request bodies with Content-Encoding `{first}` are not accepted; send them \
                 uncompressed"
            ),
        )
        .with_details(serde_json::json!({ "content_encoding": refused.join(", ") })),
    )
}

/// The answer of `err` to a request whose body was not read to its end: with
/// `Connection: close`, so that the client does not send its next request on a connection
/// still holding (or about to reset over) the rest of this body.
fn closing(err: ApiError) -> Response {
    let mut resp = err.as_response();
    resp.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    resp
}

/// 408 for a body that stopped coming (the connection is closed after the answer).
fn stalled() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body sent nothing for {} seconds",
            BODY_PROGRESS_TIMEOUT.as_secs()
        ),
    )
}

fn is_json(req: &Request) -> bool {
    req.content_type().is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    })
}

impl<E: Endpoint> Endpoint for ErrorShapeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        if let Some(refused) = unsupported_encoding(&req) {
            return Ok(closing(refused));
        }
        // Only a multipart body to an upload operation may be large; anything else (JSON
        // included, on any route) is held to the small limit before any handler or auth.
        let limit = self.rules.body_limit(&method, &path, req.content_type());
        let declared = req
            .header(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Ok(closing(too_large(limit)));
        }
        // JSON bodies are small: read them here (so that a failed parse can be diagnosed
        // field by field); every other body is counted as the handler reads it.
        let flags = Arc::new(BodyFlags::default());
        let mut json = None;
        if is_json(&req) {
            match read_limited(req.take_body(), limit, BODY_PROGRESS_TIMEOUT).await {
                Ok(bytes) => {
                    req.set_body(bytes.clone());
                    json = Some(bytes);
                }
                Err(ReadFailure::TooLarge) => return Ok(closing(too_large(limit))),
                Err(ReadFailure::Stalled) => return Ok(closing(stalled())),
                Err(ReadFailure::Io(e)) => {
                    return Ok(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_body",
                        format!("the request body could not be read: {e}"),
                    )
                    .as_response())
                }
            }
        } else {
            let body = limit_body(req.take_body(), limit, BODY_PROGRESS_TIMEOUT, flags.clone());
            req.set_body(body);
        }
        let result = self.inner.call(req).await;
        let exceeded = flags.exceeded.load(Ordering::SeqCst);
        if exceeded || flags.stalled.load(Ordering::SeqCst) {
            // Whatever the handler made of the failed read, the answer is 413 (or 408).
            let operation = match result {
                Ok(resp) => resp
                    .into_response()
                    .data::<poem_openapi::OperationId>()
                    .copied(),
                Err(e) => e.data::<poem_openapi::OperationId>().copied(),
            };
            let mut resp = if exceeded {
                closing(too_large(limit))
            } else {
                closing(stalled())
            };
            if let Some(op) = operation {
                resp.set_data(op);
            }
            return Ok(resp);
        }
        match result {
            Ok(resp) => Ok(resp.into_response()),
            Err(err) => Ok(shape(err, &method, &path, json.as_deref(), &self.rules)),
        }
    }
}

fn shape(
    err: poem::Error,
    method: &poem::http::Method,
    path: &str,
    json: Option<&[u8]>,
    rules: &RequestRules,
) -> Response {
    let operation = err.data::<poem_openapi::OperationId>().copied();
    let mut resp = match err.downcast_ref::<ApiError>() {
        Some(api) => api.as_response(),
        None => classify(&err, method, path, operation.map(|o| o.0), json, rules).as_response(),
    };
    if let Some(op) = operation {
        resp.set_data(op);
    }
    resp
}

/// 422 for the field problems of a body (the first in `details.field`, all in
/// `details.errors`).
fn field_problems(problems: &[FieldProblem]) -> Option<ApiError> {
    problems.first()?;
    let all: Vec<Value> = problems
        .iter()
        .map(|p| {
            let mut e = serde_json::json!({ "field": p.field, "reason": p.reason });
            if let Some(allowed) = &p.allowed {
                e["allowed"] = Value::Array(allowed.clone());
            }
            e
        })
        .collect();
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.reason))
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = all[0].clone();
    details["errors"] = Value::Array(all);
    Some(
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
            .with_details(details),
    )
}

/// 400 (not JSON at all) or 422 (fields that do not fit the schema) for a JSON body the
/// operation could not parse.
fn diagnose_json(op: Option<&str>, json: &[u8], rules: &RequestRules, reason: &str) -> ApiError {
    if json.iter().all(u8::is_ascii_whitespace) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "a JSON request body is required",
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(json);
    let value: Value = match serde_path_to_error::deserialize(de) {
        Ok(v) => v,
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let mut details = serde_json::json!({ "line": inner.line(), "column": inner.column() });
            let message = if field == "." {
                format!("the request body is not valid JSON: {inner}")
            } else {
                details["field"] = Value::String(field.clone());
                format!("the request body is not valid JSON at `{field}`: {inner}")
            };
            return ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", message)
                .with_details(details);
        }
    };
    if let Some(op) = op {
        if !value.is_object() && rules.is_json(op) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "the request body must be a JSON object",
            );
        }
        if let Some(api) = field_problems(&rules.diagnose(op, &value)) {
            return api;
        }
    }
    // The parser's trail ("(occurred while parsing \"AiSettingsUpdate\")") names our Rust
    // types, which mean nothing to the caller.
    let reason = reason
        .split(" (occurred while parsing")
        .next()
        .unwrap_or(reason);
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_body",
        format!("the request body could not be read: {reason}"),
    )
}

/// The name between the first pair of backticks of a framework message.
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Maps framework errors (routing, parsing) onto codes.
fn classify(
    err: &poem::Error,
    method: &poem::http::Method,
    path: &str,
    operation: Option<&str>,
    json: Option<&[u8]>,
    rules: &RequestRules,
) -> ApiError {
    use poem_openapi::error::{
        ContentTypeError, ParseMultipartError, ParseParamError, ParseRequestPayloadError,
    };
    let status = err.status();
    if let Some(p) = err.downcast_ref::<ParseParamError>() {
        if let Some(allowed) = operation.and_then(|op| rules.param_allowed(op, p.name)) {
            // The parser's reason names our Rust types ("OutboundStatusDto"): say what the
            // caller can send instead.
            let list = allowed
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", ");
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("parameter `{}`: must be one of {list}", p.name),
            )
            .with_details(serde_json::json!({ "field": p.name, "allowed": allowed }));
        }
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("parameter `{}`: {}", p.name, p.reason),
        )
        .with_details(serde_json::json!({ "field": p.name, "reason": p.reason }));
    }
    if let Some(p) = err.downcast_ref::<ParseRequestPayloadError>() {
        return match json {
            Some(json) => diagnose_json(operation, json, rules, &p.reason),
            None => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the request body could not be read: {}", p.reason),
            ),
        };
    }
    if let Some(p) = err.downcast_ref::<ParseMultipartError>() {
        let field = backticked(&p.reason);
        if let (Some(field), true) = (field, p.reason.ends_with("is required")) {
            return ApiError::invalid_field(field, "is required");
        }
        let api = ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_multipart",
            format!("the multipart body could not be read: {}", p.reason),
        );
        return match field {
            Some(field) => api.with_details(serde_json::json!({ "field": field })),
            None => api,
        };
    }
    if let Some(p) = err.downcast_ref::<poem::error::ParseMultipartError>() {
        use poem::error::ParseMultipartError as M;
        return match p {
            M::InvalidContentType(_) | M::ContentTypeRequired => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                p.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_multipart",
                format!("the multipart body could not be read: {p}"),
            ),
        };
    }
    if let Some(p) = err.downcast_ref::<poem::error::ParseQueryError>() {
        let reason = p.0.to_string();
        return match (backticked(&reason), reason.starts_with("duplicate field")) {
            (Some(field), true) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "duplicate_parameter",
                format!("the query parameter `{field}` is given more than once"),
            )
            .with_details(serde_json::json!({ "field": field })),
            (Some(field), false) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("query parameter `{field}`: {reason}"),
            )
            .with_details(serde_json::json!({ "field": field, "reason": reason })),
            (None, _) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("the query string could not be read: {reason}"),
            ),
        };
    }
    if let Some(poem::error::ParseFormError::UrlDecode(e)) =
        err.downcast_ref::<poem::error::ParseFormError>()
    {
        let reason = e.to_string();
        let api = ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            format!("the form body could not be read: {reason}"),
        );
        return match backticked(&reason) {
            Some(field) => api.with_details(serde_json::json!({ "field": field })),
            None => api,
        };
    }
    if err.downcast_ref::<ContentTypeError>().is_some() {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            err.to_string(),
        );
    }
    match status {
        StatusCode::NOT_FOUND => {
            ApiError::new(status, "not_found", format!("no route for {method} {path}"))
        }
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "payload_too_large", "the request body is too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "unsupported_media_type", err.to_string())
        }
        StatusCode::UNAUTHORIZED => ApiError::new(
            status,
            "unauthenticated",
            "a valid bearer token is required",
        ),
        s if s.is_client_error() => ApiError::new(s, "bad_request", err.to_string()),
        s => {
            tracing::error!(status = s.as_u16(), error = %err, "request failed");
            ApiError::new(
                s,
                "internal_error",
                "an internal error occurred; it has been logged",
            )
        }
    }
}

/// A refusal of an access context (any capability's): the same answers as tenancy's own
/// refusals, 403 `forbidden` naming the permission, or 404 `not_found`.
impl From<imix_core::access::AccessDenied> for ApiError {
    fn from(err: imix_core::access::AccessDenied) -> Self {
        imix_tenancy::TenancyError::from(err).into()
    }
}

impl From<imix_tenancy::TenancyError> for ApiError {
    fn from(err: imix_tenancy::TenancyError) -> Self {
        use imix_tenancy::TenancyError as T;
        match err {
            T::Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required",
            ),
            T::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid email or password",
            ),
            T::TooManyAttempts { retry_after_secs } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!(
                    "too many failed sign-in attempts; try again in {retry_after_secs} seconds"
                ),
            )
            .with_retry_after(retry_after_secs),
            T::PasswordChangeRequired => Self::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                "change your password first: POST /api/v1/auth/change-password",
            ),
            T::TenantDeactivated => Self::new(
                StatusCode::FORBIDDEN,
                "tenant_deactivated",
                "the tenant is deactivated",
            ),
            T::AccountDeactivated => Self::new(
                StatusCode::FORBIDDEN,
                "account_deactivated",
                "the account is deactivated",
            ),
            T::Forbidden { permission, reason } => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", reason).with_details(match permission
                {
                    Some(p) => serde_json::json!({ "permission": p.as_str() }),
                    None => serde_json::json!({}),
                })
            }
            T::NotFound { entity } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{entity} not found"),
            ),
            T::Invalid { field, message } => Self::invalid_field(&field, message),
            T::InvalidFields(problems) => {
                // The shape of every multi-field 422: `details.field`/`reason` name the
                // first, `details.errors` lists all.
                let all: Vec<Value> = problems
                    .iter()
                    .map(|p| serde_json::json!({ "field": p.field, "reason": p.message }))
                    .collect();
                let message = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let (field, reason) = problems
                    .first()
                    .map(|p| (p.field.clone(), p.message.clone()))
                    .unwrap_or_default();
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_details(
                    serde_json::json!({ "field": field, "reason": reason, "errors": all }),
                )
            }
            T::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                "email_taken",
                "a user with this email already exists",
            )
            .with_details(serde_json::json!({ "field": "email" })),
            T::VersionConflict { entity } => Self::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("the {entity} was changed by someone else; reload and try again"),
            ),
            T::LimitReached { what, limit } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_reached",
                format!("the tenant's limit of {limit} {what} is reached"),
            )
            .with_details(serde_json::json!({ "limit": limit, "what": what })),
            T::TooLarge { field, max_bytes } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("{field} is larger than {max_bytes} bytes"),
            )
            .with_details(serde_json::json!({ "field": field, "max_bytes": max_bytes })),
            T::TokenInvalid => {
                Self::invalid_field("token", "the link is invalid, expired or already used")
            }
            T::Quota(e) => e.into(),
            T::Mail(e) => {
                tracing::warn!(error = %e, "mail failure");
                Self::new(StatusCode::BAD_GATEWAY, "mail_failed", e.to_string())
            }
            T::Store(e) => e.into(),
            other @ T::Internal { .. } => {
                tracing::error!(error = %other, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

impl From<imix_tenancy::quota::QuotaError> for ApiError {
    fn from(err: imix_tenancy::quota::QuotaError) -> Self {
        use imix_tenancy::quota::QuotaError as Q;
        match err {
            Q::LimitReached { quota, limit, used, resets_at } => {
                let wait = (resets_at - imix_core::now()).num_seconds().max(1) as u64;
                Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "limit_reached",
                    format!("the daily limit of {limit} {} is reached; it resets at {resets_at}", quota.as_str()),
                )
                .with_details(serde_json::json!({
                    "limit_name": quota.as_str(), "limit": limit, "used": used, "resets_at": resets_at.to_rfc3339(),
                }))
                .with_retry_after(wait)
            }
            Q::CountLimitReached { kind, limit, current } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_reached",
                format!("the tenant's limit of {limit} {} is reached", kind.as_str()),
            )
            .with_details(serde_json::json!({ "limit_name": kind.as_str(), "limit": limit, "current": current })),
            other => {
                tracing::error!(error = %other, "quota backend failure");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "quota_unavailable", "usage counters are unavailable; try again shortly")
            }
        }
    }
}

impl From<imix_notify::NotifyError> for ApiError {
    fn from(err: imix_notify::NotifyError) -> Self {
        use imix_notify::NotifyError as N;
        match err {
            N::Invalid(errors) => {
                let all: Vec<Value> = errors
                    .iter()
                    .map(|e| serde_json::json!({ "field": e.field, "reason": e.message }))
                    .collect();
                let Some(first) = errors.first() else {
                    return Self::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        "invalid values",
                    );
                };
                let message = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_details(
                    serde_json::json!({ "field": first.field, "reason": first.message, "errors": all }),
                )
            }
            N::Access(e) => e.into(),
            N::TenantDeactivated => Self::new(
                StatusCode::CONFLICT,
                "tenant_deactivated",
                "the tenant is deactivated: nothing is sent on its behalf until it is activated",
            ),
            N::Store(e) => e.into(),
            N::Mail(e) => mail_failure(&e),
            N::Throttled { retry_after_secs } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many test emails; try again in {retry_after_secs} seconds"),
            )
            .with_details(serde_json::json!({ "retry_after_secs": retry_after_secs }))
            .with_retry_after(retry_after_secs),
            other @ (N::Template { .. } | N::Localization { .. }) => {
                tracing::error!(error = %other, "email templates failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

/// 502 for a mail server failure: `code` is the classification (`authentication`,
/// `connection`, `tls`, `timeout`, …, see `MailError::code`), the message says what happened
/// in words (with the server's reply when there is one).
pub fn mail_failure(err: &imix_notify::MailError) -> ApiError {
    tracing::warn!(error = %err, code = err.code(), "mail failure");
    ApiError::new(StatusCode::BAD_GATEWAY, err.code(), err.to_string())
        .with_details(serde_json::json!({ "transient": err.is_transient() }))
}

impl From<imix_whatsapp::ServiceError> for ApiError {
    fn from(err: imix_whatsapp::ServiceError) -> Self {
        use imix_whatsapp::{ErrorClass, ServiceError as W};
        match err {
            W::Access(e) => e.into(),
            W::Store(e) => e.into(),
            W::Invalid { field, message } => Self::invalid_field(field, message),
            W::TokenInvalid {
                message,
                code,
                subcode,
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "whatsapp_token_invalid",
                format!("Meta rejected the access token: {message}"),
            )
            .with_details(serde_json::json!({
                "field": "access_token", "meta_message": message, "meta_code": code, "meta_subcode": subcode,
            })),
            W::LimitReached { limit, current } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_reached",
                format!("the tenant's limit of {limit} templates is reached"),
            )
            .with_details(serde_json::json!({ "limit_name": "templates", "limit": limit, "current": current })),
            W::Graph(e) if e.class() == ErrorClass::Retryable => {
                tracing::warn!(target: "imix_whatsapp", error = %e, "Graph API unavailable");
                let mut api = Self::new(
                    StatusCode::BAD_GATEWAY,
                    "whatsapp_unavailable",
                    format!("Meta's Graph API is unreachable or failing; try again shortly ({e})"),
                );
                if let Some(wait) = e.retry_after() {
                    api = api.with_retry_after(wait.as_secs().max(1));
                }
                api
            }
            W::Graph(e) => match e.graph_error() {
                // Meta refused the request itself: say what Meta said.
                Some(g) => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "whatsapp_rejected",
                    format!(
                        "Meta refused the request: {}",
                        g.error_user_msg.as_deref().unwrap_or(&g.message)
                    ),
                )
                .with_details(serde_json::json!({
                    "meta_message": g.message, "meta_code": g.code, "meta_subcode": g.error_subcode,
                    "meta_details": g.error_data.as_ref().and_then(|d| d.details.clone()),
                    "fbtrace_id": g.fbtrace_id,
                })),
                None => {
                    tracing::warn!(target: "imix_whatsapp", error = %e, "unexpected Graph API answer");
                    Self::new(
                        StatusCode::BAD_GATEWAY,
                        "whatsapp_bad_response",
                        format!("Meta's Graph API answered unexpectedly ({e})"),
                    )
                }
            },
            other @ (W::Quota(_) | W::Crypto(_)) => {
                tracing::error!(error = %other, "whatsapp service failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

impl From<imix_messaging::MessagingError> for ApiError {
    fn from(err: imix_messaging::MessagingError) -> Self {
        use imix_messaging::MessagingError as M;
        match err {
            M::Denied(e) => e.into(),
            M::Store(e) => e.into(),
            M::Unverified => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "no entry of the delivery is signed by its account's app secret",
            ),
            M::LimitReached {
                limit_name,
                limit,
                current,
            } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_reached",
                format!("the tenant's limit of {limit} {limit_name} is reached"),
            )
            .with_details(
                serde_json::json!({ "limit_name": limit_name, "limit": limit, "current": current }),
            ),
            M::NotAuthor => Self::new(
                StatusCode::FORBIDDEN,
                "not_author",
                "only the author of a note may edit it",
            ),
            M::Counter(e) => {
                tracing::error!(error = %e, "quota backend failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "quota_unavailable",
                    "usage counters are unavailable; try again shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "messaging failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

impl From<imix_subscriptions::SubscriptionError> for ApiError {
    fn from(err: imix_subscriptions::SubscriptionError) -> Self {
        use imix_subscriptions::SubscriptionError as S;
        match err {
            S::Access(e) => e.into(),
            S::Store(e) => e.into(),
            S::Invalid { field, message } => Self::invalid_field(field, message),
            S::Crypto { .. } => {
                tracing::error!(error = %err, "webhook endpoint secret failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}
