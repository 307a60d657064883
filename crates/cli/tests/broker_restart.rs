//! Issue 8's broker fault: the broker restarted mid-flow. Three real processes, an order runtime,
//! a payment runtime (`xcomponent-ai runtime`, each on its own store) and a `dashboard`, on a
//! broker the test runs on a port of its own (Redis with an fsynced append-only file, NATS
//! JetStream with file storage, a second RabbitMQ node). `ORDERS` flows are driven through the
//! dashboard's REST API, one started every `PACE`: create the order, SUBMIT (its payment is created in
//! the other runtime), PROCESS, VALIDATE, COMPLETE the payment (which confirms the order), SHIP,
//! DELIVER. Once the first third of the orders were started, the broker is stopped cleanly
//! (SIGTERM, `rabbitmqctl stop`), left down for `OUTAGE`, and started again on the same port with
//! the same data; the second third is started while it is down, the last once it is back.
//!
//! A request the dashboard did not acknowledge (no answer, 503) is sent again: its outcome is
//! unknown. One it acknowledged (200, or 202: on the owner's queue) is never sent again: its
//! effect must show. An order whose creation was not acknowledged is dropped from the run (it may
//! still have been stored: it must then be untouched). At the end, read from the runtimes'
//! stores: every acknowledged order is `Delivered` with exactly one payment, `Completed`; no
//! history holds an event twice (each is exactly the flow's sequence); nothing was dead-lettered;
//! and the dashboard heard both runtimes' heartbeats since the broker came back.
//!
//! Runs once per broker whose binary is installed (skipped with a notice otherwise; a failure
//! under `XC_REQUIRE_SERVICES`), with SQLite stores, and once over Redis with PostgreSQL stores
//! (`XC_TEST_POSTGRES_URL`, a fresh schema per runtime).

#![allow(clippy::unwrap_used)]

mod process;

use process::broker::{Kind, OwnBroker};
use process::cluster::{
    Dir, dashboard_refreshing, event_types, find_payment, log_tails, runtime_process_on,
    service_url, state,
};
use process::{free_port, http, serve, stored_instances};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Orders attempted per run.
const ORDERS: usize = 60;
/// Orders are started in three waves of `WAVE`, one every `PACE` (each by a client of its own,
/// whatever the others do): the first before the broker is stopped (it is stopped when the last
/// of them starts), the second once its process has exited, the third once it listens again. So
/// the outage sees orders at every step of their flow, and new ones.
const WAVE: usize = ORDERS / 3;
/// The time between two orders of a wave.
const PACE: Duration = Duration::from_millis(75);
/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(2);
/// The longest one flow may take from its creation, the outage included (a RabbitMQ node takes
/// about 10 s to boot).
const FLOW_DEADLINE: Duration = Duration::from_secs(50);
/// The pause before a request that was not acknowledged is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How often a client looks at the dashboard's live view.
const POLL: Duration = Duration::from_millis(100);

/// How often the dashboard asks the runtimes for their live instances: its default (30 s), so
/// the view must recover from the restart by itself (events published while the broker was away
/// are lost), not by a refresh.
const DASHBOARD_REFRESH_MS: u64 = 30_000;
/// Every flow ends within this of the broker listening again (measured: 3 to 6 s).
const RECOVERED_WITHIN: Duration = Duration::from_secs(15);
/// How soon after the flows both runtimes must have heartbeaten (every 500 ms) since the restart.
const HEARTBEAT_RECOVERY: Duration = Duration::from_secs(10);

/// The stored events of a delivered order, in order.
const ORDER_EVENTS: [&str; 5] =
    ["INSTANCE_CREATED", "SUBMIT", "PAYMENT_CONFIRMED", "SHIP", "DELIVER"];
/// The stored events of a completed payment, in order.
const PAYMENT_EVENTS: [&str; 4] = ["INSTANCE_CREATED", "PROCESS", "VALIDATE", "COMPLETE"];

/// Where the runtimes store.
enum Stores {
    /// `sqlite://ROLE.db` in the test folder.
    Sqlite,
    /// `BASE?schema=SCHEMA_ROLE` (dropped at the end).
    Postgres { base: String, schema: String },
}

