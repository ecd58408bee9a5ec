//! Tenant search over messages and contacts, in any script: the text normalization shared
//! by indexing and querying, the text a message or contact is found by, and
//! [`SearchService`], which answers a query within what the caller may see.
//!
//! Normalization ([`normalize`]) folds what a user does not type reliably: case,
//! compatibility forms (NFKC: ligatures, full-width letters), accents and other combining
//! marks (French `é` → `e`, Arabic harakat), tatweel, Arabic letter variants (`أ إ آ ٱ` →
//! `ا`, `ة` → `ه`, `ى` → `ي`) and Arabic-Indic digits. Tokens are runs of letters and
//! digits. A query matches a record whose tokens contain every query token, the last one as
//! a prefix (the user may still be typing it).
//!
//! The index ([`crate::storage::search`]) is written by the storage adapters in the same
//! write as the record (see there); it may hold stale entries on MongoDB after a crash, so
//! every hit is checked against the record itself before it is returned.

use std::collections::HashMap;

use imix_core::{
    access::{AccessContext, Permission},
    id::TenantId,
    store::Scope,
    Error as CoreError,
};
use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

use crate::{
    error::Result,
    records::{Contact, Conversation, ConversationId, Message},
    storage::{
        search::{SearchHit, SearchKind},
        MessagingStorage,
    },
};

/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most results of each kind one query returns.
pub const MAX_LIMIT: usize = 100;
/// Results of each kind when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 20;
/// How many index hits one query examines at most, newest first, before filtering by what
/// the caller may see: bounds the work of a query matching a large part of a tenant.
pub const MAX_CANDIDATES: usize = 2_000;
/// Longest token kept, in characters (a longer run is cut: it still matches by prefix).
const MAX_TOKEN_CHARS: usize = 64;
/// Most distinct tokens indexed per record.
const MAX_TOKENS: usize = 1_000;
/// Length of a result's snippet, in characters.
const SNIPPET_CHARS: usize = 160;

/// Folds one character after decomposition and case folding; `None` drops it.
fn fold(c: char) -> Option<char> {
    match c {
        // Arabic tatweel (kashida) only stretches a word.
        '\u{0640}' => None,
        // Alef with madda/hamza forms (their decomposed marks are dropped as well) and alef
        // wasla.
        '\u{0622}' | '\u{0623}' | '\u{0625}' | '\u{0671}' => Some('\u{0627}'),
        // Ta marbuta → ha, alef maqsura and Farsi yeh → yeh, keheh → kaf: spelled either
        // way in everyday writing.
        '\u{0629}' => Some('\u{0647}'),
        '\u{0649}' | '\u{06CC}' => Some('\u{064A}'),
        '\u{06A9}' => Some('\u{0643}'),
        // Arabic-Indic and extended Arabic-Indic digits.
        '\u{0660}'..='\u{0669}' => char::from_digit(c as u32 - 0x0660, 10),
        '\u{06F0}'..='\u{06F9}' => char::from_digit(c as u32 - 0x06F0, 10),
        c if is_combining_mark(c) => None,
        c => Some(c),
    }
}

/// `text` as it is indexed and queried: lowercase, compatibility forms folded, combining
/// marks (accents, harakat) and tatweel removed, Arabic letter variants unified, recomposed.
pub fn normalize(text: &str) -> String {
    let lower = text.to_lowercase();
    let mut folded = String::with_capacity(lower.len());
    for c in lower.nfkd().filter_map(fold) {
        // Ligatures NFKD keeps.
        match c {
            'œ' => folded.push_str("oe"),
            'æ' => folded.push_str("ae"),
            'ß' => folded.push_str("ss"),
            c => folded.push(c),
        }
    }
    folded.nfc().collect()
}

/// The tokens of `text` after [`normalize`], in order (repeats kept): runs of letters and
/// digits, each cut to 64 characters.
pub fn tokens(text: &str) -> Vec<String> {
    normalize(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_TOKEN_CHARS).collect())
        .collect()
}

