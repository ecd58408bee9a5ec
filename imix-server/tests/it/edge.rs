//! The HTTP edge: body limits on the bytes actually read (chunked included), the JSON error
//! shape for every framework error (414, 431, 415, multipart, field-level body errors),
//! operation-id metric labels and the OpenAPI document's server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::{Duration, Instant};

use common::{error_of, Backend, TestServer};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 exchange: writes `head`, then (if given) `chunks` chunks of `chunk_size`
/// bytes of `fill` with chunked transfer encoding while reading the answer concurrently.
/// Returns the status and the body of the answer.
async fn raw_exchange(
    server: &TestServer,
    head: String,
    chunked: Option<(usize, usize, u8)>,
) -> (u16, serde_json::Value) {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if let Some((chunks, size, fill)) = chunked {
            let chunk = vec![fill; size];
            for _ in 0..chunks {
                let frame = [format!("{size:x}\r\n").as_bytes(), &chunk, b"\r\n"].concat();
                // The server may answer and stop reading at any point.
                if write.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let _ = write.write_all(b"0\r\n\r\n").await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let parsed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(parsed) = parse_response(&answer) {
                return Some(parsed);
            }
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return parse_response(&answer),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer in time");
    writer.abort();
    parsed.unwrap_or_else(|| panic!("no complete answer: {:?}", String::from_utf8_lossy(&answer)))
}

/// Status and JSON body of a complete HTTP/1.1 response with a Content-Length.
fn parse_response(bytes: &[u8]) -> Option<(u16, serde_json::Value)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    if body.len() < len {
        return None;
    }
    Some((
        status,
        serde_json::from_str(&body[..len]).unwrap_or(serde_json::Value::Null),
    ))
}

/// One chunk of a chunked body.
fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

fn chunked_head(path: &str, content_type: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_over_the_limit_get_413_as_soon_as_it_is_crossed() {
    let server = TestServer::start(Backend::Sqlite).await;
    // 8 MiB of JSON (an endless string), chunked: no Content-Length to check up front.
    let started = Instant::now();
    let mut json_head = chunked_head("/api/v1/auth/forgot-password", "application/json");
    json_head.push_str(&chunk("{\"x\":\""));
    let (status, body) = raw_exchange(&server, json_head, Some((128, 64 * 1024, b'a'))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(body["error"]["details"]["max_bytes"], 64 * 1024);

    // A chunked 8 MiB password to the token endpoint: never read whole, never hashed.
    let mut form_head = chunked_head("/auth/token", "application/x-www-form-urlencoded");
    form_head.push_str(&chunk("username=admin%40example.com&password="));
    let (status, body) = raw_exchange(&server, form_head, Some((128, 64 * 1024, b'p'))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );

    // A declared length over the limit is refused before reading, in the same shape.
    let resp = server
        .client
        .post(server.url("/api/v1/auth/forgot-password"))
        .header("content-type", "application/json")
        .body(vec![b' '; 65 * 1024])
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 413).await;
    assert_eq!(code, "payload_too_large");

    // The server stays healthy.
    assert_eq!(server.get("/health").await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_keep_their_larger_limit_and_a_chunked_upload_past_it_is_413() {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let tenant = server
        .create_tenant(&admin, serde_json::json!({"name": "Uploads"}))
        .await;
    let id = tenant["id"].as_str().unwrap();
    // 100 KiB is over the JSON limit but well within an upload's: the upload's own checks
    // answer (not an image: 422), not the body limit.
    let part = reqwest::multipart::Part::bytes(vec![b'x'; 100 * 1024])
        .file_name("logo.png")
        .mime_str("image/png")
        .unwrap();
    let resp = server
        .call(&admin, Method::PUT, &format!("/api/v1/tenants/{id}/logo"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field", "{body}");

    // Past the upload limit, chunked: 413.
    let boundary = "XyZ";
    let head = format!(
        "POST /api/v1/tenants/{id}/documents HTTP/1.1\r\nHost: test\r\n\
         Authorization: Bearer {admin}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let preamble = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    );
    let head = format!("{head}{}", chunk(&preamble));
    let (status, body) = raw_exchange(&server, head, Some((24 * 16, 64 * 1024, b'%'))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(server.get("/health").await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_fields_outside_their_enum_or_type_get_422_naming_them() {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let (status, body) = server
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/tenants",
            serde_json::json!({"name": "Acme", "default_language": "de"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "invalid_field");
    assert_eq!(error["details"]["field"], "default_language");
    assert_eq!(
        error["details"]["allowed"],
        serde_json::json!(["en", "fr", "ar"])
    );
    assert!(
        error["message"].as_str().unwrap().contains("en, fr, ar"),
        "{body}"
    );

    // Wrong types, nested ones included; every bad field is listed.
    let (status, body) = server
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/tenants",
            serde_json::json!({"name": 5, "limits": {"max_agents": "ten"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "limits.max_agents",
        "{body}"
    );
    let fields: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["limits.max_agents", "name"], "{body}");

    // A missing required field.
    let (status, body) = server
        .send_json(
            &admin,
            Method::POST,
            "/api/v1/auth/forgot-password",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "email");

    // Not JSON at all: 400, naming where it broke.
    let resp = server
        .client
        .post(server.url("/api/v1/auth/forgot-password"))
        .header("content-type", "application/json")
        .body("{\"email\": tru")
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 400).await;
    assert_eq!(code, "malformed_body");
    assert_eq!(body["error"]["details"]["field"], "email", "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_and_uploads_answer_specific_codes() {
    let server = TestServer::start(Backend::Sqlite).await;
    let resp = server
        .client
        .post(server.url("/auth/token"))
        .json(&serde_json::json!({"username": "a@b.c", "password": "x"}))
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 415).await;
    assert_eq!(code, "unsupported_media_type");
    let resp = server
        .client
        .post(server.url("/auth/token"))
        .form(&[("username", "admin@example.com")])
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "password");

    let admin = server.admin().await;
    let tenant = server
        .create_tenant(&admin, serde_json::json!({"name": "Multipart"}))
        .await;
    let id = tenant["id"].as_str().unwrap();
    // No `file` part.
    let resp = server
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/documents"),
        )
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field");
    assert_eq!(body["error"]["details"]["field"], "file");
    // A multipart body cut short.
    let resp = server
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/documents"),
        )
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\nabc",
        )
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp, 400).await;
    assert_eq!(code, "malformed_multipart", "{body}");
    // Not multipart at all.
    let resp = server
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/tenants/{id}/documents"),
        )
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 415).await;
    assert_eq!(code, "unsupported_media_type");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_too_long_and_header_fields_too_large_have_the_json_shape() {
    let server = TestServer::start(Backend::Sqlite).await;
    let long_path = format!("/health?{}", "a".repeat(70 * 1024));
    let (status, body) = raw_exchange(
        &server,
        format!("GET {long_path} HTTP/1.1\r\nHost: test\r\n\r\n"),
        None,
    )
    .await;
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");

    let huge_header = "b".repeat(512 * 1024);
    let (status, body) = raw_exchange(
        &server,
        format!("GET /health HTTP/1.1\r\nHost: test\r\nX-Big: {huge_header}\r\n\r\n"),
        None,
    )
    .await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"]["code"], "header_fields_too_large", "{body}");

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, body) = raw_exchange(
        &server,
        format!("GET /health HTTP/1.1\r\nHost: test\r\n{many}\r\n"),
        None,
    )
    .await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"]["code"], "header_fields_too_large", "{body}");
    assert_eq!(server.get("/health").await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_every_route_by_operation_id() {
    let server = TestServer::start(Backend::Sqlite).await;
    assert_eq!(
        server
            .sign_in_raw("nobody@example.com", "wrong-password-1")
            .await
            .status(),
        401
    );
    assert_eq!(server.get("/docs").await.status(), 200);
    assert_eq!(server.get("/openapi.json").await.status(), 200);
    assert_eq!(server.get("/metrics").await.status(), 200);
    let text = server.get("/metrics").await.text().await.unwrap();
    for label in [
        r#"method="POST",route="issue_token",status="401""#,
        r#"method="GET",route="get_docs",status="200""#,
        r#"method="GET",route="get_openapi_spec",status="200""#,
        r#"method="GET",route="get_metrics",status="200""#,
    ] {
        assert!(text.contains(label), "{label} missing:\n{text}");
    }
    assert!(
        !text.contains("route=\"/"),
        "no raw paths as labels:\n{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_calls_its_own_origin() {
    // IMIX_PUBLIC_URL unset (http://localhost:8000) while the server listens elsewhere:
    // "Try it out" must call the address the document was fetched from.
    let server = TestServer::start(Backend::Sqlite).await;
    let spec: serde_json::Value = server.get("/openapi.json").await.json().await.unwrap();
    let servers = spec
        .get("servers")
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        servers
            .iter()
            .all(|s| s["url"].as_str().is_some_and(|u| u.starts_with('/'))),
        "servers must be relative or absent: {servers:?}"
    );
    assert!(
        !spec.to_string().contains("localhost:8000"),
        "no absolute server URL"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_security_ssl_is_the_documented_alias_of_tls() {
    // The server takes "ssl" for implicit TLS; docs/notifications.md must say so.
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let (status, body) = server
        .send_json(
            &admin,
            Method::PUT,
            "/api/v1/settings/smtp",
            serde_json::json!({"host": "smtp.example.com", "port": 465,
                "from_email": "crm@example.com", "security": "ssl"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["security"], "tls", "{body}");
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/notifications.md"),
    )
    .unwrap();
    assert!(
        docs.contains("`ssl` is accepted as another name for `tls`"),
        "docs/notifications.md documents the ssl alias"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_to_an_upload_route_gets_the_small_limit_before_auth() {
    let server = TestServer::start(Backend::Sqlite).await;
    let path = "/api/v1/tenants/00000000-0000-0000-0000-000000000001/logo";
    // A declared 1 MB JSON body, anonymous: 413 from the head alone (the body is never sent).
    let started = Instant::now();
    let (status, body) = raw_exchange(
        &server,
        format!(
            "PUT {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000\r\n\r\n"
        ),
        None,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(body["error"]["details"]["max_bytes"], 64 * 1024);

    // The same, chunked (1 MiB): 413 once 64 KiB are crossed, not after reading it all.
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}",
        chunk("{\"x\":\"")
    );
    let (status, body) = raw_exchange(&server, head, Some((64, 16 * 1024, b'a'))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["details"]["max_bytes"], 64 * 1024);

    // Any other non-multipart type to an upload route too.
    let (status, body) = raw_exchange(
        &server,
        String::from(
            "POST /api/v1/tenants/x/documents HTTP/1.1\r\nHost: test\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n",
        ),
        None,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(server.get("/health").await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_head_is_closed() {
    let server = TestServer::start(Backend::Sqlite).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    // Half a head, then silence (slowloris); and a connection that sends nothing at all.
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    // Meanwhile the server answers others.
    assert_eq!(server.get("/health").await.status(), 200);
    for conn in [&mut half, &mut silent] {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(14), conn.read(&mut buf))
            .await
            .expect("the server closes the connection within the head timeout");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed without an answer: {:?}",
            read.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
        "closed after {waited:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_share_one_metrics_label() {
    let server = TestServer::start(Backend::Sqlite).await;
    for method in ["FOO", "BAR1", "PROPFIND"] {
        let resp = server
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.url("/health"),
            )
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{method}: {}",
            resp.status()
        );
    }
    assert_eq!(server.get("/health").await.status(), 200);
    let text = server.get("/metrics").await.text().await.unwrap();
    for method in ["FOO", "BAR1", "PROPFIND"] {
        assert!(
            !text.contains(&format!("method=\"{method}\"")),
            "{method} became a label:\n{text}"
        );
    }
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(text.contains("method=\"GET\""), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_missing_types_and_repeated_parameters_get_specific_codes() {
    let server = TestServer::start(Backend::Sqlite).await;
    // A gzip body is never read as if it were plain JSON (or a form).
    for (path, content_type) in [
        ("/api/v1/auth/forgot-password", "application/json"),
        ("/auth/token", "application/x-www-form-urlencoded"),
    ] {
        let resp = server
            .client
            .post(server.url(path))
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .body(vec![0x1f, 0x8b, 0x08, 0x00])
            .send()
            .await
            .unwrap();
        // The body was not read: the connection is not reused for another request.
        assert_eq!(resp.headers()["connection"], "close");
        let (code, body) = error_of(resp, 415).await;
        assert_eq!(code, "unsupported_content_encoding", "{body}");
        assert_eq!(body["error"]["details"]["content_encoding"], "gzip");
    }
    // `identity` is no encoding at all.
    let resp = server
        .client
        .post(server.url("/api/v1/auth/forgot-password"))
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body("{}")
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 422).await;
    assert_eq!(code, "invalid_field");

    // The token endpoint without any Content-Type: 415, as for JSON.
    let resp = server
        .client
        .post(server.url("/auth/token"))
        .body("username=a%40b.c&password=x")
        .send()
        .await
        .unwrap();
    let (code, _) = error_of(resp, 415).await;
    assert_eq!(code, "unsupported_media_type");

    // A repeated query parameter is named.
    let resp = server.get("/set-password?token=a&token=b").await;
    let (code, body) = error_of(resp, 400).await;
    assert_eq!(code, "duplicate_parameter", "{body}");
    assert_eq!(body["error"]["details"]["field"], "token", "{body}");
    server.stop().await;
}
