//! Tenants: create, read, edit, deactivate, activate; logo and documents.

use crate::records::{Tenant, TenantDocument, TenantStatus, UsageLimits, UserStatus};
use bytes::Bytes;
use imix_core::{
    id::{DocumentId, TenantId},
    store::{ConflictBackoff, Page, PageRequest, Scope},
    Language,
};

use super::{now, TenancyService};
use crate::{permission::Permission, validate, AuthContext, TenancyError};

/// The largest logo accepted.
pub const MAX_LOGO_BYTES: u64 = 2 * 1024 * 1024;
/// The largest document accepted.
pub const MAX_DOCUMENT_BYTES: u64 = 20 * 1024 * 1024;

/// A tenant to create (the admin guide's "Creating a New Tenant").
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    /// Tenant name (required).
    pub name: String,
    /// Organization name.
    pub organization: Option<String>,
    /// Physical address.
    pub address: Option<String>,
    /// Primary phone (E.164).
    pub phone: Option<String>,
    /// Mobile phone (E.164).
    pub mobile: Option<String>,
    /// Primary email.
    pub email: Option<String>,
    /// Internal notes (platform only).
    pub private_notes: Option<String>,
    /// Default language; English when absent.
    pub default_language: Option<Language>,
    /// Usage limits; each absent limit is unlimited.
    pub limits: UsageLimits,
}

/// Changes to a tenant. `None` leaves a field as it is; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    /// New name.
    pub name: Option<String>,
    /// Organization.
    pub organization: Option<Option<String>>,
    /// Address.
    pub address: Option<Option<String>>,
    /// Phone.
    pub phone: Option<Option<String>>,
    /// Mobile.
    pub mobile: Option<Option<String>>,
    /// Email.
    pub email: Option<Option<String>>,
    /// Private notes (platform only).
    pub private_notes: Option<Option<String>>,
    /// Default language.
    pub default_language: Option<Language>,
    /// All six limits at once (platform only); each absent limit is unlimited.
    pub limits: Option<UsageLimits>,
}

/// A stored file handed back for download.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The name to download it as.
    pub file_name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its bytes.
    pub data: Bytes,
}

fn opt_phone(field: &str, v: Option<&str>) -> Result<Option<String>, TenancyError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        Some(p) => validate::e164(field, p).map(Some),
        None => Ok(None),
    }
}

fn opt_email(field: &str, v: Option<&str>) -> Result<Option<String>, TenancyError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        Some(e) => validate::email(field, e).map(Some),
        None => Ok(None),
    }
}

fn check_limits(limits: &UsageLimits) -> Result<(), TenancyError> {
    // Limits are unsigned, so never negative; absurd values are refused to catch typos.
    const MAX: u64 = 1_000_000_000;
    let named = [
        ("limits.max_messages_per_day", limits.max_messages_per_day),
        ("limits.max_media_per_day", limits.max_media_per_day),
        ("limits.max_templates", limits.max_templates),
        ("limits.max_agents", limits.max_agents),
        ("limits.max_contacts", limits.max_contacts),
        ("limits.max_contact_groups", limits.max_contact_groups),
    ];
    let mut problems = validate::Problems::default();
    for (field, value) in named {
        if value.is_some_and(|v| v > MAX) {
            problems.check::<()>(Err(TenancyError::invalid(
                field,
                format!("must be at most {MAX}"),
            )));
        }
    }
    problems.finish()
}

/// Copies onto `fresh` (the tenant as currently stored) the fields `patch` sets, with the
/// values validated into `validated`.
fn apply_patched_fields(patch: &TenantPatch, validated: &Tenant, fresh: &mut Tenant) {
    if patch.name.is_some() {
        fresh.name.clone_from(&validated.name);
    }
    if patch.organization.is_some() {
        fresh.organization.clone_from(&validated.organization);
    }
    if patch.address.is_some() {
        fresh.address.clone_from(&validated.address);
    }
    if patch.phone.is_some() {
        fresh.phone.clone_from(&validated.phone);
    }
    if patch.mobile.is_some() {
        fresh.mobile.clone_from(&validated.mobile);
    }
    if patch.email.is_some() {
        fresh.email.clone_from(&validated.email);
    }
    if patch.private_notes.is_some() {
        fresh.private_notes.clone_from(&validated.private_notes);
    }
    if patch.default_language.is_some() {
        fresh.default_language = validated.default_language;
    }
    if patch.limits.is_some() {
        fresh.limits = validated.limits;
    }
}

