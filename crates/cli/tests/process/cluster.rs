//! Components in separate processes joined by a broker, for the process tests that need them
//! (`distributed.rs`, `broker_restart.rs`): the test URL of a service (skipped loudly, or a failure
//! under `XC_REQUIRE_SERVICES`), a folder holding the order/payment example renamed for one run,
//! `xcomponent-ai runtime` and `xcomponent-ai dashboard` processes, and the few REST calls the
//! tests drive the dashboard with.

use super::{BIN, Server, http};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a test waits for messages to cross the broker.
pub const CROSSING: Duration = Duration::from_secs(60);

/// Whether `XC_REQUIRE_SERVICES` is set to a true value (a missing service then fails the test).
pub fn services_required() -> bool {
    std::env::var("XC_REQUIRE_SERVICES")
        .ok()
        .and_then(|value| xcomponent_core::flag::parse(&value).ok())
        .unwrap_or(false)
}

/// The URL of a test server named by `variable`, or `None` (skipped loudly) when unset and not
/// required.
pub fn service_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(!services_required(), "{variable} is not set and XC_REQUIRE_SERVICES is true");
            eprintln!("NOTICE: {variable} is not set: the test over it was NOT run");
            None
        }
    }
}

/// A temporary folder with the example components renamed with a unique suffix (so queues
/// left by earlier runs on a shared broker are not read). Removed when dropped, unless the test
/// is failing or `XC_KEEP_TEST_DIRS` is set (then kept, and its path printed, for the processes'
/// logs).
pub struct Dir(pub PathBuf);