/// The distinct tokens of `text`, sorted, at most 1,000: what the index keeps of a record.
pub fn index_tokens(text: &str) -> Vec<String> {
    let mut all = tokens(text);
    all.sort();
    all.dedup();
    all.truncate(MAX_TOKENS);
    all
}

/// A parsed query: tokens that must each appear, the last one as a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// Tokens that must appear exactly.
    pub exact: Vec<String>,
    /// The token that must begin some token of the record.
    pub prefix: String,
}

impl Terms {
    /// Parses `q`. Blank, over 200 characters or without a letter or digit → 422 naming
    /// `q`. A query of only digits and phone punctuation (`+33 6 12-34`) is one run of
    /// digits, so a phone number typed with spaces finds the contact.
    pub fn parse(q: &str) -> std::result::Result<Self, CoreError> {
        let q = q.trim();
        if q.is_empty() {
            return Err(CoreError::invalid("q", "must not be blank"));
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(CoreError::invalid(
                "q",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let phone_like = q.chars().any(|c| c.is_ascii_digit())
            && q.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let mut all = if phone_like {
            vec![q.chars().filter(char::is_ascii_digit).collect()]
        } else {
            tokens(q)
        };
        let Some(prefix) = all.pop() else {
            return Err(CoreError::invalid("q", "must contain a letter or a digit"));
        };
        all.sort();
        all.dedup();
        all.retain(|t| *t != prefix);
        Ok(Self { exact: all, prefix })
    }

    /// Whether a record with these (distinct) `tokens` matches.
    pub fn matches(&self, tokens: &[String]) -> bool {
        self.exact.iter().all(|t| tokens.contains(t))
            && tokens.iter().any(|t| t.starts_with(&self.prefix))
    }

    /// Whether one token satisfies some term (for placing a snippet).
    fn hits(&self, token: &str) -> bool {
        token.starts_with(&self.prefix) || self.exact.iter().any(|t| t == token)
    }
}

fn push(out: &mut Vec<String>, value: Option<&serde_json::Value>) {
    if let Some(s) = value.and_then(serde_json::Value::as_str) {
        if !s.trim().is_empty() {
            out.push(s.to_owned());
        }
    }
}

/// The text a message is found by, in reading order: the text body, captions, document
/// file names, button and list reply titles (and list descriptions), template button
/// texts, location names and addresses, and the names, phones, e-mails and companies of
/// shared contacts. Media without a caption, reactions and system events have none.
pub fn message_text(message: &Message) -> String {
    let c = &message.content;
    let mut out = Vec::new();
    let at = |p: &str| c.pointer(p);
    push(&mut out, at("/text/body"));
    for kind in ["image", "video", "document", "audio", "sticker"] {
        push(&mut out, at(&format!("/{kind}/caption")));
    }
    push(&mut out, at("/document/filename"));
    push(&mut out, at("/button/text"));
    push(&mut out, at("/interactive/button_reply/title"));
    push(&mut out, at("/interactive/list_reply/title"));
    push(&mut out, at("/interactive/list_reply/description"));
    push(&mut out, at("/interactive/nfm_reply/body"));
    push(&mut out, at("/location/name"));
    push(&mut out, at("/location/address"));
    // Outbound messages (templates, interactive) carry their text here.
    push(&mut out, at("/interactive/body/text"));
    push(&mut out, at("/template/name"));
    if let Some(cards) = at("/contacts").and_then(serde_json::Value::as_array) {
        for card in cards {
            push(&mut out, card.pointer("/name/formatted_name"));
            push(&mut out, card.pointer("/name/first_name"));
            push(&mut out, card.pointer("/name/last_name"));
            push(&mut out, card.pointer("/org/company"));
            for (list, field) in [("phones", "phone"), ("emails", "email")] {
                for item in card
                    .get(list)
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    push(&mut out, item.get(field));
                }
            }
        }
    }
    out.join("\n")
}

/// The text a contact is found by: name, profile name, phone, WhatsApp id, tags, notes and
/// text attributes.
pub fn contact_text(contact: &Contact) -> String {
    let mut out: Vec<&str> = Vec::new();
    out.extend(contact.name.as_deref());
    out.extend(contact.profile_name.as_deref());
    out.extend(contact.phone.as_deref());
    out.push(&contact.wa_id);
    out.extend(contact.tags.iter().map(String::as_str));
    out.extend(contact.notes.as_deref());
    for value in contact.attributes.values() {
        if let crate::records::AttributeValue::Text(t) = value {
            out.push(t);
        }
    }
    out.join("\n")
}

/// A short excerpt of `text` around the first word matching `terms`, on one line.
fn snippet(text: &str, terms: &Terms) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let chars: Vec<char> = flat.chars().collect();
    // The char offset of the first matching word.
    let mut start_of_match = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphanumeric() {
            let begin = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || is_combining_mark(chars[i])) {
                i += 1;
            }
            let word: String = chars[begin..i].iter().collect();
            if tokens(&word).iter().any(|t| terms.hits(t)) {
                start_of_match = begin;
                break;
            }
        } else {
            i += 1;
        }
    }
    let from = start_of_match.saturating_sub(40);
    let mut out: String = chars[from..].iter().take(SNIPPET_CHARS).collect();
    if from > 0 {
        out.insert(0, '…');
    }
    if chars.len() - from > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// A message found, with an excerpt of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageMatch {
    /// The message.
    pub message: Message,
    /// An excerpt around the first match.
    pub snippet: String,
}

