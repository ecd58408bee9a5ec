//! The simulator's HTTP handler: one endpoint that routes Graph API paths by hand, so
//! unknown paths and methods get Graph-shaped errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use poem::http::{header, Method, StatusCode};
use poem::web::RequestBody;
use poem::{Body, Endpoint, FromRequest, Request, Response};
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::inbound::{
    default_mime, inbound_from_json, status_from_json, SendMode, SimBatch, SimMedia,
};
use super::state::{
    graph_error, new_wamid, status_error, RecordedRequest, SentRecord, SimTemplateState, State,
};
use super::Inbound;
use crate::error::{GraphError, GraphErrorResponse};
use crate::model::{
    ButtonsAction, Interactive, ListAction, MediaSource, MessageContent, NewTemplate,
    OutboundMessage, TemplateComponent, TemplateParameter,
};
use crate::webhook::{InboundContent, InboundText, StatusKind};

pub(crate) struct GraphEndpoint {
    pub state: Arc<State>,
}

/// A Graph error answer.
struct Fail {
    status: StatusCode,
    error: Box<GraphError>,
    retry_after: Option<u64>,
}

type Answer = std::result::Result<Value, Fail>;

fn fail(
    status: u16,
    code: i64,
    subcode: Option<i64>,
    kind: &str,
    msg: &str,
    details: Option<&str>,
) -> Fail {
    Fail {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        error: Box::new(graph_error(code, subcode, kind, msg, details)),
        retry_after: None,
    }
}

fn invalid_parameter(details: &str) -> Fail {
    fail(
        400,
        100,
        None,
        "OAuthException",
        "(#100) Invalid parameter",
        Some(details),
    )
}

fn missing_object(method: &Method, id: &str) -> Fail {
    let verb = if *method == Method::GET {
        "get"
    } else if *method == Method::DELETE {
        "delete"
    } else {
        "post"
    };
    fail(
        400,
        100,
        Some(33),
        "GraphMethodException",
        &format!(
            "Unsupported {verb} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
        ),
        None,
    )
}

fn unknown_path(path: &str) -> Fail {
    fail(
        400,
        100,
        None,
        "OAuthException",
        &format!("Unknown path components: {path}"),
        None,
    )
}

/// A media file as the control routes answer it.
fn media_json(m: &SimMedia) -> Value {
    json!({"id": m.id, "mime_type": m.mime_type, "sha256": m.sha256, "file_size": m.file_size})
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=UTF-8")
        .body(value.to_string())
}

fn error_response(f: Fail) -> Response {
    let body = serde_json::to_value(GraphErrorResponse { error: *f.error }).unwrap_or(Value::Null);
    let mut response = json_response(f.status, &body);
    if f.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("OAuth \"Facebook Platform\" \"invalid_token\""),
        );
    }
    if let Some(seconds) = f.retry_after {
        if let Ok(v) = header::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// A valid JSON answer `{"success": true}` padded with spaces to `size` bytes; `chunked`
/// sends it without `Content-Length`, produced as it is read.
fn oversized_answer(size: usize, chunked: bool) -> Response {
    let head = br#"{"success":true}"#;
    let builder = Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json; charset=UTF-8");
    if chunked {
        builder.body(Body::from_async_read(Padded {
            head: head.len(),
            written: 0,
            size: size.max(head.len()),
        }))
    } else {
        let mut body = head.to_vec();
        body.resize(size.max(head.len()), b' ');
        builder.body(body)
    }
}

/// Reads as `{"success":true}` followed by spaces, `size` bytes in all.
struct Padded {
    head: usize,
    written: usize,
    size: usize,
}

impl tokio::io::AsyncRead for Padded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let head = br#"{"success":true}"#;
        const SPACES: [u8; 8192] = [b' '; 8192];
        let n = buf
            .remaining()
            .min(self.size - self.written)
            .min(SPACES.len());
        let (start, end) = (self.written, self.written + n);
        if start < self.head {
            buf.put_slice(&head[start..end.min(self.head)]);
        }
        let spaces = end - start.max(self.head).min(end);
        buf.put_slice(&SPACES[..spaces]);
        self.written = end;
        std::task::Poll::Ready(Ok(()))
    }
}

enum Owner {
    Business(String),
    Phone(String),
    Media(String),
}

impl Endpoint for GraphEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let (req, mut body) = req.split();
        let bytes = match body.take() {
            Ok(b) => b.into_bytes().await.unwrap_or_default(),
            Err(_) => Bytes::new(),
        };
        let mut record = RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            content_type: req.header(header::CONTENT_TYPE).map(str::to_owned),
            bearer: req
                .header(header::AUTHORIZATION)
                .is_some_and(|v| v.starts_with("Bearer ")),
            body: bytes.clone(),
            status: 0,
            response: Bytes::new(),
        };
        if let Some((size, chunked)) = self.state.with(|s| s.oversized.pop_front()) {
            record.status = 200;
            self.state.with(|s| s.requests.push(record));
            return Ok(oversized_answer(size, chunked));
        }
        let response = self.handle(req, bytes).await;
        let (parts, body) = response.into_parts();
        let out = body.into_bytes().await.unwrap_or_default();
        record.status = parts.status.as_u16();
        record.response = out.clone();
        self.state.with(|s| s.requests.push(record));
        Ok(Response::from_parts(parts, Body::from(out)))
    }
}