impl Stores {
    fn url(&self, role: &str) -> String {
        match self {
            Stores::Sqlite => format!("sqlite://{role}.db"),
            Stores::Postgres { base, schema } => {
                let separator = if base.contains('?') { '&' } else { '?' };
                format!("{base}{separator}schema={schema}_{role}")
            }
        }
    }

    /// Drops the schemas (PostgreSQL).
    fn clean(&self) {
        let Stores::Postgres { base, schema } = self else { return };
        let url = base.split('?').next().unwrap_or(base);
        let sql = format!(
            "DROP SCHEMA IF EXISTS {schema}_orders CASCADE; DROP SCHEMA IF EXISTS {schema}_payments CASCADE"
        );
        let status = std::process::Command::new("psql")
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .args([url, "-v", "ON_ERROR_STOP=1", "-qc", &sql])
            .status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("NOTICE: schemas {schema}_* not dropped ({status:?})");
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Requests not acknowledged (no answer or an error status), sent again; by status (0: no
    /// answer).
    unacknowledged: Mutex<HashMap<u16, usize>>,
    /// Requests answered 202 (on the owner's queue, outcome not known in time).
    accepted: AtomicUsize,
    /// Orders whose creation was not acknowledged (dropped from the run), by order id.
    refused: Mutex<Vec<String>>,
}

impl Tally {
    fn unacknowledged(&self, status: u16) {
        *self.unacknowledged.lock().unwrap().entry(status).or_default() += 1;
    }
}

/// One acknowledged flow, driven to its end.
struct Flow {
    order_id: String,
    order: String,
    /// When it was delivered.
    done_at: Instant,
}

/// The dashboard's port, the component names and the shared tally.
struct Client<'a> {
    port: u16,
    orders: &'a str,
    payments: &'a str,
    tally: &'a Tally,
}

impl Client<'_> {
    /// Creates order `index`; its instance id, or `None` when the creation was not acknowledged.
    fn create(&self, order_id: &str, index: usize) -> Option<String> {
        let context = json!({"orderId": order_id, "amount": 10 + index, "paymentMethod": "visa"});
        let body = json!({"machineName": "Order", "context": context});
        let path = format!("/api/components/{}/instances", self.orders);
        match http(self.port, "POST", &path, Some(&body)) {
            Some((status @ 200..=202, body)) => {
                if status == 202 {
                    self.tally.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Some(body["instanceId"].as_str().expect("instanceId in the answer").to_owned())
            }
            answer => {
                self.tally.unacknowledged(answer.as_ref().map_or(0, |(status, _)| *status));
                self.tally.refused.lock().unwrap().push(order_id.to_owned());
                None
            }
        }
    }

    /// Waits until the dashboard shows `id` in one of `states` (`None`: no longer live).
    fn wait(&self, id: &str, states: &[Option<&str>], deadline: Instant) -> Result<(), String> {
        loop {
            let seen = state(self.port, id);
            if states.contains(&seen.as_deref()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{id} not in {states:?} in time (last seen {seen:?})"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `event` until the dashboard acknowledges it, then waits until its effect shows
    /// (`id` in one of `reached`).
    fn step(
        &self,
        component: &str,
        id: &str,
        event: &str,
        reached: &[Option<&str>],
        deadline: Instant,
    ) -> Result<(), String> {
        let path = format!("/api/components/{component}/instances/{id}/events");
        loop {
            let seen = state(self.port, id);
            if reached.contains(&seen.as_deref()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{event} to {id} never acknowledged (last seen {seen:?})"));
            }
            match http(self.port, "POST", &path, Some(&json!({"type": event}))) {
                Some((status @ (200 | 202), _)) => {
                    if status == 202 {
                        self.tally.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    return self
                        .wait(id, reached, deadline)
                        .map_err(|error| format!("{event} acknowledged ({status}), then {error}"));
                }
                answer => {
                    let status = answer.as_ref().map_or(0, |(status, _)| *status);
                    self.tally.unacknowledged(status);
                    if !matches!(status, 0 | 503) {
                        eprintln!("{event} to {id} ({component}): {answer:?}");
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    /// One order from creation to delivery; `Ok(None)` when its creation was not acknowledged.
    fn flow(&self, index: usize) -> Result<Option<Flow>, String> {
        let order_id = format!("R-{index}");
        let Some(order) = self.create(&order_id, index) else { return Ok(None) };
        let deadline = Instant::now() + FLOW_DEADLINE;
        let within =
            |result: Result<(), String>| result.map_err(|error| format!("{order_id}: {error}"));
        // A 202 creation may not be in the view yet: SUBMIT is sent once it is.
        within(self.wait(
            &order,
            &[Some("Created"), Some("PendingPayment"), Some("Paid")],
            deadline,
        ))?;
        within(self.step(
            self.orders,
            &order,
            "SUBMIT",
            &[Some("PendingPayment"), Some("Paid")],
            deadline,
        ))?;
        let payment = find_payment(self.port, self.payments, &order_id, deadline)
            .ok_or_else(|| format!("{order_id}: no payment seen in time"))?;
        within(self.step(
            self.payments,
            &payment,
            "PROCESS",
            &[Some("Processing"), Some("Validated")],
            deadline,
        ))?;
        within(self.step(self.payments, &payment, "VALIDATE", &[Some("Validated")], deadline))?;
        // Completed is final: the payment leaves the live view (the dashboard may still show
        // its stored record, read from the payment runtime's store over the bus).
        within(self.step(
            self.payments,
            &payment,
            "COMPLETE",
            &[None, Some("Completed")],
            deadline,
        ))?;
        within(self.wait(&order, &[Some("Paid")], deadline))?;
        within(self.step(self.orders, &order, "SHIP", &[Some("Shipped")], deadline))?;
        within(self.step(self.orders, &order, "DELIVER", &[None, Some("Delivered")], deadline))?;
        Ok(Some(Flow { order_id, order, done_at: Instant::now() }))
    }
}

/// The stored instances of `component` in `store`, each with its stored events, read by a
/// `serve` without a broker on that store.
fn read_store(
    dir: &std::path::Path,
    file: &str,
    store: &str,
    component: &str,
) -> Vec<(Value, Vec<String>)> {
    let port = free_port();
    let _reader = serve(dir, port, &[file, "--store", store]);
    let (status, letters) = http(port, "GET", "/api/dead-letters?limit=100", None).unwrap();
    assert_eq!(status, 200, "{letters}");
    let letters = letters.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    assert!(letters.is_empty(), "{component}: dead letters: {letters:#?}");
    stored_instances(port, component)
        .into_iter()
        .map(|instance| {
            let id =
                instance["instanceId"].as_str().or(instance["id"].as_str()).unwrap().to_owned();
            let events = event_types(port, &id);
            (instance, events)
        })
        .collect()
}

fn epoch_ms() -> i64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_millis()).unwrap()
}

/// The wave of order `index` (0: before the stop, 1: broker down, 2: after) and its rank in it.
fn wave(index: usize) -> (usize, usize) {
    ((index / WAVE).min(2), index - (index / WAVE).min(2) * WAVE)
}

fn state_of(instance: &Value) -> &str {
    instance["state"].as_str().or(instance["currentState"].as_str()).unwrap_or_default()
}

fn restart_mid_flow(kind: Kind, stores: &Stores) {
    let Some(mut broker) = OwnBroker::start(kind) else { return };
    let started_at = Instant::now();
    let url = broker.url();
    let (dir, suffix) = Dir::new("broker-restart");
    let order_component = format!("OrderComponent{suffix}");
    let payment_component = format!("PaymentComponent{suffix}");
    let (order_store, payment_store) = (stores.url("orders"), stores.url("payments"));
    let mut orders = runtime_process_on(dir.path(), &url, "order.yaml", "orders", &order_store);
    let mut payments =
        runtime_process_on(dir.path(), &url, "payment.yaml", "payments", &payment_store);
    let port = free_port();
    let mut dashboard = dashboard_refreshing(
        dir.path(),
        &url,
        port,
        &[&order_component, &payment_component],
        DASHBOARD_REFRESH_MS,
    );
    let ready = started_at.elapsed();

    let tally = Tally::default();
    let client =
        Client { port, orders: &order_component, payments: &payment_component, tally: &tally };
    // Three waves of orders, one started every `PACE`: before the stop, while the broker is
    // down (after its process exited), after it is back.
    let flows_started = Instant::now();
    let phases = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let back_wall = OnceLock::new();
    phases[0].set(flows_started).unwrap();
    let (results, restart) = std::thread::scope(|scope| {
        let flows: Vec<_> = (0..ORDERS)
            .map(|index| {
                let (client, phases) = (&client, &phases);
                let (phase, rank) = wave(index);
                scope.spawn(move || {
                    let begun = loop {
                        if let Some(begun) = phases[phase].get() {
                            break *begun;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    };
                    let start_at = begun + PACE * u32::try_from(rank).unwrap();
                    std::thread::sleep(start_at.saturating_duration_since(Instant::now()));
                    client.flow(index)
                })
            })
            .collect();
        std::thread::sleep(PACE * u32::try_from(WAVE).unwrap());
        let stopping = flows_started.elapsed();
        broker.stop();
        let stopped = flows_started.elapsed();
        phases[1].set(Instant::now()).unwrap();
        std::thread::sleep(OUTAGE);
        broker.start_again();
        let back = flows_started.elapsed();
        back_wall.set(epoch_ms()).unwrap();
        phases[2].set(Instant::now()).unwrap();
        let results: Vec<_> = flows.into_iter().map(|flow| flow.join().unwrap()).collect();
        (results, (stopping, stopped, back))
    });
    let flows_took = flows_started.elapsed();
    let failures: Vec<&String> =
        results.iter().filter_map(|result| result.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{kind:?}: {} flows did not complete: {failures:#?}\n{}",
        failures.len(),
        log_tails(dir.path())
    );
    let flows: Vec<Flow> = results.into_iter().filter_map(|result| result.unwrap()).collect();
    // Within a bound of the broker's return, not at the dashboard's next refresh (30 s).
    let recovered = flows_took.saturating_sub(restart.2);
    assert!(
        recovered < RECOVERED_WITHIN,
        "{kind:?}: the last flow ended {recovered:?} after the broker was back\n{}",
        log_tails(dir.path())
    );

    // Both runtimes heartbeat again: the dashboard has heard from each since the broker is back.
    let back_ms = *back_wall.get().unwrap();
    let heard = Instant::now() + HEARTBEAT_RECOVERY;
    loop {
        let (status, body) = http(port, "GET", "/api/runtimes", None).unwrap();
        assert_eq!(status, 200, "{body}");
        let fresh: Vec<&str> = body["runtimes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|runtime| runtime["lastSeen"].as_i64().unwrap_or(0) > back_ms)
            .filter_map(|runtime| runtime["name"].as_str())
            .collect();
        if fresh.contains(&"orders") && fresh.contains(&"payments") {
            break;
        }
        assert!(
            Instant::now() < heard,
            "{kind:?}: runtimes not heard from since the restart: {body}"
        );
        std::thread::sleep(POLL);
    }

    // The stores, read once the runtimes are gone.
    dashboard.kill();
    orders.kill();
    payments.kill();
    let stored_orders = read_store(dir.path(), "order.yaml", &order_store, &order_component);
    let stored_payments =
        read_store(dir.path(), "payment.yaml", &payment_store, &payment_component);
    let order_id =
        |instance: &Value| instance["context"]["orderId"].as_str().unwrap_or_default().to_owned();
    let mut orders_by_id: HashMap<String, Vec<&(Value, Vec<String>)>> = HashMap::new();
    for stored in &stored_orders {
        orders_by_id.entry(order_id(&stored.0)).or_default().push(stored);
    }
    let mut payments_by_order: HashMap<String, Vec<&(Value, Vec<String>)>> = HashMap::new();
    for stored in &stored_payments {
        payments_by_order.entry(order_id(&stored.0)).or_default().push(stored);
    }
    for flow in &flows {
        let found = orders_by_id.get(&flow.order_id).map_or(&[][..], Vec::as_slice);
        assert_eq!(found.len(), 1, "{}: {} orders stored", flow.order_id, found.len());
        let (order, events) = found[0];
        assert_eq!(
            order["instanceId"].as_str().or(order["id"].as_str()),
            Some(flow.order.as_str())
        );
        assert_eq!(state_of(order), "Delivered", "{}: {order}", flow.order_id);
        assert_eq!(events, &ORDER_EVENTS, "{}: the order's history", flow.order_id);
        let paid = payments_by_order.get(&flow.order_id).map_or(&[][..], Vec::as_slice);
        assert_eq!(paid.len(), 1, "{}: {} payments", flow.order_id, paid.len());
        let (payment, events) = paid[0];
        assert_eq!(state_of(payment), "Completed", "{}: {payment}", flow.order_id);
        assert_eq!(events, &PAYMENT_EVENTS, "{}: the payment's history", flow.order_id);
    }
    // An order whose creation was not acknowledged may have been stored anyway (its command was
    // on the queue when the answer failed): then it was never submitted, and has no payment.
    let refused = tally.refused.lock().unwrap().clone();
    let mut stored_anyway = 0;
    for order_id in &refused {
        if let Some(found) = orders_by_id.get(order_id) {
            stored_anyway += found.len();
            for (order, events) in found {
                assert_eq!(state_of(order), "Created", "{order_id} (not acknowledged): {order}");
                assert_eq!(events, &["INSTANCE_CREATED"], "{order_id} (not acknowledged)");
            }
        }
        assert!(
            !payments_by_order.contains_key(order_id),
            "{order_id} (not acknowledged) has a payment"
        );
    }
    assert_eq!(
        flows.len() + refused.len(),
        ORDERS,
        "every order was either acknowledged or refused"
    );
    assert_eq!(stored_payments.len(), flows.len(), "one payment per acknowledged order, no other");
    assert_eq!(stored_orders.len(), flows.len() + stored_anyway);

    let (stopping, stopped, back) = restart;
    let at = |flow: &Flow| flow.done_at.duration_since(flows_started);
    let during = flows.iter().filter(|flow| (stopping..back).contains(&at(flow))).count();
    let after = flows.iter().filter(|flow| at(flow) >= back).count();
    let unacknowledged = tally.unacknowledged.lock().unwrap().clone();
    eprintln!(
        "{kind:?} restarted mid-flow ({} stores): {ORDERS} orders, {} acknowledged and delivered \
         with one payment each, {} creations not acknowledged ({stored_anyway} of them stored \
         anyway, untouched); requests answered 202: {}, not acknowledged and sent again (by \
         status, 0 = no answer): {unacknowledged:?}. Processes ready in {:.1}s; broker stopped at \
         {:.1}s (stop took {:.1}s), started again at {:.1}s (down {:.1}s); flows delivered while \
         it stopped or was down: {during}, after: {after}; every flow done at {:.1}s; whole test \
         {:.1}s",
        match stores {
            Stores::Sqlite => "SQLite",
            Stores::Postgres { .. } => "PostgreSQL",
        },
        flows.len(),
        refused.len(),
        tally.accepted.load(Ordering::Relaxed),
        ready.as_secs_f64(),
        stopping.as_secs_f64(),
        (stopped - stopping).as_secs_f64(),
        back.as_secs_f64(),
        (back - stopping).as_secs_f64(),
        flows_took.as_secs_f64(),
        started_at.elapsed().as_secs_f64(),
    );
}

#[test]
fn redis_restarted_mid_flow() {
    restart_mid_flow(Kind::Redis, &Stores::Sqlite);
}

#[test]
fn nats_restarted_mid_flow() {
    restart_mid_flow(Kind::Nats, &Stores::Sqlite);
}

#[test]
fn rabbitmq_restarted_mid_flow() {
    restart_mid_flow(Kind::RabbitMq, &Stores::Sqlite);
}

#[test]
fn redis_restarted_mid_flow_postgres_stores() {
    let Some(base) = service_url("XC_TEST_POSTGRES_URL") else { return };
    let stores =
        Stores::Postgres { base, schema: format!("xc_broker_restart_{}", std::process::id()) };
    restart_mid_flow(Kind::Redis, &stores);
    stores.clean();
}
