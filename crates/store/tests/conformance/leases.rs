//! Lease checks (`xcomponent_core::lease`), run on every store that shares its instances between
//! runtimes (`EventStore::leases` is `Some`). A ttl of 0 makes a lease expired at once by the
//! store's own clock, so expiry is tested without waiting.

use super::messages::send;
use super::{batch, commit, created, next};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use xcomponent_core::instance::{InstanceId, Status};
use xcomponent_core::lease::{Fence, LeaseStore, Renewal};
use xcomponent_core::store::{CommitBatch, Error, EventStore};

const LONG: Duration = Duration::from_secs(60);

/// A component name no other check (nor an earlier run on the same server) uses.
fn fresh(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7().simple())
}

fn leases(store: &dyn EventStore) -> &dyn LeaseStore {
    match store.leases() {
        Some(leases) => leases,
        None => panic!("[{}] has no leases", store.backend()),
    }
}

pub async fn partition_count_is_fixed_by_the_first_asker(store: &dyn EventStore) {
    let leases = leases(store);
    let component = fresh("Parts");
    assert_eq!(leases.partitions(&component, 8).await.unwrap(), 8);
    assert_eq!(leases.partitions(&component, 16).await.unwrap(), 8, "the first count stays");
    assert!(matches!(leases.partitions(&fresh("Parts"), 0).await, Err(Error::Config(_))));
    let table = leases.lease_table(&component).await.unwrap();
    assert_eq!((table.partitions, table.leases.len()), (8, 0));
    assert!(table.now > 1_600_000_000_000, "the store's clock: {}", table.now);
    let unknown = leases.lease_table(&fresh("Unknown")).await.unwrap();
    assert_eq!(unknown.partitions, 0);
    assert!(
        matches!(leases.acquire(&component, 8, "a", LONG).await, Err(Error::Config(_))),
        "a partition past the count is refused"
    );
    assert!(matches!(leases.acquire(&fresh("Unknown"), 0, "a", LONG).await, Err(Error::Config(_))));
}

pub async fn a_lease_is_held_renewed_and_released(store: &dyn EventStore) {
    let leases = leases(store);
    let component = fresh("Lease");
    leases.partitions(&component, 4).await.unwrap();
    let first = leases.acquire(&component, 2, "runtime-a", LONG).await.unwrap().unwrap();
    assert_eq!((first.partition, first.owner.as_str(), first.epoch), (2, "runtime-a", 1));
    assert!(leases.acquire(&component, 2, "runtime-b", LONG).await.unwrap().is_none());
    let table = leases.lease_table(&component).await.unwrap();
    assert_eq!(table.leases, vec![first.clone()]);
    assert!(first.expires_at >= table.now + 59_000, "{} vs {}", first.expires_at, table.now);

    let fence = first.fence();
    let outcomes = leases.renew("runtime-a", std::slice::from_ref(&fence), LONG).await.unwrap();
    assert!(matches!(outcomes.as_slice(), [Renewal::Renewed(at)] if *at >= first.expires_at));
    let stranger = leases.renew("runtime-b", std::slice::from_ref(&fence), LONG).await.unwrap();
    assert_eq!(stranger, vec![Renewal::Lost], "only the owner renews");

    leases.release(&fence).await.unwrap();
    let released = leases.lease_table(&component).await.unwrap();
    assert_eq!(released.leases[0].expires_at, 0);
    let second = leases.acquire(&component, 2, "runtime-b", LONG).await.unwrap().unwrap();
    assert_eq!((second.owner.as_str(), second.epoch), ("runtime-b", 2));
    let late = leases.renew("runtime-a", std::slice::from_ref(&fence), LONG).await.unwrap();
    assert_eq!(late, vec![Renewal::Lost], "the old epoch is never renewed");
    leases.release(&fence).await.unwrap();
    let kept = leases.lease_table(&component).await.unwrap();
    assert_eq!(kept.leases, vec![second], "releasing a lost lease changes nothing");
}

pub async fn members_say_who_hosts_a_component(store: &dyn EventStore) {
    let leases = leases(store);
    let component = fresh("Members");
    leases.partitions(&component, 2).await.unwrap();
    leases.join(&component, "runtime-b", LONG).await.unwrap();
    leases.join(&component, "runtime-a", LONG).await.unwrap();
    leases.join(&fresh("Other"), "runtime-c", LONG).await.unwrap();
    let table = leases.lease_table(&component).await.unwrap();
    let names: Vec<&str> = table.members.iter().map(|(owner, _)| owner.as_str()).collect();
    assert_eq!(names, ["runtime-a", "runtime-b"], "by name, this component only");
    assert!(table.members.iter().all(|(_, until)| *until >= table.now + 59_000));
    leases.join(&component, "runtime-a", Duration::ZERO).await.unwrap();
    let left = leases.lease_table(&component).await.unwrap();
    assert!(left.members[0].1 <= left.now, "a ttl of zero says it left");
    assert!(matches!(leases.join(&component, "", LONG).await, Err(Error::Config(_))));
}

