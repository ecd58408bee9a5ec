//! A local, in-memory Graph API simulator (feature `simulator`).
//!
//! It serves the Cloud API endpoints imix uses with Meta's documented request, response
//! and error shapes, and sends signed webhooks back:
//!
//! | endpoint | behaviour |
//! |---|---|
//! | `POST /{v}/{phone}/messages` | validates the message; template name/language (→ 132001) and parameter counts (→ 132000); per-number throughput (→ 130429 with `Retry-After`); mark-as-read |
//! | `POST /{v}/{phone}/media`, `GET /{v}/{media}`, `GET /whatsapp_business/attachments/?mid=` | multipart upload, URL lookup, download with the bearer token |
//! | `GET\|POST\|DELETE /{v}/{waba}/message_templates` | paged list (`limit`, `after`, `name`, `status`), create (→ `PENDING`), delete by name / `hsm_id` |
//! | `GET /{v}/{phone}` | phone number fields (`fields=` honoured) |
//! | `POST /{v}/{phone}/request_code\|verify_code\|register` | the verification walk (the code "sent" is readable with [`Simulator::verification_code`]) |
//! | `POST /{v}/{waba}/subscribed_apps` | subscribes; an `override_callback_uri` is verified with Meta's `hub.challenge` handshake |
//! | `POST /_simulator/inbound` | demo helper: `{"phone_number_id", "from", "name", "text"}` sends an inbound text webhook |
//! | `POST /_simulator/webhook_url` | `{"waba_id" or "phone_number_id", "url"}`: where the business's webhooks go |
//! | `POST /_simulator/webhooks` | sends a batch of signed webhooks of any inbound type: `{"entries": [{"changes": [{"phone_number_id", "messages": [...], "statuses": [...]}]}], "duplicate", "statuses_out_of_order", "bad_signature"}` (below); answers `{"wamids", "deliveries": [{"url", "webhook_status", "signature", "bytes"}]}` |
//! | `POST /_simulator/media` | `{"phone_number_id", "mime_type", "data_base64"?}`: a file a user sends (generated when no data); answers `{"id", "mime_type", "sha256" (base64, as in webhooks), "file_size"}` |
//! | `POST /_simulator/media/{id}/fail_downloads` | `{"count": 1, "status": 500}`: the next downloads of that media fail |
//!
//! Messages for `/_simulator/webhooks` are Meta's `messages[]` items without the parts the
//! simulator fills: `{"from", "name", "type", "<type>": {...}}` with optional `id`,
//! `timestamp`, `context` (`{"id"}` for a reply — `from` is filled with the business
//! number — or `{"forwarded": true}` / `{"frequently_forwarded": true}`), `referral` (an
//! ad's `ReferralObject`). Every documented type: `text`, `image`, `audio`, `video`,
//! `document`, `sticker` (the media `id`, `mime_type` and base64 `sha256` are filled from
//! a file named by `<type>.id`, or from a new one made of `<type>.mime_type` and
//! `<type>.data_base64`), `location`, `contacts`, `interactive` (`button_reply`,
//! `list_reply`), `button` (template quick reply), `reaction`, `unsupported` (error
//! 131051 unless `errors` is given) and `system` (`{"system": {"wa_id"}}`: the user changed
//! number). Statuses: `{"id", "status": "sent|delivered|read|failed", "recipient_id"}` with
//! optional `timestamp`, `error_code` (failed) and `category`; `conversation` and `pricing`
//! are filled as Meta does. Modes: `duplicate` posts each delivery twice (same bytes, same
//! signature), `statuses_out_of_order` sends each status in a delivery of its own, latest
//! first (read, delivered, sent), `bad_signature` signs with a wrong key. The Rust side of
//! the same is [`Simulator::send_batch`] with [`SimUser`], [`SimStatus`], [`SimBatch`] and
//! [`SendMode`].
//! | `GET /_simulator/verification_code?phone_number_id=` | demo helper: the code `request_code` "sent" (`{"phone_number_id", "code"}`), also logged and sent to [`Simulator::verification_codes`] listeners |
//!
//! Every request needs `Authorization: Bearer <token>`: an unknown token answers error 190
//! (`OAuthException`, HTTP 401), an expired one 190/463, a token of another business
//! 100/33 (object does not exist or missing permissions).
//!
//! ```no_run
//! # async fn demo() -> imix_whatsapp::Result<()> {
//! use imix_whatsapp::simulator::{SimBusiness, SimPhoneNumber, Simulator};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| imix_whatsapp::Error::Simulator(e.into()))?;
//! let sim = Simulator::start(listener).await?;
//! sim.add_business(
//!     SimBusiness::new("1001", "app-secret", "token")
//!         .with_phone_number(SimPhoneNumber::new("2001", "+1 555-010-0001")),
//! );
//! println!("Graph API at {}", sim.url());
//! # Ok(()) }
//! ```

