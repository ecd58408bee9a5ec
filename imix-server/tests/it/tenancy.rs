//! Sign-in, users, tenants, files and the audit log through the HTTP API, on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{error_of, eventually, Backend, TestServer, ADMIN_PASSWORD, DEFAULT_ADMIN_PASSWORD};
use imix_notify::RecordingMailer;
use reqwest::Method;
use serde_json::json;

on_both_backends!(
    default_admin_must_change_password_first,
    sign_in_failures_are_uniform_and_throttled,
    one_address_cannot_flood_sign_in_across_accounts,
    refusals_by_the_address_cap_are_audited_once_a_minute,
    guessing_through_change_password_locks_the_account,
    tenants_crud_validation_and_private_notes,
    deactivating_a_tenant_locks_its_users_out_at_once_and_keeps_its_data,
    invitations_set_passwords_once,
    users_roles_and_escalation,
    deactivating_a_user_rejects_their_token_at_once,
    forgot_password_answers_the_same_either_way,
    logo_and_documents,
    audit_log_records_and_scopes,
    agent_limit_is_exact_under_concurrency,
    password_change_and_reset_revoke_earlier_tokens,
    passwords_are_capped_before_hashing,
    emails_are_bare_and_normalized,
    tokens_issued_in_the_future_are_refused,
    set_password_page_is_localized_and_sets_the_password,
    parallel_writes_to_one_tenant_all_succeed_and_leave_no_orphans,
    password_change_succeeds_while_the_account_signs_in,
    parallel_user_edits_and_status_changes_all_succeed,
    audit_log_defangs_attempted_sign_in_names,
);

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, b'I', b'D', b'A', b'T',
    0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, b'I', b'E', b'N',
    b'D', 0xae, 0x42, 0x60, 0x82,
];

