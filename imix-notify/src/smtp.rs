//! The SMTP adapter: lettre's `AsyncSmtpTransport` on Tokio with rustls.
//!
//! - Security modes: [`SmtpSecurity::Starttls`] (port 587: plain connection upgraded with
//!   `STARTTLS`, which is then required), [`SmtpSecurity::Tls`] (port 465: TLS from the first
//!   byte) and [`SmtpSecurity::None`] (no encryption: local development only).
//! - Certificates are checked against the Mozilla root store (`webpki-roots`) plus, if given,
//!   an extra CA certificate (PEM) — for private relays with their own CA, and for tests.
//! - Authentication (PLAIN or LOGIN) only when a username is configured.
//! - Every network step is bounded by the configured timeout, and a whole send (connect,
//!   greeting, TLS, login and every command) by [`MAX_SEND_TIME`] (15 s; or the step timeout
//!   itself if that is longer), so a server that accepts the connection and then stays
//!   silent costs an attempt 15 s at most.
//! - Errors are classified into [`MailError`] from lettre's error kinds, the I/O and TLS
//!   errors underneath, and the SMTP reply code with its enhanced status code (RFC 3463),
//!   never from debug strings.
//!
//! Each email goes out as `multipart/alternative` (text, then HTML) when it has an HTML
//! part, with `Content-Language` set, from the configured name and address.

use std::{error::Error as _, io, net::IpAddr, time::Duration};

use async_trait::async_trait;
use lettre::{
    message::{
        header::{ContentType, Header, HeaderName, HeaderValue},
        Mailbox as LettreMailbox, MultiPart, SinglePart,
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        Error as SmtpError,
    },
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{Email, MailError, Mailbox, Mailer, SendReceipt};

pub use crate::settings::SmtpSecurity;

/// The default per-step network timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a whole send (or ping) may take, all steps together, unless one step's own
/// timeout is longer; shorter step timeouts give three steps' worth.
pub const MAX_SEND_TIME: Duration = Duration::from_secs(15);

/// How long a whole send may take with `step` as the per-step timeout.
fn overall_timeout(step: Duration) -> Duration {
    step.saturating_mul(3).min(MAX_SEND_TIME).max(step)
}

/// Everything the SMTP adapter needs. Build it from stored settings with
/// [`crate::settings::SmtpSettings::to_config`], or by hand when embedding.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Server host name (or IP address); also the name its certificate must carry.
    pub host: String,
    /// Server port (587 for STARTTLS, 465 for TLS, 25 or anything for none).
    pub port: u16,
    /// How the connection is secured.
    pub security: SmtpSecurity,
    /// Username and password, if the server wants authentication.
    pub credentials: Option<(String, SecretString)>,
    /// The sender: `From` of every email.
    pub from: Mailbox,
    /// Connect and per-command timeout.
    pub timeout: Duration,
    /// An extra CA certificate (PEM) to trust besides the public roots.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Connect to this address instead of resolving `host` again (the address the host was
    /// resolved to and checked against, so DNS cannot change between the check and the
    /// connection); certificates are still checked against `host`.
    pub connect_to: Option<IpAddr>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field("extra_root_pem", &self.extra_root_pem.is_some())
            .field("connect_to", &self.connect_to)
            .finish()
    }
}

/// A [`Mailer`] that speaks SMTP.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: LettreMailbox,
    overall_timeout: Duration,
    has_credentials: bool,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Text for the subject: control characters (line breaks included) become spaces and runs
/// of white space one space, so the subject can never start a header line of its own.
pub fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A typed lettre mailbox: the address parsed by lettre, the display name given to lettre,
/// which quotes and encodes it. A display name with control characters (a line break that
/// would start a header of its own) is refused with [`MailError::Invalid`]: validation
/// keeps them out of stored names, so one here is an attack or old data, and the email
/// fails with that reason rather than going out with a name nobody chose.
fn lettre_mailbox(field: &str, mailbox: &Mailbox) -> Result<LettreMailbox, MailError> {
    if let Some(name) = &mailbox.name {
        if name.chars().any(char::is_control) {
            return Err(MailError::invalid(
                field,
                "the display name contains control characters (line breaks)",
            ));
        }
    }
    let address: lettre::Address =
        mailbox
            .email
            .trim()
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                MailError::invalid(field, e.to_string()).caused_by(e)
            })?;
    let name = mailbox
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    Ok(LettreMailbox::new(name, address))
}

