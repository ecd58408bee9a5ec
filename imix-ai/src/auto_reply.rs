//! Auto-reply policy: whether the assistant answers a customer's message by itself.
//!
//! Pure decisions on plain facts (settings, business hours, the conversation's state and
//! the customer's text), so that any chat integration can use them; the server gathers the
//! facts, queues the work and sends through its normal path.
//!
//! Auto-reply is off by default. When on for a WhatsApp account it answers an inbound text
//! message when every one of these holds, checked in this order:
//!
//! 1. the conversation has no assignee (an agent owns it otherwise);
//! 2. the conversation is not waiting for a human (a customer asked for one before);
//! 3. the customer's message does not ask for a human ([`crate::handoff`]): if it does, no
//!    answer is sent and the conversation is flagged for the team ([`Decision::HandOff`]);
//! 4. the contact has not opted out, and the message is not itself an opt-out or opt-in
//!    keyword (a `STOP` gets no chatty answer);
//! 5. the mode allows it now: `always`, or `outside_business_hours` while the tenant's
//!    business-hours calendar says closed;
//! 6. the conversation had fewer than `max_replies_per_conversation` auto-replies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hours::BusinessHours;

/// The default of [`AutoReplySettings::max_replies_per_conversation`].
pub const DEFAULT_MAX_REPLIES: u32 = 3;
/// The highest accepted [`AutoReplySettings::max_replies_per_conversation`].
pub const MAX_REPLIES_LIMIT: u32 = 20;

/// When auto-reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoReplyMode {
    /// At any time.
    #[default]
    Always,
    /// Only while the tenant's business hours say closed.
    OutsideBusinessHours,
}

impl AutoReplyMode {
    /// The name used in settings: `always` or `outside_business_hours`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OutsideBusinessHours => "outside_business_hours",
        }
    }

    /// Parses a settings name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "always" => Some(Self::Always),
            "outside_business_hours" => Some(Self::OutsideBusinessHours),
            _ => None,
        }
    }
}

/// One WhatsApp account's auto-reply settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoReplySettings {
    /// Whether auto-reply is on (off by default).
    #[serde(default)]
    pub enabled: bool,
    /// When it answers.
    #[serde(default)]
    pub mode: AutoReplyMode,
    /// At most this many auto-replies per conversation (1 to [`MAX_REPLIES_LIMIT`]).
    #[serde(default = "default_max")]
    pub max_replies_per_conversation: u32,
}

fn default_max() -> u32 {
    DEFAULT_MAX_REPLIES
}

impl Default for AutoReplySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: AutoReplyMode::Always,
            max_replies_per_conversation: DEFAULT_MAX_REPLIES,
        }
    }
}

/// A bad auto-reply setting: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// `enabled`, `mode` or `max_replies_per_conversation`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl AutoReplySettings {
    /// Checks the settings; `has_business_hours`: whether the tenant has a business-hours
    /// calendar (`outside_business_hours` needs one: without it, it would never know when
    /// the business is closed).
    pub fn validate(&self, has_business_hours: bool) -> Result<(), SettingError> {
        if !(1..=MAX_REPLIES_LIMIT).contains(&self.max_replies_per_conversation) {
            return Err(SettingError {
                field: "max_replies_per_conversation",
                message: format!("must be between 1 and {MAX_REPLIES_LIMIT}"),
            });
        }
        if self.mode == AutoReplyMode::OutsideBusinessHours && !has_business_hours {
            return Err(SettingError {
                field: "mode",
                message: "outside_business_hours needs the tenant's business hours: set \
                          business_hours in the tenant's AI settings first"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The facts a decision is made on.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The account's settings.
    pub settings: AutoReplySettings,
    /// The tenant's business hours, if it has a calendar.
    pub business_hours: Option<&'a BusinessHours>,
    /// Now.
    pub now: DateTime<Utc>,
    /// Whether the conversation has an assignee.
    pub assigned: bool,
    /// Whether the conversation already waits for a human (flagged earlier).
    pub waiting_for_human: bool,
    /// Whether the contact opted out of messages.
    pub opted_out: bool,
    /// The customer's message text.
    pub customer_text: &'a str,
    /// Whether the text is an opt-out or opt-in keyword.
    pub opt_keyword: bool,
    /// Auto-replies the conversation already had.
    pub replies_so_far: u32,
}

/// Why no auto-reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Auto-reply is off for the account.
    Disabled,
    /// An agent owns the conversation.
    Assigned,
    /// A customer asked for a human earlier; no agent has taken it up yet.
    WaitingForHuman,
    /// The contact opted out, or the message is an opt-out or opt-in keyword.
    OptedOut,
    /// Mode `outside_business_hours` and the business is open (or has no calendar).
    BusinessOpen,
    /// The conversation had its `max_replies_per_conversation` auto-replies.
    LimitReached,
}

impl SkipReason {
    /// The reason's name (recorded on the job).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Assigned => "assigned",
            Self::WaitingForHuman => "waiting_for_human",
            Self::OptedOut => "opted_out",
            Self::BusinessOpen => "business_open",
            Self::LimitReached => "limit_reached",
        }
    }
}

/// What to do with a customer's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer it with the assistant.
    Reply,
    /// The customer asks for a human: no answer, flag the conversation for the team.
    HandOff,
    /// No answer.
    Skip(SkipReason),
}

