//! Localized emails: invitation, password reset, SMTP test and daily usage warnings, each in
//! English, French and Arabic, as HTML (Arabic laid out right to left) plus plain text.
//!
//! Why these libraries:
//! - **Fluent** (`fluent-bundle`, Mozilla's localization system) holds the *strings*, one
//!   `.ftl` file per language under `locales/`. Translators edit plain text files with named
//!   variables (`{ $name }`), and Fluent handles plurals and number formatting per language
//!   — which Arabic needs — instead of `format!` strings scattered through code.
//! - **minijinja** (a small, dependency-light, actively maintained Jinja2 engine) renders the
//!   *layout*: one HTML and one text template under `templates/`, with auto-escaping for
//!   HTML so a tenant name can never inject markup. Templates are compiled into the binary
//!   (`include_str!`), so nothing is read from disk at run time.
//!
//! askama (compile-time templates) was the alternative; it would need one template per email
//! and language or a second i18n layer anyway, so Fluent + one runtime-checked layout is
//! smaller, and every template/language pair is rendered by the unit tests.
//!
//! ```
//! use imix_notify::templates::{EmailContent, Templates};
//! use imix_core::Language;
//!
//! let templates = Templates::new("https://crm.example.com").unwrap();
//! let email = templates
//!     .render(&EmailContent::SmtpTest { host: "smtp.example.com".into() }, Language::Ar)
//!     .unwrap();
//! assert!(email.html.contains(r#"dir="rtl""#));
//! ```

use std::{collections::HashMap, fmt};

use fluent_bundle::{concurrent::FluentBundle, FluentArgs, FluentResource, FluentValue};
use imix_core::Language;
use minijinja::{context, Environment};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::NotifyError;

/// What replaces a secret link in the stored, listable copy of an email.
pub const REDACTED: &str = "[redacted]";

const LAYOUT_HTML: &str = "layout.html";
const LAYOUT_TEXT: &str = "layout.txt";

/// Which daily usage threshold was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageThreshold {
    /// 80 % of the messages-per-day limit.
    Percent80,
    /// 100 %: the limit is reached.
    Percent100,
}

/// Which Max Contacts threshold a tenant's contacts reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactsThreshold {
    /// 80 % of Max Contacts.
    Percent80,
    /// 100 %: the limit is reached.
    Percent100,
    /// Past the limit (contacts created from inbound messages are never refused).
    Exceeded,
}

impl ContactsThreshold {
    /// Every threshold, lowest first.
    pub const ALL: [ContactsThreshold; 3] = [Self::Percent80, Self::Percent100, Self::Exceeded];

    /// Its name in template names and keys: `80`, `100`, `exceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Percent80 => "80",
            Self::Percent100 => "100",
            Self::Exceeded => "exceeded",
        }
    }

    /// The count at which `limit` crosses it: 80 % (rounded up), the limit, one past it.
    pub fn count_at(self, limit: u64) -> u64 {
        match self {
            Self::Percent80 => (limit.saturating_mul(80)).div_ceil(100),
            Self::Percent100 => limit,
            Self::Exceeded => limit.saturating_add(1),
        }
    }
}

/// The content of one email, before it is put into words in a language.
#[derive(Clone)]
pub enum EmailContent {
    /// An invitation with a set-password link.
    Invitation {
        /// How to greet the recipient (their name, else their email).
        recipient_name: String,
        /// The tenant (or platform) they are invited to.
        organization: String,
        /// The set-password link (see [`Templates::set_password_link`]). Secret: redacted
        /// in stored copies.
        link: SecretString,
        /// How long the link is valid, if it should be said.
        valid_hours: Option<i64>,
    },
    /// A password reset with a set-password link.
    PasswordReset {
        /// How to greet the recipient.
        recipient_name: String,
        /// The set-password link. Secret: redacted in stored copies.
        link: SecretString,
        /// How long the link is valid, if it should be said.
        valid_hours: Option<i64>,
    },
    /// The SMTP settings test.
    SmtpTest {
        /// The SMTP server it went through.
        host: String,
    },
    /// A daily usage warning to a tenant's admins.
    UsageWarning {
        /// The tenant's name.
        tenant_name: String,
        /// 80 % or 100 %.
        threshold: UsageThreshold,
        /// Messages sent today.
        used: u64,
        /// The messages-per-day limit.
        limit: u64,
    },
    /// A Max Contacts warning to a tenant's admins.
    ContactsWarning {
        /// The tenant's name.
        tenant_name: String,
        /// 80 %, 100 % or past the limit.
        threshold: ContactsThreshold,
        /// The tenant's contacts.
        count: u64,
        /// Max Contacts.
        limit: u64,
    },
    /// To a tenant's admins: Meta refused a number's access token, so its sending is paused.
    SendingPaused {
        /// The tenant's name.
        tenant_name: String,
        /// The number (as displayed).
        phone_number: String,
        /// Meta's error.
        reason: String,
    },
    /// To a tenant's admins: an event-subscription endpoint was disabled after repeated
    /// delivery failures.
    WebhookEndpointDisabled {
        /// The tenant's name.
        tenant_name: String,
        /// The endpoint's URL.
        url: String,
        /// Why it was disabled.
        reason: String,
    },
}

