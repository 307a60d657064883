//! `bench store`: durable transitions per second through the runtime on a real store (1,000
//! active instances by default; group commit per shard batch), then the time a fresh runtime
//! takes to restore a large population (snapshot + replay, indexes and timers rebuilt).
//!
//! On SQLite it also measures what a stored event costs on disk: the growth of the database's
//! pages in use per stored event (`SqliteStore::bytes_in_use`, WAL pages included), for
//! transitions that change nothing and for instances whose data grows by a note per event,
//! beside an estimate of what storing the whole data in every event (record layout 1) took.

use super::StoreArgs;
use super::memory::{Row, definition, print_rows, tokio_runtime};
use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::Context;
use xcomponent_core::model::Component;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{RuntimeBuilder, RuntimeOptions};
use xcomponent_store::{Durability, SqliteStore, StoreOptions};

/// Events per `send_many` call (several per instance, kept in order).
const SEND_CHUNK: usize = 20_000;
/// Instances per `create_many` call while populating.
const CREATE_CHUNK: usize = 50_000;

fn durability(name: &str) -> anyhow::Result<Durability> {
    match name {
        "each-commit" => Ok(Durability::EachCommit),
        "relaxed" => Ok(Durability::Relaxed),
        "none" => Ok(Durability::None),
        other => Err(anyhow!("--durability {other:?}: expected each-commit, relaxed or none")),
    }
}