mod inbound;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use secrecy::SecretString;
use tokio::sync::oneshot;

use crate::error::{Error, GraphError, Result};
use crate::model::{NewTemplate, OutboundMessage, TemplateDefinitionComponent};
use crate::webhook::{InboundContent, InboundContext, StatusError, StatusKind};

pub use inbound::{
    SendMode, SentBatch, SimBatch, SimChange, SimContext, SimInbound, SimMedia, SimStatus, SimUser,
};
pub use state::{RecordedRequest, SentCode, SentRecord, WebhookDelivery};

use state::State;

/// A phone number of a simulated business.
#[derive(Debug, Clone)]
pub struct SimPhoneNumber {
    /// Phone number id.
    pub id: String,
    /// Display number, e.g. `+1 555-010-0001`.
    pub display_phone_number: String,
    /// Verified business name.
    pub verified_name: String,
    /// `GREEN`, `YELLOW`, `RED`, `NA`.
    pub quality_rating: String,
    /// `VERIFIED` or `UNVERIFIED` (becomes `VERIFIED` after `verify_code`).
    pub code_verification_status: String,
    /// Display name status.
    pub name_status: String,
    /// Messaging limit tier, e.g. `TIER_1K`.
    pub messaging_limit_tier: String,
    /// Throughput level, `STANDARD` or `HIGH`.
    pub throughput_level: String,
    /// Messages per second accepted before answering 130429.
    pub messages_per_second: u32,
    /// The two-step verification PIN, once set.
    pub pin: Option<String>,
    /// Whether the number is registered for the Cloud API (sending needs it: 133010).
    pub registered: bool,
}

impl SimPhoneNumber {
    /// A verified, connected number with `STANDARD` throughput (80 messages/s).
    pub fn new(id: impl Into<String>, display_phone_number: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            display_phone_number: display_phone_number.into(),
            verified_name: "imix Demo".to_owned(),
            quality_rating: "GREEN".to_owned(),
            code_verification_status: "VERIFIED".to_owned(),
            name_status: "APPROVED".to_owned(),
            messaging_limit_tier: "TIER_1K".to_owned(),
            throughput_level: "STANDARD".to_owned(),
            messages_per_second: 80,
            pin: None,
            registered: true,
        }
    }

    /// Sets the verified name.
    pub fn with_verified_name(mut self, name: impl Into<String>) -> Self {
        self.verified_name = name.into();
        self
    }

    /// Sets the throughput limit in messages per second.
    pub fn with_messages_per_second(mut self, rate: u32) -> Self {
        self.messages_per_second = rate;
        self
    }

    /// Makes the number unverified and unregistered (as a number newly added to the WABA
    /// that still has to walk request_code, verify_code and register).
    pub fn unverified(mut self) -> Self {
        self.code_verification_status = "UNVERIFIED".to_owned();
        self.registered = false;
        self
    }
}

/// A template known to the simulator.
#[derive(Debug, Clone)]
pub struct SimTemplate {
    /// The template (name, category, language, components).
    pub template: NewTemplate,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, ...
    pub status: String,
}

impl SimTemplate {
    /// An approved template with a body text (placeholders `{{1}}`...) and optional
    /// text header.
    pub fn approved(name: &str, language: &str, header: Option<&str>, body: &str) -> Self {
        let mut components = Vec::new();
        if let Some(h) = header {
            components.push(TemplateDefinitionComponent::text("HEADER", h));
        }
        components.push(TemplateDefinitionComponent::text("BODY", body));
        Self {
            template: NewTemplate {
                name: name.to_owned(),
                category: "UTILITY".to_owned(),
                language: language.to_owned(),
                components,
            },
            status: "APPROVED".to_owned(),
        }
    }
}

