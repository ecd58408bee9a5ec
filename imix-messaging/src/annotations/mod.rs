//! What the team adds to the inbox for itself: private notes on conversations (never sent
//! to the customer), the tenant's labels (set on conversations), and canned responses
//! (saved replies found by shortcut). Records and their checks here, the service in
//! [`service`], storage in [`crate::storage::annotations`].

use imix_core::{
    id::{TenantId, UserId},
    Error as CoreError, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::records::ConversationId;

pub mod service;

pub use service::{AnnotationService, CannedResponsePatch, LabelPatch, NewCannedResponse};

imix_core::define_id!(
    /// Identifies a private note on a conversation.
    NoteId,
    "note"
);
imix_core::define_id!(
    /// Identifies one of a tenant's labels.
    LabelId,
    "label"
);
imix_core::define_id!(
    /// Identifies one of a tenant's canned responses.
    CannedResponseId,
    "canned_response"
);

/// The longest note body, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;
/// The longest label name, in characters.
pub const MAX_LABEL_NAME_CHARS: usize = 64;
/// The longest canned response title, in characters.
pub const MAX_CANNED_TITLE_CHARS: usize = 200;
/// The longest canned response body, in characters (WhatsApp's text limit).
pub const MAX_CANNED_BODY_CHARS: usize = 4096;
/// The longest canned response shortcut, in characters.
pub const MAX_SHORTCUT_CHARS: usize = 32;
/// The most labels one conversation carries.
pub const MAX_LABELS_PER_CONVERSATION: usize = 50;

/// A private note of the team on a conversation. Never sent to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its id.
    pub id: NoteId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The conversation it is about.
    pub conversation_id: ConversationId,
    /// Who wrote it.
    pub author_id: UserId,
    /// Their name when they wrote it (kept so the note reads the same after they leave).
    pub author_name: String,
    /// The text.
    pub body: String,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Written.
    pub created_at: Timestamp,
    /// Last edited.
    pub updated_at: Timestamp,
}

/// One of a tenant's labels. The name is unique per tenant, whatever its case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Its id.
    pub id: LabelId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its name.
    pub name: String,
    /// Its colour, `#rrggbb` (lower case).
    pub color: String,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl Label {
    /// The key names are unique by: lower case, so `VIP` and `vip` are one label.
    pub fn name_key(&self) -> String {
        self.name.to_lowercase()
    }
}

/// A saved reply of a tenant, found by its shortcut (unique per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedResponse {
    /// Its id.
    pub id: CannedResponseId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// What agents type to find it: `^[a-z0-9_-]{1,32}$`.
    pub shortcut: String,
    /// A title for lists.
    pub title: String,
    /// The text sent.
    pub body: String,
    /// The language it is written in (`fr`, `en_US`, …), when given.
    pub language: Option<String>,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

fn invalid(field: &str, message: impl Into<String>) -> CoreError {
    CoreError::invalid(field, message)
}

/// Checks user-written multi-line text: `1..=max` characters, not only blanks, no control
/// characters other than newline and tab.
fn check_text(field: &str, text: &str, max: usize) -> Result<(), CoreError> {
    if text.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if !text.chars().all(crate::contacts::allowed_in_text) {
        return Err(invalid(
            field,
            "must not contain control characters other than newline and tab, nor \
             bidirectional overrides",
        ));
    }
    Ok(())
}

/// Checks a one-line name or title and returns it trimmed.
fn check_line(field: &str, text: &str, max: usize) -> Result<String, CoreError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if t.chars()
        .any(|c| c.is_control() || crate::contacts::is_bidi_control(c))
    {
        return Err(invalid(
            field,
            "must not contain control characters nor bidirectional overrides",
        ));
    }
    Ok(t.to_owned())
}

/// Checks a note's body (field `body`).
pub fn check_note_body(body: &str) -> Result<(), CoreError> {
    check_text("body", body, MAX_NOTE_CHARS)
}

/// Checks a label name (field `name`) and returns it trimmed.
pub fn check_label_name(name: &str) -> Result<String, CoreError> {
    check_line("name", name, MAX_LABEL_NAME_CHARS)
}

/// Checks a colour (field `color`, `#rrggbb`) and returns it in lower case.
pub fn check_color(color: &str) -> Result<String, CoreError> {
    let c = color.trim();
    let hex = c.strip_prefix('#').unwrap_or("");
    if c.len() != 7 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
        return Err(invalid("color", "must be `#rrggbb` (six hex digits)"));
    }
    Ok(c.to_ascii_lowercase())
}

/// Checks a shortcut (field `shortcut`): `^[a-z0-9_-]{1,32}$`.
pub fn check_shortcut(shortcut: &str) -> Result<(), CoreError> {
    let ok = (1..=MAX_SHORTCUT_CHARS).contains(&shortcut.len())
        && shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "shortcut",
            "must be 1 to 32 of a-z, 0-9, `_` and `-`",
        ))
    }
}

/// Checks a canned response's title (field `title`) and returns it trimmed.
pub fn check_canned_title(title: &str) -> Result<String, CoreError> {
    check_line("title", title, MAX_CANNED_TITLE_CHARS)
}

/// Checks a canned response's body (field `body`).
pub fn check_canned_body(body: &str) -> Result<(), CoreError> {
    check_text("body", body, MAX_CANNED_BODY_CHARS)
}

/// Checks a language code (field `language`): two or three letters, then optionally `_`
/// or `-` and a 2-8 letter or digit region or variant (`fr`, `en_US`, `pt-BR`).
pub fn check_language(language: &str) -> Result<(), CoreError> {
    let (base, rest) = match language.find(['_', '-']) {
        Some(i) => (&language[..i], Some(&language[i + 1..])),
        None => (language, None),
    };
    let base_ok = (2..=3).contains(&base.len()) && base.bytes().all(|b| b.is_ascii_alphabetic());
    let rest_ok = rest
        .is_none_or(|r| (2..=8).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    if base_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(
            "language",
            "must be a language code such as `fr`, `en_US` or `pt-BR`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_bodies_allow_newlines_and_tabs_only() {
        assert!(check_note_body("ligne 1\n\tligne 2 — مرحبا").is_ok());
        assert!(check_note_body("   \n").is_err());
        assert!(check_note_body("bell\u{7}").is_err());
        assert!(check_note_body(&"é".repeat(4000)).is_ok());
        assert!(check_note_body(&"é".repeat(4001)).is_err());
        // Display spoofing: overrides and isolates refused, the plain marks kept.
        assert!(check_note_body("bidi\u{202e}gnp.exe").is_err());
        assert!(check_label_name("\u{2066}vip").is_err());
        assert!(check_note_body("مرحبا \u{200f}ok").is_ok());
    }

    #[test]
    fn colors_shortcuts_and_languages() {
        assert_eq!(check_color("#A1b2C3").unwrap(), "#a1b2c3");
        for bad in ["a1b2c3", "#a1b2c", "#a1b2c3d", "#g1b2c3", ""] {
            assert!(check_color(bad).is_err(), "{bad}");
        }
        assert!(check_shortcut("greet_1-fr").is_ok());
        for bad in ["", "Greet", "a b", "é", &"a".repeat(33)] {
            assert!(check_shortcut(bad).is_err(), "{bad}");
        }
        for good in ["fr", "en_US", "pt-BR", "ara"] {
            assert!(check_language(good).is_ok(), "{good}");
        }
        for bad in ["f", "english", "en_", "en_US_x", "1r"] {
            assert!(check_language(bad).is_err(), "{bad}");
        }
    }
}
