//! Notifications over HTTP against the real recording SMTP server that `scripts/test.sh`
//! starts (aiosmtpd, `scripts/smtp_sink.py`): SMTP settings of the platform and of tenants,
//! the test email and its classified errors, invitations and resets arriving localized
//! through the mail outbox, and the outbox listing. Every case runs on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::path::{Path, PathBuf};

use common::{error_of, Backend, TestServer};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

on_both_backends!(
    platform_settings_hide_the_password_and_the_test_email_arrives,
    test_errors_are_classified_and_changes_apply_without_restart,
    tenant_admins_manage_their_own_smtp_only,
    invitations_and_resets_arrive_localized_through_the_outbox,
    a_poisoned_outbox_entry_fails_and_the_next_email_goes_out_also_after_a_restart,
    names_with_line_breaks_or_overrides_are_refused_and_every_bad_field_is_listed,
    tenant_smtp_hosts_must_be_public_unless_the_operator_allows_them,
    test_emails_and_reset_emails_are_throttled,
    nothing_is_sent_for_a_deactivated_tenant_until_it_is_activated,
);

// --- The recording SMTP server -------------------------------------------------------------

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the recording SMTP server. Run \
             scripts/test.sh (e.g. `scripts/test.sh -p imix-server --test notify`), which \
             starts scripts/smtp_sink.py (aiosmtpd) and exports IMIX_TEST_SMTP_HOST, _PORT, \
             _STARTTLS_PORT, _TLS_PORT, _CA, _USER, _PASSWORD and _MAILDIR."
        )
    })
}

/// Where the test SMTP server listens and how to log in.
struct Smtp {
    host: String,
    port: u16,
    starttls_port: u16,
    user: String,
    password: String,
    maildir: PathBuf,
}

impl Smtp {
    fn get() -> Self {
        let port = |name: &str| required(name).parse::<u16>().unwrap();
        Self {
            host: required("IMIX_TEST_SMTP_HOST"),
            port: port("IMIX_TEST_SMTP_PORT"),
            starttls_port: port("IMIX_TEST_SMTP_STARTTLS_PORT"),
            user: required("IMIX_TEST_SMTP_USER"),
            password: required("IMIX_TEST_SMTP_PASSWORD"),
            maildir: PathBuf::from(required("IMIX_TEST_SMTP_MAILDIR")),
        }
    }

    /// Settings for the plain port (security `none`, with AUTH): the server's process-wide
    /// CA configuration is not something a test can change, and the TLS modes are covered
    /// by imix-notify's own tests.
    fn settings(&self, from_email: &str, from_name: &str) -> Value {
        json!({
            "host": self.host, "port": self.port, "username": self.user,
            "password": self.password, "from_email": from_email, "from_name": from_name,
            "security": "none",
        })
    }
}

/// A recipient address no other test uses.
fn unique_address(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::now_v7().simple())
}

/// One message as the sink recorded it.
#[derive(Debug, Deserialize)]
struct Received {
    rcpt_tos: Vec<String>,
    headers: Vec<(String, String)>,
    content_type: String,
    parts: Vec<Part>,
    auth_login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Part {
    content_type: String,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {self:#?}"))
    }

    fn part(&self, content_type: &str) -> &str {
        &self
            .parts
            .iter()
            .find(|p| p.content_type == content_type)
            .unwrap_or_else(|| panic!("no {content_type} part in {self:#?}"))
            .body
    }
}

/// Every message the sink received for `to`, oldest first. The sink writes a message before
/// it answers 250, so an accepted message is always there.
fn received_for(maildir: &Path, to: &str) -> Vec<Received> {
    let mut paths: Vec<_> = std::fs::read_dir(maildir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let message: Received =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            message
                .rcpt_tos
                .iter()
                .any(|r| r.eq_ignore_ascii_case(to))
                .then_some(message)
        })
        .collect()
}

/// Waits (bounded, via `common::eventually`) for exactly one message for `to`.
async fn the_message_for(maildir: &Path, to: &str) -> Received {
    common::eventually(&format!("an email for {to}"), || {
        !received_for(maildir, to).is_empty()
    })
    .await;
    let mut all = received_for(maildir, to);
    assert_eq!(all.len(), 1, "exactly one email for {to}");
    all.remove(0)
}

/// The set-password token of the link in a text body.
fn token_in(text: &str) -> String {
    let start = text
        .find("/set-password?token=")
        .unwrap_or_else(|| panic!("no set-password link in {text}"))
        + "/set-password?token=".len();
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_owned()
}

// --- HTTP helpers ----------------------------------------------------------------------------