async fn default_admin_must_change_password_first(backend: Backend) {
    let s = TestServer::start(backend).await;
    let resp = s
        .sign_in_raw("admin@example.com", DEFAULT_ADMIN_PASSWORD)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1440 * 60);
    assert_eq!(body["must_change_password"], true);
    let token = body["access_token"].as_str().unwrap().to_owned();

    let (code, _) = error_of(
        s.call(&token, Method::GET, "/api/v1/tenants")
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_eq!(code, "password_change_required");
    let (status, me) = s.get_json(&token, "/api/v1/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["must_change_password"], true);
    assert!(me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "platform.tenants"));

    let nuls = "\0".repeat(10);
    let huge = "correct horse battery staple ".repeat(40);
    for (bad, why) in [
        ("admin123", "the default"),
        ("short", "too short"),
        ("admin@example.com", "the email"),
        ("          ", "only of spaces or control characters"),
        (nuls.as_str(), "control characters"),
        ("aaaaaaaaaa", "easy to guess"),
        ("1234567890", "easy to guess"),
        ("password12", "easy to guess"),
        ("admin123  ", "default password"),
        ("ADMIN-rides-a-blue-bike", "your email address or your name"),
        (
            "administrator-rides-a-bike",
            "your email address or your name",
        ),
        (huge.as_str(), "at most 1024 bytes"),
    ] {
        let (status, body) = s
            .send_json(
                &token,
                Method::POST,
                "/api/v1/auth/change-password",
                json!({"current_password": DEFAULT_ADMIN_PASSWORD, "new_password": bad}),
            )
            .await;
        assert_eq!(status, 422, "{why}: {body}");
        assert_eq!(body["error"]["details"]["field"], "new_password");
        let message = body["error"]["message"].as_str().unwrap();
        if !["the default", "too short", "the email"].contains(&why) {
            assert!(message.contains(why), "{why}: {message}");
        }
    }
    let (status, body) = s
        .send_json(
            &token,
            Method::POST,
            "/api/v1/auth/change-password",
            json!({"current_password": "wrong", "new_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("current_password"))
    );
    let resp = s
        .call(&token, Method::POST, "/api/v1/auth/change-password")
        .json(&json!({"current_password": DEFAULT_ADMIN_PASSWORD, "new_password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let changed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (changed["ok"].as_bool(), changed["token_type"].as_str()),
        (Some(true), Some("bearer"))
    );
    assert_eq!(changed["expires_in"], 1440 * 60);
    // The token used for the change is revoked; the fresh one works everywhere; the old
    // password does not.
    let (code, _) = error_of(
        s.call(&token, Method::GET, "/api/v1/me")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert_eq!(code, "unauthenticated");
    let token = changed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get_json(&token, "/api/v1/tenants").await.0, 200);
    assert_eq!(
        s.sign_in_raw("admin@example.com", DEFAULT_ADMIN_PASSWORD)
            .await
            .status(),
        401
    );
    let fresh = s.sign_in_raw("admin@example.com", ADMIN_PASSWORD).await;
    let fresh: serde_json::Value = fresh.json().await.unwrap();
    assert_eq!(fresh["must_change_password"], false);

    // Tokens are checked: garbage, and none at all.
    let (code, _) = error_of(
        s.call("not-a-jwt", Method::GET, "/api/v1/me")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert_eq!(code, "unauthenticated");
    let (code, _) = error_of(s.get("/api/v1/me").await, 401).await;
    assert_eq!(code, "unauthenticated");
    s.stop().await;
}

async fn sign_in_failures_are_uniform_and_throttled(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let unknown = s.sign_in_raw("nobody@example.com", "whatever-123").await;
    let (code_unknown, body_unknown) = error_of(unknown, 401).await;
    let wrong = s.sign_in_raw("admin@example.com", "whatever-123").await;
    let (code_wrong, body_wrong) = error_of(wrong, 401).await;
    assert_eq!(code_unknown, "invalid_credentials");
    assert_eq!(code_wrong, code_unknown);
    assert_eq!(
        body_unknown, body_wrong,
        "unknown email and wrong password look the same"
    );

    // Four more failures make five within the window; then even the right password waits.
    for _ in 0..4 {
        assert_eq!(
            s.sign_in_raw("Admin@Example.com", "whatever-123")
                .await
                .status(),
            401
        );
    }
    let locked = s.sign_in_raw("admin@example.com", ADMIN_PASSWORD).await;
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let (code, _) = error_of(locked, 429).await;
    assert_eq!(code, "too_many_attempts");
    // The refused sign-in is in the audit log, with who was tried and from where.
    let (_, log) = s.get_json(&admin, "/api/v1/audit-log?limit=20").await;
    let throttled = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "auth.sign_in_throttled")
        .unwrap_or_else(|| panic!("no auth.sign_in_throttled entry in {log}"));
    assert_eq!(throttled["actor_email"], "admin@example.com");
    assert_eq!(throttled["client_addr"], "127.0.0.1");
    s.stop().await;
}

async fn one_address_cannot_flood_sign_in_across_accounts(backend: Backend) {
    let s = TestServer::start_with(backend, |vars| {
        vars.insert("SIGN_IN_ATTEMPTS_PER_MINUTE".into(), "4".into());
    })
    .await;
    // Four attempts on four different accounts: each account is far from its own limit.
    for n in 0..4 {
        let r = s
            .sign_in_raw(&format!("user{n}@example.com"), "whatever-123")
            .await;
        assert_eq!(r.status(), 401);
    }
    // The fifth, even the right password of a real account, waits: it is not checked.
    let flooded = s.sign_in_raw("admin@example.com", ADMIN_PASSWORD).await;
    assert_eq!(flooded.status(), 429);
    let retry: u64 = flooded.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=16).contains(&retry), "{retry}");
    let (code, body) = error_of(flooded, 429).await;
    assert_eq!(code, "too_many_attempts");
    assert!(body.to_string().contains("address"), "{body}");
    s.stop().await;
}

async fn refusals_by_the_address_cap_are_audited_once_a_minute(backend: Backend) {
    let s = TestServer::start_with(backend, |vars| {
        vars.insert("SIGN_IN_ATTEMPTS_PER_MINUTE".into(), "4".into());
    })
    .await;
    // The admin's sign-in is the first of the address's four attempts.
    let admin = s.admin().await;
    for n in 0..3 {
        let r = s
            .sign_in_raw(&format!("user{n}@example.com"), "whatever-123")
            .await;
        assert_eq!(r.status(), 401);
    }
    // A flood of refused attempts: each one refused, the first one audited, no more.
    for _ in 0..10 {
        let r = s.sign_in_raw("admin@example.com", ADMIN_PASSWORD).await;
        assert_eq!(r.status(), 429);
    }
    let (status, log) = s.get_json(&admin, "/api/v1/audit-log?limit=100").await;
    assert_eq!(status, 200, "{log}");
    let refused: Vec<_> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.sign_in_address_throttled")
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(refused[0]["target_type"], "address", "{log}");
    assert_eq!(refused[0]["target_id"], "127.0.0.1", "{log}");
    assert_eq!(refused[0]["client_addr"], "127.0.0.1", "{log}");
    // The body was never read: no email is claimed.
    assert!(refused[0]["actor_email"].is_null(), "{log}");
    s.stop().await;
}

async fn guessing_through_change_password_locks_the_account(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let (_, token) = s
        .user_with_token(
            &admin,
            json!({"email": "guess@example.com", "first_name": "G", "last_name": "U", "role": "admin"}),
        )
        .await;
    let guess = |n: u32| json!({"current_password": format!("guess-number-{n}"), "new_password": "another-passphrase-9"});
    for n in 0..5 {
        let (status, body) = s
            .send_json(
                &token,
                Method::POST,
                "/api/v1/auth/change-password",
                guess(n),
            )
            .await;
        assert_eq!(status, 422, "{body}");
    }
    // The sixth guess is refused unchecked, and so is signing in with the right password.
    let (status, body) = s
        .send_json(
            &token,
            Method::POST,
            "/api/v1/auth/change-password",
            guess(5),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    let locked = s
        .sign_in_raw("guess@example.com", "user-passphrase-22")
        .await;
    assert_eq!(locked.status(), 429);
    // The failed guesses are in the audit log.
    let (_, log) = s.get_json(&admin, "/api/v1/audit-log?limit=50").await;
    let failed = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.change_password_failed")
        .count();
    assert_eq!(failed, 5, "{log}");
    s.stop().await;
}

async fn tenants_crud_validation_and_private_notes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let tenant = s
        .create_tenant(
            &admin,
            json!({
                "name": "Acme Trading", "organization": "Acme SARL", "address": "Avenue Gamal Abdel Nasser, Nouakchott",
                "phone": "+22245123456", "mobile": "+22236123456", "email": "contact@acme.example",
                "private_notes": "pays late", "default_language": "fr",
                "limits": {"max_messages_per_day": 1000, "max_media_per_day": 100, "max_templates": 10, "max_agents": 5, "max_contacts": 5000}
            }),
        )
        .await;
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["default_language"], "fr");
    assert_eq!(
        tenant["limits"]["max_contact_groups"],
        serde_json::Value::Null,
        "missing limit = unlimited"
    );
    assert_eq!(tenant["private_notes"], "pays late");
    let id = tenant["id"].as_str().unwrap();

    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "X", "email": "not-an-email"}), "email"),
        (json!({"name": "X", "phone": "0612345678"}), "phone"),
        (json!({"name": "X", "mobile": "+1"}), "mobile"),
    ] {
        let (status, err) = s
            .send_json(&admin, Method::POST, "/api/v1/tenants", body)
            .await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["details"]["field"], field);
    }
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/tenants",
            json!({"name": "X", "limits": {"max_agents": -1}}),
        )
        .await;
    assert!(
        status == 400 || status == 422,
        "negative limit refused: {status}"
    );
    let listed = s.get_json(&admin, "/api/v1/tenants").await.1;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "refused tenants changed nothing"
    );

    let (status, patched) = s
        .send_json(
            &admin,
            Method::PATCH,
            &format!("/api/v1/tenants/{id}"),
            json!({"organization": null, "limits": {"max_agents": 2}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["organization"], serde_json::Value::Null);
    assert_eq!(patched["limits"]["max_agents"], 2);
    assert_eq!(
        patched["limits"]["max_messages_per_day"],
        serde_json::Value::Null
    );
    assert_eq!(patched["name"], "Acme Trading");
    assert_eq!(patched["version"], 2);

    // A tenant admin sees its tenant without the private notes and cannot change limits.
    let (_, tadmin) = s
        .user_with_token(&admin, json!({"email": "boss@acme.example", "first_name": "Mariem", "last_name": "Sidi", "role": "admin", "tenant_id": id}))
        .await;
    let (status, own) = s.get_json(&tadmin, &format!("/api/v1/tenants/{id}")).await;
    assert_eq!(status, 200);
    assert!(own.get("private_notes").is_none(), "{own}");
    let list = s.get_json(&tadmin, "/api/v1/tenants").await.1;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("private_notes").is_none());
    let (status, err) = s
        .send_json(
            &tadmin,
            Method::PATCH,
            &format!("/api/v1/tenants/{id}"),
            json!({"limits": {"max_agents": 99}}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = s
        .send_json(
            &tadmin,
            Method::PATCH,
            &format!("/api/v1/tenants/{id}"),
            json!({"address": "New address"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .send_json(
            &tadmin,
            Method::POST,
            "/api/v1/tenants",
            json!({"name": "Mine"}),
        )
        .await;
    assert_eq!(status, 403);
    s.stop().await;
}

async fn deactivating_a_tenant_locks_its_users_out_at_once_and_keeps_its_data(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "Sleepy"})).await;
    let id = t["id"].as_str().unwrap();
    let (user, token) = s
        .user_with_token(&admin, json!({"email": "agent@sleepy.example", "first_name": "A", "last_name": "B", "role": "agent", "tenant_id": id}))
        .await;
    assert_eq!(s.get_json(&token, "/api/v1/me").await.0, 200);

    let (status, t2) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/deactivate"),
            json!({}),
        )
        .await;
    assert_eq!((status, t2["status"].as_str()), (200, Some("deactivated")));
    let (code, _) = error_of(
        s.call(&token, Method::GET, "/api/v1/me")
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_eq!(
        code, "tenant_deactivated",
        "an existing token is refused at once"
    );
    let (code, _) = error_of(
        s.sign_in_raw("agent@sleepy.example", "user-passphrase-22")
            .await,
        403,
    )
    .await;
    assert_eq!(code, "tenant_deactivated");

    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, me) = s.get_json(&token, "/api/v1/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["id"], user["id"]);
    let (_, back) = s.get_json(&admin, &format!("/api/v1/tenants/{id}")).await;
    assert_eq!(back["name"], "Sleepy");
    s.stop().await;
}

async fn invitations_set_passwords_once(backend: Backend) {
    let mailer = RecordingMailer::default();
    let s = TestServer::start_recording(backend, mailer.clone()).await;
    let admin = s.admin().await;
    let t = s
        .create_tenant(&admin, json!({"name": "Invites", "default_language": "ar"}))
        .await;
    let (status, user) = s
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/users",
            json!({"email": "Fatima@Invites.example", "first_name": "Fatima", "last_name": "Mint Ahmed", "role": "agent", "tenant_id": t["id"]}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["status"], "invited");
    assert_eq!(
        user["default_language"], "ar",
        "the tenant's default language"
    );
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    let sent = mailer.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].to.email, "Fatima@invites.example",
        "stored trimmed, with the domain lower-cased"
    );
    assert_eq!(sent[0].language, imix_core::Language::Ar);
    let link = sent[0]
        .text
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with("http://localhost:8000/set-password?token="),
        "{link}"
    );
    let token = link.split("token=").nth(1).unwrap().to_owned();

    // Not signed in yet: no password.
    assert_eq!(
        s.sign_in_raw("fatima@invites.example", "anything-at-all")
            .await
            .status(),
        401
    );
    let (status, body) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": token, "new_password": "short"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("new_password"))
    );
    // The refused password did not use the link up.
    let (status, body) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": token, "new_password": "desert-rose-lantern"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": token, "new_password": "another-passphrase"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("token")),
        "single use"
    );
    let token = s
        .sign_in("fatima@invites.example", "desert-rose-lantern")
        .await;
    let (_, me) = s.get_json(&token, "/api/v1/me").await;
    assert_eq!(me["user"]["status"], "active");
    assert_eq!(me["user"]["must_change_password"], false);
    s.stop().await;
}

