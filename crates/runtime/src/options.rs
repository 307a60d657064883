//! Runtime settings, each with a named default and a bound.

use std::time::Duration;

/// Default number of events after which an instance gets a snapshot.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10;
/// Default capacity of each shard's external inbox (callers wait when it is full).
pub const DEFAULT_INBOX_CAPACITY: usize = 8192;
/// Default most messages a shard takes in one batch (one store commit).
pub const DEFAULT_MAX_BATCH: usize = 4096;
/// Default bound on internal messages in flight (effects between shards) before shards stop
/// taking external work until the backlog drains.
pub const DEFAULT_MAX_INTERNAL_IN_FLIGHT: usize = 1_000_000;
/// Default bound on the length of a chain of events caused by one external event
/// (cascades, self-sends, parent notifications): deeper chains are cut and reported.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 256;
/// Default for `RuntimeOptions::max_data_bytes`: 256 KiB of instance data (its JSON).
pub const DEFAULT_MAX_DATA_BYTES: usize = 256 * 1024;
/// Default for `RuntimeOptions::max_payload_bytes`: 64 KiB per event payload (its JSON).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Default for `RuntimeOptions::inbox_retention`: one day.
pub const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Whether creations are held to their machine's `contextSchema`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContextSchemaMode {
    /// A creation whose initial data lacks a `required` field or gives a field another type than
    /// the declared one is refused (`RuntimeError::ContextSchema`; a routed creation becomes a
    /// dead letter). Entry points the runtime creates at start have no data to give: only the
    /// types of what they hold are checked.
    #[default]
    Enforced,
    /// `contextSchema` only describes forms, as in the original: any initial data is accepted.
    Lenient,
}

/// How timers are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// Shards sleep until the next deadline of the clock (production).
    Realtime,
    /// Timers fire only when `RuntimeHandle::tick` is called (tests with a `ManualClock`).
    Manual,
}

/// Settings of a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Number of shards (each a task owning a disjoint set of instances); default: the number of
    /// cores.
    pub shards: usize,
    /// Snapshot every N events of an instance (and always at final/error).
    pub snapshot_interval: u64,
    /// Capacity of each shard's external inbox.
    pub inbox_capacity: usize,
    /// Most messages a shard processes per batch (per store commit).
    pub max_batch: usize,
    /// How long a shard waits for more messages to fill a batch when a store is used (0: commit
    /// what is there at once).
    pub commit_delay: Duration,
    /// Bound on internal messages in flight.
    pub max_internal_in_flight: usize,
    /// Bound on the depth of event chains.
    pub max_chain_depth: u32,
    /// How timers are driven.
    pub timer_mode: TimerMode,
    /// How long inbox entries (which instance applied which message) are kept. A message can
    /// come back only while it is still in an outbox (then its entries are never purged) or,
    /// once a bus carries messages, while a broker holds it unacknowledged; a window far longer
    /// than either is safe.
    pub inbox_retention: Duration,
    /// Largest instance data, in bytes of its JSON: a transition (or creation) whose resulting
    /// data is larger is refused with `RuntimeError::DataTooLarge` and the instance is unchanged,
    /// whether the payload merge or a hook grew it.
    pub max_data_bytes: usize,
    /// Largest payload of an event sent through the `RuntimeHandle` (and initial data of a
    /// creation), in bytes of its JSON: larger ones are refused with
    /// `RuntimeError::PayloadTooLarge` before they reach a shard.
    pub max_payload_bytes: usize,
    /// Whether creations must satisfy their machine's `contextSchema` (default: enforced).
    pub context_schema: ContextSchemaMode,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            shards: std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(1),
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            commit_delay: Duration::ZERO,
            max_internal_in_flight: DEFAULT_MAX_INTERNAL_IN_FLIGHT,
            max_chain_depth: DEFAULT_MAX_CHAIN_DEPTH,
            timer_mode: TimerMode::Realtime,
            inbox_retention: DEFAULT_INBOX_RETENTION,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            context_schema: ContextSchemaMode::Enforced,
        }
    }
}
