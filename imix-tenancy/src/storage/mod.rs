//! Where tenancy keeps its records: the ports [`TenantRepository`], [`UserRepository`],
//! [`AuthTokenRepository`] and [`ApiKeyRepository`], their adapters (`sqlite`, `mongodb` features) on the shared
//! [`Backend`], the capability's migrations, its records for backups, and the
//! [`TenantDirectory`] other capabilities read tenants through.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    directory::{TenantDirectory, TenantProfile},
    id::{TenantId, UserId},
    store::{
        transfer::{paged, RecordSet},
        Backend, BlobMeta, BlobStore, Page, PageRequest, Scope, MAX_PAGE_SIZE,
    },
    Result, Timestamp,
};

use crate::records::{ApiKey, ApiKeyId, AuthToken, Tenant, TokenPurpose, User};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The capability name its migrations are recorded under.
pub const CAPABILITY: &str = "tenancy";

/// Tenants.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TenantRepository: Send + Sync {
    /// Stores a new tenant as given (its `version` is kept, normally 1).
    async fn insert(&self, tenant: &Tenant) -> Result<()>;
    /// The tenant with `id`.
    async fn get(&self, id: TenantId) -> Result<Tenant>;
    /// Replaces the tenant if its stored version equals `tenant.version`; returns the
    /// stored tenant, whose version is one higher. A stale version is
    /// [`Error::VersionConflict`].
    async fn update(&self, tenant: &Tenant) -> Result<Tenant>;
    /// Tenants visible in `scope` (a tenant sees only itself), oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Tenant>>;
}

/// Users.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Stores a new user. An email already used by another user, in any letter case, is
    /// [`Error::Duplicate`] with field `email`.
    async fn insert(&self, user: &User) -> Result<()>;
    /// The user with `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: UserId) -> Result<User>;
    /// The user with this email (case-insensitive), platform-wide: for sign-in.
    async fn find_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Replaces the user if visible in `scope` and its stored version equals
    /// `user.version`; returns the stored user with the version raised by one.
    async fn update(&self, scope: Scope, user: &User) -> Result<User>;
    /// Users visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<User>>;
}

/// Single-use tokens (invitations, password resets), stored by hash.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuthTokenRepository: Send + Sync {
    /// Stores a new token.
    async fn insert(&self, token: &AuthToken) -> Result<()>;
    /// The token, if it exists, has `purpose`, is unused and has not expired at `now`,
    /// without using it; otherwise [`Error::NotFound`].
    async fn find(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<AuthToken>;
    /// Atomically marks the token used and returns it, if it exists, has `purpose`, is
    /// unused and has not expired at `now`; otherwise [`Error::NotFound`] (whichever the
    /// reason, so callers cannot probe). Two concurrent uses: exactly one succeeds.
    async fn consume(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<AuthToken>;
    /// Marks every unused token of `user` for `purpose` as used (a new invitation or reset
    /// supersedes older ones); returns how many.
    async fn revoke_for_user(
        &self,
        user: UserId,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<u64>;
}

/// API keys, stored by hash ([`ApiKey`]).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key. A hash already stored is [`imix_core::Error::Duplicate`].
    async fn insert(&self, key: &ApiKey) -> Result<()>;
    /// The key with this hash, platform-wide: for authentication. Read from the store on
    /// every call (no cache), so a deleted key stops working at once on every replica.
    async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// The key with `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: ApiKeyId) -> Result<ApiKey>;
    /// Keys visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ApiKey>>;
    /// Deletes the key if visible in `scope`; otherwise [`imix_core::Error::NotFound`].
    async fn delete(&self, scope: Scope, id: ApiKeyId) -> Result<()>;
    /// Records that the key was used at `at` (a deleted key: nothing happens).
    async fn touch(&self, id: ApiKeyId, at: Timestamp) -> Result<()>;
}

/// The tenancy repositories, opened on one backend.
#[derive(Clone)]
pub struct TenancyStorage {
    /// Tenants.
    pub tenants: Arc<dyn TenantRepository>,
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Invitation and password-reset tokens.
    pub auth_tokens: Arc<dyn AuthTokenRepository>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyRepository>,
}

impl std::fmt::Debug for TenancyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyStorage").finish_non_exhaustive()
    }
}