impl fmt::Debug for EmailContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens never appear in Debug output.
        f.debug_struct("EmailContent")
            .field("template", &self.template_name())
            .finish_non_exhaustive()
    }
}

impl EmailContent {
    /// The template's name as recorded in the outbox: `invitation`, `password_reset`,
    /// `smtp_test`, `usage_warning_80`, `usage_warning_100`, `contacts_warning_80`,
    /// `contacts_warning_100`, `contacts_warning_exceeded`, `sending_paused`,
    /// `webhook_endpoint_disabled`.
    pub fn template_name(&self) -> &'static str {
        match self {
            EmailContent::Invitation { .. } => "invitation",
            EmailContent::PasswordReset { .. } => "password_reset",
            EmailContent::SmtpTest { .. } => "smtp_test",
            EmailContent::UsageWarning {
                threshold: UsageThreshold::Percent80,
                ..
            } => "usage_warning_80",
            EmailContent::UsageWarning {
                threshold: UsageThreshold::Percent100,
                ..
            } => "usage_warning_100",
            EmailContent::ContactsWarning { threshold, .. } => match threshold {
                ContactsThreshold::Percent80 => "contacts_warning_80",
                ContactsThreshold::Percent100 => "contacts_warning_100",
                ContactsThreshold::Exceeded => "contacts_warning_exceeded",
            },
            EmailContent::SendingPaused { .. } => "sending_paused",
            EmailContent::WebhookEndpointDisabled { .. } => "webhook_endpoint_disabled",
        }
    }
}

/// One email put into words.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Subject line (never contains a secret).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// The language it is written in.
    pub language: Language,
    /// `text` with secret links replaced by [`REDACTED`]: safe to store in clear and list.
    pub redacted_text: String,
}

impl fmt::Debug for RenderedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedEmail")
            .field("subject", &self.subject)
            .field("language", &self.language)
            .field("redacted_text", &self.redacted_text)
            .finish_non_exhaustive()
    }
}

/// Replaces the value of every `token=` URL parameter in `text` with [`REDACTED`]: a second
/// line of defence for bodies that did not come from these templates.
pub fn redact(text: &str) -> String {
    const KEY: &str = "token=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The language an email to someone is written in: theirs if known, else their tenant's
/// default, else English.
pub fn pick_language(recipient: Option<Language>, tenant_default: Option<Language>) -> Language {
    recipient.or(tenant_default).unwrap_or_default()
}

/// The compiled templates and strings, and the public base URL links are built from.
/// Cheap to share (`Arc`); build once at start.
pub struct Templates {
    base_url: Url,
    env: Environment<'static>,
    bundles: HashMap<Language, FluentBundle<FluentResource>>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

fn ftl_source(language: Language) -> &'static str {
    match language {
        Language::En => include_str!("../locales/en.ftl"),
        Language::Fr => include_str!("../locales/fr.ftl"),
        Language::Ar => include_str!("../locales/ar.ftl"),
    }
}

struct Words<'a> {
    bundle: &'a FluentBundle<FluentResource>,
    args: FluentArgs<'a>,
}

impl Words<'_> {
    fn get(&self, id: &str) -> Result<String, NotifyError> {
        let message = self
            .bundle
            .get_message(id)
            .ok_or_else(|| NotifyError::localization(format!("message `{id}` is missing")))?;
        let pattern = message
            .value()
            .ok_or_else(|| NotifyError::localization(format!("message `{id}` has no value")))?;
        let mut errors = Vec::new();
        let text = self
            .bundle
            .format_pattern(pattern, Some(&self.args), &mut errors);
        if let Some(e) = errors.into_iter().next() {
            return Err(NotifyError::localization_caused_by(
                format!("message `{id}`: {e}"),
                e,
            ));
        }
        Ok(text.into_owned())
    }
}

