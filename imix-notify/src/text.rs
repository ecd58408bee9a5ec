//! Names that other people see — a user's or tenant's name in an email, the sender's name —
//! must show what they are: no control characters (a line break in a name would start a new
//! mail header), no bidirectional override or isolate characters (which make
//! `invoice<U+202E>fdp.exe` read as `invoiceexe.pdf`), and not only invisible characters.

/// Why `name` cannot be shown to others, or `None` when it can. `name` is the trimmed value;
/// an empty one is left to the caller's "required" rule.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        Some("must not contain control characters or line breaks")
    } else if name.chars().any(is_bidi_control) {
        Some(
            "must not contain bidirectional override or isolate characters \
             (U+202A–U+202E, U+2066–U+2069)",
        )
    } else if !name.is_empty() && name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        Some("must contain visible characters, not only zero-width or invisible ones")
    } else {
        None
    }
}

/// The explicit embedding, override and isolate characters: U+202A–U+202E, U+2066–U+2069.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing: zero-width spaces and joiners, direction marks, the
/// word joiner and invisible operators, the byte-order mark, the soft hyphen, fillers,
/// variation selectors and tag characters.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    ) || is_bidi_control(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_shown_to_others() {
        for ok in [
            "Aïcha Ould Ahmed",
            "عائشة",
            "O'Brien",
            "Zoë\u{200D}Ann",
            "Acme ‏Ltd",
        ] {
            assert_eq!(name_problem(ok), None, "{ok:?}");
        }
        for bad in [
            "L\nBcc: victim@evil.example",
            "tab\there",
            "line\u{2028}sep",
            "invoice\u{202E}fdp.exe",
            "x\u{2066}y",
            "\u{200B}\u{200B}",
            "\u{200B} \u{FEFF}",
            "\u{3164}",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
