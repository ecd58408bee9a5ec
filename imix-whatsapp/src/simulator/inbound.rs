//! Inbound webhooks of every documented type, built in Meta's shapes
//! (`business-messaging-api_v23.0.yaml`: `IncomingMessage`, `SystemMessage`, `Statuses`),
//! batched into entries × changes × messages/statuses, and the sending modes the receiver
//! has to survive: duplicates, out-of-order statuses, a forged signature.
//!
//! Values are kept as JSON because several documented fields (`referral`, `system`,
//! `context.forwarded`, `errors` of unsupported messages) have no place in the typed
//! [`crate::webhook`] model, and the receiver under test reads raw JSON anyway.

use serde_json::{json, Map, Value};

use super::state::new_wamid;
use crate::webhook::StatusKind;

/// A media file the simulator holds for inbound messages: `GET /{id}` gives its URL, the
/// URL its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMedia {
    /// Media id, as in the webhook.
    pub id: String,
    /// MIME type.
    pub mime_type: String,
    /// SHA-256 of the bytes, base64 as in webhooks (`GET /{id}` answers it in hex).
    pub sha256: String,
    /// Size in bytes.
    pub file_size: usize,
}

/// What an inbound message is in reply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimContext {
    /// A reply to (or a button of) the business message `id`; `context.from` is filled
    /// with the business number's display number when sent.
    Reply {
        /// The `wamid` of the business's message.
        id: String,
    },
    /// A forwarded message (`context.forwarded`, or `frequently_forwarded` when forwarded
    /// more than five times).
    Forwarded {
        /// Forwarded more than five times.
        frequently: bool,
    },
}

/// A WhatsApp user of the simulation: builds the messages they send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    /// WhatsApp id (digits).
    pub wa_id: String,
    /// Profile name.
    pub name: String,
}

/// One inbound message as Meta puts it in `messages[]`, plus the sender's profile for
/// `contacts[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInbound {
    /// Sender's WhatsApp id.
    pub from: String,
    /// Sender's profile name; `None` leaves the sender out of `contacts[]` (as Meta does
    /// for system messages).
    pub profile_name: Option<String>,
    /// The `wamid`, generated when the message is built.
    pub id: String,
    /// Unix seconds; `None` is the time of sending.
    pub timestamp: Option<u64>,
    /// Reply or forward context.
    pub context: Option<SimContext>,
    /// Click-to-WhatsApp ad referral (`ReferralObject`).
    pub referral: Option<Value>,
    /// `type` and its object (e.g. `{"type":"text","text":{"body":"hi"}}`), or for
    /// `unsupported` the `errors` array.
    pub body: Map<String, Value>,
}

fn body(kind: &str, value: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(kind.to_owned()));
    m.insert(kind.to_owned(), value);
    m
}

fn media_object(media: &SimMedia) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("mime_type".into(), json!(media.mime_type));
    m.insert("sha256".into(), json!(media.sha256));
    m.insert("id".into(), json!(media.id));
    m
}