impl Dir {
    /// A new folder `xc-{prefix}-{suffix}` under the system's temporary folder; returns it and
    /// the suffix of the component names (`OrderComponent{suffix}`, `PaymentComponent{suffix}`).
    pub fn new(prefix: &str) -> (Dir, String) {
        let suffix = format!("T{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(format!("xc-{prefix}-{suffix}"));
        std::fs::create_dir_all(&dir).expect("test folder created");
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-payment");
        for file in ["order.yaml", "payment.yaml"] {
            let yaml = std::fs::read_to_string(examples.join(file)).expect("example readable");
            let renamed = yaml
                .replace("OrderComponent", &format!("OrderComponent{suffix}"))
                .replace("PaymentComponent", &format!("PaymentComponent{suffix}"));
            std::fs::write(dir.join(file), renamed).expect("component written");
        }
        (Dir(dir), suffix)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("XC_KEEP_TEST_DIRS").is_some() {
            eprintln!("test folder kept (processes' logs): {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts `xcomponent-ai runtime FILE` on the broker with its own SQLite store `NAME.db`.
pub fn runtime_process(dir: &Path, broker: &str, file: &str, name: &str) -> Server {
    runtime_process_on(dir, broker, file, name, &format!("sqlite://{name}.db"))
}

/// Starts `xcomponent-ai runtime FILE` on the broker with the store `store`; its log goes to
/// `NAME.log` in `dir`.
pub fn runtime_process_on(dir: &Path, broker: &str, file: &str, name: &str, store: &str) -> Server {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let child = Command::new(BIN)
        .args(["runtime", file, "--broker", broker, "--name", name, "--store", store])
        .args(["--heartbeat-ms", "500", "--redelivery-ms", "6000"])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("runtime starts");
    Server::from_child(child)
}

/// Starts `xcomponent-ai dashboard` on the broker, asking the runtimes for their instances every
/// second, and waits until it lists `components` (other runtimes may share the broker); its log
/// goes to `dashboard.log` in `dir`.
pub fn dashboard_process(dir: &Path, broker: &str, port: u16, components: &[&str]) -> Server {
    dashboard_refreshing(dir, broker, port, components, 1000)
}

/// `dashboard_process`, asking the runtimes for their instances every `refresh_ms`.
pub fn dashboard_refreshing(
    dir: &Path,
    broker: &str,
    port: u16,
    components: &[&str],
    refresh_ms: u64,
) -> Server {
    dashboard_with(dir, broker, port, components, refresh_ms, &[])
}

/// `dashboard_refreshing` with more arguments (`--store URL`).
pub fn dashboard_with(
    dir: &Path,
    broker: &str,
    port: u16,
    components: &[&str],
    refresh_ms: u64,
    extra: &[&str],
) -> Server {
    let log = std::fs::File::create(dir.join("dashboard.log")).expect("log file");
    let child = Command::new(BIN)
        .args(["dashboard", "--broker", broker, "--port", &port.to_string()])
        .args(extra)
        .args([
            "--reply-timeout-ms",
            "4000",
            "--runtime-timeout-ms",
            "3000",
            "--refresh-ms",
            &refresh_ms.to_string(),
        ])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("dashboard starts");
    let mut server = Server::from_child(child);
    let started = Instant::now();
    loop {
        if let Some((200, body)) = http(port, "GET", "/api/components", None) {
            let listed: Vec<&str> = body["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|component| component["name"].as_str())
                .collect();
            if components.iter().all(|ours| listed.contains(ours)) {
                return server;
            }
        }
        if let Some(status) = server.exited() {
            panic!(
                "the dashboard exited ({status}) before listing {components:?}\n{}",
                log_tails(dir)
            );
        }
        assert!(
            started.elapsed() < CROSSING,
            "the dashboard did not list {components:?} within {CROSSING:?}\n{}",
            log_tails(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `LOG_TAIL_LINES` lines of every process log (`*.log`) in `dir`, for a failure's
/// message (CI keeps no test folder).
pub fn log_tails(dir: &Path) -> String {
    const LOG_TAIL_LINES: usize = 40;
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    let mut tails = String::new();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        tails.push_str(&format!("--- {} (last {} lines)\n", log.display(), tail.len()));
        for line in tail {
            tails.push_str(line);
            tails.push('\n');
        }
    }
    tails
}

/// Sends `event` to an instance; the HTTP status (0 when the server did not answer).
pub fn send(port: u16, component: &str, id: &str, event: &str) -> u16 {
    let path = format!("/api/components/{component}/instances/{id}/events");
    let answer = http(port, "POST", &path, Some(&json!({"type": event})));
    if let Some((status, body)) = &answer
        && *status != 200
    {
        eprintln!("{event} to {id}: {status} {body}");
    }
    answer.map_or(0, |(status, _)| status)
}

/// The current state of a live instance, `None` when the server does not list it.
pub fn state(port: u16, id: &str) -> Option<String> {
    let (status, body) = http(port, "GET", &format!("/api/instances/{id}"), None)?;
    (status == 200).then(|| body["instance"]["currentState"].as_str().map(str::to_owned)).flatten()
}

/// The state of an instance as the dashboard sees it (live view), polled until `wanted`.
pub fn wait_state(port: u16, id: &str, wanted: &str) {
    let started = Instant::now();
    loop {
        let seen = state(port, id);
        if seen.as_deref() == Some(wanted) {
            return;
        }
        assert!(started.elapsed() < CROSSING, "{id} never reached {wanted} (last seen {seen:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The live payment of an order, as the server lists it, looked for until `deadline`.
pub fn find_payment(
    port: u16,
    component: &str,
    order_id: &str,
    deadline: Instant,
) -> Option<String> {
    loop {
        let path = format!("/api/instances?component={component}&q={order_id}&limit=10");
        if let Some((200, body)) = http(port, "GET", &path, None) {
            let items = body.get("items").or_else(|| body.get("instances")).cloned();
            let found = items.and_then(|items| {
                items
                    .as_array()?
                    .iter()
                    .find(|item| item["context"]["orderId"] == order_id)
                    .cloned()
            });
            if let Some(found) = found {
                let id = found["instanceId"].as_str().or(found["id"].as_str()).unwrap_or_default();
                return Some(id.to_owned());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The payment of an order, as the dashboard lists it (fails after `CROSSING`).
pub fn payment_for(port: u16, component: &str, order_id: &str) -> String {
    find_payment(port, component, order_id, Instant::now() + CROSSING)
        .unwrap_or_else(|| panic!("no payment for {order_id} seen by the dashboard"))
}

/// The `eventType` of every stored event of an instance, in order, as `port` serves them.
pub fn event_types(port: u16, id: &str) -> Vec<String> {
    super::history(port, id)
        .iter()
        .map(|event| event["eventType"].as_str().unwrap_or_default().to_owned())
        .collect()
}