impl SmtpMailer {
    /// Builds the adapter. Fails with [`MailError::Invalid`] on a bad sender address or CA
    /// certificate; nothing is contacted until the first send or ping.
    pub fn new(config: SmtpConfig) -> Result<Self, MailError> {
        let from = lettre_mailbox("from_email", &config.from)?;
        let tls_parameters = || -> Result<TlsParameters, MailError> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(pem) = &config.extra_root_pem {
                let cert = Certificate::from_pem(pem).map_err(|e| {
                    MailError::invalid("ca_certificate", e.to_string()).caused_by(e)
                })?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build_rustls()
                .map_err(|e| MailError::tls(e.to_string()).caused_by(e))
        };
        let tls = match config.security {
            SmtpSecurity::Starttls => Tls::Required(tls_parameters()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpSecurity::None => Tls::None,
        };
        let server = match config.connect_to {
            Some(address) => address.to_string(),
            None => config.host.clone(),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        let has_credentials = config.credentials.is_some();
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            overall_timeout: overall_timeout(config.timeout),
            has_credentials,
        })
    }

    fn message(&self, email: &Email) -> Result<Message, MailError> {
        let builder = Message::builder()
            .from(self.from.clone())
            .to(lettre_mailbox("to", &email.to)?)
            .subject(header_text(&email.subject))
            .message_id(None)
            .header(ContentLanguage(email.language.code().to_owned()));
        let built = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(email.text.clone()),
            ),
        };
        built.map_err(|e| MailError::invalid("email", e.to_string()).caused_by(e))
    }

    fn classify(&self, error: SmtpError) -> MailError {
        classify(error, self.has_credentials)
    }
}

/// `Content-Language` (RFC 3282), which lettre has no typed header for.
#[derive(Debug, Clone)]
struct ContentLanguage(String);

impl Header for ContentLanguage {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Language")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<SendReceipt, MailError> {
        let message = self.message(email)?;
        match tokio::time::timeout(self.overall_timeout, self.transport.send(message)).await {
            Err(_) => Err(MailError::Timeout),
            Ok(Err(e)) => Err(self.classify(e)),
            Ok(Ok(response)) => Ok(SendReceipt {
                server_reply: format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )
                .trim()
                .to_owned(),
            }),
        }
    }

    async fn ping(&self) -> Result<(), MailError> {
        match tokio::time::timeout(self.overall_timeout, self.transport.test_connection()).await {
            Err(_) => Err(MailError::Timeout),
            Ok(Err(e)) => Err(self.classify(e)),
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(MailError::connection("the server closed the connection")),
        }
    }
}

/// An RFC 3463 enhanced status code (`class.subject.detail`) at the start of a reply text.
fn enhanced_status(text: &str) -> Option<(u16, u16, u16)> {
    let first = text.split_whitespace().next()?;
    let mut parts = first.split('.').map(|p| p.parse::<u16>().ok());
    let status = (parts.next()??, parts.next()??, parts.next()??);
    (parts.next().is_none() && matches!(status.0, 2 | 4 | 5)).then_some(status)
}

/// Classifies a lettre SMTP error.
///
/// Order of evidence: the SMTP reply code and its enhanced status code; lettre's TLS kind;
/// the I/O and rustls errors in the source chain (connection refused, DNS, handshake,
/// timeouts); finally lettre's client errors, which carry no finer kind. The error itself
/// becomes the classified error's [`std::error::Error::source`].
pub fn classify(error: SmtpError, has_credentials: bool) -> MailError {
    classify_kind(&error, has_credentials).caused_by(error)
}

