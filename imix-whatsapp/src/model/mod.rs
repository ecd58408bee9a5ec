//! Request and response bodies of the Cloud API, following Meta's specification
//! (`business-messaging-api_v23.0.yaml`): field names, nesting and types.

pub mod message;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

pub use message::*;

/// `{"success": true}`, the answer of most write operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessResponse {
    /// Whether the operation succeeded.
    pub success: bool,
}

/// A file to upload with [`crate::WhatsAppClient::upload_media`].
#[derive(Clone, PartialEq, Eq)]
pub struct MediaUpload {
    /// File name sent in the multipart part.
    pub file_name: String,
    /// MIME type, e.g. `image/jpeg`.
    pub mime_type: String,
    /// The file's bytes.
    pub data: Bytes,
}

impl std::fmt::Debug for MediaUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaUpload")
            .field("file_name", &self.file_name)
            .field("mime_type", &self.mime_type)
            .field("len", &self.data.len())
            .finish()
    }
}

/// `{"id": "..."}`: an uploaded media id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaId {
    /// The media id.
    pub id: String,
}

/// `GET /{Media-ID}`: where to download a media file (the URL is valid for 5 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// Always `"whatsapp"`.
    #[serde(default)]
    pub messaging_product: Option<String>,
    /// The download URL; fetch it with the same bearer token.
    pub url: String,
    /// MIME type.
    pub mime_type: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Size in bytes (a string in the specification; numbers are accepted too).
    #[serde(deserialize_with = "u64_from_string_or_number")]
    pub file_size: u64,
    /// The media id.
    pub id: String,
}

fn u64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        N(u64),
    }
    match N::deserialize(d)? {
        N::N(n) => Ok(n),
        N::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// A downloaded media file.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaContent {
    /// The `Content-Type` of the download, when given.
    pub mime_type: Option<String>,
    /// The bytes.
    pub data: Bytes,
}

impl std::fmt::Debug for MediaContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaContent")
            .field("mime_type", &self.mime_type)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Cursor paging of Graph API lists.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Paging {
    /// The cursors of this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Cursors>,
    /// URL of the next page, absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// URL of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// `before` / `after` cursors.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursors {
    /// Cursor of the first item of the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Cursor of the last item of the page: pass it as `after` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Query of [`crate::WhatsAppClient::list_templates`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateQuery {
    /// Page size.
    pub limit: Option<u32>,
    /// The `after` cursor of the previous page.
    pub after: Option<String>,
    /// Only templates with this name.
    pub name: Option<String>,
    /// Only templates with this status (`APPROVED`, `PENDING`, `REJECTED`, ...).
    pub status: Option<String>,
}

/// One page of message templates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TemplatePage {
    /// The templates.
    pub data: Vec<Template>,
    /// Paging, when there is more than one page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

impl TemplatePage {
    /// The cursor of the next page, if there is one.
    pub fn next_cursor(&self) -> Option<&str> {
        let paging = self.paging.as_ref()?;
        paging.next.as_ref()?;
        paging.cursors.as_ref()?.after.as_deref()
    }
}

/// Template categories Meta documents.
pub const TEMPLATE_CATEGORIES: &[&str] = &["MARKETING", "UTILITY", "AUTHENTICATION"];

/// Template statuses Meta documents.
pub const TEMPLATE_STATUSES: &[&str] = &[
    "APPROVED",
    "IN_APPEAL",
    "PENDING",
    "REJECTED",
    "PENDING_DELETION",
    "DELETED",
    "DISABLED",
    "PAUSED",
    "LIMIT_EXCEEDED",
    "ARCHIVED",
];

/// A message template as Meta lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Template id.
    pub id: String,
    /// Name (lowercase, digits and underscores).
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, ...
    pub status: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// The template's components (HEADER, BODY, FOOTER, BUTTONS).
    #[serde(default)]
    pub components: Vec<TemplateDefinitionComponent>,
}

