//! Outbound messages: the body of `POST /{Version}/{Phone-Number-ID}/messages`
//! (schema `Message` of the Cloud API specification) and its response.

use serde::{Deserialize, Serialize};

/// The constant `messaging_product` member: always `"whatsapp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MessagingProduct {
    /// `"whatsapp"`.
    #[default]
    #[serde(rename = "whatsapp")]
    WhatsApp,
}

/// `recipient_type` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientType {
    /// A WhatsApp user (the default).
    #[default]
    Individual,
    /// A group (`to` is then the group id).
    Group,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Always `"whatsapp"`.
    #[serde(default)]
    pub messaging_product: MessagingProduct,
    /// `individual` or `group`.
    #[serde(default)]
    pub recipient_type: RecipientType,
    /// The recipient's phone number (digits, optionally with a leading `+`) or WhatsApp id.
    pub to: String,
    /// Makes the message a reply to an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
    /// The message's type and content (`type` plus the member named after it).
    #[serde(flatten)]
    pub content: MessageContent,
}

impl OutboundMessage {
    /// A message of any content to one WhatsApp user.
    pub fn new(to: impl Into<String>, content: MessageContent) -> Self {
        Self {
            messaging_product: MessagingProduct::WhatsApp,
            recipient_type: RecipientType::Individual,
            to: to.into(),
            context: None,
            content,
        }
    }

    /// A text message; `preview_url` renders a preview of the first URL in `body`.
    pub fn text(to: impl Into<String>, body: impl Into<String>, preview_url: bool) -> Self {
        Self::new(
            to,
            MessageContent::Text {
                text: Text {
                    body: body.into(),
                    preview_url: preview_url.then_some(true),
                },
            },
        )
    }

    /// Makes this message a reply to the message with the given `wamid`.
    pub fn reply_to(mut self, message_id: impl Into<String>) -> Self {
        self.context = Some(MessageContext {
            message_id: message_id.into(),
        });
        self
    }

    /// The `type` of this message, as Meta spells it.
    pub fn kind(&self) -> &'static str {
        self.content.kind()
    }
}

/// `context`: the message this one replies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageContext {
    /// The `wamid` of the message replied to.
    pub message_id: String,
}

/// The content of a message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageContent {
    /// `type: text`.
    Text {
        /// The text.
        text: Text,
    },
    /// `type: image`.
    Image {
        /// The image, by id or link.
        image: Media,
    },
    /// `type: video`.
    Video {
        /// The video, by id or link.
        video: Media,
    },
    /// `type: audio` (no caption).
    Audio {
        /// The audio, by id or link.
        audio: MediaRef,
    },
    /// `type: document`.
    Document {
        /// The document, by id or link.
        document: Media,
    },
    /// `type: sticker` (no caption).
    Sticker {
        /// The sticker, by id or link.
        sticker: MediaRef,
    },
    /// `type: location`.
    Location {
        /// The location.
        location: Location,
    },
    /// `type: contacts`: one to five contact cards.
    Contacts {
        /// The contact cards.
        contacts: Vec<ContactCard>,
    },
    /// `type: interactive`: reply buttons or a list.
    Interactive {
        /// The interactive content.
        interactive: Interactive,
    },
    /// `type: template`.
    Template {
        /// The template and its parameters.
        template: TemplateMessage,
    },
    /// `type: reaction`: an emoji on an earlier message (empty emoji removes it).
    Reaction {
        /// The reaction.
        reaction: Reaction,
    },
}

impl MessageContent {
    /// The `type` discriminator, as Meta spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageContent::Text { .. } => "text",
            MessageContent::Image { .. } => "image",
            MessageContent::Video { .. } => "video",
            MessageContent::Audio { .. } => "audio",
            MessageContent::Document { .. } => "document",
            MessageContent::Sticker { .. } => "sticker",
            MessageContent::Location { .. } => "location",
            MessageContent::Contacts { .. } => "contacts",
            MessageContent::Interactive { .. } => "interactive",
            MessageContent::Template { .. } => "template",
            MessageContent::Reaction { .. } => "reaction",
        }
    }
}

/// `text` of a text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// The text (up to 4096 characters).
    pub body: String,
    /// Render a link preview of the first URL in `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<bool>,
}

/// Where a media file comes from: an uploaded media id or a public HTTP(S) link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    /// A media id returned by [`crate::WhatsAppClient::upload_media`].
    Id(String),
    /// A public HTTP(S) URL Meta downloads the file from.
    Link(String),
}

/// A media file without a caption (audio, sticker, template parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// `id` or `link`.
    #[serde(flatten)]
    pub source: MediaSource,
}

impl MediaRef {
    /// By uploaded media id.
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            source: MediaSource::Id(id.into()),
        }
    }
    /// By public link.
    pub fn link(url: impl Into<String>) -> Self {
        Self {
            source: MediaSource::Link(url.into()),
        }
    }
}

