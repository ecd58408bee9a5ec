//! Live events of the shared inbox: what ingest changed (a message received, a status
//! applied, a conversation or contact created or changed), recorded in a bounded, durable
//! per-tenant log and fanned out to the tenant's connected users.
//!
//! - [`EventLog`] is the port of the log: [`EventLog::append`] gives every event of a tenant
//!   the next number of that tenant's sequence (1, 2, 3, …), so a client that saw event `n`
//!   resumes with everything after `n`, without gaps or duplicates, as long as the log still
//!   holds it. Old events are pruned ([`EventRetention`]).
//! - [`Fanout`] carries appended events to the streams of this process (and, with Redis, of
//!   every replica: the server's adapter). Delivery through it is a shortcut only: a stream
//!   checks every event against the log's numbering and reads the log whenever it sees a
//!   gap, lags, or its poll interval passes, so an event lost in transit arrives late, never
//!   not at all.
//! - [`EventSink`] is what ingest publishes through ([`EventBus`] in production, nothing in
//!   tests that don't care).
//! - [`EventService`] opens a user's stream of one tenant, checking the permission itself.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{stream::BoxStream, StreamExt};
use imix_core::{
    access::{AccessContext, Permission},
    id::TenantId,
    Result as CoreResult, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::{
    error::Result,
    records::{Contact, Conversation, Message},
};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A customer's message was stored.
    MessageReceived,
    /// A message's delivery status changed.
    MessageStatusChanged,
    /// A conversation was created.
    ConversationCreated,
    /// A conversation changed (new message, unread count, status).
    ConversationUpdated,
    /// A conversation's assignee changed (assigned, reassigned or unassigned, by a user or
    /// by round-robin). Its data carries `assignee` (the new one) and `previous_assignee`.
    ConversationAssigned,
    /// A contact was created.
    ContactCreated,
    /// A contact changed (opt-out).
    ContactUpdated,
}

impl EventKind {
    /// The SSE event name: `message_received`, `conversation_updated`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageReceived => "message_received",
            Self::MessageStatusChanged => "message_status_changed",
            Self::ConversationCreated => "conversation_created",
            Self::ConversationUpdated => "conversation_updated",
            Self::ConversationAssigned => "conversation_assigned",
            Self::ContactCreated => "contact_created",
            Self::ContactUpdated => "contact_updated",
        }
    }

    /// The permission a user needs, besides [`Permission::ConversationsRead`], to see it.
    fn also_needs(self) -> Option<Permission> {
        match self {
            Self::ContactCreated | Self::ContactUpdated => Some(Permission::ContactsRead),
            _ => None,
        }
    }
}

/// An event as recorded in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Its number in the tenant's sequence (from 1): the SSE id.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The record concerned, as a small JSON object (ids and the fields a list shows).
    pub data: Value,
    /// When it was recorded.
    pub at: Timestamp,
}

/// An event not numbered yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// What happened.
    pub kind: EventKind,
    /// The record concerned.
    pub data: Value,
}

impl NewEvent {
    /// A message was stored.
    pub fn message_received(message: &Message) -> Self {
        Self {
            tenant_id: message.tenant_id,
            kind: EventKind::MessageReceived,
            data: message_data(message),
        }
    }

    /// A message's status changed.
    pub fn message_status_changed(message: &Message) -> Self {
        Self {
            tenant_id: message.tenant_id,
            kind: EventKind::MessageStatusChanged,
            data: message_data(message),
        }
    }

    /// A conversation was created (`created`) or changed.
    pub fn conversation(conversation: &Conversation, created: bool) -> Self {
        Self {
            tenant_id: conversation.tenant_id,
            kind: if created {
                EventKind::ConversationCreated
            } else {
                EventKind::ConversationUpdated
            },
            data: json!({
                "conversation_id": conversation.id.to_string(),
                "account_id": conversation.account_id.to_string(),
                "contact_id": conversation.contact_id.to_string(),
                "status": conversation.status,
                "assignee": conversation.assignee.map(|u| u.to_string()),
                "unread": conversation.unread,
                "last_message_at": conversation.last_message_at,
                "preview": conversation.preview,
                "version": conversation.version,
            }),
        }
    }

