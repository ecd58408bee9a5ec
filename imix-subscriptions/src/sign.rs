//! Signing deliveries, and verifying them as a receiver does.
//!
//! `Imix-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<event id>.<t>.<body>")>`,
//! where the key is the endpoint's secret as shown at creation (`whsec_…`, its bytes as
//! they are), `<event id>` the `Imix-Event-Id` header and `<body>` the raw request body.
//! The timestamp is that of the attempt, so a receiver refuses old requests (replays)
//! with a tolerance of a few minutes.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Imix-Signature";
/// The header carrying the event id (the same on every attempt and replay).
pub const EVENT_ID_HEADER: &str = "Imix-Event-Id";
/// The header carrying the delivery id.
pub const DELIVERY_ID_HEADER: &str = "Imix-Delivery-Id";
/// The header carrying the event name.
pub const EVENT_TYPE_HEADER: &str = "Imix-Event-Type";
/// Every endpoint secret starts with this.
pub const SECRET_PREFIX: &str = "whsec_";

fn mac(secret: &[u8], event_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable_key(),
    };
    mac.update(event_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cold]
fn unreachable_key() -> ! {
    // `Hmac::new_from_slice` only refuses keys for MACs with a fixed key size, which
    // HMAC-SHA256 is not.
    panic!("HMAC-SHA256 refused a key")
}

/// The value of [`SIGNATURE_HEADER`] for `body` of event `event_id` sent at `timestamp`.
pub fn signature_header(
    secret: &SecretString,
    event_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let tag = mac(secret.expose_secret().as_bytes(), event_id, timestamp, body)
        .finalize()
        .into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The header is missing parts or malformed.
    Malformed,
    /// The timestamp is further than the tolerance from now (a replay, or a skewed clock).
    Stale,
    /// No `v1` signature matches.
    Mismatch,
}

/// Verifies a request as a receiver should: the header parsed, the timestamp within
/// `tolerance_secs` of `now`, and one `v1` signature equal (in constant time) to the
/// expected one.
pub fn verify(
    secret: &str,
    event_id: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s),
            _ => {}
        }
    }
    let t = timestamp.ok_or(VerifyError::Malformed)?;
    if (now - t).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    for s in signatures {
        let Ok(given) = hex::decode(s) else { continue };
        if mac(secret.as_bytes(), event_id, t, body)
            .verify_slice(&given)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_is_refused() {
        let secret = SecretString::from("whsec_test");
        let header = signature_header(&secret, "evt_1", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(
                "whsec_test",
                "evt_1",
                &header,
                b"{\"a\":1}",
                1_700_000_010,
                300
            ),
            Ok(())
        );
        for (secret, id, body, now) in [
            ("whsec_other", "evt_1", &b"{\"a\":1}"[..], 1_700_000_010),
            ("whsec_test", "evt_2", b"{\"a\":1}", 1_700_000_010),
            ("whsec_test", "evt_1", b"{\"a\":2}", 1_700_000_010),
        ] {
            assert_eq!(
                verify(secret, id, &header, body, now, 300),
                Err(VerifyError::Mismatch)
            );
        }
        assert_eq!(
            verify(
                "whsec_test",
                "evt_1",
                &header,
                b"{\"a\":1}",
                1_700_001_000,
                300
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify("whsec_test", "evt_1", "v1=00", b"", 0, 300),
            Err(VerifyError::Malformed)
        );
    }
}
