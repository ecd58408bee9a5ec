//! Request bodies at the edge: per-route size limits enforced on the bytes actually read
//! (whatever the transfer encoding), and the field-level diagnosis of JSON bodies that do
//! not match their operation's schema.
//!
//! Both are driven by the published OpenAPI document, so a new operation needs no entry
//! here: a `multipart/form-data` body sent to an operation whose request body is
//! `multipart/form-data` (an upload) gets [`UPLOAD_BODY_LIMIT`]; every other request (any
//! other content type, on any route, uploads included) gets [`SMALL_BODY_LIMIT`].

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use poem::http::Method;
use serde_json::Value;

/// The largest body of a JSON or form request (every operation that is not an upload).
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// The largest webhook delivery accepted (413 beyond).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
/// The largest body of an upload (a 20 MiB document plus multipart overhead).
pub const UPLOAD_BODY_LIMIT: usize = 21 * 1024 * 1024;

/// One segment of an operation's path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// What the edge knows about operations' request bodies, read from the OpenAPI document.
#[derive(Debug, Default)]
pub struct RequestRules {
    /// Method and path template of every upload (multipart) operation.
    uploads: Vec<(Method, Vec<Segment>)>,
    /// Uploads with a limit of their own instead of [`UPLOAD_BODY_LIMIT`] (backup archives).
    own_limits: Vec<(Method, Vec<Segment>, usize)>,
    /// Request body schema of each JSON operation, by operation id.
    json_schemas: HashMap<String, Value>,
    /// Operation ids whose body is multipart.
    multipart: Vec<String>,
    /// `components.schemas`, for `$ref`s.
    components: serde_json::Map<String, Value>,
    /// The allowed values of each enumerated parameter, by operation id and parameter name.
    param_enums: HashMap<(String, String), Vec<Value>>,
}

/// A body field that does not match its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldProblem {
    /// Where, e.g. `default_language`, `limits.max_agents` or `components[0].type`.
    pub field: String,
    /// Why, for people.
    pub reason: String,
    /// The allowed values, when the field is an enumeration.
    pub allowed: Option<Vec<Value>>,
}

