//! The simulation's fault injectors: a seeded die, a gate that freezes one runtime's calls (as a
//! stopped process makes none), and the store and bus wrappers that consult them.

use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use xcomponent_core::bus::{
    Acknowledge, Bus, BusResult, Delivery, QueueConsumer, QueueMessage, Subscription,
};
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::lease::{Fence, LeaseStore, LeaseTable, Partition, Renewal};
use xcomponent_core::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use xcomponent_core::store::{
    CommitBatch, Error as StoreError, EventStore, InstanceQuery, InstanceRecord, Page,
    Result as StoreResult, Retention, StoredEvent,
};

/// A seeded die (splitmix64): every fault decision of a run is drawn from it.
#[derive(Debug)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed)
    }

    pub fn next(&mut self) -> u64 {
        xcomponent_core::mix::splitmix64(&mut self.0)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// True `per_mille` times in a thousand.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

pub type SharedDice = Arc<Mutex<Dice>>;

pub fn roll<T>(dice: &SharedDice, draw: impl FnOnce(&mut Dice) -> T) -> T {
    draw(&mut dice.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Rates of the per-message and per-commit faults of one run, in per mille.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// A message the broker confirmed, then lost.
    pub lost: u64,
    /// A message stored twice.
    pub duplicated: u64,
    /// A message held back up to `MAX_DELAY` (later ones overtake it).
    pub delayed: u64,
    /// A commit held up to `MAX_SLOW_COMMIT` before it reaches the store.
    pub slow_commit: u64,
}

/// The longest a delayed message is held back.
pub const MAX_DELAY: Duration = Duration::from_millis(800);

/// The longest a slow commit is held (longer than the lease: its fence may be stale by then).
pub const MAX_SLOW_COMMIT: Duration = Duration::from_millis(3_000);

/// What the injectors did, and what the store refused, over one run.
#[derive(Debug, Default)]
pub struct Tally {
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
    pub delayed: AtomicU64,
    pub slow_commits: AtomicU64,
    pub fenced_commits: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Freezes a runtime's calls to the store and the bus while closed, as a stopped process (or one
/// cut off the network) makes none; a call already inside goes on.
#[derive(Debug, Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(watch::channel(false).0))
    }

    pub fn freeze(&self, frozen: bool) {
        self.0.send_replace(frozen);
    }

    pub async fn pass(&self) {
        let mut frozen = self.0.subscribe();
        // The sender lives as long as the gate: waiting cannot fail.
        let _ = frozen.wait_for(|frozen| !*frozen).await;
    }
}

/// One runtime's view of the shared memory store: behind its gate, with slow commits.
pub struct SimStore {
    pub inner: Arc<dyn EventStore>,
    pub gate: Gate,
    pub dice: SharedDice,
    pub rates: Rates,
    pub tally: Arc<Tally>,
}

impl SimStore {
    fn leases_of_inner(&self) -> &dyn LeaseStore {
        self.inner.leases().expect("the memory store keeps leases")
    }
}

#[async_trait]
impl EventStore for SimStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn commit(&self, batch: &CommitBatch) -> StoreResult<()> {
        self.gate.pass().await;
        let slow = roll(&self.dice, |dice| {
            dice.chance(self.rates.slow_commit)
                .then(|| Duration::from_millis(dice.below(MAX_SLOW_COMMIT.as_millis() as u64)))
        });
        if let Some(delay) = slow {
            count(&self.tally.slow_commits);
            tokio::time::sleep(delay).await;
            self.gate.pass().await;
        }
        let result = self.inner.commit(batch).await;
        if matches!(result, Err(StoreError::Fenced { .. })) {
            count(&self.tally.fenced_commits);
        }
        result
    }

    async fn load_active(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> StoreResult<Vec<InstanceRecord>> {
        self.gate.pass().await;
        self.inner.load_active(after, limit).await
    }

    async fn instance(&self, id: InstanceId) -> StoreResult<Option<InstanceRecord>> {
        self.gate.pass().await;
        self.inner.instance(id).await
    }

    async fn history(&self, id: InstanceId) -> StoreResult<Vec<StoredEvent>> {
        self.gate.pass().await;
        self.inner.history(id).await
    }

    async fn search(&self, query: &InstanceQuery) -> StoreResult<Page<InstanceRecord>> {
        self.gate.pass().await;
        self.inner.search(query).await
    }

    async fn correlated(
        &self,
        correlation_id: EventId,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.gate.pass().await;
        self.inner.correlated(correlation_id, limit).await
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> StoreResult<u64> {
        self.gate.pass().await;
        self.inner.apply_retention(retention, now).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.gate.pass().await;
        self.inner.ping().await
    }

    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> StoreResult<Vec<Envelope>> {
        self.gate.pass().await;
        self.inner.pending_messages(after, limit).await
    }

    async fn inbox_entries(&self, messages: &[MessageId]) -> StoreResult<Vec<InboxEntry>> {
        self.gate.pass().await;
        self.inner.inbox_entries(messages).await
    }

    async fn purge_inbox(&self, before: Millis) -> StoreResult<u64> {
        self.gate.pass().await;
        self.inner.purge_inbox(before).await
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> StoreResult<Vec<DeadLetter>> {
        self.gate.pass().await;
        self.inner.dead_letters(after, limit).await
    }

    async fn dead_letter(&self, message: MessageId) -> StoreResult<Option<DeadLetter>> {
        self.gate.pass().await;
        self.inner.dead_letter(message).await
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }
}

#[async_trait]
impl LeaseStore for SimStore {
    async fn partitions(&self, component: &str, wanted: u32) -> StoreResult<u32> {
        self.gate.pass().await;
        self.leases_of_inner().partitions(component, wanted).await
    }

    async fn lease_table(&self, component: &str) -> StoreResult<LeaseTable> {
        self.gate.pass().await;
        self.leases_of_inner().lease_table(component).await
    }

    async fn join(&self, component: &str, owner: &str, ttl: Duration) -> StoreResult<()> {
        self.gate.pass().await;
        self.leases_of_inner().join(component, owner, ttl).await
    }

    async fn acquire(
        &self,
        component: &str,
        partition: Partition,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Option<xcomponent_core::lease::Lease>> {
        self.gate.pass().await;
        self.leases_of_inner().acquire(component, partition, owner, ttl).await
    }

    async fn renew(
        &self,
        owner: &str,
        fences: &[Fence],
        ttl: Duration,
    ) -> StoreResult<Vec<Renewal>> {
        self.gate.pass().await;
        self.leases_of_inner().renew(owner, fences, ttl).await
    }

    async fn release(&self, fence: &Fence) -> StoreResult<()> {
        self.gate.pass().await;
        self.leases_of_inner().release(fence).await
    }
}

/// One runtime's view of the shared memory bus: behind its gate; messages lost after the
/// broker confirmed them, stored twice, or held back past later ones.
#[derive(Debug)]
pub struct SimBus {
    pub inner: Arc<dyn Bus>,
    pub gate: Gate,
    pub dice: SharedDice,
    pub rates: Rates,
    pub tally: Arc<Tally>,
}

#[async_trait]
impl Bus for SimBus {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        self.gate.pass().await;
        let rates = self.rates;
        let (lost, duplicated, delay) = roll(&self.dice, |dice| {
            (
                dice.chance(rates.lost),
                dice.chance(rates.duplicated),
                dice.chance(rates.delayed)
                    .then(|| Duration::from_millis(dice.below(MAX_DELAY.as_millis() as u64))),
            )
        });
        if lost {
            count(&self.tally.lost);
            return Ok(());
        }
        if let Some(delay) = delay {
            count(&self.tally.delayed);
            let (inner, queue, message) = (self.inner.clone(), queue.to_owned(), message.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // A delayed message that cannot be stored is a lost one: the sender sends again.
                let _ = inner.enqueue(&queue, &message).await;
            });
            return Ok(());
        }
        self.inner.enqueue(queue, message).await?;
        if duplicated {
            count(&self.tally.duplicated);
            self.inner.enqueue(queue, message).await?;
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        self.gate.pass().await;
        let inner = self.inner.consume(queue, group, consumer).await?;
        Ok(Box::new(GatedConsumer { inner, gate: self.gate.clone() }))
    }

    async fn consume_exclusive(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        self.gate.pass().await;
        let inner = self.inner.consume_exclusive(queue, group, consumer).await?;
        Ok(Box::new(GatedConsumer { inner, gate: self.gate.clone() }))
    }

    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        self.gate.pass().await;
        self.inner.publish(channel, body).await
    }

    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        self.gate.pass().await;
        self.inner.subscribe(channels).await
    }

    async fn ping(&self) -> BusResult<()> {
        self.gate.pass().await;
        self.inner.ping().await
    }
}

/// A queue consumer whose deliveries and acknowledgements wait at the gate.
struct GatedConsumer {
    inner: Box<dyn QueueConsumer>,
    gate: Gate,
}

#[async_trait]
impl QueueConsumer for GatedConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        let delivery = self.inner.next().await?;
        self.gate.pass().await;
        let gate = self.gate.clone();
        Ok(Delivery {
            message: delivery.message,
            redelivered: delivery.redelivered,
            acknowledge: Box::new(GatedAck { inner: delivery.acknowledge, gate }),
        })
    }
}

struct GatedAck {
    inner: Box<dyn Acknowledge>,
    gate: Gate,
}

#[async_trait]
impl Acknowledge for GatedAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        self.gate.pass().await;
        self.inner.ack().await
    }
}
