//! Field validation shared by the services. Every failure names its field.

use crate::{error::FieldProblem, TenancyError};

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

/// A name other people see (a user's first or last name, a tenant's or organization's
/// name): trimmed, non-empty, at most `max` characters, without control characters (line
/// breaks and tabs included), bidirectional override or isolate characters, and not made
/// only of invisible characters (see [`imix_notify::text::name_problem`]).
pub fn required_name(field: &str, value: &str, max: usize) -> Result<String, TenancyError> {
    optional_name(field, Some(value), max)?
        .ok_or_else(|| TenancyError::invalid(field, "must not be empty"))
}

/// An optional name other people see: as [`required_name`], but empty becomes `None`.
pub fn optional_name(
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
        Some(v) => match imix_notify::text::name_problem(v) {
            Some(problem) => Err(TenancyError::invalid(field, problem)),
            None => Ok(Some(v.to_owned())),
        },
    }
}

/// Collects every invalid field of a request so all are reported at once: run each check
/// through [`Problems::check`], then [`Problems::finish`].
#[derive(Debug, Default)]
pub struct Problems {
    fields: Vec<FieldProblem>,
    other: Option<TenancyError>,
}

impl Problems {
    /// The value if `result` is `Ok`; otherwise records the problem and answers `None`.
    pub fn check<T>(&mut self, result: Result<T, TenancyError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(TenancyError::Invalid { field, message }) => {
                self.fields.push(FieldProblem { field, message });
                None
            }
            Err(TenancyError::InvalidFields(more)) => {
                self.fields.extend(more);
                None
            }
            Err(other) => {
                self.other.get_or_insert(other);
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.other.is_none()
    }

    /// `Ok` when every check passed; else one [`TenancyError::Invalid`] for a single bad
    /// field, [`TenancyError::InvalidFields`] for several (a non-field error wins).
    pub fn finish(self) -> Result<(), TenancyError> {
        if let Some(other) = self.other {
            return Err(other);
        }
        let mut fields = self.fields;
        match fields.len() {
            0 => Ok(()),
            1 => {
                let FieldProblem { field, message } = fields.remove(0);
                Err(TenancyError::Invalid { field, message })
            }
            _ => Err(TenancyError::InvalidFields(fields)),
        }
    }
}

/// A bare email address (RFC 5322 addr-spec, checked by the `email_address` crate; no
/// `Name <addr>` form, no domain literal), normalized: trimmed, the domain lower-cased.
///
/// Only ASCII addresses are accepted: internationalized addresses (`ü@…`, `x@exämple.com`)
/// are not supported yet, and refusing them also refuses every invisible or look-alike
/// character (`ta@ac<U+200B>me.example`, full-width letters, the Kelvin sign U+212A that
/// lower-cases to `k`), so two accounts can never differ only by such a character. The domain
/// needs a dot and may not be a bare IP address (`x@127.0.0.1`): its last label is not all
/// digits.
pub fn email(field: &str, value: &str) -> Result<String, TenancyError> {
    let v = value.trim();
    let options = email_address::Options::default()
        .without_display_text()
        .without_domain_literal();
    let ascii_domain_name = |domain: &str| {
        domain.contains('.')
            && !domain
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    };
    let parsed = match email_address::EmailAddress::parse_with_options(v, options) {
        Ok(parsed) if v.len() <= 254 && v.is_ascii() && ascii_domain_name(parsed.domain()) => {
            parsed
        }
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
    fn emails_are_ascii_with_a_domain_name() {
        assert_eq!(
            email("email", "ta@acme.example").unwrap(),
            "ta@acme.example"
        );
        assert_eq!(email("email", "x@1and1.com").unwrap(), "x@1and1.com");
        for bad in [
            "ta@ac\u{200B}me.example",
            "t\u{200B}a@acme.example",
            "\u{FF54}\u{FF41}@acme.example",
            "ta@\u{FF41}cme.example",
            "\u{FC}@example.com",
            "x@ex\u{E4}mple.com",
            "\u{212A}im@acme.example",
            "x@127.0.0.1",
            "x@10.0.0.1",
            "x@127.1",
        ] {
            match email("email", bad) {
                Err(TenancyError::Invalid { field, .. }) => assert_eq!(field, "email"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_refuse_line_breaks_overrides_and_invisible_text() {
        assert_eq!(
            required_name("last_name", "  Ould Ahmed ", 100).unwrap(),
            "Ould Ahmed"
        );
        for bad in [
            "L\nBcc: victim@evil.example",
            "tab\tname",
            "evil\u{202E}fdp.exe",
            "\u{200B}\u{200C}",
        ] {
            match required_name("last_name", bad, 100) {
                Err(TenancyError::Invalid { field, .. }) => assert_eq!(field, "last_name"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(required_name("name", "   ", 100).is_err());
        assert_eq!(optional_name("organization", Some(" "), 100).unwrap(), None);
    }

    #[test]
    fn problems_report_every_field() {
        let mut p = Problems::default();
        assert!(p.check(required_name("first_name", "A\nB", 100)).is_none());
        assert!(p.check(required_name("last_name", "ok", 100)).is_some());
        assert!(p.check(email("email", "nope")).is_none());
        match p.finish() {
            Err(TenancyError::InvalidFields(all)) => {
                let fields: Vec<_> = all.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(fields, ["first_name", "email"]);
            }
            other => panic!("{other:?}"),
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
