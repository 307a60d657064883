//! Components in separate processes over a real broker: `serve order.yaml --broker URL` and
//! `runtime payment.yaml --broker URL`, each on its own SQLite store. An order's cross-component
//! creation reaches the payment runtime and the payment's reply comes back; the payment runtime
//! killed (SIGKILL) at random moments while orders flow and restarted still ends with exactly one
//! payment per acknowledged order. Runs once per broker whose test URL is set
//! (`XC_TEST_REDIS_URL`, `XC_TEST_AMQP_URL`, `XC_TEST_KAFKA_URL`, `XC_TEST_NATS_URL`).

#![allow(clippy::unwrap_used)]

mod process;

use process::{BIN, Rng, Server, create, free_port, http, serve, stored_instances};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a test waits for messages to cross the broker.
const CROSSING: Duration = Duration::from_secs(60);

/// The broker URL of a test server, or `None` (skipped loudly) when unset and not required.
fn broker(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("XC_REQUIRE_SERVICES")
                .ok()
                .and_then(|value| xcomponent_core::flag::parse(&value).ok())
                .unwrap_or(false);
            assert!(!required, "{variable} is not set and XC_REQUIRE_SERVICES is true");
            eprintln!("NOTICE: {variable} is not set: the distributed test over it was NOT run");
            None
        }
    }
}

/// A temporary folder with the example components renamed with a unique suffix (so queues
/// left by earlier runs on a shared broker are not read).
struct Dir(PathBuf);

impl Dir {
    fn new() -> (Dir, String) {
        let suffix = format!("T{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(format!("xc-distributed-{suffix}"));
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
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `xcomponent-ai runtime payment.yaml` on the broker, its store in `payments.db`.
fn payment_runtime(dir: &Path, broker: &str) -> Server {
    let child = Command::new(BIN)
        .args(["runtime", "payment.yaml", "--broker", broker, "--name", "payments"])
        .args(["--store", "sqlite://payments.db", "--heartbeat-ms", "1000"])
        .args(["--redelivery-ms", "6000"])
        .env_remove("DATABASE_URL")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runtime starts");
    Server::from_child(child)
}

fn send(port: u16, component: &str, id: &str, event: &str) -> u16 {
    let path = format!("/api/components/{component}/instances/{id}/events");
    let answer = http(port, "POST", &path, Some(&json!({"type": event})));
    if let Some((status, body)) = &answer
        && *status != 200
    {
        eprintln!("{event} to {id}: {status} {body}");
    }
    answer.map_or(0, |(status, _)| status)
}

fn state(port: u16, id: &str) -> Option<String> {
    let (status, body) = http(port, "GET", &format!("/api/instances/{id}"), None)?;
    (status == 200).then(|| body["instance"]["currentState"].as_str().map(str::to_owned)).flatten()
}

/// Payments stored by the payment runtime, read by a `serve` without a broker on its store.
fn payments_by_order(dir: &Path, suffix: &str) -> HashMap<String, usize> {
    let port = free_port();
    let reader = serve(dir, port, &["payment.yaml", "--store", "sqlite://payments.db"]);
    let mut counts = HashMap::new();
    for payment in stored_instances(port, &format!("PaymentComponent{suffix}")) {
        let order = payment["context"]["orderId"].as_str().unwrap_or_default().to_owned();
        *counts.entry(order).or_insert(0) += 1;
    }
    drop(reader);
    counts
}

fn an_order_and_its_payment_cross_processes(broker: &str) {
    let (dir, suffix) = Dir::new();
    let order_component = format!("OrderComponent{suffix}");
    let payment_component = format!("PaymentComponent{suffix}");
    let order_port = free_port();
    let _orders =
        serve(&dir.0, order_port, &["order.yaml", "--broker", broker, "--data-dir", "orders"]);
    let payment_port = free_port();
    // The payment side with HTTP too, to drive the payment to its end.
    let _payments = serve(
        &dir.0,
        payment_port,
        &["payment.yaml", "--broker", broker, "--data-dir", "payments"],
    );
    let order = create(
        order_port,
        &order_component,
        "Order",
        json!({"orderId": "O-1", "amount": 50, "paymentMethod": "visa"}),
    );
    assert_eq!(send(order_port, &order_component, &order, "SUBMIT"), 200);
    let started = Instant::now();
    let payment = loop {
        let found = stored_instances(payment_port, &payment_component);
        if let Some(payment) = found.first() {
            break payment["instanceId"].as_str().or(payment["id"].as_str()).unwrap().to_owned();
        }
        assert!(started.elapsed() < CROSSING, "no payment created in the other process");
        std::thread::sleep(Duration::from_millis(50));
    };
    // PROCESS names a hook this process has no code for: reported, the transition goes on.
    for event in ["PROCESS", "VALIDATE", "COMPLETE"] {
        assert_eq!(send(payment_port, &payment_component, &payment, event), 200, "{event}");
    }
    let started = Instant::now();
    while state(order_port, &order).as_deref() != Some("Paid") {
        assert!(
            started.elapsed() < CROSSING,
            "the order never got PAYMENT_CONFIRMED: {:?}",
            state(order_port, &order)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn the_payment_runtime_killed_at_random_keeps_one_payment_per_order(broker: &str, seed: u64) {
    const ORDERS: usize = 120;
    let (dir, suffix) = Dir::new();
    let order_component = format!("OrderComponent{suffix}");
    let order_port = free_port();
    let _orders =
        serve(&dir.0, order_port, &["order.yaml", "--broker", broker, "--data-dir", "orders"]);
    let mut payments = payment_runtime(&dir.0, broker);
    let client = {
        let component = order_component.clone();
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for index in 0..ORDERS {
                let order_id = format!("K-{index}");
                let context =
                    json!({"orderId": order_id, "amount": index, "paymentMethod": "visa"});
                let order = create(order_port, &component, "Order", context);
                if send(order_port, &component, &order, "SUBMIT") == 200 {
                    acknowledged.push(order_id);
                }
            }
            acknowledged
        })
    };
    let mut rng = Rng(seed);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 400));
        payments.kill();
        payments = payment_runtime(&dir.0, broker);
    }
    let acknowledged = client.join().unwrap();
    assert_eq!(acknowledged.len(), ORDERS, "every SUBMIT was acknowledged by the order side");
    // Ask the running payment runtime (over the bus, as a dashboard does) until every payment
    // is there, then read its store for the exact count.
    let component = format!("PaymentComponent{suffix}");
    let started = Instant::now();
    while live_count(broker, &component) < ORDERS {
        assert!(started.elapsed() < CROSSING, "seed {seed}: the payments did not all arrive");
        std::thread::sleep(Duration::from_millis(500));
    }
    payments.kill();
    let counts = payments_by_order(&dir.0, &suffix);
    let duplicated: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        duplicated.is_empty(),
        "seed {seed}: orders with more than one payment: {duplicated:?}"
    );
    let missing: Vec<_> =
        acknowledged.iter().filter(|order| !counts.contains_key(*order)).collect();
    assert!(missing.is_empty(), "seed {seed}: acknowledged orders without a payment: {missing:?}");
    assert_eq!(counts.len(), ORDERS);
}

