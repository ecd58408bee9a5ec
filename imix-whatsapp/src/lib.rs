//! # imix-whatsapp
//!
//! Owns everything WhatsApp: the Cloud API client trait and its reqwest adapter, webhook
//! signature verification and payload parsing, WhatsApp Business accounts, templates,
//! contacts, conversations and messages, the outbound queue and dispatcher, and a faithful
//! local Graph API simulator (feature `simulator`). Its log events use the target
//! `imix_whatsapp`, which the server also writes to `whatsapp.log`.
#![forbid(unsafe_code)]
