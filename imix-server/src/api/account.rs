//! The caller's own account: `/me`, change password, set password (from an emailed link),
//! forgot password.

use poem::Request;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};
use secrecy::{ExposeSecret, SecretString};

use super::{dto::Done, views::UserView, ApiTags};
use crate::{
    auth::{client_addr, Auth},
    error::ApiError,
    state::AppState,
};

/// Account operations.
pub struct AccountApi {
    state: AppState,
}

impl AccountApi {
    /// The account API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The caller and what they may do.
#[derive(Debug, Object)]
pub struct MeView {
    /// The caller.
    pub user: UserView,
    /// The caller's effective permissions.
    pub permissions: Vec<String>,
}

/// `POST /api/v1/auth/change-password`.
#[derive(Object)]
pub struct ChangePassword {
    /// The current password.
    #[oai(write_only)]
    pub current_password: String,
    /// The new password: 10 characters to 1,024 bytes, not only spaces or control
    /// characters, not containing the email address or the user's name, and not a common or
    /// easily guessed password (see the password rules in the authentication guide).
    #[oai(write_only)]
    pub new_password: String,
}

/// The answer to a password change: a fresh access token, since every token issued before
/// the change (the one used for it included) no longer works.
#[derive(Debug, Object)]
pub struct PasswordChanged {
    /// Always `true`.
    pub ok: bool,
    /// A fresh bearer token for the caller.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Its lifetime in seconds.
    pub expires_in: i64,
}

#[derive(ApiResponse)]
enum ChangePasswordResponse {
    /// Changed; earlier tokens are revoked and the fresh one replaces them.
    #[oai(status = 200)]
    Changed(
        Json<PasswordChanged>,
        #[oai(header = "Cache-Control")] String,
    ),
}

/// `POST /api/v1/auth/set-password`.
#[derive(Object)]
pub struct SetPassword {
    /// The token from the invitation or reset link.
    #[oai(write_only)]
    pub token: String,
    /// The new password (the same rules as for a password change).
    #[oai(write_only)]
    pub new_password: String,
}

/// `POST /api/v1/auth/forgot-password`.
#[derive(Object)]
pub struct ForgotPassword {
    /// The account's email.
    pub email: String,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Account")]
impl AccountApi {
    /// The signed-in user and their effective permissions.
    ///
    /// Allowed even while a password change is required.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(&self, auth: Auth) -> Json<MeView> {
        let permissions = auth
            .0
            .permissions()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        Json(MeView {
            user: auth.0.user().clone().into(),
            permissions,
        })
    }

    /// Changes the signed-in user's password.
    ///
    /// Every access token issued before, on every replica, stops working at once (the one
    /// used for this call included); the answer carries a fresh one.
    #[oai(
        path = "/auth/change-password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        auth: Auth,
        body: Json<ChangePassword>,
    ) -> Result<ChangePasswordResponse, ApiError> {
        let body = body.0;
        let token = self
            .state
            .tenancy
            .change_password(
                &auth.0,
                &SecretString::from(body.current_password),
                &SecretString::from(body.new_password),
            )
            .await?;
        Ok(ChangePasswordResponse::Changed(
            Json(PasswordChanged {
                ok: true,
                access_token: token.token.expose_secret().to_owned(),
                token_type: "bearer".into(),
                expires_in: token.expires_in,
            }),
            "no-store".into(),
        ))
    }

    /// Sets a password with the token from an invitation or reset email (single use).
    ///
    /// Every access token of the user issued before stops working at once.
    #[oai(
        path = "/auth/set-password",
        method = "post",
        operation_id = "set_password"
    )]
    async fn set_password(
        &self,
        req: &Request,
        body: Json<SetPassword>,
    ) -> Result<Json<Done>, ApiError> {
        let body = body.0;
        self.state
            .tenancy
            .set_password(
                &body.token,
                &SecretString::from(body.new_password),
                client_addr(req),
            )
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Emails a password-reset link (valid one hour). Answers the same whether or not the
    /// email belongs to an account.
    #[oai(
        path = "/auth/forgot-password",
        method = "post",
        operation_id = "forgot_password"
    )]
    async fn forgot_password(&self, body: Json<ForgotPassword>) -> Json<Done> {
        self.state.tenancy.forgot_password(&body.0.email);
        Json(Done::ok())
    }
}
