//! The simulator's in-memory state and webhook sender.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::inbound::{SendMode, SentBatch, SimBatch, SimInbound, SimMedia};
use super::{Fault, Inbound, SimBusiness, SimPhoneNumber, SimTemplate};
use crate::error::{Error, GraphError, GraphErrorData, Result};
use crate::model::{OutboundMessage, Template};
use crate::webhook::{
    self, ChangeValue, ContactProfile, InboundMessage, MessageStatus, Profile, StatusError,
    StatusErrorData, StatusKind, WebhookChange, WebhookEntry, WebhookMetadata, WebhookPayload,
};

/// A request the simulator received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/v23.0/2001/messages`.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// Whether an `Authorization: Bearer` header was present.
    pub bearer: bool,
    /// The raw body.
    pub body: Bytes,
    /// The HTTP status the simulator answered.
    pub status: u16,
    /// The raw body the simulator answered.
    pub response: Bytes,
}

impl RecordedRequest {
    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The response body parsed as JSON, when it is JSON.
    pub fn response_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.response).ok()
    }
}

/// A message the simulator accepted.
#[derive(Debug, Clone)]
pub struct SentRecord {
    /// The sending number.
    pub phone_number_id: String,
    /// The `wamid` given back.
    pub wamid: String,
    /// The message as received.
    pub message: OutboundMessage,
    /// When the simulator accepted it (its clock; load tools measure per-number rates
    /// from these).
    pub at: Instant,
}

/// A webhook the simulator delivered (or tried to).
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    /// The callback URL.
    pub url: String,
    /// The raw body sent.
    pub body: Bytes,
    /// The `X-Hub-Signature-256` header sent.
    pub signature: String,
    /// The callback's HTTP status; `None` if it could not be reached.
    pub status: Option<u16>,
}

impl WebhookDelivery {
    /// The body parsed as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub(crate) struct SimTemplateState {
    pub id: String,
    pub template: crate::model::NewTemplate,
    pub status: String,
}

impl SimTemplateState {
    pub fn to_model(&self) -> Template {
        Template {
            id: self.id.clone(),
            name: self.template.name.clone(),
            language: self.template.language.clone(),
            status: self.status.clone(),
            category: self.template.category.clone(),
            components: self.template.components.clone(),
        }
    }
}

pub(crate) struct BusinessState {
    pub app_secret: SecretString,
    pub access_tokens: Vec<String>,
    pub webhook_url: Option<String>,
    pub subscribed: bool,
    pub templates: Vec<SimTemplateState>,
}

/// A verification code the simulator "sent" to a number (`request_code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCode {
    /// The phone number id the code was requested for.
    pub phone_number_id: String,
    /// `SMS` or `VOICE`.
    pub code_method: String,
    /// The six-digit code.
    pub code: String,
}

pub(crate) struct PhoneState {
    pub waba_id: String,
    pub number: SimPhoneNumber,
    pub pending_code: Option<String>,
    pub window: VecDeque<Instant>,
    /// Users who wrote in, and when (the 24-hour customer service window).
    pub last_inbound: HashMap<String, Instant>,
}

pub(crate) struct MediaState {
    pub waba_id: String,
    pub mime_type: String,
    pub data: Bytes,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub businesses: HashMap<String, BusinessState>,
    pub phones: HashMap<String, PhoneState>,
    pub media: HashMap<String, MediaState>,
    pub expired_tokens: HashSet<String>,
    pub requests: Vec<RecordedRequest>,
    pub sent: Vec<SentRecord>,
    pub read_marks: Vec<String>,
    pub deliveries: Vec<WebhookDelivery>,
    pub faults: VecDeque<Fault>,
    /// Oversized answers to give next: (body size in bytes, sent chunked).
    pub oversized: VecDeque<(usize, bool)>,
    /// Listeners told about every verification code "sent".
    pub code_listeners: Vec<tokio::sync::mpsc::UnboundedSender<SentCode>>,
    pub delay: Option<Duration>,
    /// Media downloads to fail next, by media id: (how many, HTTP status).
    pub download_failures: HashMap<String, (u32, u16)>,
    pub auto_approve: bool,
    pub auto_statuses: bool,
    pub next_id: u64,
}

