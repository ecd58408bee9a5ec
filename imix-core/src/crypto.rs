//! The at-rest cipher: AES-256-GCM (RustCrypto's `aes-gcm`) with key rotation.
//!
//! A ciphertext is self-describing:
//!
//! ```text
//! byte 0      format version (1)
//! bytes 1..5  key id, big-endian (derived from the key itself)
//! bytes 5..17 random 96-bit nonce
//! bytes 17..  AES-256-GCM ciphertext and 128-bit tag
//! ```
//!
//! A [`Cipher`] holds one *current* key, used for every new encryption, and any number of
//! *previous* keys, used only to decrypt. Rotating a key is: make the new key current,
//! keep the old one in the previous list until every record has been rewritten.
//!
//! Callers pass *associated data* naming where the ciphertext belongs (for example
//! `"settings:platform:smtp.password"`): a ciphertext copied to another record fails to
//! decrypt instead of silently yielding the other record's secret.
//!
//! ```
//! use imix_core::crypto::{Cipher, EncryptionKey};
//! use imix_core::secret::{ExposeSecret, SecretString};
//!
//! let old = EncryptionKey::generate();
//! let new = EncryptionKey::generate();
//! let before = Cipher::new(old.clone(), vec![]);
//! let sealed = before.encrypt_secret(&SecretString::from("hunter2"), b"demo").unwrap();
//!
//! let after = Cipher::new(new, vec![old]);
//! let opened = after.decrypt_secret(&sealed, b"demo").unwrap();
//! assert_eq!(opened.expose_secret(), "hunter2");
//! assert!(after.decrypt_secret(&sealed, b"other-record").is_err());
//! ```

use std::collections::HashMap;

use aes_gcm::{
    aead::{Aead, KeyInit, OsRng, Payload},
    AeadCore, Aes256Gcm, Key, Nonce,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hkdf::Hkdf;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 12;
const TAG_LEN: usize = 16;

/// Why a ciphertext was rejected. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Shorter than a header and a tag, or not valid base64.
    #[error("ciphertext is truncated or not in the expected encoding")]
    Malformed,
    /// Written by a newer (or unknown) format.
    #[error("unsupported ciphertext format version {0}")]
    UnsupportedVersion(u8),
    /// Encrypted under a key this process was not given.
    #[error("ciphertext was encrypted with unknown key {0:08x}")]
    UnknownKey(u32),
    /// The authentication tag did not verify: the bytes or the associated data changed.
    #[error("ciphertext failed authentication (tampered, or bound to another record)")]
    Tampered,
    /// The plaintext of a secret string was not UTF-8.
    #[error("decrypted secret is not UTF-8")]
    NotUtf8,
    /// The operating system's random generator failed.
    #[error("encryption failed")]
    EncryptionFailed,
}

/// A 256-bit encryption key. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct EncryptionKey {
    bytes: std::sync::Arc<SecretBox<[u8; 32]>>,
    id: u32,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionKey(id={:08x})", self.id)
    }
}

impl EncryptionKey {
    /// Wraps 32 raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"imix-key-id")
            .chain_update(bytes)
            .finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Self {
            bytes: std::sync::Arc::new(SecretBox::new(Box::new(bytes))),
            id,
        }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Parses a key given as base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, crate::Error> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        let encoded = encoded.trim();
        let decoded = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(encoded).ok())
            .ok_or_else(|| crate::Error::invalid("encryption_key", "is not valid base64"))?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| {
            crate::Error::invalid(
                "encryption_key",
                format!("must decode to 32 bytes, got {}", v.len()),
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// Derives the at-rest key from the server's `SECRET_KEY` with HKDF-SHA256, so the
    /// token-signing secret itself is never used as an encryption key.
    pub fn derive_from_secret(secret: &SecretString) -> Self {
        let hk = Hkdf::<Sha256>::new(
            Some(b"imix at-rest encryption v1"),
            secret.expose_secret().as_bytes(),
        );
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so expand cannot fail.
        if hk.expand(b"aes-256-gcm", &mut okm).is_err() {
            unreachable!("HKDF output length is a constant within limits");
        }
        Self::from_bytes(okm)
    }

    /// The key's id as written into ciphertexts (derived from the key bytes).
    pub fn id(&self) -> u32 {
        self.id
    }

    fn aead(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.bytes.expose_secret()))
    }
}

/// Encrypts with the current key; decrypts with any known key. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cipher {
    current: EncryptionKey,
    by_id: HashMap<u32, EncryptionKey>,
}