impl SimUser {
    /// A user with a WhatsApp id (digits) and a profile name.
    pub fn new(wa_id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            wa_id: wa_id.into(),
            name: name.into(),
        }
    }

    fn message(&self, body: Map<String, Value>) -> SimInbound {
        SimInbound {
            from: self.wa_id.clone(),
            profile_name: Some(self.name.clone()),
            id: new_wamid(),
            timestamp: None,
            context: None,
            referral: None,
            body,
        }
    }

    /// A text message.
    pub fn text(&self, text: &str) -> SimInbound {
        self.message(body("text", json!({ "body": text })))
    }

    /// An image, with an optional caption.
    pub fn image(&self, media: &SimMedia, caption: Option<&str>) -> SimInbound {
        let mut m = media_object(media);
        if let Some(c) = caption {
            m.insert("caption".into(), json!(c));
        }
        self.message(body("image", Value::Object(m)))
    }

    /// A video, with an optional caption.
    pub fn video(&self, media: &SimMedia, caption: Option<&str>) -> SimInbound {
        let mut m = media_object(media);
        if let Some(c) = caption {
            m.insert("caption".into(), json!(c));
        }
        self.message(body("video", Value::Object(m)))
    }

    /// An audio file, or a voice note (`voice: true`).
    pub fn audio(&self, media: &SimMedia, voice: bool) -> SimInbound {
        let mut m = media_object(media);
        m.insert("voice".into(), json!(voice));
        self.message(body("audio", Value::Object(m)))
    }

    /// A document with its file name.
    pub fn document(&self, media: &SimMedia, filename: &str) -> SimInbound {
        let mut m = media_object(media);
        m.insert("filename".into(), json!(filename));
        self.message(body("document", Value::Object(m)))
    }

    /// A sticker.
    pub fn sticker(&self, media: &SimMedia, animated: bool) -> SimInbound {
        let mut m = media_object(media);
        m.insert("animated".into(), json!(animated));
        self.message(body("sticker", Value::Object(m)))
    }

    /// A shared location (Meta's numbers, not strings).
    pub fn location(
        &self,
        latitude: f64,
        longitude: f64,
        name: &str,
        address: &str,
        url: Option<&str>,
    ) -> SimInbound {
        let mut m = Map::new();
        m.insert("address".into(), json!(address));
        m.insert("latitude".into(), json!(latitude));
        m.insert("longitude".into(), json!(longitude));
        m.insert("name".into(), json!(name));
        if let Some(u) = url {
            m.insert("url".into(), json!(u));
        }
        self.message(body("location", Value::Object(m)))
    }

    /// A shared contact card with a name and one phone number (`wa_id` the digits).
    pub fn contact_card(&self, formatted_name: &str, phone: &str) -> SimInbound {
        let wa_id: String = phone.chars().filter(char::is_ascii_digit).collect();
        let (first, last) = formatted_name
            .split_once(' ')
            .unwrap_or((formatted_name, ""));
        let mut name = Map::new();
        name.insert("formatted_name".into(), json!(formatted_name));
        name.insert("first_name".into(), json!(first));
        if !last.is_empty() {
            name.insert("last_name".into(), json!(last));
        }
        let card = json!({
            "name": Value::Object(name),
            "phones": [{"phone": phone, "wa_id": wa_id, "type": "MOBILE"}],
        });
        self.message(body("contacts", json!([card])))
    }

    /// A tap on a reply button of the business's interactive message `context_wamid`.
    pub fn button_reply(&self, context_wamid: &str, id: &str, title: &str) -> SimInbound {
        let mut m = self.message(body(
            "interactive",
            json!({"type": "button_reply", "button_reply": {"id": id, "title": title}}),
        ));
        m.context = Some(SimContext::Reply {
            id: context_wamid.to_owned(),
        });
        m
    }

    /// A row chosen in the business's list message `context_wamid`.
    pub fn list_reply(
        &self,
        context_wamid: &str,
        id: &str,
        title: &str,
        description: &str,
    ) -> SimInbound {
        let mut m = self.message(body(
            "interactive",
            json!({"type": "list_reply", "list_reply": {"id": id, "title": title, "description": description}}),
        ));
        m.context = Some(SimContext::Reply {
            id: context_wamid.to_owned(),
        });
        m
    }

    /// A tap on a quick-reply button of the business's template message `context_wamid`
    /// (type `button`).
    pub fn quick_reply(&self, context_wamid: &str, payload: &str, text: &str) -> SimInbound {
        let mut m = self.message(body("button", json!({"payload": payload, "text": text})));
        m.context = Some(SimContext::Reply {
            id: context_wamid.to_owned(),
        });
        m
    }

    /// A reaction to message `message_wamid` (an empty emoji removes a reaction).
    pub fn reaction(&self, message_wamid: &str, emoji: &str) -> SimInbound {
        self.message(body(
            "reaction",
            json!({"message_id": message_wamid, "emoji": emoji}),
        ))
    }

    /// A message of a type the Cloud API does not support: `type: unsupported` with
    /// error 131051.
    pub fn unsupported(&self) -> SimInbound {
        let mut b = Map::new();
        b.insert("type".into(), json!("unsupported"));
        b.insert(
            "errors".into(),
            json!([{
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."}
            }]),
        );
        self.message(b)
    }

    /// The system message Meta sends when the user changes number (`user_changed_number`);
    /// like Meta, without the sender in `contacts[]`.
    pub fn changed_number(&self, new_wa_id: &str) -> SimInbound {
        let mut m = self.message(body(
            "system",
            json!({
                "body": format!("User {} changed from {} to {new_wa_id}", self.name, self.wa_id),
                "wa_id": new_wa_id,
                "type": "user_changed_number",
            }),
        ));
        m.profile_name = None;
        m
    }
}

