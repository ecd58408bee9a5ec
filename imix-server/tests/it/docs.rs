//! docs/api.md's error table and the OpenAPI document's response lists against the code and
//! the running server, so that neither drifts again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use common::{error_of, Backend, TestServer};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `status -> codes` of the error table in docs/api.md (backticked snake_case words of each
/// row; `<field>_taken` is kept as written).
fn documented_codes() -> BTreeMap<u16, BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let table = text
        .split("| status | codes |")
        .nth(1)
        .expect("docs/api.md has the error table");
    let mut codes = BTreeMap::new();
    for line in table.lines().skip(2) {
        let Some(row) = line.strip_prefix("| ") else {
            break;
        };
        let (status, rest) = row.split_once(" | ").unwrap();
        let status: u16 = status.trim().parse().unwrap();
        let set: BTreeSet<String> = rest
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| {
                w.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '<' || c == '>')
            })
            .map(str::to_owned)
            .collect();
        codes.insert(status, set);
    }
    codes
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn status_number(name: &str) -> u16 {
    match name {
        "BAD_REQUEST" => 400,
        "UNAUTHORIZED" => 401,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "METHOD_NOT_ALLOWED" => 405,
        "REQUEST_TIMEOUT" => 408,
        "CONFLICT" => 409,
        "PAYLOAD_TOO_LARGE" => 413,
        "URI_TOO_LONG" => 414,
        "UNSUPPORTED_MEDIA_TYPE" => 415,
        "UNPROCESSABLE_ENTITY" => 422,
        "TOO_MANY_REQUESTS" => 429,
        "REQUEST_HEADER_FIELDS_TOO_LARGE" => 431,
        "INTERNAL_SERVER_ERROR" => 500,
        "BAD_GATEWAY" => 502,
        "SERVICE_UNAVAILABLE" => 503,
        "GATEWAY_TIMEOUT" => 504,
        other => panic!("add StatusCode::{other} to this test's table"),
    }
}

/// The string literal right after `at` (skipping whitespace and one `(`), if any.
fn literal_after(text: &str) -> Option<&str> {
    let rest = text.trim_start().trim_start_matches('(').trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Every `(status, code)` the server's own source answers with: `StatusCode::X, "code"`
/// (ApiError::new and friends), `"431" => ("code"` (the HTTP/1 parser's answers) and
/// `ApiError::invalid_field` (422 `invalid_field`).
fn coded_in_source() -> BTreeSet<(u16, String)> {
    let mut files = Vec::new();
    rust_files(&repo().join("imix-server/src"), &mut files);
    let mut pairs = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("StatusCode::") {
            let rest = &text[at + "StatusCode::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let after = rest[name.len()..].trim_start();
            let Some(after) = after.strip_prefix(',') else {
                continue;
            };
            if let Some(code) = literal_after(after) {
                pairs.insert((status_number(&name), code.to_owned()));
            }
        }
        for status in ["400", "414", "431"] {
            for (at, _) in text.match_indices(&format!("\"{status}\" => (")) {
                let rest = &text[at + status.len() + 6..];
                if let Some(code) = literal_after(rest) {
                    pairs.insert((status.parse().unwrap(), code.to_owned()));
                }
            }
        }
        if text.contains("ApiError::invalid_field(") || text.contains("Self::invalid_field(") {
            pairs.insert((422, "invalid_field".to_owned()));
        }
    }
    pairs
}

/// The mail failure codes (`MailError::code`), answered with 502 by the SMTP test.
fn mail_codes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("imix-notify/src/mailer.rs")).unwrap();
    let body = text
        .split("pub fn code(&self)")
        .nth(1)
        .expect("MailError::code in imix-notify/src/mailer.rs");
    let body = &body[..body.find("\n    }\n").unwrap()];
    body.lines()
        .filter_map(|l| l.split("=> \"").nth(1))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The AI failure codes (`AiError::code`), answered by the AI routes with the status
/// `imix-server/src/ai.rs`'s `ai_error` gives them (502 for a provider's failure).
fn ai_codes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("imix-ai/src/error.rs")).unwrap();
    let body = text
        .split("pub fn code(&self)")
        .nth(1)
        .expect("AiError::code in imix-ai/src/error.rs");
    let body = &body[..body.find("\n    }\n").unwrap()];
    body.lines()
        .filter_map(|l| l.split("=> \"").nth(1))
        .filter_map(|l| l.split('"').next())
        .filter(|c| c.starts_with("ai_"))
        .map(str::to_owned)
        .collect()
}

fn is_documented(documented: &BTreeMap<u16, BTreeSet<String>>, status: u16, code: &str) -> bool {
    documented.get(&status).is_some_and(|codes| {
        codes.contains(code) || (code.ends_with("_taken") && codes.contains("<field>_taken"))
    })
}