/// A simulated WhatsApp Business Account: its app secret, access tokens, numbers and
/// templates. `Debug` redacts the secret and the tokens.
#[derive(Clone)]
pub struct SimBusiness {
    /// WABA id.
    pub waba_id: String,
    /// The app secret that signs webhooks.
    pub app_secret: SecretString,
    /// Access tokens valid for this business.
    pub access_tokens: Vec<String>,
    /// Where webhooks go.
    pub webhook_url: Option<String>,
    /// Phone numbers.
    pub phone_numbers: Vec<SimPhoneNumber>,
    /// Templates.
    pub templates: Vec<SimTemplate>,
}

impl std::fmt::Debug for SimBusiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBusiness")
            .field("waba_id", &self.waba_id)
            .field("access_tokens", &self.access_tokens.len())
            .field("webhook_url", &self.webhook_url)
            .field("phone_numbers", &self.phone_numbers)
            .field("templates", &self.templates)
            .finish_non_exhaustive()
    }
}

impl SimBusiness {
    /// A business with one access token and no numbers.
    pub fn new(
        waba_id: impl Into<String>,
        app_secret: impl Into<String>,
        access_token: impl Into<String>,
    ) -> Self {
        Self {
            waba_id: waba_id.into(),
            app_secret: SecretString::from(app_secret.into()),
            access_tokens: vec![access_token.into()],
            webhook_url: None,
            phone_numbers: Vec::new(),
            templates: Vec::new(),
        }
    }

    /// Adds a phone number.
    pub fn with_phone_number(mut self, number: SimPhoneNumber) -> Self {
        self.phone_numbers.push(number);
        self
    }

    /// Adds a template.
    pub fn with_template(mut self, template: SimTemplate) -> Self {
        self.templates.push(template);
        self
    }

    /// Sets the webhook callback URL.
    pub fn with_webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }
}

/// A failure the simulator answers instead of handling the next request(s).
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP status.
    pub status: u16,
    /// The error object; `None` answers the status with a non-JSON body.
    pub error: Option<GraphError>,
    /// `Retry-After` seconds, when given.
    pub retry_after: Option<u64>,
}

impl Fault {
    /// A Graph API error with Meta's usual shape (`type` `OAuthException`).
    pub fn graph(status: u16, code: i64, message: &str) -> Self {
        Self {
            status,
            error: Some(state::graph_error(
                code,
                None,
                "OAuthException",
                message,
                None,
            )),
            retry_after: None,
        }
    }

