//! Does the customer ask for a human? Then the assistant steps back.
//!
//! The text is normalised first — lower case, Latin diacritics removed (`opérateur` →
//! `operateur`), Arabic diacritics and tatweel removed and letter variants unified
//! (`إنسان`/`أنسان`/`آنسان` → `انسان`, `ة` → `ه`, `ى` → `ي`) — then matched word by word
//! against the phrases of [`HANDOFF_PHRASES`] (Latin) and, as word parts, against
//! [`HANDOFF_ARABIC_STEMS`] (so `الموظف`, `بموظف`, `موظفين` match `موظف`).
//!
//! It errs on the side of a human: "I'm only human" also hands over, which costs an agent a
//! look; missing a real request would leave a customer talking to a machine.

use unicode_normalization::UnicodeNormalization;

/// Latin-script words and phrases (normalised: lower case, no diacritics) that ask for a
/// person: English and French.
pub const HANDOFF_PHRASES: &[&str] = &[
    // English
    "agent",
    "agents",
    "human",
    "humans",
    "a person",
    "real person",
    "live person",
    "representative",
    "operator",
    "someone real",
    "staff member",
    "customer service",
    // French
    "humain",
    "humaine",
    "conseiller",
    "conseillere",
    "une personne",
    "vraie personne",
    "quelqu un de reel",
    "operateur",
    "operatrice",
    "un employe",
    "une employee",
    "service client",
];

/// Arabic stems (normalised) that ask for a person, matched inside words so that articles,
/// prepositions and plural endings still match: employee (`موظف`), human (`انسان`, `بشري`),
/// a real person (`شخص حقيقي` is covered by `حقيقي` next to `شخص`), representative (`مندوب`),
/// customer service (`خدمه العملاء`).
pub const HANDOFF_ARABIC_STEMS: &[&str] = &["موظف", "انسان", "بشري", "مندوب", "خدمه العملاء"];

/// `text` normalised for matching (see the module documentation).
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Compatibility decomposition (NFKD): full-width Latin (`ＡＧＥＮＴ`, typed by Asian
    // keyboards) and Arabic presentation forms (`ﻣﻮﻇﻒ`, pasted from PDFs) are read as the
    // plain letters they stand for.
    for c in text.nfkd() {
        let c = match c {
            // Combining marks (Latin accents after NFD) are dropped.
            '\u{0300}'..='\u{036f}' => continue,
            // Arabic harakat, superscript alef, tatweel.
            '\u{064b}'..='\u{065f}' | '\u{0670}' | '\u{0640}' => continue,
            // Hamza/madda forms of alef after NFD leave a bare alef plus a combining mark
            // (dropped above); the precomposed wasla form is unified here.
            '\u{0671}' => 'ا',
            'ة' => 'ه',
            'ى' => 'ي',
            c => c,
        };
        out.extend(c.to_lowercase());
    }
    out
}

/// Whether `text` (a customer's message) asks for a human.
pub fn asks_for_human(text: &str) -> bool {
    let normalised = normalise(text);
    // Apostrophes separate words too, so French elisions ("l'agent") leave the noun alone.
    let words: Vec<&str> = normalised
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let joined = format!(" {} ", words.join(" "));
    HANDOFF_PHRASES
        .iter()
        .any(|p| joined.contains(&format!(" {p} ")))
        || HANDOFF_ARABIC_STEMS.iter().any(|s| joined.contains(s))
        || (joined.contains("شخص") && joined.contains("حقيقي"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_a_person_in_three_languages() {
        for text in [
            "I want to talk to an AGENT please",
            "Human!",
            "can I speak with a real person?",
            "Je veux parler à un humain",
            "Passez-moi un CONSEILLER",
            "je voudrais parler à une personne",
            "l'agent svp",
            "un opérateur",
            "Une conseillère ?",
            "أريد التحدث مع موظف",
            "الموظف من فضلك",
            "اريد انسان",
            "أريد إنسان",
            "أُرِيدُ إِنْسَانًا",
            "كلموني مع شخص حقيقي",
        ] {
            assert!(asks_for_human(text), "{text}");
        }
    }

    #[test]
    fn ordinary_messages_do_not_hand_over() {
        for text in [
            "What time do you open?",
            "Bonjour, quel est le prix ?",
            "مرحبا، كم السعر؟",
            "agenda for tomorrow",
            "les personnes âgées ont une réduction ?",
            "",
        ] {
            assert!(!asks_for_human(text), "{text}");
        }
    }

    #[test]
    fn full_width_and_presentation_forms_are_read_as_plain_letters() {
        assert!(asks_for_human("ＡＧＥＮＴ"));
        assert!(asks_for_human("ｈｕｍａｎ please"));
        // موظف written with Arabic presentation forms.
        assert!(asks_for_human("\u{FEE3}\u{FEEE}\u{FEC7}\u{FED2}"));
        assert_eq!(normalise("ＡＧＥＮＴ"), "agent");
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("Opérateur"), "operateur");
        assert_eq!(normalise("إنسان"), "انسان");
        assert_eq!(normalise("أَنْسَان"), "انسان");
        assert_eq!(normalise("خدمة"), "خدمه");
    }
}
