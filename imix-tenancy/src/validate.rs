//! Field validation shared by the services. Every failure names its field.

use crate::TenancyError;

/// A trimmed, non-empty text of at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, TenancyError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(TenancyError::invalid(field, "must not be empty"));
    }
    optional_text(field, Some(v), max).map(|o| o.unwrap_or_default())
}

/// An optional text: trimmed, empty becomes `None`, at most `max` characters.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, TenancyError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > max => Err(TenancyError::invalid(
            field,
            format!("must be at most {max} characters"),
        )),
        Some(v) if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => Err(
            TenancyError::invalid(field, "must not contain control characters"),
        ),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// A bare email address (RFC 5322 addr-spec, checked by the `email_address` crate; no
/// `Name <addr>` form, no domain literal), normalized: trimmed, the domain lower-cased.
pub fn email(field: &str, value: &str) -> Result<String, TenancyError> {
    let v = value.trim();
    let options = email_address::Options::default()
        .without_display_text()
        .without_domain_literal();
    let parsed = match email_address::EmailAddress::parse_with_options(v, options) {
        Ok(parsed) if v.len() <= 254 && parsed.domain().contains('.') => parsed,
        _ => {
            return Err(TenancyError::invalid(
                field,
                "is not a valid email address (give the bare address, like name@example.com)",
            ))
        }
    };
    Ok(format!(
        "{}@{}",
        parsed.local_part(),
        parsed.domain().to_lowercase()
    ))
}

/// A phone number in E.164: `+`, then 8 to 15 digits, the first not 0.
pub fn e164(field: &str, value: &str) -> Result<String, TenancyError> {
    let v = value.trim();
    let digits = v.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(TenancyError::invalid(
            field,
            "must be in E.164 format, e.g. +22245123456",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("email", " A.b@Example.COM ").unwrap(),
            "A.b@example.com"
        );
        for bad in [
            "",
            "nobody",
            "a@b",
            "a b@example.com",
            "@example.com",
            "Platform <admin@example.com>",
            "<admin@example.com>",
            "admin@[127.0.0.1]",
        ] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert!(e164("phone", "+22245123456").is_ok());
        for bad in [
            "22245123456",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "+2224512a456",
        ] {
            assert!(e164("phone", bad).is_err(), "{bad}");
        }
    }
}
