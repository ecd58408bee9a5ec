//! Password hashing (argon2id) and the password policy.

use argon2::{
    password_hash::{
        PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, SaltString,
    },
    Algorithm, Argon2, Params, Version,
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
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let phc = self
            .argon
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map_err(|e| TenancyError::Internal(format!("argon2: {e}")))?;
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
        let matches = PhcHash::new(phc)
            .map(|parsed| {
                self.argon
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        matches && hash.is_some()
    }
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
