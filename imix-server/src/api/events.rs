//! Live events of a tenant's inbox as server-sent events.

use chrono::{DateTime, Utc};
use futures::{stream::BoxStream, StreamExt};
use imix_core::id::TenantId;
use imix_messaging::events::StreamItem;
use poem::web::sse::Event as SseEvent;
use poem_openapi::{
    param::{Header, Path, Query},
    payload::EventStream,
    Object, OpenApi,
};

use super::{parse_id, ApiTags};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Live events.
pub struct EventsApi {
    state: AppState,
}

impl EventsApi {
    /// The events API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// One server-sent event: its SSE `event:` name is `type`, its SSE `id:` is `id`, its
/// `data:` is this object as JSON.
#[derive(Debug, Clone, Object)]
pub struct LiveEvent {
    /// The event's number in the tenant's sequence (also the SSE id; send it back as
    /// `Last-Event-ID` to resume).
    pub id: String,
    /// `message_received`, `message_status_changed`, `conversation_created`,
    /// `conversation_updated`, `conversation_assigned`, `contact_created`,
    /// `contact_updated`, or `reset` (the events
    /// since the client's last id are no longer kept: refetch what is shown).
    #[oai(rename = "type")]
    pub kind: String,
    /// The tenant.
    pub tenant_id: String,
    /// When the event was recorded (`null` for `reset`).
    pub at: Option<DateTime<Utc>>,
    /// The record concerned: ids (`conversation_id`, `message_id`, `contact_id`) and the
    /// fields a list shows. Empty for `reset`.
    pub data: serde_json::Value,
}

impl LiveEvent {
    fn of(item: StreamItem, tenant: TenantId) -> Self {
        match item {
            StreamItem::Event(e) => Self {
                id: e.seq.to_string(),
                kind: e.kind.as_str().to_owned(),
                tenant_id: e.tenant_id.to_string(),
                at: Some(e.at),
                data: e.data,
            },
            StreamItem::Reset { seq } => Self {
                id: seq.to_string(),
                kind: "reset".to_owned(),
                tenant_id: tenant.to_string(),
                at: None,
                data: serde_json::json!({}),
            },
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl EventsApi {
    /// The tenant's live events as `text/event-stream`: messages received, statuses changed,
    /// conversations and contacts created or changed, each with an SSE `id`. Resume after
    /// a disconnect with the `Last-Event-ID` header (EventSource sends it by itself) or
    /// `?last_event_id=` (polyfills that cannot set headers): the events missed are sent
    /// first, without gaps or repeats, if still kept (24 hours, the tenant's last 10,000);
    /// otherwise the stream begins with a `reset` event. Comment lines (`:`) are sent as
    /// heartbeats. Needs `conversations.read` (contact events also `contacts.read`).
    /// Without `conversations.read_all` (agents), only events of conversations assigned to
    /// the caller or to nobody when recorded are sent, and `conversation_assigned` to those
    /// who saw the conversation before (drop it when `assignee` is someone else); a resume
    /// is filtered alike, so ids may skip.
    #[oai(
        path = "/tenants/:tenant_id/events",
        method = "get",
        operation_id = "stream_events"
    )]
    async fn events(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        /// The id of the last event received (resume after it).
        #[oai(name = "Last-Event-ID")]
        last_event_id_header: Header<Option<String>>,
        /// The same as the `Last-Event-ID` header, for clients that cannot set headers; the
        /// header wins when both are given.
        last_event_id: Query<Option<String>>,
    ) -> Result<EventStream<BoxStream<'static, LiveEvent>>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let resume = last_event_id_header.0.or(last_event_id.0);
        let events = &self.state.events;
        let stream = events
            .service
            .open(auth.0.access(), tenant, resume.as_deref())
            .await?
            .map(move |item| LiveEvent::of(item, tenant))
            .boxed();
        Ok(EventStream::new(stream)
            .keep_alive(events.heartbeat)
            .to_event(|e| {
                let data = serde_json::json!({
                    "id": e.id, "type": e.kind, "tenant_id": e.tenant_id, "at": e.at, "data": e.data,
                });
                SseEvent::message(data.to_string())
                    .id(e.id)
                    .event_type(e.kind)
            }))
    }
}