    /// A conversation's assignee changed from `previous` to `conversation.assignee`
    /// (`created`: it was assigned as it was created, so nobody saw it before). Agents who
    /// saw the conversation before (it was theirs, or unassigned) see this event too, and
    /// no later ones unless it is theirs now, so that their view can drop it.
    pub fn conversation_assigned(
        conversation: &Conversation,
        previous: Option<imix_core::id::UserId>,
        created: bool,
    ) -> Self {
        let mut event = Self::conversation(conversation, false);
        event.kind = EventKind::ConversationAssigned;
        event.data["previous_assignee"] = json!(previous.map(|u| u.to_string()));
        event.data["new_conversation"] = json!(created);
        event
    }

    /// The same event, recording that its conversation was assigned to `assignee` (`None`:
    /// unassigned) when it happened: what decides which agents see a message event. A
    /// message event without it is shown only to users who see every conversation.
    pub fn for_assignee(mut self, assignee: Option<imix_core::id::UserId>) -> Self {
        self.data["assignee"] = json!(assignee.map(|u| u.to_string()));
        self
    }

    /// A contact was created (`created`) or changed.
    pub fn contact(contact: &Contact, created: bool) -> Self {
        Self {
            tenant_id: contact.tenant_id,
            kind: if created {
                EventKind::ContactCreated
            } else {
                EventKind::ContactUpdated
            },
            data: json!({
                "contact_id": contact.id.to_string(),
                "wa_id": contact.wa_id,
                "profile_name": contact.profile_name,
                "opted_out": contact.opt_out.as_ref().map(|o| o.opted_out),
                "version": contact.version,
            }),
        }
    }
}

fn message_data(message: &Message) -> Value {
    json!({
        "message_id": message.id.to_string(),
        "conversation_id": message.conversation_id.to_string(),
        "contact_id": message.contact_id.to_string(),
        "direction": message.direction,
        "type": message.kind,
        "state": message.state,
        "timestamp": message.timestamp,
        "version": message.version,
    })
}

/// The durable, bounded log of events, numbered per tenant.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Records `event` with the next number of its tenant's sequence; returns it numbered.
    /// Numbers are never reused, even after pruning.
    async fn append(&self, event: NewEvent) -> CoreResult<Event>;
    /// Up to `limit` events of `tenant` numbered above `after`, in order.
    async fn read_after(&self, tenant: TenantId, after: u64, limit: u32) -> CoreResult<Vec<Event>>;
    /// The last number given to an event of `tenant` (0 before the first).
    async fn head(&self, tenant: TenantId) -> CoreResult<u64>;
    /// The lowest number of `tenant` still held (`None` when nothing is held).
    async fn oldest(&self, tenant: TenantId) -> CoreResult<Option<u64>>;
    /// Removes, for every tenant, events older than `before` and all but the newest
    /// `keep_per_tenant`; returns how many were removed.
    async fn prune(&self, keep_per_tenant: u64, before: Timestamp) -> CoreResult<u64>;
}

/// How much of the log is kept: an event goes when it is older than `max_age` or when its
/// tenant has `max_per_tenant` newer ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    /// Events kept per tenant.
    pub max_per_tenant: u64,
    /// The age past which events go.
    pub max_age: Duration,
}

