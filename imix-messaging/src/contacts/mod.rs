//! Contact management: contacts created, edited and deleted by the tenant's users, CSV
//! import and export, and contact groups with their members.
//!
//! Every operation takes the caller's [`AccessContext`] and the tenant named in the path,
//! and checks `contacts.read` / `contacts.manage` and the tenant before anything else
//! (before a file is parsed or a field validated): another tenant's records are "not
//! found".
//!
//! Max Contacts and Max Contact Groups are enforced through a [`ContactCounter`]: a slot
//! is reserved atomically before the record is stored, given back if storing fails and
//! when the record is deleted, so concurrent creations (an import among them, row by row)
//! never exceed the limit. Contacts created from inbound messages are counted without the
//! check ([`ContactCounter::count`]): an inbound message is never refused for a limit.

pub mod csv_file;
pub mod groups;
pub mod imports;
pub mod inbound;
pub mod phone;

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use imix_core::{
    access::{AccessContext, Permission},
    directory::{TenantDirectory, UsageLimits},
    id::TenantId,
    store::{ConflictBackoff, Page, PageRequest},
    Error as CoreError,
};

use crate::{
    error::{MessagingError, Result},
    records::{AttributeValue, Contact, ContactId, OptOut},
    storage::MessagingStorage,
};
use groups::{ContactGroup, ContactGroupId, GroupMember};

/// What a count limit of this module counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counted {
    /// Contacts (Max Contacts).
    Contacts,
    /// Contact groups (Max Contact Groups).
    ContactGroups,
}

impl Counted {
    /// The limit's name in errors: `contacts` or `contact_groups`.
    pub fn limit_name(self) -> &'static str {
        match self {
            Counted::Contacts => "contacts",
            Counted::ContactGroups => "contact_groups",
        }
    }

    /// The tenant's limit of this kind (`None` = unlimited).
    pub fn limit(self, limits: &UsageLimits) -> Option<u64> {
        match self {
            Counted::Contacts => limits.max_contacts,
            Counted::ContactGroups => limits.max_contact_groups,
        }
    }
}

/// Counts each tenant's contacts and groups against its limits, atomically and shared by
/// every replica (the server implements it with `imix_tenancy::quota::CountLimits`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ContactCounter: Send + Sync {
    /// Reserves one `kind` for `tenant` if it has fewer than `limit` (`None` =
    /// unlimited); otherwise [`MessagingError::LimitReached`] and nothing changes.
    async fn reserve(&self, tenant: TenantId, kind: Counted, limit: Option<u64>) -> Result<()>;
    /// Counts one `kind` whatever the limit: for contacts created from inbound messages,
    /// which are never refused. Returns the tenant's count after it.
    async fn count(&self, tenant: TenantId, kind: Counted) -> Result<u64>;
    /// Gives one back (a record deleted, or a creation that failed).
    async fn release(&self, tenant: TenantId, kind: Counted) -> Result<()>;
}

/// Tells a tenant's admins how close its contacts are to Max Contacts, for the contacts
/// created past any check (from inbound messages, which are never refused for the limit).
/// The server implements it over tenancy's emails; it decides whether a count crosses a
/// threshold and remembers durably what it has said, so each crossing is told once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LimitAlerts: Send + Sync {
    /// `tenant` has `count` contacts now, one more than a moment ago. Failures are the
    /// implementation's to log: the contact is stored whatever happens here.
    async fn contacts_counted(&self, tenant: TenantId, count: u64);
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they
/// make text display as something else than it is, so names and other text people read
/// may not contain them (the marks U+200E/U+200F, which do not reorder, stay allowed).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` may appear in text people write and read (names, notes, messages): anything
/// but control characters (except newline and tab) and [bidirectional controls](is_bidi_control).
pub fn allowed_in_text(c: char) -> bool {
    (!c.is_control() || c == '\n' || c == '\t') && !is_bidi_control(c)
}

/// The longest name, note or text attribute kept, in characters.
const MAX_NAME_CHARS: usize = 200;
/// The longest notes, in characters.
const MAX_NOTES_CHARS: usize = 10_000;
/// The longest text attribute value, in characters.
const MAX_TEXT_ATTRIBUTE_CHARS: usize = 1_000;
/// How many tags a contact may have.
const MAX_TAGS: usize = 50;
/// How many custom attributes a contact may have.
const MAX_ATTRIBUTES: usize = 50;
/// The longest tag or attribute key, in characters.
const MAX_KEY_CHARS: usize = 64;

