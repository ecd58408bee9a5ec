//! Phone numbers as contacts keep them: E.164, checked against libphonenumber's metadata
//! (the `phonenumber` crate), and the WhatsApp id derived from them.

use phonenumber::Mode;

/// `raw` in E.164 (`+22245000001`), or why it is not a phone number.
///
/// Numbers are taken in international form: with a leading `+`, with `00` instead, or as
/// bare digits starting with the country code (as Meta writes `wa_id`s). Spaces, dots,
/// dashes and parentheses are ignored, and so are the direction marks that text copied from
/// right-to-left pages carries. Arabic-Indic (`٠`–`٩`), Eastern Arabic-Indic (`۰`–`۹`) and
/// full-width digits count as the digits they are: numbers typed on Arabic or Persian
/// keyboards are common among our tenants' customers.
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| {
            !matches!(
                c,
                ' ' | '.' | '-' | '(' | ')' | '\u{a0}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            )
        })
        .map(ascii_digit)
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

/// `c` as an ASCII digit (or `+`) when it is a digit (or plus sign) of another script
/// people write phone numbers in; any other character unchanged.
fn ascii_digit(c: char) -> char {
    let zero = match c {
        '\u{0660}'..='\u{0669}' => 0x0660,
        '\u{06f0}'..='\u{06f9}' => 0x06f0,
        '\u{ff10}'..='\u{ff19}' => 0xff10,
        '\u{ff0b}' => return '+',
        _ => return c,
    };
    // The ranges above are ten code points from their zero: the offset is 0..=9.
    char::from_digit(u32::from(c) - zero, 10).unwrap_or(c)
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
    fn digits_of_other_scripts_count_as_digits() {
        // Arabic-Indic, with a right-to-left mark as copied from an Arabic page.
        assert_eq!(
            normalize("\u{200f}+٢١٢ ٦١٢ ٣٤٥ ٦٧٨").unwrap(),
            "+212612345678"
        );
        // Eastern Arabic-Indic (Persian keyboards) and full-width digits.
        assert_eq!(normalize("۰۰۳۳۶۱۲۳۴۵۶۷۸").unwrap(), "+33612345678");
        assert_eq!(
            normalize("＋３３６１２３４５６７８").unwrap(),
            "+33612345678"
        );
        // Other non-ASCII digits (Devanagari) are still refused, not guessed.
        assert!(normalize("+३३६१२३४५६७८").is_err());
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
