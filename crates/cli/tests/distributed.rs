//! Components in separate processes over a real broker: `serve order.yaml --broker URL` and
//! `runtime payment.yaml --broker URL`, each on its own SQLite store. An order's cross-component
//! creation reaches the payment runtime and the payment's reply comes back; the payment runtime
//! killed (SIGKILL) at random moments while orders flow and restarted still ends with exactly one
//! payment per acknowledged order. Runs once per broker whose test URL is set
//! (`XC_TEST_REDIS_URL`, `XC_TEST_AMQP_URL`, `XC_TEST_KAFKA_URL`, `XC_TEST_NATS_URL`).

#![allow(clippy::unwrap_used)]

mod process;

use process::cluster::{
    CROSSING, Dir, dashboard_process, payment_for, runtime_process, send, service_url, state,
    wait_state,
};
use process::{BIN, Rng, Server, create, free_port, http, serve, stored_instances};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let (dir, suffix) = Dir::new("distributed");
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
    let (dir, suffix) = Dir::new("distributed");
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

/// Order runtime, payment runtime and dashboard, three processes: flows driven through the
/// dashboard's REST API, which routes every command to the runtime that owns its target.
fn three_processes_through_the_dashboard(broker: &str) {
    const FLOWS: usize = 100;
    let (dir, suffix) = Dir::new("distributed");
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
            // A cancelled order is final: it leaves the live view, and the dashboard reads its
            // stored record from the order runtime's store over the bus (checked again below).
            wait_state(port, order, "Cancelled");
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
    let Some(url) = service_url(variable) else { return };
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