/// A media file with an optional caption (image, video, document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// `id` or `link`.
    #[serde(flatten)]
    pub source: MediaSource,
    /// Caption (up to 1024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// File name shown for documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl Media {
    /// By uploaded media id.
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            source: MediaSource::Id(id.into()),
            caption: None,
            filename: None,
        }
    }
    /// By public link.
    pub fn link(url: impl Into<String>) -> Self {
        Self {
            source: MediaSource::Link(url.into()),
            caption: None,
            filename: None,
        }
    }
    /// Adds a caption.
    pub fn with_caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }
}

/// `location` of a location message. The specification types the coordinates as
/// strings (`"37.4847"`), which is how they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude in decimal degrees, e.g. `"37.4847"`.
    pub latitude: String,
    /// Longitude in decimal degrees, e.g. `"-122.1486"`.
    pub longitude: String,
    /// The place's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The place's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A contact card (`ContactObject`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactCard {
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<ContactAddress>,
    /// Birthday, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<ContactEmail>,
    /// The name (`formatted_name` is required by Meta).
    pub name: ContactName,
    /// Organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<ContactOrg>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<ContactPhone>,
    /// URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<ContactUrl>,
}

/// `HOME` or `WORK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContactInfoType {
    /// `HOME`.
    Home,
    /// `WORK`.
    Work,
}

/// An address of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactAddress {
    /// Street.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// ZIP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Two-letter ISO country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// `HOME` or `WORK`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ContactInfoType>,
}

/// An email address of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEmail {
    /// The address.
    pub email: String,
    /// `HOME` or `WORK`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ContactInfoType>,
}

/// The name of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactName {
    /// The full name as displayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_name: Option<String>,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// The organization of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactOrg {
    /// Company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A phone number of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPhone {
    /// The number as written.
    pub phone: String,
    /// `HOME` or `WORK`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ContactInfoType>,
    /// The WhatsApp id of the number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

/// A URL of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactUrl {
    /// The URL.
    pub url: String,
    /// `HOME` or `WORK`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ContactInfoType>,
}

/// `reaction`: an emoji on an earlier message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The `wamid` of the message reacted to.
    pub message_id: String,
    /// The emoji; empty removes the reaction.
    pub emoji: String,
}

/// `interactive`: reply buttons or a list, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Interactive {
    /// Up to three reply buttons.
    Button {
        /// Optional header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<InteractiveHeader>,
        /// The body text.
        body: TextObject,
        /// Optional footer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<TextObject>,
        /// The buttons.
        action: ButtonsAction,
    },
    /// A list of up to ten sections of rows behind one button.
    List {
        /// Optional text header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<InteractiveHeader>,
        /// The body text.
        body: TextObject,
        /// Optional footer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<TextObject>,
        /// The button and sections.
        action: ListAction,
    },
    /// A call-to-action URL button: a link the customer opens with one tap.
    CtaUrl {
        /// Optional header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<InteractiveHeader>,
        /// The body text.
        body: TextObject,
        /// Optional footer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<TextObject>,
        /// The button: `{"name": "cta_url", "parameters": {"display_text", "url"}}`.
        action: CtaUrlAction,
    },
}

/// `action` of a call-to-action URL message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtaUrlAction {
    /// Always `cta_url`.
    pub name: String,
    /// The button's text and link.
    pub parameters: CtaUrlParameters,
}

/// The button of a call-to-action URL message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtaUrlParameters {
    /// The button's text (up to 20 characters).
    pub display_text: String,
    /// The link it opens (HTTP or HTTPS).
    pub url: String,
}

/// `{"text": "..."}` (body and footer of interactive messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextObject {
    /// The text.
    pub text: String,
}

impl TextObject {
    /// Wraps a text.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }
}

/// The header of an interactive message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InteractiveHeader {
    /// A text header (up to 60 characters).
    Text {
        /// The text.
        text: String,
    },
    /// An image header.
    Image {
        /// The image.
        image: MediaRef,
    },
    /// A video header.
    Video {
        /// The video.
        video: MediaRef,
    },
    /// A document header.
    Document {
        /// The document.
        document: MediaRef,
    },
}

/// `action` of a reply-buttons message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonsAction {
    /// One to three buttons.
    pub buttons: Vec<ReplyButton>,
}

/// A reply button: `{"type": "reply", "reply": {"id", "title"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyButton {
    /// Always `"reply"`.
    #[serde(rename = "type")]
    pub kind: ReplyButtonType,
    /// The button's id and title.
    pub reply: ReplyButtonContent,
}

impl ReplyButton {
    /// A reply button with the given id (returned in the user's reply) and title.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            kind: ReplyButtonType::Reply,
            reply: ReplyButtonContent {
                id: id.into(),
                title: title.into(),
            },
        }
    }
}

