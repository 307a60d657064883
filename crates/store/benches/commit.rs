//! Commit throughput in the runtime's shape: `WRITERS` shards commit concurrently, each a batch
//! of `EVENTS_PER_BATCH` events over its own `INSTANCES / WRITERS` instances (so every instance
//! gets several events per batch), with a snapshot at every `SNAPSHOT_EVERY`-th seq, as
//! `xcomponent-ai bench store` produces through the runtime. Plus the latency of a commit of one
//! event (an HTTP event on an idle server).
//!
//! Each figure is taken twice: effect-free (`<backend>`), and in the shape of a cross-component
//! flow (`<backend>+messages`), where every event also stores the message it produced (one
//! outbox row), records the message it applied (one inbox entry) and removes that message from
//! the outbox (one delivered id): what issue 7's crash-safe effects cost per event.
//!
//! SQLite always (a file in a temp dir, `Durability::EachCommit` and `Relaxed`); PostgreSQL
//! when `XC_TEST_POSTGRES_URL` is set (own schema, dropped at the end); Redis when
//! `XC_TEST_REDIS_URL` is set (own key prefix). Throughput is reported in events/s.
//! Run: `cargo bench -p xcomponent-store --features postgres,redis --bench commit`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use xcomponent_core::instance::{EventId, InstanceId, Status};
use xcomponent_core::message::{Envelope, InboxEntry, MessageBody, MessageId};
use xcomponent_core::store::{
    CREATED_EVENT_TYPE, CommitBatch, DataChanges, EventStore, InstanceRecord, StoredEvent,
};
use xcomponent_store::{Durability, StoreOptions, open};

/// Concurrent committers (the runtime's shards).
const WRITERS: usize = 2;
/// Live instances, split evenly between the writers.
const INSTANCES: usize = 1_000;
/// Events per commit of one writer.
const EVENTS_PER_BATCH: usize = 10_000;
/// A snapshot every this many events of an instance (the runtime's default interval).
const SNAPSHOT_EVERY: u64 = 10;

/// One live instance of the workload and the state its next event produces.
struct Live {
    id: InstanceId,
    correlation_id: EventId,
    seq: u64,
    /// The message this instance's previous event produced (applied by its next one).
    sent: Option<MessageId>,
}

impl Live {
    fn new() -> Live {
        Live {
            id: InstanceId(uuid::Uuid::now_v7()),
            correlation_id: EventId(uuid::Uuid::now_v7()),
            seq: 0,
            sent: None,
        }
    }

    /// The next event with its message parts: applies (inbox) and delivers the message the
    /// previous event produced, and produces a new one (outbox), as a ping-pong between two
    /// components does.
    fn next_with_messages(&mut self, i: usize, batch: &mut CommitBatch) {
        let (event, snapshot) = self.next(i);
        if let Some(applied) = self.sent.take() {
            batch.inbox.push(InboxEntry {
                message_id: applied,
                instance_id: self.id,
                applied_at: event.timestamp,
            });
            batch.delivered.push(applied);
        }
        let message = Envelope {
            id: MessageId(uuid::Uuid::now_v7()),
            component: "Payments".to_owned(),
            body: MessageBody::Send {
                instance_id: self.id,
                event: "PAY".to_owned(),
                payload: order_data(i, event.seq),
            },
            causation_id: Some(event.id),
            correlation_id: Some(event.correlation_id),
            depth: 1,
            source_component: Some(event.component.to_string()),
            source_instance: Some(self.id),
            created_at: event.timestamp,
        };
        self.sent = Some(message.id);
        batch.outbox.push(message);
        batch.events.push(event);
        batch.snapshots.extend(snapshot);
    }

    fn next(&mut self, i: usize) -> (StoredEvent, Option<InstanceRecord>) {
        self.seq += 1;
        let seq = self.seq;
        let event = StoredEvent {
            id: EventId(uuid::Uuid::now_v7()),
            instance_id: self.id,
            seq,
            component: "Orders".into(),
            machine: "Order".into(),
            event_type: if seq == 1 { CREATED_EVENT_TYPE.into() } else { "NEXT".into() },
            payload: json!({ "step": seq }).as_object().cloned().unwrap_or_default(),
            state_before: if seq == 1 { "".into() } else { "Open".into() },
            state_after: "Open".into(),
            status: Status::Active,
            // As the runtime stores them: the creation with the whole data, a transition with
            // what it changed.
            context: (seq == 1).then(|| order_data(i, seq)),
            changes: if seq == 1 {
                DataChanges::default()
            } else {
                DataChanges {
                    set: json!({ "step": seq }).as_object().cloned().unwrap_or_default(),
                    removed: Vec::new(),
                }
            },
            timers: Vec::new(),
            parent: None,
            entry_point: false,
            timestamp: 1_700_000_000_000 + seq as i64,
            causation_id: None,
            correlation_id: self.correlation_id,
            source_component: None,
        };
        let snapshot = seq.is_multiple_of(SNAPSHOT_EVERY).then(|| {
            let mut record = InstanceRecord::from_creation(&event);
            record.apply(&event);
            record
        });
        (event, snapshot)
    }
}

/// Generates successive rounds: one batch per writer, each over that writer's instances.
struct Workload {
    writers: Vec<Vec<Live>>,
    /// Every event carries one outbox message, one inbox entry and one delivered id.
    messages: bool,
}

impl Workload {
    fn new(messages: bool) -> Workload {
        let per_writer = INSTANCES / WRITERS;
        let writers =
            (0..WRITERS).map(|_| (0..per_writer).map(|_| Live::new()).collect()).collect();
        Workload { writers, messages }
    }