/// Live instances of `component`, as its runtime answers a query on the bus (0 when no answer
/// comes within a few seconds).
fn live_count(broker: &str, component: &str) -> usize {
    use xcomponent_core::bus::channels;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let bus =
            xcomponent_bus::open(broker, &xcomponent_bus::BusOptions::default()).await.unwrap();
        let mut answers = bus.subscribe(&[channels::QUERY_RESPONSE]).await.unwrap();
        bus.publish(channels::QUERY_INSTANCES, b"{\"type\":\"query_all_instances\"}")
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let Ok(Ok(answer)) = tokio::time::timeout_at(deadline, answers.next()).await else {
                return 0;
            };
            let answer: serde_json::Value =
                serde_json::from_slice(&answer.body).unwrap_or_default();
            if answer["componentName"] == component {
                return answer["instances"].as_array().map_or(0, Vec::len);
            }
        }
    })
}

/// Starts `xcomponent-ai runtime FILE` on the broker with its own SQLite store.
fn runtime_process(dir: &Path, broker: &str, file: &str, name: &str) -> Server {
    let store = format!("sqlite://{name}.db");
    let child = Command::new(BIN)
        .args(["runtime", file, "--broker", broker, "--name", name, "--store", &store])
        .args(["--heartbeat-ms", "500", "--redelivery-ms", "6000"])
        .env_remove("DATABASE_URL")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runtime starts");
    Server::from_child(child)
}

