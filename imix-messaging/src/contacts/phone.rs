//! Phone numbers as contacts keep them: E.164, checked against libphonenumber's metadata
//! (the `phonenumber` crate), and the WhatsApp id derived from them.

use phonenumber::Mode;

/// `raw` in E.164 (`+22245000001`), or why it is not a phone number.
///
/// Numbers are taken in international form: with a leading `+`, with `00` instead, or as
/// bare digits starting with the country code (as Meta writes `wa_id`s). Spaces, dots,
/// dashes and parentheses are ignored.
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}'))
        .collect();
    if compact.is_empty() {
        return Err("is empty");
    }
    let international = if let Some(rest) = compact.strip_prefix("00") {
        format!("+{rest}")
    } else if compact.starts_with('+') {
        compact
    } else {
        format!("+{compact}")
    };
    if international.len() > 20 || !international[1..].chars().all(|c| c.is_ascii_digit()) {
        return Err("is not a phone number in international form (+ and digits)");
    }
    let number = phonenumber::parse(None, &international)
        .map_err(|_| "is not a phone number in international form")?;
    if !phonenumber::is_valid(&number) {
        return Err("is not a valid phone number for its country");
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

/// The WhatsApp id Meta would report for an E.164 number: its digits. For a few countries
/// Meta's differs (it is then given explicitly, and both are kept).
pub fn wa_id_of(e164: &str) -> String {
    e164.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_forms_normalize_to_e164() {
        assert_eq!(normalize("+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(normalize("0033612345678").unwrap(), "+33612345678");
        assert_eq!(normalize("33612345678").unwrap(), "+33612345678");
        assert_eq!(normalize("+1 (202) 555-0123").unwrap(), "+12025550123");
        assert_eq!(normalize("212612345678").unwrap(), "+212612345678");
        assert_eq!(wa_id_of("+33612345678"), "33612345678");
    }

    #[test]
    fn what_is_not_a_number_is_refused() {
        for bad in [
            "",
            "  ",
            "hello",
            "+33 6",
            "+999 1234567",
            "+33612345678901234",
            "+3361234567x",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }
}
