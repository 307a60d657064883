//! `bench store`: durable transitions per second through the runtime on a real store (1,000
//! active instances by default; group commit per shard batch), then the time a fresh runtime
//! takes to restore a large population (snapshot + replay, indexes and timers rebuilt).

use super::StoreArgs;
use super::memory::{Row, definition, print_rows, tokio_runtime};
use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use xcomponent_core::instance::Context;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{RuntimeBuilder, RuntimeOptions};
use xcomponent_store::{Durability, StoreOptions};

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
    let progress = bar(args.events, "stored");
    let started = Instant::now();
    let mut sent = 0usize;
    let mut stored = 0usize;
    while sent < args.events {
        let count = SEND_CHUNK.min(args.events - sent);
        let chunk: Vec<_> =
            (0..count).map(|offset| (ids[(sent + offset) % ids.len()], Context::new())).collect();
        let outcome = handle.send_many("TICK", chunk).await?;
        if outcome.failed > 0 {
            return Err(anyhow!("{} transitions failed to store", outcome.failed));
        }
        stored += outcome.transitioned;
        sent += count;
        progress.set_position(sent as u64);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
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
