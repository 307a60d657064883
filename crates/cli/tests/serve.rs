//! `xcomponent-ai serve` as a user runs it: the printed URL, the default SQLite store in
//! `--data-dir`, SIGTERM (graceful: exit 0, everything stored), a restart that finds the same
//! instances in the same states, `--token`, `--webhook-secret`, the clear error for an unknown
//! broker, and a PostgreSQL or Redis store nobody listens on failing after one attempt.

mod process;

use process::BIN;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

const COMPONENT: &str = r#"
name: Tickets
entryMachine: Ticket
entryMachineMode: multiple
stateMachines:
  - name: Ticket
    initialState: New
    states: [{name: New, type: entry}, {name: Open}, {name: Done, type: final}]
    transitions:
      - {from: New, to: Open, event: OPEN}
      - {from: Open, to: Open, event: NOTE, type: internal}
      - {from: Open, to: Done, event: CLOSE}
"#;

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("xcai-serve-cli-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        std::fs::write(path.join("tickets.yaml"), COMPONENT).expect("component file");
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let payload = response.split_once("\r\n\r\n").map_or("", |(_, payload)| payload);
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

/// Starts `serve --port 0` and reads the port from the URL it prints.
fn start(dir: &Path, extra: &[&str]) -> (Child, u16) {
    start_with_env(dir, extra, &[])
}

/// `start`, with these environment variables set.
fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Child, u16) {
    let mut child = Command::new(BIN)
        .args(["serve", "tickets.yaml", "--port", "0", "--data-dir", "data"])
        .args(extra)
        .env_remove("CREATE_DEMO_INSTANCE")
        .envs(env.iter().copied())
        .env_remove("DATABASE_URL")
        .env_remove("BROKER_URL")
        .env_remove("XCOMPONENT_BROKER_URL")
        .env_remove("REDIS_URL")
        .env_remove("XCOMPONENT_API_TOKEN")
        .env_remove("XCOMPONENT_WEBHOOK_SECRET")
        .env_remove("PORT")
        .env_remove("HOST")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    reader.read_line(&mut first).expect("first line");
    // Keep reading so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let port = first
        .trim()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no URL in {first:?}"));
    assert!(first.starts_with("xcomponent-ai serving Tickets on http://127.0.0.1:"), "{first}");
    (child, port)
}

fn terminate(mut child: Child) {
    let status =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "serve exits 0 on SIGTERM, got {status}");
            return;
        }
        assert!(started.elapsed() < WAIT, "serve did not stop within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(port: u16, id: &str, event: &str) {
    let (status, reply) = http(
        port,
        "POST",
        &format!("/api/instances/{id}/events"),
        Some(&json!({"type": event})),
        None,
    );
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (200, Some("transitioned")),
        "{event}: {reply}"
    );
}

#[test]
fn sigterm_then_restart_keeps_everything() {
    let dir = Dir::new();
    let (child, port) = start(&dir.0, &[]);
    let (_, health) = http(port, "GET", "/health", None, None);
    assert_eq!(
        (health["databaseType"].as_str(), health["persistent"].as_bool()),
        (Some("sqlite"), Some(true)),
        "{health}"
    );
    let mut ids = Vec::new();
    for index in 0..3 {
        let (status, created) = http(
            port,
            "POST",
            "/api/components/Tickets/instances",
            Some(&json!({"context": {"n": index}})),
            None,
        );
        assert_eq!(status, 201, "{created}");
        ids.push(created["instanceId"].as_str().expect("id").to_owned());
    }
    send(port, &ids[1], "OPEN");
    send(port, &ids[1], "NOTE");
    send(port, &ids[2], "OPEN");
    send(port, &ids[2], "CLOSE");
    terminate(child);
    assert!(dir.0.join("data/xcomponent.db").exists(), "the default store is SQLite in --data-dir");

    let (child, port) = start(&dir.0, &[]);
    let state = |id: &str| {
        let (status, body) = http(port, "GET", &format!("/api/instances/{id}"), None, None);
        assert_eq!(status, 200, "{body}");
        (
            body["instance"]["currentState"].as_str().unwrap_or_default().to_owned(),
            body["instance"]["seq"].as_u64().unwrap_or_default(),
        )
    };
    assert_eq!(state(&ids[0]), ("New".to_owned(), 1));
    assert_eq!(state(&ids[1]), ("Open".to_owned(), 3));
    assert_eq!(state(&ids[2]), ("Done".to_owned(), 3));
    let (_, page) = http(port, "GET", "/api/instances", None, None);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "two live tickets: {page}");
    send(port, &ids[1], "CLOSE");
    terminate(child);
}

