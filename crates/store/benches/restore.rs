//! Restore time: `load_active` over every active instance of a SQLite store, page by page.
//!
//! Fills a store in a temp dir with `XC_BENCH_RESTORE_INSTANCES` instances (default 100,000):
//! each has a creation and one transition; one in ten also has a snapshot at seq 2 and a third
//! event, one in twenty is finished. Then times a full `load_active` walk (pages of
//! `XC_BENCH_RESTORE_PAGE`, default 10,000) and prints instances/s.
//! Run: `XC_BENCH_RESTORE_INSTANCES=1000000 cargo bench -p xcomponent-store --bench restore`.

use serde_json::{Map, Value, json};
use std::time::Instant;
use xcomponent_core::instance::{EventId, InstanceId, Status};
use xcomponent_core::store::{
    CREATED_EVENT_TYPE, CommitBatch, DataChanges, InstanceRecord, StoredEvent,
};
use xcomponent_store::{Durability, StoreOptions, open};

/// Instances written per commit while filling the store.
const FILL_BATCH: usize = 5_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn event(
    id: InstanceId,
    seq: u64,
    status: Status,
    correlation_id: EventId,
    i: usize,
) -> StoredEvent {
    StoredEvent {
        id: EventId(uuid::Uuid::now_v7()),
        instance_id: id,
        seq,
        component: "Orders".into(),
        machine: "Order".into(),
        event_type: if seq == 1 { CREATED_EVENT_TYPE.into() } else { "NEXT".into() },
        payload: object(json!({ "step": seq })),
        state_before: if seq == 1 { "".into() } else { format!("S{}", seq - 1).into() },
        state_after: format!("S{seq}").into(),
        status,
        // As the runtime stores them: the creation with the whole data, a transition with what it
        // changed.
        context: (seq == 1).then(|| {
            object(json!({ "orderId": format!("ORD-{i}"), "amount": 100 + i, "customer": "ACME", "step": seq }))
        }),
        changes: if seq == 1 {
            DataChanges::default()
        } else {
            DataChanges { set: object(json!({ "step": seq })), removed: Vec::new() }
        },
        timers: Vec::new(),
        parent: None,
        entry_point: false,
        timestamp: 1_700_000_000_000 + i as i64 + seq as i64,
        causation_id: None,
        correlation_id,
        source_component: None,
    }
}

fn main() {
    let instances = env_usize("XC_BENCH_RESTORE_INSTANCES", 100_000);
    let page = env_usize("XC_BENCH_RESTORE_PAGE", 10_000);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    // XC_BENCH_RESTORE_DIR keeps the database there (for inspection) instead of a temp dir; a
    // database already there (of the same XC_BENCH_RESTORE_INSTANCES) is reused without a fill.
    let kept = std::env::var("XC_BENCH_RESTORE_DIR").ok();
    let dir = kept.clone().map_or_else(
        || std::env::temp_dir().join(format!("xc-store-restore-{}", uuid::Uuid::now_v7())),
        std::path::PathBuf::from,
    );
    let url = format!("sqlite://{}/restore.db", dir.display());
    rt.block_on(async {
        let options = StoreOptions { durability: Durability::None, ..StoreOptions::default() };
        let reuse = kept.is_some() && dir.join("restore.db").exists();
        let store = open(&url, &options).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let started = Instant::now();
        let mut expected_active = if reuse { (0..instances).filter(|i| i % 20 != 0).count() } else { 0 };
        for start in (0..instances).step_by(FILL_BATCH).filter(|_| !reuse) {
            let mut batch = CommitBatch::default();
            for i in start..(start + FILL_BATCH).min(instances) {
                let (id, correlation) = (InstanceId(uuid::Uuid::now_v7()), EventId(uuid::Uuid::now_v7()));
                let first = event(id, 1, Status::Active, correlation, i);
                let finished = i % 20 == 0;
                let second = event(id, 2, if finished { Status::Completed } else { Status::Active }, correlation, i);
                if i % 10 == 1 {
                    let mut snapshot = InstanceRecord::from_creation(&first);
                    snapshot.apply(&second);
                    batch.snapshots.push(snapshot);
                    batch.events.extend([first, second, event(id, 3, Status::Active, correlation, i)]);
                } else {
                    batch.events.extend([first, second]);
                }
                expected_active += usize::from(!finished);
            }
            store.commit(&batch).await.unwrap_or_else(|e| panic!("fill: {e}"));
        }
        if !reuse {
            eprintln!("filled {instances} instances in {:?}", started.elapsed());
        }

        let started = Instant::now();
        let (mut loaded, mut after) = (0, None);
        loop {
            let records = store.load_active(after, page).await.unwrap_or_else(|e| panic!("load_active: {e}"));
            let Some(last) = records.last() else { break };
            after = Some(last.id);
            loaded += records.len();
        }
        let elapsed = started.elapsed();
        assert_eq!(loaded, expected_active, "every active instance restored");
        println!(
            "sqlite load_active: {loaded} active instances (of {instances}) in {elapsed:?} = {:.0} instances/s (page {page})",
            loaded as f64 / elapsed.as_secs_f64()
        );
    });
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
