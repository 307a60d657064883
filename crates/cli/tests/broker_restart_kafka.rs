//! tansu (a Kafka-protocol broker keeping everything in memory) restarted empty while orders
//! flow between processes: `runtime order.yaml` and `runtime payment.yaml` on their own SQLite
//! stores, and a `dashboard` through which the flows are driven (REST). The broker is killed
//! while messages it had confirmed wait on it, then started again on the same port without any
//! topic, record or committed offset, twice: once while the payment creations wait on the
//! payment queue (no payment runtime yet), once while the payment confirmations wait on the
//! order queue (the order runtime killed; the payment runtime and the dashboard stay connected
//! through the restart). Every
//! acknowledged order still ends `Paid` with exactly one payment, and no stored history holds an
//! event twice: the senders keep each message in their outbox until the receiver's receipt and
//! send again what got none, and the receivers' inboxes drop the copies.
//!
//! Runs its own tansu on a free port (`XC_TANSU_BIN`, the binary the test scripts set); without
//! it the test is skipped loudly, or fails when `XC_REQUIRE_SERVICES` is true.

#![allow(clippy::unwrap_used)]

mod process;

use process::cluster::dashboard_process;
use process::{BIN, Server, free_port, history, http, serve, stored_instances};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a test waits for messages to cross the broker (a message whose receipt is
/// missing is sent again after `--resend-ms`).
const CROSSING: Duration = Duration::from_secs(90);

/// Orders driven through the dashboard.
const ORDERS: usize = 30;

/// The longest tansu takes to listen after a start.
const TANSU_START: Duration = Duration::from_secs(30);

/// The tansu binary, or `None` (skipped loudly) when unset and not required.
fn tansu_binary() -> Option<String> {
    match std::env::var("XC_TANSU_BIN") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            let required = std::env::var("XC_REQUIRE_SERVICES")
                .ok()
                .and_then(|value| xcomponent_core::flag::parse(&value).ok())
                .unwrap_or(false);
            assert!(!required, "XC_TANSU_BIN is not set and XC_REQUIRE_SERVICES is true");
            eprintln!("NOTICE: XC_TANSU_BIN is not set: the tansu restart test was NOT run");
            None
        }
    }
}

/// A tansu process with memory storage on a loopback port, killed when dropped.
struct Tansu {
    binary: String,
    address: SocketAddr,
    child: Option<Child>,
}

