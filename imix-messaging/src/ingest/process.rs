//! Processing a stored delivery: every entry × every change × every message and status,
//! each filed under the account that owns its number — only if that account's secret
//! verified the delivery. Safe to run twice on one delivery (a worker that died after
//! storing half of it, a lease taken over): a message is stored once per
//! `(phone_number_id, wamid)`, and a conversation changes only when its message was new.

use std::sync::Arc;

use imix_core::{
    store::{ConflictBackoff, Scope},
    Error as CoreError, Timestamp,
};
use serde_json::Value;

use crate::{
    error::{MessagingError, Result},
    events::{EventSink, NewEvent, NoEvents},
    ingest::receive::{AccountDirectory, AccountKey},
    records::{
        Contact, Conversation, ConversationStatus, Delivery, DeliveryState, Direction, HeldStatus,
        HeldStatusId, Message, MessageId, OptOut, StatusEvent,
    },
    storage::MessagingStorage,
};

/// What processing one delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessReport {
    /// Messages stored now.
    pub messages_stored: u32,
    /// Messages already stored (redeliveries).
    pub messages_duplicate: u32,
    /// Statuses applied to their message.
    pub statuses_applied: u32,
    /// Statuses held until their message appears.
    pub statuses_held: u32,
    /// Changes of numbers not verified for this delivery (logged, not filed).
    pub unattributed: u32,
}

/// Turns stored deliveries into contacts, conversations, messages and statuses.
#[derive(Clone)]
pub struct Processor {
    storage: MessagingStorage,
    accounts: Arc<dyn AccountDirectory>,
    account_events: Arc<dyn crate::ingest::AccountEvents>,
    events: Arc<dyn EventSink>,
    /// Creates the media jobs of inbound media messages ([`crate::media`]).
    media: Option<crate::media::MediaQueue>,
    /// Assigns new and reopened unassigned conversations when the tenant turned it on.
    round_robin: Option<crate::assign::RoundRobin>,
    /// Mirrors statuses of messages sent through the send API onto their outbound record.
    outbound: Option<crate::outbound::OutboundStatuses>,
    /// Creates the auto-reply jobs of inbound text messages ([`crate::auto_reply`]).
    auto_reply: Option<crate::auto_reply::AutoReplyQueue>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").finish_non_exhaustive()
    }
}

/// Meta's `timestamp` (Unix seconds as a string, sometimes a number).
fn meta_time(value: Option<&Value>) -> Option<Timestamp> {
    let secs = match value? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    let at = chrono::DateTime::from_timestamp(secs, 0)?;
    // WhatsApp did not exist before 2009, and Meta's clock is not days ahead of ours: a
    // time outside that is not believed (the caller uses the receive time).
    let earliest = chrono::DateTime::from_timestamp(1_230_768_000, 0)?;
    let latest = imix_core::now() + chrono::Duration::days(1);
    (earliest..=latest).contains(&at).then_some(at)
}