impl TenancyStorage {
    /// Opens the repositories on `backend`; a backend without an adapter (its feature off,
    /// or [`Backend::Custom`]) is refused.
    pub fn open(backend: &Backend) -> Result<Self> {
        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                let adapter = Arc::new(sqlite::SqliteTenancy::new(db.clone()));
                Ok(Self {
                    tenants: adapter.clone(),
                    users: adapter.clone(),
                    auth_tokens: adapter.clone(),
                    api_keys: adapter,
                })
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                let adapter = Arc::new(mongo::MongoTenancy::new(db.clone()));
                Ok(Self {
                    tenants: adapter.clone(),
                    users: adapter.clone(),
                    auth_tokens: adapter.clone(),
                    api_keys: adapter,
                })
            }
            other => Err(other.unsupported(CAPABILITY)),
        }
    }

    /// Tenants, users and API keys for backups, in import order (tenants first). API keys
    /// travel as their hashes, so keys keep working after a restore. Auth tokens are
    /// operational state and not exported: a restored user asks for a new invitation.
    pub fn record_sets(&self) -> Vec<Arc<dyn RecordSet>> {
        let (tenants, tenants_in) = (self.tenants.clone(), self.tenants.clone());
        let (users, users_in) = (self.users.clone(), self.users.clone());
        let (keys, keys_in) = (self.api_keys.clone(), self.api_keys.clone());
        vec![
            paged(
                "tenant",
                move |page| {
                    let tenants = tenants.clone();
                    async move { tenants.list(Scope::Platform, page).await }
                },
                move |tenant: Tenant| {
                    let tenants = tenants_in.clone();
                    async move { tenants.insert(&tenant).await }
                },
            ),
            paged(
                "user",
                move |page| {
                    let users = users.clone();
                    async move { users.list(Scope::Platform, page).await }
                },
                move |user: User| {
                    let users = users_in.clone();
                    async move { users.insert(&user).await }
                },
            ),
            paged(
                "api_key",
                move |page| {
                    let keys = keys.clone();
                    async move { keys.list(Scope::Platform, page).await }
                },
                move |key: ApiKey| {
                    let keys = keys_in.clone();
                    async move { keys.insert(&key).await }
                },
            ),
        ]
    }

    /// The tenants as other capabilities read them.
    pub fn directory(&self) -> Arc<dyn TenantDirectory> {
        Arc::new(RepositoryDirectory(self.tenants.clone()))
    }
}

/// Creates or upgrades tenancy's tables or indexes on `backend`. Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => db.migrate(CAPABILITY, sqlite::MIGRATIONS).await.map(drop),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, CAPABILITY, mongo::MIGRATIONS)
                .await
                .map(drop)
        }
        other => Err(other.unsupported(CAPABILITY)),
    }
}

/// [`TenantDirectory`] over a [`TenantRepository`].
struct RepositoryDirectory(Arc<dyn TenantRepository>);

#[async_trait]
impl TenantDirectory for RepositoryDirectory {
    async fn profile(&self, id: TenantId) -> Result<TenantProfile> {
        let tenant = self.0.get(id).await?;
        Ok(TenantProfile {
            id: tenant.id,
            name: tenant.name,
            status: tenant.status,
            default_language: tenant.default_language,
            limits: tenant.limits,
        })
    }
}

/// The blob key prefix under which every blob belongs to a tenant record (its logo or a
/// document); [`orphaned_blobs`] looks there.
pub const TENANT_BLOB_PREFIX: &str = "tenants/";

/// Blobs under [`TENANT_BLOB_PREFIX`] that no tenant references (as its logo or a
/// document) and that were written before `created_before` — a margin that leaves alone
/// uploads still in flight, whose bytes are stored just before their record. Ordered by key.
pub async fn orphaned_blobs(
    tenants: &dyn TenantRepository,
    blobs: &dyn BlobStore,
    created_before: Timestamp,
) -> Result<Vec<BlobMeta>> {
    let mut referenced = std::collections::HashSet::new();
    let mut page = PageRequest::first(MAX_PAGE_SIZE);
    loop {
        let tenants = tenants.list(Scope::Platform, page.clone()).await?;
        for t in &tenants.items {
            referenced.extend(t.blob_keys().map(str::to_owned));
        }
        match tenants.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    let mut orphans = Vec::new();
    let mut after = None;
    loop {
        let metas = blobs
            .list(TENANT_BLOB_PREFIX, after.take(), MAX_PAGE_SIZE)
            .await?;
        let last = metas.last().map(|m| m.key.clone());
        let full = metas.len() == MAX_PAGE_SIZE as usize;
        orphans.extend(
            metas
                .into_iter()
                .filter(|m| m.created_at < created_before && !referenced.contains(&m.key)),
        );
        match last {
            Some(key) if full => after = Some(key),
            _ => break,
        }
    }
    Ok(orphans)
}
