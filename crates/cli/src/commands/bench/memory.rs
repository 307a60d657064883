//! `bench memory`: throughput and footprint of the in-memory runtime, through its public API.
//!
//! - transitions/s: `send_many` to N live instances (per-instance order kept), with a subscriber
//!   draining the event stream, on one core (single-threaded Tokio runtime, one shard) and on
//!   all cores (one shard per core);
//! - the bare engine step (no runtime) on one core;
//! - instance creation rate (`create_many`);
//! - per-event `send` (what the HTTP and bus paths use) from many concurrent senders;
//! - bytes per idle instance (resident memory growth over a large population, divided), and per
//!   instance holding a typical 5-field business context;
//! - a broadcast whose matching rule selects 1 instance out of a large population.

use super::MemoryArgs;
use anyhow::{Context as _, anyhow};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use xcomponent_core::definition::Definition;
use xcomponent_core::engine::{self, EventRef, NoHooks};
use xcomponent_core::instance::{Context, InstanceId};
use xcomponent_core::model::Component;
use xcomponent_runtime::DrawId;
use xcomponent_runtime::{RuntimeBuilder, RuntimeHandle, RuntimeOptions, SendOutcome, SendRequest};

const BENCH_COMPONENT: &str = r#"
name: Bench
stateMachines:
  - name: Counter
    initialState: Idle
    states: [{name: Idle}, {name: Busy}]
    transitions:
      - {from: Idle, to: Busy, event: TICK}
      - {from: Busy, to: Idle, event: TICK}
      - from: Idle
        to: Busy
        event: ROUTED
        matchingRules: [{eventProperty: key, instanceProperty: key}]
  - name: Order
    initialState: New
    states: [{name: New}, {name: Paid}]
    transitions:
      - {from: New, to: Paid, event: PAY}
  - name: Waiter
    initialState: Waiting
    states: [{name: Waiting}, {name: Done}, {name: Late}]
    transitions:
      - {from: Waiting, to: Late, event: EXPIRE, type: timeout, timeoutMs: 3600000}
      - {from: Waiting, to: Done, event: ANSWER}
"#;

/// Events per `send_many` call.
const SEND_CHUNK: usize = 100_000;
/// Broadcasts averaged for the matched-broadcast latency.
const BROADCASTS: usize = 200;
/// Concurrent tasks calling `send` in the per-event rows (as many HTTP connections would).
const SENDERS: usize = 256;

pub(super) fn definition() -> anyhow::Result<Definition> {
    let component: Component =
        serde_saphyr::from_str(BENCH_COMPONENT).context("bench component")?;
    Definition::compile(component)
        .map_err(|errors| anyhow!("bench component does not compile: {errors:?}"))
}

pub(super) struct Row {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
}

/// Rows measured in a process of their own: resident growth is only meaningful in a process
/// whose allocator holds no memory freed by earlier rows (it would be reused, and hide growth).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Only {
    /// Bytes per idle instance with empty data.
    Idle,
    /// Bytes per instance with the 5-field business data.
    Business,
    /// Creation rate, bytes per instance with indexed data, matched broadcast.
    Population,
}

impl Only {
    fn name(self) -> &'static str {
        match self {
            Only::Idle => "idle",
            Only::Business => "business",
            Only::Population => "population",
        }
    }
}

/// Names of the rows a child process may report (rows carry static names).
const CHILD_ROWS: [&str; 5] = [
    IDLE_ROW,
    BUSINESS_ROW,
    "instance creation (one core)",
    "memory per instance (data {key: n}, indexed)",
    "matched broadcast, 1 of population",
];
const IDLE_ROW: &str = "memory per idle instance (empty data)";
const BUSINESS_ROW: &str = "memory per instance (5-field business data)";

