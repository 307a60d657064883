//! One component run by two replicas (`runtime --replicas`) on a shared store, with an order
//! runtime and a dashboard, over each broker: 200 flows driven through the dashboard while one
//! payment replica is SIGKILLed five times at random moments and restarted, the other is
//! SIGSTOPped past its lease and resumed (its renewals and commits are refused, or its own clock
//! says the lease ran out: it learns it lost its partitions), and finally one replica is killed
//! for good (the survivor takes every partition over; the time it took is printed). Then every
//! order is Paid, every order has exactly one payment and one confirmation, and every instance's
//! events are numbered 1..n without a gap or a repeat. On PostgreSQL with each broker whose test
//! URL is set, and on Redis alone (store and broker).

#![allow(clippy::unwrap_used)]

mod process;

use process::cluster::{CROSSING, dashboard_with, send, service_url};
use process::{BIN, Rng, Server, create, free_port, history, http, stored_instances};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLOWS: usize = 200;
const LEASE_TTL_MS: u64 = 2_000;
/// Partitions of the payments: fewer than the default 16 keep the queues each run leaves on the
/// shared brokers (a quorum queue, a JetStream stream per partition) few.
const PARTITIONS: usize = 4;
const HALF: usize = PARTITIONS / 2;
/// What a runtime logs when it drops a partition it no longer owns (partition/keeper.rs and
/// shard/evict.rs).
const LOST_PARTITION_MESSAGES: [&str; 3] =
    ["lease lost to another runtime", "lease not renewed within its ttl", "Commit fenced"];

/// The components of the in-process replicas test, renamed per run.
const ORDERS: &str = include_str!("../../runtime/tests/it/fixtures/orders.yaml");

const PAYMENTS: &str = include_str!("../../runtime/tests/it/fixtures/payments.yaml");

/// A folder for one run: the two components renamed with a unique suffix, and the logs.
struct Run {
    dir: PathBuf,
    suffix: String,
}

