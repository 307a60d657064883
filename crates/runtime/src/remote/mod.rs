//! Components hosted by other processes, reached over a bus.
//!
//! Outbound, a message produced for a component this runtime does not host is stored in the
//! outbox with its transition like any other, then handed to the relay (`relay`), which
//! enqueues it on the target component's queue and notes when the broker confirmed it. It stays
//! in the outbox until the receiving runtime's receipt (`receipts`) says it is stored as done
//! there: a broker that loses what it had confirmed (restarted without persistence) loses no
//! message. A periodic sweep of the outbox sends again what the relay could not send (broker
//! down, relay queue full) and what got no receipt within `RELAY_RESEND_AFTER` (doubling per
//! message up to `RELAY_RESEND_MAX`).
//!
//! Inbound, each hosted component's queue is consumed (`inbound`): a delivery is placed on the
//! shards like a stored message (a redelivered or resent one first learns from the inbox which
//! instances applied it already), and is acknowledged to the broker, and receipted to its
//! sender, only once the commit that applied it, or dead-lettered it, or dropped it as a
//! duplicate, is stored. A process that dies before that ack gets the message again, and the
//! inbox drops it for every instance that applied it.

mod cluster;
mod inbound;
mod monitor;
mod partitioned;
mod reads;
mod receipts;
mod relay;
mod reply;
pub(crate) mod wire;

use crate::handle::RuntimeHandle;
use crate::partition::Directory;
use crate::shared::Shared;
use futures_util::future::join_all;
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xcomponent_core::bus::{Acknowledge, Bus};
use xcomponent_core::lease::{Partition, partition_copy_id};
use xcomponent_core::message::{Envelope, MessageId};

pub use cluster::{ClusterOptions, ClusterView, DEFAULT_REPLY_TIMEOUT, DEFAULT_RUNTIME_TIMEOUT};
pub(crate) use inbound::{Intake, consume, consume_hosted_components};
pub use monitor::MAX_QUERY_INSTANCES;
pub(crate) use relay::run_relay;

/// Envelopes waiting for the relay; past it they stay in the outbox for the next sweep.
pub const RELAY_QUEUE_CAPACITY: usize = 65_536;

/// How often the relay sweeps the outbox for messages to other components that were not sent.
pub const RELAY_SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// How old an outbox message must be before a sweep re-sends it (younger ones are on their way
/// through the relay queue).
pub const RELAY_SWEEP_MIN_AGE: Duration = Duration::from_secs(1);

/// How long the relay waits for the receipt of a message the broker confirmed before the sweep
/// sends it again (the receiver's inbox drops the copy and receipts it again). Doubled at each
/// resend of the same message, up to `RELAY_RESEND_MAX`.
pub const RELAY_RESEND_AFTER: Duration = Duration::from_secs(15);

/// The longest wait between two sends of a message without a receipt (its receiver may be
/// down for long: its queue keeps the first copy, more copies only cost space).
pub const RELAY_RESEND_MAX: Duration = Duration::from_secs(300);

/// Messages whose send time the relay remembers while they wait for their receipt; past it a
/// confirmed message is not noted and the sweep may send it once more than needed.
pub const RELAY_TRACKED_MAX: usize = 262_144;

/// Default for `BusConfig::heartbeat_interval` (the seeds' 30 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// How a runtime joins a bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// This runtime's name: its consumer name in every group (stable across restarts, so a
    /// broker can hand back what it held unacknowledged) and how dashboards show it.
    pub name: String,
    /// How often it tells dashboards it is alive.
    pub heartbeat_interval: Duration,
    /// Host of its HTTP API, announced to dashboards (empty: none).
    pub host: String,
    /// Port of its HTTP API, announced to dashboards (0: none).
    pub port: u16,
    /// How long a message the broker confirmed waits for its receipt before it is sent again
    /// (doubling at each resend, up to `RELAY_RESEND_MAX`); `RELAY_RESEND_AFTER` by default.
    pub resend_after: Duration,
}

