//! Identifiers: UUIDv7, one newtype per entity so a tenant id can never be passed where a
//! user id is expected. UUIDv7 strings sort by creation time, which the stores use for
//! stable pagination.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $entity:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        // Always a hyphenated string, whatever the format (BSON included), so that ids
        // compare and sort the same in every backend.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Uuid::parse_str(&text).map(Self).map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            /// A fresh id (UUIDv7: time-ordered).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The entity name used in error messages.
            pub const ENTITY: &'static str = $entity;
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| Error::invalid(concat!($entity, "_id"), "not a valid UUID"))
            }
        }
    };
}

define_id!(
    /// Identifies a tenant: one client business of the agency.
    TenantId,
    "tenant"
);
define_id!(
    /// Identifies a user, platform-wide.
    UserId,
    "user"
);
define_id!(
    /// Identifies an audit-log entry.
    AuditId,
    "audit"
);
define_id!(
    /// Identifies a document uploaded for a tenant.
    DocumentId,
    "document"
);
define_id!(
    /// Identifies a WhatsApp Business account (one phone number) of a tenant.
    WhatsAppAccountId,
    "whatsapp_account"
);
define_id!(
    /// Identifies a message template of a tenant's WhatsApp account.
    TemplateId,
    "template"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_time() {
        let ids: Vec<TenantId> = (0..100).map(|_| TenantId::new()).collect();
        let mut sorted_by_string = ids.clone();
        sorted_by_string.sort_by_key(|id| id.to_string());
        assert_eq!(ids, sorted_by_string);
    }

    #[test]
    fn parse_rejects_garbage_and_names_the_field() {
        let err = "not-a-uuid".parse::<UserId>().unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "user_id"));
    }
}