impl Run {
    fn new() -> Run {
        let suffix = format!("R{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(format!("xc-replicas-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let rename = |yaml: &str| {
            yaml.replace("Orders", &format!("Orders{suffix}"))
                .replace("Payments", &format!("Payments{suffix}"))
        };
        std::fs::write(dir.join("orders.yaml"), rename(ORDERS)).unwrap();
        std::fs::write(dir.join("payments.yaml"), rename(PAYMENTS)).unwrap();
        Run { dir, suffix }
    }

    fn orders(&self) -> String {
        format!("Orders{}", self.suffix)
    }

    fn payments(&self) -> String {
        format!("Payments{}", self.suffix)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("XC_KEEP_TEST_DIRS").is_some() {
            eprintln!("test folder kept (processes' logs): {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `xcomponent-ai runtime FILE --store STORE --broker BROKER --name NAME [--replicas]`, its log
/// appended to `NAME.log`.
fn runtime(run: &Run, file: &str, name: &str, store: &str, broker: &str, replicas: bool) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.dir.join(format!("{name}.log")))
        .unwrap();
    let mut command = Command::new(BIN);
    command.args(["runtime", file, "--broker", broker, "--name", name, "--store", store]).args([
        "--heartbeat-ms",
        "500",
        "--redelivery-ms",
        "6000",
        "--resend-ms",
        "3000",
    ]);
    if replicas {
        command.args(["--replicas", "--lease-ttl-ms", &LEASE_TTL_MS.to_string()]);
        command.args(["--partitions", &PARTITIONS.to_string()]);
    }
    let child = command
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .current_dir(&run.dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Server::from_child(child)
}

fn signal(server: &Server, name: &str) {
    let status =
        Command::new("kill").args([&format!("-{name}"), &server.pid().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
}

/// Partitions of `component` each runtime owns, as the dashboard's runtimes panel lists them.
fn owned(port: u16, component: &str) -> BTreeMap<String, usize> {
    let Some((200, body)) = http(port, "GET", "/api/runtimes", None) else {
        return BTreeMap::new();
    };
    body["runtimes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|runtime| {
            let owned = runtime["partitions"][component]["owned"].as_array()?;
            Some((runtime["name"].as_str()?.to_owned(), owned.len()))
        })
        .collect()
}

fn wait_owned(port: u16, component: &str, wanted: &[(&str, usize)], what: &str) -> Duration {
    let started = Instant::now();
    let wanted: BTreeMap<String, usize> =
        wanted.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect();
    loop {
        let seen = owned(port, component);
        if wanted.iter().all(|(name, count)| seen.get(name) == Some(count)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < CROSSING,
            "{what}: the partitions are {seen:?}, not {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Events numbered 1..n without a gap or a repeat.
fn assert_contiguous(id: &str, events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|event| event["seq"].as_u64().unwrap_or(0)).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "{id}: sequence numbers");
}

/// One variant at a time: each runs five processes and 200 flows, which is what this machine's
/// two cores can take without timing out requests. `XC_REPLICAS_TOGETHER=1` runs them all at
/// once, to load the machine on purpose (the overload under which flows were once left
/// unfinished: see the README).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn replicas_survive_kills_and_pauses(store: &str, broker: &str, seed: u64) {
    let together = std::env::var("XC_REPLICAS_TOGETHER")
        .ok()
        .and_then(|value| xcomponent_core::flag::parse(&value).ok())
        .unwrap_or(false);
    let _alone = (!together)
        .then(|| ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let run = Run::new();
    let (orders, payments) = (run.orders(), run.payments());
    let _orders = runtime(&run, "orders.yaml", "orders", store, broker, false);
    let a = runtime(&run, "payments.yaml", "payments-a", store, broker, true);
    let mut b = runtime(&run, "payments.yaml", "payments-b", store, broker, true);
    let port = free_port();
    // With the shared store: history and searches are read from it.
    let _dashboard =
        dashboard_with(&run.dir, broker, port, &[&orders, &payments], 1000, &["--store", store]);
    wait_owned(port, &payments, &[("payments-a", HALF), ("payments-b", HALF)], "both replicas up");

    let client = {
        let orders = orders.clone();
        std::thread::spawn(move || {
            let workers: Vec<_> = (0..4)
                .map(|worker| {
                    let orders = orders.clone();
                    std::thread::spawn(move || {
                        let mut acknowledged = Vec::new();
                        for index in (worker..FLOWS).step_by(4) {
                            let reference = format!("P-{index:04}");
                            let id = create(port, &orders, "Order", json!({"orderRef": reference}));
                            // 202: the dashboard enqueued it for the order runtime, whose
                            // answer came later than its reply timeout.
                            if matches!(send(port, &orders, &id, "SUBMIT"), 200 | 202) {
                                acknowledged.push(id);
                            }
                        }
                        acknowledged
                    })
                })
                .collect();
            workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect::<Vec<_>>()
        })
    };
    let mut rng = Rng(seed);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200 + rng.next() % 500));
        b.kill();
        b = runtime(&run, "payments.yaml", "payments-b", store, broker, true);
    }
    // payments-a paused past its lease: payments-b takes everything over; resumed, payments-a
    // finds its leases taken (its renewals and any commit with the old epochs are refused).
    signal(&a, "STOP");
    wait_owned(port, &payments, &[("payments-b", PARTITIONS)], "takeover of a paused replica");
    signal(&a, "CONT");
    wait_owned(
        port,
        &payments,
        &[("payments-a", HALF), ("payments-b", HALF)],
        "the paused one rejoins",
    );
    // It learns it in one of three ways, depending on where the pause caught it: its renewal is
    // refused, a commit with the old epoch is refused, or (paused between a renewal and the
    // round's end) its own clock tells it the lease ran out before the store is asked again.
    let log = run.log("payments-a");
    assert!(
        LOST_PARTITION_MESSAGES.iter().any(|message| log.contains(message)),
        "payments-a did not learn it lost its partitions; its log:\n{log}"
    );
    let acknowledged = client.join().unwrap();
    assert_eq!(acknowledged.len(), FLOWS, "every SUBMIT was acknowledged");
    // One replica gone for good: the other owns everything after the lease ttl.
    b.kill();
    let failover =
        wait_owned(port, &payments, &[("payments-a", PARTITIONS)], "failover after SIGKILL");
    eprintln!(
        "[{broker} / {store}] failover after SIGKILL: {failover:?} (lease ttl {LEASE_TTL_MS} ms)"
    );

    let started = Instant::now();
    loop {
        let stored = stored_instances(port, &orders);
        let paid = stored.iter().filter(|o| o["currentState"] == "Paid").count();
        if stored.len() == FLOWS && paid == FLOWS {
            break;
        }
        assert!(
            started.elapsed() < CROSSING,
            "seed {seed}: {paid} of {} orders paid",
            stored.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for id in &acknowledged {
        let events = history(port, id);
        assert_contiguous(id, &events);
        let confirmations =
            events.iter().filter(|event| event["eventType"] == "PAYMENT_CONFIRMED").count();
        assert_eq!(confirmations, 1, "order {id} confirmed {confirmations} times");
    }
    let paid_for: Vec<Value> = stored_instances(port, &payments);
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for payment in &paid_for {
        assert_eq!(payment["currentState"], "Confirmed", "{payment}");
        let reference = payment["context"]["orderRef"].as_str().unwrap_or_default().to_owned();
        *per_order.entry(reference).or_default() += 1;
        let id = payment["instanceId"].as_str().or(payment["id"].as_str()).unwrap();
        assert_contiguous(id, &history(port, id));
    }
    let doubled: Vec<_> = per_order.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "seed {seed}: orders paid twice: {doubled:?}");
    assert_eq!(per_order.len(), FLOWS, "seed {seed}: one payment per order");
}

fn postgres_schema_url(base: &str, suffix: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}schema=xc_{}", suffix.to_lowercase())
}

fn on_postgres(broker_variable: &str, seed: u64) {
    let (Some(postgres), Some(broker)) =
        (service_url("XC_TEST_POSTGRES_URL"), service_url(broker_variable))
    else {
        return;
    };
    let store = postgres_schema_url(&postgres, &format!("rep{}", uuid::Uuid::now_v7().simple()));
    replicas_survive_kills_and_pauses(&store, &broker, seed);
}

#[test]
fn postgres_over_redis() {
    on_postgres("XC_TEST_REDIS_URL", 0x5eed_0101);
}

#[test]
fn postgres_over_rabbitmq() {
    on_postgres("XC_TEST_AMQP_URL", 0x5eed_0102);
}

#[test]
fn postgres_over_kafka() {
    on_postgres("XC_TEST_KAFKA_URL", 0x5eed_0103);
}

#[test]
fn postgres_over_nats() {
    on_postgres("XC_TEST_NATS_URL", 0x5eed_0104);
}

#[test]
fn redis_only() {
    let Some(redis) = service_url("XC_TEST_REDIS_URL") else { return };
    replicas_survive_kills_and_pauses(&redis, &redis, 0x5eed_0105);
}