fn bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    let style =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .map(|style| style.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

async fn open(args: &StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    if let Some(path) = args.store.strip_prefix("sqlite://") {
        // A fresh file, so every run measures the same thing.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let options =
        StoreOptions { durability: durability(&args.durability)?, ..StoreOptions::default() };
    xcomponent_store::open(&args.store, &options)
        .await
        .with_context(|| format!("opening {}", args.store))
}

pub fn run(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let runtime = tokio_runtime(cores.max(2))?;
    let rows = runtime.block_on(async {
        let store = open(args).await?;
        let mut rows = vec![transitions(args, store.clone(), cores).await?];
        rows.push(cross_component(args, store.clone(), cores).await?);
        if let Some(path) = args.store.strip_prefix("sqlite://") {
            rows.extend(stored_bytes(args, path, cores).await?);
        }
        if args.restore > 0 {
            rows.push(restore(args, store, cores).await?);
        }
        anyhow::Ok(rows)
    })?;
    print_rows(&rows, args.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn transitions(
    args: &StoreArgs,
    store: Arc<dyn EventStore>,
    cores: usize,
) -> anyhow::Result<Row> {
    let options = RuntimeOptions { shards: cores, ..RuntimeOptions::default() };
    let rt = RuntimeBuilder::new()
        .component(definition()?)
        .store(store)
        .options(options)
        .start()
        .await?;
    let handle = rt.handle();
    let ids = handle.create_many("Bench", "Counter", vec![Context::new(); args.instances]).await?;
    let started = Instant::now();
    let stored = tick(&handle, &ids, args.events).await?;
    let elapsed = started.elapsed();
    rt.shutdown().await;
    Ok(Row {
        name: "durable transitions",
        value: stored as f64 / elapsed.as_secs_f64(),
        unit: "transitions/s",
        note: format!(
            "{} on {}, {} active instances, {cores} shards, durability {}",
            stored, args.store, args.instances, args.durability
        ),
    })
}

/// The cross-component workload: a `Pinger` (component `Source`) whose every TICK is a
/// cross_component transition sending PING to its `Echo` (component `Sink`, found by a
/// correlation rule on `key`), so each measured transition stores one outbox message and causes
/// one more stored transition with its inbox entry.
const CROSS_COMPONENTS: [&str; 2] = [
    r#"
name: Source
stateMachines:
  - name: Pinger
    initialState: Ready
    states: [{name: Ready}]
    transitions:
      - from: Ready
        to: Ready
        event: TICK
        type: cross_component
        targetComponent: Sink
        targetMachine: Echo
        targetEvent: PING
        contextMapping: {key: key}
        matchingRules: [{eventProperty: key, instanceProperty: key}]
"#,
    r#"
name: Sink
stateMachines:
  - name: Echo
    initialState: Ready
    states: [{name: Ready}]
    transitions:
      - {from: Ready, to: Ready, event: PING}
"#,
];

fn cross_definitions() -> anyhow::Result<Vec<Definition>> {
    CROSS_COMPONENTS
        .iter()
        .map(|yaml| {
            let component: Component = serde_saphyr::from_str(yaml).context("bench component")?;
            Definition::compile(component)
                .map_err(|errors| anyhow!("bench component does not compile: {errors:?}"))
        })
        .collect()
}

async fn cross_component(
    args: &StoreArgs,
    store: Arc<dyn EventStore>,
    cores: usize,
) -> anyhow::Result<Row> {
    let options = RuntimeOptions { shards: cores, ..RuntimeOptions::default() };
    let mut builder = RuntimeBuilder::new().store(store).options(options);
    for definition in cross_definitions()? {
        builder = builder.component(definition);
    }
    let rt = builder.start().await?;
    let handle = rt.handle();
    let keyed = |index: usize| {
        let mut context = Context::new();
        context.insert("key".into(), index.into());
        context
    };
    let contexts: Vec<Context> = (0..args.instances).map(keyed).collect();
    let pingers = handle.create_many("Source", "Pinger", contexts.clone()).await?;
    handle.create_many("Sink", "Echo", contexts).await?;
    // Half the transitions of the effect-free row: each one causes a second.
    let events = args.events / 2;
    let started = Instant::now();
    let stored = tick(&handle, &pingers, events).await?;
    // Every PING applied and stored too.
    handle.flush().await?;
    let elapsed = started.elapsed();
    let counts = handle.message_counts();
    rt.shutdown().await;
    Ok(Row {
        name: "durable transitions, one message each",
        value: stored as f64 / elapsed.as_secs_f64(),
        unit: "transitions/s",
        note: format!(
            "{stored} TICKs each storing a message and causing a stored PING ({} transitions \
             in all), {} instances per component, dead letters {}",
            stored * 2,
            args.instances,
            counts.dead_letters
        ),
    })
}

/// Sends `events` TICKs round-robin to `targets`, in chunks, each chunk answered once stored;
/// returns how many made a transition.
async fn tick(
    handle: &xcomponent_runtime::RuntimeHandle,
    targets: &[xcomponent_core::InstanceId],
    events: usize,
) -> anyhow::Result<usize> {
    let progress = bar(events, "stored");
    let mut sent = 0usize;
    let mut stored = 0usize;
    while sent < events {
        let count = SEND_CHUNK.min(events - sent);
        let chunk: Vec<_> = (0..count)
            .map(|offset| (targets[(sent + offset) % targets.len()], Context::new()))
            .collect();
        let outcome = handle.send_many("TICK", chunk).await?;
        if outcome.failed > 0 {
            return Err(anyhow!("{} transitions failed to store", outcome.failed));
        }
        stored += outcome.transitioned;
        sent += count;
        progress.set_position(sent as u64);
    }
    progress.finish_and_clear();
    Ok(stored)
}

async fn restore(
    args: &StoreArgs,
    store: Arc<dyn EventStore>,
    cores: usize,
) -> anyhow::Result<Row> {
    let options = RuntimeOptions { shards: cores, ..RuntimeOptions::default() };
    let rt = RuntimeBuilder::new()
        .component(definition()?)
        .store(store.clone())
        .options(options.clone())
        .start()
        .await?;
    let handle = rt.handle();
    let progress = bar(args.restore, "created");
    let mut created = 0usize;
    while created < args.restore {
        let count = CREATE_CHUNK.min(args.restore - created);
        handle.create_many("Bench", "Counter", vec![Context::new(); count]).await?;
        created += count;
        progress.set_position(created as u64);
    }
    progress.finish_and_clear();
    rt.shutdown().await;
    let started = Instant::now();
    let restored = RuntimeBuilder::new()
        .component(definition()?)
        .store(store)
        .options(options)
        .start()
        .await?;
    let elapsed = started.elapsed();
    let live: usize = restored.handle().stats().await.iter().map(|stats| stats.instances).sum();
    restored.shutdown().await;
    Ok(Row {
        name: "restore at start",
        value: elapsed.as_secs_f64(),
        unit: "s",
        note: format!(
            "{live} live instances restored from {} (snapshot + replay, index and timers rebuilt)",
            args.store
        ),
    })
}

/// Events of the bytes-per-transition measurement (at most `--events`).
const COST_EVENTS: usize = 100_000;
/// Instances of the growing workload.
const GROWING_INSTANCES: usize = 100;
/// Events each growing instance takes (its data then holds this many notes).
const GROWING_EVENTS: usize = 40;
/// Bytes of each note.
const GROWING_NOTE_BYTES: usize = 1024;

/// An instance whose every NOTE event adds a key to its data (the payload merge).
const GROWING_COMPONENT: &str = r#"
name: Journal
stateMachines:
  - name: Page
    initialState: Open
    states: [{name: Open}]
    transitions:
      - {from: Open, to: Open, event: NOTE}
"#;

/// A runtime hosting `definition` on `store`.
async fn runtime_on(
    store: Arc<SqliteStore>,
    definition: Definition,
    cores: usize,
) -> anyhow::Result<xcomponent_runtime::Runtime> {
    let options = RuntimeOptions { shards: cores, ..RuntimeOptions::default() };
    Ok(RuntimeBuilder::new().component(definition).store(store).options(options).start().await?)
}

/// A fresh SQLite store at `path`.
async fn fresh_sqlite(args: &StoreArgs, path: &str) -> anyhow::Result<Arc<SqliteStore>> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let options =
        StoreOptions { durability: durability(&args.durability)?, ..StoreOptions::default() };
    let store = SqliteStore::open(&format!("sqlite://{path}"), &options)
        .await
        .with_context(|| format!("opening sqlite://{path}"))?;
    Ok(Arc::new(store))
}

/// What a stored event costs on SQLite, in a file of its own next to `path`: the pages in use
/// once the instances are created (B0) and once the events are stored (B1) give
/// (B1 - B0) / events. Once for transitions that change nothing, once for instances growing by
/// a note per event, with an estimate of the same events stored with the whole data (layout 1):
/// the measured cost, less the `changes` each event stored, plus the whole data after it.
async fn stored_bytes(args: &StoreArgs, path: &str, cores: usize) -> anyhow::Result<Vec<Row>> {
    let cost_path = format!("{path}.cost");
    // Transitions that change nothing (empty payloads).
    let store = fresh_sqlite(args, &cost_path).await?;
    let rt = runtime_on(store.clone(), definition()?, cores).await?;
    let handle = rt.handle();
    let ids = handle.create_many("Bench", "Counter", vec![Context::new(); args.instances]).await?;
    let before = store.bytes_in_use().await?;
    let stored = tick(&handle, &ids, COST_EVENTS.min(args.events)).await?;
    rt.shutdown().await;
    let empty = store.bytes_in_use().await?.saturating_sub(before) as f64 / stored.max(1) as f64;
    drop(store);

    // Instances whose data grows.
    let journal = || -> anyhow::Result<Definition> {
        let component: Component =
            serde_saphyr::from_str(GROWING_COMPONENT).context("bench component")?;
        Definition::compile(component)
            .map_err(|errors| anyhow!("bench component does not compile: {errors:?}"))
    };
    let store = fresh_sqlite(args, &cost_path).await?;
    let rt = runtime_on(store.clone(), journal()?, cores).await?;
    let handle = rt.handle();
    let pages =
        handle.create_many("Journal", "Page", vec![Context::new(); GROWING_INSTANCES]).await?;
    let before = store.bytes_in_use().await?;
    // Layout 1 stored the whole data after each event where layout 2 stores its changes.
    let mut whole_data_bytes = 0usize;
    let mut changes_bytes = 0usize;
    let mut data = Context::new();
    for index in 0..GROWING_EVENTS {
        let note: String = (0..GROWING_NOTE_BYTES)
            .map(|at| char::from(b'a' + ((at * 7 + index) % 26) as u8))
            .collect();
        let mut payload = Context::new();
        payload.insert(format!("note{index}"), note.into());
        data.extend(payload.clone());
        whole_data_bytes += serde_json::to_string(&data)?.len() * GROWING_INSTANCES;
        changes_bytes +=
            serde_json::to_string(&serde_json::json!({"set": &payload}))?.len() * GROWING_INSTANCES;
        let chunk: Vec<_> = pages.iter().map(|page| (*page, payload.clone())).collect();
        let outcome = handle.send_many("NOTE", chunk).await?;
        if outcome.failed > 0 {
            return Err(anyhow!("{} notes failed to store", outcome.failed));
        }
    }
    rt.shutdown().await;
    let growing_events = GROWING_INSTANCES * GROWING_EVENTS;
    let growing = store.bytes_in_use().await?.saturating_sub(before) as f64 / growing_events as f64;
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{cost_path}{suffix}"));
    }
    let setup = format!(
        "{GROWING_INSTANCES} instances x {GROWING_EVENTS} events, each adding a \
         {GROWING_NOTE_BYTES}-byte note to the data (at the end {} bytes of JSON)",
        serde_json::to_string(&data)?.len()
    );
    let snapshots = xcomponent_runtime::DEFAULT_SNAPSHOT_INTERVAL;
    Ok(vec![
        Row {
            name: "SQLite bytes per transition, no data change",
            value: empty,
            unit: "bytes/event",
            note: format!(
                "pages in use, over {stored} transitions with empty payloads on {} instances \
                 (a snapshot every {snapshots} events, indexes included)",
                args.instances
            ),
        },
        Row {
            name: "SQLite bytes per transition, growing data",
            value: growing,
            unit: "bytes/event",
            note: format!("pages in use; {setup} (a snapshot every {snapshots} events)"),
        },
        Row {
            name: "  same events, whole data in each (estimate)",
            value: growing
                + (whole_data_bytes as f64 - changes_bytes as f64) / growing_events as f64,
            unit: "bytes/event",
            note: format!(
                "record layout 1: the row above, less the changes stored, plus the data's JSON \
                 after each event; {setup}"
            ),
        },
    ])
}
