//! Count limits: how many templates, agents, contacts and contact groups a tenant may have.

use std::sync::Arc;

use imix_core::{
    directory::UsageLimits,
    id::TenantId,
    store::{CounterOutcome, CounterRepository},
};

use super::QuotaError;

/// What a count limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountKind {
    /// Message templates.
    Templates,
    /// The tenant's users that are not deactivated (invited ones included).
    Agents,
    /// Contacts.
    Contacts,
    /// Contact groups.
    ContactGroups,
}

impl CountKind {
    /// Every kind.
    pub const ALL: [CountKind; 4] = [
        CountKind::Templates,
        CountKind::Agents,
        CountKind::Contacts,
        CountKind::ContactGroups,
    ];

    /// `"templates"`, `"agents"`, `"contacts"` or `"contact_groups"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CountKind::Templates => "templates",
            CountKind::Agents => "agents",
            CountKind::Contacts => "contacts",
            CountKind::ContactGroups => "contact_groups",
        }
    }

    /// The tenant's limit for this kind (`None` = unlimited).
    pub fn limit(&self, limits: &UsageLimits) -> Option<u64> {
        match self {
            CountKind::Templates => limits.max_templates,
            CountKind::Agents => limits.max_agents,
            CountKind::Contacts => limits.max_contacts,
            CountKind::ContactGroups => limits.max_contact_groups,
        }
    }

    /// The counter key: `tenant:<id>:<kind>`.
    pub fn key(&self, tenant: TenantId) -> String {
        format!("tenant:{tenant}:{}", self.as_str())
    }
}

impl std::fmt::Display for CountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's current counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Message templates.
    pub templates: u64,
    /// Users that are not deactivated.
    pub agents: u64,
    /// Contacts.
    pub contacts: u64,
    /// Contact groups.
    pub contact_groups: u64,
}

impl Counts {
    /// The count of `kind`.
    pub fn get(&self, kind: CountKind) -> u64 {
        match kind {
            CountKind::Templates => self.templates,
            CountKind::Agents => self.agents,
            CountKind::Contacts => self.contacts,
            CountKind::ContactGroups => self.contact_groups,
        }
    }

    fn slot(&mut self, kind: CountKind) -> &mut u64 {
        match kind {
            CountKind::Templates => &mut self.templates,
            CountKind::Agents => &mut self.agents,
            CountKind::Contacts => &mut self.contacts,
            CountKind::ContactGroups => &mut self.contact_groups,
        }
    }
}

/// Count limits, kept as durable counters in the store (shared by every replica).
///
/// The protocol for a service that creates a counted record:
///
/// 1. [`reserve`](Self::reserve) a slot — atomic, so concurrent creations never exceed the
///    limit; a full tenant gets [`QuotaError::CountLimitReached`];
/// 2. create the record; if that fails, [`release`](Self::release) the slot;
/// 3. when the record is deleted (or, for agents, the user deactivated),
///    [`release`](Self::release) the slot; reactivating reserves one again.
///
/// The counters are not part of export/import: after a restore, or for tenants that
/// existed before counting started, set them from the records with
/// [`reconcile`](Self::reconcile).
#[derive(Clone)]
pub struct CountLimits {
    counters: Arc<dyn CounterRepository>,
}

impl std::fmt::Debug for CountLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountLimits").finish_non_exhaustive()
    }
}

impl CountLimits {
    /// Counts in `counters`, usually `store.counters.clone()`.
    pub fn new(counters: Arc<dyn CounterRepository>) -> Self {
        Self { counters }
    }

    /// Reserves one `kind` for `tenant` if it has fewer than `limit` (`None` =
    /// unlimited); returns the count including the reservation.
    pub async fn reserve(
        &self,
        tenant: TenantId,
        kind: CountKind,
        limit: Option<u64>,
    ) -> Result<u64, QuotaError> {
        self.reserve_many(tenant, kind, 1, limit).await
    }

    /// Reserves `n` at once (say, a contacts import): all of them or none.
    pub async fn reserve_many(
        &self,
        tenant: TenantId,
        kind: CountKind,
        n: u64,
        limit: Option<u64>,
    ) -> Result<u64, QuotaError> {
        let outcome = self
            .counters
            .try_add(&kind.key(tenant), n, limit, None)
            .await?;
        match (outcome, limit) {
            (CounterOutcome::Added { value }, _) => Ok(value),
            (CounterOutcome::Rejected { value }, Some(limit)) => {
                Err(QuotaError::CountLimitReached {
                    kind,
                    limit,
                    current: value,
                })
            }
            // A counter without a limit cannot refuse; an adapter that says so is broken.
            (CounterOutcome::Rejected { .. }, None) => Err(QuotaError::Backend {
                action: "reserve a count",
                source: "the counter store refused an unlimited add".into(),
            }),
        }
    }

    /// Gives one `kind` back (a record deleted, or a creation that failed); returns the
    /// count afterwards. Never goes below 0.
    pub async fn release(&self, tenant: TenantId, kind: CountKind) -> Result<u64, QuotaError> {
        self.release_many(tenant, kind, 1).await
    }

    /// Gives `n` back at once.
    pub async fn release_many(
        &self,
        tenant: TenantId,
        kind: CountKind,
        n: u64,
    ) -> Result<u64, QuotaError> {
        Ok(self.counters.subtract(&kind.key(tenant), n).await?)
    }

    /// The tenant's current count of `kind`.
    pub async fn current(&self, tenant: TenantId, kind: CountKind) -> Result<u64, QuotaError> {
        Ok(self.counters.get(&kind.key(tenant)).await?)
    }

    /// All four counts of the tenant.
    pub async fn counts(&self, tenant: TenantId) -> Result<Counts, QuotaError> {
        let mut counts = Counts::default();
        for kind in CountKind::ALL {
            *counts.slot(kind) = self.current(tenant, kind).await?;
        }
        Ok(counts)
    }

    /// Sets the count of `kind` to `actual`, the number of records that really exist.
    /// Run it when the tenant's records are not being created concurrently (after a
    /// restore, at start-up, from an admin command).
    pub async fn reconcile(
        &self,
        tenant: TenantId,
        kind: CountKind,
        actual: u64,
    ) -> Result<(), QuotaError> {
        Ok(self.counters.set(&kind.key(tenant), actual, None).await?)
    }
}
