//! The send API's checks of a message body (Meta's shape: `type` and the object named
//! after it, optional `context`), before anything is queued. Every refusal names the
//! offending field, with Meta's limits per type (text length, captions, buttons, rows,
//! media types by link).

use imix_whatsapp::model::{
    Interactive, InteractiveHeader, MediaSource, MessageContent, MessageContext, TemplateComponent,
    TemplateDefinitionComponent, TemplateParameter,
};
use serde_json::Value;

use super::SendRefusal;

/// The message types the send API takes.
pub const TYPES: &[&str] = &[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "template",
    "reaction",
];

/// A checked message body.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The typed content.
    pub content: MessageContent,
    /// The message it replies to.
    pub context: Option<MessageContext>,
    /// Whether it carries media (counted against the media quota too).
    pub media: bool,
}

impl Checked {
    /// Meta's `type`.
    pub fn kind(&self) -> &'static str {
        self.content.kind()
    }

    /// The stored body: `type`, the type's object, `context`.
    pub fn body(&self) -> Value {
        let mut v = serde_json::to_value(&self.content).unwrap_or(Value::Null);
        if let (Some(ctx), Some(obj)) = (&self.context, v.as_object_mut()) {
            obj.insert(
                "context".into(),
                serde_json::json!({ "message_id": ctx.message_id }),
            );
        }
        v
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SendRefusal {
    SendRefusal::invalid(field, message)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Text the contacts and notes rules refuse (control characters, bidirectional overrides),
/// except carriage returns: integrators' texts often break lines with CRLF.
fn has_control(value: &str) -> bool {
    !value
        .chars()
        .all(|c| c == '\r' || crate::contacts::allowed_in_text(c))
}

fn text_within(field: &str, value: &str, max: usize) -> Result<(), SendRefusal> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if chars(value) > max {
        return Err(invalid(field, format!("is longer than {max} characters")));
    }
    if has_control(value) {
        return Err(invalid(
            field,
            "must not contain control characters nor bidirectional overrides",
        ));
    }
    Ok(())
}

fn optional_within(field: &str, value: Option<&str>, max: usize) -> Result<(), SendRefusal> {
    match value {
        Some(v) if chars(v) > max => {
            Err(invalid(field, format!("is longer than {max} characters")))
        }
        Some(v) if has_control(v) => Err(invalid(
            field,
            "must not contain control characters nor bidirectional overrides",
        )),
        _ => Ok(()),
    }
}

fn http_url(field: &str, url: &str) -> Result<(), SendRefusal> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(invalid(field, "must be an HTTP or HTTPS URL")),
    }
}

/// The file extensions Meta takes for each media type sent by link (its supported media
/// types; a document may be any file), and the size limit of each type in bytes.
pub fn media_limits(kind: &str) -> (&'static [&'static str], u64) {
    const MB: u64 = 1024 * 1024;
    match kind {
        "image" => (&["jpg", "jpeg", "png"], 5 * MB),
        "video" => (&["mp4", "3gp", "3gpp"], 16 * MB),
        "audio" => (&["aac", "amr", "mp3", "m4a", "ogg", "opus"], 16 * MB),
        "sticker" => (&["webp"], 500 * 1024),
        _ => (&[], 100 * MB),
    }
}

/// The extension of a link's path, lowercased (query and fragment ignored).
fn link_extension(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next()?;
    let (_, ext) = last.rsplit_once('.')?;
    Some(ext.to_ascii_lowercase())
}

