//! Automatic assignment of conversations: a tenant's inbox settings (`auto_assign`:
//! `off` or `round_robin`, stored as the settings document `inbox` of the tenant) and the
//! round-robin that picks the next agent.
//!
//! Round-robin takes the tenant's active users with the Agent role who may reply
//! ([`Assignees::agents`]), in the order of their ids, and a durable cursor: the counter
//! `tenant:<id>:inbox:round_robin` of the store's counters port, whose increments are atomic
//! also between replicas. Each pick adds one to it and takes the agent at
//! `(value - 1) % agents`, so two conversations picked at the same time get two different
//! numbers (two different agents when there are several), and a restart or another replica
//! continues the rotation where it was. When agents join or leave, the rotation goes on over
//! the new list from the counter's position.

use std::sync::Arc;

use imix_core::{
    id::{TenantId, UserId},
    model::{SettingsDoc, SettingsScope},
    store::{ConflictBackoff, CounterRepository, SettingsRepository},
    Error as CoreError,
};
use serde::{Deserialize, Serialize};

use crate::{error::Result, inbox::Assignees};

/// The settings key of a tenant's inbox settings.
pub const INBOX_SETTINGS_KEY: &str = "inbox";

/// How new conversations get an assignee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoAssign {
    /// They stay unassigned until someone assigns them (the default).
    #[default]
    Off,
    /// Each goes to the next of the tenant's agents in turn.
    RoundRobin,
}

impl AutoAssign {
    /// The wire name: `off` or `round_robin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::RoundRobin => "round_robin",
        }
    }
}

/// A tenant's inbox settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxSettings {
    /// Automatic assignment of new (and reopened unassigned) conversations.
    #[serde(default)]
    pub auto_assign: AutoAssign,
}

/// Reads and writes inbox settings and picks round-robin assignees.
#[derive(Clone)]
pub struct RoundRobin {
    settings: Arc<dyn SettingsRepository>,
    counters: Arc<dyn CounterRepository>,
    assignees: Arc<dyn Assignees>,
}

impl std::fmt::Debug for RoundRobin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundRobin").finish_non_exhaustive()
    }
}

/// The counter holding a tenant's round-robin position.
fn cursor_key(tenant: TenantId) -> String {
    format!("tenant:{tenant}:inbox:round_robin")
}

impl RoundRobin {
    /// Settings in `settings`, the cursor in `counters`, agents from `assignees`.
    pub fn new(
        settings: Arc<dyn SettingsRepository>,
        counters: Arc<dyn CounterRepository>,
        assignees: Arc<dyn Assignees>,
    ) -> Self {
        Self {
            settings,
            counters,
            assignees,
        }
    }

    /// The tenant's inbox settings (the defaults when never written). No access check:
    /// callers check ([`crate::InboxService::inbox_settings`]).
    pub async fn settings(&self, tenant: TenantId) -> Result<InboxSettings> {
        let doc = self
            .settings
            .get(SettingsScope::Tenant(tenant), INBOX_SETTINGS_KEY)
            .await?;
        Ok(match doc {
            // A document this version cannot read (written by a newer one): the defaults,
            // which assign nothing, rather than failing ingest.
            Some(doc) => serde_json::from_value(doc.value).unwrap_or_default(),
            None => InboxSettings::default(),
        })
    }

    /// Stores the tenant's inbox settings; returns them.
    pub async fn set_settings(
        &self,
        tenant: TenantId,
        value: InboxSettings,
    ) -> Result<InboxSettings> {
        let scope = SettingsScope::Tenant(tenant);
        let json = serde_json::json!({ "auto_assign": value.auto_assign.as_str() });
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let written = match self.settings.get(scope, INBOX_SETTINGS_KEY).await? {
                None => self
                    .settings
                    .insert(&SettingsDoc::new(scope, INBOX_SETTINGS_KEY, json.clone()))
                    .await
                    .map(drop),
                Some(mut doc) => {
                    doc.value = json.clone();
                    doc.updated_at = imix_core::now();
                    self.settings.update(&doc).await.map(drop)
                }
            };
            match written {
                Ok(()) => return Ok(value),
                // Another writer got there first: write over its version.
                Err(CoreError::Duplicate { .. } | CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::VersionConflict {
            entity: "settings",
            id: INBOX_SETTINGS_KEY.to_owned(),
            expected: 0,
        }
        .into())
    }

    /// The user a new (or reopened, unassigned) conversation of `tenant` goes to: the next
    /// agent in turn when round-robin is on and the tenant has agents; `None` otherwise.
    pub async fn next_assignee(&self, tenant: TenantId) -> Result<Option<UserId>> {
        if self.settings(tenant).await?.auto_assign != AutoAssign::RoundRobin {
            return Ok(None);
        }
        let mut agents = self.assignees.agents(tenant).await?;
        if agents.is_empty() {
            return Ok(None);
        }
        agents.sort_by_key(|u| u.to_string());
        agents.dedup();
        let turn = self
            .counters
            .try_add(&cursor_key(tenant), 1, None, None)
            .await?
            .value();
        let index = (turn.saturating_sub(1) % agents.len() as u64) as usize;
        Ok(agents.get(index).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_off_and_read_their_wire_names() {
        assert_eq!(InboxSettings::default().auto_assign, AutoAssign::Off);
        let s: InboxSettings = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(s.auto_assign, AutoAssign::Off);
        let s: InboxSettings =
            serde_json::from_value(serde_json::json!({"auto_assign": "round_robin"})).unwrap();
        assert_eq!(s.auto_assign, AutoAssign::RoundRobin);
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({"auto_assign": "round_robin"})
        );
    }
}
