//! Password hashing (argon2id) and the password policy.

use crate::records::{PasswordHash, User};
use argon2::{
    password_hash::{Output, ParamsString, PasswordHash as PhcHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use secrecy::{ExposeSecret, SecretString};

use crate::TenancyError;

/// The least length of a new password, in characters.
pub const MIN_PASSWORD_LEN: usize = 10;
/// The greatest length of any password, in bytes (UTF-8): checked before any hashing, on
/// sign-in too, so a huge password costs nothing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The least zxcvbn score (0 to 4) of a new password: 3 means at least 10^8 guesses.
pub const MIN_STRENGTH_SCORE: u8 = 3;
/// Names and email local parts shorter than this are not looked for inside a password
/// (a one-letter name would refuse most passwords).
const MIN_PERSONAL_LEN: usize = 3;
/// The admin guide's default password: never acceptable as a new one.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin123";

/// Hashes and verifies passwords with argon2id at OWASP's recommended parameters
/// (m = 19 MiB, t = 2, p = 1) or stronger.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the email is unknown so that a
    /// sign-in costs the same whether or not the account exists. Made on first need: each
    /// hash takes 19 MiB while it runs, and start-up should not pay for it.
    decoy: std::sync::Arc<std::sync::OnceLock<String>>,
    /// Bounds how many hashes run at once: each holds 19 MiB and a CPU for tens of
    /// milliseconds, so a flood of sign-ins queues instead of exhausting memory.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Hashes that may run at the same time.
pub const MAX_CONCURRENT_HASHES: usize = 2;

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHasher(argon2id)")
    }
}

impl PasswordHasher {
    /// OWASP parameters: m = 19456 KiB, t = 2, p = 1.
    pub fn new() -> Result<Self, TenancyError> {
        Self::with_params(19_456, 2, 1)
    }

    /// Explicit parameters (stronger ones for production hardware; never weaker in tests
    /// that measure timing).
    pub fn with_params(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<Self, TenancyError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| TenancyError::internal("argon2 parameters", e))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        Ok(Self {
            argon,
            decoy: Default::default(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES)),
        })
    }

    /// [`PasswordHasher::hash`] on Tokio's blocking pool, at most
    /// [`MAX_CONCURRENT_HASHES`] at a time, so the async workers keep serving requests.
    pub async fn hash_async(&self, password: &SecretString) -> Result<PasswordHash, TenancyError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| TenancyError::internal("password hashing permit", e))?;
        let (hasher, password) = (self.clone(), password.clone());
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| TenancyError::internal("password hashing task", e))?
    }

    /// [`PasswordHasher::verify`] on Tokio's blocking pool (see [`PasswordHasher::hash_async`]).
    pub async fn verify_async(&self, password: &SecretString, hash: Option<&PasswordHash>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (hasher, password, hash) = (self.clone(), password.clone(), hash.cloned());
        tokio::task::spawn_blocking(move || hasher.verify(&password, hash.as_ref()))
            .await
            .unwrap_or(false)
    }

    /// Hashes a password with a fresh random salt.
    pub fn hash(&self, password: &SecretString) -> Result<PasswordHash, TenancyError> {
        let internal = |e: argon2::password_hash::Error| TenancyError::internal("argon2", e);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(internal)?;
        let params = self.argon.params();
        let mut memory = working_memory(params.block_count());
        let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            self.argon
                .hash_password_into_with_memory(
                    password.expose_secret().as_bytes(),
                    salt_bytes,
                    out,
                    &mut memory,
                )
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(internal)?;
        let phc = PhcHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(internal)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(PasswordHash::new(phc.to_string()))
    }

    /// Whether `password` matches `hash`. With `hash = None` (unknown account) it still
    /// spends the time of one verification and answers `false`.
    pub fn verify(&self, password: &SecretString, hash: Option<&PasswordHash>) -> bool {
        let phc = match hash {
            Some(h) => h.as_phc(),
            None => self.decoy.get_or_init(|| {
                let random = SecretString::from(crate::token::random_token());
                self.hash(&random)
                    .map(|h| h.as_phc().to_owned())
                    .unwrap_or_default()
            }),
        };
        verify_phc(password, phc).unwrap_or(false) && hash.is_some()
    }
}