async fn users_roles_and_escalation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let a = s.create_tenant(&admin, json!({"name": "A"})).await;
    let b = s.create_tenant(&admin, json!({"name": "B"})).await;
    let a_id = a["id"].as_str().unwrap();
    let (_, a_admin) = s
        .user_with_token(&admin, json!({"email": "admin@a.example", "first_name": "A", "last_name": "Admin", "role": "admin", "tenant_id": a_id}))
        .await;

    // Email unique regardless of case.
    let (status, err) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "ADMIN@A.example", "first_name": "X", "last_name": "Y", "role": "agent", "tenant_id": a_id, "password": "initial-password-1"}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("email_taken"))
    );

    // Platform users must be admins.
    let (status, err) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "ops2@agency.example", "first_name": "X", "last_name": "Y", "role": "agent", "password": "initial-password-1"}))
        .await;
    assert_eq!(
        (status, err["error"]["details"]["field"].as_str()),
        (422, Some("role"))
    );

    // A tenant admin creates users only in its tenant…
    let (status, created) = s
        .send_json(&a_admin, Method::POST, "/api/v1/users", json!({"email": "agent@a.example", "first_name": "X", "last_name": "Y", "role": "agent", "password": "initial-password-1"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        created["tenant_id"], a["id"],
        "defaults to the admin's own tenant"
    );
    let (status, _) = s
        .send_json(&a_admin, Method::POST, "/api/v1/users", json!({"email": "spy@b.example", "first_name": "X", "last_name": "Y", "role": "agent", "tenant_id": b["id"], "password": "initial-password-1"}))
        .await;
    assert_eq!(
        status, 404,
        "another tenant does not exist for a tenant admin"
    );
    // …and cannot grant platform permissions.
    let (status, err) = s
        .send_json(&a_admin, Method::POST, "/api/v1/users", json!({"email": "c@a.example", "first_name": "X", "last_name": "Y", "role": "custom", "permissions": ["platform.tenants"], "password": "initial-password-1"}))
        .await;
    assert_eq!(
        (status, err["error"]["details"]["field"].as_str()),
        (422, Some("permissions"))
    );
    let (status, custom) = s
        .send_json(&a_admin, Method::POST, "/api/v1/users", json!({"email": "c@a.example", "first_name": "X", "last_name": "Y", "role": "custom", "permissions": ["contacts.read", "usage.read"], "password": "initial-password-1"}))
        .await;
    assert_eq!(status, 201, "{custom}");

    // An agent cannot manage users; a manager cannot raise anyone to admin.
    let (_, manager) = s
        .user_with_token(&admin, json!({"email": "m@a.example", "first_name": "M", "last_name": "M", "role": "manager", "tenant_id": a_id}))
        .await;
    let (status, err) = s
        .send_json(
            &manager,
            Method::PATCH,
            &format!("/api/v1/users/{}", created["id"].as_str().unwrap()),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, agent_view) = s
        .get_json(
            &manager,
            &format!("/api/v1/users/{}", created["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!((status, agent_view["role"].as_str()), (200, Some("agent")));

    // Listing is tenant-scoped.
    let (_, list) = s.get_json(&a_admin, "/api/v1/users").await;
    let emails: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert!(
        emails.iter().all(|e| e.ends_with("@a.example")),
        "{emails:?}"
    );
    let (status, _) = s
        .get_json(
            &a_admin,
            &format!("/api/v1/users?tenant_id={}", b["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 404);
    let (_, all) = s.get_json(&admin, "/api/v1/users?limit=2").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert!(all["next_cursor"].is_string());
    s.stop().await;
}

async fn deactivating_a_user_rejects_their_token_at_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "T"})).await;
    let (user, token) = s
        .user_with_token(&admin, json!({"email": "u@t.example", "first_name": "U", "last_name": "T", "role": "agent", "tenant_id": t["id"]}))
        .await;
    let uid = user["id"].as_str().unwrap();
    assert_eq!(s.get_json(&token, "/api/v1/me").await.0, 200);
    let (status, d) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{uid}/deactivate"),
            json!({}),
        )
        .await;
    assert_eq!((status, d["status"].as_str()), (200, Some("deactivated")));
    let (code, _) = error_of(
        s.call(&token, Method::GET, "/api/v1/me")
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_eq!(code, "account_deactivated");
    let (status, a) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{uid}/activate"),
            json!({}),
        )
        .await;
    assert_eq!((status, a["status"].as_str()), (200, Some("active")));
    assert_eq!(s.get_json(&token, "/api/v1/me").await.0, 200);
    // Nobody deactivates themselves.
    let me = s.get_json(&admin, "/api/v1/me").await.1;
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!(
                "/api/v1/users/{}/deactivate",
                me["user"]["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    s.stop().await;
}

async fn forgot_password_answers_the_same_either_way(backend: Backend) {
    let mailer = RecordingMailer::default();
    let s = TestServer::start_recording(backend, mailer.clone()).await;
    s.admin().await;
    let known = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/forgot-password",
            json!({"email": "admin@example.com"}),
        )
        .await;
    let unknown = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/forgot-password",
            json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!(known, unknown);
    assert_eq!(known.0, 200);
    eventually("the reset email", || !mailer.sent().is_empty()).await;
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1, "only the known account gets an email");
    let link = sent[0]
        .text
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap();
    let token = link.split("token=").nth(1).unwrap();
    let (status, _) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": token, "new_password": "brand-new-passphrase"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": token, "new_password": "another-passphrase"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("token")),
        "single use"
    );
    assert_eq!(
        s.sign_in_raw("admin@example.com", "brand-new-passphrase")
            .await
            .status(),
        200
    );
    s.stop().await;
}

