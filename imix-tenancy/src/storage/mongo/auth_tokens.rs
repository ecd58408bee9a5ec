//! Invitation and password-reset tokens on MongoDB: `_id` is the token hash; times are BSON
//! dates so the expiry filter compares instants, and `consume` is one find-one-and-update.

use mongodb::options::ReturnDocument;

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    records::{AuthToken, TokenPurpose},
    storage::AuthTokenRepository,
};

fn date(t: Timestamp) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

fn time(d: bson::DateTime) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp_millis(d.timestamp_millis()).ok_or_else(|| Error::Corrupt {
        entity: "auth token",
        source: "date out of range".into(),
    })
}

fn token_from_doc(d: &Document) -> Result<AuthToken> {
    let corrupt = |what: &str| Error::Corrupt {
        entity: "auth token",
        source: format!("missing {what}").into(),
    };
    let purpose = match d.get_str("purpose").map_err(|_| corrupt("purpose"))? {
        "invitation" => TokenPurpose::Invitation,
        "password_reset" => TokenPurpose::PasswordReset,
        _ => return Err(corrupt("a known purpose")),
    };
    Ok(AuthToken {
        token_hash: d.get_str("_id").map_err(|_| corrupt("_id"))?.to_owned(),
        user_id: d
            .get_str("user_id")
            .map_err(|_| corrupt("user_id"))?
            .parse()?,
        tenant_id: match d.get_str("tenant_id") {
            Ok(t) => Some(t.parse()?),
            Err(_) => None,
        },
        purpose,
        created_at: time(
            *d.get_datetime("created_at")
                .map_err(|_| corrupt("created_at"))?,
        )?,
        expires_at: time(
            *d.get_datetime("expires_at")
                .map_err(|_| corrupt("expires_at"))?,
        )?,
        used_at: match d.get_datetime("used_at") {
            Ok(u) => Some(time(*u)?),
            Err(_) => None,
        },
    })
}

#[async_trait]
impl AuthTokenRepository for MongoTenancy {
    async fn insert(&self, token: &AuthToken) -> Result<()> {
        let mut doc = doc! {
            "_id": &token.token_hash,
            "user_id": token.user_id.to_string(),
            "purpose": token.purpose.as_str(),
            "created_at": date(token.created_at),
            "expires_at": date(token.expires_at),
            "used_at": token.used_at.map(date),
        };
        if let Some(t) = token.tenant_id {
            doc.insert("tenant_id", t.to_string());
        }
        self.db
            .collection::<Document>(AUTH_TOKENS)
            .insert_one(doc)
            .await
            .map_err(unique_err("auth token", "store a token"))?;
        Ok(())
    }

    async fn find(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<AuthToken> {
        let found = self
            .db
            .collection::<Document>(AUTH_TOKENS)
            .find_one(doc! {
                "_id": token_hash,
                "purpose": purpose.as_str(),
                "used_at": Bson::Null,
                "expires_at": { "$gt": date(now) },
            })
            .await
            .map_err(backend_err("read a token"))?;
        match found {
            Some(d) => token_from_doc(&d),
            None => Err(Error::NotFound {
                entity: "token",
                id: "(redacted)".into(),
            }),
        }
    }

    async fn consume(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<AuthToken> {
        let updated = self
            .db
            .collection::<Document>(AUTH_TOKENS)
            .find_one_and_update(
                doc! {
                    "_id": token_hash,
                    "purpose": purpose.as_str(),
                    "used_at": Bson::Null,
                    "expires_at": { "$gt": date(now) },
                },
                doc! { "$set": { "used_at": date(now) } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_err("use a token"))?;
        match updated {
            Some(d) => token_from_doc(&d),
            None => Err(Error::NotFound {
                entity: "token",
                id: "(redacted)".into(),
            }),
        }
    }

    async fn revoke_for_user(
        &self,
        user: UserId,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<u64> {
        let result = self
            .db
            .collection::<Document>(AUTH_TOKENS)
            .update_many(
                doc! { "user_id": user.to_string(), "purpose": purpose.as_str(), "used_at": Bson::Null },
                doc! { "$set": { "used_at": date(now) } },
            )
            .await
            .map_err(backend_err("revoke tokens"))?;
        Ok(result.modified_count)
    }
}