impl Tansu {
    fn start(binary: &str) -> Tansu {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut tansu = Tansu { binary: binary.to_owned(), address, child: None };
        tansu.spawn();
        tansu
    }

    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.address);
        let child = Command::new(&self.binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start tansu ({}): {error}", self.binary));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_err() {
            assert!(started.elapsed() < TANSU_START, "tansu did not listen on {}", self.address);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, a pause as a real restart takes, and a new tansu on the same port: empty.
    fn restart_empty(&mut self) {
        self.kill();
        std::thread::sleep(Duration::from_secs(1));
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary folder with the example components renamed with a unique suffix.
struct Dir(PathBuf);

impl Dir {
    fn new() -> (Dir, String) {
        let suffix = format!("T{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(format!("xc-tansu-restart-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-payment");
        for file in ["order.yaml", "payment.yaml"] {
            let yaml = std::fs::read_to_string(examples.join(file)).unwrap();
            let renamed = yaml
                .replace("OrderComponent", &format!("OrderComponent{suffix}"))
                .replace("PaymentComponent", &format!("PaymentComponent{suffix}"));
            std::fs::write(dir.join(file), renamed).unwrap();
        }
        (Dir(dir), suffix)
    }
}

impl Drop for Dir {
    /// Removes the folder, unless `XC_TEST_LOG_DIR` asks for logs (the stores stay to look at).
    fn drop(&mut self) {
        if std::env::var_os("XC_TEST_LOG_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A runtime process, killed (SIGKILL) when dropped.
struct Runtime {
    _server: Server,
}

impl Runtime {
    /// `xcomponent-ai runtime FILE` on the broker with its own SQLite store; a message without
    /// a receipt is sent again after 2 s.
    fn start(dir: &Path, broker: &str, file: &str, name: &str) -> Runtime {
        let store = format!("sqlite://{name}.db");
        let child = Command::new(BIN)
            .args(["runtime", file, "--broker", broker, "--name", name, "--store", &store])
            .args(["--heartbeat-ms", "500", "--redelivery-ms", "6000", "--resend-ms", "2000"])
            .env_remove("DATABASE_URL")
            .current_dir(dir)
            .stdout(log(&format!("{name}.out")))
            .stderr(log(&format!("{name}.err")))
            .spawn()
            .expect("runtime starts");
        Runtime { _server: Server::from_child(child) }
    }
}

/// Where a process writes: a file under `XC_TEST_LOG_DIR` when set, else nowhere.
fn log(file: &str) -> Stdio {
    match std::env::var("XC_TEST_LOG_DIR") {
        Ok(dir) if !dir.is_empty() => std::fs::File::create(Path::new(&dir).join(file))
            .map_or_else(|_| Stdio::null(), Stdio::from),
        _ => Stdio::null(),
    }
}

/// A REST call through the dashboard, retried while nothing was sent (no answer, or 503 because
/// the broker is away); a request that timed out (it may still be applied) is not retried.
fn call(port: u16, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let started = Instant::now();
    loop {
        match http(port, method, path, Some(body)) {
            Some((503, answer)) if answer["code"] != "request_timeout" => {}
            Some((status, answer)) => return (status, answer),
            None => {}
        }
        assert!(started.elapsed() < CROSSING, "{method} {path} kept failing");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The state of an instance as the dashboard sees it.
fn state(port: u16, id: &str) -> Option<String> {
    let (status, body) = http(port, "GET", &format!("/api/instances/{id}"), None)?;
    (status == 200).then(|| body["instance"]["currentState"].as_str().map(str::to_owned)).flatten()
}

/// Polls until every instance of `ids` is in `wanted` as the dashboard sees it.
fn wait_all(port: u16, ids: &[String], wanted: &str) {
    let started = Instant::now();
    for id in ids {
        loop {
            let seen = state(port, id);
            if seen.as_deref() == Some(wanted) {
                break;
            }
            assert!(started.elapsed() < CROSSING, "{id} never reached {wanted} (seen {seen:?})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The payment of each order (by `orderId`), as the dashboard lists them.
fn payments(port: u16, component: &str, order_ids: &[String]) -> HashMap<String, String> {
    let started = Instant::now();
    loop {
        let path = format!("/api/instances?component={component}&limit=1000");
        let mut found = HashMap::new();
        if let Some((200, body)) = http(port, "GET", &path, None) {
            let items = body.get("items").or_else(|| body.get("instances")).cloned();
            for item in items.as_ref().and_then(Value::as_array).into_iter().flatten() {
                let order = item["context"]["orderId"].as_str().unwrap_or_default().to_owned();
                let id = item["instanceId"].as_str().or(item["id"].as_str()).unwrap_or_default();
                found.insert(order, id.to_owned());
            }
        }
        if order_ids.iter().all(|order| found.contains_key(order)) {
            return found;
        }
        assert!(
            started.elapsed() < CROSSING,
            "payments missing after the broker restart: {:?}",
            order_ids.iter().filter(|order| !found.contains_key(*order)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `event` to each instance through the dashboard and waits until it is applied: answered
/// with the owner's outcome (200), or accepted (202: on the owner's queue) and then seen to leave
/// `from` (a final state leaves the live view).
fn send_all(port: u16, component: &str, ids: &[&String], event: &str, from: &str) {
    for id in ids {
        let path = format!("/api/components/{component}/instances/{id}/events");
        let (status, body) = call(port, "POST", &path, &json!({"type": event}));
        assert!(matches!(status, 200 | 202), "{event} to {id}: {status} {body}");
        if status == 200 {
            assert_eq!(body["outcome"], "transitioned", "{event} to {id}: {body}");
            continue;
        }
        let started = Instant::now();
        while state(port, id).as_deref() == Some(from) {
            assert!(started.elapsed() < CROSSING, "{event} to {id} never applied");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Event types of a stored history that appear more than once (a transition applied twice).
fn repeated(events: &[Value]) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for event in events {
        let name = event["eventType"].as_str().or(event["event"].as_str()).unwrap_or_default();
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    counts.into_iter().filter(|(_, count)| *count > 1).map(|(name, _)| name).collect()
}

#[test]
fn every_order_is_paid_once_when_tansu_restarts_empty_mid_flow() {
    let Some(binary) = tansu_binary() else { return };
    let mut tansu = Tansu::start(&binary);
    let broker = format!("kafka://{}", tansu.address);
    let (dir, suffix) = Dir::new();
    let order_component = format!("OrderComponent{suffix}");
    let payment_component = format!("PaymentComponent{suffix}");
    let orders_runtime = Runtime::start(&dir.0, &broker, "order.yaml", "orders");
    let port = free_port();
    let _dashboard = dashboard_process(&dir.0, &broker, port, &[&order_component]);

    // Orders created and submitted (each SUBMIT applied by the order runtime: 200) while no
    // payment runtime runs: the payment creations wait on the payment queue, confirmed by the
    // broker. Then the broker loses them all, and the payment runtime starts.
    let order_ids: Vec<String> = (0..ORDERS).map(|index| format!("R-{index}")).collect();
    let mut orders = Vec::new();
    for order_id in &order_ids {
        let context = json!({"orderId": order_id, "amount": 10, "paymentMethod": "visa"});
        let path = format!("/api/components/{order_component}/instances");
        let body = json!({"machineName": "Order", "context": context});
        let (status, body) = call(port, "POST", &path, &body);
        assert!(status < 300, "create {order_id}: {status} {body}");
        let order = body["instanceId"].as_str().unwrap().to_owned();
        let path = format!("/api/components/{order_component}/instances/{order}/events");
        let (status, body) = call(port, "POST", &path, &json!({"type": "SUBMIT"}));
        assert_eq!(status, 200, "SUBMIT {order_id}: {body}");
        orders.push(order);
    }
    // Let the relay hand them all to the broker (the order runtime's outbox keeps them).
    std::thread::sleep(Duration::from_secs(1));
    tansu.restart_empty();
    let payments_runtime = Runtime::start(&dir.0, &broker, "payment.yaml", "payments");
    let payment_of = payments(port, &payment_component, &order_ids);
    let payment_ids: Vec<&String> = order_ids.iter().map(|order| &payment_of[order]).collect();
    send_all(port, &payment_component, &payment_ids, "PROCESS", "Pending");
    send_all(port, &payment_component, &payment_ids, "VALIDATE", "Processing");

    // The order runtime killed (SIGKILL); the confirmations (each COMPLETE applied by the
    // payment runtime) wait on the order queue; the broker loses them, with the payment
    // runtime and the dashboard connected; the order runtime starts again on its store.
    drop(orders_runtime);
    send_all(port, &payment_component, &payment_ids, "COMPLETE", "Validated");
    std::thread::sleep(Duration::from_secs(1));
    tansu.restart_empty();
    let orders_runtime = Runtime::start(&dir.0, &broker, "order.yaml", "orders");
    wait_all(port, &orders, "Paid");

    // The stores, read by `serve` processes without a broker once the runtimes are gone.
    drop(orders_runtime);
    drop(payments_runtime);
    let order_reader = free_port();
    let _orders_store =
        serve(&dir.0, order_reader, &["order.yaml", "--store", "sqlite://orders.db"]);
    let payment_reader = free_port();
    let _payments_store =
        serve(&dir.0, payment_reader, &["payment.yaml", "--store", "sqlite://payments.db"]);
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for payment in stored_instances(payment_reader, &payment_component) {
        let order = payment["context"]["orderId"].as_str().unwrap_or_default().to_owned();
        *per_order.entry(order).or_default() += 1;
        let id = payment["instanceId"].as_str().or(payment["id"].as_str()).unwrap();
        let events = history(payment_reader, id);
        assert!(repeated(&events).is_empty(), "payment {id} applied twice: {events:?}");
    }
    for order_id in &order_ids {
        assert_eq!(per_order.get(order_id), Some(&1), "{order_id}: one payment, not {per_order:?}");
    }
    assert_eq!(per_order.len(), ORDERS, "no payment for an unknown order: {per_order:?}");
    for order in &orders {
        let (status, body) = http(order_reader, "GET", &format!("/api/instances/{order}"), None)
            .expect("order store answers");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["instance"]["currentState"], "Paid", "{order}: {body}");
        let events = history(order_reader, order);
        assert!(repeated(&events).is_empty(), "order {order} applied twice: {events:?}");
    }
}
