//! Credentials in memory.
//!
//! Every credential imix handles (Meta access tokens, app secrets, SMTP passwords, AI API
//! keys, the server's own `SECRET_KEY`) is held as a [`SecretString`]: its `Debug` output is
//! redacted, it is zeroized on drop, and reading it takes an explicit
//! [`ExposeSecret::expose_secret`] call that is easy to audit.
//!
//! The API never returns a credential; it returns a [`hint`] instead.
//!
//! ```
//! use imix_core::secret::{hint, SecretString};
//!
//! let token = SecretString::from("EAAG-very-secret-1234");
//! assert_eq!(format!("{token:?}"), "SecretBox<str>([REDACTED])");
//! assert_eq!(hint(&token), "****1234");
//! ```

pub use secrecy::{ExposeSecret, SecretBox, SecretString};

/// A hint that lets an operator recognise a stored credential without revealing it:
/// `****` followed by its last four characters, or only `****` when the secret is too short
/// for four characters to be safe to show (fewer than 12).
pub fn hint(secret: &SecretString) -> String {
    let exposed = secret.expose_secret();
    let chars: Vec<char> = exposed.chars().collect();
    if chars.len() < 12 {
        return "****".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_reveal_nothing() {
        assert_eq!(hint(&SecretString::from("abc12345")), "****");
    }
}