fn classify_kind(error: &SmtpError, has_credentials: bool) -> MailError {
    let detail = error.source().map(ToString::to_string).unwrap_or_default();
    if let Some(code) = error.status() {
        let code = u16::from(code);
        let reply = format!("{code} {detail}").trim().to_owned();
        return match (code, enhanced_status(&detail)) {
            (_, Some((_, 7, 8))) | (530 | 534 | 535 | 538, _) => MailError::authentication(reply),
            (_, Some((_, 1, 7 | 8))) => MailError::sender_rejected(reply),
            (_, Some((_, 1, 1..=6 | 10))) | (550 | 551 | 553, None) => {
                MailError::recipient_rejected(reply)
            }
            (421, _) => MailError::connection(reply),
            _ => MailError::other(reply),
        };
    }
    if error.is_timeout() {
        return MailError::Timeout;
    }
    if error.is_tls() {
        return MailError::tls(detail);
    }
    let mut source = error.source();
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return MailError::tls(e.to_string());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return MailError::Timeout;
            }
            if let Some(inner) = io.get_ref() {
                if inner.downcast_ref::<rustls::Error>().is_some() {
                    return MailError::tls(inner.to_string());
                }
            }
        }
        source = e.source();
    }
    if error.is_client() {
        // lettre reports "STARTTLS is not supported" and "no compatible authentication
        // mechanism" as client errors without a finer kind.
        let lower = detail.to_ascii_lowercase();
        return if lower.contains("starttls") {
            MailError::tls(detail)
        } else if has_credentials && lower.contains("authentication") {
            MailError::authentication(detail)
        } else {
            MailError::other(detail)
        };
    }
    if error.is_response() {
        return MailError::other(format!("unexpected reply: {detail}"));
    }
    // Connection and network kinds: refused, reset, DNS failure, unreachable.
    MailError::connection(if detail.is_empty() {
        error.to_string()
    } else {
        detail
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_whole_send_is_bounded_by_fifteen_seconds() {
        assert_eq!(overall_timeout(DEFAULT_TIMEOUT), Duration::from_secs(15));
        assert_eq!(
            overall_timeout(Duration::from_secs(2)),
            Duration::from_secs(6)
        );
        assert_eq!(
            overall_timeout(Duration::from_secs(20)),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn names_with_line_breaks_cannot_add_headers() {
        let config = SmtpConfig {
            host: "smtp.example.com".into(),
            port: 25,
            security: SmtpSecurity::None,
            credentials: None,
            from: Mailbox::named("Acme\r\nBcc: from@evil.example", "noreply@example.com"),
            timeout: DEFAULT_TIMEOUT,
            extra_root_pem: None,
            connect_to: None,
        };
        assert!(matches!(
            SmtpMailer::new(config.clone()),
            Err(MailError::Invalid { field, .. }) if field == "from_email"
        ));
        let mailer = SmtpMailer::new(SmtpConfig {
            from: Mailbox::named("Acme", "noreply@example.com"),
            ..config
        })
        .unwrap();
        let poisoned = Email::new(
            Mailbox::named("L\nBcc: victim@evil.example", "user@example.com"),
            "Hello",
            "body",
        );
        assert!(matches!(
            mailer.message(&poisoned),
            Err(MailError::Invalid { field, .. }) if field == "to"
        ));
        let email = Email::new(
            Mailbox::named("Aïcha Ould Ahmed", "user@example.com"),
            "Hello\r\nBcc: subject@evil.example",
            "body",
        );
        let formatted = String::from_utf8(mailer.message(&email).unwrap().formatted()).unwrap();
        let headers = formatted.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
            "{headers}"
        );
        assert!(headers.contains("user@example.com"), "{headers}");
    }

    #[test]
    fn an_unparsable_address_keeps_the_parser_error_as_its_source() {
        use std::error::Error as _;
        let err = lettre_mailbox("to", &Mailbox::new("not an address")).unwrap_err();
        assert!(matches!(err, MailError::Invalid { ref field, .. } if field == "to"));
        let source = err.source().expect("the parser error is kept");
        assert!(source.is::<lettre::address::AddressError>(), "{source:?}");
        assert!(err.to_string().starts_with("invalid to: "), "{err}");
    }

    #[test]
    fn enhanced_status_codes_are_parsed_strictly() {
        assert_eq!(enhanced_status("5.1.1 no such user"), Some((5, 1, 1)));
        assert_eq!(enhanced_status("5.7.8"), Some((5, 7, 8)));
        assert_eq!(enhanced_status("Mailbox unavailable"), None);
        assert_eq!(enhanced_status("1.2.3 x"), None);
        assert_eq!(enhanced_status("5.1 x"), None);
    }
}