impl Default for EventRetention {
    fn default() -> Self {
        Self {
            max_per_tenant: 10_000,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Carries appended events to the open streams. Never blocks: a subscriber that falls
/// behind the buffer loses events from it (and reads them from the log instead).
pub trait Fanout: Send + Sync {
    /// Sends `event` to every subscriber (of every replica, for a shared fan-out).
    fn publish(&self, event: &Event);
    /// A receiver of the events published from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// In-process fan-out over a bounded tokio broadcast channel.
#[derive(Debug, Clone)]
pub struct LocalFanout {
    sender: broadcast::Sender<Event>,
}

impl LocalFanout {
    /// A fan-out buffering up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl Default for LocalFanout {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Fanout for LocalFanout {
    fn publish(&self, event: &Event) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(event.clone());
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

/// Where ingest reports what it changed.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Records and fans out `event`. Failures are logged, not returned: ingest goes on (an
    /// event that could not be recorded is missed by streams, the records are not).
    async fn publish(&self, event: NewEvent);
}

/// An [`EventSink`] that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn publish(&self, _event: NewEvent) {}
}

/// Told of every event the bus recorded, once, by the process that recorded it (event
/// subscriptions enqueue their deliveries here). Called after the append and before the
/// fan-out, so what it stores is durable before anyone hears of the event.
#[async_trait]
pub trait EventObserver: Send + Sync {
    /// `event` was recorded. Failures are the observer's to log.
    async fn recorded(&self, event: &Event);
}

/// The log and the fan-out together: appends, tells the observers, then fans out.
#[derive(Clone)]
pub struct EventBus {
    log: Arc<dyn EventLog>,
    fanout: Arc<dyn Fanout>,
    observers: Arc<std::sync::RwLock<Vec<Arc<dyn EventObserver>>>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus appending to `log` and fanning out through `fanout`.
    pub fn new(log: Arc<dyn EventLog>, fanout: Arc<dyn Fanout>) -> Self {
        Self {
            log,
            fanout,
            observers: Arc::default(),
        }
    }

    /// Adds `observer`, for this bus and every clone of it (those made before included).
    pub fn observe(&self, observer: Arc<dyn EventObserver>) {
        // A poisoned lock only means an earlier `observe` panicked mid-push; the list is
        // still a list.
        let mut list = match self.observers.write() {
            Ok(list) => list,
            Err(poisoned) => poisoned.into_inner(),
        };
        list.push(observer);
    }

    /// Prunes the log to `retention`; returns how many events went.
    pub async fn prune(&self, retention: EventRetention) -> CoreResult<u64> {
        let age = chrono::Duration::from_std(retention.max_age).unwrap_or(chrono::Duration::MAX);
        let before = imix_core::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        self.log.prune(retention.max_per_tenant, before).await
    }
}

#[async_trait]
impl EventSink for EventBus {
    async fn publish(&self, event: NewEvent) {
        let (tenant, kind) = (event.tenant_id, event.kind);
        match self.log.append(event).await {
            Ok(recorded) => {
                let observers: Vec<Arc<dyn EventObserver>> = match self.observers.read() {
                    Ok(list) => list.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                for observer in observers {
                    observer.recorded(&recorded).await;
                }
                self.fanout.publish(&recorded)
            }
            Err(e) => tracing::warn!(
                tenant = %tenant,
                kind = kind.as_str(),
                error = %e,
                "a live event could not be recorded; open streams miss it"
            ),
        }
    }
}

/// One item of a user's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// An event.
    Event(Event),
    /// The events after the client's last one are no longer (or were never) in the log:
    /// it must refetch what it shows. The stream goes on after `seq`.
    Reset {
        /// The number the stream continues after (the SSE id to resume from).
        seq: u64,
    },
}

/// How streams behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// How often a stream reads the log even without news from the fan-out, to pick up
    /// events lost in transit (a Redis reconnect) or written by a replica it cannot hear.
    pub poll_every: Duration,
    /// How long a stream waits for a number missing between two it has (an append still
    /// in flight on another replica) before it skips it.
    pub gap_grace: Duration,
    /// Events read from the log at once.
    pub page: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(5),
            gap_grace: Duration::from_secs(5),
            page: 200,
        }
    }
}