    fn round(&mut self) -> Vec<CommitBatch> {
        self.writers
            .iter_mut()
            .map(|instances| {
                let mut batch = CommitBatch::default();
                for n in 0..EVENTS_PER_BATCH {
                    let i = n % instances.len();
                    if self.messages {
                        instances[i].next_with_messages(i, &mut batch);
                    } else {
                        let (event, snapshot) = instances[i].next(i);
                        batch.events.push(event);
                        batch.snapshots.extend(snapshot);
                    }
                }
                batch
            })
            .collect()
    }
}

fn bench_store(c: &mut Criterion, rt: &Runtime, label: &str, store: Arc<dyn EventStore>) {
    for messages in [false, true] {
        let name = if messages { format!("{label}+messages") } else { label.to_owned() };
        bench_shape(c, rt, &name, &store, messages);
    }
}

fn bench_shape(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    store: &Arc<dyn EventStore>,
    messages: bool,
) {
    let mut group = c.benchmark_group("commit_runtime_shape");
    group.throughput(Throughput::Elements((WRITERS * EVENTS_PER_BATCH) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let mut workload = Workload::new(messages);
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let rounds: Vec<Vec<CommitBatch>> = (0..iterations).map(|_| workload.round()).collect();
            let started = Instant::now();
            rt.block_on(async {
                for round in rounds {
                    let tasks: Vec<_> = round
                        .into_iter()
                        .map(|batch| {
                            let store = Arc::clone(store);
                            tokio::spawn(async move { store.commit(&batch).await })
                        })
                        .collect();
                    for task in tasks {
                        match task.await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => panic!("{name} commit failed: {error}"),
                            Err(error) => panic!("{name} commit task failed: {error}"),
                        }
                    }
                }
            });
            started.elapsed()
        });
    });
    group.finish();

    let mut group = c.benchmark_group("commit_one_event");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    let mut live = Live::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let batches: Vec<CommitBatch> = (0..iterations)
                .map(|_| {
                    let mut batch = CommitBatch::default();
                    if messages {
                        live.next_with_messages(0, &mut batch);
                        // As the effect-free figure: the event alone, without its snapshot.
                        batch.snapshots.clear();
                    } else {
                        batch.events.push(live.next(0).0);
                    }
                    batch
                })
                .collect();
            let started = Instant::now();
            rt.block_on(async {
                for batch in &batches {
                    if let Err(error) = store.commit(batch).await {
                        panic!("{name} commit failed: {error}");
                    }
                }
            });
            started.elapsed()
        });
    });
    group.finish();
}

fn commit(c: &mut Criterion) {
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(error) => panic!("tokio runtime: {error}"),
    };
    let dir = std::env::temp_dir().join(format!("xc-store-bench-{}", uuid::Uuid::now_v7()));
    for (label, durability) in
        [("sqlite_each_commit", Durability::EachCommit), ("sqlite_relaxed", Durability::Relaxed)]
    {
        let url = format!("sqlite://{}/{label}.db", dir.display());
        let options = StoreOptions { durability, ..StoreOptions::default() };
        let store = rt.block_on(open(&url, &options)).unwrap_or_else(|e| panic!("{url}: {e}"));
        bench_store(c, &rt, label, store);
    }
    let _ = std::fs::remove_dir_all(&dir);

    match std::env::var("XC_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("xc_bench_{}", uuid::Uuid::now_v7().simple());
            for (label, durability) in [
                ("postgres_each_commit", Durability::EachCommit),
                ("postgres_relaxed", Durability::Relaxed),
            ] {
                let options =
                    StoreOptions { durability, schema: schema.clone(), ..StoreOptions::default() };
                let store =
                    rt.block_on(open(&url, &options)).unwrap_or_else(|e| panic!("{url}: {e}"));
                bench_store(c, &rt, label, store);
            }
            rt.block_on(drop_schema(&url, &schema));
        }
        Err(_) => eprintln!("!!!! postgres commit bench SKIPPED: set XC_TEST_POSTGRES_URL !!!!"),
    }
    match std::env::var("XC_TEST_REDIS_URL") {
        Ok(url) => {
            let prefix = format!("xc_bench_{}", uuid::Uuid::now_v7().simple());
            let options = StoreOptions { key_prefix: prefix.clone(), ..StoreOptions::default() };
            let store = rt.block_on(open(&url, &options)).unwrap_or_else(|e| panic!("{url}: {e}"));
            bench_store(c, &rt, "redis", store);
            rt.block_on(delete_prefix(&url, &prefix));
        }
        Err(_) => eprintln!("!!!! redis commit bench SKIPPED: set XC_TEST_REDIS_URL !!!!"),
    }
}

#[cfg(feature = "postgres")]
async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
            eprintln!("could not drop bench schema {schema}: {error}");
        }
    }
}

#[cfg(not(feature = "postgres"))]
async fn drop_schema(_: &str, _: &str) {}

#[cfg(feature = "redis")]
#[path = "../tests/support/redis_cleanup.rs"]
mod redis_cleanup;
#[cfg(feature = "redis")]
use redis_cleanup::delete_prefix;

#[cfg(not(feature = "redis"))]
async fn delete_prefix(_: &str, _: &str) {}

criterion_group!(benches, commit);
criterion_main!(benches);

/// The data of order `i` after its event `seq`.
fn order_data(i: usize, seq: u64) -> serde_json::Map<String, serde_json::Value> {
    json!({ "orderId": format!("ORD-{i}"), "amount": 100 + i, "step": seq })
        .as_object()
        .cloned()
        .unwrap_or_default()
}
