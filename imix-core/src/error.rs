//! The error type of `imix-core`.

/// A boxed error from an adapter's underlying library (rusqlite, the MongoDB driver, I/O).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for `imix-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the domain types, the cipher and the storage ports.
///
/// Servers map these to HTTP statuses (`NotFound` → 404, `Duplicate` and
/// `VersionConflict` → 409, `Invalid` → 422); the library itself knows nothing of HTTP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record does not exist, or exists outside the caller's scope (another tenant's
    /// records are reported exactly like missing ones, so their existence does not leak).
    #[error("{entity} {id} not found")]
    NotFound {
        /// The kind of record, e.g. `"tenant"`.
        entity: &'static str,
        /// The id or key that was looked up.
        id: String,
    },
    /// A unique constraint was violated, e.g. a second user with the same email.
    #[error("a {entity} with this {field} already exists")]
    Duplicate {
        /// The kind of record, e.g. `"user"`.
        entity: &'static str,
        /// The field whose value must be unique, e.g. `"email"`.
        field: &'static str,
    },
    /// An optimistic-concurrency update carried a stale version: someone else changed the
    /// record since it was read.
    #[error("{entity} {id} was changed concurrently (expected version {expected})")]
    VersionConflict {
        /// The kind of record.
        entity: &'static str,
        /// The record's id.
        id: String,
        /// The version the caller expected to replace.
        expected: u64,
    },
    /// A value is not acceptable; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The offending field, e.g. `"email"` or `"limit"`.
        field: String,
        /// What is wrong with it, for a human.
        message: String,
    },
    /// A ciphertext could not be decrypted: tampered, truncated, or encrypted under a key
    /// this process does not have.
    #[error("cannot decrypt: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// Stored data could not be decoded into the entity it should hold.
    #[error("stored {entity} record is unreadable: {source}")]
    Corrupt {
        /// The kind of record.
        entity: &'static str,
        /// The decoding error.
        #[source]
        source: BoxError,
    },
    /// The storage backend failed (connection lost, disk full, …).
    #[error("storage backend failed while trying to {action}: {source}")]
    Backend {
        /// What the adapter was doing, e.g. `"insert a tenant"`.
        action: &'static str,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Backend`] wrapping `source`.
    pub fn backend(action: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            action,
            source: source.into(),
        }
    }
}
