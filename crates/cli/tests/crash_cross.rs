//! Crash test across components: `serve` with orders and payments (SUBMIT on an order creates
//! its payment in another component through a cross_component transition; a payment expires
//! by timeout). Several clients create and submit orders while the server is killed with
//! SIGKILL at random moments, several times, on SQLite and on PostgreSQL. After each restart:
//! - every order whose SUBMIT is stored (every acknowledged one, and any stored without its
//!   reply) has exactly one payment, never zero, never two;
//! - every payment's timeout, come due while the server was dead, fired exactly once.
//!
//! A deterministic case, on PostgreSQL: the payment's insert is made to fail, the SUBMIT is
//! acknowledged, the server is killed, the fault removed, and the restarted server creates the
//! payment from the stored outbox.

mod process;

use process::{Rng, Server, free_port, history, http, stored_instances};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kill/restart rounds per backend.
const ROUNDS: usize = 5;
/// Client threads, each creating and submitting orders in a loop.
const CLIENTS: usize = 6;
/// Longest wait for a restarted server to settle what it redelivers.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// The payment timeout (short, so it comes due while the server is dead).
const EXPIRY_MS: u64 = 800;

fn components(expiry_ms: u64) -> (String, String) {
    let orders = r#"
name: OrderComponent
stateMachines:
  - name: Order
    initialState: Created
    states: [{name: Created}, {name: PendingPayment}, {name: Paid, type: final}]
    transitions:
      - from: Created
        to: PendingPayment
        event: SUBMIT
        type: cross_component
        targetComponent: PaymentComponent
        targetMachine: Payment
        contextMapping: {orderId: orderId, amount: amount}
      - {from: PendingPayment, to: Paid, event: PAID}
"#;
    let payments = format!(
        r#"
name: PaymentComponent
stateMachines:
  - name: Payment
    initialState: Pending
    states: [{{name: Pending}}, {{name: Expired, type: final}}]
    transitions:
      - {{from: Pending, to: Expired, event: EXPIRE, type: timeout, timeoutMs: {expiry_ms}}}
"#
    );
    (orders.to_owned(), payments)
}

/// Writes the two component files into `dir`.
fn write_components(dir: &Path, expiry_ms: u64) {
    let (orders, payments) = components(expiry_ms);
    std::fs::write(dir.join("order.yaml"), orders).expect("order component written");
    std::fs::write(dir.join("payment.yaml"), payments).expect("payment component written");
}

fn start(dir: &Path, port: u16, store: &[&str]) -> Server {
    let mut args = vec!["order.yaml", "payment.yaml"];
    args.extend_from_slice(store);
    process::serve(dir, port, &args)
}

/// Orders whose SUBMIT is stored (their state left Created), by their `orderId`.
fn submitted_orders(port: u16) -> Vec<String> {
    stored_instances(port, "OrderComponent")
        .iter()
        .filter(|order| order["currentState"] != "Created")
        .filter_map(|order| order["context"]["orderId"].as_str().map(str::to_owned))
        .collect()
}

/// Payments per `orderId` (each payment once, even if a search page boundary moved while
/// paging: the search is ordered by last update, which a firing timer changes).
fn payments_by_order(port: u16) -> HashMap<String, Vec<Value>> {
    let mut by_order: HashMap<String, Vec<Value>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for payment in stored_instances(port, "PaymentComponent") {
        if !seen.insert(payment["instanceId"].as_str().unwrap_or_default().to_owned()) {
            continue;
        }
        if let Some(order) = payment["context"]["orderId"].as_str() {
            by_order.entry(order.to_owned()).or_default().push(payment);
        }
    }
    by_order
}