/// A contact to create, as the client sent it (validated by [`ContactService::create`]).
#[derive(Debug, Clone, Default)]
pub struct NewContact {
    /// The phone number, in international form; stored in E.164.
    pub phone: String,
    /// The WhatsApp id when Meta's differs from the number's digits; derived otherwise.
    pub wa_id: Option<String>,
    /// The name the tenant gives it.
    pub name: Option<String>,
    /// Its language code.
    pub language: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom attributes.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Notes.
    pub notes: Option<String>,
    /// Opted out of marketing (`Some(true)`), or in (`Some(false)`).
    pub opted_out: Option<bool>,
}

/// Changes to a contact: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    /// The name.
    pub name: Option<Option<String>>,
    /// Replaces every tag.
    pub tags: Option<Vec<String>>,
    /// Replaces every custom attribute.
    pub attributes: Option<BTreeMap<String, AttributeValue>>,
    /// The notes.
    pub notes: Option<Option<String>>,
    /// The language.
    pub language: Option<Option<String>>,
    /// Opts the contact out of marketing (`true`) or back in (`false`), recorded with the
    /// time and source `api`.
    pub opted_out: Option<bool>,
    /// Blocks the contact (`true`: nothing is sent to it) or unblocks it (`false`).
    pub blocked: Option<bool>,
}

/// Changes to a group: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    /// The name.
    pub name: Option<String>,
    /// The description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
}

fn invalid(field: &str, message: impl Into<String>) -> MessagingError {
    MessagingError::Store(CoreError::invalid(field, message))
}

/// A trimmed optional text of at most `max` characters; blank is `None`.
fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if !value.chars().all(allowed_in_text) {
        return Err(invalid(
            field,
            "must not contain control characters nor bidirectional overrides",
        ));
    }
    Ok(Some(value.to_owned()))
}

fn language(value: Option<String>) -> Result<Option<String>> {
    let Some(value) = text("language", value, 16)? else {
        return Ok(None);
    };
    if value.len() < 2
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            "language",
            "must be a language code such as fr or en_US",
        ));
    }
    Ok(Some(value))
}

fn tags(values: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for tag in values {
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().count() > MAX_KEY_CHARS || tag.chars().any(char::is_control) {
            return Err(invalid(
                "tags",
                format!("each tag must be at most {MAX_KEY_CHARS} characters of text"),
            ));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    Ok(out)
}

fn attributes(
    values: BTreeMap<String, AttributeValue>,
) -> Result<BTreeMap<String, AttributeValue>> {
    if values.len() > MAX_ATTRIBUTES {
        return Err(invalid(
            "attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (key, value) in &values {
        if key.is_empty()
            || key.len() > MAX_KEY_CHARS
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(invalid(
                "attributes",
                format!(
                    "key `{key}` must be 1 to {MAX_KEY_CHARS} letters, digits, `_`, `-` or `.`"
                ),
            ));
        }
        if let AttributeValue::Text(t) = value {
            if t.chars().count() > MAX_TEXT_ATTRIBUTE_CHARS {
                return Err(invalid(
                    "attributes",
                    format!("`{key}` must be at most {MAX_TEXT_ATTRIBUTE_CHARS} characters"),
                ));
            }
        }
    }
    Ok(values)
}

fn wa_id(value: Option<String>, e164: &str) -> Result<(String, bool)> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) if (5..=20).contains(&v.len()) && v.chars().all(|c| c.is_ascii_digit()) => {
            Ok((v, true))
        }
        Some(_) => Err(invalid("wa_id", "must be 5 to 20 digits")),
        None => Ok((phone::wa_id_of(e164), false)),
    }
}

fn opt_out(opted_out: bool, source: &str) -> OptOut {
    OptOut {
        opted_out,
        at: imix_core::now(),
        source: source.to_owned(),
        message_id: None,
    }
}

/// A validated new contact, and whether its `wa_id` was given (not derived).
fn build(tenant: TenantId, req: NewContact, source: &str) -> Result<(Contact, bool)> {
    let e164 = phone::normalize(&req.phone).map_err(|m| invalid("phone", m))?;
    let (wa_id, explicit) = wa_id(req.wa_id, &e164)?;
    let mut contact = Contact::new(tenant, wa_id);
    contact.phone = Some(e164);
    contact.name = text("name", req.name, MAX_NAME_CHARS)?;
    contact.language = language(req.language)?;
    contact.tags = tags(req.tags)?;
    contact.attributes = attributes(req.attributes)?;
    contact.notes = text("notes", req.notes, MAX_NOTES_CHARS)?;
    contact.opt_out = req.opted_out.map(|o| opt_out(o, source));
    Ok((contact, explicit))
}

