//! Webhooks: `X-Hub-Signature-256` signing and constant-time verification, and the
//! payload types (`WebhookPayload` of the Cloud API specification) for inbound messages
//! and message statuses.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::model::{ContactCard, Reaction};

/// The header carrying the signature: `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

type HmacSha256 = Hmac<Sha256>;

fn mac(app_secret: &SecretString) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    match HmacSha256::new_from_slice(app_secret.expose_secret().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// The `X-Hub-Signature-256` value Meta sends for `body`: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the raw body keyed with the app secret.
pub fn sign(app_secret: &SecretString, body: &[u8]) -> String {
    let mut mac = mac(app_secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a webhook delivery's `X-Hub-Signature-256` header against the raw body, in
/// constant time. Missing, malformed or wrong signatures are [`Error::InvalidSignature`].
pub fn verify_signature(
    app_secret: &SecretString,
    body: &[u8],
    header: Option<&str>,
) -> Result<()> {
    let header = header.ok_or(Error::InvalidSignature)?.trim();
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(Error::InvalidSignature)?;
    let expected = hex::decode(hex_sig).map_err(|_| Error::InvalidSignature)?;
    let mut mac = mac(app_secret);
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| Error::InvalidSignature)
}

/// Verifies a delivery's signature, then parses its body. Parse failures are
/// [`Error::Decode`]; signature failures [`Error::InvalidSignature`].
pub fn parse_verified(
    app_secret: &SecretString,
    body: &[u8],
    signature_header: Option<&str>,
) -> Result<WebhookPayload> {
    verify_signature(app_secret, body, signature_header)?;
    serde_json::from_slice(body).map_err(Error::Decode)
}

/// The answer to Meta's verification request (`GET` with `hub.mode=subscribe`,
/// `hub.verify_token` and `hub.challenge`): the challenge when the token matches.
pub fn verification_challenge<'a>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
    expected_token: &SecretString,
) -> Option<&'a str> {
    use hmac::digest::Digest;
    let given = token?;
    if mode? != "subscribe" {
        return None;
    }
    // Compare digests so the comparison time does not depend on a common prefix.
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected_token.expose_secret().as_bytes());
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    if diff == 0 {
        challenge
    } else {
        None
    }
}

/// A webhook delivery (`WebhookPayload`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// Always `whatsapp_business_account`.
    pub object: String,
    /// One entry per WABA.
    pub entry: Vec<WebhookEntry>,
}

/// An entry of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEntry {
    /// The WABA id.
    pub id: String,
    /// The changes.
    pub changes: Vec<WebhookChange>,
}

/// A change: `field` is `messages` for inbound messages and statuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookChange {
    /// What the change is about, e.g. `messages`.
    pub field: String,
    /// The change itself.
    pub value: ChangeValue,
}

/// The value of a `messages` change: inbound messages (with the sender's profile) or
/// statuses of sent messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeValue {
    /// Always `whatsapp`.
    pub messaging_product: String,
    /// The business number the change concerns.
    pub metadata: WebhookMetadata,
    /// Sender profiles of inbound messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<ContactProfile>,
    /// Inbound messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<InboundMessage>,
    /// Statuses of sent messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<MessageStatus>,
}

/// `metadata`: the business number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookMetadata {
    /// Display number, digits only.
    pub display_phone_number: String,
    /// Phone number id.
    pub phone_number_id: String,
}

/// The sender's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactProfile {
    /// The profile.
    pub profile: Profile,
    /// The sender's WhatsApp id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

/// `profile`: the WhatsApp profile name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The name shown in WhatsApp.
    pub name: String,
}

/// An inbound message. `id` is the `wamid`; `timestamp` is Unix seconds as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The sender's WhatsApp id.
    pub from: String,
    /// The message's `wamid`.
    pub id: String,
    /// Unix seconds, as a string.
    pub timestamp: String,
    /// The message it replies to, or the button's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<InboundContext>,
    /// Type and content.
    #[serde(flatten)]
    pub content: InboundContent,
}

/// `context` of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundContext {
    /// The business number the original message came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The original message's `wamid`.
    pub id: String,
}

/// The content of an inbound message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundContent {
    /// Text.
    Text {
        /// The text.
        text: InboundText,
    },
    /// An image.
    Image {
        /// The image.
        image: InboundMedia,
    },
    /// A video.
    Video {
        /// The video.
        video: InboundMedia,
    },
    /// Audio or a voice note.
    Audio {
        /// The audio.
        audio: InboundMedia,
    },
    /// A document.
    Document {
        /// The document.
        document: InboundMedia,
    },
    /// A sticker.
    Sticker {
        /// The sticker.
        sticker: InboundMedia,
    },
    /// A location.
    Location {
        /// The location.
        location: InboundLocation,
    },
    /// Shared contact cards.
    Contacts {
        /// The cards.
        contacts: Vec<ContactCard>,
    },
    /// A reaction to a message.
    Reaction {
        /// The reaction.
        reaction: Reaction,
    },
    /// A tap on a template quick-reply button.
    Button {
        /// The button.
        button: InboundButton,
    },
    /// A reply to an interactive message.
    Interactive {
        /// The reply.
        interactive: InteractiveReply,
    },
    /// A message type the Cloud API does not support (or does not know).
    #[serde(alias = "unknown")]
    Unsupported {
        /// Why it is unsupported.
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    },
}