impl RequestRules {
    /// Reads the rules from an OpenAPI 3 document.
    pub fn from_spec(spec: &Value) -> Self {
        let mut rules = Self {
            components: spec
                .pointer("/components/schemas")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            ..Self::default()
        };
        let Some(paths) = spec.get("paths").and_then(Value::as_object) else {
            return rules;
        };
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                if op.pointer("/requestBody/content").is_none() {
                    rules.read_param_enums(op.get("operationId").and_then(Value::as_str), op);
                }
                let Some(content) = op
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                else {
                    continue;
                };
                let op_id = op.get("operationId").and_then(Value::as_str);
                rules.read_param_enums(op_id, op);
                for (media, body) in content {
                    if media.starts_with("multipart/form-data") {
                        if let Ok(method) = method.to_uppercase().parse::<Method>() {
                            rules.uploads.push((method, template(path)));
                        }
                        if let Some(id) = op_id {
                            rules.multipart.push(id.to_owned());
                        }
                    } else if media.starts_with("application/json") {
                        if let (Some(id), Some(schema)) = (op_id, body.get("schema")) {
                            rules.json_schemas.insert(id.to_owned(), schema.clone());
                        }
                    }
                }
            }
        }
        rules
    }

    /// Records the enumerated parameters of operation `op`.
    fn read_param_enums(&mut self, op_id: Option<&str>, op: &Value) {
        let (Some(op_id), Some(params)) = (op_id, op.get("parameters").and_then(Value::as_array))
        else {
            return;
        };
        for param in params {
            let (Some(name), Some(schema)) = (
                param.get("name").and_then(Value::as_str),
                param.get("schema"),
            ) else {
                continue;
            };
            if let Some(allowed) = self.resolve(schema).get("enum").and_then(Value::as_array) {
                self.param_enums
                    .insert((op_id.to_owned(), name.to_owned()), allowed.clone());
            }
        }
    }

    /// The allowed values of parameter `name` of operation `op_id`, when it is an
    /// enumeration: what a 400 for a bad value lists, rather than the parser's type names.
    pub fn param_allowed(&self, op_id: &str, name: &str) -> Option<&[Value]> {
        self.param_enums
            .get(&(op_id.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
    }

    /// Gives the upload operation `method` `path` (a path template such as
    /// `/api/v1/system/backups/upload`) the limit `limit` instead of [`UPLOAD_BODY_LIMIT`].
    pub fn with_upload_limit(mut self, method: Method, path: &str, limit: usize) -> Self {
        self.own_limits.push((method, template(path), limit));
        self
    }

    /// The body limit of a request to `method` `path` whose `Content-Type` is
    /// `content_type`: only a multipart body to an upload operation gets the upload limit.
    pub fn body_limit(&self, method: &Method, path: &str, content_type: Option<&str>) -> usize {
        // Meta's deliveries batch many messages; their documented ceiling is far below this.
        if path == "/webhooks/whatsapp" || path.starts_with("/webhooks/whatsapp/") {
            return WEBHOOK_BODY_LIMIT;
        }
        let multipart = content_type.is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("multipart/form-data")
        });
        if !multipart {
            return SMALL_BODY_LIMIT;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let matches = |m: &Method, template: &[Segment]| {
            m == method
                && template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| match t {
                    Segment::Param => !s.is_empty(),
                    Segment::Literal(l) => l == s,
                })
        };
        let is_upload = self.uploads.iter().any(|(m, t)| matches(m, t));
        if !is_upload {
            return SMALL_BODY_LIMIT;
        }
        self.own_limits
            .iter()
            .find(|(m, t, _)| matches(m, t))
            .map_or(UPLOAD_BODY_LIMIT, |(_, _, limit)| *limit)
    }

    /// Whether operation `op` takes a multipart body.
    pub fn is_multipart(&self, op: &str) -> bool {
        self.multipart.iter().any(|m| m == op)
    }

    /// Whether operation `op` takes a JSON body.
    pub fn is_json(&self, op: &str) -> bool {
        self.json_schemas.contains_key(op)
    }

    /// The fields of `body` that do not match operation `op`'s request schema, sorted by
    /// field (empty when the operation is unknown or everything matches).
    pub fn diagnose(&self, op: &str, body: &Value) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if let Some(schema) = self.json_schemas.get(op) {
            self.check(body, schema, "", &mut problems, 0);
        }
        // By field, whatever the order of the body's keys.
        problems.sort_by(|a, b| a.field.cmp(&b.field));
        problems
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/components/schemas/")
                .and_then(|name| self.components.get(name))
                .unwrap_or(&Value::Null),
            None => schema,
        }
    }

    fn check(
        &self,
        value: &Value,
        schema: &Value,
        path: &str,
        problems: &mut Vec<FieldProblem>,
        depth: usize,
    ) {
        // Schemas are finite, but a recursive `$ref` must not recurse forever.
        if depth > 32 {
            return;
        }
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            let before = problems.len();
            for part in all {
                if problems.len() == before {
                    self.check(value, part, path, problems, depth + 1);
                }
            }
        }
        let problem = |reason: String| FieldProblem {
            field: path.to_owned(),
            reason,
            allowed: None,
        };
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let list: Vec<String> = allowed
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect();
                problems.push(FieldProblem {
                    allowed: Some(allowed.clone()),
                    ..problem(format!("must be one of: {}", list.join(", ")))
                });
                return;
            }
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {
                let Some(object) = value.as_object() else {
                    problems.push(problem("must be an object".into()));
                    return;
                };
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for name in &required {
                    if object.get(*name).is_none_or(Value::is_null) {
                        problems.push(FieldProblem {
                            field: join(path, name),
                            reason: "is required".into(),
                            allowed: None,
                        });
                    }
                }
                let properties = schema.get("properties").and_then(Value::as_object);
                // A map (`BTreeMap<String, T>`): every value has the one schema.
                let values = schema.get("additionalProperties").filter(|s| s.is_object());
                for (name, field) in object {
                    // Unknown fields are ignored; null clears an optional field.
                    let Some(field_schema) = properties.and_then(|p| p.get(name)).or(values) else {
                        continue;
                    };
                    if field.is_null() {
                        continue;
                    }
                    self.check(field, field_schema, &join(path, name), problems, depth + 1);
                }
            }
            Some("array") => {
                let Some(items) = value.as_array() else {
                    problems.push(problem("must be an array".into()));
                    return;
                };
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{path}[{i}]");
                        self.check(item, item_schema, &at, problems, depth + 1);
                    }
                }
            }
            Some("string") if !value.is_string() => {
                problems.push(problem("must be a string".into()));
            }
            Some("boolean") if !value.is_boolean() => {
                problems.push(problem("must be true or false".into()));
            }
            Some("number") if !value.is_number() => {
                problems.push(problem("must be a number".into()));
            }
            Some("integer") => {
                let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
                let (min, max): (i128, i128) = match format {
                    "uint8" => (0, u8::MAX.into()),
                    "uint16" => (0, u16::MAX.into()),
                    "uint32" => (0, u32::MAX.into()),
                    "uint64" => (0, i64::MAX.into()),
                    "int8" => (i8::MIN.into(), i8::MAX.into()),
                    "int16" => (i16::MIN.into(), i16::MAX.into()),
                    "int32" => (i32::MIN.into(), i32::MAX.into()),
                    _ => (i64::MIN.into(), i64::MAX.into()),
                };
                let uint64 = format == "uint64";
                let whole = value
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| value.as_u64().map(i128::from));
                let fits = match (whole, uint64) {
                    (Some(n), true) => n >= 0,
                    (Some(n), false) => (min..=max).contains(&n),
                    (None, _) => false,
                };
                if !fits {
                    problems.push(problem(match (uint64, max == i128::from(i64::MAX)) {
                        (true, _) => "must be a whole number, 0 or more".to_owned(),
                        (false, true) => "must be a whole number".to_owned(),
                        (false, false) => format!("must be a whole number from {min} to {max}"),
                    }));
                }
            }
            _ => {}
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn template(path: &str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                Segment::Param
            } else {
                Segment::Literal(s.to_owned())
            }
        })
        .collect()
}