#[test]
fn token_guards_mutations() {
    let dir = Dir::new();
    let (child, port) = start(&dir.0, &["--token", "t0ken", "--store", "memory"]);
    let path = "/api/components/Tickets/instances";
    assert_eq!(http(port, "POST", path, Some(&json!({})), None).0, 401);
    assert_eq!(http(port, "POST", path, Some(&json!({})), Some("t0ken")).0, 201);
    assert_eq!(http(port, "GET", "/api/instances", None, None).0, 200);
    terminate(child);
}

/// A webhook POST with a body and, when given, an `X-Xcomponent-Signature`.
fn webhook(port: u16, path: &str, body: &str, signature: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let signature =
        signature.map(|value| format!("X-Xcomponent-Signature: {value}\r\n")).unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{signature}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let payload = response.split_once("\r\n\r\n").map_or("", |(_, payload)| payload);
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

#[test]
fn webhook_secret_guards_webhooks() {
    let dir = Dir::new();
    let (child, port) = start(&dir.0, &["--webhook-secret", "whsec_cli", "--store", "memory"]);
    let (status, created) =
        http(port, "POST", "/api/components/Tickets/instances", Some(&json!({})), None);
    assert_eq!(status, 201, "the REST API has no token: {created}");
    let id = created["instanceId"].as_str().expect("instanceId").to_owned();
    let path = format!("/webhooks/Tickets/{id}/OPEN");
    let body = r#"{"by": "ci"}"#;
    let (status, reply) = webhook(port, &path, body, None);
    assert_eq!((status, reply["code"].clone()), (401, json!("signature_required")), "{reply}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0);
    let signature = xcomponent_server::webhook_signature("whsec_cli", now, body.as_bytes());
    let (status, reply) = webhook(port, &path, body, Some(&signature));
    assert_eq!((status, reply["newState"].clone()), (200, json!("Open")), "{reply}");
    terminate(child);
}

#[test]
fn create_demo_instance_accepts_the_usual_spellings_of_true_and_false() {
    for (value, expected) in [("1", 1), ("yes", 1), ("TRUE", 1), ("on", 1), ("0", 0), ("no", 0)] {
        let dir = Dir::new();
        let (child, port) =
            start_with_env(&dir.0, &["--store", "memory"], &[("CREATE_DEMO_INSTANCE", value)]);
        let (status, page) = http(port, "GET", "/api/instances", None, None);
        assert_eq!(status, 200);
        let items = page["items"].as_array().map_or(0, Vec::len);
        assert_eq!(items, expected, "CREATE_DEMO_INSTANCE={value}: {page}");
        terminate(child);
    }
    // The flag alone still means true.
    let dir = Dir::new();
    let (child, port) = start(&dir.0, &["--store", "memory", "--create-demo-instance"]);
    let (_, page) = http(port, "GET", "/api/instances", None, None);
    assert_eq!(page["items"].as_array().map_or(0, Vec::len), 1, "{page}");
    terminate(child);
}

#[test]
fn create_demo_instance_refuses_other_values_and_says_what_to_write() {
    let dir = Dir::new();
    let output = Command::new(BIN)
        .args(["serve", "tickets.yaml", "--port", "0", "--store", "memory"])
        .env("CREATE_DEMO_INSTANCE", "maybe")
        .current_dir(&dir.0)
        .output()
        .expect("serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"maybe\" is not a boolean: use 1/0, true/false, yes/no"), "{stderr}");
}

#[test]
fn an_unknown_broker_is_refused_clearly_without_its_password() {
    let dir = Dir::new();
    let output = Command::new(BIN)
        .args([
            "serve",
            "tickets.yaml",
            "--port",
            "0",
            "--broker",
            "mqtt://user:hunter2@localhost:1883",
        ])
        .current_dir(&dir.0)
        .output()
        .expect("serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unsupported broker URL"), "{stderr}");
    assert!(stderr.contains("user:***@localhost"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}

#[test]
fn a_server_store_nobody_listens_on_fails_after_one_attempt_with_connect_wait_0() {
    let dir = Dir::new();
    let port = process::free_port();
    for url in [
        format!("postgres://postgres:hunter2@127.0.0.1:{port}/test"),
        format!("redis://:hunter2@127.0.0.1:{port}"),
    ] {
        let output = Command::new(BIN)
            .args(["serve", "tickets.yaml", "--port", "0", "--store", &url, "--connect-wait", "0"])
            .env("RUST_LOG", "warn")
            .current_dir(&dir.0)
            .output()
            .expect("serve runs");
        assert!(!output.status.success(), "{url}: serve without its store exits with an error");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cannot open the store"), "{url}: {stderr}");
        assert!(stderr.contains("after 1 attempts"), "{url}: one attempt: {stderr}");
        // Neither the command (--connect-wait) nor the store (connect_attempts) tried again.
        assert!(!stderr.contains("not reachable yet"), "{url}: {stderr}");
        assert!(!stderr.contains("retrying"), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    }
}
