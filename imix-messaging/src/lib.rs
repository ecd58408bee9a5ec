//! Messaging for imix: webhook deliveries stored durably before Meta is answered and
//! processed from the store, and the shared inbox's contacts, conversations and messages.
//!
//! A crate of its own beside `imix-whatsapp`: that crate speaks Meta's Graph API (client,
//! webhook format, accounts, templates); this one is the CRM's inbox built on it, so an
//! integrator can use the WhatsApp client without the inbox, or the inbox's records with
//! their own transport.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod assign;
pub mod auto_reply;
pub mod contacts;
mod error;
pub mod events;
pub mod inbox;
pub mod ingest;
pub mod media;
pub mod outbound;
pub mod records;
pub mod search;
pub mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use annotations::AnnotationService;
pub use contacts::ContactService;
pub use error::{MessagingError, Result};
pub use inbox::{Assignees, ConversationPatch, InboxService};
pub use records::{
    AttributeValue, Contact, ContactId, Conversation, ConversationId, ConversationStatus, Delivery,
    DeliveryId, DeliveryState, Direction, HeldStatus, HeldStatusId, Message, MessageId, OptOut,
    StatusEvent,
};
pub use search::SearchService;
