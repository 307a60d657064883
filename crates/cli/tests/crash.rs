//! Crash test: `xcomponent-ai serve` on the embedded store, under load from several clients, is
//! killed with SIGKILL at random moments, several times. After each restart:
//! - every acknowledged transition is there (each instance's counter is at least the last
//!   acknowledged value, and at most one more: a request may be stored without its reply);
//! - no event is duplicated (sequence numbers run 1..=n with no gap or repeat, counters
//!   increase by exactly one per stored INC);
//! - instances are in the state a model says;
//! - a timeout that came due while the server was dead fires exactly once.
//!
//! The HTTP client and process handling are in `process/mod.rs`, shared with the other
//! process tests.

mod process;

use process::{Rng, Server, free_port, history, http};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Kill/restart rounds.
const ROUNDS: usize = 4;
/// Instances driven by their own client thread each.
const CLIENTS: usize = 6;

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

fn start(dir: &Path, port: u16) -> Server {
    process::serve(dir, port, &["crash.yaml", "--data-dir", "data"])
}

fn create(port: u16, machine: &str) -> String {
    process::create(port, "Crash", machine, json!({"n": 0}))
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
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
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
        std::thread::sleep(Duration::from_millis(150 + rng.next() % 600));
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