impl BusConfig {
    /// A runtime named `name`, heartbeating every `DEFAULT_HEARTBEAT_INTERVAL`, with no HTTP API,
    /// sending a message again when its receipt is `RELAY_RESEND_AFTER` late.
    pub fn new(name: impl Into<String>) -> BusConfig {
        BusConfig {
            name: name.into(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            host: String::new(),
            port: 0,
            resend_after: RELAY_RESEND_AFTER,
        }
    }
}

/// The bus side of a running runtime.
pub(crate) struct Remote {
    pub bus: Arc<dyn Bus>,
    pub config: BusConfig,
    /// Drawn at start (the seeds' `runtimeId`).
    pub runtime_id: String,
    /// To the relay.
    pub outgoing: mpsc::Sender<Outgoing>,
    /// Deliveries applied but not yet acknowledged, by message id (a message delivered twice
    /// while the first is in flight has two).
    pub acks: Mutex<FxHashMap<MessageId, Held>>,
    /// Messages the broker confirmed, waiting for their receipt: when they were last sent and
    /// how many times (at most `RELAY_TRACKED_MAX`).
    pub sent: Mutex<FxHashMap<MessageId, Sent>>,
    /// Which components are shared by several runtimes, and by how many partitions.
    pub directory: Directory,
    /// Deliveries by selector sent as one copy per partition, waiting for each copy's receipt.
    pub fan_outs: Mutex<FanOuts>,
}

/// Deliveries by selector to a shared component, sent as one copy per partition
/// (`partition_copy_id`): the message leaves the outbox once every copy is receipted. At most
/// `RELAY_TRACKED_MAX` messages are tracked; past it a message is sent whole to every partition
/// each time (copies are dropped by the receivers' inboxes) until there is room.
#[derive(Debug, Default)]
pub(crate) struct FanOuts {
    /// Message → the partitions whose copy has no receipt yet.
    awaiting: FxHashMap<MessageId, BTreeSet<Partition>>,
    /// Copy id → its message and partition.
    copies: FxHashMap<MessageId, (MessageId, Partition)>,
}

impl FanOuts {
    /// The partitions of `message` (a component of `partitions` partitions) still to be sent:
    /// every one the first time, then those without a receipt.
    pub fn partitions_to_send(&mut self, message: MessageId, partitions: u32) -> Vec<Partition> {
        if let Some(awaiting) = self.awaiting.get(&message) {
            return awaiting.iter().copied().collect();
        }
        let all: BTreeSet<Partition> = (0..partitions).collect();
        if self.awaiting.len() < RELAY_TRACKED_MAX {
            for partition in &all {
                self.copies.insert(partition_copy_id(message, *partition), (message, *partition));
            }
            self.awaiting.insert(message, all.clone());
        }
        all.into_iter().collect()
    }

    /// The messages that `received` (receipted ids) finish: a plain message at once, a fan-out
    /// when its last copy is receipted.
    pub fn receipted(&mut self, received: Vec<MessageId>) -> Vec<MessageId> {
        let mut done = Vec::with_capacity(received.len());
        for id in received {
            let Some((message, partition)) = self.copies.remove(&id) else {
                done.push(id);
                continue;
            };
            let finished = self.awaiting.get_mut(&message).is_some_and(|awaiting| {
                awaiting.remove(&partition);
                awaiting.is_empty()
            });
            if finished {
                self.awaiting.remove(&message);
                done.push(message);
            }
        }
        done
    }

    /// Forgets messages no longer in the outbox (dead-lettered, or removed by another runtime).
    pub fn retain(&mut self, keep: impl Fn(&MessageId) -> bool) {
        self.awaiting.retain(|message, _| keep(message));
        let awaiting = &self.awaiting;
        self.copies.retain(|_, (message, _)| awaiting.contains_key(message));
    }
}

/// A stored envelope handed to the relay.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub envelope: Arc<Envelope>,
    /// It may have been sent before (the sweep, or the start after a crash): the receiver reads
    /// its inbox before applying it.
    pub resent: bool,
}

/// When a message waiting for its receipt was last confirmed by the broker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    /// Clock milliseconds.
    pub at: i64,
    /// Sends so far (the wait before the next one doubles with each).
    pub times: u32,
}

/// The held broker acknowledgements of a delivery and the component that sent it (who gets the
/// receipt).
#[derive(Default)]
pub(crate) struct Held {
    pub acks: Vec<Box<dyn Acknowledge>>,
    pub sender: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("bus", &self.bus).field("config", &self.config).finish()
    }
}

impl Remote {
    /// Creates the bus side and the receiving end of the relay queue.
    pub fn new(
        bus: Arc<dyn Bus>,
        config: BusConfig,
        directory: Directory,
    ) -> (Remote, mpsc::Receiver<Outgoing>) {
        let (outgoing, incoming) = mpsc::channel(RELAY_QUEUE_CAPACITY);
        let runtime_id = uuid::Uuid::now_v7().to_string();
        let acks = Mutex::new(FxHashMap::default());
        let sent = Mutex::new(FxHashMap::default());
        let fan_outs = Mutex::new(FanOuts::default());
        (Remote { bus, config, runtime_id, outgoing, acks, sent, directory, fan_outs }, incoming)
    }

    /// Hands a stored envelope for another process, just committed, to the relay. When the
    /// relay queue is full it stays in the outbox, and the next sweep sends it.
    pub fn send(&self, envelope: Arc<Envelope>) {
        self.hand_over(Outgoing { envelope, resent: false });
    }

    /// Hands a stored envelope that may have been sent before (found in the outbox at start)
    /// to the relay, marked so the receiver reads its inbox first.
    pub fn resend(&self, envelope: Arc<Envelope>) {
        self.hand_over(Outgoing { envelope, resent: true });
    }

    fn hand_over(&self, outgoing: Outgoing) {
        if let Err(error) = self.outgoing.try_send(outgoing) {
            tracing::debug!(%error, "Relay queue full; the message waits in the outbox for the sweep.");
        }
    }