impl SimInbound {
    /// The message's `type`.
    pub fn kind(&self) -> &str {
        self.body.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// Sets Meta's timestamp (Unix seconds).
    pub fn at(mut self, unix_seconds: u64) -> Self {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// Makes it a reply to message `wamid` (`context.from` and `context.id`).
    pub fn replying_to(mut self, wamid: &str) -> Self {
        self.context = Some(SimContext::Reply {
            id: wamid.to_owned(),
        });
        self
    }

    /// Marks it forwarded (`context.forwarded`, or `frequently_forwarded`).
    pub fn forwarded(mut self, frequently: bool) -> Self {
        self.context = Some(SimContext::Forwarded { frequently });
        self
    }

    /// Adds the referral of a Click-to-WhatsApp ad (`ReferralObject`, image ad).
    pub fn from_ad(mut self, source_id: &str, headline: &str) -> Self {
        self.referral = Some(json!({
            "source_url": format!("https://fb.me/{source_id}"),
            "source_id": source_id,
            "source_type": "ad",
            "body": format!("{headline}: tap to chat with us"),
            "headline": headline,
            "media_type": "image",
            "image_url": format!("https://scontent.example/ads/{source_id}.jpg"),
            "ctwa_clid": format!("ctwa-{}", &self.id[self.id.len().saturating_sub(16)..]),
            "welcome_message": {"text": "Hi there! Let us know how we can help!"}
        }));
        self
    }

    /// The `messages[]` item; `business_display_number` fills `context.from`.
    pub(crate) fn to_json(&self, business_display_number: &str, now: u64) -> Value {
        let mut m = Map::new();
        m.insert("from".into(), json!(self.from));
        m.insert("id".into(), json!(self.id));
        m.insert(
            "timestamp".into(),
            json!(self.timestamp.unwrap_or(now).to_string()),
        );
        match &self.context {
            Some(SimContext::Reply { id }) => {
                m.insert(
                    "context".into(),
                    json!({"from": business_display_number, "id": id}),
                );
            }
            Some(SimContext::Forwarded { frequently: true }) => {
                m.insert("context".into(), json!({"frequently_forwarded": true}));
            }
            Some(SimContext::Forwarded { frequently: false }) => {
                m.insert("context".into(), json!({"forwarded": true}));
            }
            None => {}
        }
        if let Some(r) = &self.referral {
            m.insert("referral".into(), r.clone());
        }
        for (k, v) in &self.body {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// A status of a business message (`Statuses`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimStatus {
    /// The business message's `wamid`.
    pub id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: StatusKind,
    /// The user the message went to.
    pub recipient_id: String,
    /// Unix seconds; `None` is the time of sending.
    pub timestamp: Option<u64>,
    /// Meta's error code for `failed`.
    pub error_code: Option<i64>,
    /// Pricing category (`service`, `utility`, `marketing`, `authentication`).
    pub category: String,
}

impl SimStatus {
    /// A status of message `wamid` to `recipient_id` (category `service`).
    pub fn new(wamid: &str, recipient_id: &str, status: StatusKind) -> Self {
        Self {
            id: wamid.to_owned(),
            status,
            recipient_id: recipient_id.to_owned(),
            timestamp: None,
            error_code: None,
            category: "service".to_owned(),
        }
    }

    /// A `failed` status with one of Meta's error codes (131047, 131026, 131049, ...).
    pub fn failed(wamid: &str, recipient_id: &str, code: i64) -> Self {
        Self {
            error_code: Some(code),
            ..Self::new(wamid, recipient_id, StatusKind::Failed)
        }
    }

    /// Sets Meta's timestamp (Unix seconds).
    pub fn at(mut self, unix_seconds: u64) -> Self {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// Sets the pricing category (e.g. `utility` for a template).
    pub fn category(mut self, category: &str) -> Self {
        self.category = category.to_owned();
        self
    }

    /// `sent`, `delivered` and `read` of one message, Meta's timestamps one second apart
    /// from `sent_at`, in that order (reverse the list, or send with
    /// [`SendMode::statuses_out_of_order`], for out-of-order arrival).
    pub fn sequence(wamid: &str, recipient_id: &str, sent_at: u64) -> Vec<Self> {
        [StatusKind::Sent, StatusKind::Delivered, StatusKind::Read]
            .into_iter()
            .zip(0u64..)
            .map(|(k, i)| Self::new(wamid, recipient_id, k).at(sent_at + i))
            .collect()
    }

    /// The `statuses[]` item, with `conversation` and `pricing` unless failed.
    pub(crate) fn to_json(&self, now: u64) -> Value {
        let ts = self.timestamp.unwrap_or(now);
        let status = match self.status {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Failed => "failed",
        };
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("status".into(), json!(status));
        m.insert("timestamp".into(), json!(ts.to_string()));
        m.insert("recipient_id".into(), json!(self.recipient_id));
        if self.status == StatusKind::Failed {
            let error = super::state::status_error(self.error_code.unwrap_or(131026));
            m.insert("errors".into(), json!([error]));
        } else {
            use sha2::{Digest, Sha256};
            let digest = hex::encode(Sha256::digest(self.id.as_bytes()));
            let mut conversation = Map::new();
            conversation.insert("id".into(), json!(digest[..32]));
            if self.status == StatusKind::Sent {
                // Meta gives the conversation's expiry only on `sent`.
                conversation.insert(
                    "expiration_timestamp".into(),
                    json!((ts + 24 * 3600).to_string()),
                );
            }
            conversation.insert("origin".into(), json!({"type": self.category}));
            m.insert("conversation".into(), Value::Object(conversation));
            m.insert(
                "pricing".into(),
                json!({
                    "billable": self.category != "service",
                    "pricing_model": "PMP",
                    "category": self.category,
                }),
            );
        }
        Value::Object(m)
    }
}

/// One `changes[]` item: messages and/or statuses of one business number.
#[derive(Debug, Clone, PartialEq)]
pub struct SimChange {
    /// The business number.
    pub phone_number_id: String,
    /// Inbound messages.
    pub messages: Vec<SimInbound>,
    /// Statuses.
    pub statuses: Vec<SimStatus>,
}

/// A webhook delivery to build: entries × changes × messages/statuses. Every number must
/// belong to businesses sharing one callback URL; the delivery is signed with the app
/// secret of the first change's business (one Meta app signs all its WABAs' deliveries).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimBatch {
    /// Entries, each a list of changes (the entry's `id` is its numbers' WABA id).
    pub entries: Vec<Vec<SimChange>>,
}

impl SimBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, change: SimChange) {
        match self.entries.last_mut() {
            Some(entry) => entry.push(change),
            None => self.entries.push(vec![change]),
        }
    }

    /// Adds a change with `messages` to the current entry.
    pub fn messages(mut self, phone_number_id: &str, messages: Vec<SimInbound>) -> Self {
        self.push(SimChange {
            phone_number_id: phone_number_id.to_owned(),
            messages,
            statuses: Vec::new(),
        });
        self
    }

    /// Adds a change with `statuses` to the current entry.
    pub fn statuses(mut self, phone_number_id: &str, statuses: Vec<SimStatus>) -> Self {
        self.push(SimChange {
            phone_number_id: phone_number_id.to_owned(),
            messages: Vec::new(),
            statuses,
        });
        self
    }

    /// Starts a new entry: later changes go into it.
    pub fn next_entry(mut self) -> Self {
        self.entries.push(Vec::new());
        self
    }

    /// Every message of the batch, in order.
    pub fn all_messages(&self) -> impl Iterator<Item = &SimInbound> {
        self.entries
            .iter()
            .flatten()
            .flat_map(|c| c.messages.iter())
    }
}

/// How to send a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendMode {
    /// Post the same delivery (same bytes, same signature) a second time, as Meta does
    /// when it did not see the first 200 in time.
    pub duplicate: bool,
    /// Send each status in a delivery of its own, latest Meta timestamp first (read
    /// before delivered before sent), after the messages.
    pub statuses_out_of_order: bool,
    /// Sign with a wrong secret (a forgery the receiver must refuse).
    pub bad_signature: bool,
}

/// What [`super::Simulator::send_batch`] posted, in order.
#[derive(Debug, Clone)]
pub struct SentBatch {
    /// Every delivery posted (duplicates included).
    pub deliveries: Vec<super::WebhookDelivery>,
    /// The `wamid`s of the batch's messages.
    pub wamids: Vec<String>,
}

/// Meta's default MIME type for each media message type.
pub(crate) fn default_mime(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "image" => "image/jpeg",
        "video" => "video/mp4",
        "audio" => "audio/ogg",
        "document" => "application/pdf",
        "sticker" => "image/webp",
        _ => return None,
    })
}