/// Decides what auto-reply does with a message (see the module documentation for the
/// order of the checks).
pub fn decide(f: &Facts<'_>) -> Decision {
    if !f.settings.enabled {
        return Decision::Skip(SkipReason::Disabled);
    }
    if f.assigned {
        return Decision::Skip(SkipReason::Assigned);
    }
    if f.waiting_for_human {
        return Decision::Skip(SkipReason::WaitingForHuman);
    }
    if crate::handoff::asks_for_human(f.customer_text) {
        return Decision::HandOff;
    }
    if f.opted_out || f.opt_keyword {
        return Decision::Skip(SkipReason::OptedOut);
    }
    if f.settings.mode == AutoReplyMode::OutsideBusinessHours {
        // Without a calendar the business is never known to be closed.
        let closed = f.business_hours.is_some_and(|h| !h.is_open(f.now));
        if !closed {
            return Decision::Skip(SkipReason::BusinessOpen);
        }
    }
    if f.replies_so_far >= f.settings.max_replies_per_conversation {
        return Decision::Skip(SkipReason::LimitReached);
    }
    Decision::Reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hours::{BusinessHoursSpec, OpenInterval};
    use chrono::TimeZone;

    fn on(mode: AutoReplyMode) -> AutoReplySettings {
        AutoReplySettings {
            enabled: true,
            mode,
            max_replies_per_conversation: 2,
        }
    }

    fn facts<'a>(settings: AutoReplySettings, text: &'a str) -> Facts<'a> {
        Facts {
            settings,
            business_hours: None,
            now: Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap(),
            assigned: false,
            waiting_for_human: false,
            opted_out: false,
            customer_text: text,
            opt_keyword: false,
            replies_so_far: 0,
        }
    }

    fn monday_9_to_17() -> BusinessHours {
        let mut spec = BusinessHoursSpec {
            time_zone: "UTC".into(),
            days: Default::default(),
        };
        spec.days.insert(
            "monday".into(),
            vec![OpenInterval {
                open: "09:00".into(),
                close: "17:00".into(),
            }],
        );
        BusinessHours::parse(&spec).unwrap()
    }

    #[test]
    fn off_by_default() {
        let s = AutoReplySettings::default();
        assert!(!s.enabled);
        assert_eq!(s.max_replies_per_conversation, DEFAULT_MAX_REPLIES);
        assert_eq!(
            decide(&facts(s, "hello")),
            Decision::Skip(SkipReason::Disabled)
        );
        let parsed: AutoReplySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, s);
    }

    #[test]
    fn replies_until_the_limit() {
        let mut f = facts(on(AutoReplyMode::Always), "What time do you open?");
        assert_eq!(decide(&f), Decision::Reply);
        f.replies_so_far = 1;
        assert_eq!(decide(&f), Decision::Reply);
        f.replies_so_far = 2;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::LimitReached));
    }

    #[test]
    fn assigned_flagged_and_opted_out_conversations_get_nothing() {
        let mut f = facts(on(AutoReplyMode::Always), "hello");
        f.assigned = true;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::Assigned));
        let mut f = facts(on(AutoReplyMode::Always), "hello");
        f.waiting_for_human = true;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::WaitingForHuman));
        let mut f = facts(on(AutoReplyMode::Always), "hello");
        f.opted_out = true;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::OptedOut));
        let mut f = facts(on(AutoReplyMode::Always), "STOP");
        f.opt_keyword = true;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::OptedOut));
    }

    #[test]
    fn asking_for_a_human_hands_over_in_three_languages() {
        for text in ["I want a human", "je veux un humain", "أريد موظف", "AGENT"] {
            let f = facts(on(AutoReplyMode::Always), text);
            assert_eq!(decide(&f), Decision::HandOff, "{text}");
            // Even past the limit: the team is told.
            let mut f = facts(on(AutoReplyMode::Always), text);
            f.replies_so_far = 10;
            assert_eq!(decide(&f), Decision::HandOff, "{text}");
        }
        // Once flagged, later messages (even another request) change nothing.
        let mut f = facts(on(AutoReplyMode::Always), "human please");
        f.waiting_for_human = true;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::WaitingForHuman));
    }

    #[test]
    fn outside_business_hours_follows_the_calendar() {
        let hours = monday_9_to_17();
        let mut f = facts(on(AutoReplyMode::OutsideBusinessHours), "hello");
        f.business_hours = Some(&hours);
        // Monday 10:00 UTC: open.
        assert_eq!(decide(&f), Decision::Skip(SkipReason::BusinessOpen));
        // Monday 18:00: closed.
        f.now = Utc.with_ymd_and_hms(2026, 12, 7, 18, 0, 0).unwrap();
        assert_eq!(decide(&f), Decision::Reply);
        // No calendar: never known closed.
        f.business_hours = None;
        assert_eq!(decide(&f), Decision::Skip(SkipReason::BusinessOpen));
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = on(AutoReplyMode::Always);
        assert!(s.validate(false).is_ok());
        s.max_replies_per_conversation = 0;
        assert_eq!(
            s.validate(true).unwrap_err().field,
            "max_replies_per_conversation"
        );
        s.max_replies_per_conversation = MAX_REPLIES_LIMIT + 1;
        assert_eq!(
            s.validate(true).unwrap_err().field,
            "max_replies_per_conversation"
        );
        s.max_replies_per_conversation = MAX_REPLIES_LIMIT;
        s.mode = AutoReplyMode::OutsideBusinessHours;
        assert_eq!(s.validate(false).unwrap_err().field, "mode");
        assert!(s.validate(true).is_ok());
        assert_eq!(AutoReplyMode::parse("always"), Some(AutoReplyMode::Always));
        assert_eq!(
            AutoReplyMode::parse("outside_business_hours"),
            Some(AutoReplyMode::OutsideBusinessHours)
        );
        assert_eq!(AutoReplyMode::parse("sometimes"), None);
    }
}