/// Waits until every submitted order has a payment (the restarted server delivers what its
/// outbox holds before it answers, but timers and chains may still be settling), then checks
/// exactly one payment each and that every acknowledged SUBMIT is among the stored ones.
fn check_one_payment_per_order(port: u16, acknowledged: &[String], round: usize) -> usize {
    let started = Instant::now();
    loop {
        let submitted = submitted_orders(port);
        let payments = payments_by_order(port);
        let missing: Vec<&String> =
            submitted.iter().filter(|order| !payments.contains_key(*order)).collect();
        if missing.is_empty() || started.elapsed() > SETTLE_TIMEOUT {
            assert!(missing.is_empty(), "round {round}: orders without a payment: {missing:?}");
            for order in acknowledged {
                assert!(
                    submitted.contains(order),
                    "round {round}: acknowledged SUBMIT of {order} is not stored"
                );
            }
            for (order, found) in &payments {
                let ids: Vec<&Value> = found.iter().map(|payment| &payment["instanceId"]).collect();
                assert_eq!(found.len(), 1, "round {round}: order {order} has payments {ids:?}");
            }
            return submitted.len();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every payment has expired, then checks each expired exactly once.
fn check_timeouts_fired_once(port: u16, round: usize) {
    let started = Instant::now();
    loop {
        let payments = stored_instances(port, "PaymentComponent");
        let pending = payments.iter().filter(|p| p["currentState"] == "Pending").count();
        if pending == 0 || started.elapsed() > SETTLE_TIMEOUT {
            assert_eq!(pending, 0, "round {round}: {pending} payments never expired");
            for payment in payments {
                let id = payment["instanceId"].as_str().expect("payment id");
                let fired = history(port, id).iter().filter(|e| e["eventType"] == "EXPIRE").count();
                assert_eq!(fired, 1, "round {round}: payment {id} expired {fired} times");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One client: create an order, submit it, remember it when the SUBMIT is acknowledged.
fn client(
    port: u16,
    round: usize,
    index: usize,
    running: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
) {
    let mut n = 0;
    while running.load(Ordering::SeqCst) {
        n += 1;
        let order_id = format!("r{round}-c{index}-{n}");
        let body = json!({"machineName": "Order", "context": {"orderId": order_id, "amount": n}});
        let Some((status, created)) =
            http(port, "POST", "/api/components/OrderComponent/instances", Some(&body))
        else {
            return;
        };
        if status >= 300 {
            return;
        }
        let Some(id) = created["instanceId"].as_str() else { return };
        let submit = json!({"type": "SUBMIT", "payload": {}});
        match http(port, "POST", &format!("/api/instances/{id}/events"), Some(&submit)) {
            Some((status, _)) if status < 300 => {
                acknowledged.lock().expect("model lock").push(order_id)
            }
            // Dead server (or answer lost): this SUBMIT may or may not be stored.
            _ => return,
        }
    }
}

fn run_kill_rounds(store: &[&str], seed: u64) {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    write_components(dir, EXPIRY_MS);
    let port = free_port();
    let mut server = start(dir, port, store);
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rng = Rng(seed);
    let mut checked = 0;
    for round in 0..ROUNDS {
        let running = Arc::new(AtomicBool::new(true));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|index| {
                let (running, acknowledged) = (running.clone(), acknowledged.clone());
                std::thread::spawn(move || client(port, round, index, running, acknowledged))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + rng.next() % 800));
        server.kill();
        running.store(false, Ordering::SeqCst);
        for client in clients {
            client.join().expect("client thread");
        }
        // Let the payments' timeouts come due while the server is dead.
        std::thread::sleep(Duration::from_millis(EXPIRY_MS + 200));
        server = start(dir, port, store);
        let acked = acknowledged.lock().expect("model lock").clone();
        checked = check_one_payment_per_order(port, &acked, round);
        check_timeouts_fired_once(port, round);
    }
    let acked = acknowledged.lock().expect("model lock").len();
    assert!(acked > 0, "the load generator never got an acknowledgement");
    println!(
        "cross-component crash test ({store:?}): {ROUNDS} kills, {acked} acknowledged SUBMITs, \
         {checked} stored orders, each with exactly one payment, every timeout fired once"
    );
    server.kill();
}

#[test]
fn killed_at_random_moments_sqlite_keeps_exactly_one_payment_per_order() {
    run_kill_rounds(&["--data-dir", "data"], 0x9E37_79B9_7F4A_7C15);
}

/// The PostgreSQL URL of the tests, with a fresh schema; `None` (skipped, said aloud) when no
/// server is configured and `XC_REQUIRE_SERVICES` is not set.
fn postgres_url(schema: &str) -> Option<String> {
    let base = match std::env::var("XC_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let required = std::env::var("XC_REQUIRE_SERVICES").is_ok_and(|value| {
                xcomponent_core::flag::parse(&value)
                    .unwrap_or_else(|error| panic!("XC_REQUIRE_SERVICES: {error}"))
            });
            assert!(!required, "XC_REQUIRE_SERVICES=1 but XC_TEST_POSTGRES_URL is not set");
            eprintln!("skipped: XC_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)");
            return None;
        }
    };
    let schema = format!("{schema}_{}", std::process::id());
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}schema={schema}"))
}

#[test]
fn killed_at_random_moments_postgres_keeps_exactly_one_payment_per_order() {
    let Some(url) = postgres_url("xc_crash_cross") else { return };
    run_kill_rounds(&["--store", &url], 0x2545_F491_4F6C_DD1D);
    let base = std::env::var("XC_TEST_POSTGRES_URL").expect("set when postgres_url is Some");
    let schema = url.rsplit("schema=").next().expect("schema in the url").to_owned();
    psql(&base, &schema, &format!("DROP SCHEMA {schema} CASCADE"));
}

/// `psql -c SQL` against the test database in `schema`.
fn psql(base: &str, schema: &str, sql: &str) {
    let url = base.split('?').next().unwrap_or(base);
    let status = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", &format!("SET search_path TO {schema}; {sql}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {sql}");
}

#[test]
fn a_payment_whose_insert_failed_before_a_kill_is_created_after_restart_postgres() {
    let Some(url) = postgres_url("xc_crash_outbox") else { return };
    let base = std::env::var("XC_TEST_POSTGRES_URL").expect("set when postgres_url is Some");
    let schema = url.rsplit("schema=").next().expect("schema in the url").to_owned();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    // A long expiry: the payment must be found Pending, not expired.
    write_components(dir, 3_600_000);
    let port = free_port();
    let mut server = start(dir, port, &["--store", &url]);
    psql(
        &base,
        &schema,
        "ALTER TABLE fsm_events ADD CONSTRAINT no_payments CHECK (component <> 'PaymentComponent') NOT VALID",
    );
    let order =
        process::create(port, "OrderComponent", "Order", json!({"orderId": "D1", "amount": 7}));
    let (status, body) = http(
        port,
        "POST",
        &format!("/api/instances/{order}/events"),
        Some(&json!({"type": "SUBMIT", "payload": {}})),
    )
    .expect("SUBMIT answered");
    assert!(status < 300, "SUBMIT acknowledged: {status} {body}");
    assert_eq!(body["newState"], "PendingPayment", "{body}");
    assert!(payments_by_order(port).is_empty(), "the payment's insert is refused");
    server.kill();
    psql(&base, &schema, "ALTER TABLE fsm_events DROP CONSTRAINT no_payments");
    let server = start(dir, port, &["--store", &url]);
    let payments = payments_by_order(port);
    let found = payments.get("D1").map_or(0, Vec::len);
    assert_eq!(found, 1, "the stored outbox creates exactly one payment after restart");
    assert_eq!(payments["D1"][0]["currentState"], "Pending");
    drop(server);
    psql(&base, &schema, &format!("DROP SCHEMA {schema} CASCADE"));
}