#[test]
fn every_error_code_of_the_server_is_documented_under_its_status() {
    let documented = documented_codes();
    let coded = coded_in_source();
    assert!(
        coded.len() > 20,
        "the scan found the error codes: {coded:?}"
    );
    let missing: Vec<_> = coded
        .iter()
        .filter(|(status, code)| !is_documented(&documented, *status, code))
        .collect();
    assert!(
        missing.is_empty(),
        "answered by the server but not in docs/api.md's error table: {missing:?}"
    );
    let mail = mail_codes();
    assert!(mail.contains("connection"), "{mail:?}");
    let undocumented: Vec<_> = mail
        .iter()
        .filter(|c| !is_documented(&documented, 502, c))
        .collect();
    assert!(
        undocumented.is_empty(),
        "mail failure codes missing from the 502 row: {undocumented:?}"
    );
    let ai = ai_codes();
    assert!(ai.contains("ai_invalid_key"), "{ai:?}");
    let undocumented: Vec<_> = ai
        .iter()
        .filter(|c| {
            ![409, 502, 504]
                .iter()
                .any(|s| is_documented(&documented, *s, c))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "AI failure codes missing from the error table: {undocumented:?}"
    );
}

#[test]
fn every_documented_error_code_exists_in_the_code() {
    let coded = coded_in_source();
    let mail = mail_codes();
    let ai = ai_codes();
    // Codes the edge builds from a variable status rather than a literal pair.
    let framework = [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (400, "bad_request"),
        (409, "<field>_taken"),
    ];
    for (status, codes) in documented_codes() {
        for code in codes {
            let known = coded.contains(&(status, code.clone()))
                || (status == 502 && mail.contains(&code))
                || ([409, 502, 504].contains(&status) && ai.contains(&code))
                || framework.contains(&(status, code.as_str()));
            assert!(
                known,
                "docs/api.md lists {status} `{code}`, which the code never answers"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_lists_the_statuses_it_can_answer() {
    let server = TestServer::start(Backend::Sqlite).await;
    let spec: serde_json::Value = server.get("/openapi.json").await.json().await.unwrap();
    let mut problems = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let mut expected = vec!["500"];
            if secured {
                expected.push("401");
            }
            if op.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            for status in expected {
                if !responses.contains_key(status) {
                    problems.push(format!("{method} {path}: {status}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "statuses missing from the OpenAPI document: {problems:?}"
    );
    // Every status of the documented error table (but those answered before routing) is
    // in some operation's list.
    let listed: BTreeSet<u16> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .flat_map(|op| op["responses"].as_object().unwrap().keys())
        .filter_map(|s| s.parse().ok())
        .collect();
    for status in documented_codes().keys() {
        if ![405, 414, 431].contains(status) {
            assert!(
                listed.contains(status),
                "{status} is in no operation's responses"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_answers_are_what_the_server_answers() {
    let server = TestServer::start(Backend::Sqlite).await;
    let spec: serde_json::Value = server.get("/openapi.json").await.json().await.unwrap();
    let documented = documented_codes();

    // /api/v1/me without a token: 401, and the spec says so.
    let (code, _) = error_of(server.get("/api/v1/me").await, 401).await;
    assert!(is_documented(&documented, 401, &code));
    assert!(spec["paths"]["/api/v1/me"]["get"]["responses"]["401"].is_object());

    // The token endpoint: 415 for JSON, 400 for an unsupported grant type; both in its spec.
    let token_responses = &spec["paths"]["/auth/token"]["post"]["responses"];
    let resp = server
        .client
        .post(server.url("/auth/token"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 415).await;
    assert!(is_documented(&documented, 415, &code));
    assert!(token_responses["415"].is_object());
    let resp = server
        .client
        .post(server.url("/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", "a"),
            ("password", "b"),
        ])
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 400).await;
    assert!(is_documented(&documented, 400, &code), "{code}");
    assert!(token_responses["400"].is_object());

    // ?limit=0 is 422 invalid_field, ?limit=abc 400 invalid_parameter, as api.md says.
    let admin = server.admin().await;
    let resp = server
        .call(&admin, reqwest::Method::GET, "/api/v1/users?limit=0")
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field", "{body}");
    assert_eq!(body["error"]["details"]["field"], "limit");
    let resp = server
        .call(&admin, reqwest::Method::GET, "/api/v1/users?limit=abc")
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 400).await;
    assert_eq!(code, "invalid_parameter");
    let api = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    assert!(api.contains("`?limit=0` is 422 `invalid_field`"));

    // A value outside an enumerated parameter lists the allowed values, not our type names.
    let tenant = server
        .create_tenant(&admin, serde_json::json!({"name": "Params"}))
        .await;
    let path = format!(
        "/api/v1/tenants/{}/messages?status=bogus",
        tenant["id"].as_str().unwrap()
    );
    let resp = server
        .call(&admin, reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 400).await;
    assert_eq!(code, "invalid_parameter");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`status`") && message.contains("failed"),
        "{message}"
    );
    assert!(!body.to_string().contains("Dto"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "status");
    assert!(body["error"]["details"]["allowed"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("unknown")));
    server.stop().await;
}