/// The recording SMTP server listens on 127.0.0.1: tenant settings may only point there
/// when the operator allows private hosts.
fn allow_private_smtp(vars: &mut std::collections::HashMap<String, String>) {
    vars.insert("IMIX_ALLOW_PRIVATE_SMTP_HOSTS".into(), "true".into());
}

const PLATFORM_SMTP: &str = "/api/v1/settings/smtp";

fn tenant_smtp(tenant: &str) -> String {
    format!("/api/v1/tenants/{tenant}/settings/smtp")
}

async fn put_smtp(s: &TestServer, token: &str, path: &str, body: Value) -> Value {
    let (status, json) = s.send_json(token, Method::PUT, path, body).await;
    assert_eq!(status, 200, "{json}");
    json
}

async fn test_email(s: &TestServer, token: &str, path: &str, body: Value) -> reqwest::Response {
    s.call(token, Method::POST, &format!("{path}/test"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The outbox listing's entries for `to` (all pages).
async fn outbox_for(s: &TestServer, admin: &str, to: &str) -> (Vec<Value>, String) {
    let mut found = Vec::new();
    let mut raw = String::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/system/mail-outbox?limit=2&cursor={c}"),
            None => "/api/v1/system/mail-outbox?limit=2".to_owned(),
        };
        let resp = s.call(admin, Method::GET, &path).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        raw.push_str(&text);
        for item in page["items"].as_array().unwrap() {
            if item["to"] == to {
                found.push(item.clone());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (found, raw),
        }
    }
}

/// Polls (bounded) until the outbox shows the email for `to` as sent.
async fn wait_until_sent(s: &TestServer, admin: &str, to: &str) -> (Value, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (items, raw) = outbox_for(s, admin, to).await;
        if let [item] = items.as_slice() {
            if item["status"] == "sent" {
                return (item.clone(), raw);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never showed the email for {to} as sent: {items:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

// --- Cases -----------------------------------------------------------------------------------

async fn platform_settings_hide_the_password_and_the_test_email_arrives(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;

    // Nothing saved yet.
    let resp = s
        .call(&admin, Method::GET, PLATFORM_SMTP)
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 404).await;
    assert_eq!(code, "not_configured");

    // Every invalid field is named at once.
    let resp = s
        .call(&admin, Method::PUT, PLATFORM_SMTP)
        .json(
            &json!({"host": "bad host", "port": 70000, "from_email": "nope",
                      "security": "ssl3", "username": "u", "password": "p"}),
        )
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "host");
    let fields: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["host", "port", "from_email", "security"]);

    // Saved: the password is never returned.
    let saved = put_smtp(
        &s,
        &admin,
        PLATFORM_SMTP,
        smtp.settings("noreply@imix.example", "iMix Platform"),
    )
    .await;
    let (status, shown) = s.get_json(&admin, PLATFORM_SMTP).await;
    assert_eq!(status, 200);
    for body in [&saved, &shown] {
        assert!(body.get("password").is_none(), "{body}");
        assert!(!body.to_string().contains(&smtp.password), "{body}");
        assert_eq!(body["password_set"], true);
        assert_eq!(body["insecure"], true);
        assert_eq!(body["security"], "none");
        assert_eq!(body["scope"], "platform");
        assert_eq!(body["host"], smtp.host.as_str());
        assert_eq!(body["port"], smtp.port);
        assert_eq!(body["username"], smtp.user.as_str());
        assert_eq!(body["from_email"], "noreply@imix.example");
    }
    assert_eq!(saved["version"], shown["version"]);

    // Omitting the password keeps it.
    let mut without = smtp.settings("noreply@imix.example", "iMix Platform");
    without.as_object_mut().unwrap().remove("password");
    let kept = put_smtp(&s, &admin, PLATFORM_SMTP, without).await;
    assert_eq!(kept["password_set"], true);

    // The test email arrives, in the language asked for, with the right headers.
    let to = unique_address("smtp-test");
    let resp = test_email(
        &s,
        &admin,
        PLATFORM_SMTP,
        json!({"to": to, "language": "fr"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["ok"], true);
    assert!(
        answer["server_reply"].as_str().unwrap().starts_with("250"),
        "{answer}"
    );
    let message = the_message_for(&smtp.maildir, &to).await;
    assert_eq!(
        message.header("From"),
        "iMix Platform <noreply@imix.example>"
    );
    assert_eq!(message.header("To"), to);
    assert_eq!(message.header("Subject"), "Test SMTP de iMix");
    assert_eq!(message.header("Content-Language"), "fr");
    assert!(message.header("Message-ID").contains('@'));
    assert_eq!(message.content_type, "multipart/alternative");
    assert!(message.part("text/plain").contains(&smtp.host));
    assert!(message.part("text/html").contains("lang=\"fr\""));
    assert_eq!(message.auth_login.as_deref(), Some(smtp.user.as_str()));

    // Arabic, right to left; the caller's language by default (English here).
    let to_ar = unique_address("smtp-test-ar");
    let resp = test_email(
        &s,
        &admin,
        PLATFORM_SMTP,
        json!({"to": to_ar, "language": "ar"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let message = the_message_for(&smtp.maildir, &to_ar).await;
    assert!(message.part("text/html").contains("dir=\"rtl\""));
    let to_en = unique_address("smtp-test-en");
    let resp = test_email(&s, &admin, PLATFORM_SMTP, json!({"to": to_en})).await;
    assert_eq!(resp.status(), 200);
    let message = the_message_for(&smtp.maildir, &to_en).await;
    assert_eq!(message.header("Subject"), "iMix SMTP test");

    // A malformed recipient is a field error, not a mail error.
    let resp = test_email(&s, &admin, PLATFORM_SMTP, json!({"to": "not an address"})).await;
    let (_, body) = error_of(resp, 422).await;
    assert_eq!(body["error"]["details"]["field"], "to");

    // The audit log records the change, without the password.
    let (_, audit) = s.get_json(&admin, "/api/v1/audit-log").await;
    assert!(
        audit.to_string().contains("settings.smtp.update"),
        "{audit}"
    );
    assert!(!audit.to_string().contains(&smtp.password));
    s.stop().await;
}

async fn test_errors_are_classified_and_changes_apply_without_restart(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let mut settings = smtp.settings("ops@imix.example", "Ops");

    // Wrong password: 502 `authentication`, a sentence, never the password.
    settings["password"] = "wrong-password-123".into();
    put_smtp(&s, &admin, PLATFORM_SMTP, settings.clone()).await;
    let to = unique_address("auth");
    let resp = test_email(&s, &admin, PLATFORM_SMTP, json!({"to": to})).await;
    let (code, body) = error_of(resp, 502).await;
    assert_eq!(code, "authentication", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("credentials"), "{message}");
    assert!(message.contains("535"), "{message}");
    assert!(
        !message.contains("Authentication("),
        "no debug output: {message}"
    );
    assert_eq!(body["error"]["details"]["transient"], false);
    assert!(!body.to_string().contains("wrong-password-123"));
    assert!(received_for(&smtp.maildir, &to).is_empty());

    // Fixed through the API: the very next test uses the new password, no restart.
    settings["password"] = smtp.password.clone().into();
    put_smtp(&s, &admin, PLATFORM_SMTP, settings.clone()).await;
    let resp = test_email(&s, &admin, PLATFORM_SMTP, json!({"to": to})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        the_message_for(&smtp.maildir, &to).await.header("From"),
        "Ops <ops@imix.example>"
    );

    // A new sender name applies to the next email.
    settings["from_name"] = "Ops Renamed".into();
    put_smtp(&s, &admin, PLATFORM_SMTP, settings.clone()).await;
    let to2 = unique_address("renamed");
    let resp = test_email(&s, &admin, PLATFORM_SMTP, json!({"to": to2})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        the_message_for(&smtp.maildir, &to2).await.header("From"),
        "Ops Renamed <ops@imix.example>"
    );

    // The recipient refused by the server.
    let resp = test_email(
        &s,
        &admin,
        PLATFORM_SMTP,
        json!({"to": "reject@example.com"}),
    )
    .await;
    let (code, body) = error_of(resp, 502).await;
    assert_eq!(code, "recipient_rejected", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("550"));

    // Nothing listens on the port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut wrong_port = settings.clone();
    wrong_port["port"] = closed.into();
    put_smtp(&s, &admin, PLATFORM_SMTP, wrong_port).await;
    let resp = test_email(
        &s,
        &admin,
        PLATFORM_SMTP,
        json!({"to": unique_address("port")}),
    )
    .await;
    let (code, _) = error_of(resp, 502).await;
    assert_eq!(code, "connection");

    // STARTTLS against a certificate of a CA the server does not trust.
    let mut untrusted = settings.clone();
    untrusted["port"] = smtp.starttls_port.into();
    untrusted["security"] = "starttls".into();
    let view = put_smtp(&s, &admin, PLATFORM_SMTP, untrusted).await;
    assert_eq!(view["insecure"], false);
    let resp = test_email(
        &s,
        &admin,
        PLATFORM_SMTP,
        json!({"to": unique_address("tls")}),
    )
    .await;
    let (code, _) = error_of(resp, 502).await;
    assert_eq!(code, "tls");
    s.stop().await;
}

async fn tenant_admins_manage_their_own_smtp_only(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start_with(backend, allow_private_smtp).await;
    let admin = s.admin().await;
    let a = s.create_tenant(&admin, json!({"name": "Alpha"})).await;
    let b = s.create_tenant(&admin, json!({"name": "Beta"})).await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (_, a_admin) = s
        .user_with_token(&admin, json!({"email": "admin@alpha.example", "first_name": "A", "last_name": "Admin", "role": "admin", "tenant_id": a_id}))
        .await;
    let (_, a_agent) = s
        .user_with_token(&admin, json!({"email": "agent@alpha.example", "first_name": "A", "last_name": "Agent", "role": "agent", "tenant_id": a_id}))
        .await;

    // Alpha has none of its own yet: its emails would use the platform's.
    let resp = s
        .call(&a_admin, Method::GET, &tenant_smtp(a_id))
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 404).await;
    assert_eq!(code, "not_configured");
    assert_eq!(body["error"]["details"]["fallback"], "platform");

    // Alpha's admin saves Alpha's settings.
    let saved = put_smtp(
        &s,
        &a_admin,
        &tenant_smtp(a_id),
        smtp.settings("hello@alpha.example", "Alpha"),
    )
    .await;
    assert_eq!(saved["scope"], "tenant");
    assert_eq!(saved["tenant_id"], a_id);
    assert!(saved.get("password").is_none());
    let (status, shown) = s.get_json(&a_admin, &tenant_smtp(a_id)).await;
    assert_eq!(status, 200);
    assert_eq!(shown["from_email"], "hello@alpha.example");
    // Platform admins see it too.
    let (status, _) = s.get_json(&admin, &tenant_smtp(a_id)).await;
    assert_eq!(status, 200);

    // Alpha's test email goes through Alpha's settings (no platform settings exist).
    let to = unique_address("alpha-test");
    let resp = test_email(&s, &a_admin, &tenant_smtp(a_id), json!({"to": to})).await;
    assert_eq!(resp.status(), 200);
    let message = the_message_for(&smtp.maildir, &to).await;
    assert_eq!(message.header("From"), "Alpha <hello@alpha.example>");

    // Beta's settings do not exist for Alpha's admin; Beta has none.
    let beta_settings = smtp.settings("hello@beta.example", "Beta");
    for (method, path, body) in [
        (Method::GET, tenant_smtp(b_id), None),
        (Method::PUT, tenant_smtp(b_id), Some(beta_settings.clone())),
        (
            Method::POST,
            format!("{}/test", tenant_smtp(b_id)),
            Some(json!({"to": unique_address("beta")})),
        ),
    ] {
        let mut req = s.call(&a_admin, method.clone(), &path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (code, _) = error_of(req.send().await.unwrap(), 404).await;
        assert_eq!(code, "not_found", "{method} {path}");
    }
    let resp = s
        .call(&admin, Method::GET, &tenant_smtp(b_id))
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 404).await;
    assert_eq!(code, "not_configured", "Beta is untouched");
    // An unknown tenant is not found, even for platform admins.
    let unknown = uuid::Uuid::now_v7().to_string();
    let resp = s
        .call(&admin, Method::PUT, &tenant_smtp(&unknown))
        .json(&beta_settings)
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 404).await;
    assert_eq!(code, "not_found");

    // Platform settings and the outbox are for platform admins only.
    for (method, path, body) in [
        (Method::GET, PLATFORM_SMTP.to_owned(), None),
        (
            Method::PUT,
            PLATFORM_SMTP.to_owned(),
            Some(beta_settings.clone()),
        ),
        (
            Method::POST,
            format!("{PLATFORM_SMTP}/test"),
            Some(json!({"to": unique_address("x")})),
        ),
        (Method::GET, "/api/v1/system/mail-outbox".to_owned(), None),
    ] {
        let mut req = s.call(&a_admin, method.clone(), &path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (code, _) = error_of(req.send().await.unwrap(), 403).await;
        assert_eq!(code, "forbidden", "{method} {path}");
    }
    // An agent of Alpha may not touch Alpha's settings.
    let resp = s
        .call(&a_agent, Method::GET, &tenant_smtp(a_id))
        .send()
        .await
        .unwrap();
    error_of(resp, 403).await;
    let (status, _) = s.get_json(&admin, PLATFORM_SMTP).await;
    assert_eq!(status, 404, "the platform has still no settings");
    s.stop().await;
}

async fn invitations_and_resets_arrive_localized_through_the_outbox(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start_with(backend, allow_private_smtp).await;
    let admin = s.admin().await;
    put_smtp(
        &s,
        &admin,
        PLATFORM_SMTP,
        smtp.settings("noreply@imix.example", "iMix"),
    )
    .await;
    let tenant = s
        .create_tenant(
            &admin,
            json!({"name": "Société Gamma", "default_language": "fr"}),
        )
        .await;
    let tenant_id = tenant["id"].as_str().unwrap();

    // A French user invited without a password: the invitation arrives in French.
    let email = unique_address("invitee");
    let (status, user) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": email, "first_name": "Camille", "last_name": "Durand", "role": "agent", "tenant_id": tenant_id, "default_language": "fr"}))
        .await;
    assert_eq!(status, 201, "{user}");
    let message = the_message_for(&smtp.maildir, &email).await;
    assert_eq!(
        message.header("Subject"),
        "Vous êtes invité(e) à rejoindre Société Gamma sur iMix"
    );
    assert_eq!(message.header("Content-Language"), "fr");
    assert_eq!(message.header("From"), "iMix <noreply@imix.example>");
    assert!(message.header("To").contains(&email));
    let text = message.part("text/plain");
    let html = message.part("text/html");
    assert!(text.contains("Camille Durand"), "{text}");
    assert!(html.contains("lang=\"fr\"") && html.contains("dir=\"ltr\""));
    assert!(
        text.contains("http://localhost:8000/set-password?token="),
        "{text}"
    );
    let token = token_in(text);
    assert!(html.contains(&token), "the HTML part carries the same link");

    // The outbox lists it as sent, with the link redacted and no SMTP password anywhere.
    let (entry, raw) = wait_until_sent(&s, &admin, &email).await;
    assert_eq!(entry["template"], "invitation");
    assert_eq!(entry["language"], "fr");
    assert_eq!(entry["tenant_id"], tenant_id);
    assert_eq!(entry["attempts"], 1);
    assert!(entry["server_reply"].as_str().unwrap().starts_with("250"));
    assert!(entry["sent_at"].is_string());
    assert!(entry["redacted_body"]
        .as_str()
        .unwrap()
        .contains("/set-password?token=[redacted]"));
    assert!(
        !raw.contains(&token),
        "the token never appears in the listing"
    );
    assert!(!raw.contains(&smtp.password));
    assert!(entry.get("html").is_none() && entry.get("text").is_none());

    // The link works: the user sets a password and signs in.
    let (status, body) = s
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": token, "new_password": "amber-orchard-lantern-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.sign_in(&email, "amber-orchard-lantern-1").await;

    // An Arabic user's invitation is laid out right to left.
    let email_ar = unique_address("invitee-ar");
    let (status, _) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": email_ar, "first_name": "Layla", "last_name": "Haddad", "role": "agent", "tenant_id": tenant_id, "default_language": "ar"}))
        .await;
    assert_eq!(status, 201);
    let message = the_message_for(&smtp.maildir, &email_ar).await;
    assert_eq!(message.header("Content-Language"), "ar");
    assert!(message.part("text/html").contains("dir=\"rtl\""));
    assert!(message.header("Subject").contains("Société Gamma"));

    // Once the tenant has its own SMTP settings, its emails go through them: a password
    // reset, in the user's language.
    put_smtp(
        &s,
        &admin,
        &tenant_smtp(tenant_id),
        smtp.settings("bonjour@gamma.example", "Gamma"),
    )
    .await;
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/auth/forgot-password",
            json!({"email": email}),
        )
        .await;
    assert_eq!(status, 200);
    common::eventually("the reset email", || {
        received_for(&smtp.maildir, &email).len() == 2
    })
    .await;
    let reset = received_for(&smtp.maildir, &email).remove(1);
    assert_eq!(reset.header("From"), "Gamma <bonjour@gamma.example>");
    assert_eq!(
        reset.header("Subject"),
        "Réinitialisez votre mot de passe iMix"
    );
    let reset_token = token_in(reset.part("text/plain"));
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": reset_token, "new_password": "amber-orchard-lantern-2"}),
        )
        .await;
    assert_eq!(status, 200);
    s.sign_in(&email, "amber-orchard-lantern-2").await;

    // The listing pages newest first.
    let (_, page) = s
        .get_json(&admin, "/api/v1/system/mail-outbox?limit=1")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string());
    assert_eq!(page["items"][0]["template"], "password_reset");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_private_ca_from_imix_smtp_ca_file() {
    let smtp = Smtp::get();
    let ca = required("IMIX_TEST_SMTP_CA");
    let s = TestServer::start_with(Backend::Sqlite, |v| {
        v.insert("IMIX_SMTP_CA_FILE".into(), ca.clone());
    })
    .await;
    let admin = s.admin().await;
    let mut settings = smtp.settings("noreply@imix.example", "iMix TLS");
    settings["port"] = smtp.starttls_port.into();
    settings["security"] = "starttls".into();
    let saved = put_smtp(&s, &admin, PLATFORM_SMTP, settings).await;
    assert_eq!(saved["insecure"], false);
    let to = unique_address("starttls-ca");
    let resp = test_email(&s, &admin, PLATFORM_SMTP, json!({"to": to})).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let received = the_message_for(&smtp.maildir, &to).await;
    assert!(received.header("Subject").len() > 3);
    s.stop().await;
}

// --- Issue 8 ---------------------------------------------------------------------------------

/// Variables that a restarted server shares with the first: same data directory, logs and
/// database.
fn same_place(
    first: &std::collections::HashMap<String, String>,
) -> impl FnOnce(&mut std::collections::HashMap<String, String>) + '_ {
    move |vars| {
        for key in ["IMIX_DATA_DIR", "IMIX_LOG_DIR", "DB_NAME", "MONGODB_URI"] {
            if let Some(v) = first.get(key) {
                vars.insert(key.into(), v.clone());
            }
        }
    }
}

/// Puts emails into the outbox of the server configured by `vars` while it is stopped,
/// straight through the store (no validation of the recipient's name), as old data or a
/// bug could have left them. Returns the poisoned ids.
async fn enqueue_offline(
    vars: &std::collections::HashMap<String, String>,
    poisoned: &[&str],
    healthy: &str,
) -> Vec<imix_notify::OutboxId> {
    use imix_notify::{outbox::Outbox, templates::EmailContent, Mailbox};
    let config = imix_server::config::Config::from_vars(vars.clone()).unwrap();
    let store = imix_server::storage::Storage::open(&config).await.unwrap();
    let key = imix_server::state::load_or_generate_secret_key(&config).unwrap();
    let cipher = imix_server::state::build_cipher(&config, &key).unwrap();
    let templates = std::sync::Arc::new(
        imix_notify::templates::Templates::new("http://localhost:8000").unwrap(),
    );
    let outbox = Outbox::new(
        store.outbox.clone(),
        cipher,
        templates,
        imix_notify::outbox::OutboxConfig::default(),
    );
    let content = EmailContent::SmtpTest { host: "x".into() };
    let mut ids = Vec::new();
    for (i, to) in poisoned.iter().enumerate() {
        let id = outbox
            .enqueue(
                None,
                Mailbox::named("L\nBcc: victim@evil.example", *to),
                imix_core::Language::En,
                &content,
            )
            .await
            .unwrap();
        if i == 0 {
            // As the old worker left it after panicking: `sending`, its lease run out.
            let now = imix_core::now();
            let claimed = store
                .outbox
                .claim_due(now + chrono::Duration::seconds(1), now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.id, id);
        }
        ids.push(id);
    }
    outbox
        .enqueue(
            None,
            Mailbox::named("Next In Line", healthy),
            imix_core::Language::En,
            &content,
        )
        .await
        .unwrap();
    ids
}

async fn outbox_status(s: &TestServer, admin: &str, to: &str) -> Value {
    let (items, _) = outbox_for(s, admin, to).await;
    assert_eq!(items.len(), 1, "{items:?}");
    items[0].clone()
}

async fn a_poisoned_outbox_entry_fails_and_the_next_email_goes_out_also_after_a_restart(
    backend: Backend,
) {
    let smtp = Smtp::get();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = common::base_vars(dir.path(), backend);
    allow_private_smtp(&mut vars);
    let s = TestServer::start_with(backend, same_place(&vars)).await;
    let admin = s.admin().await;
    put_smtp(
        &s,
        &admin,
        PLATFORM_SMTP,
        smtp.settings("noreply@imix.example", "iMix"),
    )
    .await;
    drop(s.stop().await);

    for round in ["first", "after-restart"] {
        let poison = [
            unique_address(&format!("poison-sending-{round}")),
            unique_address(&format!("poison-pending-{round}")),
        ];
        let healthy = unique_address(&format!("healthy-{round}"));
        enqueue_offline(&vars, &[&poison[0], &poison[1]], &healthy).await;
        let s = TestServer::start_with(backend, same_place(&vars)).await;
        let admin = s.sign_in("admin@example.com", common::ADMIN_PASSWORD).await;

        // The email behind the poisoned ones is delivered…
        let message = the_message_for(&smtp.maildir, &healthy).await;
        assert!(message.header("To").contains("Next In Line"));
        // …and each poisoned one ends failed with the reason, none delivered, no Bcc.
        for to in &poison {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
            let entry = loop {
                let entry = outbox_status(&s, &admin, to).await;
                if entry["status"] == "failed" || std::time::Instant::now() > deadline {
                    break entry;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            assert_eq!(entry["status"], "failed", "{entry}");
            assert!(
                entry["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("display name"),
                "{entry}"
            );
            assert!(received_for(&smtp.maildir, to).is_empty());
        }
        assert!(received_for(&smtp.maildir, "victim@evil.example")
            .iter()
            .all(|m| !poison.iter().any(|p| m.rcpt_tos.contains(p))));

        // /health and /metrics show the worker alive and the failures.
        let health: Value = s.get("/health").await.json().await.unwrap();
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["mail_outbox"]["worker_alive"], true, "{health}");
        assert_eq!(health["mail_outbox"]["failures"], 2, "{health}");
        assert_eq!(health["mail_outbox"]["worker_restarts"], 0, "{health}");
        assert_eq!(
            health["mail_outbox"]["oldest_pending_seconds"], 0,
            "{health}"
        );
        let metrics = s.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("imix_mail_outbox_worker_alive 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("imix_mail_outbox_failures_total 2"),
            "{metrics}"
        );
        assert!(metrics.contains("imix_mail_outbox_oldest_pending_seconds 0"));
        drop(s.stop().await);
    }
}

async fn names_with_line_breaks_or_overrides_are_refused_and_every_bad_field_is_listed(
    backend: Backend,
) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let tenant = s.create_tenant(&admin, json!({"name": "Acme"})).await;
    let tenant_id = tenant["id"].as_str().unwrap();
    let create_user = |body: Value| {
        let s = &s;
        let admin = admin.clone();
        async move {
            s.call(&admin, Method::POST, "/api/v1/users")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    // The case: a line break in the last name.
    let resp = create_user(json!({"email": unique_address("nl"), "first_name": "F", "last_name": "L\nBcc: victim@evil.example", "role": "agent", "tenant_id": tenant_id})).await;
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "last_name", "{body}");
    for (first, last, field) in [
        ("Tab\there", "L", "first_name"),
        ("F", "evil\u{202E}fdp.exe", "last_name"),
        ("\u{200B}\u{200D}", "L", "first_name"),
    ] {
        let resp = create_user(json!({"email": unique_address("x"), "first_name": first, "last_name": last, "role": "agent", "tenant_id": tenant_id})).await;
        let (_, body) = error_of(resp, 422).await;
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }

    // Every bad field at once, in one shape: details.errors lists them all.
    let resp = create_user(json!({"email": "not-an-address", "first_name": "A\nB", "last_name": "\u{2066}x", "role": "agent", "tenant_id": tenant_id})).await;
    let (_, body) = error_of(resp, 422).await;
    let fields: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "first_name", "last_name"], "{body}");
    assert_eq!(body["error"]["details"]["field"], "email");

    let (status, body) = s
        .send_json(&admin, Method::POST, "/api/v1/tenants", json!({"name": "Evil\u{202E}gpj.exe", "organization": "Org\nBcc: x@evil.example", "phone": "12", "limits": {"max_agents": 9_000_000_000_u64}}))
        .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "organization", "phone", "limits.max_agents"],
        "{body}"
    );

    // Edits too: a tenant name of only invisible characters, a user name with a break.
    let (status, body) = s
        .send_json(
            &admin,
            Method::PATCH,
            &format!("/api/v1/tenants/{tenant_id}"),
            json!({"name": "\u{200B}\u{FEFF}", "email": "nope"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["errors"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let (_, user) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": unique_address("ok"), "first_name": "Good", "last_name": "Name", "role": "agent", "tenant_id": tenant_id, "password": "a-long-unusual-passphrase-7"}))
        .await;
    let (status, body) = s
        .send_json(
            &admin,
            Method::PATCH,
            &format!("/api/v1/users/{}", user["id"].as_str().unwrap()),
            json!({"last_name": "L\r\nBcc: v@evil.example"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "last_name");

    // A single bad field lists itself in details.errors too.
    let (_, body) = s
        .send_json(&admin, Method::POST, "/api/v1/tenants", json!({"name": ""}))
        .await;
    assert_eq!(
        body["error"]["details"]["errors"][0]["field"], "name",
        "{body}"
    );

    // A document name with a direction override is refused, naming the field.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec(),
        )
        .file_name("invoice\u{202E}fdp.exe"),
    );
    let resp = s
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{tenant_id}/documents"),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (_, body) = error_of(resp, 422).await;
    assert_eq!(body["error"]["details"]["field"], "file", "{body}");
}

async fn tenant_smtp_hosts_must_be_public_unless_the_operator_allows_them(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let tenant = s.create_tenant(&admin, json!({"name": "Acme"})).await;
    let tenant_id = tenant["id"].as_str().unwrap();
    for host in [
        smtp.host.as_str(),
        "localhost",
        "169.254.169.254",
        "10.1.2.3",
    ] {
        let mut settings = smtp.settings("support@acme.example", "Acme");
        settings["host"] = host.into();
        let resp = s
            .call(&admin, Method::PUT, &tenant_smtp(tenant_id))
            .json(&settings)
            .send()
            .await
            .unwrap();
        let (code, body) = error_of(resp, 422).await;
        assert_eq!(code, "invalid_field");
        assert_eq!(body["error"]["details"]["field"], "host", "{host}: {body}");
    }
    // The platform's settings may use a private host.
    put_smtp(
        &s,
        &admin,
        PLATFORM_SMTP,
        smtp.settings("noreply@imix.example", "iMix"),
    )
    .await;
    drop(s.stop().await);

    // With IMIX_ALLOW_PRIVATE_SMTP_HOSTS=true the same tenant settings are accepted.
    let s = TestServer::start_with(backend, allow_private_smtp).await;
    let admin = s.admin().await;
    let tenant = s.create_tenant(&admin, json!({"name": "Acme"})).await;
    put_smtp(
        &s,
        &admin,
        &tenant_smtp(tenant["id"].as_str().unwrap()),
        smtp.settings("support@acme.example", "Acme"),
    )
    .await;
}

async fn test_emails_and_reset_emails_are_throttled(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    put_smtp(
        &s,
        &admin,
        PLATFORM_SMTP,
        smtp.settings("noreply@imix.example", "iMix"),
    )
    .await;
    let tenant = s.create_tenant(&admin, json!({"name": "Acme"})).await;
    let path = tenant_smtp(tenant["id"].as_str().unwrap());

    // Five test emails per tenant in ten minutes; the sixth is 429 with Retry-After.
    for _ in 0..5 {
        let resp = test_email(&s, &admin, &path, json!({"to": unique_address("t")})).await;
        assert_eq!(resp.status(), 200);
    }
    let to = unique_address("sixth");
    let resp = test_email(&s, &admin, &path, json!({"to": to})).await;
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry_after));
    let (code, _) = error_of(resp, 429).await;
    assert_eq!(code, "rate_limited");
    assert!(received_for(&smtp.maildir, &to).is_empty());

    // Reset emails: three per address per hour; the caller gets the same answer each time.
    let email = unique_address("resets");
    let (status, _) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": email, "first_name": "R", "last_name": "Set", "role": "admin", "password": "a-long-unusual-passphrase-7"}))
        .await;
    assert_eq!(status, 201);
    let mut answers = Vec::new();
    for _ in 0..5 {
        let resp = s
            .client
            .post(s.url("/api/v1/auth/forgot-password"))
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        answers.push((resp.status().as_u16(), resp.text().await.unwrap()));
        // Sequential, so each is counted before the next (the work is in the background).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    common::eventually("three reset emails", || {
        received_for(&smtp.maildir, &email).len() >= 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(received_for(&smtp.maildir, &email).len(), 3);
}

async fn nothing_is_sent_for_a_deactivated_tenant_until_it_is_activated(backend: Backend) {
    let smtp = Smtp::get();
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    put_smtp(
        &s,
        &admin,
        PLATFORM_SMTP,
        smtp.settings("noreply@imix.example", "iMix"),
    )
    .await;
    let tenant = s.create_tenant(&admin, json!({"name": "Dormant"})).await;
    let tenant_id = tenant["id"].as_str().unwrap();
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{tenant_id}/deactivate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // An invitation is held, the SMTP test refused.
    let invitee = unique_address("held");
    let (status, user) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": invitee, "first_name": "Held", "last_name": "Back", "role": "agent", "tenant_id": tenant_id}))
        .await;
    assert_eq!(status, 201, "{user}");
    let to = unique_address("test");
    let resp = test_email(&s, &admin, &tenant_smtp(tenant_id), json!({"to": to})).await;
    let (code, _) = error_of(resp, 409).await;
    assert_eq!(code, "tenant_deactivated");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(received_for(&smtp.maildir, &invitee).is_empty());
    assert!(received_for(&smtp.maildir, &to).is_empty());
    assert!(outbox_for(&s, &admin, &invitee).await.0.is_empty());

    // Activated: the held invitation goes out.
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{tenant_id}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let message = the_message_for(&smtp.maildir, &invitee).await;
    assert!(message.part("text/plain").contains("/set-password?token="));
}
