//! `bench bus`: the cross-component round trip between two runtimes joined by a broker.
//!
//! Two runtimes run in this process, each with its own store and its own bus connection, so
//! every message goes through the broker: one hosts `BenchOrders`, the other `BenchPayments`.
//! A flow is an Order's SUBMIT (a cross_component creation of a Payment in the other runtime),
//! the Payment's auto transition to its final state `Confirmed`, whose cascading rule sends
//! PAYMENT_CONFIRMED back to the order by a matching rule on `orderRef`, and the order's move to
//! its final state `Paid`.
//!
//! A flow's latency runs from the moment SUBMIT is accepted (`send_event` answered: the
//! transition and its outgoing message are stored) to the moment a subscriber of the order
//! runtime's event stream sees the order `Paid` (no polling). With C flows in flight, C tasks each
//! submit an order and wait for its end, then take the next; flows/s is the measured flows over
//! the wall time. Orders are created before the clock starts.

use super::BusArgs;
use super::memory::{Row, print_rows, tokio_runtime};
use crate::commands::broker;
use anyhow::{Context as _, anyhow};
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};
use xcomponent_bus::BusOptions;
use xcomponent_core::bus::Bus;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{Context, InstanceId, Status};
use xcomponent_core::model::Component;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{
    BusConfig, LeaseConfig, Runtime, RuntimeBuilder, RuntimeEvent, RuntimeHandle, RuntimeOptions,
    SendOutcome,
};
use xcomponent_store::StoreOptions;

/// The ordering side: SUBMIT creates a Payment in the other component; the reply is matched back
/// by `orderRef`.
const ORDERS: &str = r#"
name: BenchOrders
stateMachines:
  - name: Order
    initialState: Created
    states: [{name: Created}, {name: AwaitingPayment}, {name: Paid, type: final}]
    transitions:
      - from: Created
        to: AwaitingPayment
        event: SUBMIT
        type: cross_component
        targetComponent: BenchPayments
        targetMachine: Payment
        contextMapping: {orderRef: orderRef}
      - from: AwaitingPayment
        to: Paid
        event: PAYMENT_CONFIRMED
        matchingRules: [{eventProperty: orderRef, instanceProperty: orderRef}]
"#;

/// The paying side: created `Pending`, confirmed at once by an auto transition (fired in the
/// batch that stored the creation), whose final state replies to the order.
const PAYMENTS: &str = r#"
name: BenchPayments
stateMachines:
  - name: Payment
    initialState: Pending
    states:
      - {name: Pending}
      - name: Confirmed
        type: final
        cascadingRules:
          - targetComponent: BenchOrders
            targetMachine: Order
            targetState: AwaitingPayment
            event: PAYMENT_CONFIRMED
            matchingRules: [{eventProperty: orderRef, instanceProperty: orderRef}]
            payload: {orderRef: "{{orderRef}}"}
    transitions:
      - {from: Pending, to: Confirmed, event: CONFIRM, type: auto}
"#;

/// Flows run one at a time before measuring: consumer groups joined, connections warm.
const WARMUP_FLOWS: usize = 50;
/// How long the first warm-up flow may take (a Kafka group join can take seconds).
const WARMUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a measured flow may take before the bench gives up.
const FLOW_TIMEOUT: Duration = Duration::from_secs(30);
/// Orders per `create_many` call while preparing a level.
const CREATE_CHUNK: usize = 10_000;

fn compile(yaml: &str) -> anyhow::Result<Definition> {
    let component: Component = serde_saphyr::from_str(yaml).context("bench component")?;
    Definition::compile(component)
        .map_err(|errors| anyhow!("bench component does not compile: {errors:?}"))
}

/// Opens the store of one runtime: its own schema (PostgreSQL), key prefix (Redis) or file
/// (SQLite, `PATH.<role>`), so the two runtimes share no table or key.
async fn open_store(url: &str, role: &str) -> anyhow::Result<Arc<dyn EventStore>> {
    let options = StoreOptions {
        schema: format!("xcbench_{role}"),
        key_prefix: format!("xcbench-{role}"),
        ..StoreOptions::default()
    };
    let url = match url.strip_prefix("sqlite://") {
        Some(path) => format!("sqlite://{path}.{role}"),
        None => own_schema(url, role),
    };
    xcomponent_store::open(&url, &options).await.with_context(|| format!("opening store {url}"))
}

/// A `schema=NAME` parameter in a PostgreSQL URL wins over `StoreOptions::schema`: it becomes
/// `NAME_<role>`, so the runtimes still get one schema each.
fn own_schema(url: &str, role: &str) -> String {
    let found =
        ["?schema=", "&schema="].iter().find_map(|key| url.find(key).map(|at| at + key.len()));
    let Some(start) = found else { return url.to_owned() };
    let end = url[start..].find('&').map_or(url.len(), |offset| start + offset);
    format!("{}{}_{role}{}", &url[..start], &url[start..end], &url[end..])
}

