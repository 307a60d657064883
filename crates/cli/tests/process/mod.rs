//! Support for tests that run the `xcomponent-ai` binary as a process: a free port, a minimal
//! HTTP/1.1 client over `TcpStream` (so the tests depend on nothing but std and serde_json), and
//! a `serve` process killed when dropped (also when an assertion fails mid-test). `cluster` runs
//! components in separate processes over a broker, `broker` a broker of the test's own,
//! `keep_alive` holds a client on one persistent connection for tests that measure throughput.

#![allow(dead_code)]

pub mod broker;
pub mod cluster;
pub mod keep_alive;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_xcomponent-ai");
/// Longest wait for the server to answer after a start.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// One HTTP/1.1 request; `None` on any connection failure (the server may be dead).
pub fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status: u16 = response.split_whitespace().nth(1)?.parse().ok()?;
    let (_, payload) = response.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(payload).unwrap_or(Value::Null)))
}

/// The server process, killed (SIGKILL) when dropped.
pub struct Server(Child);

impl Server {
    /// Wraps a started child process.
    pub fn from_child(child: Child) -> Server {
        Server(child)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// How the process ended, `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `xcomponent-ai serve ARGS --port PORT` in `dir` and waits until `/health` answers.
/// Without a connection rate limit: these tests' clients all come from 127.0.0.1 and open one
/// connection per request, thousands per second (the limit is tested in
/// crates/server/tests/connections.rs).
pub fn serve(dir: &Path, port: u16, args: &[&str]) -> Server {
    let child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .args(["--port", &port.to_string(), "--max-new-connections-per-address", "0"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let child = Server(child);
    let started = Instant::now();
    while http(port, "GET", "/health", None).is_none() {
        assert!(started.elapsed() < START_TIMEOUT, "serve did not answer within {START_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Creates an instance of `machine` in `component`; returns its id.
pub fn create(port: u16, component: &str, machine: &str, context: Value) -> String {
    let body = serde_json::json!({"machineName": machine, "context": context});
    let (status, body) =
        http(port, "POST", &format!("/api/components/{component}/instances"), Some(&body))
            .expect("create answered");
    assert!(status < 300, "create failed: {status} {body}");
    body["instanceId"].as_str().expect("instanceId").to_owned()
}

/// Every stored event of an instance.
pub fn history(port: u16, id: &str) -> Vec<Value> {
    let (status, body) = http(port, "GET", &format!("/api/history/instances/{id}/events"), None)
        .expect("history answered");
    assert_eq!(status, 200, "history of {id}: {body}");
    match body {
        Value::Array(events) => events,
        Value::Object(map) => {
            map.get("events").and_then(Value::as_array).cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Every stored instance (live and finished) of `component`, page by page.
pub fn stored_instances(port: u16, component: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/history/instances?component={component}&limit=500");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = http(port, "GET", &path, None).expect("search answered");
        assert_eq!(status, 200, "search: {body}");
        let items = body.get("items").or_else(|| body.get("instances"));
        all.extend(items.and_then(Value::as_array).cloned().unwrap_or_default());
        match body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// A small xorshift generator: the tests' random moments, reproducible from a seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
