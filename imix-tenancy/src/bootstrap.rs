//! First-start bootstrap: the admin guide's default administrator.

use imix_core::{
    model::AuditEntry,
    store::{PageRequest, Scope, Store},
};
use secrecy::SecretString;

use crate::{
    password::PasswordHasher,
    records::{Role, User, UserStatus},
    storage::TenancyStorage,
    TenancyError,
};

/// The admin guide's default administrator email.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@example.com";

/// Creates the default platform administrator when the store has no user at all (first
/// start, or `init-db`). It must change its password at first sign-in. Returns whether it
/// was created. Safe to call from several replicas at once (the email is unique).
pub async fn ensure_default_admin(
    store: &Store,
    storage: &TenancyStorage,
    email: &str,
    password: &SecretString,
) -> Result<bool, TenancyError> {
    let existing = storage
        .users
        .list(Scope::Platform, PageRequest::first(1))
        .await?;
    if !existing.items.is_empty() {
        return Ok(false);
    }
    // The documented default `admin123` must keep working, so only the length cap applies
    // here; the policy applies to the password it is changed to at first sign-in.
    crate::password::check_length("IMIX_ADMIN_PASSWORD", password)?;
    let hasher = PasswordHasher::new()?;
    let mut admin = User::new(
        crate::validate::email("IMIX_ADMIN_EMAIL", email)?,
        Role::Admin,
        None,
    );
    admin.first_name = "Administrator".into();
    admin.status = UserStatus::Active;
    admin.password_hash = Some(hasher.hash_async(password).await?);
    admin.must_change_password = true;
    match storage.users.insert(&admin).await {
        Ok(()) => {
            let mut e = AuditEntry::new("user.create_default_admin", "user");
            e.target_id = Some(admin.id.to_string());
            if let Err(err) = store.audit.append(&e).await {
                tracing::error!(error = %err, "cannot write the audit log");
            }
            tracing::warn!(email = %admin.email, "created the default administrator; sign in and change its password now");
            Ok(true)
        }
        // Another replica created it at the same moment.
        Err(imix_core::Error::Duplicate { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_password_is_accepted_but_a_huge_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
        store.admin.migrate().await.unwrap();
        crate::storage::migrate(&store.backend).await.unwrap();
        let storage = TenancyStorage::open(&store.backend).unwrap();
        let huge = SecretString::from("x".repeat(1025));
        assert!(matches!(
            ensure_default_admin(&store, &storage, DEFAULT_ADMIN_EMAIL, &huge).await,
            Err(TenancyError::Invalid { field, .. }) if field == "IMIX_ADMIN_PASSWORD"
        ));
        let default = SecretString::from(crate::password::DEFAULT_ADMIN_PASSWORD);
        assert!(
            ensure_default_admin(&store, &storage, DEFAULT_ADMIN_EMAIL, &default)
                .await
                .unwrap()
        );
    }
}