/// Applies `patch` to `contact`, validating what it changes.
fn apply(contact: &mut Contact, patch: ContactPatch) -> Result<()> {
    if let Some(name) = patch.name {
        contact.name = text("name", name, MAX_NAME_CHARS)?;
    }
    if let Some(t) = patch.tags {
        contact.tags = tags(t)?;
    }
    if let Some(a) = patch.attributes {
        contact.attributes = attributes(a)?;
    }
    if let Some(notes) = patch.notes {
        contact.notes = text("notes", notes, MAX_NOTES_CHARS)?;
    }
    if let Some(l) = patch.language {
        contact.language = language(l)?;
    }
    if let Some(o) = patch.opted_out {
        // Only a change is recorded: re-sending the same state keeps its time and source.
        if contact.opt_out.as_ref().map(|x| x.opted_out) != Some(o) {
            contact.opt_out = Some(opt_out(o, "api"));
        }
    }
    if let Some(b) = patch.blocked {
        contact.blocked = b;
    }
    Ok(())
}

fn group_name(name: &str) -> Result<String> {
    text("name", Some(name.to_owned()), 100)?.ok_or_else(|| invalid("name", "must not be empty"))
}

/// Contacts, groups, import and export over messaging's storage, the tenants' limits and
/// the count limits.
#[derive(Clone)]
pub struct ContactService {
    storage: MessagingStorage,
    tenants: Arc<dyn TenantDirectory>,
    counter: Arc<dyn ContactCounter>,
}

impl std::fmt::Debug for ContactService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactService").finish_non_exhaustive()
    }
}

impl ContactService {
    /// The service.
    pub fn new(
        storage: MessagingStorage,
        tenants: Arc<dyn TenantDirectory>,
        counter: Arc<dyn ContactCounter>,
    ) -> Self {
        Self {
            storage,
            tenants,
            counter,
        }
    }

    async fn limit(&self, tenant: TenantId, kind: Counted) -> Result<Option<u64>> {
        Ok(kind.limit(&self.tenants.profile(tenant).await?.limits))
    }

    /// How many contacts the tenant has stored (not the limit's count, which also holds
    /// slots reserved for creations under way).
    pub(crate) async fn stored_contacts(&self, tenant: TenantId) -> Result<u64> {
        Ok(self.storage.contact_book.count_contacts(tenant).await?)
    }

    /// Gives a slot back; a failure is logged (the record is already gone, and the count
    /// is set right by a reconcile).
    async fn release_quietly(&self, tenant: TenantId, kind: Counted) {
        if let Err(e) = self.counter.release(tenant, kind).await {
            tracing::warn!(target: "imix_messaging", %tenant, kind = kind.limit_name(), error = %e, "could not give a count back");
        }
    }

    /// Stores a new contact within the tenant's Max Contacts (`limit`): 409 naming `phone`
    /// when the tenant has a contact with this number (or, for a derived `wa_id`, this
    /// WhatsApp id), `wa_id` when an explicit one is taken.
    async fn insert_counted(
        &self,
        contact: Contact,
        explicit_wa_id: bool,
        limit: Option<u64>,
    ) -> Result<Contact> {
        let tenant = contact.tenant_id;
        if let Some(phone) = &contact.phone {
            if self
                .storage
                .contact_book
                .find_by_phone(tenant, phone)
                .await?
                .is_some()
            {
                return Err(CoreError::Duplicate {
                    entity: "contact",
                    field: "phone",
                }
                .into());
            }
        }
        self.counter
            .reserve(tenant, Counted::Contacts, limit)
            .await?;
        match self.storage.contacts.insert(&contact).await {
            Ok(()) => Ok(contact),
            Err(e) => {
                self.release_quietly(tenant, Counted::Contacts).await;
                Err(match e {
                    CoreError::Duplicate { entity, .. } if !explicit_wa_id => {
                        CoreError::Duplicate {
                            entity,
                            field: "phone",
                        }
                    }
                    other => other,
                }
                .into())
            }
        }
    }