    /// A bare HTTP status without an error object (e.g. a 502 from a proxy).
    pub fn status(status: u16) -> Self {
        Self {
            status,
            error: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// An inbound message to deliver as a webhook.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The sender's WhatsApp id (digits).
    pub from: String,
    /// The sender's profile name.
    pub profile_name: String,
    /// What they sent.
    pub content: InboundContent,
    /// The message it replies to.
    pub context: Option<InboundContext>,
}

impl Inbound {
    /// An inbound message without context.
    pub fn new(
        from: impl Into<String>,
        profile_name: impl Into<String>,
        content: InboundContent,
    ) -> Self {
        Self {
            from: from.into(),
            profile_name: profile_name.into(),
            content,
            context: None,
        }
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Simulator {
    /// Starts the simulator on a listener the caller bound (port 0 in tests).
    pub async fn start(listener: tokio::net::TcpListener) -> Result<Self> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Simulator(Box::new(e)))?;
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)
            .map_err(|e| Error::Simulator(Box::new(e)))?;
        let state = Arc::new(State::new(format!("http://{addr}"))?);
        let endpoint = server::GraphEndpoint {
            state: state.clone(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = poem::Server::new_with_acceptor(acceptor);
            let signal = async move {
                let _ = rx.await;
            };
            if let Err(e) = server
                .run_with_graceful_shutdown(endpoint, signal, Some(Duration::from_secs(1)))
                .await
            {
                tracing::error!(error = %e, "Graph API simulator stopped");
            }
        });
        tracing::info!(%addr, "Graph API simulator listening");
        Ok(Self {
            state,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123` (use it as `IMIX_GRAPH_API_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds (or replaces) a business with its numbers, tokens and templates.
    pub fn add_business(&self, business: SimBusiness) {
        self.state.add_business(business);
    }

    /// Makes a token valid for a business too.
    pub fn add_access_token(&self, waba_id: &str, token: &str) {
        self.state.with(|s| {
            if let Some(b) = s.businesses.get_mut(waba_id) {
                b.access_tokens.push(token.to_owned());
            }
        });
    }

    /// Marks a token expired: it then answers error 190, subcode 463.
    pub fn expire_access_token(&self, token: &str) {
        self.state.with(|s| {
            s.expired_tokens.insert(token.to_owned());
        });
    }

    /// Sets where a business's webhooks go.
    pub fn set_webhook_url(&self, waba_id: &str, url: &str) {
        self.state.with(|s| {
            if let Some(b) = s.businesses.get_mut(waba_id) {
                b.webhook_url = Some(url.to_owned());
            }
        });
    }

    /// Sets a number's throughput limit (messages per second; beyond → 130429).
    pub fn set_messages_per_second(&self, phone_number_id: &str, rate: u32) {
        self.state.with(|s| {
            if let Some(p) = s.phones.get_mut(phone_number_id) {
                p.number.messages_per_second = rate;
                p.window.clear();
            }
        });
    }

    /// Sets the review status of a template (every language of that name).
    pub fn set_template_status(&self, waba_id: &str, name: &str, status: &str) {
        self.state.with(|s| {
            if let Some(b) = s.businesses.get_mut(waba_id) {
                for t in b.templates.iter_mut().filter(|t| t.template.name == name) {
                    t.status = status.to_owned();
                }
            }
        });
    }

    /// Approves templates as soon as they are created (demo mode), instead of `PENDING`.
    pub fn set_auto_approve_templates(&self, on: bool) {
        self.state.with(|s| s.auto_approve = on);
    }

    /// After each accepted message, send its status webhooks by itself: `sent`,
    /// `delivered`, `read` — or `failed` with 131047 when a free-form message goes to a
    /// user who has not written in the last 24 hours (demo mode).
    pub fn set_auto_statuses(&self, on: bool) {
        self.state.with(|s| s.auto_statuses = on);
    }

    /// Answers the next `count` Graph API requests with a fault instead of handling them.
    pub fn inject_fault(&self, fault: Fault, count: usize) {
        self.state.with(|s| {
            for _ in 0..count {
                s.faults.push_back(fault.clone());
            }
        });
    }

    /// Answers the next request with a valid JSON body (`{"success":true}` and spaces) of
    /// `bytes` bytes, to exercise the client's answer size cap; `chunked` sends it without
    /// `Content-Length`. The request is recorded, the answer is not.
    pub fn answer_oversized(&self, bytes: usize, chunked: bool) {
        self.state.with(|s| s.oversized.push_back((bytes, chunked)));
    }

    /// Tells the returned receiver about every verification code `request_code` "sends"
    /// from now on (the demo prints them; Meta would text or call the number).
    pub fn verification_codes(&self) -> tokio::sync::mpsc::UnboundedReceiver<SentCode> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.state.with(|s| s.code_listeners.push(tx));
        rx
    }

    /// Delays every response (to exercise client timeouts); `None` removes the delay.
    pub fn set_response_delay(&self, delay: Option<Duration>) {
        self.state.with(|s| s.delay = delay);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.with(|s| s.requests.clone())
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.with(|s| s.requests.clear());
    }

    /// Every message accepted so far, oldest first.
    pub fn sent_messages(&self) -> Vec<SentRecord> {
        self.state.with(|s| s.sent.clone())
    }

    /// How many messages were accepted so far (cheap: nothing is copied).
    pub fn sent_count(&self) -> usize {
        self.state.with(|s| s.sent.len())
    }

    /// When each accepted message was accepted, and by which number, oldest first: what a
    /// load tool needs to check per-number rates without copying every message.
    pub fn send_times(&self) -> Vec<(String, std::time::Instant)> {
        self.state.with(|s| {
            s.sent
                .iter()
                .map(|r| (r.phone_number_id.clone(), r.at))
                .collect()
        })
    }

    /// The `wamid`s marked as read.
    pub fn read_marks(&self) -> Vec<String> {
        self.state.with(|s| s.read_marks.clone())
    }

    /// Every webhook delivered so far.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.state.with(|s| s.deliveries.clone())
    }

    /// The last verification code "sent" by `request_code` to a number, until it is used.
    /// Also served as `GET /_simulator/verification_code?phone_number_id=…`.
    pub fn verification_code(&self, phone_number_id: &str) -> Option<String> {
        self.state.with(|s| {
            s.phones
                .get(phone_number_id)
                .and_then(|p| p.pending_code.clone())
        })
    }

    /// A number's current state.
    pub fn phone_number(&self, phone_number_id: &str) -> Option<SimPhoneNumber> {
        self.state
            .with(|s| s.phones.get(phone_number_id).map(|p| p.number.clone()))
    }

    /// Whether a number is registered (`register` with its PIN).
    pub fn is_registered(&self, phone_number_id: &str) -> bool {
        self.state.with(|s| {
            s.phones
                .get(phone_number_id)
                .is_some_and(|p| p.number.registered)
        })
    }

    /// Whether the app is subscribed to the business's webhooks.
    pub fn is_subscribed(&self, waba_id: &str) -> bool {
        self.state
            .with(|s| s.businesses.get(waba_id).is_some_and(|b| b.subscribed))
    }

    /// A business's templates with their ids and statuses.
    pub fn templates(&self, waba_id: &str) -> Vec<crate::model::Template> {
        self.state.with(|s| {
            s.businesses
                .get(waba_id)
                .map(|b| b.templates.iter().map(|t| t.to_model()).collect())
                .unwrap_or_default()
        })
    }

    /// Stores a media file as if a user had sent it; returns its id.
    pub fn add_media(&self, waba_id: &str, mime_type: &str, data: Bytes) -> String {
        self.state.add_media(waba_id, mime_type, data)
    }

    /// Stores a media file a user sends to `phone_number_id`'s business, for inbound
    /// media messages ([`SimUser::image`] …): served by `GET /{id}` (URL, hex `sha256`)
    /// and that URL (the bytes, with the business's token).
    pub fn add_inbound_media(
        &self,
        phone_number_id: &str,
        mime_type: &str,
        data: Bytes,
    ) -> Result<SimMedia> {
        self.state
            .add_inbound_media(phone_number_id, mime_type, data)
    }

    /// Fails the next `count` downloads of media `media_id` (its URL answers `status`,
    /// e.g. 500), as a CDN hiccup would; later downloads succeed.
    pub fn fail_media_downloads(&self, media_id: &str, count: u32, status: u16) {
        self.state.with(|s| {
            s.download_failures
                .insert(media_id.to_owned(), (count, status));
        });
    }

    /// Sends a batch of inbound messages and statuses as signed webhooks to the business's
    /// callback URL, in the given [`SendMode`] (duplicates, out-of-order statuses, a
    /// forged signature).
    pub async fn send_batch(&self, batch: &SimBatch, mode: SendMode) -> Result<SentBatch> {
        self.state.send_batch(batch, mode).await
    }

    /// Sends an inbound message webhook from a user to a number; returns the new `wamid`
    /// and the delivery. It also opens the user's 24-hour customer service window.
    pub async fn send_inbound(
        &self,
        phone_number_id: &str,
        inbound: Inbound,
    ) -> Result<(String, WebhookDelivery)> {
        self.state.send_inbound(phone_number_id, inbound).await
    }

    /// Sends one status webhook for an accepted message.
    pub async fn send_status(
        &self,
        wamid: &str,
        status: StatusKind,
        errors: Vec<StatusError>,
    ) -> Result<WebhookDelivery> {
        self.state.send_status(wamid, status, errors).await
    }

    /// Sends `sent`, `delivered` and `read` for an accepted message, in order.
    pub async fn send_status_sequence(&self, wamid: &str) -> Result<Vec<WebhookDelivery>> {
        let mut out = Vec::new();
        for kind in [StatusKind::Sent, StatusKind::Delivered, StatusKind::Read] {
            out.push(self.send_status(wamid, kind, Vec::new()).await?);
        }
        Ok(out)
    }

    /// Sends a `failed` status with one of Meta's errors (e.g. 131047, 131026).
    pub async fn send_failed(&self, wamid: &str, code: i64) -> Result<WebhookDelivery> {
        let error = state::status_error(code);
        self.send_status(wamid, StatusKind::Failed, vec![error])
            .await
    }

    /// The message accepted with this `wamid`.
    pub fn sent_message(&self, wamid: &str) -> Option<OutboundMessage> {
        self.state.with(|s| {
            s.sent
                .iter()
                .find(|r| r.wamid == wamid)
                .map(|r| r.message.clone())
        })
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