/// Starts `xcomponent-ai dashboard` on the broker and waits until it lists `components` (other
/// runtimes may share the broker).
fn dashboard_process(dir: &Path, broker: &str, port: u16, components: &[&str]) -> Server {
    let child = Command::new(BIN)
        .args(["dashboard", "--broker", broker, "--port", &port.to_string()])
        .args([
            "--reply-timeout-ms",
            "4000",
            "--runtime-timeout-ms",
            "3000",
            "--refresh-ms",
            "1000",
        ])
        .env_remove("DATABASE_URL")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dashboard starts");
    let server = Server::from_child(child);
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
        assert!(started.elapsed() < CROSSING, "the dashboard did not list {components:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The state of an instance as the dashboard sees it (live view), polled until `wanted`.
fn wait_state(port: u16, id: &str, wanted: &str) {
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

/// The payment of an order, as the dashboard lists it.
fn payment_for(port: u16, component: &str, order_id: &str) -> String {
    let started = Instant::now();
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
                return id.to_owned();
            }
        }
        assert!(started.elapsed() < CROSSING, "no payment for {order_id} seen by the dashboard");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Order runtime, payment runtime and dashboard, three processes: flows driven through the
/// dashboard's REST API, which routes every command to the runtime that owns its target.
fn three_processes_through_the_dashboard(broker: &str) {
    const FLOWS: usize = 100;
    let (dir, suffix) = Dir::new();
    let order_component = format!("OrderComponent{suffix}");
    let payment_component = format!("PaymentComponent{suffix}");
    let mut orders = runtime_process(&dir.0, broker, "order.yaml", "orders");
    let _payments = runtime_process(&dir.0, broker, "payment.yaml", "payments");
    let port = free_port();
    let _dashboard =
        dashboard_process(&dir.0, broker, port, &[&order_component, &payment_component]);

    let flow = |index: usize| {
        let order_id = format!("F-{index}");
        // Every fifth flow is refused by the payment, the others are paid.
        let refused = index.is_multiple_of(5);
        let method = if refused { "cash" } else { "visa" };
        let context = json!({"orderId": order_id, "amount": 10 + index, "paymentMethod": method});
        // The dashboard answers with the owner's outcome (200/201), or 202 when the owner did not
        // answer in time (the command is on the owner's queue and will be applied): both go on.
        let order = create(port, &order_component, "Order", context);
        let status = send(port, &order_component, &order, "SUBMIT");
        assert!(matches!(status, 200 | 202), "{order_id}: {status}");
        let payment = payment_for(port, &payment_component, &order_id);
        // PROCESS names a hook these runtimes have no code for: reported, the transition goes on.
        let events: &[&str] =
            if refused { &["PROCESS", "REJECT"] } else { &["PROCESS", "VALIDATE", "COMPLETE"] };
        for event in events {
            let status = send(port, &payment_component, &payment, event);
            assert!(matches!(status, 200 | 202), "{order_id} {event}: {status}");
        }
        (order, refused)
    };
    let flows: Vec<(String, bool)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..10)
            .map(|worker| {
                scope.spawn(move || {
                    (0..FLOWS / 10).map(|step| flow(worker * 10 + step)).collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    for (order, refused) in &flows {
        if *refused {
            // A cancelled order is final: it leaves the live view (checked in its store below).
            let started = Instant::now();
            while state(port, order).is_some() {
                assert!(started.elapsed() < CROSSING, "{order} is still live");
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            wait_state(port, order, "Paid");
        }
    }
    // Each order's stored state, read by a `serve` without a broker on the order runtime's store.
    orders.kill();
    let reader_port = free_port();
    let _reader = serve(&dir.0, reader_port, &["order.yaml", "--store", "sqlite://orders.db"]);
    for (order, refused) in &flows {
        let (status, body) =
            http(reader_port, "GET", &format!("/api/instances/{order}"), None).unwrap();
        assert_eq!(status, 200, "{body}");
        let expected = if *refused { "Cancelled" } else { "Paid" };
        assert_eq!(body["instance"]["currentState"], expected, "{order}: {body}");
    }
}

fn run_on(variable: &str) {
    let Some(url) = broker(variable) else { return };
    three_processes_through_the_dashboard(&url);
    an_order_and_its_payment_cross_processes(&url);
    the_payment_runtime_killed_at_random_keeps_one_payment_per_order(&url, 0x5eed_0001);
}

#[test]
fn over_redis() {
    run_on("XC_TEST_REDIS_URL");
}

#[test]
fn over_rabbitmq() {
    run_on("XC_TEST_AMQP_URL");
}

#[test]
fn over_kafka() {
    run_on("XC_TEST_KAFKA_URL");
}

#[test]
fn over_nats() {
    run_on("XC_TEST_NATS_URL");
}