/// What a search found, each kind bounded by the limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchResults {
    /// Messages, newest first (Meta's timestamp).
    pub messages: Vec<MessageMatch>,
    /// Contacts, most recently changed first.
    pub contacts: Vec<Contact>,
}

/// Answers searches within what the caller may see.
#[derive(Clone)]
pub struct SearchService {
    storage: MessagingStorage,
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService").finish_non_exhaustive()
    }
}

impl SearchService {
    /// Search over `storage`.
    pub fn new(storage: MessagingStorage) -> Self {
        Self { storage }
    }

    /// The tenant's messages and contacts matching `q`, at most `limit` (default 20, 1 to
    /// 100, else 422 naming `limit`) of each. Messages need `conversations.read` (and, for conversations
    /// assigned to someone else, `conversations.read_all`), contacts `contacts.read`;
    /// another tenant is "not found"; a bad `q` is 422 naming `q`.
    pub async fn search(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        q: &str,
        limit: Option<usize>,
    ) -> Result<SearchResults> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        let terms = Terms::parse(q)?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(CoreError::invalid(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}, got {n}"),
                )
                .into())
            }
        };
        let mut results = SearchResults::default();

        let hits = self
            .storage
            .search
            .search(tenant, SearchKind::Message, &terms, MAX_CANDIDATES)
            .await?;
        let read_all = ctx.has(Permission::ConversationsReadAll);
        let mut seen: HashMap<ConversationId, bool> = HashMap::new();
        for hit in hits {
            if results.messages.len() >= limit {
                break;
            }
            let Some(message) = self.found_message(scope, &hit, &terms).await? else {
                continue;
            };
            if !read_all {
                let visible = match seen.get(&message.conversation_id) {
                    Some(v) => *v,
                    None => {
                        let v = match self
                            .storage
                            .conversations
                            .get(scope, message.conversation_id)
                            .await
                        {
                            Ok(c) => visible_to(ctx, &c),
                            Err(CoreError::NotFound { .. }) => false,
                            Err(e) => return Err(e.into()),
                        };
                        seen.insert(message.conversation_id, v);
                        v
                    }
                };
                if !visible {
                    continue;
                }
            }
            let snippet = snippet(&message_text(&message), &terms);
            results.messages.push(MessageMatch { message, snippet });
        }

        if ctx.authorize(Permission::ContactsRead, tenant).is_ok() {
            let hits = self
                .storage
                .search
                .search(tenant, SearchKind::Contact, &terms, MAX_CANDIDATES)
                .await?;
            for hit in hits {
                if results.contacts.len() >= limit {
                    break;
                }
                let Ok(id) = hit.record_id.parse() else {
                    continue;
                };
                let contact = match self.storage.contacts.get(scope, id).await {
                    Ok(c) => c,
                    // Deleted since (a stale entry): not a result.
                    Err(CoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                if contact.tenant_id == tenant
                    && terms.matches(&index_tokens(&contact_text(&contact)))
                {
                    results.contacts.push(contact);
                }
            }
        }
        Ok(results)
    }

    /// The message of `hit` if it still exists in the tenant and still matches.
    async fn found_message(
        &self,
        scope: Scope,
        hit: &SearchHit,
        terms: &Terms,
    ) -> Result<Option<Message>> {
        let Ok(id) = hit.record_id.parse() else {
            return Ok(None);
        };
        match self.storage.messages.get(scope, id).await {
            Ok(m) if terms.matches(&index_tokens(&message_text(&m))) => Ok(Some(m)),
            Ok(_) | Err(CoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether the caller sees conversation `c` (as the inbox decides).
fn visible_to(ctx: &AccessContext, c: &Conversation) -> bool {
    ctx.has(Permission::ConversationsReadAll) || c.assignee.is_none_or(|a| a == ctx.user_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_accents_case_and_ligatures_fold() {
        assert_eq!(normalize("Ça coûte combien?"), "ca coute combien?");
        assert_eq!(tokens("Ça coûte combien?"), ["ca", "coute", "combien"]);
        assert_eq!(normalize("ŒUVRE Straße ﬁn"), "oeuvre strasse fin");
        assert_eq!(normalize("ＡＢＣ１２"), "abc12");
    }

    #[test]
    fn arabic_harakat_tatweel_and_letter_variants_fold() {
        // "marhaban" with and without harakat, with tatweel.
        assert_eq!(normalize("مَرْحَبًا"), normalize("مرحبا"));
        assert_eq!(normalize("مـــرحبا"), "مرحبا");
        assert_eq!(normalize("أحمد"), "احمد");
        assert_eq!(normalize("إسلام آمن"), "اسلام امن");
        assert_eq!(normalize("مدرسة"), "مدرسه");
        assert_eq!(normalize("على"), "علي");
        assert_eq!(normalize("١٢٣"), "123");
        assert_eq!(tokens("السِّعْرُ، كَمْ؟"), ["السعر", "كم"]);
    }

    #[test]
    fn queries_need_every_token_and_the_last_as_a_prefix() {
        let t = Terms::parse("  coût COMB ").unwrap();
        assert_eq!(t.exact, ["cout"]);
        assert_eq!(t.prefix, "comb");
        let doc = index_tokens("Ça coûte combien? Le coût.");
        assert!(t.matches(&doc));
        assert!(!Terms::parse("cout combien prix").unwrap().matches(&doc));
        assert!(Terms::parse("cout").unwrap().matches(&doc));
        // A non-last token must match whole.
        assert!(!Terms::parse("cou combien").unwrap().matches(&doc));
    }

    #[test]
    fn phone_queries_collapse_to_digits() {
        let t = Terms::parse("+33 6 12-34").unwrap();
        assert!(t.exact.is_empty());
        assert_eq!(t.prefix, "3361234");
    }

    #[test]
    fn blank_long_or_wordless_queries_name_q() {
        for q in ["", "   ", "?!", &"a".repeat(201)] {
            match Terms::parse(q) {
                Err(CoreError::Invalid { field, .. }) => assert_eq!(field, "q"),
                other => panic!("{q:?}: {other:?}"),
            }
        }
        assert!(Terms::parse(&"a".repeat(200)).is_ok());
    }

    #[test]
    fn snippets_start_near_the_match() {
        let long = format!("{} needle here", "word ".repeat(60));
        let t = Terms::parse("needle").unwrap();
        let s = snippet(&long, &t);
        assert!(s.starts_with('…'));
        assert!(s.contains("needle"));
        assert_eq!(
            snippet("Ça coûte\ncombien", &Terms::parse("cout").unwrap()),
            "Ça coûte combien"
        );
    }
}
