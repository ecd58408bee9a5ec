//! Meta's webhook endpoints: the verification handshake (`GET`) and deliveries (`POST`),
//! for one account's callback URL (`/webhooks/whatsapp/{account_id}`) and for an app-level
//! one serving many accounts (`/webhooks/whatsapp`). A delivery is answered 200 only once
//! it is stored durably; one that no entry's account signature verifies is answered 401
//! and nothing is stored. Bodies are capped at 1 MiB by the request middleware (413).

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{id::WhatsAppAccountId, store::Scope};
use imix_messaging::{
    ingest::{AccountDirectory, AccountKey},
    MessagingError,
};
use imix_whatsapp::{accounts::AccountService, storage::WhatsAppAccountRepository};
use poem::{
    error::ResponseError,
    handler,
    http::StatusCode,
    web::{Data, Path, Query},
    Body, IntoResponse, Request, Response,
};
use secrecy::SecretString;
use serde::Deserialize;

use crate::{error::ApiError, state::AppState};

/// Accounts by phone number id, with their app secrets opened for signature checks.
#[derive(Clone)]
pub struct AccountKeys {
    accounts: Arc<dyn WhatsAppAccountRepository>,
    service: AccountService,
}

impl AccountKeys {
    /// Keys from `accounts`, opened by `service`.
    pub fn new(accounts: Arc<dyn WhatsAppAccountRepository>, service: AccountService) -> Self {
        Self { accounts, service }
    }
}

impl AccountKeys {
    fn key_of(
        &self,
        account: imix_whatsapp::WhatsAppAccount,
    ) -> imix_messaging::Result<AccountKey> {
        let app_secret = self
            .service
            .app_secret(&account)
            .map_err(|e| MessagingError::Secret {
                account: account.id,
                source: Box::new(e),
            })?;
        Ok(AccountKey {
            account_id: account.id,
            tenant_id: account.tenant_id,
            phone_number_id: account.phone_number_id,
            app_secret,
        })
    }
}

#[async_trait]
impl AccountDirectory for AccountKeys {
    async fn by_waba_id(&self, waba_id: &str) -> imix_messaging::Result<Vec<AccountKey>> {
        // Rare (template statuses, account updates): a walk over the accounts is enough.
        let mut keys = Vec::new();
        let mut page = imix_core::store::PageRequest::first(imix_core::store::MAX_PAGE_SIZE);
        loop {
            let accounts = self.accounts.list(Scope::Platform, page.clone()).await?;
            for account in accounts.items {
                if account.waba_id == waba_id {
                    keys.push(self.key_of(account)?);
                }
            }
            match accounts.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(keys),
            }
        }
    }

    async fn by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> imix_messaging::Result<Option<AccountKey>> {
        let Some(account) = self
            .accounts
            .find_by_phone_number_id(phone_number_id)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.key_of(account)?))
    }
}

/// Meta's verification request.
#[derive(Debug, Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

fn refused_handshake() -> Response {
    tracing::warn!(target: "imix_whatsapp", "webhook verification refused: wrong mode or verify token");
    ApiError::new(
        StatusCode::FORBIDDEN,
        "verification_failed",
        "the verify token does not match",
    )
    .as_response()
}

fn answer_handshake(query: &Handshake, expected: &SecretString) -> Response {
    match imix_whatsapp::webhook::verification_challenge(
        query.mode.as_deref(),
        query.verify_token.as_deref(),
        query.challenge.as_deref(),
        expected,
    ) {
        Some(challenge) => Response::builder()
            .content_type("text/plain; charset=utf-8")
            .body(challenge.to_owned()),
        None => refused_handshake(),
    }
}

/// `GET /webhooks/whatsapp/{account_id}`: echoes `hub.challenge` when `hub.verify_token` is
/// the account's webhook verify token.
#[handler]
pub async fn verify_account(
    state: Data<&AppState>,
    Path(account_id): Path<String>,
    Query(query): Query<Handshake>,
) -> Response {
    let Ok(id) = account_id.parse::<WhatsAppAccountId>() else {
        return refused_handshake();
    };
    match state
        .storage
        .whatsapp
        .accounts
        .get(Scope::Platform, id)
        .await
    {
        Ok(account) => answer_handshake(&query, &SecretString::from(account.webhook_verify_token)),
        Err(imix_core::Error::NotFound { .. }) => refused_handshake(),
        Err(e) => ApiError::from(e).as_response(),
    }
}

/// `GET /webhooks/whatsapp`: the same for the app-level callback URL, with
/// `IMIX_WEBHOOK_VERIFY_TOKEN`.
#[handler]
pub async fn verify_app(state: Data<&AppState>, Query(query): Query<Handshake>) -> Response {
    match &state.config.webhook_verify_token {
        Some(token) => answer_handshake(&query, token),
        None => refused_handshake(),
    }
}

async fn deliver(state: &AppState, req: &Request, body: Body) -> Response {
    let bytes = match body.into_bytes().await {
        Ok(bytes) => bytes,
        // The middleware turns a body over the limit into 413 whatever is answered here.
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the request body could not be read: {e}"),
            )
            .as_response()
        }
    };
    let signature = req.header(imix_whatsapp::webhook::SIGNATURE_HEADER);
    match state.webhooks.receive(&bytes, signature).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(MessagingError::Unverified) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "no entry of the delivery is signed by its account's app secret",
        )
        .as_response(),
        Err(e) => {
            tracing::error!(target: "imix_whatsapp", error = %e, "webhook delivery not stored; Meta will retry");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_stored",
                "the delivery could not be stored; retry later",
            )
            .as_response()
        }
    }
}

/// `POST /webhooks/whatsapp/{account_id}`: a delivery to one account's callback URL. Its
/// entries are filed by their phone numbers' accounts, as for the app-level URL.
#[handler]
pub async fn deliver_account(
    state: Data<&AppState>,
    Path(account_id): Path<String>,
    req: &Request,
    body: Body,
) -> Response {
    let known = match account_id.parse::<WhatsAppAccountId>() {
        Ok(id) => {
            state
                .storage
                .whatsapp
                .accounts
                .get(Scope::Platform, id)
                .await
        }
        Err(_) => Err(imix_core::Error::NotFound {
            entity: "whatsapp account",
            id: account_id.clone(),
        }),
    };
    match known {
        Ok(_) => deliver(&state, req, body).await,
        Err(imix_core::Error::NotFound { .. }) => {
            tracing::warn!(target: "imix_whatsapp", %account_id, "webhook delivery to an unknown account's URL");
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "whatsapp account not found",
            )
            .as_response()
        }
        Err(e) => ApiError::from(e).as_response(),
    }
}

/// `POST /webhooks/whatsapp`: a delivery to the app-level callback URL.
#[handler]
pub async fn deliver_app(state: Data<&AppState>, req: &Request, body: Body) -> Response {
    deliver(&state, req, body).await
}
