//! The `imix-server` binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::Backend;

fn imix(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imix-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IMIX_ENV_FILE", "/dev/null")
        .current_dir(dir);
    for (k, v) in common::base_vars(dir, Backend::Sqlite) {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("MONGODB_URI", "nonsense"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "abc"),
        ("IMIX_BIND", "nowhere"),
    ] {
        let out = imix(dir.path())
            .env(var, value)
            .arg("serve")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} must fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(var), "{stderr}");
    }
}

#[test]
fn env_file_is_read_and_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "ACCESS_TOKEN_EXPIRE_MINUTES=abc\n").unwrap();
    let out = imix(dir.path())
        .env("IMIX_ENV_FILE", dir.path().join(".env"))
        .arg("init-db")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACCESS_TOKEN_EXPIRE_MINUTES"));
    let out = imix(dir.path())
        .env("IMIX_ENV_FILE", dir.path().join(".env"))
        .env("ACCESS_TOKEN_EXPIRE_MINUTES", "60")
        .arg("init-db")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn env_file_named_but_missing_fails_at_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("prod.env");
    let out = imix(dir.path())
        .env("IMIX_ENV_FILE", &missing)
        .arg("init-db")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a missing IMIX_ENV_FILE must fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("IMIX_ENV_FILE") && stderr.contains("prod.env"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_default_env_file_is_reported_as_the_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "THIS IS NOT=an env line\n").unwrap();
    let out = imix(dir.path())
        .env_remove("IMIX_ENV_FILE")
        .arg("init-db")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("default env file") && stderr.contains("IMIX_ENV_FILE is unset"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("invalid configuration: IMIX_ENV_FILE"),
        "not blamed on IMIX_ENV_FILE: {stderr}"
    );
}

#[test]
fn init_db_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let out = imix(dir.path()).arg("init-db").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(String::from_utf8(out.stdout).unwrap());
    }
    for output in &outputs {
        assert!(
            output.lines().any(|l| l == "sqlite schema is up to date"),
            "{output}"
        );
    }
    assert!(
        outputs[0].contains("created the default administrator admin@example.com"),
        "{}",
        outputs[0]
    );
    assert!(outputs[1].contains("users exist already"), "{}", outputs[1]);

    let out = imix(dir.path())
        .env("MONGODB_URI", common::mongodb_uri())
        .env("DB_NAME", format!("imix_cli_{}", std::process::id()))
        .arg("init-db")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("mongodb schema"));
}

#[test]
fn doctor_passes_with_services_up_and_fails_with_a_hint_when_redis_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = imix(dir.path())
        .env("REDIS_URL", common::redis_url())
        .arg("doctor")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    for name in ["data dir", "log dir", "disk", "store", "redis"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(name)),
            "{name}: {stdout}"
        );
    }
    assert!(stdout.contains("sqlite ping"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = imix(dir.path())
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .arg("doctor")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success(), "{stdout}");
    let redis_line = stdout.lines().find(|l| l.contains("redis")).unwrap();
    assert!(
        redis_line.starts_with("FAIL") && redis_line.contains("hint:"),
        "{redis_line}"
    );
    assert!(stdout
        .lines()
        .any(|l| l.starts_with("ok") && l.contains("store")));
}

#[test]
fn doctor_reports_mongodb_latency() {
    let dir = tempfile::tempdir().unwrap();
    let out = imix(dir.path())
        .env("MONGODB_URI", common::mongodb_uri())
        .arg("doctor")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("mongodb ping"), "{stdout}");
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `serve` and waits for its "ready" log line (no fixed sleeps).
fn start_server(dir: &std::path::Path, port: u16) -> Running {
    let mut child = imix(dir)
        .env("IMIX_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "server did not become ready");
        match lines.next() {
            Some(Ok(line)) if line.contains("imix-server ready") => break,
            Some(_) => continue,
            None => panic!("server exited before becoming ready"),
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running(child)
}

fn health(port: u16) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn serve_with_no_configuration_then_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(dir.path(), port);
    let body = health(port);
    assert_eq!(body["store"]["backend"], "sqlite");
    assert_eq!(body["store"]["ok"], true);
    let key = std::fs::read_to_string(dir.path().join("data/secret_key")).unwrap();

    // kill -9: no shutdown hook runs.
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let port = free_port();
    let _server = start_server(dir.path(), port);
    assert_eq!(health(port)["status"], "ok");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/secret_key")).unwrap(),
        key
    );
    let log = std::fs::read_to_string(dir.path().join("logs/backend.log")).unwrap();
    assert!(log.contains("imix-server ready"), "{log}");
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(dir.path(), port);
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.0.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
}

#[test]
fn env_file_set_but_empty_fails_at_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = imix(dir.path())
        .env("IMIX_ENV_FILE", "")
        .arg("init-db")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an empty IMIX_ENV_FILE must fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("IMIX_ENV_FILE") && stderr.contains("empty"),
        "{stderr}"
    );
}

#[test]
fn env_file_that_is_not_a_regular_file_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("env.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for path in [fifo.clone(), dir.path().to_path_buf()] {
        let mut child = imix(dir.path())
            .env("IMIX_ENV_FILE", &path)
            .arg("init-db")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Reading a FIFO with no writer would block forever: the server must refuse it.
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("start-up blocked on IMIX_ENV_FILE {}", path.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(!status.success(), "{} must be refused", path.display());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            stderr.contains("IMIX_ENV_FILE") && stderr.contains("not a regular file"),
            "{stderr}"
        );
    }
}