/// Builds a [`SimInbound`] from the control route's JSON: `from`, `name`, `type` and the
/// type's object in Meta's shape, optional `id`, `timestamp`, `context`
/// (`{"id"}` or `{"forwarded": true}` / `{"frequently_forwarded": true}`), `referral`,
/// `errors` (unsupported). Media objects get their `id`, `mime_type` and `sha256` from
/// `media` (the simulator resolved or created the file).
pub(crate) fn inbound_from_json(
    v: &Value,
    media: Option<&SimMedia>,
) -> std::result::Result<SimInbound, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let from = s("from").ok_or("from is required")?;
    if from.is_empty() || !from.bytes().all(|b| b.is_ascii_digit()) {
        return Err("from must be the user's WhatsApp id (digits)".into());
    }
    let kind = s("type").ok_or("type is required")?;
    let user = SimUser::new(from, s("name").unwrap_or("Demo User"));
    let mut m = match kind {
        "unsupported" => user.unsupported(),
        "system" => {
            let new = v
                .pointer("/system/wa_id")
                .and_then(Value::as_str)
                .ok_or("system.wa_id is required")?;
            user.changed_number(new)
        }
        _ => {
            let mut object = v.get(kind).cloned().ok_or(format!("{kind} is required"))?;
            if let (Some(media), Some(o)) = (media, object.as_object_mut()) {
                o.remove("data_base64");
                for (k, val) in media_object(media) {
                    o.insert(k, val);
                }
            }
            user.message(body(kind, object))
        }
    };
    if let Some(id) = s("id") {
        m.id = id.to_owned();
    }
    if let Some(ts) = v.get("timestamp") {
        let parsed = match ts {
            Value::String(t) => t.parse::<u64>().ok(),
            other => other.as_u64(),
        };
        m.timestamp = Some(parsed.ok_or("timestamp must be Unix seconds")?);
    }
    if let Some(c) = v.get("context") {
        m.context = if c.get("frequently_forwarded").and_then(Value::as_bool) == Some(true) {
            Some(SimContext::Forwarded { frequently: true })
        } else if c.get("forwarded").and_then(Value::as_bool) == Some(true) {
            Some(SimContext::Forwarded { frequently: false })
        } else {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .ok_or("context.id is required")?;
            Some(SimContext::Reply { id: id.to_owned() })
        };
    }
    if let Some(r) = v.get("referral") {
        m.referral = Some(r.clone());
    }
    if let (Some(e), "unsupported") = (v.get("errors"), kind) {
        m.body.insert("errors".into(), e.clone());
    }
    Ok(m)
}

/// Builds a [`SimStatus`] from the control route's JSON: `id`, `status`, `recipient_id`,
/// optional `timestamp`, `error_code` (failed), `category`.
pub(crate) fn status_from_json(v: &Value) -> std::result::Result<SimStatus, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let id = s("id").ok_or("id is required")?;
    let recipient = s("recipient_id").ok_or("recipient_id is required")?;
    let kind = match s("status").ok_or("status is required")? {
        "sent" => StatusKind::Sent,
        "delivered" => StatusKind::Delivered,
        "read" => StatusKind::Read,
        "failed" => StatusKind::Failed,
        _ => return Err("status must be sent, delivered, read or failed".into()),
    };
    let mut st = SimStatus::new(id, recipient, kind);
    if let Some(code) = v.get("error_code").and_then(Value::as_i64) {
        st.error_code = Some(code);
    }
    if let Some(ts) = v.get("timestamp") {
        let parsed = match ts {
            Value::String(t) => t.parse::<u64>().ok(),
            other => other.as_u64(),
        };
        st.timestamp = Some(parsed.ok_or("timestamp must be Unix seconds")?);
    }
    if let Some(c) = s("category") {
        st.category = c.to_owned();
    }
    Ok(st)
}