/// Detects an upload's type from its bytes (never from the client's header).
fn sniff(data: &[u8]) -> Option<&'static str> {
    infer::get(data).map(|t| t.mime_type())
}

const LOGO_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp"];
const DOCUMENT_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
];

/// A download name: the last path segment, without control characters or quotes.
fn clean_file_name(name: &str) -> Result<String, TenancyError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err(TenancyError::invalid("file", "needs a file name"));
    }
    // Shown to the tenant's users: no direction overrides (`invoice<U+202E>fdp.exe`), not
    // only invisible characters.
    if let Some(problem) = imix_notify::text::name_problem(&cleaned) {
        return Err(TenancyError::invalid("file", format!("its name {problem}")));
    }
    Ok(cleaned)
}

impl TenancyService {
    /// Creates a tenant (platform admins).
    pub async fn create_tenant(
        &self,
        ctx: &AuthContext,
        new: NewTenant,
    ) -> Result<Tenant, TenancyError> {
        ctx.require(Permission::PlatformTenants)?;
        // Every invalid field is reported at once.
        let mut p = validate::Problems::default();
        let name = p.check(validate::required_name("name", &new.name, 200));
        let organization = p.check(validate::optional_name(
            "organization",
            new.organization.as_deref(),
            200,
        ));
        let address = p.check(validate::optional_text(
            "address",
            new.address.as_deref(),
            500,
        ));
        let phone = p.check(opt_phone("phone", new.phone.as_deref()));
        let mobile = p.check(opt_phone("mobile", new.mobile.as_deref()));
        let email = p.check(opt_email("email", new.email.as_deref()));
        let private_notes = p.check(validate::optional_text(
            "private_notes",
            new.private_notes.as_deref(),
            10_000,
        ));
        p.check(check_limits(&new.limits));
        p.finish()?;
        let mut t = Tenant::new(name.unwrap_or_default());
        t.organization = organization.flatten();
        t.address = address.flatten();
        t.phone = phone.flatten();
        t.mobile = mobile.flatten();
        t.email = email.flatten();
        t.private_notes = private_notes.flatten();
        t.default_language = new.default_language.unwrap_or_default();
        t.limits = new.limits;
        self.repos.tenants.insert(&t).await?;
        let mut e = Self::entry(ctx, "tenant.create", "tenant", t.id.to_string());
        e.tenant_id = Some(t.id);
        self.audit(e).await;
        Ok(t)
    }

    /// A tenant: any for platform users, their own for tenant users.
    pub async fn get_tenant(
        &self,
        ctx: &AuthContext,
        id: TenantId,
    ) -> Result<Tenant, TenancyError> {
        ctx.scope_for(id)?;
        if !ctx.has(Permission::PlatformTenants) {
            ctx.require(Permission::TenantRead)?;
        }
        Ok(self.repos.tenants.get(id).await?)
    }

    /// Tenants visible to the caller.
    pub async fn list_tenants(
        &self,
        ctx: &AuthContext,
        page: PageRequest,
    ) -> Result<Page<Tenant>, TenancyError> {
        if !ctx.has(Permission::PlatformTenants) {
            ctx.require(Permission::TenantRead)?;
        }
        Ok(self.repos.tenants.list(ctx.scope(), page).await?)
    }

