//! Users: the admin guide's User Management.

use imix_core::id::{TenantId, UserId};
use imix_tenancy::{NewUser, UserPatch};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use secrecy::SecretString;

use super::{
    dto::{page, LanguageDto, RoleDto},
    parse_id,
    views::{UserList, UserView},
    ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// User operations.
pub struct UsersApi {
    state: AppState,
}

impl UsersApi {
    /// The users API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// `POST /api/v1/users`.
#[derive(Object)]
pub struct CreateUser {
    /// A bare email address (not the `Name <addr>` form), unique regardless of case; stored
    /// trimmed with its domain lower-cased.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role.
    pub role: RoleDto,
    /// Tenant; omit for a platform user (platform admins only). Tenant admins may omit it
    /// for their own tenant.
    pub tenant_id: Option<String>,
    /// Language; defaults to the tenant's.
    pub default_language: Option<LanguageDto>,
    /// Permissions (custom role only).
    #[oai(default)]
    pub permissions: Vec<String>,
    /// An initial password (the user must change it at first sign-in), under the same rules
    /// as any new password (10 characters to 1,024 bytes, not common, not containing the
    /// email or name). Without one, an invitation email with a set-password link (valid 72
    /// hours) is sent.
    #[oai(write_only)]
    pub password: Option<String>,
}

/// `PATCH /api/v1/users/{user_id}`: omitted fields stay as they are.
#[derive(Object)]
pub struct UpdateUser {
    /// Email: a bare address, normalized as on creation.
    pub email: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Role.
    pub role: Option<RoleDto>,
    /// Language.
    pub default_language: Option<LanguageDto>,
    /// Permissions (custom role only).
    pub permissions: Option<Vec<String>>,
}

#[derive(ApiResponse)]
enum Created {
    /// Created.
    #[oai(status = 201)]
    User(Json<UserView>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl UsersApi {
    /// Users visible to the caller, oldest first; `tenant_id` narrows to one tenant.
    #[oai(path = "/users", method = "get", operation_id = "list_users")]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<UserList>, ApiError> {
        let tenant = match tenant_id.0 {
            Some(raw) => Some(parse_id::<TenantId>(&raw, "tenant")?),
            None => None,
        };
        let p = self
            .state
            .tenancy
            .list_users(&auth.0, tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(UserList {
            items: p.items.into_iter().map(UserView::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates a user and sends the invitation email.
    #[oai(path = "/users", method = "post", operation_id = "create_user")]
    async fn create(&self, auth: Auth, body: Json<CreateUser>) -> Result<Created, ApiError> {
        let b = body.0;
        let tenant_id = match b.tenant_id.as_deref() {
            Some(raw) => Some(
                raw.parse::<TenantId>()
                    .map_err(|_| ApiError::invalid_field("tenant_id", "not a valid id"))?,
            ),
            None => None,
        };
        let user = self
            .state
            .tenancy
            .create_user(
                &auth.0,
                NewUser {
                    email: b.email,
                    first_name: b.first_name,
                    last_name: b.last_name,
                    role: b.role.into(),
                    tenant_id,
                    default_language: b.default_language.map(Into::into),
                    permissions: b.permissions,
                    password: b.password.map(SecretString::from),
                },
            )
            .await?;
        Ok(Created::User(Json(user.into())))
    }

    /// One user.
    #[oai(path = "/users/:user_id", method = "get", operation_id = "get_user")]
    async fn get(&self, auth: Auth, user_id: Path<String>) -> Result<Json<UserView>, ApiError> {
        let id = parse_id::<UserId>(&user_id.0, "user")?;
        Ok(Json(self.state.tenancy.get_user(&auth.0, id).await?.into()))
    }

    /// Edits a user.
    #[oai(
        path = "/users/:user_id",
        method = "patch",
        operation_id = "update_user"
    )]
    async fn update(
        &self,
        auth: Auth,
        user_id: Path<String>,
        body: Json<UpdateUser>,
    ) -> Result<Json<UserView>, ApiError> {
        let id = parse_id::<UserId>(&user_id.0, "user")?;
        let b = body.0;
        let patch = UserPatch {
            email: b.email,
            first_name: b.first_name,
            last_name: b.last_name,
            role: b.role.map(Into::into),
            default_language: b.default_language.map(Into::into),
            permissions: b.permissions,
        };
        Ok(Json(
            self.state
                .tenancy
                .update_user(&auth.0, id, patch)
                .await?
                .into(),
        ))
    }

    /// Deactivates a user: sign-in refused and existing tokens rejected at once.
    #[oai(
        path = "/users/:user_id/deactivate",
        method = "post",
        operation_id = "deactivate_user"
    )]
    async fn deactivate(
        &self,
        auth: Auth,
        user_id: Path<String>,
    ) -> Result<Json<UserView>, ApiError> {
        let id = parse_id::<UserId>(&user_id.0, "user")?;
        Ok(Json(
            self.state
                .tenancy
                .deactivate_user(&auth.0, id)
                .await?
                .into(),
        ))
    }

    /// Activates a user again.
    #[oai(
        path = "/users/:user_id/activate",
        method = "post",
        operation_id = "activate_user"
    )]
    async fn activate(
        &self,
        auth: Auth,
        user_id: Path<String>,
    ) -> Result<Json<UserView>, ApiError> {
        let id = parse_id::<UserId>(&user_id.0, "user")?;
        Ok(Json(
            self.state.tenancy.activate_user(&auth.0, id).await?.into(),
        ))
    }
}