/// Runs `bench memory --only ONLY` in a fresh process and reads its rows.
fn in_child(args: &MemoryArgs, only: Only) -> anyhow::Result<Vec<Row>> {
    let exe = std::env::current_exe().context("path of this program")?;
    let output = std::process::Command::new(exe)
        .args(["bench", "memory", "--json", "--only", only.name()])
        .args(["--population", &args.population.to_string()])
        .args(["--instances", &args.instances.to_string()])
        .args(["--events", &args.events.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("bench child process")?;
    if !output.status.success() {
        return Err(anyhow!("bench child process ({}) failed: {}", only.name(), output.status));
    }
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("rows of the bench child process")?;
    rows.iter()
        .map(|row| {
            let measure = row["measure"].as_str().unwrap_or_default();
            let name = CHILD_ROWS
                .iter()
                .find(|name| **name == measure)
                .ok_or_else(|| anyhow!("unknown row from the bench child process: {measure}"))?;
            Ok(Row {
                name,
                value: row["value"].as_f64().unwrap_or(f64::NAN),
                unit: if row["unit"] == "bytes" {
                    "bytes"
                } else if row["unit"] == "instances/s" {
                    "instances/s"
                } else {
                    "µs/broadcast"
                },
                note: row["note"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

pub fn run(args: &MemoryArgs) -> anyhow::Result<ExitCode> {
    if let Some(only) = args.only {
        let rows = match only {
            Only::Idle => vec![idle_population(args)?],
            Only::Business => vec![business_population(args)?],
            Only::Population => population(args)?,
        };
        print_rows(&rows, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut rows = Vec::new();
    rows.push(engine_step(args)?);
    rows.push(throughput(args, 1)?);
    if cores > 1 {
        rows.push(throughput(args, cores)?);
    }
    rows.push(per_event(args, 1)?);
    if cores > 1 {
        rows.push(per_event(args, cores)?);
    }
    rows.extend(in_child(args, Only::Idle)?);
    rows.extend(in_child(args, Only::Business)?);
    rows.extend(timers(args)?);
    rows.extend(in_child(args, Only::Population)?);
    print_rows(&rows, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints measurements as a table (or JSON).
pub(super) fn print_rows(rows: &[Row], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let list: Vec<_> = rows.iter().map(|row| json!({"measure": row.name, "value": row.value, "unit": row.unit, "note": row.note})).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!("{:<44} {:>16} {:<14} setup", "measure", "value", "unit");
        for row in rows {
            println!(
                "{:<44} {:>16} {:<14} {}",
                row.name,
                format_value(row.value),
                row.unit,
                row.note
            );
        }
    }
    Ok(())
}

fn format_value(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

fn engine_step(args: &MemoryArgs) -> anyhow::Result<Row> {
    let definition = definition()?;
    let machine = definition.machine_index("Counter").ok_or_else(|| anyhow!("machine Counter"))?;
    let mut instances: Vec<_> = (0..args.instances)
        .map(|_| engine::create(&definition, machine, InstanceId::draw(), Context::new(), None, 0))
        .collect();
    let payload = Context::new();
    let started = Instant::now();
    let mut steps = 0usize;
    while steps < args.events {
        for instance in &mut instances {
            let _ = engine::step(
                &definition,
                instance,
                EventRef { name: "TICK", payload: &payload },
                1,
                &mut NoHooks,
            );
        }
        steps += instances.len();
    }
    let rate = steps as f64 / started.elapsed().as_secs_f64();
    Ok(Row {
        name: "engine step (bare, one core)",
        value: rate,
        unit: "steps/s",
        note: format!("{} instances, toggling Idle/Busy", args.instances),
    })
}

pub(super) fn tokio_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?
    };
    Ok(runtime)
}

async fn start(shards: usize) -> anyhow::Result<(xcomponent_runtime::Runtime, RuntimeHandle)> {
    let options = RuntimeOptions { shards, ..RuntimeOptions::default() };
    let runtime = RuntimeBuilder::new().component(definition()?).options(options).start().await?;
    let handle = runtime.handle();
    Ok((runtime, handle))
}

/// Drains the event stream in a task; returns the counter of events seen.
fn drain_stream(handle: &RuntimeHandle) -> Arc<AtomicU64> {
    let seen = Arc::new(AtomicU64::new(0));
    let mut receiver = handle.subscribe();
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            match receiver.recv().await {
                Ok(batch) => {
                    counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    seen
}

fn throughput(args: &MemoryArgs, cores: usize) -> anyhow::Result<Row> {
    let runtime = tokio_runtime(cores)?;
    runtime.block_on(async {
        let (rt, handle) = start(cores).await?;
        let ids =
            handle.create_many("Bench", "Counter", vec![Context::new(); args.instances]).await?;
        let seen = drain_stream(&handle);
        let started = Instant::now();
        let mut sent = 0usize;
        let mut transitioned = 0usize;
        while sent < args.events {
            let chunk: Vec<_> = ids
                .iter()
                .cycle()
                .skip(sent % ids.len())
                .take(SEND_CHUNK.min(args.events - sent))
                .map(|id| (*id, Context::new()))
                .collect();
            sent += chunk.len();
            transitioned += handle.send_many("TICK", chunk).await?.transitioned;
        }
        let elapsed = started.elapsed();
        // Let the stream subscriber catch up before reading its count.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let streamed = seen.load(Ordering::Relaxed);
        rt.shutdown().await;
        let rate = transitioned as f64 / elapsed.as_secs_f64();
        let name = if cores == 1 {
            "runtime transitions (one core)"
        } else {
            "runtime transitions (all cores)"
        };
        Ok(Row {
            name,
            value: rate,
            unit: "transitions/s",
            note: format!(
                "{} instances, {} shard(s), {transitioned} transitions, {streamed} streamed events",
                args.instances, cores
            ),
        })
    })
}

/// Per-event `send` (one message and one reply per event) from `SENDERS` concurrent tasks, each
/// looping over its own share of the instances.
fn per_event(args: &MemoryArgs, cores: usize) -> anyhow::Result<Row> {
    let runtime = tokio_runtime(cores)?;
    runtime.block_on(async {
        let (rt, handle) = start(cores).await?;
        let ids =
            handle.create_many("Bench", "Counter", vec![Context::new(); args.instances]).await?;
        let ids = Arc::new(ids);
        let seen = drain_stream(&handle);
        // A tenth of the batched run: one round trip per event costs more.
        let per_sender = (args.events / 10 / SENDERS).max(1);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(SENDERS);
        for sender in 0..SENDERS {
            let handle = handle.clone();
            let ids = ids.clone();
            tasks.push(tokio::spawn(async move {
                let mut transitioned = 0usize;
                for round in 0..per_sender {
                    let id = ids[(sender + round * SENDERS) % ids.len()];
                    let request = SendRequest::new(id, "TICK", Context::new());
                    if let Ok(SendOutcome::Transitioned { .. }) = handle.send(request).await {
                        transitioned += 1;
                    }
                }
                transitioned
            }));
        }
        let mut transitioned = 0usize;
        for task in tasks {
            transitioned += task.await?;
        }
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let streamed = seen.load(Ordering::Relaxed);
        rt.shutdown().await;
        let name = if cores == 1 {
            "per-event send, concurrent (one core)"
        } else {
            "per-event send, concurrent (all cores)"
        };
        Ok(Row {
            name,
            value: transitioned as f64 / elapsed.as_secs_f64(),
            unit: "transitions/s",
            note: format!(
                "{SENDERS} tasks calling `send`, {} instances, {cores} shard(s), {transitioned} transitions, {streamed} streamed events",
                args.instances
            ),
        })
    })
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Arms one timer per instance for a large population (creation in a state with a timeout), then
/// cancels them all (a transition out of that state).
fn timers(args: &MemoryArgs) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio_runtime(1)?;
    runtime.block_on(async {
        let (rt, handle) = start(1).await?;
        let started = Instant::now();
        let mut ids = Vec::with_capacity(args.population);
        while ids.len() < args.population {
            let count = 100_000.min(args.population - ids.len());
            ids.extend(handle.create_many("Bench", "Waiter", vec![Context::new(); count]).await?);
        }
        let armed_in = started.elapsed();
        let pending: usize = handle.stats().await.iter().map(|stats| stats.timers).sum();
        let started = Instant::now();
        for chunk in ids.chunks(100_000) {
            handle
                .send_many("ANSWER", chunk.iter().map(|id| (*id, Context::new())).collect())
                .await?;
        }
        let cancelled_in = started.elapsed();
        let left: usize = handle.stats().await.iter().map(|stats| stats.timers).sum();
        rt.shutdown().await;
        if pending != ids.len() || left != 0 {
            return Err(anyhow!(
                "timers: {pending} armed for {} instances, {left} left after cancelling",
                ids.len()
            ));
        }
        Ok(vec![
            Row {
                name: "timers armed (instance created with one)",
                value: pending as f64 / armed_in.as_secs_f64(),
                unit: "timers/s",
                note: format!("{pending} pending at once, one core"),
            },
            Row {
                name: "timers cancelled (state left)",
                value: pending as f64 / cancelled_in.as_secs_f64(),
                unit: "timers/s",
                note: format!("{pending} cancelled by a transition, one core"),
            },
        ])
    })
}

/// Bytes per idle instance with empty data: the runtime's own footprint per instance.
fn idle_population(args: &MemoryArgs) -> anyhow::Result<Row> {
    let runtime = tokio_runtime(1)?;
    runtime.block_on(async {
        let (rt, handle) = start(1).await?;
        let before = resident_bytes();
        let mut created = 0usize;
        while created < args.population {
            let count = FOOTPRINT_CHUNK.min(args.population - created);
            handle.create_many("Bench", "Counter", vec![Context::new(); count]).await?;
            created += count;
        }
        let after = resident_bytes();
        rt.shutdown().await;
        let per_instance = match (before, after) {
            (Some(before), Some(after)) => after.saturating_sub(before) as f64 / created as f64,
            _ => f64::NAN,
        };
        Ok(Row {
            name: IDLE_ROW,
            value: per_instance,
            unit: "bytes",
            note: format!("resident growth / {created} instances"),
        })
    })
}

/// The 5-field business context of the footprint row (`orderId`, `customerId`, `amount`,
/// `currency`, `status`), as an order service would keep it.
pub(super) fn business_context(n: usize) -> Context {
    let mut context = Context::new();
    context.insert("orderId".into(), json!(format!("ORD-{n:08}")));
    context.insert("customerId".into(), json!(format!("C-{:06}", n % 1_000_000)));
    context.insert("amount".into(), json!(1234.5));
    context.insert("currency".into(), json!("EUR"));
    context.insert("status".into(), json!("new"));
    context
}

/// Creations per call in the footprint rows: small, as requests arrive, so that the messages
/// and data waiting to be created are not counted as growth.
const FOOTPRINT_CHUNK: usize = 1_000;

/// Bytes per live instance holding the 5-field business context (not indexed).
fn business_population(args: &MemoryArgs) -> anyhow::Result<Row> {
    let runtime = tokio_runtime(1)?;
    runtime.block_on(async {
        let (rt, handle) = start(1).await?;
        let before = resident_bytes();
        let mut created = 0usize;
        while created < args.population {
            let count = FOOTPRINT_CHUNK.min(args.population - created);
            let contexts: Vec<Context> = (created..created + count).map(business_context).collect();
            handle.create_many("Bench", "Order", contexts).await?;
            created += count;
        }
        let after = resident_bytes();
        rt.shutdown().await;
        let per_instance = match (before, after) {
            (Some(before), Some(after)) => after.saturating_sub(before) as f64 / created as f64,
            _ => f64::NAN,
        };
        Ok(Row {
            name: BUSINESS_ROW,
            value: per_instance,
            unit: "bytes",
            note: format!(
                "resident growth / {created} instances with {{orderId, customerId, amount, currency, status}}"
            ),
        })
    })
}

fn population(args: &MemoryArgs) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio_runtime(1)?;
    runtime.block_on(async {
        let (rt, handle) = start(1).await?;
        let before = resident_bytes();
        let started = Instant::now();
        let mut created = 0usize;
        let chunk = 100_000;
        while created < args.population {
            let count = chunk.min(args.population - created);
            let contexts: Vec<Context> = (created..created + count)
                .map(|n| {
                    let mut context = Context::new();
                    context.insert("key".into(), json!(n));
                    context
                })
                .collect();
            handle.create_many("Bench", "Counter", contexts).await?;
            created += count;
        }
        let create_rate = created as f64 / started.elapsed().as_secs_f64();
        let after = resident_bytes();
        let per_instance = match (before, after) {
            (Some(before), Some(after)) => after.saturating_sub(before) as f64 / created as f64,
            _ => f64::NAN,
        };
        let target = (args.population / 2) as u64;
        let started = Instant::now();
        let mut reached = 0usize;
        for round in 0..BROADCASTS {
            let mut payload = Context::new();
            payload.insert("key".into(), json!(target + round as u64));
            reached += handle.broadcast("Bench", "Counter", Some("Idle"), "ROUTED", payload, Vec::new()).await?;
        }
        let per_broadcast_us = started.elapsed().as_secs_f64() * 1e6 / BROADCASTS as f64;
        rt.shutdown().await;
        if reached != BROADCASTS {
            return Err(anyhow!("matched broadcast reached {reached} instances over {BROADCASTS} broadcasts, expected exactly one each"));
        }
        Ok(vec![
            Row { name: "instance creation (one core)", value: create_rate, unit: "instances/s", note: format!("create_many, {created} instances with a 1-key context") },
            Row { name: "memory per instance (data {key: n}, indexed)", value: per_instance, unit: "bytes", note: format!("resident growth / {created} instances with context {{key: n}}") },
            Row { name: "matched broadcast, 1 of population", value: per_broadcast_us, unit: "µs/broadcast", note: format!("{BROADCASTS} broadcasts, `===` rule, property index, {created} instances") },
        ])
    })
}