fn media_source(kind: &str, field: &str, source: &MediaSource) -> Result<(), SendRefusal> {
    match source {
        MediaSource::Id(id) => {
            if id.trim().is_empty() || chars(id) > 256 {
                return Err(invalid(format!("{field}.id"), "must be a media id"));
            }
            Ok(())
        }
        MediaSource::Link(link) => {
            let f = format!("{field}.link");
            http_url(&f, link)?;
            let (types, _) = media_limits(kind);
            if types.is_empty() {
                return Ok(());
            }
            // A link whose type cannot be told from its name is left to Meta (which fails
            // the message with 131053 if it is not supported).
            match link_extension(link) {
                Some(ext) if !types.contains(&ext.as_str()) && ext.len() <= 5 => Err(invalid(
                    f,
                    format!(
                        "a {kind} must be one of {} (Meta's supported types)",
                        types.join(", ")
                    ),
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Declared size of a file sent by link or id, when the caller gives one
/// (`<type>.file_size`, ours, not Meta's): checked against the type's limit and removed.
fn declared_size(kind: &str, object: &mut Value) -> Result<(), SendRefusal> {
    let Some(map) = object.as_object_mut() else {
        return Ok(());
    };
    let Some(size) = map.remove("file_size") else {
        return Ok(());
    };
    let field = format!("{kind}.file_size");
    let Some(size) = size.as_u64() else {
        return Err(invalid(field, "must be a number of bytes"));
    };
    let (_, max) = media_limits(kind);
    if size > max {
        return Err(invalid(
            field,
            format!("a {kind} may be at most {max} bytes (Meta's limit)"),
        ));
    }
    Ok(())
}

fn header(field: &str, header: Option<&InteractiveHeader>) -> Result<(), SendRefusal> {
    match header {
        None => Ok(()),
        Some(InteractiveHeader::Text { text }) => text_within(&format!("{field}.text"), text, 60),
        Some(InteractiveHeader::Image { image }) => {
            media_source("image", &format!("{field}.image"), &image.source)
        }
        Some(InteractiveHeader::Video { video }) => {
            media_source("video", &format!("{field}.video"), &video.source)
        }
        Some(InteractiveHeader::Document { document }) => {
            media_source("document", &format!("{field}.document"), &document.source)
        }
    }
}

fn interactive(i: &Interactive) -> Result<(), SendRefusal> {
    match i {
        Interactive::Button {
            header: h,
            body,
            footer,
            action,
        } => {
            header("interactive.header", h.as_ref())?;
            text_within("interactive.body.text", &body.text, 1024)?;
            optional_within(
                "interactive.footer.text",
                footer.as_ref().map(|f| f.text.as_str()),
                60,
            )?;
            let buttons = &action.buttons;
            if buttons.is_empty() || buttons.len() > 3 {
                return Err(invalid(
                    "interactive.action.buttons",
                    "must hold 1 to 3 buttons",
                ));
            }
            let mut ids = Vec::new();
            for (n, b) in buttons.iter().enumerate() {
                text_within(
                    &format!("interactive.action.buttons[{n}].reply.title"),
                    &b.reply.title,
                    20,
                )?;
                text_within(
                    &format!("interactive.action.buttons[{n}].reply.id"),
                    &b.reply.id,
                    256,
                )?;
                if ids.contains(&&b.reply.id) {
                    return Err(invalid(
                        format!("interactive.action.buttons[{n}].reply.id"),
                        "must differ from the other buttons' ids",
                    ));
                }
                ids.push(&b.reply.id);
            }
            Ok(())
        }
        Interactive::List {
            header: h,
            body,
            footer,
            action,
        } => {
            if !matches!(h, None | Some(InteractiveHeader::Text { .. })) {
                return Err(invalid(
                    "interactive.header",
                    "a list's header can only be text",
                ));
            }
            header("interactive.header", h.as_ref())?;
            text_within("interactive.body.text", &body.text, 4096)?;
            optional_within(
                "interactive.footer.text",
                footer.as_ref().map(|f| f.text.as_str()),
                60,
            )?;
            text_within("interactive.action.button", &action.button, 20)?;
            if action.sections.is_empty() || action.sections.len() > 10 {
                return Err(invalid(
                    "interactive.action.sections",
                    "must hold 1 to 10 sections",
                ));
            }
            let rows: usize = action.sections.iter().map(|s| s.rows.len()).sum();
            if rows == 0 || rows > 10 {
                return Err(invalid(
                    "interactive.action.sections",
                    "must hold 1 to 10 rows in all",
                ));
            }
            for (n, s) in action.sections.iter().enumerate() {
                if action.sections.len() > 1 && s.title.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(
                        format!("interactive.action.sections[{n}].title"),
                        "is required when there are several sections",
                    ));
                }
                optional_within(
                    &format!("interactive.action.sections[{n}].title"),
                    s.title.as_deref(),
                    24,
                )?;
                for (m, r) in s.rows.iter().enumerate() {
                    let f = format!("interactive.action.sections[{n}].rows[{m}]");
                    text_within(&format!("{f}.id"), &r.id, 200)?;
                    text_within(&format!("{f}.title"), &r.title, 24)?;
                    optional_within(&format!("{f}.description"), r.description.as_deref(), 72)?;
                }
            }
            Ok(())
        }
        Interactive::CtaUrl {
            header: h,
            body,
            footer,
            action,
        } => {
            header("interactive.header", h.as_ref())?;
            text_within("interactive.body.text", &body.text, 1024)?;
            optional_within(
                "interactive.footer.text",
                footer.as_ref().map(|f| f.text.as_str()),
                60,
            )?;
            if action.name != "cta_url" {
                return Err(invalid("interactive.action.name", "must be `cta_url`"));
            }
            text_within(
                "interactive.action.parameters.display_text",
                &action.parameters.display_text,
                20,
            )?;
            http_url("interactive.action.parameters.url", &action.parameters.url)
        }
    }
}

fn coordinate(field: &str, value: &str, bound: f64) -> Result<(), SendRefusal> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= bound => Ok(()),
        _ => Err(invalid(
            field,
            format!("must be a number from -{bound} to {bound}"),
        )),
    }
}

/// Checks a message body: `type` one of [`TYPES`], its object of Meta's shape and within
/// Meta's limits, `context.message_id` when given. Templates' parameters are checked
/// against the stored template by [`template_parameters`].
pub fn check(body: &Value) -> Result<Checked, SendRefusal> {
    let Some(obj) = body.as_object() else {
        return Err(invalid("type", "is required"));
    };
    let kind = match obj.get("type") {
        Some(Value::String(k)) if TYPES.contains(&k.as_str()) => k.clone(),
        Some(Value::String(_)) => {
            return Err(invalid(
                "type",
                format!("must be one of {}", TYPES.join(", ")),
            ))
        }
        _ => return Err(invalid("type", "is required")),
    };
    let Some(object) = obj.get(&kind).filter(|v| !v.is_null()) else {
        return Err(invalid(
            kind.clone(),
            format!("is required for a {kind} message"),
        ));
    };
    let mut object = object.clone();
    let media = matches!(
        kind.as_str(),
        "image" | "audio" | "video" | "document" | "sticker"
    );
    if media {
        // Serde would keep one of the two and drop the other without a word; Meta takes
        // exactly one.
        if object.get("id").is_some() && object.get("link").is_some() {
            return Err(invalid(
                format!("{kind}.link"),
                "give either an id or a link, not both",
            ));
        }
        declared_size(&kind, &mut object)?;
    }
    let typed = serde_json::json!({ "type": kind, kind.clone(): object });
    let content: MessageContent = serde_json::from_value(typed)
        .map_err(|e| invalid(kind.clone(), format!("is not a valid {kind} object: {e}")))?;
    let context = match obj.get("context").filter(|v| !v.is_null()) {
        None => None,
        Some(c) => {
            let id = c.get("message_id").and_then(Value::as_str).unwrap_or("");
            if id.trim().is_empty() {
                return Err(invalid(
                    "context.message_id",
                    "must be the wamid of the message replied to",
                ));
            }
            Some(MessageContext {
                message_id: id.to_owned(),
            })
        }
    };
    match &content {
        MessageContent::Text { text } => {
            text_within("text.body", &text.body, 4096)?;
        }
        MessageContent::Image { image: m }
        | MessageContent::Video { video: m }
        | MessageContent::Document { document: m } => {
            media_source(&kind, &kind, &m.source)?;
            optional_within(&format!("{kind}.caption"), m.caption.as_deref(), 1024)?;
            optional_within(&format!("{kind}.filename"), m.filename.as_deref(), 240)?;
        }
        MessageContent::Audio { audio: m } | MessageContent::Sticker { sticker: m } => {
            media_source(&kind, &kind, &m.source)?;
        }
        MessageContent::Location { location } => {
            coordinate("location.latitude", &location.latitude, 90.0)?;
            coordinate("location.longitude", &location.longitude, 180.0)?;
        }
        MessageContent::Contacts { contacts } => {
            if contacts.is_empty() || contacts.len() > 5 {
                return Err(invalid("contacts", "must hold 1 to 5 contacts"));
            }
            for (n, c) in contacts.iter().enumerate() {
                if c.name
                    .formatted_name
                    .as_deref()
                    .is_none_or(|f| f.trim().is_empty())
                {
                    return Err(invalid(
                        format!("contacts[{n}].name.formatted_name"),
                        "is required",
                    ));
                }
            }
        }
        MessageContent::Interactive { interactive: i } => interactive(i)?,
        MessageContent::Template { template } => {
            text_within("template.name", &template.name, 512)?;
            text_within("template.language.code", &template.language.code, 16)?;
        }
        MessageContent::Reaction { reaction } => {
            if reaction.message_id.trim().is_empty() {
                return Err(invalid(
                    "reaction.message_id",
                    "must be the wamid of the message reacted to",
                ));
            }
            if chars(&reaction.emoji) > 10 {
                return Err(invalid(
                    "reaction.emoji",
                    "must be one emoji, or empty to remove the reaction",
                ));
            }
        }
    }
    Ok(Checked {
        media: media || template_has_media(&content),
        content,
        context,
    })
}

fn template_has_media(content: &MessageContent) -> bool {
    let MessageContent::Template { template } = content else {
        return false;
    };
    template.components.iter().any(|c| match c {
        TemplateComponent::Header { parameters } => parameters.iter().any(|p| {
            matches!(
                p,
                TemplateParameter::Image { .. }
                    | TemplateParameter::Video { .. }
                    | TemplateParameter::Document { .. }
            )
        }),
        _ => false,
    })
}

/// Checks a template message's parameters against the stored template's placeholders:
/// the header's (one media parameter for a media header, one text per `{{n}}` of a text
/// header), the body's, and each URL button's. A mismatch names the component
/// (`template.components[body]`, `template.components[header]`,
/// `template.components[button 0]`) with what was expected.
pub fn template_parameters(
    content: &MessageContent,
    definition: &Value,
) -> Result<(), SendRefusal> {
    let MessageContent::Template { template } = content else {
        return Ok(());
    };
    let defs: Vec<TemplateDefinitionComponent> =
        serde_json::from_value(definition.clone()).unwrap_or_default();
    let def = |kind: &str| defs.iter().find(|c| c.kind.eq_ignore_ascii_case(kind));
    let mismatch = |component: &str, expected: usize, got: usize, what: &str| {
        SendRefusal::new(
            "template_parameter_mismatch",
            Some(format!("template.components[{component}]")),
            format!("the template's {component} takes {expected} {what} parameter(s); {got} given"),
        )
        .with_details(serde_json::json!({
            "component": component, "expected": expected, "given": got,
        }))
    };
    // Header.
    let header_given: Vec<&TemplateParameter> = template
        .components
        .iter()
        .filter_map(|c| match c {
            TemplateComponent::Header { parameters } => Some(parameters.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    match def("HEADER") {
        Some(h) => {
            let format = h.format.as_deref().unwrap_or("TEXT").to_ascii_uppercase();
            if format == "TEXT" {
                let want = h.placeholder_count();
                let texts = header_given
                    .iter()
                    .filter(|p| matches!(p, TemplateParameter::Text { .. }))
                    .count();
                if want != header_given.len() || texts != header_given.len() {
                    return Err(mismatch("header", want, header_given.len(), "text"));
                }
            } else if matches!(format.as_str(), "IMAGE" | "VIDEO" | "DOCUMENT") {
                let fits = header_given.len() == 1
                    && matches!(
                        (format.as_str(), header_given[0]),
                        ("IMAGE", TemplateParameter::Image { .. })
                            | ("VIDEO", TemplateParameter::Video { .. })
                            | ("DOCUMENT", TemplateParameter::Document { .. })
                    );
                if !fits {
                    return Err(mismatch(
                        "header",
                        1,
                        header_given.len(),
                        &format.to_ascii_lowercase(),
                    ));
                }
            }
        }
        None if !header_given.is_empty() => {
            return Err(mismatch("header", 0, header_given.len(), "header"))
        }
        None => {}
    }
    // Body.
    let body_given: usize = template
        .components
        .iter()
        .map(|c| match c {
            TemplateComponent::Body { parameters } => parameters.len(),
            _ => 0,
        })
        .sum();
    let body_want = def("BODY").map_or(0, TemplateDefinitionComponent::placeholder_count);
    if body_given != body_want {
        return Err(mismatch("body", body_want, body_given, "text"));
    }
    // URL buttons with a placeholder take one parameter each, at their index.
    let buttons = def("BUTTONS")
        .and_then(|b| b.buttons.clone())
        .unwrap_or_default();
    for (index, button) in buttons.iter().enumerate() {
        let url = serde_json::to_value(button)
            .ok()
            .and_then(|v| v.get("url").and_then(Value::as_str).map(str::to_owned));
        let want = url
            .as_deref()
            .map(imix_whatsapp::model::count_placeholders)
            .unwrap_or(0)
            .min(1);
        let got: usize = template
            .components
            .iter()
            .map(|c| match c {
                TemplateComponent::Button {
                    index: i,
                    parameters,
                    ..
                } if i.trim() == index.to_string() => parameters.len(),
                _ => 0,
            })
            .sum();
        if want > 0 && got != want {
            return Err(mismatch(&format!("button {index}"), want, got, "URL"));
        }
    }
    for c in &template.components {
        if let TemplateComponent::Button { index, .. } = c {
            let fits = index
                .trim()
                .parse::<usize>()
                .is_ok_and(|i| i < buttons.len());
            if !fits {
                return Err(SendRefusal::invalid(
                    "template.components",
                    format!("the template has no button {index}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn field(body: Value) -> String {
        check(&body).unwrap_err().field.unwrap()
    }

    #[test]
    fn every_type_is_accepted_in_metas_shape() {
        let bodies = [
            json!({"type": "text", "text": {"body": "hi https://x.example", "preview_url": true}}),
            json!({"type": "image", "image": {"link": "https://cdn.example/a.png", "caption": "c"}}),
            json!({"type": "audio", "audio": {"id": "1234"}}),
            json!({"type": "video", "video": {"id": "1234"}}),
            json!({"type": "document", "document": {"link": "https://cdn.example/a.pdf", "filename": "a.pdf"}}),
            json!({"type": "sticker", "sticker": {"link": "https://cdn.example/s.webp"}}),
            json!({"type": "location", "location": {"latitude": "37.48", "longitude": "-122.14", "name": "HQ"}}),
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann", "first_name": "Ann"}}]}),
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
            json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Pick"},
                "action": {"button": "Menu", "sections": [{"title": "S", "rows": [{"id": "r", "title": "R"}]}]}}}),
            json!({"type": "interactive", "interactive": {"type": "cta_url", "body": {"text": "See"},
                "action": {"name": "cta_url", "parameters": {"display_text": "Open", "url": "https://x.example"}}}}),
            json!({"type": "template", "template": {"name": "hello", "language": {"code": "en_US"}}}),
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}),
        ];
        for b in bodies {
            let c = check(&b).unwrap_or_else(|e| panic!("{b}: {e:?}"));
            assert_eq!(c.kind(), b["type"].as_str().unwrap());
        }
        let media = check(&json!({"type": "image", "image": {"id": "1"}})).unwrap();
        assert!(media.media);
        let reply = check(
            &json!({"type": "text", "text": {"body": "ok"}, "context": {"message_id": "wamid.A"}}),
        )
        .unwrap();
        assert_eq!(reply.body()["context"]["message_id"], "wamid.A");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(field(json!({"text": {"body": "x"}})), "type");
        assert_eq!(field(json!({"type": "fax"})), "type");
        assert_eq!(field(json!({"type": "text"})), "text");
        assert_eq!(
            field(json!({"type": "text", "text": {"body": ""}})),
            "text.body"
        );
        assert_eq!(
            field(json!({"type": "text", "text": {"body": "x".repeat(4097)}})),
            "text.body"
        );
        assert_eq!(
            field(json!({"type": "image", "image": {"link": "ftp://x/a.png"}})),
            "image.link"
        );
        assert_eq!(
            field(
                json!({"type": "image", "image": {"id": "123", "link": "https://x.example/a.png"}})
            ),
            "image.link"
        );
        assert_eq!(
            field(json!({"type": "text", "text": {"body": "a\u{0}b"}})),
            "text.body"
        );
        assert!(
            check(&json!({"type": "text", "text": {"body": "line one\nline two\tend"}})).is_ok()
        );
        assert_eq!(
            field(json!({"type": "image", "image": {"link": "https://x.example/a.gif"}})),
            "image.link"
        );
        assert_eq!(
            field(json!({"type": "sticker", "sticker": {"id": "1", "file_size": 600000}})),
            "sticker.file_size"
        );
        assert_eq!(
            field(json!({"type": "location", "location": {"latitude": "91", "longitude": "0"}})),
            "location.latitude"
        );
        assert_eq!(
            field(json!({"type": "contacts", "contacts": []})),
            "contacts"
        );
        assert_eq!(
            field(
                json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A title that is far too long"}}]}}})
            ),
            "interactive.action.buttons[0].reply.title"
        );
        assert_eq!(
            field(json!({"type": "reaction", "reaction": {"message_id": "", "emoji": "x"}})),
            "reaction.message_id"
        );
        assert_eq!(
            field(json!({"type": "text", "text": {"body": "x"}, "context": {}})),
            "context.message_id"
        );
    }

    #[test]
    fn template_parameters_must_match_the_placeholders() {
        let definition = json!([
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready"},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.example/{{1}}"}]}
        ]);
        let content = |components: Value| {
            check(&json!({"type": "template", "template": {"name": "t", "language": {"code": "en"}, "components": components}}))
                .unwrap()
                .content
        };
        let good = content(json!([
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.example/a.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "42"}]}
        ]));
        template_parameters(&good, &definition).unwrap();
        let short_body = content(json!([
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.example/a.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "42"}]}
        ]));
        let e = template_parameters(&short_body, &definition).unwrap_err();
        assert_eq!(e.code, "template_parameter_mismatch");
        assert_eq!(e.field.as_deref(), Some("template.components[body]"));
        let no_header = content(json!([
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]}
        ]));
        let e = template_parameters(&no_header, &definition).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("template.components[header]"));
    }
}
