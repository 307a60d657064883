//! Partition ownership: the lease keeper that lets several runtimes host one component.
//!
//! Each round (`LeaseKeeper::tick`, every `ttl / RENEWALS_PER_TTL` in `LeaseKeeper::run`):
//! 1. renew every lease held, in one store call; a lease the store says is lost (another epoch
//!    took it) is dropped at once, and so is every lease not renewed within its ttl by this
//!    process's own clock (the store unreachable): past that point another runtime may hold it;
//! 2. read each component's lease table and compute the fair share: the partition count divided
//!    by the runtimes holding a live lease (this one included), rounded up;
//! 3. take free, released or expired partitions up to that share; a partition held beyond it (a
//!    runtime joined) is first withdrawn from the published ownership (the runtime stops taking
//!    work for it and finishes what it started), then released at the next round, so the joining
//!    runtime need not wait for an expiry.
//!
//! The ownership (component → partition → lease epoch) is published on a `watch` channel after
//! every round that changed it. Commits name those epochs (`CommitBatch::fences`): whatever the
//! keeper believes, the store refuses a write relying on an epoch that is no longer current.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use xcomponent_core::lease::{
    DEFAULT_PARTITIONS, Fence, Lease, LeaseStore, LeaseTable, Partition, Renewal,
};
use xcomponent_core::store::{Error as StoreError, EventStore};

/// Lease renewals per ttl: a lease survives two missed renewals.
pub const RENEWALS_PER_TTL: u32 = 3;

/// Lease duration when the runtime does not set one.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Shortest lease duration accepted (renewals every third of it must be possible).
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(300);

/// How a runtime shares its components' partitions.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// This runtime's name: the owner written in its leases (unique among running runtimes).
    pub owner: String,
    /// How long a lease lasts without renewal (by the store's clock).
    pub ttl: Duration,
    /// Partition count asked for a component that has none stored yet.
    pub partitions: u32,
}

impl LeaseConfig {
    /// The defaults for `owner`.
    pub fn new(owner: impl Into<String>) -> LeaseConfig {
        LeaseConfig { owner: owner.into(), ttl: DEFAULT_LEASE_TTL, partitions: DEFAULT_PARTITIONS }
    }
}

