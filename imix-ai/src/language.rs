//! Which language a conversation is in: the contact's if known, else detected from the
//! customer's last messages, else the tenant's default.
//!
//! Detection only has to tell English, French and Arabic apart (the languages imix speaks),
//! on short chat messages. A general detector such as `whatlang` guesses among ~70 languages
//! from trigrams and is unreliable on a few words ("ok merci" is not reliably French to it);
//! three cues are enough and predictable here:
//!
//! 1. Arabic script: if at least 30 % of the letters are Arabic, the text is Arabic.
//! 2. Otherwise French and English stop words are counted, and French-only diacritics
//!    (`é è ê à ç ù â î ô û ë ï œ`) count as French cues.
//! 3. The language with more cues wins; a tie or no cue at all is "unknown", and the caller
//!    falls back to the tenant's default.

use imix_core::Language;

/// French words that are rare in English chat.
const FRENCH_WORDS: &[&str] = &[
    "le",
    "la",
    "les",
    "un",
    "une",
    "des",
    "du",
    "de",
    "et",
    "est",
    "je",
    "tu",
    "vous",
    "nous",
    "il",
    "elle",
    "pour",
    "avec",
    "pas",
    "que",
    "qui",
    "quoi",
    "oui",
    "non",
    "merci",
    "bonjour",
    "bonsoir",
    "salut",
    "svp",
    "stp",
    "mon",
    "ma",
    "mes",
    "votre",
    "vos",
    "dans",
    "sur",
    "au",
    "aux",
    "ce",
    "cette",
    "mais",
    "ou",
    "combien",
    "quand",
    "comment",
    "pourquoi",
    "prix",
    "commande",
    "livraison",
    "ai",
    "suis",
    "veux",
    "voudrais",
    "peux",
    "faire",
    "encore",
];

/// English words that are rare in French chat.
const ENGLISH_WORDS: &[&str] = &[
    "the", "a", "an", "and", "is", "are", "i", "you", "we", "it", "to", "of", "for", "with", "not",
    "that", "what", "yes", "no", "thanks", "thank", "hello", "hi", "please", "my", "your", "in",
    "on", "at", "but", "or", "how", "much", "when", "why", "price", "order", "delivery", "have",
    "want", "would", "can", "do", "does", "this", "there", "where",
];

/// The language of `text`, or `None` when the cues are too weak to tell.
pub fn detect(text: &str) -> Option<Language> {
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    if letters == 0 {
        return None;
    }
    let arabic = text
        .chars()
        .filter(|c| matches!(c, '\u{0600}'..='\u{06ff}' | '\u{0750}'..='\u{077f}' | '\u{08a0}'..='\u{08ff}' | '\u{fb50}'..='\u{fdff}' | '\u{fe70}'..='\u{feff}'))
        .count();
    if arabic * 10 >= letters * 3 {
        return Some(Language::Ar);
    }
    let lower = text.to_lowercase();
    let mut french = lower
        .chars()
        .filter(|c| "éèêàçùâîôûëïœ".contains(*c))
        .count();
    let mut english = 0;
    for word in lower
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
    {
        if FRENCH_WORDS.contains(&word) {
            french += 1;
        }
        if ENGLISH_WORDS.contains(&word) {
            english += 1;
        }
    }
    match french.cmp(&english) {
        std::cmp::Ordering::Greater => Some(Language::Fr),
        std::cmp::Ordering::Less => Some(Language::En),
        std::cmp::Ordering::Equal => None,
    }
}

/// The conversation's language: `contact` when known, else detected from the customer's
/// messages (`customer_texts`, the most recent ones, joined), else `tenant_default`.
pub fn conversation_language<'a>(
    contact: Option<Language>,
    customer_texts: impl IntoIterator<Item = &'a str>,
    tenant_default: Language,
) -> Language {
    if let Some(language) = contact {
        return language;
    }
    let joined: Vec<&str> = customer_texts.into_iter().collect();
    detect(&joined.join("\n")).unwrap_or(tenant_default)
}

/// The language's name in English, as the prompt names it for the model.
pub fn english_name(language: Language) -> &'static str {
    match language {
        Language::En => "English",
        Language::Fr => "French",
        Language::Ar => "Arabic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_three_languages() {
        assert_eq!(
            detect("Bonjour, je voudrais savoir le prix"),
            Some(Language::Fr)
        );
        assert_eq!(detect("ok merci"), Some(Language::Fr));
        assert_eq!(detect("Déjà livré ?"), Some(Language::Fr));
        assert_eq!(
            detect("Hello, what is the price of this?"),
            Some(Language::En)
        );
        assert_eq!(detect("مرحبا، كم السعر؟"), Some(Language::Ar));
        assert_eq!(detect("مرحبا ok"), Some(Language::Ar));
        assert_eq!(detect("👍 123"), None);
        assert_eq!(detect("Zorglub"), None);
    }

    #[test]
    fn contact_then_detection_then_default() {
        assert_eq!(
            conversation_language(Some(Language::Ar), ["Hello there"], Language::Fr),
            Language::Ar
        );
        assert_eq!(
            conversation_language(None, ["Bonjour", "c'est combien ?"], Language::En),
            Language::Fr
        );
        assert_eq!(
            conversation_language(None, ["👍"], Language::Ar),
            Language::Ar
        );
    }
}
