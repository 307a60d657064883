//! Crash test: `xcomponent-ai serve` on the embedded store, under load from several clients, is
//! killed with SIGKILL at random moments, several times. After each restart:
//! - every acknowledged transition is there (each instance's counter is at least the last
//!   acknowledged value, and at most one more: a request may be stored without its reply);
//! - no event is duplicated (sequence numbers run 1..=n with no gap or repeat, counters
//!   increase by exactly one per stored INC);
//! - instances are in the state a model says;
//! - a timeout that came due while the server was dead fires exactly once.
//!
//! The HTTP client is a few lines over `TcpStream` so the test depends on nothing but std.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_xcomponent-ai");
/// Kill/restart rounds.
const ROUNDS: usize = 4;
/// Instances driven by their own client thread each.
const CLIENTS: usize = 6;
/// Longest wait for the server to answer after a start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

const COMPONENT: &str = r#"
name: Crash
stateMachines:
  - name: Counter
    initialState: Counting
    states: [{name: Counting}, {name: Stopped, type: final}]
    transitions:
      - {from: Counting, to: Counting, event: INC, type: internal}
      - {from: Counting, to: Stopped, event: STOP}
  - name: Alarm
    initialState: Armed
    states: [{name: Armed}, {name: Rang, type: final}]
    transitions:
      - {from: Armed, to: Rang, event: RING, type: timeout, timeoutMs: 1500}
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// One HTTP/1.1 request; `None` on any connection failure (the server may be dead).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
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

/// The server process, killed when dropped (also when an assertion fails mid-test).
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(dir: &Path, port: u16) -> Server {
    let child = Command::new(BIN)
        .args(["serve", "crash.yaml", "--port", &port.to_string(), "--data-dir", "data"])
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

fn create(port: u16, machine: &str) -> String {
    let (status, body) = http(
        port,
        "POST",
        "/api/components/Crash/instances",
        Some(&json!({"machineName": machine, "context": {"n": 0}})),
    )
    .expect("create answered");
    assert!(status < 300, "create failed: {status} {body}");
    body["instanceId"].as_str().expect("instanceId").to_owned()
}

fn history(port: u16, id: &str) -> Vec<Value> {
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

fn counter_of(port: u16, id: &str) -> u64 {
    let (status, body) =
        http(port, "GET", &format!("/api/instances/{id}"), None).expect("instance answered");
    assert_eq!(status, 200, "instance {id}: {body}");
    body["instance"]["context"]["n"].as_u64().unwrap_or_else(|| panic!("no counter n in {body}"))
}

/// Checks one counter's stored history: sequence 1..=len without gaps, n = seq - 1 each time.
fn check_history(port: u16, id: &str, acknowledged: u64) -> u64 {
    let events = history(port, id);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"].as_u64(),
            Some(index as u64 + 1),
            "instance {id}: sequence gap or repeat at {index}"
        );
        assert_eq!(
            event["context"]["n"].as_u64(),
            Some(index as u64),
            "instance {id}: event {} applied twice or lost",
            index + 1
        );
    }
    let stored = events.len() as u64 - 1;
    assert!(
        stored >= acknowledged,
        "instance {id}: acknowledged {acknowledged} INC, only {stored} stored"
    );
    assert!(
        stored <= acknowledged + 1,
        "instance {id}: {stored} stored for {acknowledged} acknowledged (more than one unacknowledged)"
    );
    stored
}

#[test]
fn killed_at_random_moments_serve_loses_nothing_and_duplicates_nothing() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    std::fs::write(dir.join("crash.yaml"), COMPONENT).expect("component written");
    let port = free_port();
    let mut server = start(dir, port);
    let counters: Vec<String> = (0..CLIENTS).map(|_| create(port, "Counter")).collect();
    // Acknowledged counter value per instance (the model).
    let acknowledged: Arc<Vec<Mutex<u64>>> =
        Arc::new((0..CLIENTS).map(|_| Mutex::new(0)).collect());
    let mut alarms: Vec<String> = Vec::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..ROUNDS {
        alarms.push(create(port, "Alarm"));
        let running = Arc::new(AtomicBool::new(true));
        let clients: Vec<_> = counters
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, id)| {
                let (running, acknowledged) = (running.clone(), acknowledged.clone());
                std::thread::spawn(move || {
                    while running.load(Ordering::SeqCst) {
                        let next = *acknowledged[index].lock().expect("model lock") + 1;
                        let payload = json!({"type": "INC", "payload": {"n": next}});
                        match http(
                            port,
                            "POST",
                            &format!("/api/instances/{id}/events"),
                            Some(&payload),
                        ) {
                            Some((status, _)) if status < 300 => {
                                *acknowledged[index].lock().expect("model lock") = next
                            }
                            // Dead server (or answer lost): this INC may or may not be stored.
                            _ => break,
                        }
                    }
                })
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 600));
        server.kill();
        running.store(false, Ordering::SeqCst);
        for client in clients {
            client.join().expect("client thread");
        }
        // Let the last alarm come due while the server is dead.
        std::thread::sleep(Duration::from_millis(1600));
        server = start(dir, port);
        for (index, id) in counters.iter().enumerate() {
            let mut acked = acknowledged[index].lock().expect("model lock");
            let stored = check_history(port, id, *acked);
            // A stored but unacknowledged INC counts from now on: the model follows the store.
            *acked = stored;
            assert_eq!(
                counter_of(port, id),
                stored,
                "round {round}: live state of {id} differs from its history"
            );
        }
        // Give restored timers their turn, then check each alarm rang exactly once.
        std::thread::sleep(Duration::from_millis(300));
        for alarm in &alarms {
            let rings =
                history(port, alarm).iter().filter(|event| event["eventType"] == "RING").count();
            assert_eq!(rings, 1, "round {round}: alarm {alarm} rang {rings} times");
        }
    }
    let total: u64 = acknowledged.iter().map(|value| *value.lock().expect("model lock")).sum();
    assert!(total > 0, "the load generator never got an acknowledgement");
    println!(
        "crash test: {ROUNDS} kills, {total} acknowledged transitions all found, none duplicated"
    );
    server.kill();
}
