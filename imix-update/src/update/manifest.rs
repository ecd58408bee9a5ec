//! The release manifest, the keys, and exactly what is signed.
//!
//! The signature is ed25519 (`ed25519-dalek`) over a domain-separated message:
//!
//! ```text
//! "imix-update-manifest-v1" 0x00 <version as written in the manifest> 0x00 <manifest.json bytes>
//! ```
//!
//! The exact bytes served are signed (no re-serialization), and the version is bound in
//! twice: inside the bytes and as its own field of the message, so a signature cannot be
//! moved to a manifest claiming another version, nor to another kind of signed document.

use std::collections::BTreeMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use imix_core::Language;
use serde::{Deserialize, Serialize};

/// The file name of the manifest on the update server.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The file name of its detached signature (base64 of the 64 signature bytes).
pub const SIGNATURE_FILE: &str = "manifest.json.sig";
/// The domain separator that starts every signed message.
pub const SIGNING_CONTEXT: &[u8] = b"imix-update-manifest-v1";

/// A release, as `manifest.json` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// The release's version (semver).
    pub version: semver::Version,
    /// When it was released.
    pub released_at: DateTime<Utc>,
    /// Release notes per language (Markdown).
    pub notes: ReleaseNotes,
    /// One executable per target triple (`x86_64-unknown-linux-gnu`, …).
    pub artifacts: BTreeMap<String, Artifact>,
    /// The lowest version this release may be installed over.
    pub min_version: semver::Version,
    /// After this time the manifest is refused: a publisher re-signs it periodically, so
    /// that an old manifest cannot be replayed forever (freeze attack).
    pub expires_at: DateTime<Utc>,
}

/// Release notes in Markdown: English always, French and Arabic when written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReleaseNotes {
    /// English (the fallback).
    pub en: String,
    /// French.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fr: Option<String>,
    /// Arabic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ar: Option<String>,
}

impl ReleaseNotes {
    /// The notes in `language`, or the English ones when that language has none; with the
    /// language actually used.
    pub fn for_language(&self, language: Language) -> (Language, &str) {
        let text = match language {
            Language::En => None,
            Language::Fr => self.fr.as_deref(),
            Language::Ar => self.ar.as_deref(),
        };
        match text.filter(|t| !t.trim().is_empty()) {
            Some(t) => (language, t),
            None => (Language::En, self.en.as_str()),
        }
    }
}

/// One downloadable executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Where it is: absolute, or relative to the manifest's URL.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// The message a manifest's signature is made over (see the module documentation).
pub fn signed_message(version: &str, manifest_bytes: &[u8]) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(SIGNING_CONTEXT.len() + version.len() + manifest_bytes.len() + 2);
    message.extend_from_slice(SIGNING_CONTEXT);
    message.push(0);
    message.extend_from_slice(version.as_bytes());
    message.push(0);
    message.extend_from_slice(manifest_bytes);
    message
}

/// The `version` field as written in `manifest_bytes`, read before anything else is trusted
/// (it is part of the signed message).
pub fn claimed_version(manifest_bytes: &[u8]) -> Result<String, serde_json::Error> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: String,
    }
    serde_json::from_slice::<VersionOnly>(manifest_bytes).map(|v| v.version)
}

/// Signs `manifest_bytes` (whose `version` field is `version`): the text of
/// `manifest.json.sig`.
pub fn sign(key: &SigningKey, version: &str, manifest_bytes: &[u8]) -> String {
    let signature = key.sign(&signed_message(version, manifest_bytes));
    format!("{}\n", STANDARD.encode(signature.to_bytes()))
}

/// Whether `signature_text` (the contents of `manifest.json.sig`) is a valid signature of
/// `manifest_bytes` with `version` bound in, by `key`.
pub fn signature_is_valid(
    key: &VerifyingKey,
    version: &str,
    manifest_bytes: &[u8],
    signature_text: &[u8],
) -> bool {
    let Ok(text) = std::str::from_utf8(signature_text) else {
        return false;
    };
    let Ok(raw) = STANDARD.decode(text.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else {
        return false;
    };
    // Strict verification: refuses weak keys and non-canonical signatures (malleability).
    key.verify_strict(
        &signed_message(version, manifest_bytes),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

/// A key that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub &'static str);

/// Reads a public key: base64 of its 32 bytes (what `imix-release keygen` writes to
/// `<name>.pub` and `IMIX_UPDATE_PUBLIC_KEY` holds).
pub fn public_key_from_base64(text: &str) -> Result<VerifyingKey, KeyError> {
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyError("is not base64"))?;
    let bytes =
        <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| KeyError("is not 32 bytes long"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError("is not an ed25519 public key"))
}

/// A public key as base64 (the inverse of [`public_key_from_base64`]).
pub fn public_key_to_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.to_bytes())
}

/// Reads a secret (signing) key: base64 of its 32-byte seed (`<name>.key`).
pub fn signing_key_from_base64(text: &str) -> Result<SigningKey, KeyError> {
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyError("is not base64"))?;
    let seed =
        <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| KeyError("is not 32 bytes long"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A secret key as base64 of its seed.
pub fn signing_key_to_base64(key: &SigningKey) -> String {
    STANDARD.encode(key.to_bytes())
}

/// A new signing key from the operating system's random source.
pub fn generate_signing_key() -> SigningKey {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_version_is_bound_into_the_signature() {
        let key = generate_signing_key();
        let public = key.verifying_key();
        let bytes = br#"{"version":"1.2.0"}"#;
        let sig = sign(&key, "1.2.0", bytes);
        assert!(signature_is_valid(&public, "1.2.0", bytes, sig.as_bytes()));
        assert!(!signature_is_valid(&public, "1.3.0", bytes, sig.as_bytes()));
        assert!(!signature_is_valid(
            &public,
            "1.2.0",
            br#"{"version":"1.2.0" }"#,
            sig.as_bytes()
        ));
        let other = generate_signing_key().verifying_key();
        assert!(!signature_is_valid(&other, "1.2.0", bytes, sig.as_bytes()));
        assert!(!signature_is_valid(&public, "1.2.0", bytes, b"not base64!"));
    }

    #[test]
    fn keys_round_trip_and_bad_ones_are_named() {
        let key = generate_signing_key();
        let text = signing_key_to_base64(&key);
        assert_eq!(
            signing_key_from_base64(&text).unwrap().to_bytes(),
            key.to_bytes()
        );
        let public = public_key_to_base64(&key.verifying_key());
        assert_eq!(
            public_key_from_base64(&public).unwrap(),
            key.verifying_key()
        );
        assert_eq!(
            public_key_from_base64("abc"),
            Err(KeyError("is not base64"))
        );
        assert_eq!(
            public_key_from_base64("YWJj"),
            Err(KeyError("is not 32 bytes long"))
        );
        assert!(public_key_from_base64(crate::update::DEFAULT_PUBLIC_KEY).is_ok());
    }

    #[test]
    fn notes_fall_back_to_english() {
        let notes = ReleaseNotes {
            en: "Fixes".into(),
            fr: Some("Corrections".into()),
            ar: None,
        };
        assert_eq!(
            notes.for_language(Language::Fr),
            (Language::Fr, "Corrections")
        );
        assert_eq!(notes.for_language(Language::Ar), (Language::En, "Fixes"));
    }
}