/// Errors of the lease keeper.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The store keeps no leases (SQLite: one host).
    #[error(
        "the {0} store belongs to one host and cannot share a component between runtimes: use PostgreSQL or Redis"
    )]
    Unsupported(&'static str),
    /// The ttl is too short.
    #[error("a lease ttl of {0:?} is too short (at least {MIN_LEASE_TTL:?})")]
    TtlTooShort(Duration),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The partitions one component has and those this runtime owns, with their epochs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentOwnership {
    /// The component's partition count.
    pub partitions: u32,
    /// Owned partitions → the epoch commits must carry.
    pub owned: BTreeMap<Partition, u64>,
}

/// What this runtime owns, by component.
pub type Ownership = BTreeMap<String, ComponentOwnership>;

/// FNV-1a: a stable hash of a runtime's name (where it starts looking for free partitions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A lease held, with when this process last saw it renewed.
#[derive(Debug, Clone)]
struct Held {
    lease: Lease,
    /// Local time of the last successful acquisition or renewal.
    renewed: Instant,
    /// Withdrawn from the ownership (beyond the fair share): released at the next round.
    withdrawn: bool,
}

/// Acquires, renews and releases the leases of the components a runtime hosts.
pub struct LeaseKeeper {
    store: Arc<dyn EventStore>,
    config: LeaseConfig,
    /// Hosted components and their partition counts.
    components: BTreeMap<String, u32>,
    held: BTreeMap<(String, Partition), Held>,
    published: watch::Sender<Ownership>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper").field("owner", &self.config.owner).finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// A keeper for `components` (their partition counts read or fixed now). Fails on a store
    /// without leases, a ttl below `MIN_LEASE_TTL`, or a store error.
    pub async fn new(
        store: Arc<dyn EventStore>,
        components: impl IntoIterator<Item = String>,
        config: LeaseConfig,
    ) -> Result<LeaseKeeper, LeaseError> {
        if config.ttl < MIN_LEASE_TTL {
            return Err(LeaseError::TtlTooShort(config.ttl));
        }
        let leases = store.leases().ok_or(LeaseError::Unsupported(store.backend()))?;
        let mut counts = BTreeMap::new();
        for component in components {
            let count = leases.partitions(&component, config.partitions).await?;
            if count != config.partitions {
                tracing::info!(
                    component,
                    stored = count,
                    asked = config.partitions,
                    "the component's partition count was fixed earlier; keeping it"
                );
            }
            counts.insert(component, count);
        }
        let ownership = counts
            .iter()
            .map(|(c, p)| {
                (c.clone(), ComponentOwnership { partitions: *p, owned: BTreeMap::new() })
            })
            .collect();
        let (published, _) = watch::channel(ownership);
        Ok(LeaseKeeper { store, config, components: counts, held: BTreeMap::new(), published })
    }

    /// The ownership as published after each round.
    pub fn subscribe(&self) -> watch::Receiver<Ownership> {
        self.published.subscribe()
    }

    /// How often `run` calls `tick`.
    pub fn interval(&self) -> Duration {
        self.config.ttl / RENEWALS_PER_TTL
    }

    fn leases(&self) -> Result<&dyn LeaseStore, LeaseError> {
        self.store.leases().ok_or(LeaseError::Unsupported(self.store.backend()))
    }

    /// One round: release what was withdrawn, renew, take the fair share, withdraw the surplus,
    /// publish. A store error ends the round early (what was done stays); leases past their
    /// local deadline are dropped even then.
    pub async fn tick(&mut self) -> Result<(), LeaseError> {
        let result = self.round().await;
        self.drop_overdue(Instant::now());
        self.publish();
        result
    }

    async fn round(&mut self) -> Result<(), LeaseError> {
        self.release_withdrawn().await?;
        self.renew().await?;
        let components: Vec<String> = self.components.keys().cloned().collect();
        for component in components {
            self.leases()?.join(&component, &self.config.owner, self.config.ttl).await?;
            let table = self.leases()?.lease_table(&component).await?;
            self.take_share(&component, &table).await?;
        }
        Ok(())
    }

    async fn release_withdrawn(&mut self) -> Result<(), LeaseError> {
        let withdrawn: Vec<(String, Partition)> =
            self.held.iter().filter(|(_, h)| h.withdrawn).map(|(key, _)| key.clone()).collect();
        for key in withdrawn {
            if let Some(held) = self.held.get(&key) {
                self.leases()?.release(&held.lease.fence()).await?;
                tracing::info!(component = key.0, partition = key.1, "partition handed over");
                self.held.remove(&key);
            }
        }
        Ok(())
    }

    async fn renew(&mut self) -> Result<(), LeaseError> {
        let fences: Vec<Fence> = self.held.values().map(|h| h.lease.fence()).collect();
        if fences.is_empty() {
            return Ok(());
        }
        let outcomes = self.leases()?.renew(&self.config.owner, &fences, self.config.ttl).await?;
        let now = Instant::now();
        for (fence, outcome) in fences.iter().zip(outcomes) {
            let key = (fence.component.clone(), fence.partition);
            match outcome {
                Renewal::Renewed(expires_at) => {
                    if let Some(held) = self.held.get_mut(&key) {
                        held.lease.expires_at = expires_at;
                        held.renewed = now;
                    }
                }
                Renewal::Lost => {
                    tracing::warn!(
                        component = fence.component,
                        partition = fence.partition,
                        epoch = fence.epoch,
                        "lease lost to another runtime; partition dropped"
                    );
                    self.held.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Takes free partitions up to the fair share, or withdraws what is beyond it.
    async fn take_share(&mut self, component: &str, table: &LeaseTable) -> Result<(), LeaseError> {
        let partitions = self.components.get(component).copied().unwrap_or(table.partitions);
        let live = |lease: &&Lease| lease.is_live(table.now);
        let mut owners: BTreeSet<&str> =
            table.leases.iter().filter(live).map(|l| l.owner.as_str()).collect();
        owners.extend(
            table.members.iter().filter(|(_, until)| *until > table.now).map(|(o, _)| o.as_str()),
        );
        owners.insert(self.config.owner.as_str());
        let share = partitions.div_ceil(owners.len().max(1) as u32) as usize;
        let mine: Vec<Partition> = self
            .held
            .iter()
            .filter(|((c, _), h)| c == component && !h.withdrawn)
            .map(|((_, p), _)| *p)
            .collect();
        if mine.len() > share {
            for partition in mine.iter().rev().take(mine.len() - share) {
                if let Some(held) = self.held.get_mut(&(component.to_owned(), *partition)) {
                    held.withdrawn = true;
                }
            }
            return Ok(());
        }
        let taken: BTreeSet<Partition> =
            table.leases.iter().filter(live).map(|l| l.partition).collect();
        // Start at a point that depends on the owner's name, so that runtimes starting
        // together do not all race for partition 0.
        let offset = (fnv1a(self.config.owner.as_bytes()) % u64::from(partitions.max(1))) as u32;
        let free = (0..partitions)
            .map(|n| (n + offset) % partitions)
            .filter(|p| !taken.contains(p) && !self.held.contains_key(&(component.to_owned(), *p)));
        let mut wanted = share - mine.len();
        for partition in free.collect::<Vec<_>>() {
            if wanted == 0 {
                break;
            }
            let leases = self.leases()?;
            if let Some(lease) =
                leases.acquire(component, partition, &self.config.owner, self.config.ttl).await?
            {
                tracing::info!(component, partition, epoch = lease.epoch, "partition acquired");
                let held = Held { lease, renewed: Instant::now(), withdrawn: false };
                self.held.insert((component.to_owned(), partition), held);
                wanted -= 1;
            }
        }
        Ok(())
    }

    /// Drops every lease not renewed within its ttl by this process's clock.
    fn drop_overdue(&mut self, now: Instant) {
        let ttl = self.config.ttl;
        self.held.retain(|(component, partition), held| {
            let keep = now.duration_since(held.renewed) < ttl;
            if !keep {
                tracing::warn!(
                    component,
                    partition,
                    "lease not renewed within its ttl; partition dropped"
                );
            }
            keep
        });
    }

    fn publish(&self) {
        let mut ownership: Ownership = self
            .components
            .iter()
            .map(|(c, p)| {
                (c.clone(), ComponentOwnership { partitions: *p, owned: BTreeMap::new() })
            })
            .collect();
        for ((component, partition), held) in &self.held {
            if let Some(entry) = ownership.get_mut(component)
                && !held.withdrawn
            {
                entry.owned.insert(*partition, held.lease.epoch);
            }
        }
        self.published.send_if_modified(|current| {
            let changed = *current != ownership;
            if changed {
                *current = ownership;
            }
            changed
        });
    }

    /// Gives every lease up (graceful shutdown, after the runtime drained its work).
    pub async fn release_all(&mut self) -> Result<(), LeaseError> {
        for held in self.held.values_mut() {
            held.withdrawn = true;
        }
        self.publish();
        self.release_withdrawn().await?;
        for component in self.components.keys() {
            self.leases()?.join(component, &self.config.owner, Duration::ZERO).await?;
        }
        Ok(())
    }

    /// Runs rounds every `interval()` (and at once when `wake` is notified: a commit was
    /// fenced) until `stop` turns true, then releases every lease.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, wake: Arc<tokio::sync::Notify>) {
        let mut ticker = tokio::time::interval(self.interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = wake.notified() => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "lease round failed; retried at the next");
            }
        }
        if let Err(error) = self.release_all().await {
            tracing::warn!(%error, "leases not released at shutdown; they expire on their own");
        }
    }
}
