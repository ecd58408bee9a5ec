//! Password hashing (argon2id) and the password policy.

use argon2::{
    password_hash::{Output, ParamsString, PasswordHash as PhcHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use imix_core::model::PasswordHash;
use secrecy::{ExposeSecret, SecretString};

use crate::TenancyError;

/// The least length of a new password.
pub const MIN_PASSWORD_LEN: usize = 10;
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
            .map_err(|e| TenancyError::Internal(format!("argon2 parameters: {e}")))?;
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
            .map_err(|e| TenancyError::Internal(e.to_string()))?;
        let (hasher, password) = (self.clone(), password.clone());
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| TenancyError::Internal(format!("password hashing task: {e}")))?
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
        let internal = |e: &dyn std::fmt::Display| TenancyError::Internal(format!("argon2: {e}"));
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt
            .as_salt()
            .decode_b64(&mut salt_buf)
            .map_err(|e| internal(&e))?;
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
        .map_err(|e| internal(&e))?;
        let phc = PhcHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(|e| internal(&e))?,
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

/// Checks a new password against the policy: at least [`MIN_PASSWORD_LEN`] characters, not
/// the default `admin123`, not the account's email.
pub fn check_policy(password: &SecretString, email: &str) -> Result<(), TenancyError> {
    let p = password.expose_secret();
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(TenancyError::invalid(
            "new_password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if p == DEFAULT_ADMIN_PASSWORD {
        return Err(TenancyError::invalid(
            "new_password",
            "must not be the default password",
        ));
    }
    if p.trim().eq_ignore_ascii_case(email.trim()) {
        return Err(TenancyError::invalid(
            "new_password",
            "must differ from the email address",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn policy_rejects_short_default_and_email() {
        for bad in ["short", "admin123", "Admin@Example.com"] {
            assert!(
                check_policy(&SecretString::from(bad), "admin@example.com").is_err(),
                "{bad}"
            );
        }
        assert!(check_policy(
            &SecretString::from("a much better passphrase"),
            "admin@example.com"
        )
        .is_ok());
    }
}
