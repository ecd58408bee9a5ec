//! Server-rendered HTML pages that emailed links lead to. They need no console: plain HTML
//! forms, inline CSS, no script and no external asset, under a strict Content-Security-Policy.

pub mod set_password;

use imix_core::Language;
use poem::Request;

/// The page language: `?lang=` when it names a supported language, else the best supported
/// one of `Accept-Language` (by q-value), else English.
pub fn negotiate_language(lang_param: Option<&str>, req: &Request) -> Language {
    if let Some(lang) = lang_param.and_then(parse_language) {
        return lang;
    }
    req.header(poem::http::header::ACCEPT_LANGUAGE)
        .and_then(from_accept_language)
        .unwrap_or_default()
}

fn parse_language(tag: &str) -> Option<Language> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    Language::ALL.into_iter().find(|l| l.code() == primary)
}

/// The supported language with the highest q-value in an `Accept-Language` header.
fn from_accept_language(header: &str) -> Option<Language> {
    let mut best: Option<(f32, Language)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(parse_language) else {
            continue;
        };
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, lang)| lang)
}

/// Escapes text for HTML content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The headers every page answers with: HTML, never cached, never framed, no referrer (the
/// URL can hold a single-use token), and a Content-Security-Policy that allows only the
/// inline style and forms posting to this server.
pub fn html_response(status: poem::http::StatusCode, body: String) -> poem::Response {
    poem::Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(poem::http::header::CACHE_CONTROL, "no-store")
        .header(poem::http::header::REFERRER_POLICY, "no-referrer")
        .header(poem::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(poem::http::header::X_FRAME_OPTIONS, "DENY")
        .header(
            poem::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'",
        )
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported() {
        assert_eq!(
            from_accept_language("de-DE, ar;q=0.8, fr;q=0.9"),
            Some(Language::Fr)
        );
        assert_eq!(from_accept_language("ar-MA,en;q=0.5"), Some(Language::Ar));
        assert_eq!(from_accept_language("de, fr;q=0"), None);
        assert_eq!(parse_language("FR_ca"), Some(Language::Fr));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