async fn logo_and_documents(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "Files"})).await;
    let id = t["id"].as_str().unwrap();
    let upload = |bytes: &'static [u8], name: &str, mime: &str| {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_owned())
                .mime_str(mime)
                .unwrap(),
        )
    };

    // A text file that claims to be a PNG is refused: the type comes from the bytes.
    let resp = s
        .call(&admin, Method::PUT, &format!("/api/v1/tenants/{id}/logo"))
        .multipart(upload(b"just text", "logo.png", "image/png"))
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(
        (code.as_str(), body["error"]["details"]["field"].as_str()),
        ("invalid_field", Some("logo"))
    );
    let resp = s
        .call(&admin, Method::PUT, &format!("/api/v1/tenants/{id}/logo"))
        .multipart(upload(PNG, "logo.bin", "application/octet-stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(view["logo_url"], format!("/api/v1/tenants/{id}/logo"));
    let logo = s
        .call(&admin, Method::GET, &format!("/api/v1/tenants/{id}/logo"))
        .send()
        .await
        .unwrap();
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert_eq!(logo.bytes().await.unwrap().as_ref(), PNG);

    let pdf: &'static [u8] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
    let resp = s
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/documents"),
        )
        .multipart(upload(pdf, "Contrat signé.pdf", "application/pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["file_name"], "Contrat signé.pdf");
    assert_eq!(doc["content_type"], "application/pdf");
    let resp = s
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/documents"),
        )
        .multipart(upload(
            b"#!/bin/sh\nrm -rf /\n",
            "notes.pdf",
            "application/pdf",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let (_, list) = s
        .get_json(&admin, &format!("/api/v1/tenants/{id}/documents"))
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let dl = s
        .call(&admin, Method::GET, doc["download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(dl.status(), 200);
    assert_eq!(dl.headers()["content-type"], "application/pdf");
    let disposition = dl.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''Contrat%20sign%C3%A9.pdf"),
        "{disposition}"
    );
    assert_eq!(dl.bytes().await.unwrap().as_ref(), pdf);
    let del = s
        .call(
            &admin,
            Method::DELETE,
            doc["download_url"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(
        s.get_json(&admin, doc["download_url"].as_str().unwrap())
            .await
            .0,
        404
    );

    // Larger than 2 MB: refused before it is stored.
    let big: &'static [u8] = Box::leak(vec![0u8; 2 * 1024 * 1024 + 1].into_boxed_slice());
    let resp = s
        .call(&admin, Method::PUT, &format!("/api/v1/tenants/{id}/logo"))
        .multipart(upload(big, "big.png", "image/png"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    s.stop().await;
}

async fn audit_log_records_and_scopes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let _ = s.sign_in_raw("admin@example.com", "wrong-password-1").await;
    let a = s.create_tenant(&admin, json!({"name": "Audited A"})).await;
    let b = s.create_tenant(&admin, json!({"name": "Audited B"})).await;
    let (_, a_admin) = s
        .user_with_token(&admin, json!({"email": "x@auda.example", "first_name": "X", "last_name": "Y", "role": "admin", "tenant_id": a["id"]}))
        .await;
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{}/deactivate", b["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, log) = s.get_json(&admin, "/api/v1/audit-log?limit=100").await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "auth.sign_in",
        "auth.sign_in_failed",
        "auth.change_password",
        "tenant.create",
        "user.create",
        "tenant.deactivate",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert_eq!(actions[0], "tenant.deactivate", "newest first");
    let entry = &log["items"][0];
    assert_eq!(entry["target_id"], b["id"]);
    assert_eq!(entry["client_addr"], "127.0.0.1");
    assert!(entry["actor_id"].is_string());

    let (status, own) = s.get_json(&a_admin, "/api/v1/audit-log?limit=100").await;
    assert_eq!(status, 200);
    let items = own["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|e| e["tenant_id"] == a["id"]), "{own}");
    s.stop().await;
}

async fn agent_limit_is_exact_under_concurrency(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let t = s
        .create_tenant(
            &admin,
            json!({"name": "Limited", "limits": {"max_agents": 5}}),
        )
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let attempts = 20;
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let (client, url, admin, id) = (s.client.clone(), s.url("/api/v1/users"), admin.clone(), id.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(admin)
                    .json(&json!({"email": format!("agent{i}@limited.example"), "first_name": "A", "last_name": "B", "role": "agent", "tenant_id": id, "password": "initial-password-1"}))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let resp = task.await.unwrap();
        match resp.status().as_u16() {
            201 => created.push(resp.json::<serde_json::Value>().await.unwrap()),
            429 => {
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "limit_reached");
                assert_eq!(body["error"]["details"]["limit_name"], "agents");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    eprintln!(
        "agents ({backend:?}): {} of {attempts} concurrent creations accepted against a limit of 5",
        created.len()
    );
    assert_eq!((created.len(), refused), (5, attempts - 5));

    let (status, usage) = s
        .get_json(&admin, &format!("/api/v1/tenants/{id}/usage"))
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["counts"]["agents"], 5);
    assert_eq!(usage["limits"]["max_agents"], 5);
    assert_eq!(usage["today"]["messages"], 0);
    assert!(usage["resets_at"].as_str().unwrap().contains("T00:00:00"));

    // Deactivating frees a slot; activating needs one.
    let first = created[0]["id"].as_str().unwrap();
    let (status, _) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{first}/deactivate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.get_json(&admin, &format!("/api/v1/tenants/{id}/usage"))
            .await
            .1["counts"]["agents"],
        4
    );
    let (status, _) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "late@limited.example", "first_name": "L", "last_name": "L", "role": "agent", "tenant_id": id, "password": "initial-password-1"}))
        .await;
    assert_eq!(status, 201);
    let (status, body) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{first}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("limit_reached"))
    );
    let (_, still) = s.get_json(&admin, &format!("/api/v1/users/{first}")).await;
    assert_eq!(
        still["status"], "deactivated",
        "a refused activation changed nothing"
    );
    s.stop().await;
}

/// The token in the link of the newest email `mailer` recorded for `to`.
fn emailed_token(mailer: &RecordingMailer, to: &str) -> String {
    let sent = mailer.sent();
    let message = sent
        .iter()
        .rev()
        .find(|m| m.to.email.eq_ignore_ascii_case(to))
        .unwrap_or_else(|| panic!("no email to {to}"));
    let link = message
        .text
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap();
    link.split("token=").nth(1).unwrap().to_owned()
}

async fn password_change_and_reset_revoke_earlier_tokens(backend: Backend) {
    let mailer = RecordingMailer::default();
    let s = TestServer::start_recording(backend, mailer.clone()).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "Revoke"})).await;
    let (_, first) = s
        .user_with_token(&admin, json!({"email": "rev@revoke.example", "first_name": "Rev", "last_name": "Oke", "role": "agent", "tenant_id": t["id"]}))
        .await;
    // A second token of the same generation, issued within the same second as the change
    // below: a timestamp comparison in whole seconds would let it through.
    let second = s.sign_in("rev@revoke.example", "user-passphrase-22").await;
    assert_eq!(s.get_json(&second, "/api/v1/me").await.0, 200);
    let resp = s
        .call(&first, Method::POST, "/api/v1/auth/change-password")
        .json(&json!({"current_password": "user-passphrase-22", "new_password": "quiet-orchard-lamp-7"}))
        .send()
        .await
        .unwrap();
    let fresh = common::fresh_token(resp).await;
    for old in [&first, &second] {
        let (code, _) = error_of(
            s.call(old, Method::GET, "/api/v1/me").send().await.unwrap(),
            401,
        )
        .await;
        assert_eq!(code, "unauthenticated");
    }
    assert_eq!(s.get_json(&fresh, "/api/v1/me").await.0, 200);

    // A reset revokes every token too, the fresh one included.
    let (status, _) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/forgot-password",
            json!({"email": "rev@revoke.example"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the reset email", || {
        mailer
            .sent()
            .iter()
            .any(|m| m.to.email == "rev@revoke.example")
    })
    .await;
    let reset = emailed_token(&mailer, "rev@revoke.example");
    let (status, body) = s
        .send_json(
            "",
            Method::POST,
            "/api/v1/auth/set-password",
            json!({"token": reset, "new_password": "velvet-canyon-echo-3"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get_json(&fresh, "/api/v1/me").await.0, 401);
    let after = s
        .sign_in("rev@revoke.example", "velvet-canyon-echo-3")
        .await;
    assert_eq!(s.get_json(&after, "/api/v1/me").await.0, 200);
    // Other users' tokens are untouched.
    assert_eq!(s.get_json(&admin, "/api/v1/me").await.0, 200);
    s.stop().await;
}

async fn passwords_are_capped_before_hashing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let long = "x".repeat(1025);
    // Sign-in: refused before any verification, and not counted as a failed attempt.
    for _ in 0..6 {
        let (code, body) = error_of(s.sign_in_raw("admin@example.com", &long).await, 422).await;
        assert_eq!(code, "invalid_field");
        assert_eq!(body["error"]["details"]["field"], "password");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"));
    }
    assert_eq!(
        s.sign_in_raw("admin@example.com", ADMIN_PASSWORD)
            .await
            .status(),
        200,
        "over-long passwords did not lock the account"
    );
    // Initial passwords, current passwords and new ones.
    let (status, body) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "long@agency.example", "first_name": "Lo", "last_name": "Ng", "role": "admin", "password": "unrelated words ".repeat(70)}))
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("password")),
        "{body}"
    );
    let (status, body) = s
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/auth/change-password",
            json!({"current_password": long, "new_password": "quiet-orchard-lamp-7"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("current_password"))
    );
    // Exactly 1,024 bytes is fine.
    let (status, body) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "max@agency.example", "first_name": "Ma", "last_name": "X", "role": "admin", "password": "unrelated words ".repeat(64)}))
        .await;
    assert_eq!(status, 201, "{body}");
    s.stop().await;
}