pub async fn an_expired_lease_is_taken_with_a_new_epoch(store: &dyn EventStore) {
    let leases = leases(store);
    let component = fresh("Expiry");
    leases.partitions(&component, 2).await.unwrap();
    let quick = leases.acquire(&component, 0, "a", Duration::ZERO).await.unwrap().unwrap();
    // Expired but not taken: its owner may still renew it.
    let renewed = leases.renew("a", &[quick.fence()], LONG).await.unwrap();
    assert!(matches!(renewed.as_slice(), [Renewal::Renewed(_)]));
    assert!(leases.acquire(&component, 0, "b", LONG).await.unwrap().is_none());

    let again = leases.acquire(&component, 1, "a", Duration::ZERO).await.unwrap().unwrap();
    let taken = leases.acquire(&component, 1, "b", LONG).await.unwrap().unwrap();
    assert_eq!(taken.epoch, again.epoch + 1);
    // A restarted owner taking its own expired lease gets a new epoch too.
    let own = leases.acquire(&component, 0, "a", Duration::ZERO).await;
    assert!(own.unwrap().is_none(), "a's renewed lease is live");
    let mixed = leases.renew("a", &[again.fence(), quick.fence()], LONG).await.unwrap();
    assert!(matches!(mixed.as_slice(), [Renewal::Lost, Renewal::Renewed(_)]), "{mixed:?}");
}

pub async fn one_of_many_racing_acquirers_wins(store: Arc<dyn EventStore>) {
    let component = fresh("Race");
    leases(&*store).partitions(&component, 1).await.unwrap();
    let racers = (0..8).map(|n| {
        let (store, component) = (Arc::clone(&store), component.clone());
        tokio::spawn(async move {
            leases(&*store).acquire(&component, 0, &format!("racer-{n}"), LONG).await
        })
    });
    let mut winners = Vec::new();
    for racer in racers {
        if let Some(lease) = racer.await.unwrap().unwrap() {
            winners.push(lease);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racer holds the lease: {winners:?}");
    assert_eq!(winners[0].epoch, 1);
}

pub async fn a_fenced_commit_writes_nothing(store: &dyn EventStore) {
    let leases = leases(store);
    let component = fresh("Fenced");
    leases.partitions(&component, 4).await.unwrap();
    let old = leases.acquire(&component, 1, "a", LONG).await.unwrap().unwrap();
    let first = created(&component, InstanceId(uuid::Uuid::now_v7()), "S1", 10, json!({}));
    let fenced = |events, fence: &Fence| CommitBatch {
        events,
        outbox: vec![send(&component, first.instance_id)],
        fences: vec![fence.clone(), fence.clone()],
        ..CommitBatch::default()
    };
    commit(store, &fenced(vec![first.clone()], &old.fence())).await;

    leases.release(&old.fence()).await.unwrap();
    let new = leases.acquire(&component, 1, "b", LONG).await.unwrap().unwrap();
    let stale = fenced(vec![next(&first, "GO", "S2", Status::Active, 11)], &old.fence());
    match store.commit(&stale).await {
        Err(Error::Fenced { component: c, partition: 1, epoch }) => {
            assert_eq!((c.as_str(), epoch), (component.as_str(), old.epoch));
        }
        other => panic!("[{}] a stale epoch must be fenced, got {other:?}", store.backend()),
    }
    assert_eq!(store.history(first.instance_id).await.unwrap().len(), 1, "no event written");
    let pending = store.pending_messages(None, 1_000).await.unwrap();
    assert!(!pending.iter().any(|m| stale.outbox[0].id == m.id), "no message written");

    let current = fenced(vec![next(&first, "GO", "S2", Status::Active, 11)], &new.fence());
    commit(store, &current).await;
    assert_eq!(store.history(first.instance_id).await.unwrap().len(), 2);

    let never = Fence { component: component.clone(), partition: 3, epoch: 1 };
    let other = created(&component, InstanceId(uuid::Uuid::now_v7()), "S1", 12, json!({}));
    let unleased = CommitBatch { fences: vec![never], ..batch(vec![other]) };
    assert!(matches!(store.commit(&unleased).await, Err(Error::Fenced { partition: 3, .. })));
}

/// A stale owner keeps committing while another runtime takes its partition: every commit the
/// store acknowledged is seen by the new owner's first read after taking it, and none is
/// acknowledged after that read.
pub async fn a_takeover_sees_every_acknowledged_commit(store: Arc<dyn EventStore>) {
    let component = fresh("Takeover");
    leases(&*store).partitions(&component, 1).await.unwrap();
    // Expired at once: the writer's epoch stays valid only until someone takes the partition.
    let old = leases(&*store).acquire(&component, 0, "old", Duration::ZERO).await.unwrap().unwrap();
    let first = created(&component, InstanceId(uuid::Uuid::now_v7()), "S1", 10, json!({}));
    let progress = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, fence, first) = (Arc::clone(&store), old.fence(), first.clone());
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            let mut last = first.clone();
            let mut events = vec![first];
            loop {
                let commit = CommitBatch {
                    events: events.clone(),
                    fences: vec![fence.clone()],
                    ..CommitBatch::default()
                };
                match store.commit(&commit).await {
                    Ok(()) => progress.fetch_add(1, Ordering::SeqCst),
                    Err(Error::Fenced { .. }) => return progress.load(Ordering::SeqCst),
                    Err(other) => panic!("unexpected commit error: {other}"),
                };
                last = next(&last, "GO", "S", Status::Active, 10 + last.seq as i64);
                events = vec![last.clone()];
            }
        })
    };
    // Let the writer get some commits in first.
    while progress.load(Ordering::SeqCst) < 5 {
        tokio::task::yield_now().await;
    }
    let taker = leases(&*store);
    let new = loop {
        if let Some(lease) = taker.acquire(&component, 0, "new", LONG).await.unwrap() {
            break lease;
        }
    };
    assert_eq!(new.epoch, old.epoch + 1);
    let seen = store.history(first.instance_id).await.unwrap().len() as u64;
    let acknowledged = writer.await.unwrap();
    let after = store.history(first.instance_id).await.unwrap().len() as u64;
    assert_eq!(
        seen,
        acknowledged,
        "[{}] the new owner's read misses or adds commits",
        store.backend()
    );
    assert_eq!(after, acknowledged, "nothing is written once the partition is taken");
}