/// The text of an inbound text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundText {
    /// The text.
    pub body: String,
}

/// An inbound media file: download it with [`crate::WhatsAppClient::get_media`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMedia {
    /// The media id.
    pub id: String,
    /// MIME type.
    pub mime_type: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Caption (image, video, document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// File name (document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Whether an audio is a voice note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
    /// Whether a sticker is animated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub animated: Option<bool>,
}

/// An inbound location (numbers here, unlike outbound locations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundLocation {
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Name of the place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address of the place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// URL of the place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A quick-reply button tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundButton {
    /// The button's payload.
    pub payload: String,
    /// The button's label.
    pub text: String,
}

/// A reply to an interactive message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InteractiveReply {
    /// A reply button was tapped.
    ButtonReply {
        /// The button.
        button_reply: ReplyChoice,
    },
    /// A list row was chosen.
    ListReply {
        /// The row.
        list_reply: ReplyChoice,
    },
}

/// The id and title of the chosen button or row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyChoice {
    /// The id given when sending.
    pub id: String,
    /// The title.
    pub title: String,
    /// The row description (list replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Status of a sent message (`Statuses`). `timestamp` is Unix seconds as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStatus {
    /// The `wamid` of the sent message.
    pub id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: StatusKind,
    /// Unix seconds, as a string.
    pub timestamp: String,
    /// The recipient's WhatsApp id.
    pub recipient_id: String,
    /// The conversation the message opened or belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<serde_json::Value>,
    /// Pricing information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<serde_json::Value>,
    /// Why the message failed (status `failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<StatusError>,
}

/// The status of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Accepted by WhatsApp's servers.
    Sent,
    /// Delivered to the recipient's device.
    Delivered,
    /// Read by the recipient.
    Read,
    /// Could not be delivered; see the errors.
    Failed,
}

/// An error of a failed status (`StatusError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusError {
    /// Meta's error code, e.g. `131047`.
    pub code: i64,
    /// Short title.
    pub title: String,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<StatusErrorData>,
    /// Link to Meta's error code reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

/// `error_data` of a status error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusErrorData {
    /// Details.
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let secret = SecretString::from("app-secret");
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(&secret, body);
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), 7 + 64);
        assert!(verify_signature(&secret, body, Some(&header)).is_ok());
        assert!(verify_signature(&secret, b"tampered", Some(&header)).is_err());
        let other = SecretString::from("other");
        assert!(verify_signature(&other, body, Some(&header)).is_err());
        assert!(verify_signature(&secret, body, None).is_err());
        assert!(verify_signature(&secret, body, Some("sha1=00")).is_err());
        assert!(verify_signature(&secret, body, Some("sha256=zz")).is_err());
        assert!(verify_signature(&secret, body, Some(&header[..header.len() - 2])).is_err());
    }

    #[test]
    fn parses_only_verified_payloads() {
        let secret = SecretString::from("s");
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000","phone_number_id":"2"},"statuses":[{"id":"wamid.x","status":"delivered","timestamp":"1700000000","recipient_id":"16505551234"}]}}]}]}"#;
        let header = sign(&secret, body);
        let payload = parse_verified(&secret, body, Some(&header)).expect("valid payload");
        let status = &payload.entry[0].changes[0].value.statuses[0];
        assert_eq!(status.status, StatusKind::Delivered);
        assert_eq!(status.timestamp, "1700000000");
        assert!(matches!(
            parse_verified(&secret, body, Some("sha256=00")),
            Err(Error::InvalidSignature)
        ));
        let garbage = b"not json";
        assert!(matches!(
            parse_verified(&secret, garbage, Some(&sign(&secret, garbage))),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") — RFC 4231 style
        // published test vector.
        let secret = SecretString::from("key");
        assert_eq!(
            sign(&secret, b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn verification_challenge_checks_mode_and_token() {
        let expected = SecretString::from("verify-me");
        assert_eq!(
            verification_challenge(Some("subscribe"), Some("verify-me"), Some("42"), &expected),
            Some("42")
        );
        assert_eq!(
            verification_challenge(Some("subscribe"), Some("wrong"), Some("42"), &expected),
            None
        );
        assert_eq!(
            verification_challenge(Some("other"), Some("verify-me"), Some("42"), &expected),
            None
        );
        assert_eq!(
            verification_challenge(None, Some("verify-me"), Some("42"), &expected),
            None
        );
    }
}