/// How long a request body may go without sending a byte while the server waits for it
/// (a body that stalls is answered 408 `request_timeout` and its connection closed).
pub const BODY_PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body went past its limit.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client sent nothing for a while in the middle of the body.
    #[error("the request body sent nothing for {} seconds", .timeout.as_secs())]
    Stalled {
        /// How long the server waited.
        timeout: Duration,
    },
}

/// What went wrong while a handler read a body wrapped by [`limit_body`].
#[derive(Debug, Default)]
pub struct BodyFlags {
    /// The body went past its limit.
    pub exceeded: AtomicBool,
    /// The body stalled (no byte for the progress timeout).
    pub stalled: AtomicBool,
}

/// `body` as a stream of chunks, each of which must come within `timeout` (else the
/// stream fails with [`BodyError::Stalled`], sets `flags.stalled` and ends).
fn progressing(
    body: poem::Body,
    timeout: Duration,
    flags: Arc<BodyFlags>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let stream = Box::pin(body.into_bytes_stream());
    futures::stream::unfold(Some(stream), move |stream| {
        let flags = flags.clone();
        async move {
            let mut stream = stream?;
            match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(_) => {
                    flags.stalled.store(true, Ordering::SeqCst);
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            BodyError::Stalled { timeout },
                        )),
                        None,
                    ))
                }
            }
        }
    })
}

/// Wraps `body` so that reading more than `limit` bytes fails at once (and sets
/// `flags.exceeded`), whatever the transfer encoding: the count is of the bytes actually
/// read. A body that sends nothing for `timeout` fails too (and sets `flags.stalled`).
pub fn limit_body(
    body: poem::Body,
    limit: usize,
    timeout: Duration,
    flags: Arc<BodyFlags>,
) -> poem::Body {
    // The state is (bytes read, failed); after the failure the stream ends.
    let exceeded = flags.clone();
    let stream =
        progressing(body, timeout, flags).scan((0usize, false), move |(read, failed), chunk| {
            let item = if *failed {
                None
            } else {
                Some(match chunk {
                    Ok(bytes) => {
                        *read = read.saturating_add(bytes.len());
                        if *read > limit {
                            *failed = true;
                            exceeded.exceeded.store(true, Ordering::SeqCst);
                            Err(std::io::Error::other(BodyError::TooLarge { limit }))
                        } else {
                            Ok(bytes)
                        }
                    }
                    Err(e) => Err(e),
                })
            };
            futures::future::ready(item)
        });
    poem::Body::from_bytes_stream(stream)
}

/// Why [`read_limited`] failed.
#[derive(Debug)]
pub enum ReadFailure {
    /// The body went past its limit.
    TooLarge,
    /// The body sent nothing for the progress timeout.
    Stalled,
    /// The client's stream failed.
    Io(std::io::Error),
}

