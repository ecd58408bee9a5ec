//! The `WhatsAppClient` port: every Cloud API operation imix uses.
//!
//! One client serves every account of every tenant: each call takes the account's
//! [`AccessToken`]. The reqwest adapter is [`crate::GraphApiClient`] (feature `client`);
//! `MockWhatsAppClient` (feature `mock`) serves unit tests.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::model::{
    CodeMethod, CreatedTemplate, MediaContent, MediaId, MediaInfo, MediaUpload, NewTemplate,
    OutboundMessage, PhoneNumber, SendMessageResponse, SubscriptionOverride, Template,
    TemplatePage, TemplateQuery,
};

/// The Graph API version used unless configured otherwise.
pub const DEFAULT_GRAPH_API_VERSION: &str = "v23.0";

/// Meta's production Graph API.
pub const DEFAULT_GRAPH_API_URL: &str = "https://graph.facebook.com";

/// A Meta access token (system user or user token). Redacted in `Debug`; only the
/// HTTP adapter reads it, to build the `Authorization` header.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    /// The token, for the `Authorization: Bearer` header only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<SecretString> for AccessToken {
    fn from(s: SecretString) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(****)")
    }
}

/// Every Cloud API operation imix uses. Ids are Meta's: phone number id, WABA id,
/// media id, template id.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WhatsAppClient: Send + Sync {
    /// Sends a message from `phone_number_id`.
    async fn send_message(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        message: &OutboundMessage,
    ) -> Result<SendMessageResponse>;

    /// Marks an inbound message (and the ones before it) as read.
    async fn mark_as_read(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        message_id: &str,
    ) -> Result<()>;

    /// Uploads a media file (multipart) and returns its id.
    async fn upload_media(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        upload: MediaUpload,
    ) -> Result<MediaId>;

    /// Looks up a media file: its short-lived download URL, type, size and hash.
    async fn get_media(&self, token: &AccessToken, media_id: &str) -> Result<MediaInfo>;

    /// Downloads a media file from the URL [`WhatsAppClient::get_media`] returned,
    /// authenticated with the bearer token.
    async fn download_media(&self, token: &AccessToken, url: &str) -> Result<MediaContent>;

    /// Lists one page of the WABA's message templates.
    async fn list_templates(
        &self,
        token: &AccessToken,
        waba_id: &str,
        query: &TemplateQuery,
    ) -> Result<TemplatePage>;

    /// Submits a new template for review.
    async fn create_template(
        &self,
        token: &AccessToken,
        waba_id: &str,
        template: &NewTemplate,
    ) -> Result<CreatedTemplate>;

    /// Deletes a template by name (every language), or one language by its `hsm_id`.
    async fn delete_template<'a>(
        &self,
        token: &AccessToken,
        waba_id: &str,
        name: &str,
        hsm_id: Option<&'a str>,
    ) -> Result<()>;

    /// Reads a phone number: verified name, code verification status, quality rating,
    /// name status, messaging limit tier and throughput.
    async fn get_phone_number(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
    ) -> Result<PhoneNumber>;

    /// Asks Meta to send a verification code to the number by SMS or voice.
    async fn request_code(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        method: CodeMethod,
        language: &str,
    ) -> Result<()>;

    /// Submits the verification code received.
    async fn verify_code(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        code: &str,
    ) -> Result<()>;

    /// Registers the number for Cloud API use with its two-step verification PIN.
    async fn register(&self, token: &AccessToken, phone_number_id: &str, pin: &str) -> Result<()>;

    /// Subscribes the token's app to the WABA's webhooks, optionally overriding the
    /// callback URL for this WABA.
    async fn subscribe_app(
        &self,
        token: &AccessToken,
        waba_id: &str,
        callback: Option<SubscriptionOverride>,
    ) -> Result<()>;
}

/// Lists every template of a WABA (optionally only those with `status`), following the
/// `after` cursors page by page — what a template sync needs. Stops with
/// [`Error::Invalid`] (`field: "after"`) if Meta ever hands back the same cursor twice.
pub async fn list_all_templates<C: WhatsAppClient + ?Sized>(
    client: &C,
    token: &AccessToken,
    waba_id: &str,
    status: Option<&str>,
) -> Result<Vec<Template>> {
    let mut query = TemplateQuery {
        limit: Some(100),
        status: status.map(str::to_owned),
        ..TemplateQuery::default()
    };
    let mut all = Vec::new();
    loop {
        let page = client.list_templates(token, waba_id, &query).await?;
        all.extend(page.data.iter().cloned());
        match page.next_cursor() {
            Some(after) if query.after.as_deref() == Some(after) => {
                return Err(Error::Invalid { field: "after" })
            }
            Some(after) => query.after = Some(after.to_owned()),
            None => return Ok(all),
        }
    }
}
