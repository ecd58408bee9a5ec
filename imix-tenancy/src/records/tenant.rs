use serde::{Deserialize, Serialize};

use imix_core::{
    directory::{TenantStatus, UsageLimits},
    id::{DocumentId, TenantId},
    Language, Timestamp,
};

/// A document uploaded for a tenant (contract, registration papers…); the bytes live in the
/// blob store under `blob_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDocument {
    /// The document's id.
    pub id: DocumentId,
    /// The file name it was uploaded with, used again for downloads.
    pub file_name: String,
    /// Its MIME type, detected from its bytes.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where its bytes are in the blob store.
    pub blob_key: String,
    /// When it was uploaded.
    pub uploaded_at: Timestamp,
}

/// One client business of the agency: every field of the admin guide's
/// "Creating a New Tenant".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// Tenant name.
    pub name: String,
    /// Organization name.
    pub organization: Option<String>,
    /// Physical address.
    pub address: Option<String>,
    /// Primary phone number (E.164).
    pub phone: Option<String>,
    /// Mobile phone number (E.164).
    pub mobile: Option<String>,
    /// Primary email address.
    pub email: Option<String>,
    /// Internal notes, visible to platform users only.
    pub private_notes: Option<String>,
    /// Blob key of the uploaded logo.
    pub logo_blob_key: Option<String>,
    /// Uploaded documents.
    #[serde(default)]
    pub documents: Vec<TenantDocument>,
    /// The tenant's default language.
    pub default_language: Language,
    /// Usage limits.
    pub limits: UsageLimits,
    /// Active or deactivated.
    pub status: TenantStatus,
    /// Optimistic-concurrency version (1 on creation).
    pub version: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl Tenant {
    /// A new active tenant with only a name, no limits and English as its language.
    pub fn new(name: impl Into<String>) -> Self {
        let now = imix_core::now();
        Self {
            id: TenantId::new(),
            name: name.into(),
            organization: None,
            address: None,
            phone: None,
            mobile: None,
            email: None,
            private_notes: None,
            logo_blob_key: None,
            documents: Vec::new(),
            default_language: Language::En,
            limits: UsageLimits::default(),
            status: TenantStatus::Active,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// Every blob key this tenant references: its logo and its documents.
    pub fn blob_keys(&self) -> impl Iterator<Item = &str> {
        self.logo_blob_key
            .as_deref()
            .into_iter()
            .chain(self.documents.iter().map(|d| d.blob_key.as_str()))
    }
}
