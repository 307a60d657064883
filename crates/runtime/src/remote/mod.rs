//! Components hosted by other processes, reached over a bus.
//!
//! Outbound, a message produced for a component this runtime does not host is stored in the
//! outbox with its transition like any other, then handed to the relay (`relay`), which
//! enqueues it on the target component's queue and removes it from the outbox once the broker
//! confirmed it. A periodic sweep of the outbox re-sends what the relay could not (broker down,
//! relay queue full, crash between commit and confirm).
//!
//! Inbound, each hosted component's queue is consumed (`inbound`): a delivery is placed on the
//! shards like a stored message (a redelivered one first learns from the inbox which instances
//! applied it already), and is acknowledged to the broker only once the commit that applied it,
//! or dead-lettered it, is stored. A process that dies before that ack gets the message again,
//! and the inbox drops it for every instance that applied it.

mod cluster;
mod inbound;
mod monitor;
mod reads;
mod relay;
mod reply;
pub(crate) mod wire;

use crate::handle::RuntimeHandle;
use crate::shared::Shared;
use futures_util::future::join_all;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xcomponent_core::bus::{Acknowledge, Bus};
use xcomponent_core::message::{Envelope, MessageId};

pub use cluster::{ClusterOptions, ClusterView, DEFAULT_REPLY_TIMEOUT, DEFAULT_RUNTIME_TIMEOUT};
pub(crate) use inbound::consume_hosted_components;
pub use monitor::MAX_QUERY_INSTANCES;
pub(crate) use relay::run_relay;

/// Envelopes waiting for the relay; past it they stay in the outbox for the next sweep.
pub const RELAY_QUEUE_CAPACITY: usize = 65_536;

/// How often the relay sweeps the outbox for messages to other components that were not sent.
pub const RELAY_SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// How old an outbox message must be before a sweep re-sends it (younger ones are on their way
/// through the relay queue).
pub const RELAY_SWEEP_MIN_AGE: Duration = Duration::from_secs(1);

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
}

impl BusConfig {
    /// A runtime named `name`, heartbeating every `DEFAULT_HEARTBEAT_INTERVAL`, with no HTTP API.
    pub fn new(name: impl Into<String>) -> BusConfig {
        BusConfig {
            name: name.into(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            host: String::new(),
            port: 0,
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
    pub outgoing: mpsc::Sender<Arc<Envelope>>,
    /// Deliveries applied but not yet acknowledged, by message id (a message delivered twice
    /// while the first is in flight has two).
    pub acks: Mutex<FxHashMap<MessageId, Vec<Box<dyn Acknowledge>>>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("bus", &self.bus).field("config", &self.config).finish()
    }
}

impl Remote {
    /// Creates the bus side and the receiving end of the relay queue.
    pub fn new(bus: Arc<dyn Bus>, config: BusConfig) -> (Remote, mpsc::Receiver<Arc<Envelope>>) {
        let (outgoing, incoming) = mpsc::channel(RELAY_QUEUE_CAPACITY);
        let runtime_id = uuid::Uuid::now_v7().to_string();
        let acks = Mutex::new(FxHashMap::default());
        (Remote { bus, config, runtime_id, outgoing, acks }, incoming)
    }

    /// Hands a stored envelope for another process to the relay. When the relay queue is full
    /// it stays in the outbox, and the next sweep sends it.
    pub fn send(&self, envelope: Arc<Envelope>) {
        if let Err(error) = self.outgoing.try_send(envelope) {
            tracing::debug!(%error, "Relay queue full; the message waits in the outbox for the sweep.");
        }
    }

    /// Keeps the broker acknowledgement of a delivery until its message is stored as done.
    /// Returns true when the message was already being applied here (this delivery is a copy).
    pub fn hold(&self, id: MessageId, acknowledge: Box<dyn Acknowledge>) -> bool {
        let Ok(mut acks) = self.acks.lock() else { return false };
        let held = acks.entry(id).or_default();
        held.push(acknowledge);
        held.len() > 1
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
        let acks = self.take(&[id]);
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

    /// Takes the acknowledgements of messages that a successful commit marked done.
    fn take(&self, done: &[MessageId]) -> Vec<Box<dyn Acknowledge>> {
        let Ok(mut acks) = self.acks.lock() else { return Vec::new() };
        if acks.is_empty() {
            return Vec::new();
        }
        done.iter().filter_map(|id| acks.remove(id)).flatten().collect()
    }
}

impl Shared {
    /// After a commit that marked `done` messages delivered (applied everywhere, duplicates, or
    /// dead-lettered): acknowledges the bus deliveries they came from.
    pub fn settle_deliveries(&self, done: &[MessageId]) {
        let Some(remote) = &self.remote else { return };
        let acks = remote.take(done);
        if acks.is_empty() {
            return;
        }
        // All at once: a backend with a round trip per ack (NATS AckAck, Redis XACK) overlaps
        // them on its connection instead of queueing them one behind the other.
        tokio::spawn(async move {
            let outcomes = join_all(acks.into_iter().map(|acknowledge| acknowledge.ack())).await;
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

    /// Whether a stored message was produced by a component hosted here. A store shared by
    /// several runtimes holds every runtime's outbox; each re-sends only its own messages.
    pub fn produced_here(&self, envelope: &Envelope) -> bool {
        let source = envelope.source_component.as_deref().unwrap_or(&envelope.component);
        self.registry.index_of(source).is_some()
    }
}

/// Starts the relay, the consumers of the hosted components' queues and the monitor.
pub(crate) fn start(
    handle: &RuntimeHandle,
    relay_queue: mpsc::Receiver<Arc<Envelope>>,
) -> Vec<JoinHandle<()>> {
    let shared = &handle.shared;
    let mut tasks = vec![tokio::spawn(run_relay(shared.clone(), relay_queue))];
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
