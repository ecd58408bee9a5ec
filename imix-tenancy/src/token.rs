//! Access tokens (JWT, HS256 pinned) and single-use tokens for emails.

use crate::records::User;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use imix_core::{
    id::{TenantId, UserId},
    Timestamp,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TenancyError;

/// The `iss` claim of imix tokens.
pub const ISSUER: &str = "imix";
/// The `aud` claim of imix API tokens.
pub const AUDIENCE: &str = "imix-api";
/// How far in the future a token's `iat` or `nbf` may lie (clock differences between
/// replicas); a token claiming to be issued, or valid from, later than that is refused.
pub const CLOCK_LEEWAY_SECS: i64 = 60;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// The user's tenant, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not valid before (seconds since the epoch); imix does not set it but checks it when
    /// present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// The user's token generation when the token was issued: the token is accepted only
    /// while the user's generation is still this one (a password change or reset moves it on).
    #[serde(default)]
    pub generation: u64,
}

/// What a verified access token identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The user.
    pub user_id: UserId,
    /// The user's tenant, if any.
    pub tenant_id: Option<TenantId>,
    /// The user's token generation the token was issued in.
    pub generation: u64,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The JWT.
    pub token: SecretString,
    /// Lifetime in seconds.
    pub expires_in: i64,
}

/// Issues and verifies access tokens with the server's secret key.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime_minutes: i64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenIssuer(HS256, {} min)", self.lifetime_minutes)
    }
}

impl TokenIssuer {
    /// An issuer signing with `secret` (HS256) and tokens valid for `lifetime_minutes`.
    pub fn new(secret: &SecretString, lifetime_minutes: u32) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            lifetime_minutes: i64::from(lifetime_minutes),
        }
    }

    /// A token for `user`, issued at `now`, in the user's current token generation.
    pub fn issue(&self, user: &User, now: Timestamp) -> Result<AccessToken, TenancyError> {
        let expires_in = self.lifetime_minutes * 60;
        let claims = Claims {
            sub: user.id.to_string(),
            tid: user.tenant_id.map(|t| t.to_string()),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.timestamp(),
            nbf: None,
            exp: now.timestamp() + expires_in,
            jti: uuid_like(),
            generation: user.token_generation,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TenancyError::internal("cannot sign a token", e))?;
        Ok(AccessToken {
            token: SecretString::from(token),
            expires_in,
        })
    }

    /// Verifies signature (HS256 only: the algorithm is pinned here, never taken from the
    /// token), expiry, issuer and audience, and that neither `iat` nor `nbf` lies more than
    /// [`CLOCK_LEEWAY_SECS`] in the future of `now`; returns what the token identifies. Whether
    /// its generation is still current is for the caller to check against the stored user.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedToken, TenancyError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        // Checked below against `now`, with the leeway, together with `iat`.
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TenancyError::Unauthenticated)?;
        let claims = data.claims;
        let latest = now.timestamp() + CLOCK_LEEWAY_SECS;
        if claims.iat > latest || claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(TenancyError::Unauthenticated);
        }
        let user_id = claims
            .sub
            .parse()
            .map_err(|_| TenancyError::Unauthenticated)?;
        let tenant_id = claims
            .tid
            .map(|t| t.parse())
            .transpose()
            .map_err(|_| TenancyError::Unauthenticated)?;
        Ok(VerifiedToken {
            user_id,
            tenant_id,
            generation: claims.generation,
        })
    }
}

/// 32 random bytes, URL-safe base64: for emailed single-use tokens and decoys.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How a single-use token is stored: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use crate::records::Role;

    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&SecretString::from("k".repeat(40)), 60)
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_user() {
        let user = User::new("a@example.com", Role::Admin, None);
        let t = issuer().issue(&user, imix_core::now()).unwrap();
        assert_eq!(t.expires_in, 3600);
        let verified = issuer()
            .verify(t.token.expose_secret(), imix_core::now())
            .unwrap();
        assert_eq!(
            (verified.user_id, verified.tenant_id, verified.generation),
            (user.id, None, 0)
        );
    }

    #[test]
    fn expired_foreign_and_unsigned_tokens_are_rejected() {
        let user = User::new("a@example.com", Role::Admin, None);
        let old = issuer()
            .issue(&user, imix_core::now() - chrono::Duration::hours(2))
            .unwrap();
        assert!(
            issuer()
                .verify(old.token.expose_secret(), imix_core::now())
                .is_err(),
            "expired"
        );
        let other = TokenIssuer::new(&SecretString::from("x".repeat(40)), 60)
            .issue(&user, imix_core::now())
            .unwrap();
        assert!(
            issuer()
                .verify(other.token.expose_secret(), imix_core::now())
                .is_err(),
            "other key"
        );
        // alg=none: header {"alg":"none"} with the same claims and no signature.
        let good = issuer().issue(&user, imix_core::now()).unwrap();
        let parts: Vec<&str> = good.token.expose_secret().split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{none_header}.{}.", parts[1]);
        assert!(
            issuer().verify(&forged, imix_core::now()).is_err(),
            "alg none"
        );
    }

    /// Signs `claims` with the test key, as someone holding the key (or a buggy issuer) could.
    fn signed(claims: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret("k".repeat(40).as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn tokens_issued_or_valid_only_in_the_future_are_rejected() {
        let user = User::new("a@example.com", Role::Admin, None);
        let now = imix_core::now().timestamp();
        let claims = |iat: i64, nbf: Option<i64>| Claims {
            sub: user.id.to_string(),
            tid: None,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat,
            nbf,
            exp: now + 7200,
            jti: "j".into(),
            generation: 0,
        };
        let verify = |c: &Claims| issuer().verify(&signed(c), imix_core::now());
        assert!(verify(&claims(now, None)).is_ok());
        // Within the leeway (clocks of replicas differ a little).
        assert!(verify(&claims(now + 30, Some(now + 30))).is_ok());
        assert!(
            verify(&claims(now + 3600, None)).is_err(),
            "iat in the future"
        );
        assert!(
            verify(&claims(now, Some(now + 3600))).is_err(),
            "nbf in the future"
        );
    }
}