    /// Creates a contact of `tenant` (`contacts.manage`), counted against Max Contacts.
    pub async fn create(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        req: NewContact,
    ) -> Result<Contact> {
        ctx.authorize(Permission::ContactsManage, tenant)?;
        let (contact, explicit) = build(tenant, req, "api")?;
        let limit = self.limit(tenant, Counted::Contacts).await?;
        self.insert_counted(contact, explicit, limit).await
    }

    /// Changes one of `tenant`'s contacts (`contacts.manage`).
    pub async fn update(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactId,
        patch: ContactPatch,
    ) -> Result<Contact> {
        let scope = ctx.authorize(Permission::ContactsManage, tenant)?;
        let mut backoff = ConflictBackoff::new();
        loop {
            let mut contact = self.storage.contacts.get(scope, id).await?;
            apply(&mut contact, patch.clone())?;
            contact.updated_at = imix_core::now();
            match self.storage.contacts.update(scope, &contact).await {
                // Someone else (say, an inbound STOP) changed it meanwhile: apply again.
                Err(CoreError::VersionConflict { .. }) if backoff.next_attempt().await => {}
                other => return Ok(other?),
            }
        }
    }

    /// Deletes one of `tenant`'s contacts and its group memberships (`contacts.manage`);
    /// its slot of Max Contacts is given back. Its conversations and messages stay.
    pub async fn delete(&self, ctx: &AccessContext, tenant: TenantId, id: ContactId) -> Result<()> {
        let scope = ctx.authorize(Permission::ContactsManage, tenant)?;
        let contact = self.storage.contact_book.delete_contact(scope, id).await?;
        self.release_quietly(contact.tenant_id, Counted::Contacts)
            .await;
        Ok(())
    }