/// The only reply button type: `"reply"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyButtonType {
    /// `"reply"`.
    #[default]
    Reply,
}

/// The id and title of a reply button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyButtonContent {
    /// Returned in the user's reply (up to 256 characters).
    pub id: String,
    /// Shown on the button (up to 20 characters).
    pub title: String,
}

/// `action` of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAction {
    /// The text of the button that opens the list (up to 20 characters).
    pub button: String,
    /// One to ten sections.
    pub sections: Vec<ListSection>,
}

/// A section of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSection {
    /// Title, required when there is more than one section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Up to ten rows.
    pub rows: Vec<ListRow>,
}

/// A row of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRow {
    /// Returned in the user's reply (up to 200 characters).
    pub id: String,
    /// Row title (up to 24 characters).
    pub title: String,
    /// Row description (up to 72 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `template` of a template message (`TemplateObject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMessage {
    /// The template's name.
    pub name: String,
    /// The template's language.
    pub language: TemplateLanguage,
    /// Parameters for the header, body and buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<TemplateComponent>,
}

/// `language` of a template message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateLanguage {
    /// Always `"deterministic"`.
    #[serde(default = "deterministic")]
    pub policy: String,
    /// Language or locale code, e.g. `en_US`.
    pub code: String,
}

fn deterministic() -> String {
    "deterministic".to_owned()
}

impl TemplateLanguage {
    /// The language with the given code, deterministic policy.
    pub fn new(code: impl Into<String>) -> Self {
        Self {
            policy: deterministic(),
            code: code.into(),
        }
    }
}

/// Parameters of one template component, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplateComponent {
    /// Header parameters (text or media).
    Header {
        /// The parameters, in placeholder order.
        parameters: Vec<TemplateParameter>,
    },
    /// Body parameters (text, currency, date_time).
    Body {
        /// The parameters, in placeholder order.
        parameters: Vec<TemplateParameter>,
    },
    /// Parameters of one button.
    Button {
        /// The button kind.
        sub_type: ButtonSubType,
        /// The button's position, `"0"` to `"9"`.
        index: String,
        /// The parameters.
        parameters: Vec<ButtonParameter>,
    },
}

/// Button kinds that take parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonSubType {
    /// A quick-reply button (payload parameter).
    QuickReply,
    /// A URL button (text parameter: the URL suffix).
    Url,
    /// A catalog button.
    Catalog,
}

/// A header or body parameter, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplateParameter {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A localized currency amount.
    Currency {
        /// The amount.
        currency: Currency,
    },
    /// A date and time.
    DateTime {
        /// The date and time.
        date_time: DateTime,
    },
    /// An image (header only).
    Image {
        /// The image.
        image: MediaRef,
    },
    /// A video (header only).
    Video {
        /// The video.
        video: MediaRef,
    },
    /// A PDF document (header only).
    Document {
        /// The document.
        document: MediaRef,
    },
}

impl TemplateParameter {
    /// A text parameter.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// A currency parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Currency {
    /// Text used when localization fails.
    pub fallback_value: String,
    /// ISO 4217 code.
    pub code: String,
    /// The amount times 1000.
    pub amount_1000: i64,
}

/// A date-time parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateTime {
    /// The text shown (Cloud API always uses it).
    pub fallback_value: String,
}

/// A button parameter, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ButtonParameter {
    /// Quick-reply payload, returned when the user taps the button.
    Payload {
        /// The payload.
        payload: String,
    },
    /// URL suffix of a URL button.
    Text {
        /// The suffix.
        text: String,
    },
}

/// The response to a sent message (`MessageResponsePayload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageResponse {
    /// Always `"whatsapp"`.
    pub messaging_product: MessagingProduct,
    /// The recipient as given and as resolved.
    #[serde(default)]
    pub contacts: Vec<SentContact>,
    /// The accepted message (one).
    #[serde(default)]
    pub messages: Vec<SentMessage>,
}

impl SendMessageResponse {
    /// The `wamid` of the accepted message.
    pub fn message_id(&self) -> Option<&str> {
        self.messages.first().map(|m| m.id.as_str())
    }
}

/// A recipient in [`SendMessageResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentContact {
    /// The `to` as sent.
    pub input: String,
    /// The recipient's WhatsApp id.
    pub wa_id: String,
}

/// A message in [`SendMessageResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The message's `wamid`.
    pub id: String,
    /// `accepted`, `held_for_quality_assessment` or `paused`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<String>,
}

/// The body of mark-as-read (`MarkMessageRequestPayload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkReadRequest {
    /// Always `"whatsapp"`.
    pub messaging_product: MessagingProduct,
    /// Always `"read"`.
    pub status: String,
    /// The `wamid` of the inbound message.
    pub message_id: String,
}
