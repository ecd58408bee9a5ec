//! Names that other people see — a user's or tenant's name in an email, the sender's name —
//! must show what they are: no control characters (a line break in a name would start a new
//! mail header), no bidirectional override or isolate characters (which make
//! `invoice<U+202E>fdp.exe` read as `invoiceexe.pdf`), no characters that render as an
//! unknown box or as nothing (object replacement, interlinear annotations, private-use,
//! unassigned code points and noncharacters), and at least one letter or digit — so a name
//! made only of blanks (`U+2800` Braille blank), combining marks or emoji is refused.

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
    } else if name.chars().any(is_unrenderable) {
        Some(
            "must not contain private-use, unassigned or replacement characters \
             (U+FFF9–U+FFFC, noncharacters)",
        )
    } else if !name.is_empty() && name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        Some("must contain visible characters, not only zero-width or invisible ones")
    } else if !name.is_empty() && !name.chars().any(char::is_alphanumeric) {
        Some("must contain at least one letter or digit")
    } else {
        None
    }
}

/// Characters that show as an unknown box, as something chosen by the font, or as nothing:
/// the interlinear annotation characters (U+FFF9–U+FFFB), the object replacement character
/// (U+FFFC), private-use characters, unassigned code points and noncharacters (U+FDD0–U+FDEF
/// and the last two code points of every plane).
pub fn is_unrenderable(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory};
    let noncharacter = matches!(c, '\u{FDD0}'..='\u{FDEF}') || (u32::from(c) & 0xFFFE) == 0xFFFE;
    noncharacter
        || matches!(c, '\u{FFF9}'..='\u{FFFC}')
        || matches!(
            get_general_category(c),
            GeneralCategory::PrivateUse | GeneralCategory::Unassigned | GeneralCategory::Surrogate
        )
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

    #[test]
    fn names_need_a_letter_or_digit_and_renderable_characters() {
        for ok in [
            "invoice.pdf",
            "2024",
            "Café ☕",
            "Ζήνων",
            "e\u{0301}cole",
            "株式会社",
        ] {
            assert_eq!(name_problem(ok), None, "{ok:?}");
        }
        for bad in [
            "\u{2800}\u{2800}",
            "\u{0301}\u{0301}\u{0301}",
            "\u{FFFC}",
            "Acme\u{FFFC}",
            "\u{FFF9}Acme\u{FFFA}hidden\u{FFFB}",
            "Acme\u{E000}",
            "\u{F0000}x",
            "Acme\u{FDD0}",
            "Acme\u{FFFF}",
            "x\u{10FFFE}",
            "Acme\u{0378}",
            "😀😀",
            "...",
            "-",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