/// A [`NotifyError::Localization`] for the errors Fluent reported on `what`: all of them
/// in the message, the first as the source.
fn fluent_errors<E>(what: &str, errors: Vec<E>) -> NotifyError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let message = format!(
        "{what}: {}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    match errors.into_iter().next() {
        Some(first) => NotifyError::localization_caused_by(message, first),
        None => NotifyError::localization(message),
    }
}

impl Templates {
    /// Templates whose links start at `public_url` (the server's `IMIX_PUBLIC_URL`, e.g.
    /// `https://crm.example.com` or `https://example.com/imix`).
    pub fn new(public_url: &str) -> Result<Self, NotifyError> {
        let base_url = Url::parse(public_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| NotifyError::invalid("public_url", "must be an http(s) URL"))?;
        let mut env = Environment::new();
        env.add_template(LAYOUT_HTML, include_str!("../templates/layout.html"))
            .map_err(|source| NotifyError::Template {
                template: LAYOUT_HTML,
                source,
            })?;
        env.add_template(LAYOUT_TEXT, include_str!("../templates/layout.txt"))
            .map_err(|source| NotifyError::Template {
                template: LAYOUT_TEXT,
                source,
            })?;
        let mut bundles = HashMap::new();
        for language in Language::ALL {
            let resource = FluentResource::try_new(ftl_source(language).to_owned())
                .map_err(|(_, errors)| fluent_errors(&format!("{language}.ftl"), errors))?;
            let langid = language
                .code()
                .parse()
                .map_err(|e| NotifyError::localization_caused_by(format!("{language}: {e}"), e))?;
            let mut bundle = FluentBundle::new_concurrent(vec![langid]);
            // Plain strings: no Unicode isolation marks around variables (they would end
            // up in subjects and the text part as invisible characters).
            bundle.set_use_isolating(false);
            bundle
                .add_resource(resource)
                .map_err(|errors| fluent_errors(&format!("{language}.ftl"), errors))?;
            bundles.insert(language, bundle);
        }
        Ok(Self {
            base_url,
            env,
            bundles,
        })
    }