    /// Edits a tenant. Platform admins may change everything; a tenant's own admin
    /// (`tenant.manage`) its profile, but not its limits or the private notes.
    pub async fn update_tenant(
        &self,
        ctx: &AuthContext,
        id: TenantId,
        patch: TenantPatch,
    ) -> Result<Tenant, TenancyError> {
        ctx.scope_for(id)?;
        let platform = ctx.has(Permission::PlatformTenants);
        if !platform {
            ctx.require(Permission::TenantManage)?;
            if patch.limits.is_some() {
                return Err(TenancyError::forbidden(
                    "only the platform operator can change limits",
                ));
            }
            if patch.private_notes.is_some() {
                return Err(TenancyError::forbidden(
                    "only the platform operator can change private notes",
                ));
            }
        }
        let current = self.repos.tenants.get(id).await?;
        let mut t = current.clone();
        // Every invalid field is reported at once.
        let mut p = validate::Problems::default();
        if let Some(name) = &patch.name {
            if let Some(v) = p.check(validate::required_name("name", name, 200)) {
                t.name = v;
            }
        }
        if let Some(v) = &patch.organization {
            if let Some(v) = p.check(validate::optional_name("organization", v.as_deref(), 200)) {
                t.organization = v;
            }
        }
        if let Some(v) = &patch.address {
            if let Some(v) = p.check(validate::optional_text("address", v.as_deref(), 500)) {
                t.address = v;
            }
        }
        if let Some(v) = &patch.phone {
            if let Some(v) = p.check(opt_phone("phone", v.as_deref())) {
                t.phone = v;
            }
        }
        if let Some(v) = &patch.mobile {
            if let Some(v) = p.check(opt_phone("mobile", v.as_deref())) {
                t.mobile = v;
            }
        }
        if let Some(v) = &patch.email {
            if let Some(v) = p.check(opt_email("email", v.as_deref())) {
                t.email = v;
            }
        }
        if let Some(v) = &patch.private_notes {
            if let Some(v) = p.check(validate::optional_text(
                "private_notes",
                v.as_deref(),
                10_000,
            )) {
                t.private_notes = v;
            }
        }
        if let Some(lang) = patch.default_language {
            t.default_language = lang;
        }
        if let Some(limits) = &patch.limits {
            if p.check(check_limits(limits)).is_some() {
                t.limits = *limits;
            }
        }
        p.finish()?;
        // The client sent no version: apply the validated fields to the current record,
        // retrying if someone else changed it meanwhile.
        let stored = self
            .modify_tenant(id, |fresh| {
                apply_patched_fields(&patch, &t, fresh);
                Ok(())
            })
            .await?;
        let mut e = Self::entry(ctx, "tenant.update", "tenant", id.to_string());
        e.tenant_id = Some(id);
        self.audit(e).await;
        Ok(stored)
    }

    /// Deactivates a tenant: its users cannot sign in, their tokens stop working, nothing is
    /// sent on its behalf; its data stays.
    pub async fn deactivate_tenant(
        &self,
        ctx: &AuthContext,
        id: TenantId,
    ) -> Result<Tenant, TenancyError> {
        self.set_tenant_status(ctx, id, TenantStatus::Deactivated)
            .await
    }

    /// Activates a tenant again; its data reappears as it was.
    pub async fn activate_tenant(
        &self,
        ctx: &AuthContext,
        id: TenantId,
    ) -> Result<Tenant, TenancyError> {
        self.set_tenant_status(ctx, id, TenantStatus::Active).await
    }

    async fn set_tenant_status(
        &self,
        ctx: &AuthContext,
        id: TenantId,
        status: TenantStatus,
    ) -> Result<Tenant, TenancyError> {
        ctx.scope_for(id)?;
        ctx.require(Permission::PlatformTenants)?;
        let current = self.repos.tenants.get(id).await?;
        if current.status == status {
            return Ok(current);
        }
        let stored = self
            .modify_tenant(id, |t| {
                t.status = status;
                Ok(())
            })
            .await?;
        let action = match status {
            TenantStatus::Active => "tenant.activate",
            TenantStatus::Deactivated => "tenant.deactivate",
        };
        let mut e = Self::entry(ctx, action, "tenant", id.to_string());
        e.tenant_id = Some(id);
        self.audit(e).await;
        if status == TenantStatus::Active {
            self.send_held_invitations(id).await;
        }
        Ok(stored)
    }

    /// Sends the invitations held while the tenant was deactivated: a fresh invitation
    /// (older links revoked) to every user of the tenant who is still invited.
    async fn send_held_invitations(&self, tenant: TenantId) {
        let mut page = PageRequest::first(100);
        loop {
            let users = match self.repos.users.list(Scope::Tenant(tenant), page).await {
                Ok(users) => users,
                Err(e) => {
                    tracing::error!(error = %e, %tenant, "cannot list the users to invite");
                    return;
                }
            };
            for user in users
                .items
                .iter()
                .filter(|u| u.status == UserStatus::Invited)
            {
                if let Err(e) = self.send_invitation(user).await {
                    tracing::error!(error = %e, user = %user.id, "invitation email not sent");
                }
            }
            match users.next_cursor {
                Some(cursor) => {
                    page = PageRequest {
                        cursor: Some(cursor),
                        limit: Some(100),
                    }
                }
                None => return,
            }
        }
    }