async fn start(
    yaml: &str,
    store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    name: &str,
    replica: bool,
) -> anyhow::Result<Runtime> {
    let mut builder = RuntimeBuilder::new()
        .component(compile(yaml)?)
        .store(store)
        .options(RuntimeOptions::default())
        .bus(bus, BusConfig::new(name));
    if replica {
        // Short leases: replicas started together share the partitions within seconds.
        let lease = LeaseConfig { ttl: Duration::from_secs(2), ..LeaseConfig::new(name) };
        builder = builder.replicas(lease);
    }
    let runtime = builder.start().await.with_context(|| format!("starting the {name} runtime"))?;
    Ok(runtime)
}

/// Flows waiting for their order to end, by order id: each is told when the stream showed it.
type Watch = Arc<Mutex<HashMap<InstanceId, oneshot::Sender<Instant>>>>;

/// Follows the order runtime's event stream and tells each watched flow when its order ended.
/// Returns the counter of stream batches missed (lagged).
fn follow(handle: &RuntimeHandle, watch: Watch) -> Arc<AtomicU64> {
    let missed = Arc::new(AtomicU64::new(0));
    let counter = missed.clone();
    let mut receiver = handle.subscribe();
    tokio::spawn(async move {
        loop {
            let batch = match receiver.recv().await {
                Ok(batch) => batch,
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    counter.fetch_add(count, Ordering::Relaxed);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let now = Instant::now();
            let Ok(mut watched) = watch.lock() else { break };
            for event in batch.iter() {
                if let RuntimeEvent::StateChanged { instance, status, .. } = event
                    && *status != Status::Active
                    && let Some(done) = watched.remove(instance)
                {
                    let _ = done.send(now);
                }
            }
        }
    });
    missed
}

/// Submits one order and waits (at most `limit`) for it to end; returns the time from SUBMIT
/// accepted to the order seen ended.
async fn flow(
    handle: &RuntimeHandle,
    watch: &Watch,
    order: InstanceId,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let (done, ended) = oneshot::channel();
    watch.lock().map_err(|_| anyhow!("flow watch poisoned"))?.insert(order, done);
    let outcome = handle.send_event(order, "SUBMIT", Context::new()).await?;
    let accepted = Instant::now();
    if !matches!(outcome, SendOutcome::Transitioned { .. }) {
        return Err(anyhow!("SUBMIT was not taken: {outcome:?}"));
    }
    match tokio::time::timeout(limit, ended).await {
        Ok(Ok(ended)) => Ok(ended.saturating_duration_since(accepted)),
        Ok(Err(_)) => Err(anyhow!("the event stream stopped")),
        Err(_) => Err(anyhow!("order {order} did not reach Paid within {limit:?}")),
    }
}

/// Creates `count` orders, each with its own `orderRef`.
async fn create_orders(
    handle: &RuntimeHandle,
    run: &str,
    label: &str,
    count: usize,
) -> anyhow::Result<Vec<InstanceId>> {
    let mut orders = Vec::with_capacity(count);
    while orders.len() < count {
        let chunk = CREATE_CHUNK.min(count - orders.len());
        let contexts: Vec<Context> = (orders.len()..orders.len() + chunk)
            .map(|index| {
                let mut context = Context::new();
                context.insert("orderRef".into(), json!(format!("{run}-{label}-{index}")));
                context
            })
            .collect();
        orders.extend(handle.create_many("BenchOrders", "Order", contexts).await?);
    }
    Ok(orders)
}

/// One concurrency level's results.
struct Level {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Runs `orders` as flows, `concurrency` at a time.
async fn measure(
    handle: &RuntimeHandle,
    watch: &Watch,
    orders: Arc<Vec<InstanceId>>,
    concurrency: usize,
) -> anyhow::Result<Level> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (handle, watch, orders, next) =
            (handle.clone(), watch.clone(), orders.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(order) = orders.get(index) else { break };
                latencies.push(flow(&handle, &watch, *order, FLOW_TIMEOUT).await?);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(orders.len());
    for worker in workers {
        latencies.extend(worker.await.context("flow task")??);
    }
    Ok(Level { latencies, elapsed: started.elapsed() })
}

/// The value at quantile `q` (0..=1) of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn run(args: &BusArgs) -> anyhow::Result<ExitCode> {
    if args.flows == 0 || args.concurrency.contains(&0) {
        return Err(anyhow!("--flows and every --concurrency level must be at least 1"));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runtime = tokio_runtime(cores.max(2))?;
    let rows = runtime.block_on(bench(args, cores))?;
    print_rows(&rows, args.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: &BusArgs, cores: usize) -> anyhow::Result<Vec<Row>> {
    let broker_name = broker::redacted(&args.broker);
    // One in-process bus must be shared to join the runtimes; a broker gets two connections.
    let mut options = BusOptions::default();
    if let Some(wait) = args.kafka_fetch_wait_ms {
        options.kafka_fetch_wait = Duration::from_millis(wait);
    }
    let open = async || {
        xcomponent_bus::open(&args.broker, &options)
            .await
            .with_context(|| format!("cannot reach the broker {broker_name}"))
    };
    let orders_bus = open().await?;
    let payments_bus =
        if broker::is_memory(&args.broker)? { orders_bus.clone() } else { open().await? };
    let payments_store = open_store(&args.store, "payments").await?;
    // Replicas share their store with the orders, as in a deployment of replicas: the orders
    // learn from it how the payments are partitioned and send to each partition's queue.
    let orders_store = if args.payment_replicas > 0 {
        payments_store.clone()
    } else {
        open_store(&args.store, "orders").await?
    };
    let mut payments = Vec::new();
    if args.payment_replicas == 0 {
        payments
            .push(start(PAYMENTS, payments_store, payments_bus, "bench-payments", false).await?);
    } else {
        for replica in 0..args.payment_replicas {
            let bus = if replica == 0 || broker::is_memory(&args.broker)? {
                payments_bus.clone()
            } else {
                open().await?
            };
            let name = format!("bench-payments-{replica}");
            payments.push(start(PAYMENTS, payments_store.clone(), bus, &name, true).await?);
        }
        shared_fairly(&payments).await?;
    }
    let orders = start(ORDERS, orders_store, orders_bus, "bench-orders", false).await?;
    let handle = orders.handle();
    let watch: Watch = Arc::default();
    let missed = follow(&handle, watch.clone());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default()
        .to_string();

    let warmup = create_orders(&handle, &run, "warmup", WARMUP_FLOWS).await?;
    for order in warmup {
        flow(&handle, &watch, order, WARMUP_TIMEOUT).await.context("warm-up flow")?;
    }

    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        let label = format!("c{concurrency}");
        let prepared = Arc::new(create_orders(&handle, &run, &label, args.flows).await?);
        let mut level = measure(&handle, &watch, prepared, concurrency).await?;
        level.latencies.sort_unstable();
        let fetch_wait = match args.kafka_fetch_wait_ms {
            Some(wait) => format!(", kafka fetch wait {wait} ms"),
            None => String::new(),
        };
        let replicas = match args.payment_replicas {
            0 => String::new(),
            n => format!(", {n} payment replicas"),
        };
        let setup = format!(
            "C={concurrency}, {} flows, broker {broker_name}{fetch_wait}, store {}{replicas}, {cores} cores",
            level.latencies.len(),
            args.store
        );
        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        rows.push(Row {
            name: "round trip p50",
            value: ms(quantile(&level.latencies, 0.50)),
            unit: "ms",
            note: setup.clone(),
        });
        rows.push(Row {
            name: "round trip p99",
            value: ms(quantile(&level.latencies, 0.99)),
            unit: "ms",
            note: setup.clone(),
        });
        rows.push(Row {
            name: "flows",
            value: level.latencies.len() as f64 / level.elapsed.as_secs_f64(),
            unit: "flows/s",
            note: setup,
        });
    }
    let lagged = missed.load(Ordering::Relaxed);
    if lagged > 0 {
        tracing::warn!(lagged, "The bench's stream subscriber missed batches.");
    }
    orders.shutdown().await;
    for runtime in payments {
        runtime.shutdown().await;
    }
    Ok(rows)
}

/// Waits until the payment replicas hold a fair share of the partitions each.
async fn shared_fairly(replicas: &[Runtime]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let owned: Vec<(usize, u32)> = replicas
            .iter()
            .filter_map(|runtime| {
                let ownership = runtime.handle().ownership()?;
                let payments = ownership.get("BenchPayments")?;
                Some((payments.owned.len(), payments.partitions))
            })
            .collect();
        let total: usize = owned.iter().map(|(count, _)| count).sum();
        let partitions = owned.first().map_or(0, |(_, partitions)| *partitions as usize);
        let share = partitions.div_ceil(replicas.len().max(1));
        if owned.len() == replicas.len()
            && total == partitions
            && owned.iter().all(|(c, _)| *c <= share)
        {
            return Ok(());
        }
        if started.elapsed() > WARMUP_TIMEOUT {
            return Err(anyhow!("the payment replicas did not share the partitions: {owned:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