/// A component of a template definition (`HEADER`, `BODY`, `FOOTER`, `BUTTONS`).
/// Members Meta adds for some kinds are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateDefinitionComponent {
    /// `HEADER`, `BODY`, `FOOTER` or `BUTTONS`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Header format: `TEXT`, `IMAGE`, `VIDEO`, `DOCUMENT`, `LOCATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The text, with `{{1}}`-style placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Buttons of a `BUTTONS` component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Vec<TemplateButton>>,
    /// Sample values for review (`header_text`, `body_text`, `header_handle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<serde_json::Value>,
    /// Any other member.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TemplateDefinitionComponent {
    /// A component of the given kind with a text.
    pub fn text(kind: &str, text: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            format: (kind == "HEADER").then(|| "TEXT".to_owned()),
            text: Some(text.into()),
            buttons: None,
            example: None,
            extra: serde_json::Map::new(),
        }
    }

    /// The number of distinct `{{n}}` placeholders in `text`.
    pub fn placeholder_count(&self) -> usize {
        self.text.as_deref().map(count_placeholders).unwrap_or(0)
    }
}

/// Counts the distinct `{{...}}` placeholders of a template text.
pub fn count_placeholders(text: &str) -> usize {
    let mut seen = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !seen.contains(&name) {
            seen.push(name);
        }
        rest = &after[end + 2..];
    }
    seen.len()
}

/// A button of a template definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateButton {
    /// `QUICK_REPLY`, `URL`, `PHONE_NUMBER`, `COPY_CODE`, `OTP`, `FLOW`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The button's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// URL of a `URL` button (may end in `{{1}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Number of a `PHONE_NUMBER` button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Any other member.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Body of `POST /{WABA-ID}/message_templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTemplate {
    /// Name (lowercase letters, digits, underscores; up to 512 characters).
    pub name: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// The components.
    pub components: Vec<TemplateDefinitionComponent>,
}

/// Answer of template creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTemplate {
    /// The new template's id.
    pub id: String,
    /// Its review status, usually `PENDING`.
    pub status: String,
    /// Its category (Meta may change it).
    pub category: String,
}

/// The phone number fields imix asks for (`GET /{Phone-Number-ID}?fields=...`).
pub const PHONE_NUMBER_FIELDS: &str = "id,display_phone_number,verified_name,\
code_verification_status,quality_rating,name_status,messaging_limit_tier,throughput,\
status,platform_type";

/// A business phone number (`PhoneNumberInfo` plus the requested fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    /// The phone number id.
    pub id: String,
    /// The number as displayed, e.g. `+1 631-555-5555`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
    /// The verified business name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_name: Option<String>,
    /// `VERIFIED`, `UNVERIFIED`, `EXPIRED`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_verification_status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `NA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_rating: Option<String>,
    /// Display name review status (`APPROVED`, `PENDING_REVIEW`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_status: Option<String>,
    /// Messaging limit tier: `TIER_50`, `TIER_250`, `TIER_1K`, ... `TIER_UNLIMITED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_limit_tier: Option<String>,
    /// Throughput level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// `CONNECTED`, `PENDING`, `DISCONNECTED`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `CLOUD_API`, `ON_PREMISE` or `NOT_APPLICABLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_type: Option<String>,
}

/// `throughput` of a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// `STANDARD` (80 messages/s) or `HIGH` (up to 1000 messages/s).
    pub level: String,
}

/// How to receive a verification code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CodeMethod {
    /// By text message.
    Sms,
    /// By voice call.
    Voice,
}

/// Body of `POST /{Phone-Number-ID}/request_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCodeRequest {
    /// SMS or voice.
    pub code_method: CodeMethod,
    /// Locale of the message, e.g. `en_US`.
    pub language: String,
}

/// Body of `POST /{Phone-Number-ID}/verify_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyCodeRequest {
    /// The six-digit code received.
    pub code: String,
}

/// Body of `POST /{Phone-Number-ID}/register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Always `"whatsapp"`.
    pub messaging_product: MessagingProduct,
    /// The six-digit two-step verification PIN.
    pub pin: String,
}

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("pin", &"******")
            .finish()
    }
}

/// Optional body of `POST /{WABA-ID}/subscribed_apps`: override the app's callback URL
/// for this WABA.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionOverride {
    /// The callback URL to use for this WABA instead of the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_callback_uri: Option<String>,
    /// The verify token Meta sends to that URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<String>,
}

impl std::fmt::Debug for SubscriptionOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionOverride")
            .field("override_callback_uri", &self.override_callback_uri)
            .field("verify_token", &self.verify_token.as_ref().map(|_| "****"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_placeholders() {
        assert_eq!(count_placeholders("Hi {{1}}, code {{2}} for {{1}}"), 2);
        assert_eq!(count_placeholders("no placeholders"), 0);
        assert_eq!(count_placeholders("{{name}} and {{ order }}"), 2);
        assert_eq!(count_placeholders("broken {{1"), 0);
    }
}