    fn require_tenant_write(ctx: &AuthContext, id: TenantId) -> Result<(), TenancyError> {
        ctx.scope_for(id)?;
        if ctx.has(Permission::PlatformTenants) {
            Ok(())
        } else {
            ctx.require(Permission::TenantManage)
        }
    }

    /// Replaces a tenant's record with `change` applied to its current state: for changes
    /// the client did not version. Writes to one tenant through this service take turns
    /// ([`super::write_turns::WriteTurns`]), so they never conflict with each other; a concurrent edit by
    /// another replica is not an error either: the record is read again and `change` applied
    /// again ([`ConflictBackoff`]); only after [`ConflictBackoff::MAX_ATTEMPTS`] lost races
    /// is it a version conflict.
    async fn modify_tenant(
        &self,
        id: TenantId,
        change: impl Fn(&mut Tenant) -> Result<(), TenancyError>,
    ) -> Result<Tenant, TenancyError> {
        let _turn = self.tenant_writes.take(id).await;
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut t = self.repos.tenants.get(id).await?;
            change(&mut t)?;
            t.updated_at = now();
            match self.repos.tenants.update(&t).await {
                Ok(stored) => return Ok(stored),
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::warn!(tenant = %id, attempts = backoff.attempts(), "tenant update kept losing races");
        Err(TenancyError::VersionConflict { entity: "tenant" })
    }

    /// Removes bytes stored for an upload whose record could not be written, so that no
    /// blob is left that nothing lists.
    async fn discard_blob(&self, key: &str) {
        match self.repos.blobs.delete(key).await {
            Ok(()) | Err(imix_core::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, key, "an upload failed and its bytes could not be removed")
            }
        }
    }

    /// Uploads the logo: PNG, JPEG or WebP (detected from the bytes), at most 2 MB.
    pub async fn set_logo(
        &self,
        ctx: &AuthContext,
        id: TenantId,
        data: Bytes,
    ) -> Result<Tenant, TenancyError> {
        Self::require_tenant_write(ctx, id)?;
        if data.len() as u64 > MAX_LOGO_BYTES {
            return Err(TenancyError::TooLarge {
                field: "logo",
                max_bytes: MAX_LOGO_BYTES,
            });
        }
        let content_type = sniff(&data)
            .filter(|t| LOGO_TYPES.contains(t))
            .ok_or_else(|| TenancyError::invalid("logo", "must be a PNG, JPEG or WebP image"))?;
        self.repos.tenants.get(id).await?;
        // Each upload gets its own key: parallel uploads never overwrite each other's bytes,
        // a failed one leaves the current logo as it was, and the replaced logo's bytes are
        // removed once the record points at the new ones.
        let key = format!("tenants/{id}/logos/{}", DocumentId::new());
        self.repos.blobs.put(&key, content_type, data).await?;
        let replaced = std::sync::Mutex::new(None);
        let result = self
            .modify_tenant(id, |t| {
                let previous = t.logo_blob_key.replace(key.clone());
                if let Ok(mut slot) = replaced.lock() {
                    *slot = previous;
                }
                Ok(())
            })
            .await;
        let stored = match result {
            Ok(stored) => stored,
            Err(e) => {
                self.discard_blob(&key).await;
                return Err(e);
            }
        };
        let previous = replaced.into_inner().ok().flatten();
        if let Some(old) = previous.filter(|old| *old != key) {
            self.discard_blob(&old).await;
        }
        let mut e = Self::entry(ctx, "tenant.set_logo", "tenant", id.to_string());
        e.tenant_id = Some(id);
        self.audit(e).await;
        Ok(stored)
    }

    /// The logo.
    pub async fn logo(&self, ctx: &AuthContext, id: TenantId) -> Result<StoredFile, TenancyError> {
        let tenant = self.get_tenant(ctx, id).await?;
        let key = tenant
            .logo_blob_key
            .ok_or(TenancyError::NotFound { entity: "logo" })?;
        let blob = self.repos.blobs.get(&key).await?;
        Ok(StoredFile {
            file_name: "logo".into(),
            content_type: blob.meta.content_type,
            data: blob.data,
        })
    }

