//! The lease keeper (`LeaseKeeper`): runtimes sharing a component's partitions. Rounds are run by
//! hand (`tick`) on a memory store whose lease clock is a `ManualClock`, so expiry is exact and
//! nothing sleeps.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use xcomponent_core::clock::ManualClock;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::lease::{Fence, Partition};
use xcomponent_core::store::{CommitBatch, Error as StoreError, EventStore, StoredEvent};
use xcomponent_runtime::{LeaseConfig, LeaseError, LeaseKeeper, Ownership};
use xcomponent_store::{MemoryStore, StoreOptions};

const COMPONENT: &str = "Payment";
const TTL: Duration = Duration::from_secs(10);

fn store() -> (Arc<ManualClock>, Arc<dyn EventStore>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::with_clock(clock.clone()));
    (clock, store)
}

async fn keeper(store: &Arc<dyn EventStore>, owner: &str) -> LeaseKeeper {
    let config = LeaseConfig { ttl: TTL, ..LeaseConfig::new(owner) };
    LeaseKeeper::new(Arc::clone(store), [COMPONENT.to_owned()], config).await.unwrap()
}

fn owned(ownership: &Ownership) -> BTreeSet<Partition> {
    ownership[COMPONENT].owned.keys().copied().collect()
}

async fn ticks(keepers: &mut [&mut LeaseKeeper], rounds: usize) {
    for _ in 0..rounds {
        for keeper in keepers.iter_mut() {
            keeper.tick().await.unwrap();
        }
    }
}

/// Partition sets are disjoint and cover every partition.
fn assert_partitioned(sets: &[BTreeSet<Partition>], partitions: u32) {
    let mut all = BTreeSet::new();
    for set in sets {
        for partition in set {
            assert!(all.insert(*partition), "partition {partition} owned twice: {sets:?}");
        }
    }
    assert_eq!(all, (0..partitions).collect(), "every partition owned: {sets:?}");
}

#[tokio::test]
async fn runtimes_share_the_partitions_fairly_and_make_room_for_a_newcomer() {
    let (_clock, store) = store();
    let (mut a, mut b) = (keeper(&store, "runtime-a").await, keeper(&store, "runtime-b").await);
    let (seen_a, seen_b) = (a.subscribe(), b.subscribe());
    a.tick().await.unwrap();
    assert_eq!(owned(&seen_a.borrow()).len(), 16, "alone, a runtime takes every partition");
    ticks(&mut [&mut b, &mut a], 3).await;
    let (set_a, set_b) = (owned(&seen_a.borrow()), owned(&seen_b.borrow()));
    assert_eq!((set_a.len(), set_b.len()), (8, 8));
    assert_partitioned(&[set_a, set_b], 16);

    let mut c = keeper(&store, "runtime-c").await;
    let seen_c = c.subscribe();
    ticks(&mut [&mut c, &mut a, &mut b], 3).await;
    let sets = [owned(&seen_a.borrow()), owned(&seen_b.borrow()), owned(&seen_c.borrow())];
    let mut sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![4, 6, 6], "the fair share is ceil(16 / 3)");
    assert_partitioned(&sets, 16);
    assert_eq!(seen_a.borrow()[COMPONENT].partitions, 16);
}

#[tokio::test]
async fn a_paused_runtime_loses_its_partitions_and_its_commits_are_fenced() {
    let (clock, store) = store();
    let (mut a, mut b) = (keeper(&store, "runtime-a").await, keeper(&store, "runtime-b").await);
    let (seen_a, seen_b) = (a.subscribe(), b.subscribe());
    ticks(&mut [&mut a, &mut b], 3).await;
    let stale: Vec<Fence> = seen_a.borrow()[COMPONENT]
        .owned
        .iter()
        .map(|(p, e)| Fence { component: COMPONENT.to_owned(), partition: *p, epoch: *e })
        .collect();
    assert_eq!(stale.len(), 8);

    // runtime-a is paused (no rounds) past its ttl; runtime-b takes over.
    clock.advance(TTL.as_millis() as i64 + 1);
    ticks(&mut [&mut b], 2).await;
    assert_eq!(owned(&seen_b.borrow()).len(), 16, "the survivor owns everything");
    for fence in &stale {
        assert_eq!(seen_b.borrow()[COMPONENT].owned[&fence.partition], fence.epoch + 1);
    }

    // Back from its pause, runtime-a writes with an old epoch before its next round: refused.
    let event = creation(InstanceId(uuid::Uuid::now_v7()));
    let fences = vec![stale[0].clone()];
    let batch = CommitBatch { events: vec![event.clone()], fences, ..CommitBatch::default() };
    assert!(matches!(store.commit(&batch).await, Err(StoreError::Fenced { .. })));
    assert!(store.history(event.instance_id).await.unwrap().is_empty());
    a.tick().await.unwrap();
    assert!(owned(&seen_a.borrow()).is_empty(), "its renewals are refused: it drops everything");
    ticks(&mut [&mut a, &mut b], 3).await;
    assert_partitioned(&[owned(&seen_a.borrow()), owned(&seen_b.borrow())], 16);
}

#[tokio::test]
async fn a_graceful_shutdown_hands_partitions_over_at_once() {
    let (_clock, store) = store();
    let (mut a, mut b) = (keeper(&store, "runtime-a").await, keeper(&store, "runtime-b").await);
    let (seen_a, seen_b) = (a.subscribe(), b.subscribe());
    ticks(&mut [&mut a, &mut b], 3).await;
    a.release_all().await.unwrap();
    assert!(owned(&seen_a.borrow()).is_empty());
    b.tick().await.unwrap();
    assert_eq!(owned(&seen_b.borrow()).len(), 16, "no wait for an expiry");
}

#[tokio::test]
async fn the_partition_count_is_kept_from_the_first_runtime() {
    let (_clock, store) = store();
    let first = keeper(&store, "runtime-a").await;
    let config = LeaseConfig { partitions: 64, ..LeaseConfig::new("runtime-b") };
    let second =
        LeaseKeeper::new(Arc::clone(&store), [COMPONENT.to_owned()], config).await.unwrap();
    assert_eq!(second.subscribe().borrow()[COMPONENT].partitions, 16);
    drop(first);
}

#[tokio::test]
async fn sqlite_cannot_be_shared_and_says_so() {
    let dir = std::env::temp_dir().join(format!("xc-lease-{}", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}/store.db", dir.display());
    let sqlite = xcomponent_store::open(&url, &StoreOptions::default()).await.unwrap();
    let error = LeaseKeeper::new(sqlite, [COMPONENT.to_owned()], LeaseConfig::new("a")).await;
    let message = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("sqlite") && message.contains("PostgreSQL or Redis"), "{message}");
    let short = LeaseConfig { ttl: Duration::from_millis(10), ..LeaseConfig::new("a") };
    let (_clock, memory) = store();
    assert!(matches!(
        LeaseKeeper::new(memory, [COMPONENT.to_owned()], short).await,
        Err(LeaseError::TtlTooShort(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

/// A creation event of an instance of `COMPONENT`.
fn creation(id: InstanceId) -> StoredEvent {
    let correlation = uuid::Uuid::now_v7();
    serde_json::from_value(serde_json::json!({
        "id": correlation, "instanceId": id, "seq": 1, "component": COMPONENT,
        "machine": "Payment", "eventType": "INSTANCE_CREATED", "payload": {}, "stateBefore": "",
        "stateAfter": "Pending", "status": "active", "context": {}, "timers": [],
        "timestamp": 1, "correlationId": correlation
    }))
    .unwrap()
}
