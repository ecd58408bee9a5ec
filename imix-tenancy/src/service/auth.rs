//! Sign-in, token authentication, passwords, invitations and resets.

use crate::records::{normalize_email, AuthToken, TenantStatus, TokenPurpose, User, UserStatus};
use imix_core::{model::AuditEntry, store::Scope};
use secrecy::{ExposeSecret, SecretString};

use super::{now, TenancyService, INVITATION_VALID_HOURS, RESET_VALID_HOURS};
use crate::{
    password::{check_length, check_policy},
    permission::{platform_role_permissions, tenant_role_permissions, Permission},
    token::{random_token, token_hash, AccessToken},
    AuthContext, TenancyError,
};

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The access token.
    pub token: AccessToken,
    /// The user must change their password before doing anything else.
    pub must_change_password: bool,
}

/// Password-reset emails sent to one address per hour at most (more requests are
/// answered the same and send nothing).
pub const RESET_EMAILS_PER_HOUR: u64 = 3;

/// Longest attempted sign-in name kept in the audit log, in characters.
pub const MAX_AUDITED_NAME_CHARS: usize = 254;

/// A sign-in name as typed by anyone, made safe to record and show in the audit log: trimmed,
/// at most [`MAX_AUDITED_NAME_CHARS`] characters, every control, line-separator, format
/// (zero-width, bidirectional marks, overrides and isolates) or other invisible character
/// replaced with U+FFFD, so an entry cannot fake a line of its own, carry terminal escapes or
/// read backwards.
pub fn audited_name(attempted: &str) -> String {
    attempted
        .trim()
        .chars()
        .take(MAX_AUDITED_NAME_CHARS)
        .map(|c| {
            let unsafe_char = c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}')
                || imix_notify::text::is_invisible(c)
                || imix_notify::text::is_unrenderable(c)
                || unicode_general_category::get_general_category(c)
                    == unicode_general_category::GeneralCategory::Format;
            if unsafe_char {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

fn throttle_key(email: &str) -> String {
    token_hash(&format!("sign-in:{}", normalize_email(email)))
}

impl TenancyService {
    /// OAuth2 password flow: email and password to an access token.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &SecretString,
        client_addr: Option<String>,
    ) -> Result<SignIn, TenancyError> {
        // Before any hashing: a huge password costs nothing.
        check_length("password", password)?;
        let now = now();
        let key = throttle_key(email);
        if let Err(retry_after_secs) = self.throttle.check(&key, now).await {
            let mut e = AuditEntry::new("auth.sign_in_throttled", "user");
            e.actor_email = Some(audited_name(email));
            e.client_addr = client_addr;
            self.audit(e).await;
            return Err(TenancyError::TooManyAttempts { retry_after_secs });
        }
        let user = self.repos.users.find_by_email(email).await?;
        // Always one argon2 verification, so unknown emails cost the same as wrong passwords.
        let password_ok = self
            .hasher
            .verify_async(
                password,
                user.as_ref().and_then(|u| u.password_hash.as_ref()),
            )
            .await;
        let Some(user) = user.filter(|_| password_ok) else {
            self.throttle.record_failure(&key, now).await;
            let mut e = AuditEntry::new("auth.sign_in_failed", "user");
            e.actor_email = Some(audited_name(email));
            e.client_addr = client_addr;
            self.audit(e).await;
            return Err(TenancyError::InvalidCredentials);
        };
        let mut audit = AuditEntry::new("auth.sign_in", "user");
        audit.actor_id = Some(user.id);
        audit.actor_email = Some(user.email.clone());
        audit.tenant_id = user.tenant_id;
        audit.target_id = Some(user.id.to_string());
        audit.client_addr = client_addr;
        if let Err(refusal) = self.check_may_act(&user).await {
            audit.action = "auth.sign_in_refused".into();
            self.audit(audit).await;
            return Err(refusal);
        }
        self.throttle.reset(&key).await;
        let token = self.tokens.issue(&user, now)?;
        // Stamped on the user as currently stored (retried if someone else writes the user
        // meanwhile, never overwriting their change); the sign-in succeeds either way.
        let stamp = self
            .modify_user(Scope::Platform, user.id, |fresh| {
                if fresh.last_login_at.is_some_and(|t| t >= now) {
                    return Ok(false);
                }
                fresh.last_login_at = Some(now);
                Ok(true)
            })
            .await;
        if let Err(e) = stamp {
            tracing::warn!(error = %e, user = %user.id, "last_login_at not recorded");
        }
        self.audit(audit).await;
        Ok(SignIn {
            token,
            must_change_password: user.must_change_password,
        })
    }

    /// The user's account and tenant must both be active.
    async fn check_may_act(&self, user: &User) -> Result<(), TenancyError> {
        if user.status == UserStatus::Deactivated {
            return Err(TenancyError::AccountDeactivated);
        }
        if let Some(tenant_id) = user.tenant_id {
            let tenant = self.repos.tenants.get(tenant_id).await?;
            if tenant.status == TenantStatus::Deactivated {
                return Err(TenancyError::TenantDeactivated);
            }
        }
        Ok(())
    }

    /// Checks a bearer token and builds the caller's context from the **current** user and
    /// tenant, read from the store, so deactivation, a password change and a reset take
    /// effect at once, on every replica, rather than at token expiry.
    pub async fn authenticate(
        &self,
        token: &str,
        client_addr: Option<String>,
    ) -> Result<AuthContext, TenancyError> {
        let verified = self.tokens.verify(token, now())?;
        let user = match self
            .repos
            .users
            .get(Scope::Platform, verified.user_id)
            .await
        {
            Ok(user) => user,
            Err(imix_core::Error::NotFound { .. }) => return Err(TenancyError::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        // Issued before the last password change or reset: revoked.
        if verified.generation != user.token_generation {
            return Err(TenancyError::Unauthenticated);
        }
        self.check_may_act(&user).await?;
        let permissions = match user.tenant_id {
            None => platform_role_permissions(user.role),
            Some(_) => {
                let custom: Vec<Permission> = user
                    .permissions
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                tenant_role_permissions(user.role, &custom)
            }
        };
        Ok(AuthContext::new(user, permissions, client_addr))
    }

    /// Fails with [`TenancyError::PasswordChangeRequired`] while the caller must change
    /// their password (everything but `GET /me` and change-password is refused).
    pub fn require_password_current(ctx: &AuthContext) -> Result<(), TenancyError> {
        if ctx.user().must_change_password {
            Err(TenancyError::PasswordChangeRequired)
        } else {
            Ok(())
        }
    }

    /// Changes the caller's password. Every access token issued before, the caller's
    /// included, stops working at once; the answer is a fresh one.
    pub async fn change_password(
        &self,
        ctx: &AuthContext,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<AccessToken, TenancyError> {
        check_length("current_password", current)?;
        check_length("new_password", new)?;
        let user = self.repos.users.get(Scope::Platform, ctx.user_id()).await?;
        // Guessing the current password through a session counts as guessing it at
        // sign-in: the same lock, so a stolen session is not an unlimited oracle.
        let attempt_at = now();
        let key = throttle_key(&user.email);
        if let Err(retry_after_secs) = self.throttle.check(&key, attempt_at).await {
            return Err(TenancyError::TooManyAttempts { retry_after_secs });
        }
        if !self
            .hasher
            .verify_async(current, user.password_hash.as_ref())
            .await
        {
            self.throttle.record_failure(&key, attempt_at).await;
            let mut e = AuditEntry::new("auth.change_password_failed", "user");
            e.actor_id = Some(user.id);
            e.actor_email = Some(user.email.clone());
            e.tenant_id = user.tenant_id;
            e.target_id = Some(user.id.to_string());
            self.audit(e).await;
            return Err(TenancyError::invalid(
                "current_password",
                "is not the current password",
            ));
        }
        check_policy("new_password", new, &user)?;
        if current.expose_secret() == new.expose_secret() {
            return Err(TenancyError::invalid(
                "new_password",
                "must differ from the current password",
            ));
        }
        let new_hash = self.hasher.hash_async(new).await?;
        // Applied to the user as currently stored, so a concurrent write (a sign-in's
        // last-login stamp, an admin's edit) neither fails the change nor is lost — as long as
        // the password is still the one verified above; if it was changed meanwhile, this
        // change is a conflict.
        let stored = self
            .modify_user(Scope::Platform, user.id, |next| {
                if next.password_hash != user.password_hash
                    || next.token_generation != user.token_generation
                {
                    return Err(TenancyError::VersionConflict { entity: "user" });
                }
                next.password_hash = Some(new_hash.clone());
                next.must_change_password = false;
                next.token_generation = next.token_generation.wrapping_add(1);
                next.updated_at = now();
                Ok(true)
            })
            .await?;
        self.audit(Self::entry(
            ctx,
            "auth.change_password",
            "user",
            user.id.to_string(),
        ))
        .await;
        self.tokens.issue(&stored, now())
    }

    /// Sets a password with a token from an invitation or reset email. The token works once.
    /// Every access token of the user issued before stops working at once.
    pub async fn set_password(
        &self,
        token: &str,
        new: &SecretString,
        client_addr: Option<String>,
    ) -> Result<(), TenancyError> {
        check_length("new_password", new)?;
        let hash = token_hash(token.trim());
        let now = now();
        // Check the new password before using the token up, so a refused password does not
        // cost the user their link.
        let mut found = None;
        for purpose in [TokenPurpose::Invitation, TokenPurpose::PasswordReset] {
            match self.repos.auth_tokens.find(&hash, purpose, now).await {
                Ok(t) => {
                    found = Some(t);
                    break;
                }
                Err(imix_core::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let found = found.ok_or(TenancyError::TokenInvalid)?;
        let user = self.repos.users.get(Scope::Platform, found.user_id).await?;
        if user.status == UserStatus::Deactivated {
            return Err(TenancyError::AccountDeactivated);
        }
        check_policy("new_password", new, &user)?;
        let new_hash = self.hasher.hash_async(new).await?;
        let used = match self
            .repos
            .auth_tokens
            .consume(&hash, found.purpose, now)
            .await
        {
            Ok(t) => t,
            Err(imix_core::Error::NotFound { .. }) => return Err(TenancyError::TokenInvalid),
            Err(e) => return Err(e.into()),
        };
        // The token is used up: the password is set on the user as currently stored,
        // again if a concurrent write (a sign-in, an edit) changed the user meanwhile.
        self.modify_user(Scope::Platform, used.user_id, |next| {
            next.password_hash = Some(new_hash.clone());
            next.must_change_password = false;
            next.status = UserStatus::Active;
            next.token_generation = next.token_generation.wrapping_add(1);
            next.updated_at = now;
            Ok(true)
        })
        .await?;
        let mut e = AuditEntry::new(
            match used.purpose {
                TokenPurpose::Invitation => "auth.accept_invitation",
                TokenPurpose::PasswordReset => "auth.reset_password",
            },
            "user",
        );
        e.actor_id = Some(user.id);
        e.actor_email = Some(user.email.clone());
        e.tenant_id = user.tenant_id;
        e.target_id = Some(user.id.to_string());
        e.client_addr = client_addr;
        self.audit(e).await;
        Ok(())
    }

    /// Emails a reset link if the email belongs to a user who may sign in. Answers the same
    /// way, in about the same time, whether or not it does: the work happens in the
    /// background.
    pub fn forgot_password(&self, email: &str) {
        let service = self.clone();
        let email = email.to_owned();
        tokio::spawn(async move {
            if let Err(e) = service.send_reset(&email).await {
                tracing::warn!(error = %e, "password reset email not sent");
            }
        });
    }

    async fn send_reset(&self, email: &str) -> Result<(), TenancyError> {
        let Some(user) = self.repos.users.find_by_email(email).await? else {
            return Ok(());
        };
        if self.check_may_act(&user).await.is_err() {
            return Ok(());
        }
        // At most RESET_EMAILS_PER_HOUR per address, across replicas; the caller is answered
        // the same either way.
        let within = imix_notify::throttle::take_in_window(
            self.repos.counters.as_ref(),
            &format!("reset-email:{}", token_hash(&normalize_email(&user.email))),
            RESET_EMAILS_PER_HOUR,
            std::time::Duration::from_secs(3600),
            now(),
        )
        .await?;
        if let Err(wait) = within {
            tracing::warn!(user = %user.id, retry_after_secs = wait,
                "password reset email not sent: too many for this address this hour");
            return Ok(());
        }
        let token = self
            .issue_token(&user, TokenPurpose::PasswordReset, RESET_VALID_HOURS)
            .await?;
        let language = self.language_of(&user).await;
        self.emails
            .password_reset(&user, language, &self.link(&token), RESET_VALID_HOURS)
            .await?;
        Ok(())
    }

    /// Issues a single-use token for `user`, revoking older ones of the same purpose.
    pub(crate) async fn issue_token(
        &self,
        user: &User,
        purpose: TokenPurpose,
        valid_hours: i64,
    ) -> Result<String, TenancyError> {
        let now = now();
        self.repos
            .auth_tokens
            .revoke_for_user(user.id, purpose, now)
            .await?;
        let token = random_token();
        self.repos
            .auth_tokens
            .insert(&AuthToken {
                token_hash: token_hash(&token),
                user_id: user.id,
                tenant_id: user.tenant_id,
                purpose,
                created_at: now,
                expires_at: now + chrono::Duration::hours(valid_hours),
                used_at: None,
            })
            .await?;
        Ok(token)
    }

    /// Sends the invitation email of an invited user.
    pub(crate) async fn send_invitation(&self, user: &User) -> Result<(), TenancyError> {
        let token = self
            .issue_token(user, TokenPurpose::Invitation, INVITATION_VALID_HOURS)
            .await?;
        let language = self.language_of(user).await;
        self.emails
            .invitation(user, language, &self.link(&token), INVITATION_VALID_HOURS)
            .await?;
        Ok(())
    }

    /// The user's language (their tenant's default is only a fallback when unset; users
    /// always carry one, so it is theirs).
    async fn language_of(&self, user: &User) -> imix_core::Language {
        user.default_language
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempted_sign_in_names_are_recorded_defanged() {
        assert_eq!(audited_name("  kim@acme.example "), "kim@acme.example");
        let hostile = "x\r\n2026-01-01 auth.sign_in admin\u{1b}[31m\u{202E}moc.evil\u{2066}\u{200B}\u{0}\u{2028}";
        let got = audited_name(hostile);
        assert!(
            !got.chars().any(|c| c.is_control()
                || imix_notify::text::is_invisible(c)
                || matches!(c, '\u{2028}' | '\u{202E}' | '\u{2066}')),
            "{got:?}"
        );
        assert_eq!(
            got.chars().filter(|c| *c == '\u{FFFD}').count(),
            7,
            "{got:?}"
        );
        assert!(got.starts_with("x\u{FFFD}\u{FFFD}2026-01-01"), "{got:?}");
        assert_eq!(audited_name(&"a".repeat(1000)).chars().count(), 254);
        assert_eq!(audited_name(&"\u{202E}".repeat(1000)).chars().count(), 254);
    }
}