    /// The public base URL links start from.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The link an invitation or reset email carries: `<public url>/set-password?token=…`.
    pub fn set_password_link(&self, token: &SecretString) -> SecretString {
        let mut url = self.base_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("set-password");
        }
        url.set_query(None);
        url.set_fragment(None);
        url.query_pairs_mut()
            .append_pair("token", token.expose_secret());
        SecretString::from(String::from(url))
    }

    /// Puts `content` into words in `language`.
    pub fn render(
        &self,
        content: &EmailContent,
        language: Language,
    ) -> Result<RenderedEmail, NotifyError> {
        let bundle = self
            .bundles
            .get(&language)
            .ok_or_else(|| NotifyError::localization(format!("no strings for {language}")))?;
        let mut args = FluentArgs::new();
        args.set("product", "iMix");
        let prefix: &str;
        let mut secret_link: Option<String> = None;
        let mut action: Option<(&str, String)> = None;
        let mut note: Option<&str> = None;
        let mut validity: Option<i64> = None;
        match content {
            EmailContent::Invitation {
                recipient_name,
                organization,
                link,
                valid_hours,
            } => {
                prefix = "invitation";
                args.set("name", recipient_name.clone());
                args.set("organization", organization.clone());
                validity = *valid_hours;
                let link = link.expose_secret().to_owned();
                secret_link = Some(link.clone());
                action = Some(("invitation-action", link));
                note = Some("invitation-note");
            }
            EmailContent::PasswordReset {
                recipient_name,
                link,
                valid_hours,
            } => {
                prefix = "password-reset";
                args.set("name", recipient_name.clone());
                validity = *valid_hours;
                let link = link.expose_secret().to_owned();
                secret_link = Some(link.clone());
                action = Some(("password-reset-action", link));
                note = Some("password-reset-note");
            }
            EmailContent::SmtpTest { host } => {
                prefix = "smtp-test";
                args.set("host", host.clone());
            }
            EmailContent::UsageWarning {
                tenant_name,
                threshold,
                used,
                limit,
            } => {
                prefix = match threshold {
                    UsageThreshold::Percent80 => "usage-80",
                    UsageThreshold::Percent100 => "usage-100",
                };
                args.set("tenant", tenant_name.clone());
                args.set("used", FluentValue::from(*used));
                args.set("limit", FluentValue::from(*limit));
                action = Some(("usage-action", self.base_url.to_string()));
            }
            EmailContent::ContactsWarning {
                tenant_name,
                threshold,
                count,
                limit,
            } => {
                prefix = match threshold {
                    ContactsThreshold::Percent80 => "contacts-80",
                    ContactsThreshold::Percent100 => "contacts-100",
                    ContactsThreshold::Exceeded => "contacts-exceeded",
                };
                args.set("tenant", tenant_name.clone());
                args.set("count", FluentValue::from(*count));
                args.set("limit", FluentValue::from(*limit));
                action = Some(("usage-action", self.base_url.to_string()));
            }
            EmailContent::SendingPaused {
                tenant_name,
                phone_number,
                reason,
            } => {
                prefix = "sending-paused";
                args.set("tenant", tenant_name.clone());
                args.set("number", phone_number.clone());
                args.set("reason", reason.clone());
                action = Some(("usage-action", self.base_url.to_string()));
            }
            EmailContent::WebhookEndpointDisabled {
                tenant_name,
                url,
                reason,
            } => {
                prefix = "endpoint-disabled";
                args.set("tenant", tenant_name.clone());
                args.set("url", url.clone());
                args.set("reason", reason.clone());
                action = Some(("usage-action", self.base_url.to_string()));
            }
        }
        if let Some(hours) = validity {
            args.set("hours", FluentValue::from(hours));
        }
        let words = Words { bundle, args };
        let subject = words.get(&format!("{prefix}-subject"))?;
        let heading = words.get(&format!("{prefix}-heading"))?;
        let mut paragraphs = vec![words.get(&format!("{prefix}-body"))?];
        if validity.is_some() {
            paragraphs.push(words.get("link-validity")?);
        }
        let action = match action {
            Some((label_id, url)) => Some(context! {
                label => words.get(label_id)?,
                // minijinja's HTML escaping also escapes `/`; a URL we built ourselves only
                // needs the attribute-significant characters escaped, so links stay readable.
                href => minijinja::Value::from_safe_string(escape_attribute(&url)),
                url => url,
            }),
            None => None,
        };
        let note = note.map(|id| words.get(id)).transpose()?;
        let ctx = context! {
            lang => language.code(),
            dir => if language.is_rtl() { "rtl" } else { "ltr" },
            align => if language.is_rtl() { "right" } else { "left" },
            subject => &subject,
            heading => heading,
            paragraphs => paragraphs,
            action => action,
            note => note,
            link_fallback => words.get("link-fallback")?,
            footer => words.get("footer")?,
        };
        let render = |name: &'static str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|source| NotifyError::Template {
                    template: name,
                    source,
                })
        };
        let html = render(LAYOUT_HTML)?;
        let text = render(LAYOUT_TEXT)?;
        let redacted_text = match &secret_link {
            Some(link) => {
                // Keep the link's shape (`…/set-password?token=[redacted]`) when the secret
                // is a `token` parameter; otherwise drop the whole link.
                let shown = redact(link);
                let shown = if shown == *link {
                    REDACTED.to_owned()
                } else {
                    shown
                };
                redact(&text.replace(link, &shown))
            }
            None => redact(&text),
        };
        Ok(RenderedEmail {
            subject,
            text,
            html,
            language,
            redacted_text,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn templates() -> Templates {
        Templates::new("https://crm.example.com/imix").unwrap()
    }

    #[test]
    fn a_fluent_syntax_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let Err((_, errors)) = FluentResource::try_new("greeting = { $name\nother".to_owned())
        else {
            panic!("the resource should not parse");
        };
        let first = errors[0].to_string();
        let err = fluent_errors("en.ftl", errors);
        assert!(matches!(err, NotifyError::Localization { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("localization error: en.ftl: "),
            "{err}"
        );
        let source = err.source().expect("the parser error is kept");
        assert_eq!(source.to_string(), first);
    }

    fn all_contents() -> Vec<EmailContent> {
        vec![
            EmailContent::Invitation {
                recipient_name: "Aïcha <b>".into(),
                organization: "Acme & Co".into(),
                link: templates().set_password_link(&SecretString::from("tok-123")),
                valid_hours: Some(72),
            },
            EmailContent::PasswordReset {
                recipient_name: "Omar".into(),
                link: templates().set_password_link(&SecretString::from("tok-456")),
                valid_hours: None,
            },
            EmailContent::SmtpTest {
                host: "smtp.example.com".into(),
            },
            EmailContent::UsageWarning {
                tenant_name: "Acme".into(),
                threshold: UsageThreshold::Percent80,
                used: 800,
                limit: 1000,
            },
            EmailContent::UsageWarning {
                tenant_name: "Acme".into(),
                threshold: UsageThreshold::Percent100,
                used: 1000,
                limit: 1000,
            },
            EmailContent::ContactsWarning {
                tenant_name: "Acme".into(),
                threshold: ContactsThreshold::Percent80,
                count: 80,
                limit: 100,
            },
            EmailContent::ContactsWarning {
                tenant_name: "Acme".into(),
                threshold: ContactsThreshold::Percent100,
                count: 100,
                limit: 100,
            },
            EmailContent::ContactsWarning {
                tenant_name: "Acme".into(),
                threshold: ContactsThreshold::Exceeded,
                count: 101,
                limit: 100,
            },
            EmailContent::SendingPaused {
                tenant_name: "Acme".into(),
                phone_number: "+1 555-010-0001".into(),
                reason: "(#190) Error validating access token".into(),
            },
            EmailContent::WebhookEndpointDisabled {
                tenant_name: "Acme".into(),
                url: "https://hooks.example.com/imix".into(),
                reason: "a delivery failed 12 attempts in a row".into(),
            },
        ]
    }

    #[test]
    fn every_template_renders_in_every_language() {
        let t = Templates::new("https://crm.example.com/imix/").unwrap();
        for content in all_contents() {
            for language in Language::ALL {
                let e = t.render(&content, language).unwrap();
                assert!(!e.subject.is_empty());
                assert!(!e.subject.contains('{'), "{}", e.subject);
                assert!(e.html.contains(&format!(r#"lang="{}""#, language.code())));
                let dir = if language.is_rtl() { "rtl" } else { "ltr" };
                assert!(e.html.contains(&format!(r#"dir="{dir}""#)));
                assert!(!e.text.contains("<p"), "text part has markup: {}", e.text);
            }
        }
    }

    #[test]
    fn links_use_the_public_url_and_are_redacted_in_the_stored_copy() {
        let t = Templates::new("https://crm.example.com/imix").unwrap();
        let e = t.render(&all_contents()[0], Language::Fr).unwrap();
        let link = "https://crm.example.com/imix/set-password?token=tok-123";
        assert!(e.text.contains(link), "{}", e.text);
        assert!(e.html.contains(link));
        assert!(!e.redacted_text.contains("tok-123"));
        assert!(e
            .redacted_text
            .contains("https://crm.example.com/imix/set-password?token=[redacted]"));
        assert!(e.subject.contains("Acme & Co"));
        assert!(e.text.contains("72 heures"), "{}", e.text);
        assert_eq!(
            redact("see https://x.example/set-password?token=abc&x=1 now"),
            "see https://x.example/set-password?token=[redacted]&x=1 now"
        );
        // HTML escapes what tenants and users typed.
        assert!(e.html.contains("Aïcha &lt;b&gt;"));
        assert!(!format!("{e:?}").contains("tok-123"));
    }

    #[test]
    fn languages_differ_and_fall_back() {
        let t = Templates::new("http://localhost:8000").unwrap();
        let c = &all_contents()[1];
        let en = t.render(c, Language::En).unwrap();
        let fr = t.render(c, Language::Fr).unwrap();
        let ar = t.render(c, Language::Ar).unwrap();
        assert_ne!(en.subject, fr.subject);
        assert!(ar.subject.contains("كلمة مرور"));
        assert_eq!(pick_language(None, Some(Language::Fr)), Language::Fr);
        assert_eq!(
            pick_language(Some(Language::Ar), Some(Language::Fr)),
            Language::Ar
        );
        assert_eq!(pick_language(None, None), Language::En);
        assert!(Templates::new("not a url").is_err());
        assert!(Templates::new("mailto:x@example.com").is_err());
    }
}