/// Opens users' event streams.
#[derive(Clone)]
pub struct EventService {
    log: Arc<dyn EventLog>,
    fanout: Arc<dyn Fanout>,
    config: StreamConfig,
    closed: watch::Receiver<bool>,
    close: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for EventService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EventService {
    /// Streams over `log`, woken by `fanout`.
    pub fn new(log: Arc<dyn EventLog>, fanout: Arc<dyn Fanout>, config: StreamConfig) -> Self {
        let (close, closed) = watch::channel(false);
        Self {
            log,
            fanout,
            config,
            closed,
            close: Arc::new(close),
        }
    }

    /// Ends every open stream (at shutdown, so that draining connections need not wait for
    /// clients to hang up).
    pub fn close_all(&self) {
        let _ = self.close.send(true);
    }

    /// The events of `tenant` the caller may see ([`Audience::sees`]: without
    /// [`Permission::ConversationsReadAll`] only those of conversations assigned to them or
    /// to nobody), from after `last_event_id` (the SSE `Last-Event-ID`) or from now; a
    /// replay is filtered the same way. Needs [`Permission::ConversationsRead`] on the
    /// tenant; contact events also [`Permission::ContactsRead`]. An id the log no longer holds (or
    /// never gave, or not a number) starts the stream with [`StreamItem::Reset`].
    pub async fn open(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        last_event_id: Option<&str>,
    ) -> Result<BoxStream<'static, StreamItem>> {
        ctx.authorize(Permission::ConversationsRead, tenant)?;
        let contacts = ctx.authorize(Permission::ContactsRead, tenant).is_ok();
        let audience = Audience {
            user: ctx.user_id().to_string(),
            all_conversations: ctx.has(Permission::ConversationsReadAll),
            contacts,
        };
        // Subscribe before reading the head: nothing appended in between is missed.
        let live = self.fanout.subscribe();
        let head = self.log.head(tenant).await?;
        let mut state = StreamState {
            log: self.log.clone(),
            live,
            tenant,
            audience,
            config: self.config,
            closed: self.closed.clone(),
            last: head,
            pending: VecDeque::new(),
            gap_since: None,
            done: false,
        };
        match last_event_id.map(|s| s.trim().parse::<u64>()) {
            None => {}
            Some(Ok(id)) if id <= head => {
                state.last = id;
                state.catch_up().await?;
            }
            // Not a number we gave: the client's view cannot be patched.
            Some(_) => state.pending.push_back(StreamItem::Reset { seq: head }),
        }
        Ok(futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
        .boxed())
    }
}

struct StreamState {
    log: Arc<dyn EventLog>,
    live: broadcast::Receiver<Event>,
    tenant: TenantId,
    audience: Audience,
    config: StreamConfig,
    closed: watch::Receiver<bool>,
    /// The last number queued (or skipped).
    last: u64,
    pending: VecDeque<StreamItem>,
    /// Since when a number has been missing before events the log holds.
    gap_since: Option<tokio::time::Instant>,
    done: bool,
}

/// Who a stream is for: what decides which events it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The user's id, as events name assignees.
    pub user: String,
    /// Holds [`Permission::ConversationsReadAll`]: every conversation's events.
    pub all_conversations: bool,
    /// Holds [`Permission::ContactsRead`]: contact events (of every contact of the tenant,
    /// as the contact API shows them all).
    pub contacts: bool,
}

impl Audience {
    /// Whether `event` is shown to this user. Without `conversations.read_all`, events of a
    /// conversation are shown only when it was assigned to the user or to nobody when the
    /// event was recorded (the event's `assignee`); a `conversation_assigned` event is also
    /// shown to those who saw the conversation before (`previous_assignee` the user or
    /// nobody, unless `new_conversation`), so that they drop it. An event that does not say
    /// whom its conversation was assigned to is not shown: the filter fails closed.
    pub fn sees(&self, event: &Event) -> bool {
        if event.kind.also_needs().is_some() {
            return self.contacts;
        }
        if self.all_conversations {
            return true;
        }
        let mine_or_nobodys = |key: &str| match event.data.get(key) {
            Some(Value::Null) => true,
            Some(Value::String(a)) => *a == self.user,
            _ => false,
        };
        let saw_before = event.kind == EventKind::ConversationAssigned
            && event.data.get("new_conversation") != Some(&Value::Bool(true))
            && mine_or_nobodys("previous_assignee");
        mine_or_nobodys("assignee") || saw_before
    }
}

impl StreamState {
    fn visible(&self, event: &Event) -> bool {
        self.audience.sees(event)
    }

    /// Queues `event` if it is the next; whether it was.
    fn take_next(&mut self, event: Event) -> bool {
        if event.seq != self.last + 1 {
            return false;
        }
        self.last = event.seq;
        self.gap_since = None;
        if self.visible(&event) {
            self.pending.push_back(StreamItem::Event(event));
        }
        true
    }