    /// `tenant`'s groups, oldest first (`contacts.read`).
    pub async fn groups(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ContactGroup>> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.storage.groups.list(scope, page).await?)
    }

    /// One of `tenant`'s groups (`contacts.read`).
    pub async fn group(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactGroupId,
    ) -> Result<ContactGroup> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.storage.groups.get(scope, id).await?)
    }

    /// Creates a group (`contacts.manage`), counted against Max Contact Groups; its name
    /// is unique within the tenant (409 `name_taken`).
    pub async fn create_group(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        name: &str,
        description: Option<String>,
    ) -> Result<ContactGroup> {
        ctx.authorize(Permission::ContactsManage, tenant)?;
        let mut group = ContactGroup::new(tenant, group_name(name)?);
        group.description = text("description", description, 1_000)?;
        let limit = self.limit(tenant, Counted::ContactGroups).await?;
        self.counter
            .reserve(tenant, Counted::ContactGroups, limit)
            .await?;
        if let Err(e) = self.storage.groups.insert(&group).await {
            self.release_quietly(tenant, Counted::ContactGroups).await;
            return Err(e.into());
        }
        Ok(group)
    }

    /// Renames or redescribes a group (`contacts.manage`).
    pub async fn update_group(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactGroupId,
        patch: GroupPatch,
    ) -> Result<ContactGroup> {
        let scope = ctx.authorize(Permission::ContactsManage, tenant)?;
        let name = patch.name.as_deref().map(group_name).transpose()?;
        let description = patch
            .description
            .map(|d| text("description", d, 1_000))
            .transpose()?;
        let mut backoff = ConflictBackoff::new();
        loop {
            let mut group = self.storage.groups.get(scope, id).await?;
            if let Some(name) = &name {
                group.name = name.clone();
            }
            if let Some(description) = &description {
                group.description = description.clone();
            }
            group.updated_at = imix_core::now();
            match self.storage.groups.update(scope, &group).await {
                Err(CoreError::VersionConflict { .. }) if backoff.next_attempt().await => {}
                other => return Ok(other?),
            }
        }
    }

    /// Deletes a group and its memberships (not the contacts) (`contacts.manage`); its slot
    /// of Max Contact Groups is given back.
    pub async fn delete_group(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactGroupId,
    ) -> Result<()> {
        let scope = ctx.authorize(Permission::ContactsManage, tenant)?;
        let group = self.storage.groups.delete(scope, id).await?;
        self.release_quietly(group.tenant_id, Counted::ContactGroups)
            .await;
        Ok(())
    }

    /// The members of one of `tenant`'s groups, in the order added (`contacts.read`).
    pub async fn members(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        group: ContactGroupId,
        page: PageRequest,
    ) -> Result<Page<GroupMember>> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        self.storage.groups.get(scope, group).await?;
        Ok(self.storage.groups.members(scope, group, page).await?)
    }

    /// Adds a contact to a group, both the tenant's (`contacts.manage`); whether it was
    /// not a member yet.
    pub async fn add_member(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        group: ContactGroupId,
        contact: ContactId,
    ) -> Result<bool> {
        let scope = ctx.authorize(Permission::ContactsManage, tenant)?;
        self.storage.groups.get(scope, group).await?;
        self.storage.contacts.get(scope, contact).await?;
        Ok(self
            .storage
            .groups
            .add_member(&GroupMember::new(tenant, group, contact))
            .await?)
    }

    /// Removes a contact from a group (`contacts.manage`); not found when it was not a
    /// member.
    pub async fn remove_member(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        group: ContactGroupId,
        contact: ContactId,
    ) -> Result<()> {
        let scope = ctx.authorize(Permission::ContactsManage, tenant)?;
        self.storage.groups.get(scope, group).await?;
        if self
            .storage
            .groups
            .remove_member(scope, group, contact)
            .await?
        {
            Ok(())
        } else {
            Err(CoreError::NotFound {
                entity: "group member",
                id: contact.to_string(),
            }
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_contact_is_validated_field_by_field() {
        let tenant = TenantId::new();
        let ok = NewContact {
            phone: "+33 6 12 34 56 78".into(),
            name: Some("  Ada ".into()),
            tags: vec!["vip".into(), " vip ".into(), "".into()],
            ..Default::default()
        };
        let (c, explicit) = build(tenant, ok, "api").unwrap();
        assert_eq!(c.phone.as_deref(), Some("+33612345678"));
        assert_eq!(c.wa_id, "33612345678");
        assert!(!explicit);
        assert_eq!(c.name.as_deref(), Some("Ada"));
        assert_eq!(c.tags, ["vip"]);

        let field_of = |req: NewContact| match build(tenant, req, "api") {
            Err(MessagingError::Store(CoreError::Invalid { field, .. })) => field,
            other => panic!("not refused: {other:?}"),
        };
        let base = || NewContact {
            phone: "+33612345678".into(),
            ..Default::default()
        };
        assert_eq!(
            field_of(NewContact {
                phone: "12".into(),
                ..Default::default()
            }),
            "phone"
        );
        assert_eq!(
            field_of(NewContact {
                wa_id: Some("12ab".into()),
                ..base()
            }),
            "wa_id"
        );
        assert_eq!(
            field_of(NewContact {
                language: Some("f".into()),
                ..base()
            }),
            "language"
        );
        let mut attrs = BTreeMap::new();
        attrs.insert("bad key".into(), AttributeValue::Boolean(true));
        assert_eq!(
            field_of(NewContact {
                attributes: attrs,
                ..base()
            }),
            "attributes"
        );
    }

    #[test]
    fn a_patch_records_an_opt_out_change_only() {
        let (mut c, _) = build(
            TenantId::new(),
            NewContact {
                phone: "+33612345678".into(),
                ..Default::default()
            },
            "api",
        )
        .unwrap();
        apply(
            &mut c,
            ContactPatch {
                opted_out: Some(true),
                name: Some(Some("Bo".into())),
                ..Default::default()
            },
        )
        .unwrap();
        let first = c.opt_out.clone().unwrap();
        assert!(first.opted_out);
        assert_eq!(first.source, "api");
        apply(
            &mut c,
            ContactPatch {
                opted_out: Some(true),
                name: Some(None),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.opt_out, Some(first), "the same state keeps its time");
        assert_eq!(c.name, None);
    }

    #[test]
    fn blocked_is_set_and_cleared_and_defaults_to_false_in_old_records() {
        let mut c = Contact::new(TenantId::new(), "15550100111");
        assert!(!c.blocked);
        let block = |b| ContactPatch {
            blocked: Some(b),
            ..Default::default()
        };
        apply(&mut c, block(true)).unwrap();
        assert!(c.blocked);
        apply(&mut c, ContactPatch::default()).unwrap();
        assert!(c.blocked, "an absent field leaves it");
        apply(&mut c, block(false)).unwrap();
        assert!(!c.blocked);
        // A record stored or archived before the field existed reads as not blocked.
        let mut old = serde_json::to_value(&c).unwrap();
        old.as_object_mut().unwrap().remove("blocked");
        let read: Contact = serde_json::from_value(old).unwrap();
        assert!(!read.blocked);
        c.blocked = true;
        let back: Contact = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c, "the whole record round-trips, blocked included");
    }
}