/// Checks `password` against a PHC string with the parameters written in it, in working
/// memory of our own (see [`working_memory`]). The comparison of the outputs is constant-time
/// (`Output`'s equality).
fn verify_phc(password: &SecretString, phc: &str) -> Option<bool> {
    let parsed = PhcHash::new(phc).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let expected = parsed.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut memory = working_memory(params.block_count());
    let actual = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(
                password.expose_secret().as_bytes(),
                salt,
                out,
                &mut memory,
            )
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .ok()?;
    Some(actual == expected)
}

/// Argon2's working memory (19 MiB at OWASP parameters), with room reserved beyond glibc's
/// largest dynamic mmap threshold (32 MiB). Such an allocation is always mapped fresh and
/// unmapped when dropped, so the memory of a hash is given back to the system at once instead
/// of staying resident in an allocator arena after every sign-in. Pages of the reserve that are
/// never written cost no memory.
fn working_memory(blocks: usize) -> Vec<Block> {
    const ALWAYS_MAPPED_BYTES: usize = 33 * 1024 * 1024;
    let mut memory = Vec::with_capacity(blocks.max(ALWAYS_MAPPED_BYTES / Block::SIZE + 1));
    memory.resize(blocks, Block::default());
    memory
}

/// Fails unless `password` is at most [`MAX_PASSWORD_BYTES`] long. Cheap: call it before
/// hashing or verifying anything. `field` names the field in the 422.
pub fn check_length(field: &str, password: &SecretString) -> Result<(), TenancyError> {
    if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        return Err(TenancyError::invalid(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a new password of `user` against the policy; `field` names the field in the 422.
/// A password must:
/// - be at most [`MAX_PASSWORD_BYTES`] bytes and at least [`MIN_PASSWORD_LEN`] characters;
/// - contain no control character (Unicode category Cc: NUL, line breaks, tabs, …);
/// - not be only whitespace;
/// - not contain the user's email address, its local part, or their first or last name
///   (case-insensitively; parts shorter than 3 characters are not looked for);
/// - not be easy to guess: a zxcvbn score of at least [`MIN_STRENGTH_SCORE`], which refuses
///   common passwords (zxcvbn ships frequency lists of them), repeats, sequences, keyboard
///   patterns and dates, and the default `admin123` in any form.
///
/// Every rule but the byte cap and the control characters looks at the password's
/// [`policy_skeleton`], so invisible or look-alike characters (`pass<U+200B>word12`,
/// full-width `ｑｗｅｒｔｙｕｉｏｐ`) neither lengthen a password nor hide a common word or a
/// name in it. The hash is of the password exactly as typed.
pub fn check_policy(field: &str, password: &SecretString, user: &User) -> Result<(), TenancyError> {
    check_length(field, password)?;
    let raw = password.expose_secret();
    if raw.chars().any(char::is_control) {
        return Err(TenancyError::invalid(
            field,
            "must not contain control characters (such as NUL, tabs or line breaks)",
        ));
    }
    let skeleton = policy_skeleton(raw);
    let p = skeleton.as_str();
    if p.chars().all(char::is_whitespace) {
        return Err(TenancyError::invalid(
            field,
            "must not consist only of spaces or control characters",
        ));
    }
    if p.trim() == DEFAULT_ADMIN_PASSWORD {
        return Err(TenancyError::invalid(
            field,
            "must not be the default password",
        ));
    }
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(TenancyError::invalid(
            field,
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    let lower = p;
    let email = policy_skeleton(user.email.trim());
    let local = email.split('@').next().unwrap_or_default();
    let names = [user.first_name.trim(), user.last_name.trim()].map(policy_skeleton);
    let personal = [email.as_str(), local]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .filter(|part| part.chars().count() >= MIN_PERSONAL_LEN);
    for part in personal {
        if lower.contains(part) {
            return Err(TenancyError::invalid(
                field,
                "must not contain your email address or your name",
            ));
        }
    }
    let inputs: Vec<&str> = [local, names[0].as_str(), names[1].as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    // zxcvbn looks at the first 100 characters only, so this is cheap at any allowed length.
    let estimate = zxcvbn::zxcvbn(p, &inputs);
    if u8::from(estimate.score()) < MIN_STRENGTH_SCORE {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(TenancyError::invalid(
            field,
            format!(
                "is too easy to guess{why}; use a longer passphrase of several unrelated words"
            ),
        ));
    }
    Ok(())
}

/// The form of a text that the password policy compares: compatibility-normalized (Unicode
/// NFKC, so full-width `ｑ` is `q` and ligatures are letters), without default-ignorable and
/// format characters (zero-width spaces and joiners U+200B–U+200F, the soft hyphen U+00AD,
/// the word joiner U+2060, the byte-order mark U+FEFF, every other Cf character, variation
/// selectors and fillers), lower-cased, and trimmed.
pub fn policy_skeleton(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let visible = |c: &char| {
        !imix_notify::text::is_invisible(*c)
            && unicode_general_category::get_general_category(*c)
                != unicode_general_category::GeneralCategory::Format
    };
    let folded: String = text
        .chars()
        .filter(visible)
        .nfkc()
        .filter(visible)
        .collect::<String>()
        .to_lowercase();
    // Lower-casing can leave a text that is not in NFKC again (rarely); settle it.
    folded.nfkc().collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_argon2_parameters_keep_argon2s_error_as_the_source() {
        use std::error::Error as _;
        let Err(err) = PasswordHasher::with_params(0, 0, 0) else {
            panic!("zero parameters must be refused");
        };
        assert!(matches!(
            err,
            TenancyError::Internal {
                context: "argon2 parameters",
                ..
            }
        ));
        assert!(
            err.source().is_some_and(|s| s.is::<argon2::Error>()),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("internal error: argon2 parameters: "));
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let h = PasswordHasher::new().unwrap();
        let pw = SecretString::from("correct horse battery");
        let a = h.hash(&pw).unwrap();
        let b = h.hash(&pw).unwrap();
        assert!(a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(a, b, "salted");
        assert!(h.verify(&pw, Some(&a)));
        assert!(!h.verify(&SecretString::from("wrong password"), Some(&a)));
        assert!(!h.verify(&pw, None));
    }

    #[test]
    fn hashes_interoperate_with_the_standard_argon2_api() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let h = PasswordHasher::with_params(8 * 1024, 2, 1).unwrap();
        let pw = SecretString::from("interoperable passphrase");
        // Ours, checked by the reference verifier.
        let ours = h.hash(&pw).unwrap();
        let parsed = PhcHash::new(ours.as_phc()).unwrap();
        assert!(Argon2::default()
            .verify_password(b"interoperable passphrase", &parsed)
            .is_ok());
        // The reference hasher's, checked by ours (e.g. hashes from older versions or backups).
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::default()
            .hash_password(b"interoperable passphrase", &salt)
            .unwrap()
            .to_string();
        assert!(h.verify(&pw, Some(&PasswordHash::new(theirs.clone()))));
        assert!(!h.verify(
            &SecretString::from("other"),
            Some(&PasswordHash::new(theirs))
        ));
        assert!(!h.verify(&pw, Some(&PasswordHash::new("not a phc string"))));
    }

    fn user() -> User {
        let mut u = User::new(
            "Fatima.Zahra@Example.com",
            crate::records::Role::Agent,
            None,
        );
        u.first_name = "Fatima".into();
        u.last_name = "Benali".into();
        u
    }

    fn refusal(password: &str) -> Option<String> {
        match check_policy("new_password", &SecretString::from(password), &user()) {
            Ok(()) => None,
            Err(TenancyError::Invalid { field, message }) => {
                assert_eq!(field, "new_password");
                Some(message)
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn policy_rejects_short_default_and_email() {
        for bad in ["short", "admin123", "fatima.zahra@example.com"] {
            assert!(refusal(bad).is_some(), "{bad}");
        }
        assert!(refusal("a much better passphrase").is_none());
        assert!(refusal("initial-password-1").is_none());
    }

    #[test]
    fn policy_rejects_blank_common_and_personal_passwords() {
        let blank = refusal("          ").unwrap();
        assert!(blank.contains("spaces or control characters"), "{blank}");
        assert!(refusal(&"\0".repeat(10))
            .unwrap()
            .contains("control characters"));
        assert!(refusal("admin123  ").unwrap().contains("default password"));
        for common in [
            "aaaaaaaaaa",
            "1234567890",
            "password12",
            "Admin123!!",
            "qwertyuiop",
        ] {
            let why = refusal(common).unwrap_or_else(|| panic!("{common:?} accepted"));
            assert!(why.contains("too easy to guess"), "{common:?}: {why}");
        }
        for personal in [
            "fatima-passphrase",
            "my BENALI passphrase",
            "x-fatima.zahra-x-long",
        ] {
            let why = refusal(personal).unwrap_or_else(|| panic!("{personal:?} accepted"));
            assert!(
                why.contains("email address or your name"),
                "{personal:?}: {why}"
            );
        }
    }

    #[test]
    fn policy_sees_through_invisible_and_look_alike_characters() {
        for (bad, why) in [
            ("pass\u{200B}word12", "too easy to guess"),
            ("pass\u{00AD}word12", "too easy to guess"),
            ("pass\u{2060}word\u{FEFF}12", "too easy to guess"),
            (
                "\u{FF51}\u{FF57}\u{FF45}\u{FF52}\u{FF54}\u{FF59}\u{FF55}\u{FF49}\u{FF4F}\u{FF50}",
                "too easy to guess",
            ),
            (
                "my fat\u{200B}ima pass\u{200C}phrase",
                "email address or your name",
            ),
            (
                "ben\u{200D}ali is my passphrase",
                "email address or your name",
            ),
            (
                "ＦＡＴＩＭＡ．ＺＡＨＲＡ＠ＥＸＡＭＰＬＥ．ＣＯＭ",
                "email address or your name",
            ),
            ("admin\u{200B}123", "default password"),
            ("pass\u{200B}\u{200B}word", "at least 10 characters"),
            ("\u{200B}".repeat(12).as_str(), "only of spaces"),
            ("correct\0horse", "control characters"),
            ("correct\0horse battery staple", "control characters"),
            ("correct horse\nbattery staple", "control characters"),
        ] {
            let got = refusal(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(got.contains(why), "{bad:?}: {got}");
        }
        // The skeleton only decides the rules; a strong password with such characters in it
        // is still fine, and what is hashed is the password as typed.
        assert!(refusal("a much better\u{200B} passphrase").is_none());
        assert_eq!(policy_skeleton(" ＡＢ\u{200B}c\u{00AD}D "), "abcd");
    }

    #[test]
    fn policy_caps_the_length_in_bytes() {
        let long = "word ".repeat(205); // 1025 bytes
        let why = refusal(&long).unwrap();
        assert!(why.contains("at most 1024 bytes"), "{why}");
        assert!(refusal(&"unrelated words in a row ".repeat(40)[..1000]).is_none());
        assert!(check_length("password", &SecretString::from("x".repeat(1024))).is_ok());
        assert!(check_length("password", &SecretString::from("x".repeat(1025))).is_err());
    }
}