    /// Uploads a document: PDF, image or office document (detected from the bytes), at most
    /// 20 MB. Keeps the original file name for downloads.
    pub async fn add_document(
        &self,
        ctx: &AuthContext,
        id: TenantId,
        file_name: &str,
        data: Bytes,
    ) -> Result<TenantDocument, TenancyError> {
        Self::require_tenant_write(ctx, id)?;
        if data.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(TenancyError::TooLarge {
                field: "file",
                max_bytes: MAX_DOCUMENT_BYTES,
            });
        }
        let file_name = clean_file_name(file_name)?;
        let content_type = sniff(&data)
            .filter(|t| DOCUMENT_TYPES.contains(t))
            .ok_or_else(|| {
                TenancyError::invalid("file", "must be a PDF, an image or an office document")
            })?;
        self.repos.tenants.get(id).await?;
        let doc_id = DocumentId::new();
        let key = format!("tenants/{id}/documents/{doc_id}");
        let meta = self.repos.blobs.put(&key, content_type, data).await?;
        let document = TenantDocument {
            id: doc_id,
            file_name,
            content_type: content_type.to_owned(),
            size: meta.size,
            blob_key: key,
            uploaded_at: now(),
        };
        let added = document.clone();
        let result = self
            .modify_tenant(id, move |t| {
                t.documents.push(added.clone());
                Ok(())
            })
            .await;
        if let Err(e) = result {
            self.discard_blob(&document.blob_key).await;
            return Err(e);
        }
        let mut e = Self::entry(ctx, "tenant.add_document", "document", doc_id.to_string());
        e.tenant_id = Some(id);
        self.audit(e).await;
        Ok(document)
    }

    /// The tenant's documents.
    pub async fn documents(
        &self,
        ctx: &AuthContext,
        id: TenantId,
    ) -> Result<Vec<TenantDocument>, TenancyError> {
        Ok(self.get_tenant(ctx, id).await?.documents)
    }

    /// One document with its bytes.
    pub async fn document(
        &self,
        ctx: &AuthContext,
        id: TenantId,
        doc: DocumentId,
    ) -> Result<(TenantDocument, StoredFile), TenancyError> {
        let tenant = self.get_tenant(ctx, id).await?;
        let d = tenant
            .documents
            .into_iter()
            .find(|d| d.id == doc)
            .ok_or(TenancyError::NotFound { entity: "document" })?;
        let blob = self.repos.blobs.get(&d.blob_key).await?;
        let file = StoredFile {
            file_name: d.file_name.clone(),
            content_type: d.content_type.clone(),
            data: blob.data,
        };
        Ok((d, file))
    }

    /// Deletes a document.
    pub async fn delete_document(
        &self,
        ctx: &AuthContext,
        id: TenantId,
        doc: DocumentId,
    ) -> Result<(), TenancyError> {
        Self::require_tenant_write(ctx, id)?;
        self.modify_tenant(id, |t| {
            let before = t.documents.len();
            t.documents.retain(|d| d.id != doc);
            if t.documents.len() == before {
                return Err(TenancyError::NotFound { entity: "document" });
            }
            Ok(())
        })
        .await?;
        let key = format!("tenants/{id}/documents/{doc}");
        match self.repos.blobs.delete(&key).await {
            Ok(()) | Err(imix_core::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "document record removed but its bytes were not"),
        }
        let mut e = Self::entry(ctx, "tenant.delete_document", "document", doc.to_string());
        e.tenant_id = Some(id);
        self.audit(e).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use async_trait::async_trait;
    use imix_core::store::{Scope, Store};

    use crate::records::{Role, User};
    use secrecy::SecretString;

    use super::*;
    use crate::{
        emails::PlainAccountEmails,
        permission::platform_role_permissions,
        quota::StoreQuotaStore,
        storage::{orphaned_blobs, TenancyStorage, TenantRepository},
        throttle::MemoryThrottle,
        TenancyConfig, TenancyRepos,
    };

    /// Tenants whose updates lose the race `conflicts` times (as if another writer got in
    /// first each time), then go through.
    struct Contended {
        inner: Arc<dyn TenantRepository>,
        conflicts: AtomicU32,
    }

    #[async_trait]
    impl TenantRepository for Contended {
        async fn insert(&self, tenant: &Tenant) -> imix_core::Result<()> {
            self.inner.insert(tenant).await
        }
        async fn get(&self, id: TenantId) -> imix_core::Result<Tenant> {
            self.inner.get(id).await
        }
        async fn update(&self, tenant: &Tenant) -> imix_core::Result<Tenant> {
            let left = self.conflicts.load(Ordering::SeqCst);
            if left > 0 {
                self.conflicts.store(left - 1, Ordering::SeqCst);
                return Err(imix_core::Error::VersionConflict {
                    entity: "tenant",
                    id: tenant.id.to_string(),
                    expected: tenant.version,
                });
            }
            self.inner.update(tenant).await
        }
        async fn list(&self, scope: Scope, page: PageRequest) -> imix_core::Result<Page<Tenant>> {
            self.inner.list(scope, page).await
        }
    }

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
    ];
    const PDF: &[u8] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";

    async fn setup(
        conflicts: u32,
    ) -> (
        TenancyService,
        (Store, TenancyStorage),
        AuthContext,
        Tenant,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
        store.admin.migrate().await.unwrap();
        crate::storage::migrate(&store.backend).await.unwrap();
        let mut storage = TenancyStorage::open(&store.backend).unwrap();
        let tenant = Tenant::new("Contended");
        storage.tenants.insert(&tenant).await.unwrap();
        storage.tenants = Arc::new(Contended {
            inner: storage.tenants.clone(),
            conflicts: AtomicU32::new(conflicts),
        });
        let service = TenancyService::with_repos(
            TenancyRepos::new(&store, &storage),
            TenancyConfig {
                secret_key: SecretString::from("k".repeat(40)),
                access_token_minutes: 60,
                public_url: "http://localhost:8000".parse().unwrap(),
            },
            Arc::new(PlainAccountEmails::new(Arc::new(
                imix_notify::RecordingMailer::default(),
            ))),
            Arc::new(MemoryThrottle::default()),
            Arc::new(StoreQuotaStore::new(store.counters.clone())),
        )
        .unwrap();
        let admin = User::new("root@example.com", Role::Admin, None);
        let ctx = AuthContext::new(admin, platform_role_permissions(Role::Admin), None);
        (service, (store, storage), ctx, tenant, dir)
    }

    async fn orphans((store, storage): &(Store, TenancyStorage)) -> Vec<String> {
        let later = now() + chrono::Duration::seconds(1);
        orphaned_blobs(storage.tenants.as_ref(), store.blobs.as_ref(), later)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_the_client_did_not_version_ride_out_lost_races() {
        // More lost races than the old five attempts allowed.
        let (service, store, ctx, t, _dir) = setup(8).await;
        service
            .add_document(&ctx, t.id, "a.pdf", Bytes::from_static(PDF))
            .await
            .unwrap();
        let (service, _, ctx, t, _dir2) = setup(8).await;
        service
            .set_logo(&ctx, t.id, Bytes::from_static(PNG))
            .await
            .unwrap();
        let (service, _, ctx, t, _dir3) = setup(8).await;
        let patched = service
            .update_tenant(
                &ctx,
                t.id,
                TenantPatch {
                    organization: Some(Some("Org".into())),
                    ..TenantPatch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(patched.organization.as_deref(), Some("Org"));
        assert!(orphans(&store).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_upload_leaves_no_bytes_behind() {
        let (service, store, ctx, t, _dir) = setup(u32::MAX).await;
        let err = service
            .add_document(&ctx, t.id, "a.pdf", Bytes::from_static(PDF))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TenancyError::VersionConflict { .. }),
            "{err:?}"
        );
        let err = service
            .set_logo(&ctx, t.id, Bytes::from_static(PNG))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TenancyError::VersionConflict { .. }),
            "{err:?}"
        );
        assert!(orphans(&store).await.is_empty());
        assert!(store
            .0
            .blobs
            .list("tenants/", None, 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_logo_replaces_the_old_bytes() {
        let (service, store, ctx, t, _dir) = setup(0).await;
        let first = service
            .set_logo(&ctx, t.id, Bytes::from_static(PNG))
            .await
            .unwrap();
        let second = service
            .set_logo(&ctx, t.id, Bytes::from_static(PNG))
            .await
            .unwrap();
        assert_ne!(first.logo_blob_key, second.logo_blob_key);
        let keys: Vec<String> = store
            .0
            .blobs
            .list("tenants/", None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, vec![second.logo_blob_key.unwrap()]);
    }
}
