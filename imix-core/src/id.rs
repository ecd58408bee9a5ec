//! Identifiers: UUIDv7, one newtype per entity so a tenant id can never be passed where a
//! user id is expected. UUIDv7 strings sort by creation time, which the stores use for
//! stable pagination.

/// What [`define_id!`](crate::define_id) expands to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde::{de::Error as DeError, Deserialize, Deserializer, Serialize, Serializer};
    pub use uuid::Uuid;
}

/// Defines an id newtype like the ones here, for a capability's own records: a UUIDv7,
/// serialized as a hyphenated string, sorting by creation time, parsed with an
/// [`crate::Error::Invalid`] naming `<entity>_id`.
///
/// ```
/// imix_core::define_id!(
///     /// Identifies a contact.
///     ContactId,
///     "contact"
/// );
/// let id = ContactId::new();
/// assert_eq!(id.to_string().parse::<ContactId>().unwrap(), id);
/// assert!("nope".parse::<ContactId>().is_err());
/// ```
#[macro_export]
macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $entity:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($crate::id::__private::Uuid);

        // Always a hyphenated string, whatever the format (BSON included), so that ids
        // compare and sort the same in every backend.
        impl $crate::id::__private::Serialize for $name {
            fn serialize<S: $crate::id::__private::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> $crate::id::__private::Deserialize<'de> for $name {
            fn deserialize<D: $crate::id::__private::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as $crate::id::__private::Deserialize>::deserialize(d)?;
                $crate::id::__private::Uuid::parse_str(&text)
                    .map(Self)
                    .map_err(<D::Error as $crate::id::__private::DeError>::custom)
            }
        }

        impl $name {
            /// A fresh id (UUIDv7: time-ordered).
            pub fn new() -> Self {
                Self($crate::id::__private::Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub fn from_uuid(uuid: $crate::id::__private::Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> $crate::id::__private::Uuid {
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

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::id::__private::Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| $crate::Error::invalid(concat!($entity, "_id"), "not a valid UUID"))
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
    use crate::Error;

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
