//! Wire types shared by several resources, and their conversions to and from the domain.

use imix_core::Language;
use imix_tenancy::{Role, TenantStatus, UserStatus};
use poem_openapi::{Enum, Object};

/// A language: `en`, `fr` or `ar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum LanguageDto {
    /// English.
    En,
    /// French.
    Fr,
    /// Arabic.
    Ar,
}

impl From<Language> for LanguageDto {
    fn from(l: Language) -> Self {
        match l {
            Language::En => LanguageDto::En,
            Language::Fr => LanguageDto::Fr,
            Language::Ar => LanguageDto::Ar,
        }
    }
}

impl From<LanguageDto> for Language {
    fn from(l: LanguageDto) -> Self {
        match l {
            LanguageDto::En => Language::En,
            LanguageDto::Fr => Language::Fr,
            LanguageDto::Ar => Language::Ar,
        }
    }
}

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoleDto {
    /// Admin.
    Admin,
    /// Manager.
    Manager,
    /// Agent.
    Agent,
    /// Supervisor.
    Supervisor,
    /// Read-only.
    ReadOnly,
    /// Billing.
    Billing,
    /// Custom (explicit permissions).
    Custom,
}

impl From<Role> for RoleDto {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => RoleDto::Admin,
            Role::Manager => RoleDto::Manager,
            Role::Agent => RoleDto::Agent,
            Role::Supervisor => RoleDto::Supervisor,
            Role::ReadOnly => RoleDto::ReadOnly,
            Role::Billing => RoleDto::Billing,
            Role::Custom => RoleDto::Custom,
        }
    }
}

impl From<RoleDto> for Role {
    fn from(r: RoleDto) -> Self {
        match r {
            RoleDto::Admin => Role::Admin,
            RoleDto::Manager => Role::Manager,
            RoleDto::Agent => Role::Agent,
            RoleDto::Supervisor => Role::Supervisor,
            RoleDto::ReadOnly => Role::ReadOnly,
            RoleDto::Billing => Role::Billing,
            RoleDto::Custom => Role::Custom,
        }
    }
}

/// A user's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum UserStatusDto {
    /// Invited; no password yet.
    Invited,
    /// Active.
    Active,
    /// Deactivated.
    Deactivated,
}

impl From<UserStatus> for UserStatusDto {
    fn from(s: UserStatus) -> Self {
        match s {
            UserStatus::Invited => UserStatusDto::Invited,
            UserStatus::Active => UserStatusDto::Active,
            UserStatus::Deactivated => UserStatusDto::Deactivated,
        }
    }
}

/// A tenant's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TenantStatusDto {
    /// Active.
    Active,
    /// Deactivated.
    Deactivated,
}

impl From<TenantStatus> for TenantStatusDto {
    fn from(s: TenantStatus) -> Self {
        match s {
            TenantStatus::Active => TenantStatusDto::Active,
            TenantStatus::Deactivated => TenantStatusDto::Deactivated,
        }
    }
}

/// An empty success body.
#[derive(Debug, Clone, Object)]
pub struct Done {
    /// Always `true`.
    pub ok: bool,
}

impl Done {
    /// `{"ok": true}`.
    pub fn ok() -> Self {
        Self { ok: true }
    }
}

/// Parses a `?limit=` into a page request with the cursor.
pub fn page(cursor: Option<String>, limit: Option<u32>) -> imix_core::store::PageRequest {
    imix_core::store::PageRequest { cursor, limit }
}