    /// Reads the log after `last`, queueing what follows without a gap.
    async fn catch_up(&mut self) -> CoreResult<()> {
        loop {
            let events = self
                .log
                .read_after(self.tenant, self.last, self.config.page)
                .await?;
            let full = events.len() >= self.config.page as usize;
            let Some(first) = events.first() else {
                return Ok(());
            };
            if first.seq > self.last + 1 {
                let pruned = self
                    .log
                    .oldest(self.tenant)
                    .await?
                    .is_some_and(|oldest| self.last + 1 < oldest);
                let waited = self.gap_since.get_or_insert_with(tokio::time::Instant::now);
                if pruned {
                    let head = self.log.head(self.tenant).await?;
                    self.pending.push_back(StreamItem::Reset { seq: head });
                    self.last = head;
                    self.gap_since = None;
                    return Ok(());
                }
                if waited.elapsed() < self.config.gap_grace {
                    // Another replica holds that number and has not written it yet.
                    return Ok(());
                }
                tracing::warn!(tenant = %self.tenant, from = self.last + 1, to = first.seq - 1, "event numbers never written (an append failed midway): skipped");
                self.last = first.seq - 1;
            }
            for event in events {
                if event.seq <= self.last {
                    continue;
                }
                if !self.take_next(event) {
                    // A gap inside the page: the next read starts at it.
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn next(&mut self) -> Option<StreamItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done || *self.closed.borrow() {
                return None;
            }
            let poll = tokio::time::sleep(self.config.poll_every);
            let result = tokio::select! {
                received = self.live.recv() => match received {
                    Ok(event) if event.tenant_id != self.tenant || event.seq <= self.last => Ok(()),
                    Ok(event) => {
                        if self.take_next(event) { Ok(()) } else { self.catch_up().await }
                    }
                    // Fell behind the buffer: the log has what was dropped.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.done = true;
                        Ok(())
                    }
                },
                _ = poll => self.catch_up().await,
                _ = self.closed.changed() => {
                    self.done = true;
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::warn!(tenant = %self.tenant, error = %e, "reading the event log failed; the stream ends and the client reconnects");
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, data: Value) -> Event {
        Event {
            tenant_id: TenantId::new(),
            seq: 1,
            kind,
            data,
            at: imix_core::now(),
        }
    }

    fn agent(user: &str) -> Audience {
        Audience {
            user: user.to_owned(),
            all_conversations: false,
            contacts: true,
        }
    }

    #[test]
    fn agents_see_their_own_and_unassigned_conversations_only() {
        let me = agent("u1");
        let received =
            |assignee: Value| event(EventKind::MessageReceived, json!({ "assignee": assignee }));
        assert!(me.sees(&received(Value::Null)));
        assert!(me.sees(&received(json!("u1"))));
        assert!(!me.sees(&received(json!("u2"))));
        // Not saying whom it belongs to: hidden (fails closed).
        assert!(!me.sees(&event(EventKind::MessageReceived, json!({}))));
        let all = Audience {
            all_conversations: true,
            ..agent("u9")
        };
        assert!(all.sees(&received(json!("u2"))));
        assert!(all.sees(&event(EventKind::MessageReceived, json!({}))));
    }

    #[test]
    fn an_assignment_is_shown_to_who_saw_the_conversation_before() {
        let assigned = |to: Value, from: Value, created: bool| {
            event(
                EventKind::ConversationAssigned,
                json!({ "assignee": to, "previous_assignee": from, "new_conversation": created }),
            )
        };
        let (u1, u2, u3) = (agent("u1"), agent("u2"), agent("u3"));
        // Taken from u1, given to u2: both hear it, u3 does not.
        let taken = assigned(json!("u2"), json!("u1"), false);
        assert!(u1.sees(&taken) && u2.sees(&taken) && !u3.sees(&taken));
        // From the unassigned pool: every agent saw it, every agent hears it.
        let picked = assigned(json!("u2"), Value::Null, false);
        assert!(u1.sees(&picked) && u3.sees(&picked));
        // Assigned as it was created: nobody else ever saw it.
        let created = assigned(json!("u2"), Value::Null, true);
        assert!(!u1.sees(&created) && u2.sees(&created));
    }

    #[test]
    fn contact_events_follow_contacts_read() {
        let contact = event(EventKind::ContactCreated, json!({ "contact_id": "c" }));
        assert!(agent("u1").sees(&contact));
        let without = Audience {
            contacts: false,
            ..agent("u1")
        };
        assert!(!without.sees(&contact));
    }
}
