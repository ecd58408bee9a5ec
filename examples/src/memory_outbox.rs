//! [`MemoryOutbox`]: the notify capability's storage port,
//! [`MailOutboxRepository`], implemented by hand in memory.
//!
//! It exists as a **template**: an integrator who wants to keep the mail outbox in a
//! database of their own (neither of the shipped SQLite and MongoDB adapters) copies this
//! file, replaces the map with their tables, and proves the result with the conformance
//! suite the capability exports behind its `testkit` feature
//! ([`imix_notify::testkit`]). This crate runs that suite against [`MemoryOutbox`] in
//! `tests/memory_outbox.rs` and in the `memory-outbox` example.
//!
//! What each operation must mean is documented on the port; the comments below say how an
//! in-memory map meets it, which is what a real backend has to reproduce:
//!
//! * **Atomic claims.** [`MailOutboxRepository::claim_due`] finds the longest-due email and
//!   leases it in one step under one lock, so two workers never get the same email. A
//!   database backend does the same in one transaction that locks before it reads (or with
//!   a single conditional update such as `findOneAndUpdate`).
//! * **Optimistic versions.** [`MailOutboxRepository::update`] replaces an email only if its
//!   stored version is the caller's, and stores it one version higher.
//! * **Scopes.** A tenant sees only its own emails; another tenant's email is reported as
//!   not found, exactly like a missing one.
//! * **Newest-first listing.** Ids are UUIDv7, so descending id order is newest first, and
//!   the cursor is the last id returned.
//!
//! **Not durable**: everything lives in this process and is gone when it exits, so an email
//! queued but not yet sent before a restart is lost. Use it in tests and demos, never as a
//! production outbox.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use imix_core::{
    store::{Page, PageRequest, Scope},
    Error, Result, Timestamp,
};
use imix_notify::{storage::MailOutboxRepository, OutboxEmail, OutboxId};

/// The entity name in errors, as the shipped adapters spell it.
const ENTITY: &str = "outbox email";

/// An in-memory [`MailOutboxRepository`]: a template for an integrator's own outbox backend
/// (see the [module documentation](self)). **Not durable**: the emails live only as long
/// as this value.
///
/// Every operation runs entirely under one [`Mutex`], so each is atomic: concurrent claims
/// never hand one email out twice. The lock is never held across an `.await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imix_core::Result<()> {
/// use std::sync::Arc;
/// use imix_core::store::{PageRequest, Scope};
/// use imix_examples::memory_outbox::MemoryOutbox;
/// use imix_notify::storage::MailOutboxRepository;
///
/// let outbox: Arc<dyn MailOutboxRepository> = Arc::new(MemoryOutbox::new());
/// assert!(outbox.list(Scope::Platform, PageRequest::default()).await?.items.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    // Keyed by id: `OutboxId` orders like the UUIDs' hyphenated text, which is the order the
    // SQL adapters list by, so a reverse range walk is the newest-first listing.
    emails: Mutex<BTreeMap<OutboxId, OutboxEmail>>,
}

impl MemoryOutbox {
    /// An empty outbox. Unlike the database adapters there is nothing to migrate.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many emails are stored, in any state: handy in tests and demos.
    pub fn len(&self) -> usize {
        self.emails().len()
    }

    /// Whether no email is stored at all.
    pub fn is_empty(&self) -> bool {
        self.emails().is_empty()
    }

    fn emails(&self) -> MutexGuard<'_, BTreeMap<OutboxId, OutboxEmail>> {
        // A panic while the lock was held cannot have left a half-written record: every
        // operation checks first and then replaces whole values. So a poisoned lock still
        // guards a consistent map, and refusing all further work would gain nothing.
        self.emails.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn not_found(id: OutboxId) -> Error {
    Error::NotFound {
        entity: ENTITY,
        id: id.to_string(),
    }
}

#[async_trait]
impl MailOutboxRepository for MemoryOutbox {
    async fn insert(&self, email: &OutboxEmail) -> Result<()> {
        let mut emails = self.emails();
        if emails.contains_key(&email.id) {
            return Err(Error::Duplicate {
                entity: ENTITY,
                field: "id",
            });
        }
        emails.insert(email.id, email.clone());
        Ok(())
    }

    async fn get(&self, scope: Scope, id: OutboxId) -> Result<OutboxEmail> {
        self.emails()
            .get(&id)
            // Outside the caller's scope reads exactly like missing, so it leaks nothing.
            .filter(|e| scope.allows(e.tenant_id))
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<OutboxEmail>> {
        let mut emails = self.emails();
        // Due longest first; ties broken by id, as the SQL adapter orders them. A full scan
        // is fine for a demo; a real backend indexes the due instant instead.
        let picked = emails
            .values()
            .filter_map(|e| e.due_at().filter(|due| *due <= now).map(|due| (due, e.id)))
            .min()
            .map(|(_, id)| id);
        let Some(email) = picked.and_then(|id| emails.get_mut(&id)) else {
            return Ok(None);
        };
        // Still under the lock taken before the search: no other claim can see this email
        // until it is leased.
        email.apply_claim(now, lease_until);
        Ok(Some(email.clone()))
    }

    async fn update(&self, email: &OutboxEmail) -> Result<OutboxEmail> {
        let mut emails = self.emails();
        let stored = emails
            .get_mut(&email.id)
            .ok_or_else(|| not_found(email.id))?;
        if stored.version != email.version {
            return Err(Error::VersionConflict {
                entity: ENTITY,
                id: email.id.to_string(),
                expected: email.version,
            });
        }
        let mut next = email.clone();
        next.version += 1;
        *stored = next.clone();
        Ok(next)
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        Ok(self.emails().values().filter_map(OutboxEmail::due_at).min())
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<OutboxEmail>> {
        let limit = page.effective_limit()?;
        // The cursor is the last id of the previous page: list strictly older ids.
        let before = match page.validated_cursor()? {
            Some(cursor) => Some(cursor.parse::<OutboxId>()?),
            None => None,
        };
        let emails = self.emails();
        let older = match before {
            Some(id) => emails.range(..id),
            None => emails.range(..),
        };
        // One more than asked: `Page::from_overfetch` uses it to tell whether more exist.
        let rows = older
            .rev()
            .map(|(_, e)| e)
            .filter(|e| scope.allows(e.tenant_id))
            .take(limit as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, limit, |e| e.id.to_string()))
    }
}
