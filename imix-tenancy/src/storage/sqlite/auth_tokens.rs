//! Invitation and password-reset tokens on SQLite. Times are stored as fixed-width RFC 3339
//! strings (milliseconds, `Z`), so SQL string comparison is time comparison.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    records::{AuthToken, TokenPurpose},
    storage::AuthTokenRepository,
};

fn fixed(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(text: &str) -> Result<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| Error::Corrupt {
            entity: "auth token",
            source: e.into(),
        })
}

type TokenRow = (String, Option<String>, String, String);

fn token_from_row(
    hash: String,
    purpose: TokenPurpose,
    row: Option<TokenRow>,
    used_at: Option<Timestamp>,
) -> Result<AuthToken> {
    let Some((user_id, tenant_id, created_at, expires_at)) = row else {
        return Err(Error::NotFound {
            entity: "token",
            id: "(redacted)".into(),
        });
    };
    Ok(AuthToken {
        token_hash: hash,
        user_id: user_id.parse()?,
        tenant_id: tenant_id.map(|t| t.parse()).transpose()?,
        purpose,
        created_at: parse_time(&created_at)?,
        expires_at: parse_time(&expires_at)?,
        used_at,
    })
}

#[async_trait]
impl AuthTokenRepository for SqliteTenancy {
    async fn insert(&self, token: &AuthToken) -> Result<()> {
        let t = token.clone();
        self.write("store a token", move |c| {
            exec(
                c,
                "INSERT INTO auth_tokens
                   (token_hash, user_id, tenant_id, purpose, created_at, expires_at, used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.token_hash,
                    t.user_id.to_string(),
                    t.tenant_id.map(|id| id.to_string()),
                    t.purpose.as_str(),
                    fixed(t.created_at),
                    fixed(t.expires_at),
                    t.used_at.map(fixed),
                ],
            )
            .map_err(unique_err(UNIQUE, "auth token", "store a token"))?;
            Ok(())
        })
        .await
    }

    async fn find(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<AuthToken> {
        let hash = token_hash.to_owned();
        self.read("read a token", move |c| {
            let row = c
                .query_row(
                    "SELECT user_id, tenant_id, created_at, expires_at FROM auth_tokens
                     WHERE token_hash = ?2 AND purpose = ?3 AND used_at IS NULL AND expires_at > ?1",
                    params![fixed(now), hash, purpose.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(db_err("read a token"))?;
            token_from_row(hash, purpose, row, None)
        })
        .await
    }

    async fn consume(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<AuthToken> {
        let hash = token_hash.to_owned();
        self.write("use a token", move |c| {
            let row = c
                .query_row(
                    "UPDATE auth_tokens SET used_at = ?1
                     WHERE token_hash = ?2 AND purpose = ?3 AND used_at IS NULL AND expires_at > ?1
                     RETURNING user_id, tenant_id, created_at, expires_at",
                    params![fixed(now), hash, purpose.as_str()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(db_err("use a token"))?;
            token_from_row(hash, purpose, row, Some(now))
        })
        .await
    }

    async fn revoke_for_user(
        &self,
        user: UserId,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<u64> {
        self.write("revoke tokens", move |c| {
            let n = c
                .execute(
                    "UPDATE auth_tokens SET used_at = ?1
                     WHERE user_id = ?2 AND purpose = ?3 AND used_at IS NULL",
                    params![fixed(now), user.to_string(), purpose.as_str()],
                )
                .map_err(db_err("revoke tokens"))?;
            Ok(n as u64)
        })
        .await
    }
}