/// Reads a whole body of at most `limit` bytes, each chunk within `timeout`.
pub async fn read_limited(
    body: poem::Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ReadFailure> {
    let flags = Arc::new(BodyFlags::default());
    let mut stream = std::pin::pin!(progressing(body, timeout, flags.clone()));
    let mut data = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if flags.stalled.load(Ordering::SeqCst) {
                ReadFailure::Stalled
            } else {
                ReadFailure::Io(e)
            }
        })?;
        if data.len() + chunk.len() > limit {
            return Err(ReadFailure::TooLarge);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RequestRules {
        RequestRules::from_spec(&serde_json::json!({
            "paths": {
                "/api/v1/things": {"post": {"operationId": "create_thing", "requestBody": {"content": {
                    "application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}},
                "/api/v1/things/{id}/logo": {"put": {"operationId": "put_logo", "requestBody": {"content": {
                    "multipart/form-data": {"schema": {"type": "object"}}}}}}
            },
            "components": {"schemas": {
                "Lang": {"type": "string", "enum": ["en", "fr", "ar"]},
                "Limits": {"type": "object", "properties": {"max": {"type": "integer", "format": "uint64"}}},
                "Thing": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "lang": {"allOf": [{"$ref": "#/components/schemas/Lang"}, {"description": "x"}]},
                    "port": {"type": "integer", "format": "uint16"},
                    "on": {"type": "boolean"},
                    "limits": {"allOf": [{"$ref": "#/components/schemas/Limits"}]},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }}
            }}
        }))
    }

    #[test]
    fn uploads_get_the_large_limit_by_method_template_and_content_type() {
        let r = rules();
        let mp = Some("multipart/form-data; boundary=x");
        assert_eq!(
            r.body_limit(&Method::PUT, "/api/v1/things/abc/logo", mp),
            UPLOAD_BODY_LIMIT
        );
        // Any other content type on an upload route gets the small limit.
        for ct in [
            None,
            Some("application/json"),
            Some("application/octet-stream"),
        ] {
            assert_eq!(
                r.body_limit(&Method::PUT, "/api/v1/things/abc/logo", ct),
                SMALL_BODY_LIMIT
            );
        }
        assert_eq!(
            r.body_limit(&Method::POST, "/api/v1/things/abc/logo", mp),
            SMALL_BODY_LIMIT
        );
        assert_eq!(
            r.body_limit(&Method::POST, "/api/v1/things", mp),
            SMALL_BODY_LIMIT
        );
        assert_eq!(
            r.body_limit(&Method::POST, "/auth/token", mp),
            SMALL_BODY_LIMIT
        );
        assert!(r.is_multipart("put_logo") && !r.is_multipart("create_thing"));
    }

    #[test]
    fn diagnosis_names_each_bad_field() {
        let r = rules();
        let body = serde_json::json!({
            "lang": "de", "port": 70000, "on": "yes", "limits": {"max": -1}, "tags": ["a", 2],
            "unknown": 1, "name": null
        });
        let problems = r.diagnose("create_thing", &body);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["lang", "limits.max", "name", "on", "port", "tags[1]"],
            "{problems:?}"
        );
        let lang = &problems[0];
        assert_eq!(lang.reason, "must be one of: en, fr, ar");
        assert_eq!(
            lang.allowed,
            Some(vec!["en".into(), "fr".into(), "ar".into()])
        );
        assert!(r
            .diagnose(
                "create_thing",
                &serde_json::json!({"name": "x", "lang": "fr"})
            )
            .is_empty());
        assert!(r.diagnose("unknown_op", &body).is_empty());
    }

    /// A body whose sender stops mid-way: both readers give up after the timeout.
    #[tokio::test]
    async fn a_stalled_body_fails_after_the_progress_timeout() {
        let stalled = || {
            let first =
                futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"a\":"))]);
            poem::Body::from_bytes_stream(first.chain(futures::stream::pending()))
        };
        let timeout = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let read = read_limited(stalled(), 1024, timeout).await;
        assert!(matches!(read, Err(ReadFailure::Stalled)), "{read:?}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let flags = Arc::new(BodyFlags::default());
        let body = limit_body(stalled(), 1024, timeout, flags.clone());
        assert!(body.into_bytes().await.is_err());
        assert!(flags.stalled.load(Ordering::SeqCst));
        assert!(!flags.exceeded.load(Ordering::SeqCst));

        // A body that keeps coming is read whole.
        let whole = read_limited(
            poem::Body::from_bytes(Bytes::from_static(b"{}")),
            1024,
            timeout,
        )
        .await;
        assert_eq!(whole.ok().as_deref(), Some(&b"{}"[..]));
    }
}