impl GraphEndpoint {
    async fn handle(&self, req: Request, bytes: Bytes) -> Response {
        let bearer = req
            .header(header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let path = req.uri().path().to_owned();
        let (fault, delay) = self.state.with(|s| (s.faults.pop_front(), s.delay));
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(fault) = fault {
            let mut response = match fault.error {
                Some(error) => error_response(Fail {
                    status: StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST),
                    error: Box::new(error),
                    retry_after: None,
                }),
                None => Response::builder()
                    .status(StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_GATEWAY))
                    .content_type("text/html")
                    .body("<html><body>Bad gateway</body></html>"),
            };
            if let Some(seconds) = fault.retry_after {
                if let Ok(v) = header::HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            return response;
        }
        let params: HashMap<String, String> = req.params().unwrap_or_default();
        let segments: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let method = req.method().clone();

        // Demo helper and media downloads live outside the versioned API.
        if segments == ["_simulator", "verification_code"] {
            let phone = params
                .get("phone_number_id")
                .map(String::as_str)
                .unwrap_or_default();
            let code = self
                .state
                .with(|s| s.phones.get(phone).and_then(|p| p.pending_code.clone()));
            return match code {
                Some(code) => json_response(
                    StatusCode::OK,
                    &json!({"phone_number_id": phone, "code": code}),
                ),
                None => error_response(invalid_parameter(
                    "no verification code is pending for this phone_number_id",
                )),
            };
        }
        if segments.first() == Some(&"_simulator") {
            return match self.control(&segments, &bytes).await {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(f) => error_response(f),
            };
        }
        if segments == ["whatsapp_business", "attachments"] {
            return self.download(bearer.as_deref(), &params);
        }

        let is_version = |s: &str| {
            s.strip_prefix('v')
                .and_then(|v| v.split_once('.'))
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
        };
        let (node, edge) = match segments.as_slice() {
            [v, node] if is_version(v) => (*node, None),
            [v, node, edge] if is_version(v) => (*node, Some(*edge)),
            _ => return error_response(unknown_path(&path)),
        };

        // Authentication, then the object and its owner.
        let token = match bearer {
            Some(t) if !t.is_empty() => t,
            _ => {
                return error_response(fail(
                    400,
                    104,
                    None,
                    "OAuthException",
                    "An access token is required to request this resource.",
                    None,
                ))
            }
        };
        if let Err(f) = self.authenticate(&token) {
            return error_response(f);
        }
        let owner = self.state.with(|s| {
            if s.businesses.contains_key(node) {
                Some(Owner::Business(node.to_owned()))
            } else if s.phones.contains_key(node) {
                Some(Owner::Phone(node.to_owned()))
            } else if s.media.contains_key(node) {
                Some(Owner::Media(node.to_owned()))
            } else {
                None
            }
        });
        let Some(owner) = owner else {
            return error_response(missing_object(&method, node));
        };
        let waba = self.state.with(|s| match &owner {
            Owner::Business(id) => Some(id.clone()),
            Owner::Phone(id) => s.phones.get(id).map(|p| p.waba_id.clone()),
            Owner::Media(id) => s.media.get(id).map(|m| m.waba_id.clone()),
        });
        let allowed = self.state.with(|s| {
            waba.as_ref()
                .and_then(|w| s.businesses.get(w))
                .is_some_and(|b| b.access_tokens.contains(&token))
        });
        if !allowed {
            return error_response(missing_object(&method, node));
        }

        let answer = match (&owner, edge, &method) {
            (Owner::Phone(id), Some("messages"), &Method::POST) => self.messages(id, &bytes),
            (Owner::Phone(id), Some("media"), &Method::POST) => {
                self.upload(id, &req, bytes.clone()).await
            }
            (Owner::Phone(id), None, &Method::GET) => self.phone_number(id, &params),
            (Owner::Phone(id), Some("request_code"), &Method::POST) => {
                self.request_code(id, &bytes)
            }
            (Owner::Phone(id), Some("verify_code"), &Method::POST) => self.verify_code(id, &bytes),
            (Owner::Phone(id), Some("register"), &Method::POST) => self.register(id, &bytes),
            (Owner::Media(id), None, &Method::GET) => self.media_info(id),
            (Owner::Media(id), None, &Method::DELETE) => {
                self.state.with(|s| s.media.remove(id));
                Ok(json!({"success": true}))
            }
            (Owner::Business(id), Some("message_templates"), &Method::GET) => {
                self.list_templates(id, &params)
            }
            (Owner::Business(id), Some("message_templates"), &Method::POST) => {
                self.create_template(id, &bytes)
            }
            (Owner::Business(id), Some("message_templates"), &Method::DELETE) => {
                self.delete_template(id, &params)
            }
            (Owner::Business(id), Some("subscribed_apps"), &Method::POST) => {
                self.subscribe(id, &bytes).await
            }
            (Owner::Business(id), None, &Method::GET) => Ok(json!({"id": id, "name": "imix Demo"})),
            _ => Err(unknown_path(&path)),
        };
        match answer {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(f) => error_response(f),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, Fail> {
    serde_json::from_slice(bytes).map_err(|e| invalid_parameter(&e.to_string()))
}

impl GraphEndpoint {
    fn authenticate(&self, token: &str) -> std::result::Result<(), Fail> {
        let (known, expired) = self.state.with(|s| {
            (
                s.businesses
                    .values()
                    .any(|b| b.access_tokens.iter().any(|t| t == token)),
                s.expired_tokens.contains(token),
            )
        });
        if expired {
            return Err(fail(
                401,
                190,
                Some(463),
                "OAuthException",
                "Error validating access token: Session has expired. The current time is later than the token's expiry time.",
                None,
            ));
        }
        if !known {
            return Err(fail(
                401,
                190,
                None,
                "OAuthException",
                "Invalid OAuth access token - Cannot parse access token",
                None,
            ));
        }
        Ok(())
    }

    fn messages(&self, phone_id: &str, bytes: &[u8]) -> Answer {
        let raw: Value = parse(bytes)?;
        if raw.get("status").and_then(Value::as_str) == Some("read") {
            if raw.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
                return Err(invalid_parameter(
                    "The parameter messaging_product is required.",
                ));
            }
            let Some(id) = raw.get("message_id").and_then(Value::as_str) else {
                return Err(invalid_parameter("The parameter message_id is required."));
            };
            self.state.with(|s| s.read_marks.push(id.to_owned()));
            return Ok(json!({"success": true}));
        }
        let message: OutboundMessage = parse(bytes)?;
        let to_digits: String = message.to.chars().filter(char::is_ascii_digit).collect();
        if to_digits.len() < 7
            || message
                .to
                .trim_start_matches('+')
                .chars()
                .any(|c| !c.is_ascii_digit())
        {
            return Err(fail(
                400,
                131030,
                None,
                "OAuthException",
                "(#131030) Recipient phone number not in allowed list",
                Some("Recipient phone number not in allowed list: the number is not a valid WhatsApp phone number."),
            ));
        }
        let registered = self
            .state
            .with(|s| s.phones.get(phone_id).is_some_and(|p| p.number.registered));
        if !registered {
            return Err(fail(
                400,
                133010,
                None,
                "OAuthException",
                "(#133010) Account not registered",
                Some("The phone number is not registered on the WhatsApp Business Platform."),
            ));
        }
        self.validate_content(phone_id, &message)?;
        self.check_throughput(phone_id)?;
        let wamid = new_wamid();
        let (auto, in_window) = self.state.with(|s| {
            s.sent.push(SentRecord {
                phone_number_id: phone_id.to_owned(),
                wamid: wamid.clone(),
                message: message.clone(),
                at: Instant::now(),
            });
            let in_window = s
                .phones
                .get(phone_id)
                .and_then(|p| p.last_inbound.get(&to_digits))
                .is_some_and(|t| t.elapsed() < Duration::from_secs(24 * 3600));
            (s.auto_statuses, in_window)
        });
        if auto {
            let state = self.state.clone();
            let wamid = wamid.clone();
            let needs_window = !matches!(message.content, MessageContent::Template { .. });
            tokio::spawn(async move {
                let result = if needs_window && !in_window {
                    state
                        .send_status(&wamid, StatusKind::Failed, vec![status_error(131047)])
                        .await
                        .map(|_| ())
                } else {
                    async {
                        for kind in [StatusKind::Sent, StatusKind::Delivered, StatusKind::Read] {
                            state.send_status(&wamid, kind, Vec::new()).await?;
                        }
                        Ok(())
                    }
                    .await
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "simulator could not send status webhooks");
                }
            });
        }
        let mut sent = json!({"id": wamid});
        if matches!(message.content, MessageContent::Template { .. }) {
            sent["message_status"] = json!("accepted");
        }
        Ok(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": message.to, "wa_id": to_digits}],
            "messages": [sent],
        }))
    }

    fn check_media(&self, field: &str, source: &MediaSource) -> std::result::Result<(), Fail> {
        match source {
            MediaSource::Id(id) => {
                if self.state.with(|s| s.media.contains_key(id)) {
                    Ok(())
                } else {
                    Err(invalid_parameter(&format!(
                        "Param {field}['id'] is not a valid whatsapp business account media attachment ID"
                    )))
                }
            }
            MediaSource::Link(link) => {
                if link.starts_with("http://") || link.starts_with("https://") {
                    Ok(())
                } else {
                    Err(invalid_parameter(&format!(
                        "Param {field}['link'] must be a valid HTTP(S) URL"
                    )))
                }
            }
        }
    }

    fn validate_content(
        &self,
        phone_id: &str,
        message: &OutboundMessage,
    ) -> std::result::Result<(), Fail> {
        let not_valid = |details: &str| {
            fail(
                400,
                131009,
                None,
                "OAuthException",
                "(#131009) Parameter value is not valid",
                Some(details),
            )
        };
        match &message.content {
            MessageContent::Text { text } => {
                if text.body.is_empty() || text.body.chars().count() > 4096 {
                    return Err(not_valid("text['body'] must be 1 to 4096 characters"));
                }
            }
            MessageContent::Image { image } => self.check_media("image", &image.source)?,
            MessageContent::Video { video } => self.check_media("video", &video.source)?,
            MessageContent::Document { document } => {
                self.check_media("document", &document.source)?
            }
            MessageContent::Audio { audio } => self.check_media("audio", &audio.source)?,
            MessageContent::Sticker { sticker } => self.check_media("sticker", &sticker.source)?,
            MessageContent::Location { location } => {
                let lat = location
                    .latitude
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (-90.0..=90.0).contains(v));
                let lon = location
                    .longitude
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (-180.0..=180.0).contains(v));
                if lat.is_none() || lon.is_none() {
                    return Err(not_valid("location latitude/longitude out of range"));
                }
            }
            MessageContent::Contacts { contacts } => {
                if contacts.is_empty() || contacts.len() > 5 {
                    return Err(not_valid("contacts must hold 1 to 5 contacts"));
                }
                if contacts
                    .iter()
                    .any(|c| c.name.formatted_name.as_deref().unwrap_or("").is_empty())
                {
                    return Err(invalid_parameter(
                        "The parameter contacts[0]['name']['formatted_name'] is required.",
                    ));
                }
            }
            MessageContent::Interactive { interactive } => match interactive {
                Interactive::Button {
                    action: ButtonsAction { buttons },
                    ..
                } => {
                    if buttons.is_empty() || buttons.len() > 3 {
                        return Err(not_valid("buttons must hold 1 to 3 buttons"));
                    }
                    if buttons
                        .iter()
                        .any(|b| b.reply.title.is_empty() || b.reply.title.chars().count() > 20)
                    {
                        return Err(not_valid("button title must be 1 to 20 characters"));
                    }
                }
                Interactive::List {
                    action: ListAction { sections, .. },
                    ..
                } => {
                    if sections.is_empty() || sections.len() > 10 {
                        return Err(not_valid("sections must hold 1 to 10 sections"));
                    }
                    let rows: usize = sections.iter().map(|s| s.rows.len()).sum();
                    if rows == 0 || rows > 10 {
                        return Err(not_valid("a list holds 1 to 10 rows in total"));
                    }
                }
                Interactive::CtaUrl { action, .. } => {
                    let text = &action.parameters.display_text;
                    if text.is_empty() || text.chars().count() > 20 {
                        return Err(not_valid("display_text must be 1 to 20 characters"));
                    }
                    if !action.parameters.url.starts_with("http://")
                        && !action.parameters.url.starts_with("https://")
                    {
                        return Err(not_valid("url must be an HTTP or HTTPS URL"));
                    }
                }
            },
            MessageContent::Reaction { reaction } => {
                if reaction.message_id.is_empty() {
                    return Err(invalid_parameter(
                        "The parameter reaction['message_id'] is required.",
                    ));
                }
            }
            MessageContent::Template { template } => {
                let found = self.state.with(|s| {
                    let waba = s.phones.get(phone_id).map(|p| p.waba_id.clone())?;
                    s.businesses
                        .get(&waba)?
                        .templates
                        .iter()
                        .find(|t| {
                            t.template.name == template.name
                                && t.template.language == template.language.code
                                && t.status == "APPROVED"
                        })
                        .map(|t| t.template.clone())
                });
                let Some(definition) = found else {
                    return Err(fail(
                        404,
                        132001,
                        None,
                        "OAuthException",
                        "(#132001) Template name does not exist in the translation",
                        Some(&format!(
                            "template name ({}) does not exist in {}",
                            template.name, template.language.code
                        )),
                    ));
                };
                let expected = |kind: &str| {
                    definition
                        .components
                        .iter()
                        .find(|c| c.kind.eq_ignore_ascii_case(kind))
                        .map(|c| match c.format.as_deref() {
                            Some(f) if !f.eq_ignore_ascii_case("TEXT") => 1,
                            _ => c.placeholder_count(),
                        })
                        .unwrap_or(0)
                };
                let given = |want: &str| {
                    template
                        .components
                        .iter()
                        .filter_map(|c| match (c, want) {
                            (TemplateComponent::Header { parameters }, "header")
                            | (TemplateComponent::Body { parameters }, "body") => {
                                Some(parameters.len())
                            }
                            _ => None,
                        })
                        .sum::<usize>()
                };
                for kind in ["header", "body"] {
                    let (want, got) = (expected(kind), given(kind));
                    if want != got {
                        return Err(fail(
                            400,
                            132000,
                            None,
                            "OAuthException",
                            "(#132000) Number of parameters does not match the expected number of params",
                            Some(&format!(
                                "{kind}: number of localizable_params ({got}) does not match the expected number of params ({want})"
                            )),
                        ));
                    }
                }
                for c in &template.components {
                    if let TemplateComponent::Header { parameters }
                    | TemplateComponent::Body { parameters } = c
                    {
                        for p in parameters {
                            if let TemplateParameter::Image { image: m }
                            | TemplateParameter::Video { video: m }
                            | TemplateParameter::Document { document: m } = p
                            {
                                self.check_media("header", &m.source)?;
                            }
                        }
                    }
                    if let TemplateComponent::Button {
                        index, parameters, ..
                    } = c
                    {
                        if index.parse::<u8>().map_or(true, |i| i > 9) || parameters.is_empty() {
                            return Err(invalid_parameter(
                                "button index must be 0 to 9 with at least one parameter",
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_throughput(&self, phone_id: &str) -> std::result::Result<(), Fail> {
        let ok = self.state.with(|s| {
            let Some(p) = s.phones.get_mut(phone_id) else {
                return false;
            };
            let now = Instant::now();
            while p
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                p.window.pop_front();
            }
            if p.window.len() as u64 >= u64::from(p.number.messages_per_second) {
                false
            } else {
                p.window.push_back(now);
                true
            }
        });
        if ok {
            Ok(())
        } else {
            let mut f = fail(
                429,
                130429,
                None,
                "OAuthException",
                "(#130429) Rate limit hit",
                Some("Cloud API message throughput has been reached."),
            );
            f.retry_after = Some(1);
            Err(f)
        }
    }

    async fn upload(&self, phone_id: &str, req: &Request, bytes: Bytes) -> Answer {
        let mut body = RequestBody::new(Body::from(bytes));
        let mut multipart = poem::web::Multipart::from_request(req, &mut body)
            .await
            .map_err(|e| invalid_parameter(&format!("expected multipart/form-data: {e}")))?;
        let mut product = None;
        let mut file: Option<(String, Bytes)> = None;
        while let Ok(Some(field)) = multipart.next_field().await {
            match field.name().unwrap_or_default() {
                "messaging_product" => product = field.text().await.ok(),
                "file" => {
                    let mime = field
                        .content_type()
                        .unwrap_or("application/octet-stream")
                        .to_owned();
                    let data = field
                        .bytes()
                        .await
                        .map_err(|e| invalid_parameter(&e.to_string()))?;
                    file = Some((mime, Bytes::from(data)));
                }
                _ => {}
            }
        }
        if product.as_deref() != Some("whatsapp") {
            return Err(invalid_parameter(
                "The parameter messaging_product is required.",
            ));
        }
        let Some((mime, data)) = file else {
            return Err(invalid_parameter("The parameter file is required."));
        };
        let waba = self
            .state
            .with(|s| s.phones.get(phone_id).map(|p| p.waba_id.clone()))
            .unwrap_or_default();
        let id = self.state.add_media(&waba, &mime, data);
        Ok(json!({"id": id}))
    }

    fn media_info(&self, id: &str) -> Answer {
        self.state
            .with(|s| {
                s.media.get(id).map(|m| {
                    json!({
                        "messaging_product": "whatsapp",
                        "url": format!("{}/whatsapp_business/attachments/?mid={id}", self.state.base_url),
                        "mime_type": m.mime_type,
                        "sha256": hex::encode(Sha256::digest(&m.data)),
                        "file_size": m.data.len().to_string(),
                        "id": id,
                    })
                })
            })
            .ok_or_else(|| missing_object(&Method::GET, id))
    }

    fn download(&self, bearer: Option<&str>, params: &HashMap<String, String>) -> Response {
        // An injected failure of this media's download (a CDN hiccup), counted down.
        let failure = params.get("mid").and_then(|mid| {
            self.state.with(|s| {
                let entry = s.download_failures.get_mut(mid)?;
                let status = entry.1;
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    s.download_failures.remove(mid);
                }
                Some(status)
            })
        });
        if let Some(status) = failure {
            return Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .content_type("text/plain")
                .body("simulated download failure");
        }
        let found = self.state.with(|s| {
            let media = s.media.get(params.get("mid")?)?;
            let business = s.businesses.get(&media.waba_id)?;
            let allowed = bearer.is_some_and(|t| business.access_tokens.iter().any(|a| a == t))
                && !bearer.is_some_and(|t| s.expired_tokens.contains(t));
            Some((allowed, media.mime_type.clone(), media.data.clone()))
        });
        match found {
            Some((true, mime, data)) => Response::builder()
                .status(StatusCode::OK)
                .content_type(mime)
                .body(data),
            Some((false, _, _)) => error_response(fail(
                401,
                190,
                None,
                "OAuthException",
                "Invalid OAuth access token - Cannot parse access token",
                None,
            )),
            None => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body("Not Found"),
        }
    }

    fn phone_number(&self, id: &str, params: &HashMap<String, String>) -> Answer {
        let full = self.state.with(|s| {
            s.phones.get(id).map(|p| {
                let n = &p.number;
                json!({
                    "id": n.id,
                    "display_phone_number": n.display_phone_number,
                    "verified_name": n.verified_name,
                    "quality_rating": n.quality_rating,
                    "code_verification_status": n.code_verification_status,
                    "name_status": n.name_status,
                    "messaging_limit_tier": n.messaging_limit_tier,
                    "throughput": {"level": n.throughput_level},
                    "status": if p.number.registered { "CONNECTED" } else { "PENDING" },
                    "platform_type": if p.number.registered { "CLOUD_API" } else { "NOT_APPLICABLE" },
                })
            })
        });
        let Some(Value::Object(full)) = full else {
            return Err(missing_object(&Method::GET, id));
        };
        let fields: Vec<String> = match params.get("fields") {
            Some(f) => f
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => [
                "id",
                "display_phone_number",
                "verified_name",
                "quality_rating",
            ]
            .map(String::from)
            .to_vec(),
        };
        let mut out = serde_json::Map::new();
        for f in fields {
            match full.get(&f) {
                Some(v) => {
                    out.insert(f, v.clone());
                }
                None => {
                    return Err(fail(
                        400,
                        100,
                        None,
                        "OAuthException",
                        &format!("(#100) Tried accessing nonexisting field ({f}) on node type (WhatsAppBusinessPhoneNumber)"),
                        None,
                    ))
                }
            }
        }
        if let Some(v) = full.get("id") {
            out.insert("id".to_owned(), v.clone());
        }
        Ok(Value::Object(out))
    }

    fn request_code(&self, id: &str, bytes: &[u8]) -> Answer {
        let body: Value = parse(bytes)?;
        let method = body
            .get("code_method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if method != "SMS" && method != "VOICE" {
            return Err(invalid_parameter(
                "The parameter code_method is required and must be SMS or VOICE.",
            ));
        }
        let language = body
            .get("language")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let valid_language = language.len() == 5
            && language.as_bytes()[2] == b'_'
            && language[..2].chars().all(|c| c.is_ascii_lowercase())
            && language[3..].chars().all(|c| c.is_ascii_uppercase());
        if !valid_language {
            return Err(invalid_parameter(
                "The parameter language is required, e.g. en_US.",
            ));
        }
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
        tracing::info!(
            target: "imix_whatsapp::simulator",
            phone_number_id = id,
            code_method = method,
            code = %code,
            "simulated verification code sent"
        );
        let sent = super::state::SentCode {
            phone_number_id: id.to_owned(),
            code_method: method.to_owned(),
            code: code.clone(),
        };
        self.state.with(|s| {
            if let Some(p) = s.phones.get_mut(id) {
                p.pending_code = Some(code);
            }
            s.code_listeners.retain(|l| l.send(sent.clone()).is_ok());
        });
        Ok(json!({"success": true}))
    }

    fn verify_code(&self, id: &str, bytes: &[u8]) -> Answer {
        let body: Value = parse(bytes)?;
        let code = body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ok = self.state.with(|s| {
            let Some(p) = s.phones.get_mut(id) else {
                return false;
            };
            if p.pending_code.as_deref() == Some(code.as_str()) {
                p.pending_code = None;
                p.number.code_verification_status = "VERIFIED".to_owned();
                true
            } else {
                false
            }
        });
        if ok {
            Ok(json!({"success": true}))
        } else {
            Err(fail(
                400,
                136025,
                None,
                "OAuthException",
                "(#136025) Verify code error",
                Some("Code couldn't be verified, You have entered the wrong code."),
            ))
        }
    }

    fn register(&self, id: &str, bytes: &[u8]) -> Answer {
        let body: Value = parse(bytes)?;
        if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
            return Err(invalid_parameter(
                "The parameter messaging_product is required.",
            ));
        }
        let pin = body
            .get("pin")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if pin.len() != 6 || !pin.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid_parameter(
                "The parameter pin must be a 6-digit number.",
            ));
        }
        let result = self.state.with(|s| {
            let Some(p) = s.phones.get_mut(id) else {
                return Err(false);
            };
            match &p.number.pin {
                Some(existing) if *existing != pin => Err(true),
                _ => {
                    p.number.pin = Some(pin);
                    p.number.registered = true;
                    Ok(())
                }
            }
        });
        match result {
            Ok(()) => Ok(json!({"success": true})),
            Err(true) => Err(fail(
                400,
                133005,
                None,
                "OAuthException",
                "(#133005) Two step verification PIN Mismatch",
                Some("Two step verification PIN incorrect."),
            )),
            Err(false) => Err(missing_object(&Method::POST, id)),
        }
    }

    fn list_templates(&self, waba: &str, params: &HashMap<String, String>) -> Answer {
        let limit = match params.get("limit") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| invalid_parameter("limit must be 1 to 1000"))?,
            None => 25,
        };
        let after = params.get("after").cloned();
        let (items, more) = self.state.with(|s| {
            let Some(b) = s.businesses.get(waba) else {
                return (Vec::new(), false);
            };
            let mut all: Vec<&SimTemplateState> = b
                .templates
                .iter()
                .filter(|t| params.get("name").is_none_or(|n| *n == t.template.name))
                .filter(|t| {
                    params
                        .get("status")
                        .is_none_or(|st| st.eq_ignore_ascii_case(&t.status))
                })
                .collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            let start = after
                .as_deref()
                .map(|a| {
                    all.iter()
                        .position(|t| t.id.as_str() > a)
                        .unwrap_or(all.len())
                })
                .unwrap_or(0);
            let page: Vec<_> = all[start..]
                .iter()
                .take(limit)
                .map(|t| t.to_model())
                .collect();
            let more = all.len() > start + page.len();
            (page, more)
        });
        let data = serde_json::to_value(&items).unwrap_or(Value::Array(Vec::new()));
        let mut out = json!({"data": data});
        if let (Some(first), Some(last)) = (items.first(), items.last()) {
            let mut paging = json!({"cursors": {"before": first.id, "after": last.id}});
            if more {
                paging["next"] = json!(format!(
                    "{}/v23.0/{waba}/message_templates?limit={limit}&after={}",
                    self.state.base_url, last.id
                ));
            }
            if after.is_some() {
                paging["previous"] = json!(format!(
                    "{}/v23.0/{waba}/message_templates?limit={limit}&before={}",
                    self.state.base_url, first.id
                ));
            }
            out["paging"] = paging;
        }
        Ok(out)
    }

    fn create_template(&self, waba: &str, bytes: &[u8]) -> Answer {
        let template: NewTemplate = parse(bytes)?;
        let valid_name = !template.name.is_empty()
            && template.name.len() <= 512
            && template
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            return Err(invalid_parameter(
                "name may contain only lowercase letters, digits and underscores",
            ));
        }
        if !crate::model::TEMPLATE_CATEGORIES.contains(&template.category.as_str()) {
            return Err(invalid_parameter(
                "category must be MARKETING, UTILITY or AUTHENTICATION",
            ));
        }
        if !template
            .components
            .iter()
            .any(|c| c.kind.eq_ignore_ascii_case("BODY"))
        {
            return Err(invalid_parameter("components must include a BODY"));
        }
        let created = self.state.with(|s| {
            let id = s.new_id();
            let status = if s.auto_approve {
                "APPROVED"
            } else {
                "PENDING"
            }
            .to_owned();
            let b = s.businesses.get_mut(waba)?;
            if b.templates.iter().any(|t| {
                t.template.name == template.name && t.template.language == template.language
            }) {
                return None;
            }
            let category = template.category.clone();
            b.templates.push(SimTemplateState {
                id: id.clone(),
                template,
                status: status.clone(),
            });
            Some(json!({"id": id, "status": status, "category": category}))
        });
        created.ok_or_else(|| Fail {
            status: StatusCode::BAD_REQUEST,
            error: Box::new(GraphError {
                error_user_title: Some("Content in This Language Already Exists".to_owned()),
                error_user_msg: Some(
                    "There is already content for this template in this language.".to_owned(),
                ),
                ..graph_error(
                    100,
                    Some(2388024),
                    "OAuthException",
                    "Invalid parameter",
                    None,
                )
            }),
            retry_after: None,
        })
    }

    fn delete_template(&self, waba: &str, params: &HashMap<String, String>) -> Answer {
        let Some(name) = params.get("name") else {
            return Err(invalid_parameter("The parameter name is required."));
        };
        let hsm_id = params.get("hsm_id");
        let removed = self.state.with(|s| {
            let Some(b) = s.businesses.get_mut(waba) else {
                return 0;
            };
            let before = b.templates.len();
            b.templates
                .retain(|t| !(t.template.name == *name && hsm_id.is_none_or(|h| *h == t.id)));
            before - b.templates.len()
        });
        if removed == 0 {
            return Err(fail(
                400,
                100,
                Some(2593002),
                "OAuthException",
                "Invalid parameter",
                Some(&format!("Message template \"{name}\" can't be found.")),
            ));
        }
        Ok(json!({"success": true}))
    }

    async fn subscribe(&self, waba: &str, bytes: &[u8]) -> Answer {
        let body: Value = if bytes.is_empty() {
            json!({})
        } else {
            parse(bytes)?
        };
        if let Some(uri) = body.get("override_callback_uri").and_then(Value::as_str) {
            let verify_token = body
                .get("verify_token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let challenge = rand::thread_rng()
                .gen_range(100_000_000u64..999_999_999)
                .to_string();
            let answer = self
                .state
                .http
                .get(uri)
                .query(&[
                    ("hub.mode", "subscribe"),
                    ("hub.verify_token", verify_token),
                    ("hub.challenge", &challenge),
                ])
                .send()
                .await;
            let ok = match answer {
                Ok(r) if r.status().is_success() => {
                    r.text().await.is_ok_and(|t| t.trim() == challenge)
                }
                _ => false,
            };
            if !ok {
                return Err(fail(
                    400,
                    2200,
                    None,
                    "OAuthException",
                    "(#2200) Callback verification failed with the following errors: HTTP Status Code = 403; HTTP Message = Forbidden",
                    None,
                ));
            }
            self.state.with(|s| {
                if let Some(b) = s.businesses.get_mut(waba) {
                    b.webhook_url = Some(uri.to_owned());
                }
            });
        }
        self.state.with(|s| {
            if let Some(b) = s.businesses.get_mut(waba) {
                b.subscribed = true;
            }
        });
        Ok(json!({"success": true}))
    }

    /// The `/_simulator/...` control routes (see the module documentation's table).
    async fn control(&self, segments: &[&str], bytes: &[u8]) -> Answer {
        match segments {
            ["_simulator", "inbound"] => self.demo_inbound(bytes).await,
            ["_simulator", "webhook_url"] => self.control_webhook_url(bytes),
            ["_simulator", "media"] => {
                let body: Value = parse(bytes)?;
                let media = self.control_media(&body, None)?;
                Ok(media_json(&media))
            }
            ["_simulator", "media", id, "fail_downloads"] => {
                let body: Value = parse(bytes)?;
                let count = body.get("count").and_then(Value::as_u64).unwrap_or(1);
                let status = body.get("status").and_then(Value::as_u64).unwrap_or(500);
                let known = self.state.with(|s| s.media.contains_key(*id));
                if !known {
                    return Err(missing_object(&Method::POST, id));
                }
                let (Ok(count), Ok(status)) = (u32::try_from(count), u16::try_from(status)) else {
                    return Err(invalid_parameter("count and status are out of range"));
                };
                if !(400..=599).contains(&status) {
                    return Err(invalid_parameter(
                        "status must be an HTTP error status (400-599)",
                    ));
                }
                self.state.with(|s| {
                    s.download_failures
                        .insert((*id).to_owned(), (count, status));
                });
                Ok(json!({"id": id, "count": count, "status": status}))
            }
            ["_simulator", "webhooks"] => self.control_webhooks(bytes).await,
            _ => Err(unknown_path(&segments.join("/"))),
        }
    }

    /// `POST /_simulator/webhook_url {"waba_id" | "phone_number_id", "url"}`.
    fn control_webhook_url(&self, bytes: &[u8]) -> Answer {
        let body: Value = parse(bytes)?;
        let field = |k: &str| body.get(k).and_then(Value::as_str);
        let Some(url) =
            field("url").filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        else {
            return Err(invalid_parameter("url is required (http:// or https://)"));
        };
        let waba = match (field("waba_id"), field("phone_number_id")) {
            (Some(w), _) => Some(w.to_owned()),
            (None, Some(p)) => self
                .state
                .with(|s| s.phones.get(p).map(|p| p.waba_id.clone())),
            (None, None) => None,
        };
        let updated = waba.as_ref().is_some_and(|w| {
            self.state.with(|s| match s.businesses.get_mut(w) {
                Some(b) => {
                    b.webhook_url = Some(url.to_owned());
                    true
                }
                None => false,
            })
        });
        if !updated {
            return Err(invalid_parameter(
                "waba_id or phone_number_id must name a known business",
            ));
        }
        Ok(json!({"waba_id": waba, "url": url}))
    }

    /// A media file for an inbound message: `phone_number_id`, optional `mime_type`
    /// (default by `kind`) and `data_base64` (default: a small generated file).
    fn control_media(
        &self,
        body: &Value,
        kind: Option<&str>,
    ) -> std::result::Result<SimMedia, Fail> {
        use base64::Engine;
        let phone = body
            .get("phone_number_id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_parameter("phone_number_id is required"))?;
        let mime = body
            .get("mime_type")
            .and_then(Value::as_str)
            .or_else(|| kind.and_then(default_mime))
            .unwrap_or("application/octet-stream");
        let data = match body.get("data_base64").and_then(Value::as_str) {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| invalid_parameter("data_base64 is not base64"))?,
            None => {
                let n: u64 = rand::thread_rng().gen();
                format!("simulated {mime} file {n:016x}").into_bytes()
            }
        };
        self.state
            .add_inbound_media(phone, mime, Bytes::from(data))
            .map_err(|e| invalid_parameter(&e.to_string()))
    }

    /// `POST /_simulator/webhooks`: a batch of entries × changes × messages/statuses,
    /// sent in the requested modes.
    async fn control_webhooks(&self, bytes: &[u8]) -> Answer {
        let body: Value = parse(bytes)?;
        let flag = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mode = SendMode {
            duplicate: flag("duplicate"),
            statuses_out_of_order: flag("statuses_out_of_order"),
            bad_signature: flag("bad_signature"),
        };
        let entries = body
            .get("entries")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid_parameter("entries is required: [{\"changes\": [...]}]"))?;
        let mut batch = SimBatch::new();
        for (e, entry) in entries.iter().enumerate() {
            if e > 0 {
                batch = batch.next_entry();
            }
            let changes = entry
                .get("changes")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid_parameter(&format!("entries[{e}].changes is required")))?;
            for (c, change) in changes.iter().enumerate() {
                let at = |what: &str| format!("entries[{e}].changes[{c}]{what}");
                let phone = change
                    .get("phone_number_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid_parameter(&format!("{} is required", at(".phone_number_id")))
                    })?;
                let mut messages = Vec::new();
                let listed = change.get("messages").and_then(Value::as_array);
                for (i, m) in listed.into_iter().flatten().enumerate() {
                    let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
                    let media = match default_mime(kind) {
                        Some(_) => Some(self.media_of(phone, kind, m)?),
                        None => None,
                    };
                    let built = inbound_from_json(m, media.as_ref()).map_err(|why| {
                        invalid_parameter(&format!("{}: {why}", at(&format!(".messages[{i}]"))))
                    })?;
                    messages.push(built);
                }
                let mut statuses = Vec::new();
                let listed = change.get("statuses").and_then(Value::as_array);
                for (i, st) in listed.into_iter().flatten().enumerate() {
                    let built = status_from_json(st).map_err(|why| {
                        invalid_parameter(&format!("{}: {why}", at(&format!(".statuses[{i}]"))))
                    })?;
                    statuses.push(built);
                }
                if !messages.is_empty() {
                    batch = batch.messages(phone, messages);
                }
                if !statuses.is_empty() {
                    batch = batch.statuses(phone, statuses);
                }
            }
        }
        let sent = self
            .state
            .send_batch(&batch, mode)
            .await
            .map_err(|e| invalid_parameter(&e.to_string()))?;
        let deliveries: Vec<Value> = sent
            .deliveries
            .iter()
            .map(|d| json!({"url": d.url, "webhook_status": d.status, "signature": d.signature, "bytes": d.body.len()}))
            .collect();
        Ok(json!({"wamids": sent.wamids, "deliveries": deliveries}))
    }

    /// The media of an inbound media message given to the control route: the file its
    /// `{type}.id` names, or a new one (`{type}.mime_type`, `{type}.data_base64`).
    fn media_of(
        &self,
        phone: &str,
        kind: &str,
        message: &Value,
    ) -> std::result::Result<SimMedia, Fail> {
        let object = message.get(kind).cloned().unwrap_or_else(|| json!({}));
        if let Some(id) = object.get("id").and_then(Value::as_str) {
            return self
                .state
                .with(|s| {
                    s.media.get(id).map(|m| {
                        use base64::Engine;
                        SimMedia {
                            id: id.to_owned(),
                            mime_type: m.mime_type.clone(),
                            sha256: base64::engine::general_purpose::STANDARD
                                .encode(Sha256::digest(&m.data)),
                            file_size: m.data.len(),
                        }
                    })
                })
                .ok_or_else(|| {
                    invalid_parameter(&format!("{kind}.id names no media of the simulator"))
                });
        }
        let mut spec = object;
        spec["phone_number_id"] = json!(phone);
        self.control_media(&spec, Some(kind))
    }

    /// `POST /_simulator/inbound {"phone_number_id", "from", "name", "text"}`.
    async fn demo_inbound(&self, bytes: &[u8]) -> Answer {
        let body: Value = parse(bytes)?;
        let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(phone), Some(from), Some(text)) =
            (field("phone_number_id"), field("from"), field("text"))
        else {
            return Err(invalid_parameter(
                "phone_number_id, from and text are required",
            ));
        };
        let name = field("name").unwrap_or_else(|| "Demo User".to_owned());
        let inbound = Inbound::new(
            from,
            name,
            InboundContent::Text {
                text: InboundText { body: text },
            },
        );
        match self.state.send_inbound(&phone, inbound).await {
            Ok((wamid, delivery)) => Ok(json!({"id": wamid, "webhook_status": delivery.status})),
            Err(e) => Err(invalid_parameter(&e.to_string())),
        }
    }
}
