//! The caller's own account: `/me`, change password, set password (from an emailed link),
//! forgot password.

use poem::Request;
use poem_openapi::{payload::Json, Object, OpenApi};
use secrecy::SecretString;

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
    /// The new password: at least 10 characters, not `admin123`, not the email.
    #[oai(write_only)]
    pub new_password: String,
}

/// `POST /api/v1/auth/set-password`.
#[derive(Object)]
pub struct SetPassword {
    /// The token from the invitation or reset link.
    #[oai(write_only)]
    pub token: String,
    /// The new password.
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
    #[oai(
        path = "/auth/change-password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        auth: Auth,
        body: Json<ChangePassword>,
    ) -> Result<Json<Done>, ApiError> {
        let body = body.0;
        self.state
            .tenancy
            .change_password(
                &auth.0,
                &SecretString::from(body.current_password),
                &SecretString::from(body.new_password),
            )
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Sets a password with the token from an invitation or reset email (single use).
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