async fn emails_are_bare_and_normalized(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    for bad in [
        "Platform <admin@example.com>",
        "<admin@example.com>",
        "admin@[127.0.0.1]",
    ] {
        let (status, body) = s
            .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": bad, "first_name": "P", "last_name": "Q", "role": "admin", "password": "initial-password-1"}))
            .await;
        assert_eq!(
            (status, body["error"]["details"]["field"].as_str()),
            (422, Some("email")),
            "{bad}: {body}"
        );
    }
    let (status, user) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "  Ops.Lead@Agency.EXAMPLE ", "first_name": "Ops", "last_name": "Lead", "role": "admin", "password": "initial-password-1"}))
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "Ops.Lead@agency.example");
    let (status, body) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "ops.lead@agency.example", "first_name": "Ops", "last_name": "Lead", "role": "admin", "password": "initial-password-1"}))
        .await;
    assert_eq!(status, 409, "{body}");
    // Sign-in normalizes the same way.
    s.sign_in(" OPS.LEAD@agency.Example ", "initial-password-1")
        .await;
    // Edits are validated and normalized too.
    let id = user["id"].as_str().unwrap();
    let (status, body) = s
        .send_json(
            &admin,
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            json!({"email": "Ops <ops@agency.example>"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (422, Some("email"))
    );
    s.stop().await;
}

async fn tokens_issued_in_the_future_are_refused(backend: Backend) {
    const KEY: &str = "a-test-secret-key-that-is-long-enough-0123";
    let s = TestServer::start_with(backend, |v| {
        v.insert("SECRET_KEY".into(), KEY.into());
    })
    .await;
    let admin = s.admin().await;
    let (_, me) = s.get_json(&admin, "/api/v1/me").await;
    let now = chrono::Utc::now().timestamp();
    let forge = |iat: i64, nbf: Option<i64>| {
        let mut claims = json!({
            "sub": me["user"]["id"], "iss": "imix", "aud": "imix-api",
            "iat": iat, "exp": now + 7200, "jti": "forged",
            // The admin changed the default password once.
            "generation": 1,
        });
        if let Some(nbf) = nbf {
            claims["nbf"] = nbf.into();
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap()
    };
    // Correctly signed and current: accepted (so the refusals below are for the dates).
    assert_eq!(s.get_json(&forge(now, None), "/api/v1/me").await.0, 200);
    assert_eq!(
        s.get_json(&forge(now + 30, None), "/api/v1/me").await.0,
        200,
        "within the leeway"
    );
    for (token, why) in [
        (forge(now + 3600, None), "iat in the future"),
        (forge(now, Some(now + 3600)), "nbf in the future"),
    ] {
        let (code, _) = error_of(
            s.call(&token, Method::GET, "/api/v1/me")
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        assert_eq!(code, "unauthenticated", "{why}");
    }
    s.stop().await;
}

async fn set_password_page_is_localized_and_sets_the_password(backend: Backend) {
    let mailer = RecordingMailer::default();
    let s = TestServer::start_recording(backend, mailer.clone()).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "Paged"})).await;
    let (status, _) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "invitee@paged.example", "first_name": "Nadia", "last_name": "Salem", "role": "agent", "tenant_id": t["id"]}))
        .await;
    assert_eq!(status, 201);
    let token = emailed_token(&mailer, "invitee@paged.example");

    // The page, in each language: by ?lang=, by Accept-Language, English by default.
    for (query, accept, lang, heading) in [
        ("", None, "en", "Set your password"),
        ("&lang=fr", None, "fr", "Choisissez votre mot de passe"),
        ("&lang=ar", None, "ar", "عيّن كلمة المرور"),
        ("", Some("ar-MA,fr;q=0.8"), "ar", "عيّن كلمة المرور"),
        (
            "",
            Some("de,fr;q=0.7"),
            "fr",
            "Choisissez votre mot de passe",
        ),
    ] {
        let mut req = s
            .client
            .get(s.url(&format!("/set-password?token={token}{query}")));
        if let Some(accept) = accept {
            req = req.header("accept-language", accept);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{query} {accept:?}");
        let headers = resp.headers().clone();
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let html = resp.text().await.unwrap();
        assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{html}");
        assert_eq!(html.contains("dir=\"rtl\""), lang == "ar", "{lang}");
        assert!(html.contains(heading), "{lang}");
        assert!(html.contains("method=\"post\" action=\"/set-password\""));
        assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")));
        assert!(html.contains("href=\"/docs\""), "leads to sign-in");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external asset"
        );
    }
    // Markup in the query is escaped, not echoed.
    let html = s
        .get("/set-password?token=%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    // No token: no form.
    assert_eq!(s.get("/set-password").await.status(), 400);

    // The form sets the password through the same service: refused ones explain why and
    // keep the link usable.
    let post = |fields: Vec<(&'static str, String)>| {
        s.client.post(s.url("/set-password")).form(&fields).send()
    };
    let resp = post(vec![
        ("token", token.clone()),
        ("lang", "fr".into()),
        ("new_password", "aaaaaaaaaa".into()),
        ("confirm_password", "aaaaaaaaaa".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), 422);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("Ce mot de passe ne peut pas être utilisé")
            && html.contains("too easy to guess"),
        "{html}"
    );
    let resp = post(vec![
        ("token", token.clone()),
        ("new_password", "lantern-harbor-violet".into()),
        ("confirm_password", "lantern-harbor-violeT".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("The two passwords differ"));
    let resp = post(vec![
        ("token", token.clone()),
        ("lang", "ar".into()),
        ("new_password", "lantern-harbor-violet".into()),
        ("confirm_password", "lantern-harbor-violet".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("dir=\"rtl\"") && html.contains("تم تعيين كلمة المرور"),
        "{html}"
    );
    s.sign_in("invitee@paged.example", "lantern-harbor-violet")
        .await;
    // The link is used up.
    let resp = post(vec![
        ("token", token.clone()),
        ("new_password", "another-harbor-violet".into()),
        ("confirm_password", "another-harbor-violet".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.unwrap().contains("This link is invalid"));
    s.stop().await;
}

/// Issue 8 item 9: parallel uploads and edits of one tenant, none of them versioned by the
/// client, all succeed; every stored file is listed by the tenant afterwards.
async fn parallel_writes_to_one_tenant_all_succeed_and_leave_no_orphans(backend: Backend) {
    let mut vars = std::collections::HashMap::new();
    let s = TestServer::start_with(backend, |v| vars = v.clone()).await;
    let admin = s.admin().await;
    let t = s.create_tenant(&admin, json!({"name": "Busy"})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let pdf: &'static [u8] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
    let form = |bytes: &'static [u8], name: String, mime: &str| {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str(mime)
                .unwrap(),
        )
    };

    let mut tasks = Vec::new();
    for i in 0..20 {
        let request = s
            .call(
                &admin,
                Method::POST,
                &format!("/api/v1/tenants/{id}/documents"),
            )
            .multipart(form(pdf, format!("doc-{i}.pdf"), "application/pdf"));
        tasks.push(("document", tokio::spawn(request.send())));
    }
    for _ in 0..20 {
        let request = s
            .call(&admin, Method::PUT, &format!("/api/v1/tenants/{id}/logo"))
            .multipart(form(PNG, "logo.png".into(), "image/png"));
        tasks.push(("logo", tokio::spawn(request.send())));
    }
    for i in 0..40 {
        let request = s
            .call(&admin, Method::PATCH, &format!("/api/v1/tenants/{id}"))
            .json(&json!({"address": format!("{i} Parallel Street")}));
        tasks.push(("patch", tokio::spawn(request.send())));
    }
    let mut failures = Vec::new();
    for (what, task) in tasks {
        let resp = task.await.unwrap().unwrap();
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            failures.push(format!("{what}: {status} {}", resp.text().await.unwrap()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );

    let (status, tenant) = s.get_json(&admin, &format!("/api/v1/tenants/{id}")).await;
    assert_eq!(status, 200);
    assert!(tenant["address"]
        .as_str()
        .unwrap()
        .ends_with("Parallel Street"));
    assert_eq!(tenant["version"].as_u64().unwrap(), 1 + 20 + 20 + 40);
    let (_, docs) = s
        .get_json(&admin, &format!("/api/v1/tenants/{id}/documents"))
        .await;
    let docs = docs["items"].as_array().expect("a document list");
    assert_eq!(docs.len(), 20, "{docs:?}");
    let logo = s
        .call(&admin, Method::GET, &format!("/api/v1/tenants/{id}/logo"))
        .send()
        .await
        .unwrap();
    assert_eq!(logo.status(), 200);

    let _dir = s.stop().await;
    let config = imix_server::config::Config::from_vars(vars).unwrap();
    let store = imix_server::storage::Storage::open(&config).await.unwrap();
    let later = imix_core::now() + chrono::Duration::seconds(1);
    let check = imix_server::doctor::orphaned_blobs(&store, later).await;
    assert!(check.ok, "{}", check.line());
    let stored = store.store.blobs.list("tenants/", None, 100).await.unwrap();
    assert_eq!(stored.len(), 21, "20 documents and the current logo");
}

/// A password change is not refused because the same account signs in meanwhile (each
/// sign-in stamps `last_login_at` on the user): the change is applied to the user as then
/// stored. The probe answered 409 `version_conflict` 20 times out of 20.
async fn password_change_succeeds_while_the_account_signs_in(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    for round in 0..3 {
        let email = format!("busy{round}@signins.example");
        let (_, token) = s
            .user_with_token(
                &admin,
                json!({"email": email, "first_name": "Busy", "last_name": "Bee", "role": "admin"}),
            )
            .await;
        let sign_ins: Vec<_> = (0..8)
            .map(|_| {
                let (client, url, email) = (s.client.clone(), s.url("/auth/token"), email.clone());
                tokio::spawn(async move {
                    client
                        .post(url)
                        .form(&[
                            ("grant_type", "password"),
                            ("username", email.as_str()),
                            ("password", "user-passphrase-22"),
                        ])
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let resp = s
            .call(&token, Method::POST, "/api/v1/auth/change-password")
            .json(&json!({"current_password": "user-passphrase-22", "new_password": "quiet-lantern-orbit-7"}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "round {round}: {body}");
        let fresh = body["access_token"].as_str().unwrap();
        for task in sign_ins {
            // Before the change: signed in; after it: the old password is wrong.
            let status = task.await.unwrap();
            assert!([200, 401].contains(&status), "sign-in answered {status}");
        }
        let (status, me) = s.get_json(fresh, "/api/v1/me").await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(
            s.sign_in_raw(&email, "quiet-lantern-orbit-7")
                .await
                .status(),
            200
        );
    }
    s.stop().await;
}

/// Unversioned writes to one user never answer 409: parallel edits each apply just the fields
/// they sent to the user as then stored; parallel activations and deactivations all succeed
/// and leave the agent count exact. The probe got 28 conflicts out of 50 edits and 9 out of 40
/// status changes.
async fn parallel_user_edits_and_status_changes_all_succeed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let t = s
        .create_tenant(&admin, json!({"name": "Busy", "limits": {"max_agents": 2}}))
        .await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (status, user) = s
        .send_json(&admin, Method::POST, "/api/v1/users", json!({"email": "edited@busy.example", "first_name": "E", "last_name": "D", "role": "agent", "tenant_id": tenant, "password": "initial-password-1"}))
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/users/{id}");

    // Half the edits send only a first name, half only a last name.
    let edits: Vec<_> = (0..50)
        .map(|i| {
            let (client, url, admin) = (s.client.clone(), s.url(&path), admin.clone());
            let body = if i % 2 == 0 {
                json!({"first_name": format!("First{i}")})
            } else {
                json!({"last_name": format!("Last{i}")})
            };
            tokio::spawn(async move {
                let resp = client
                    .patch(url)
                    .bearer_auth(admin)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    for task in edits {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (_, now) = s.get_json(&admin, &path).await;
    assert!(
        now["first_name"].as_str().unwrap().starts_with("First"),
        "{now}"
    );
    assert!(
        now["last_name"].as_str().unwrap().starts_with("Last"),
        "{now}"
    );
    assert_eq!(now["email"], "edited@busy.example");

    let switches: Vec<_> = (0..40)
        .map(|i| {
            let action = if i % 2 == 0 { "deactivate" } else { "activate" };
            let (client, url, admin) = (
                s.client.clone(),
                s.url(&format!("{path}/{action}")),
                admin.clone(),
            );
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .bearer_auth(admin)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    for task in switches {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (_, now) = s.get_json(&admin, &path).await;
    let active = i64::from(now["status"] != "deactivated");
    let (_, usage) = s
        .get_json(&admin, &format!("/api/v1/tenants/{tenant}/usage"))
        .await;
    assert_eq!(usage["counts"]["agents"], active, "{now} {usage}");
    s.stop().await;
}

/// Attempted sign-in names are attacker-chosen: the audit log keeps them without line
/// breaks, terminal escapes or direction overrides, and at most 254 characters long.
async fn audit_log_defangs_attempted_sign_in_names(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin().await;
    let hostile = "x@evil.example\n2026-01-01 auth.sign_in admin\u{1b}[31m\u{202E}moc.evil";
    for _ in 0..6 {
        let _ = s.sign_in_raw(hostile, "wrong-password-1").await;
    }
    let long = format!("{}@evil.example", "a".repeat(600));
    let _ = s.sign_in_raw(&long, "wrong-password-1").await;
    let (status, log) = s.get_json(&admin, "/api/v1/audit-log?limit=100").await;
    assert_eq!(status, 200);
    let recorded: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("auth.sign_in_"))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor_email"].as_str().unwrap(),
            )
        })
        .collect();
    let actions: Vec<&str> = recorded.iter().map(|(a, _)| *a).collect();
    assert!(actions.contains(&"auth.sign_in_failed"), "{actions:?}");
    assert!(actions.contains(&"auth.sign_in_throttled"), "{actions:?}");
    for (_, name) in &recorded {
        assert!(
            !name
                .chars()
                .any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}')),
            "{name:?}"
        );
        assert!(
            name.chars().count() <= 254,
            "{} characters",
            name.chars().count()
        );
    }
    assert!(recorded.iter().any(|(_, n)| *n
        == "x@evil.example\u{FFFD}2026-01-01 auth.sign_in admin\u{FFFD}[31m\u{FFFD}moc.evil"));
    s.stop().await;
}