impl Inner {
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}", 880_000_000_000_000u64 + self.next_id)
    }
}

pub(crate) struct State {
    inner: Mutex<Inner>,
    pub http: reqwest::Client,
    pub base_url: String,
}

/// Unix seconds now, as Meta sends them in webhooks (a string).
pub(crate) fn unix_now() -> String {
    unix_secs().to_string()
}

/// Unix seconds now.
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn fbtrace_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..23)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

pub(crate) fn new_wamid() -> String {
    let bytes: [u8; 20] = rand::thread_rng().gen();
    format!("wamid.HBgL{}", hex::encode_upper(bytes))
}

/// Meta's error object.
pub(crate) fn graph_error(
    code: i64,
    subcode: Option<i64>,
    kind: &str,
    message: &str,
    details: Option<&str>,
) -> GraphError {
    GraphError {
        message: message.to_owned(),
        kind: kind.to_owned(),
        code,
        error_subcode: subcode,
        error_data: details.map(|d| GraphErrorData {
            messaging_product: Some("whatsapp".to_owned()),
            details: Some(d.to_owned()),
        }),
        is_transient: None,
        error_user_title: None,
        error_user_msg: None,
        fbtrace_id: Some(fbtrace_id()),
    }
}

/// Meta's titles for the errors delivered in failed statuses.
pub(crate) fn status_error(code: i64) -> StatusError {
    let (title, details) = match code {
        131047 => (
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
        131026 => (
            "Message undeliverable",
            "Message failed to send because the recipient cannot receive it.",
        ),
        131049 => (
            "This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        ),
        131053 => (
            "Media upload error",
            "Unable to upload the media used in the message.",
        ),
        _ => ("Something went wrong", "Message failed to send."),
    };
    StatusError {
        code,
        title: title.to_owned(),
        message: Some(title.to_owned()),
        error_data: Some(StatusErrorData {
            details: details.to_owned(),
        }),
        href: Some(
            "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
                .to_owned(),
        ),
    }
}

impl State {
    pub fn new(base_url: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Simulator(Box::new(e)))?;
        Ok(Self {
            inner: Mutex::new(Inner::default()),
            http,
            base_url,
        })
    }

    /// Runs `f` under the lock (never held across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn add_business(&self, business: SimBusiness) {
        self.with(|s| {
            let templates = business
                .templates
                .into_iter()
                .map(|SimTemplate { template, status }| SimTemplateState {
                    id: s.new_id(),
                    template,
                    status,
                })
                .collect();
            for number in business.phone_numbers {
                s.phones.insert(
                    number.id.clone(),
                    PhoneState {
                        waba_id: business.waba_id.clone(),
                        number,
                        pending_code: None,
                        window: VecDeque::new(),
                        last_inbound: HashMap::new(),
                    },
                );
            }
            s.businesses.insert(
                business.waba_id,
                BusinessState {
                    app_secret: business.app_secret,
                    access_tokens: business.access_tokens,
                    webhook_url: business.webhook_url,
                    subscribed: false,
                    templates,
                },
            );
        });
    }

    pub fn add_media(&self, waba_id: &str, mime_type: &str, data: Bytes) -> String {
        self.with(|s| {
            let id = s.new_id();
            s.media.insert(
                id.clone(),
                MediaState {
                    waba_id: waba_id.to_owned(),
                    mime_type: mime_type.to_owned(),
                    data,
                },
            );
            id
        })
    }

    pub fn add_inbound_media(
        &self,
        phone_number_id: &str,
        mime_type: &str,
        data: Bytes,
    ) -> Result<SimMedia> {
        use base64::Engine;
        let waba = self
            .with(|s| s.phones.get(phone_number_id).map(|p| p.waba_id.clone()))
            .ok_or_else(|| {
                Error::Simulator(format!("unknown phone number {phone_number_id}").into())
            })?;
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
        let file_size = data.len();
        let id = self.add_media(&waba, mime_type, data);
        Ok(SimMedia {
            id,
            mime_type: mime_type.to_owned(),
            sha256,
            file_size,
        })
    }

    /// Posts `body` to `url` signed with `secret` (or, for a forgery, with another key).
    async fn post_signed(
        &self,
        url: &str,
        secret: &SecretString,
        body: Bytes,
        bad_signature: bool,
    ) -> WebhookDelivery {
        let signature = if bad_signature {
            use secrecy::ExposeSecret;
            let forged = SecretString::from(format!("{}-forged", secret.expose_secret()));
            webhook::sign(&forged, &body)
        } else {
            webhook::sign(secret, &body)
        };
        let status = match self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) => Some(response.status().as_u16()),
            Err(e) => {
                tracing::warn!(error = %e, "simulator could not deliver a webhook");
                None
            }
        };
        let delivery = WebhookDelivery {
            url: url.to_owned(),
            body,
            signature,
            status,
        };
        self.with(|s| s.deliveries.push(delivery.clone()));
        delivery
    }

    /// Sends a batch: one delivery with every entry, change, message and status (statuses
    /// apart, latest first, with `statuses_out_of_order`), each posted twice with
    /// `duplicate`.
    pub async fn send_batch(&self, batch: &SimBatch, mode: SendMode) -> Result<SentBatch> {
        let unknown = |p: &str| Error::Simulator(format!("unknown phone number {p}").into());
        // Each number's WABA and display number; the first change's business signs.
        let mut numbers: HashMap<String, (String, String)> = HashMap::new();
        for change in batch.entries.iter().flatten() {
            let found = self.with(|s| {
                s.phones.get(&change.phone_number_id).map(|p| {
                    (
                        p.waba_id.clone(),
                        p.number
                            .display_phone_number
                            .chars()
                            .filter(char::is_ascii_digit)
                            .collect::<String>(),
                    )
                })
            });
            let found = found.ok_or_else(|| unknown(&change.phone_number_id))?;
            numbers.insert(change.phone_number_id.clone(), found);
        }
        let first = batch
            .entries
            .iter()
            .flatten()
            .next()
            .ok_or_else(|| Error::Simulator("an empty batch".into()))?;
        let waba = numbers
            .get(&first.phone_number_id)
            .map(|(w, _)| w.clone())
            .unwrap_or_default();
        let (url, secret) = self
            .with(|s| {
                s.businesses
                    .get(&waba)
                    .map(|b| (b.webhook_url.clone(), b.app_secret.clone()))
            })
            .ok_or_else(|| unknown(&first.phone_number_id))?;
        let url = url.ok_or_else(|| {
            Error::Simulator(format!("no webhook URL set for business {waba}").into())
        })?;
        let now = unix_secs();
        let metadata = |phone: &str| {
            let display = numbers
                .get(phone)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            serde_json::json!({"display_phone_number": display, "phone_number_id": phone})
        };
        let mut entries = Vec::new();
        let mut apart = Vec::new();
        for entry in &batch.entries {
            let Some(head) = entry.first() else { continue };
            let entry_waba = numbers
                .get(&head.phone_number_id)
                .map(|(w, _)| w.clone())
                .unwrap_or_default();
            let mut changes = Vec::new();
            for change in entry {
                let display = numbers
                    .get(&change.phone_number_id)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default();
                // Meta's shapes: a change holds user messages with their senders'
                // profiles, or system messages without `contacts`, or statuses — never two
                // of these (`Change.value` is one of them). A mixed change is split.
                let (users, system): (Vec<&SimInbound>, Vec<&SimInbound>) = change
                    .messages
                    .iter()
                    .partition(|m| m.profile_name.is_some());
                for group in [users, system] {
                    if group.is_empty() {
                        continue;
                    }
                    let mut value = serde_json::Map::new();
                    value.insert("messaging_product".into(), "whatsapp".into());
                    value.insert("metadata".into(), metadata(&change.phone_number_id));
                    let mut contacts: Vec<serde_json::Value> = Vec::new();
                    for m in &group {
                        if let Some(name) = &m.profile_name {
                            if !contacts.iter().any(|c| c["wa_id"] == m.from.as_str()) {
                                contacts.push(
                                    serde_json::json!({"profile": {"name": name}, "wa_id": m.from}),
                                );
                            }
                        }
                    }
                    if !contacts.is_empty() {
                        value.insert("contacts".into(), contacts.into());
                    }
                    let messages: Vec<_> = group.iter().map(|m| m.to_json(&display, now)).collect();
                    value.insert("messages".into(), messages.into());
                    changes.push(serde_json::json!({"value": value, "field": "messages"}));
                }
                if mode.statuses_out_of_order {
                    for st in &change.statuses {
                        apart.push((change.phone_number_id.clone(), st.clone()));
                    }
                } else if !change.statuses.is_empty() {
                    let statuses: Vec<_> = change.statuses.iter().map(|s| s.to_json(now)).collect();
                    changes.push(serde_json::json!({"value": {
                        "messaging_product": "whatsapp",
                        "metadata": metadata(&change.phone_number_id),
                        "statuses": statuses,
                    }, "field": "messages"}));
                }
            }
            if !changes.is_empty() {
                entries.push(serde_json::json!({"id": entry_waba, "changes": changes}));
            }
        }
        // The users who wrote in open their 24-hour window.
        self.with(|s| {
            for change in batch.entries.iter().flatten() {
                if let Some(p) = s.phones.get_mut(&change.phone_number_id) {
                    for m in &change.messages {
                        p.last_inbound.insert(m.from.clone(), Instant::now());
                    }
                }
            }
        });
        let mut bodies = Vec::new();
        if !entries.is_empty() {
            bodies
                .push(serde_json::json!({"object": "whatsapp_business_account", "entry": entries}));
        }
        // Latest first: read before delivered before sent.
        apart.sort_by_key(|(_, st)| {
            std::cmp::Reverse((st.timestamp.unwrap_or(now), st.status as u8))
        });
        for (phone, st) in apart {
            let entry_waba = numbers
                .get(&phone)
                .map(|(w, _)| w.clone())
                .unwrap_or_default();
            bodies.push(
                serde_json::json!({"object": "whatsapp_business_account", "entry": [{
                    "id": entry_waba,
                    "changes": [{"value": {
                        "messaging_product": "whatsapp",
                        "metadata": metadata(&phone),
                        "statuses": [st.to_json(now)],
                    }, "field": "messages"}]
                }]}),
            );
        }
        let mut deliveries = Vec::new();
        for payload in bodies {
            let body = Bytes::from(serde_json::to_vec(&payload).map_err(Error::Decode)?);
            let times = if mode.duplicate { 2 } else { 1 };
            for _ in 0..times {
                deliveries.push(
                    self.post_signed(&url, &secret, body.clone(), mode.bad_signature)
                        .await,
                );
            }
        }
        Ok(SentBatch {
            deliveries,
            wamids: batch.all_messages().map(|m| m.id.clone()).collect(),
        })
    }

    /// Signs and posts a webhook for the business owning `phone_number_id`.
    async fn deliver(&self, phone_number_id: &str, value: ChangeValue) -> Result<WebhookDelivery> {
        let (waba_id, url, secret) = self
            .with(|s| {
                let phone = s.phones.get(phone_number_id)?;
                let business = s.businesses.get(&phone.waba_id)?;
                Some((
                    phone.waba_id.clone(),
                    business.webhook_url.clone(),
                    business.app_secret.clone(),
                ))
            })
            .ok_or_else(|| {
                Error::Simulator(format!("unknown phone number {phone_number_id}").into())
            })?;
        let url = url.ok_or_else(|| {
            Error::Simulator(format!("no webhook URL set for business {waba_id}").into())
        })?;
        let payload = WebhookPayload {
            object: "whatsapp_business_account".to_owned(),
            entry: vec![WebhookEntry {
                id: waba_id,
                changes: vec![WebhookChange {
                    field: "messages".to_owned(),
                    value,
                }],
            }],
        };
        let body = Bytes::from(serde_json::to_vec(&payload).map_err(Error::Decode)?);
        let delivery = self.post_signed(&url, &secret, body, false).await;
        Ok(delivery)
    }

    fn metadata(&self, phone_number_id: &str) -> Result<WebhookMetadata> {
        self.with(|s| {
            s.phones.get(phone_number_id).map(|p| WebhookMetadata {
                display_phone_number: p
                    .number
                    .display_phone_number
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect(),
                phone_number_id: phone_number_id.to_owned(),
            })
        })
        .ok_or_else(|| Error::Simulator(format!("unknown phone number {phone_number_id}").into()))
    }

    pub async fn send_inbound(
        &self,
        phone_number_id: &str,
        inbound: Inbound,
    ) -> Result<(String, WebhookDelivery)> {
        let metadata = self.metadata(phone_number_id)?;
        let wamid = new_wamid();
        self.with(|s| {
            if let Some(p) = s.phones.get_mut(phone_number_id) {
                p.last_inbound.insert(inbound.from.clone(), Instant::now());
            }
        });
        let value = ChangeValue {
            messaging_product: "whatsapp".to_owned(),
            metadata,
            contacts: vec![ContactProfile {
                profile: Profile {
                    name: inbound.profile_name,
                },
                wa_id: Some(inbound.from.clone()),
            }],
            messages: vec![InboundMessage {
                from: inbound.from,
                id: wamid.clone(),
                timestamp: unix_now(),
                context: inbound.context,
                content: inbound.content,
            }],
            statuses: Vec::new(),
        };
        let delivery = self.deliver(phone_number_id, value).await?;
        Ok((wamid, delivery))
    }

    pub async fn send_status(
        &self,
        wamid: &str,
        status: StatusKind,
        errors: Vec<StatusError>,
    ) -> Result<WebhookDelivery> {
        let (phone_number_id, recipient, is_template) = self
            .with(|s| {
                s.sent.iter().find(|r| r.wamid == wamid).map(|r| {
                    (
                        r.phone_number_id.clone(),
                        r.message.to.trim_start_matches('+').to_owned(),
                        r.message.kind() == "template",
                    )
                })
            })
            .ok_or_else(|| Error::Simulator(format!("no message sent with id {wamid}").into()))?;
        let metadata = self.metadata(&phone_number_id)?;
        let category = if is_template { "utility" } else { "service" };
        let billed = !matches!(status, StatusKind::Failed);
        let value = ChangeValue {
            messaging_product: "whatsapp".to_owned(),
            metadata,
            contacts: Vec::new(),
            messages: Vec::new(),
            statuses: vec![MessageStatus {
                id: wamid.to_owned(),
                status,
                timestamp: unix_now(),
                recipient_id: recipient,
                conversation: billed.then(|| {
                    serde_json::json!({
                        "id": format!("{:x}", Sha256::digest(wamid.as_bytes()))[..32].to_owned(),
                        "origin": {"type": category}
                    })
                }),
                pricing: billed.then(|| {
                    serde_json::json!({
                        "billable": is_template,
                        "pricing_model": "PMP",
                        "category": category
                    })
                }),
                errors,
            }],
        };
        self.deliver(&phone_number_id, value).await
    }
}
