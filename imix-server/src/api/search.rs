//! Tenant search: messages and contacts found by text, within what the caller may see.

use chrono::{DateTime, Utc};
use imix_core::id::TenantId;
use imix_messaging::{search::MessageMatch, Contact, Direction, SearchService};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    Object, OpenApi,
};

use super::{parse_id, ApiTags};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Search operations.
pub struct SearchApi {
    state: AppState,
}

impl SearchApi {
    /// The search API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A message found.
#[derive(Debug, Clone, Object)]
pub struct MessageHitView {
    /// Id.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The customer.
    pub contact_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Meta's type: `text`, `image`, `location`, …
    pub kind: String,
    /// An excerpt of the message's text around the first match.
    pub snippet: String,
    /// Meta's timestamp.
    pub timestamp: DateTime<Utc>,
}

impl From<MessageMatch> for MessageHitView {
    fn from(m: MessageMatch) -> Self {
        let message = m.message;
        Self {
            id: message.id.to_string(),
            conversation_id: message.conversation_id.to_string(),
            contact_id: message.contact_id.to_string(),
            direction: match message.direction {
                Direction::Inbound => "inbound".into(),
                Direction::Outbound => "outbound".into(),
            },
            kind: message.kind,
            snippet: m.snippet,
            timestamp: message.timestamp,
        }
    }
}

/// A contact found.
#[derive(Debug, Clone, Object)]
pub struct ContactHitView {
    /// Id.
    pub id: String,
    /// Name given by the tenant.
    pub name: Option<String>,
    /// WhatsApp profile name.
    pub profile_name: Option<String>,
    /// Phone number (E.164), when known.
    pub phone: Option<String>,
    /// WhatsApp id as Meta reports it.
    pub wa_id: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Contact> for ContactHitView {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name,
            profile_name: c.profile_name,
            phone: c.phone,
            wa_id: c.wa_id,
            tags: c.tags,
            updated_at: c.updated_at,
        }
    }
}

/// What a search found.
#[derive(Debug, Clone, Object)]
pub struct SearchResultsView {
    /// Messages, newest first (Meta's timestamp), at most `limit`.
    pub messages: Vec<MessageHitView>,
    /// Contacts, most recently changed first, at most `limit` (empty without
    /// `contacts.read`).
    pub contacts: Vec<ContactHitView>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl SearchApi {
    /// Finds the tenant's messages and contacts by text. Case, accents (`é` = `e`), Arabic
    /// harakat, tatweel and alef/ya/ta marbuta variants are ignored; every word must
    /// match, the last one as a prefix; a phone number may be typed with spaces. An agent
    /// finds messages only of conversations assigned to them or unassigned. Blank `q`, or
    /// longer than 200 characters → 422 naming `q`.
    #[oai(
        path = "/tenants/:tenant_id/search",
        method = "get",
        operation_id = "search"
    )]
    async fn search(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        /// The words to find (1 to 200 characters).
        q: Query<Option<String>>,
        /// Results of each kind, 1 to 100 (default 20).
        limit: Query<Option<u32>>,
    ) -> Result<Json<SearchResultsView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let service = SearchService::new(self.state.storage.messaging.clone());
        let found = service
            .search(
                auth.0.access(),
                tenant,
                q.0.as_deref().unwrap_or(""),
                limit.0.map(|n| n as usize),
            )
            .await?;
        Ok(Json(SearchResultsView {
            messages: found.messages.into_iter().map(Into::into).collect(),
            contacts: found.contacts.into_iter().map(Into::into).collect(),
        }))
    }
}