impl Cipher {
    /// A cipher that encrypts with `current` and also decrypts what `previous` keys sealed.
    pub fn new(current: EncryptionKey, previous: Vec<EncryptionKey>) -> Self {
        let mut by_id: HashMap<u32, EncryptionKey> =
            previous.into_iter().map(|k| (k.id, k)).collect();
        by_id.insert(current.id, current.clone());
        Self { current, by_id }
    }

    /// The id of the key new ciphertexts are sealed with.
    pub fn current_key_id(&self) -> u32 {
        self.current.id
    }

    /// Seals `plaintext`, binding it to `associated_data`.
    pub fn encrypt(
        &self,
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .aead()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .map_err(|_| CryptoError::EncryptionFailed)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.current.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a ciphertext made by [`Cipher::encrypt`] with the same associated data.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.len() < HEADER_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        if ciphertext[0] != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(ciphertext[0]));
        }
        let key_id =
            u32::from_be_bytes([ciphertext[1], ciphertext[2], ciphertext[3], ciphertext[4]]);
        let key = self
            .by_id
            .get(&key_id)
            .ok_or(CryptoError::UnknownKey(key_id))?;
        let nonce = Nonce::from_slice(&ciphertext[5..HEADER_LEN]);
        key.aead()
            .decrypt(
                nonce,
                Payload {
                    msg: &ciphertext[HEADER_LEN..],
                    aad: associated_data,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// Seals a secret string into URL-safe base64 text, ready to store in a document.
    pub fn encrypt_secret(
        &self,
        secret: &SecretString,
        associated_data: &[u8],
    ) -> Result<String, CryptoError> {
        let sealed = self.encrypt(secret.expose_secret().as_bytes(), associated_data)?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens text made by [`Cipher::encrypt_secret`].
    pub fn decrypt_secret(
        &self,
        sealed: &str,
        associated_data: &[u8],
    ) -> Result<SecretString, CryptoError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| CryptoError::Malformed)?;
        let plain = self.decrypt(&bytes, associated_data)?;
        let text = String::from_utf8(plain).map_err(|_| CryptoError::NotUtf8)?;
        Ok(SecretString::from(text))
    }

    /// Whether `ciphertext` was sealed with a key other than the current one, i.e. should
    /// be re-encrypted during a key rotation.
    pub fn needs_rotation(&self, ciphertext: &[u8]) -> bool {
        ciphertext.len() >= 5
            && u32::from_be_bytes([ciphertext[1], ciphertext[2], ciphertext[3], ciphertext[4]])
                != self.current.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Cipher {
        Cipher::new(EncryptionKey::generate(), vec![])
    }

    #[test]
    fn round_trips_and_uses_fresh_nonces() {
        let c = cipher();
        let a = c.encrypt(b"payload", b"ad").unwrap();
        let b = c.encrypt(b"payload", b"ad").unwrap();
        assert_ne!(a, b, "two encryptions of the same plaintext must differ");
        assert_eq!(c.decrypt(&a, b"ad").unwrap(), b"payload");
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let c = cipher();
        let sealed = c.encrypt(b"secret value", b"ad").unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[i] ^= 1 << bit;
                assert!(c.decrypt(&tampered, b"ad").is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let c = cipher();
        let sealed = c.encrypt(b"secret value", b"ad").unwrap();
        for len in 0..sealed.len() {
            assert!(c.decrypt(&sealed[..len], b"ad").is_err(), "length {len}");
        }
    }

    #[test]
    fn rotation_decrypts_old_and_encrypts_new() {
        let old = EncryptionKey::generate();
        let new = EncryptionKey::generate();
        let sealed_old = Cipher::new(old.clone(), vec![]).encrypt(b"x", b"").unwrap();
        let rotated = Cipher::new(new.clone(), vec![old.clone()]);
        assert_eq!(rotated.decrypt(&sealed_old, b"").unwrap(), b"x");
        assert!(rotated.needs_rotation(&sealed_old));
        let sealed_new = rotated.encrypt(b"y", b"").unwrap();
        assert!(!rotated.needs_rotation(&sealed_new));
        assert_eq!(
            Cipher::new(old, vec![]).decrypt(&sealed_new, b""),
            Err(CryptoError::UnknownKey(new.id()))
        );
    }

    #[test]
    fn derived_keys_are_stable_and_distinct() {
        let a1 = EncryptionKey::derive_from_secret(&SecretString::from("one"));
        let a2 = EncryptionKey::derive_from_secret(&SecretString::from("one"));
        let b = EncryptionKey::derive_from_secret(&SecretString::from("two"));
        assert_eq!(a1.id(), a2.id());
        assert_ne!(a1.id(), b.id());
    }

    #[test]
    fn base64_keys_must_be_32_bytes() {
        assert!(EncryptionKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(EncryptionKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 16])).is_err());
        assert!(EncryptionKey::from_base64("%%%").is_err());
    }
}