/// Text shown to users (profile names, previews) without control characters (NUL, escape
/// sequences, bidirectional overrides).
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// A WhatsApp id as Meta reports it: digits only, at most 20.
fn valid_wa_id(wa_id: &str) -> bool {
    !wa_id.is_empty() && wa_id.len() <= 20 && wa_id.bytes().all(|b| b.is_ascii_digit())
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The state a status string reports; `None` for one we don't know (kept out).
fn state_of(status: &str) -> Option<DeliveryState> {
    match status {
        "accepted" => Some(DeliveryState::Accepted),
        "sent" => Some(DeliveryState::Sent),
        "delivered" => Some(DeliveryState::Delivered),
        "read" | "played" => Some(DeliveryState::Read),
        "failed" => Some(DeliveryState::Failed),
        _ => None,
    }
}

/// The state after `event` arrives at a message in `current`: only forward, `failed` from
/// anywhere and final.
pub fn advance(current: DeliveryState, event: DeliveryState) -> DeliveryState {
    match (current, event) {
        (DeliveryState::Failed, _) => DeliveryState::Failed,
        (_, DeliveryState::Failed) => DeliveryState::Failed,
        (DeliveryState::Received, _) => DeliveryState::Received,
        (c, e) if e > c => e,
        (c, _) => c,
    }
}

/// Keywords that opt a contact out of marketing, compared trimmed and case-folded.
const OPT_OUT_WORDS: &[&str] = &["stop", "arret", "arrêt", "unsubscribe", "توقف"];
/// Keywords that opt a contact back in.
const OPT_IN_WORDS: &[&str] = &["start", "demarrer", "démarrer", "ابدأ"];

/// Whether an inbound text opts out (`Some(true)`), back in (`Some(false)`), or neither.
pub fn opt_out_intent(body: &str) -> Option<bool> {
    let word = body.trim().to_lowercase();
    if OPT_OUT_WORDS.contains(&word.as_str()) {
        Some(true)
    } else if OPT_IN_WORDS.contains(&word.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// A short preview of a message for the inbox list.
fn preview(kind: &str, message: &Value) -> String {
    let body = match kind {
        "text" => text(message, "/text/body"),
        "button" => text(message, "/button/text"),
        "interactive" => text(message, "/interactive/button_reply/title")
            .or_else(|| text(message, "/interactive/list_reply/title")),
        "reaction" => text(message, "/reaction/emoji"),
        "image" | "video" | "document" => text(message, &format!("/{kind}/caption")),
        _ => None,
    };
    let shown = body.map_or_else(|| format!("[{kind}]"), printable);
    shown.chars().take(120).collect()
}

impl Processor {
    /// A processor over `storage`, finding accounts in `accounts`.
    pub fn new(storage: MessagingStorage, accounts: Arc<dyn AccountDirectory>) -> Self {
        Self {
            storage,
            accounts,
            account_events: Arc::new(crate::ingest::IgnoreAccountEvents),
            events: Arc::new(NoEvents),
            media: None,
            round_robin: None,
            outbound: None,
            auto_reply: None,
        }
    }

    /// The same processor, creating an auto-reply job in `auto_reply` for each inbound text
    /// message of an account with auto-reply on, once the message and its conversation are
    /// stored.
    pub fn with_auto_reply(mut self, auto_reply: crate::auto_reply::AutoReplyQueue) -> Self {
        self.auto_reply = Some(auto_reply);
        self
    }

    /// Makes sure `message` has its auto-reply job, if it should have one.
    async fn enqueue_auto_reply(&self, message: &Message) -> Result<()> {
        match &self.auto_reply {
            Some(queue) => queue.enqueue(message).await,
            None => Ok(()),
        }
    }

    /// The same processor, mirroring the statuses of outbound messages onto their
    /// outbound records with `outbound` (the send API's view of them).
    pub fn with_outbound(mut self, outbound: crate::outbound::OutboundStatuses) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// A message the dispatcher just stored after Meta accepted it: applies the statuses
    /// held for its wamid (status webhooks that raced Meta's answer to the send).
    pub async fn outbound_message_stored(
        &self,
        tenant: imix_core::id::TenantId,
        message: &Message,
    ) -> Result<()> {
        // Only the tenant and the number are read from the key: the secret is not needed
        // to apply statuses already verified when they were held.
        let account = AccountKey {
            account_id: message.account_id,
            tenant_id: tenant,
            phone_number_id: message.phone_number_id.clone(),
            app_secret: secrecy::SecretString::from(String::new()),
        };
        let mut report = ProcessReport::default();
        self.apply_held(&account, message, &mut report).await
    }

    /// Tells the outbound records of a status recorded on an outbound message.
    async fn mirror_outbound(
        &self,
        tenant: imix_core::id::TenantId,
        message: &Message,
        event: &StatusEvent,
    ) -> Result<()> {
        match &self.outbound {
            Some(o) if message.direction == Direction::Outbound => {
                o.apply(
                    tenant,
                    message.id,
                    event.state,
                    event.at,
                    event.errors.as_ref(),
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// The same processor, assigning new conversations (and resolved, unassigned ones an
    /// inbound message reopens) with `round_robin` when their tenant turned it on.
    pub fn with_round_robin(mut self, round_robin: crate::assign::RoundRobin) -> Self {
        self.round_robin = Some(round_robin);
        self
    }

    /// The next assignee of `tenant`'s round-robin, if it is on and there are agents.
    async fn auto_assignee(
        &self,
        tenant: imix_core::id::TenantId,
    ) -> Result<Option<imix_core::id::UserId>> {
        match &self.round_robin {
            Some(rr) => rr.next_assignee(tenant).await,
            None => Ok(None),
        }
    }

    /// The same processor, creating a media job in `media` for each inbound message with
    /// media (image, audio, video, document, sticker).
    pub fn with_media(mut self, media: crate::media::MediaQueue) -> Self {
        self.media = Some(media);
        self
    }

    /// Makes sure `message` has its media job, if it has media.
    async fn enqueue_media(&self, message: &Message) -> Result<()> {
        match &self.media {
            Some(queue) => queue.enqueue(message).await,
            None => Ok(()),
        }
    }

    /// The same processor, reporting what it changes to `events` (live events).
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// The same processor, recording account changes (template statuses, quality ratings,
    /// account updates) with `account_events`.
    pub fn with_account_events(
        mut self,
        account_events: Arc<dyn crate::ingest::AccountEvents>,
    ) -> Self {
        self.account_events = account_events;
        self
    }

    /// A change about a WABA (no phone number): applied to each of its accounts this
    /// delivery was verified for.
    async fn waba_change(
        &self,
        delivery: &Delivery,
        waba_id: &str,
        change: &Value,
        report: &mut ProcessReport,
    ) -> Result<()> {
        let field = change.get("field").and_then(Value::as_str).unwrap_or("");
        let Some(value) = change.get("value") else {
            return Ok(());
        };
        let keys = self.accounts.by_waba_id(waba_id).await?;
        let verified: Vec<_> = keys
            .iter()
            .filter(|k| delivery.verified_accounts.contains(&k.account_id))
            .collect();
        if verified.is_empty() {
            report.unattributed += 1;
            tracing::warn!(target: "imix_whatsapp", delivery = %delivery.id, %waba_id, %field, "webhook change of a WABA not verified for this delivery: not filed");
            return Ok(());
        }
        for key in verified {
            self.account_events
                .apply(key.account_id, field, value)
                .await?;
        }
        Ok(())
    }

    /// Processes every entry of `delivery`.
    pub async fn process(&self, delivery: &Delivery) -> Result<ProcessReport> {
        let payload: Value =
            serde_json::from_str(&delivery.body).map_err(|source| MessagingError::Malformed {
                delivery: delivery.id,
                source,
            })?;
        let mut report = ProcessReport::default();
        // Stored by an older receiver without the depth check: skipped, never processed
        // into a document the store cannot hold.
        if crate::ingest::nesting_depth(&payload) > crate::ingest::MAX_DELIVERY_DEPTH {
            tracing::warn!(target: "imix_whatsapp", delivery = %delivery.id, "webhook delivery nested too deeply: skipped");
            return Ok(report);
        }
        let entries = payload.get("entry").and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            let changes = entry.get("changes").and_then(Value::as_array);
            for change in changes.into_iter().flatten() {
                if change.pointer("/value/metadata/phone_number_id").is_none() {
                    let waba = entry.get("id").and_then(Value::as_str).unwrap_or("");
                    self.waba_change(delivery, waba, change, &mut report)
                        .await?;
                    continue;
                }
                self.change(delivery, change, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn change(
        &self,
        delivery: &Delivery,
        change: &Value,
        report: &mut ProcessReport,
    ) -> Result<()> {
        let Some(value) = change.get("value") else {
            return Ok(());
        };
        let Some(phone_number_id) = text(value, "/metadata/phone_number_id") else {
            return Ok(());
        };
        let account = match self.accounts.by_phone_number_id(phone_number_id).await? {
            Some(key) if delivery.verified_accounts.contains(&key.account_id) => key,
            _ => {
                report.unattributed += 1;
                tracing::warn!(
                    target: "imix_whatsapp",
                    delivery = %delivery.id,
                    %phone_number_id,
                    "webhook change of a number not verified for this delivery: not filed"
                );
                return Ok(());
            }
        };
        let field = change.get("field").and_then(Value::as_str).unwrap_or("");
        if field != "messages" {
            return self
                .account_events
                .apply(account.account_id, field, value)
                .await;
        }
        let messages = value.get("messages").and_then(Value::as_array);
        for message in messages.into_iter().flatten() {
            self.inbound(&account, value, message, report).await?;
        }
        let statuses = value.get("statuses").and_then(Value::as_array);
        for status in statuses.into_iter().flatten() {
            self.status(&account, status, report).await?;
        }
        Ok(())
    }

    /// The tenant's contact for `wa_id`, created if new (a concurrent creation wins and is
    /// used). Contacts from inbound messages are never refused for a limit.
    async fn contact(
        &self,
        account: &AccountKey,
        wa_id: &str,
        profile: Option<&str>,
    ) -> Result<Contact> {
        let contacts = &self.storage.contacts;
        if let Some(found) = contacts.find_by_wa_id(account.tenant_id, wa_id).await? {
            return Ok(found);
        }
        let mut contact = Contact::new(account.tenant_id, wa_id);
        contact.profile_name = profile.map(printable);
        contact.phone = Some(format!("+{wa_id}"));
        match contacts.insert(&contact).await {
            Ok(()) => {
                self.events.publish(NewEvent::contact(&contact, true)).await;
                Ok(contact)
            }
            Err(CoreError::Duplicate { .. }) => contacts
                .find_by_wa_id(account.tenant_id, wa_id)
                .await?
                .ok_or_else(|| {
                    MessagingError::Store(CoreError::NotFound {
                        entity: "contact",
                        id: wa_id.to_owned(),
                    })
                }),
            Err(e) => Err(e.into()),
        }
    }

    async fn conversation(&self, account: &AccountKey, contact: &Contact) -> Result<Conversation> {
        let conversations = &self.storage.conversations;
        if let Some(found) = conversations.find(account.account_id, contact.id).await? {
            return Ok(found);
        }
        let mut conversation = Conversation::new(account.tenant_id, account.account_id, contact.id);
        // Picked before the insert, so that the conversation never shows as unassigned to
        // every agent; if a concurrent insert wins, this turn of the rotation is skipped.
        conversation.assignee = self.auto_assignee(account.tenant_id).await?;
        match conversations.insert(&conversation).await {
            Ok(()) => {
                self.events
                    .publish(NewEvent::conversation(&conversation, true))
                    .await;
                if conversation.assignee.is_some() {
                    self.events
                        .publish(NewEvent::conversation_assigned(&conversation, None, true))
                        .await;
                }
                Ok(conversation)
            }
            Err(CoreError::Duplicate { .. }) => conversations
                .find(account.account_id, contact.id)
                .await?
                .ok_or_else(|| {
                    MessagingError::Store(CoreError::NotFound {
                        entity: "conversation",
                        id: contact.id.to_string(),
                    })
                }),
            Err(e) => Err(e.into()),
        }
    }

    async fn inbound(
        &self,
        account: &AccountKey,
        value: &Value,
        message: &Value,
        report: &mut ProcessReport,
    ) -> Result<()> {
        let (Some(wamid), Some(from)) = (text(message, "/id"), text(message, "/from")) else {
            tracing::warn!(target: "imix_whatsapp", account = %account.account_id, "inbound message without id or sender: skipped");
            return Ok(());
        };
        if !valid_wa_id(from) || wamid.is_empty() || wamid.len() > 256 {
            tracing::warn!(target: "imix_whatsapp", account = %account.account_id, "inbound message with a malformed sender or id: skipped");
            return Ok(());
        }
        if let Some(known) = self
            .storage
            .messages
            .find_by_wamid(&account.phone_number_id, wamid)
            .await?
        {
            report.messages_duplicate += 1;
            // A worker that died after storing the message may not have made its job.
            self.enqueue_media(&known).await?;
            self.enqueue_auto_reply(&known).await?;
            return Ok(());
        }
        let profile = value
            .get("contacts")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| text(c, "/wa_id") == Some(from))
                    .or_else(|| cs.first())
            })
            .and_then(|c| text(c, "/profile/name"));
        let contact = self.contact(account, from, profile).await?;
        let conversation = self.conversation(account, &contact).await?;
        let kind = text(message, "/type").unwrap_or("unknown").to_owned();
        let timestamp = meta_time(message.get("timestamp")).unwrap_or_else(imix_core::now);
        let stored = Message {
            auto_reply: false,
            id: MessageId::new(),
            tenant_id: account.tenant_id,
            account_id: account.account_id,
            phone_number_id: account.phone_number_id.clone(),
            conversation_id: conversation.id,
            contact_id: contact.id,
            wamid: wamid.to_owned(),
            direction: Direction::Inbound,
            kind: kind.clone(),
            content: message.clone(),
            timestamp,
            state: DeliveryState::Received,
            statuses: Vec::new(),
            version: 1,
            created_at: imix_core::now(),
        };
        // A resolved, unassigned conversation this message reopens gets the next agent.
        let mut reopen_assignee = None;
        match self.storage.messages.insert(&stored).await {
            Ok(()) => {
                report.messages_stored += 1;
                self.enqueue_media(&stored).await?;
                if conversation.status == ConversationStatus::Resolved
                    && conversation.assignee.is_none()
                {
                    reopen_assignee = self.auto_assignee(account.tenant_id).await?;
                }
                self.events
                    .publish(
                        NewEvent::message_received(&stored)
                            .for_assignee(reopen_assignee.or(conversation.assignee)),
                    )
                    .await;
            }
            // Another worker stored it first: it also updates the conversation.
            Err(CoreError::Duplicate { .. }) => {
                report.messages_duplicate += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let scope = Scope::Tenant(account.tenant_id);
        let shown = preview(&kind, message);
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = self
                .storage
                .conversations
                .get(scope, conversation.id)
                .await?;
            if c.last_message_at.is_none_or(|t| t <= timestamp) {
                c.last_message_at = Some(timestamp);
                c.preview = Some(shown.clone());
            }
            if c.last_inbound_at.is_none_or(|t| t < timestamp) {
                c.last_inbound_at = Some(timestamp);
            }
            c.unread = c.unread.saturating_add(1);
            let before = c.assignee;
            if c.status == ConversationStatus::Resolved {
                c.status = ConversationStatus::Open;
                if c.assignee.is_none() {
                    c.assignee = reopen_assignee;
                }
            }
            c.updated_at = imix_core::now();
            match self.storage.conversations.update(scope, &c).await {
                Ok(updated) => {
                    self.events
                        .publish(NewEvent::conversation(&updated, false))
                        .await;
                    if updated.assignee != before {
                        self.events
                            .publish(NewEvent::conversation_assigned(&updated, before, false))
                            .await;
                    }
                    break;
                }
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if kind == "text" {
            if let Some(intent) = text(message, "/text/body").and_then(opt_out_intent) {
                self.record_opt_out(account, &contact, intent, stored.id, timestamp)
                    .await?;
            }
        }
        // After the conversation's update: the answer needs its 24-hour window open.
        self.enqueue_auto_reply(&stored).await?;
        // Statuses that raced their message.
        self.apply_held(account, &stored, report).await
    }

    /// Takes the statuses held for `message` and applies them. One that cannot be applied
    /// is held again with those after it, so a retry of the delivery finds them.
    async fn apply_held(
        &self,
        account: &AccountKey,
        message: &Message,
        report: &mut ProcessReport,
    ) -> Result<()> {
        let held = self
            .storage
            .held_statuses
            .take(&account.phone_number_id, &message.wamid)
            .await?;
        for (i, status) in held.iter().enumerate() {
            if let Err(e) = self.apply(account, message, status.event.clone()).await {
                for rest in &held[i..] {
                    self.storage.held_statuses.insert(rest).await?;
                }
                return Err(e);
            }
            report.statuses_applied += 1;
        }
        Ok(())
    }

    async fn record_opt_out(
        &self,
        account: &AccountKey,
        contact: &Contact,
        opted_out: bool,
        message: MessageId,
        at: Timestamp,
    ) -> Result<()> {
        let scope = Scope::Tenant(account.tenant_id);
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = self.storage.contacts.get(scope, contact.id).await?;
            // An older keyword arriving late does not undo a newer one.
            if c.opt_out.as_ref().is_some_and(|o| o.at > at) {
                return Ok(());
            }
            c.opt_out = Some(OptOut {
                opted_out,
                at,
                source: "message".into(),
                message_id: Some(message),
            });
            c.updated_at = imix_core::now();
            match self.storage.contacts.update(scope, &c).await {
                Ok(updated) => {
                    self.events
                        .publish(NewEvent::contact(&updated, false))
                        .await;
                    return Ok(());
                }
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn status(
        &self,
        account: &AccountKey,
        status: &Value,
        report: &mut ProcessReport,
    ) -> Result<()> {
        let (Some(wamid), Some(kind)) = (text(status, "/id"), text(status, "/status")) else {
            return Ok(());
        };
        let Some(state) = state_of(kind) else {
            tracing::info!(target: "imix_whatsapp", %wamid, status = %kind, "status of an unknown kind: skipped");
            return Ok(());
        };
        let event = StatusEvent {
            state,
            at: meta_time(status.get("timestamp")).unwrap_or_else(imix_core::now),
            errors: status.get("errors").cloned(),
            pricing: status.get("pricing").cloned(),
            conversation: status.get("conversation").cloned(),
        };
        match self
            .storage
            .messages
            .find_by_wamid(&account.phone_number_id, wamid)
            .await?
        {
            Some(message) => {
                self.apply(account, &message, event).await?;
                report.statuses_applied += 1;
            }
            None => {
                self.storage
                    .held_statuses
                    .insert(&HeldStatus {
                        id: HeldStatusId::new(),
                        phone_number_id: account.phone_number_id.clone(),
                        wamid: wamid.to_owned(),
                        event,
                        received_at: imix_core::now(),
                    })
                    .await?;
                report.statuses_held += 1;
                // The message may have been stored (by a concurrent delivery, on this
                // worker or another replica) between the look-up and the hold; its
                // processing then took no held status. Look again: whichever side takes
                // the held status applies it, and `take` hands it to only one.
                if let Some(message) = self
                    .storage
                    .messages
                    .find_by_wamid(&account.phone_number_id, wamid)
                    .await?
                {
                    self.apply_held(account, &message, report).await?;
                }
            }
        }
        Ok(())
    }

    /// Records `event` on the message and moves its state forward (never back).
    async fn apply(
        &self,
        account: &AccountKey,
        message: &Message,
        event: StatusEvent,
    ) -> Result<()> {
        let scope = Scope::Tenant(account.tenant_id);
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut m = self.storage.messages.get(scope, message.id).await?;
            if m.statuses.contains(&event) {
                // A redelivered status (mirrored again: the first mirror may have failed).
                return self.mirror_outbound(account.tenant_id, &m, &event).await;
            }
            m.state = advance(m.state, event.state);
            m.statuses.push(event.clone());
            match self.storage.messages.update(scope, &m).await {
                Ok(updated) => {
                    self.mirror_outbound(account.tenant_id, &updated, &event)
                        .await?;
                    let event = NewEvent::message_status_changed(&updated);
                    // Agents see it by whom the conversation is assigned to now; if that
                    // cannot be read, only those who see every conversation do.
                    let event = match self
                        .storage
                        .conversations
                        .get(scope, updated.conversation_id)
                        .await
                    {
                        Ok(c) => event.for_assignee(c.assignee),
                        Err(_) => event,
                    };
                    self.events.publish(event).await;
                    return Ok(());
                }
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MessagingError::Store(CoreError::VersionConflict {
            entity: "message",
            id: message.id.to_string(),
            expected: message.version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward_and_failed_is_final() {
        use DeliveryState::*;
        assert_eq!(advance(Sent, Delivered), Delivered);
        assert_eq!(
            advance(Read, Sent),
            Read,
            "a late 'sent' does not undo 'read'"
        );
        assert_eq!(advance(Delivered, Delivered), Delivered);
        assert_eq!(advance(Read, Failed), Failed);
        assert_eq!(advance(Failed, Read), Failed);
        assert_eq!(advance(Received, Read), Received);
    }

    #[test]
    fn opt_out_keywords_in_three_languages_any_case_trimmed() {
        for word in ["STOP", " stop ", "Arrêt", "ARRET", "توقف"] {
            assert_eq!(opt_out_intent(word), Some(true), "{word}");
        }
        for word in ["START", "démarrer", "ابدأ"] {
            assert_eq!(opt_out_intent(word), Some(false), "{word}");
        }
        assert_eq!(opt_out_intent("please stop calling"), None);
    }

    #[test]
    fn meta_timestamps_are_seconds_as_strings_or_numbers() {
        let t = meta_time(Some(&Value::from("1700000000"))).unwrap();
        assert_eq!(t.timestamp(), 1_700_000_000);
        assert_eq!(meta_time(Some(&Value::from(1_700_000_000))), Some(t));
        assert_eq!(meta_time(Some(&Value::from("soon"))), None);
        assert_eq!(
            meta_time(Some(&Value::from("8000000000000"))),
            None,
            "far future"
        );
        assert_eq!(meta_time(Some(&Value::from("-5"))), None, "before WhatsApp");
    }

    #[test]
    fn shown_text_loses_control_characters_and_senders_must_be_digits() {
        assert_eq!(printable("N\0\u{202e}x\u{1b}[31m"), "Nx[31m");
        assert_eq!(printable("Aïcha عائشة"), "Aïcha عائشة");
        assert!(valid_wa_id("22245000001"));
        assert!(!valid_wa_id(""));
        assert!(!valid_wa_id("+22245000001"));
        assert!(!valid_wa_id(&"9".repeat(21)));
    }
}