    /// Keeps the broker acknowledgement of a delivery sent by `sender` until its message is
    /// stored as done. Returns true when the message was already being applied here (this
    /// delivery is a copy).
    pub fn hold(
        &self,
        id: MessageId,
        acknowledge: Box<dyn Acknowledge>,
        sender: Option<&str>,
    ) -> bool {
        let Ok(mut acks) = self.acks.lock() else { return false };
        let held = acks.entry(id).or_default();
        held.acks.push(acknowledge);
        if held.sender.is_none() {
            held.sender = sender.map(str::to_owned);
        }
        held.acks.len() > 1
    }

    /// Drops the held acknowledgements of a message that will not be applied now (the broker
    /// delivers it again once the consumer that got it has left the group).
    pub fn release(&self, id: MessageId) {
        if let Ok(mut acks) = self.acks.lock() {
            acks.remove(&id);
        }
    }

    /// Acknowledges a message now (a command answered with a failure: it will not be applied
    /// and must not come back).
    pub fn ack_now(&self, id: MessageId) {
        let acks: Vec<Box<dyn Acknowledge>> =
            self.take(&[id]).into_iter().flat_map(|(_, held)| held.acks).collect();
        if acks.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for acknowledge in acks {
                if let Err(error) = acknowledge.ack().await {
                    tracing::warn!(%error, "Bus acknowledgement failed; the command will come back and fail again.");
                }
            }
        });
    }

    /// Takes the held acknowledgements of messages that a successful commit marked done.
    fn take(&self, done: &[MessageId]) -> Vec<(MessageId, Held)> {
        let Ok(mut acks) = self.acks.lock() else { return Vec::new() };
        if acks.is_empty() {
            return Vec::new();
        }
        done.iter().filter_map(|id| acks.remove(id).map(|held| (*id, held))).collect()
    }
}

impl Shared {
    /// After a commit that marked `done` messages delivered (applied everywhere, duplicates, or
    /// dead-lettered): acknowledges the bus deliveries they came from and sends their receipts,
    /// one bus message per sending component.
    pub fn settle_deliveries(&self, done: &[MessageId]) {
        let Some(remote) = &self.remote else { return };
        let held = remote.take(done);
        if held.is_empty() {
            return;
        }
        let mut acks = Vec::with_capacity(held.len());
        let mut receipts: Vec<(String, Vec<MessageId>)> = Vec::new();
        for (id, held) in held {
            acks.extend(held.acks);
            let Some(sender) = held.sender else { continue };
            match receipts.iter_mut().find(|(component, _)| *component == sender) {
                Some((_, ids)) => ids.push(id),
                None => receipts.push((sender, vec![id])),
            }
        }
        let bus = remote.bus.clone();
        // All at once: a backend with a round trip per ack (NATS AckAck, Redis XACK) overlaps
        // them on its connection instead of queueing them one behind the other.
        tokio::spawn(async move {
            let acknowledged = join_all(acks.into_iter().map(|acknowledge| acknowledge.ack()));
            let receipted = join_all(
                receipts.iter().map(|(sender, ids)| receipts::send(bus.as_ref(), sender, ids)),
            );
            let (outcomes, _) = futures_util::future::join(acknowledged, receipted).await;
            for error in outcomes.into_iter().filter_map(Result::err) {
                // Not lost: the broker delivers it again and the inbox drops it.
                tracing::warn!(%error, "Bus acknowledgement failed; the message will come back as a duplicate.");
            }
        });
    }

    /// Whether `component` is hosted by another process (not here, and a bus is joined).
    pub fn is_remote(&self, component: &str) -> bool {
        self.remote.is_some() && self.registry.index_of(component).is_none()
    }

    /// Whether a stored message was produced here: by a component hosted here and, for a
    /// component shared with other runtimes, by an instance of a partition this runtime owns
    /// (the owner of a partition re-sends its outbox). A store shared by several runtimes holds
    /// every runtime's outbox; each re-sends only its own messages.
    pub fn produced_here(&self, envelope: &Envelope) -> bool {
        let source = envelope.source_component.as_deref().unwrap_or(&envelope.component);
        if self.registry.index_of(source).is_none() {
            return false;
        }
        envelope.source_instance.is_none_or(|instance| self.owns(source, &instance))
    }
}

/// Starts the relay, the consumers of the hosted components' queues and the monitor.
pub(crate) fn start(
    handle: &RuntimeHandle,
    relay_queue: mpsc::Receiver<Outgoing>,
) -> Vec<JoinHandle<()>> {
    let shared = &handle.shared;
    let mut tasks = vec![tokio::spawn(run_relay(shared.clone(), relay_queue))];
    tasks.push(tokio::spawn(receipts::run_receipts(shared.clone())));
    tasks.extend(consume_hosted_components(shared));
    if let Some(remote) = &shared.remote {
        let identity = monitor::Identity {
            runtime_id: remote.runtime_id.clone(),
            name: remote.config.name.clone(),
            host: remote.config.host.clone(),
            port: remote.config.port,
        };
        let heartbeat = remote.config.heartbeat_interval;
        tasks.push(tokio::spawn(monitor::run_monitor(handle.clone(), identity, heartbeat)));
    }
    tasks
}
