//! The messaging contract between processes: durable queues for what must arrive (cross-component
//! messages and commands) and fan-out channels for what may be missed (monitoring).
//!
//! A **queue** is read by one consumer group; within the group a message goes to one member, is
//! delivered again until that member acknowledges it, and messages keep the order they were
//! enqueued in for one consumer (a message redelivered after its member died may come after
//! messages enqueued later, as brokers that redeliver after a timeout hand out what is ready
//! meanwhile; NATS also hands back the messages whose timeout expired together in no set order).
//! The runtime acknowledges a delivery only after the commit that applied it (or
//! dead-lettered it) is stored, so a process that dies before its ack gets the message again
//! after restart, and the inbox drops what was applied already.
//!
//! A **channel** is plain publish/subscribe: every subscriber connected at the time gets the
//! message, at most once. Monitoring (announce, heartbeat, state changes) uses channels.
//!
//! Backends live in the `xcomponent-bus` crate, one cargo feature each, and all pass the same
//! conformance suite. Names given to the trait are logical (`xcomponent:Payment`,
//! `fsm:events:state_change`); each backend maps them to its own naming rules (`BusNaming`).

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// The queue of a component: where the messages and commands for its instances arrive.
pub fn component_queue(component: &str) -> String {
    format!("xcomponent:{component}")
}

/// The queue of one partition of a component shared by several runtimes
/// (`crate::lease`): only the runtime holding the partition's lease consumes it.
pub fn partition_queue(component: &str, partition: crate::lease::Partition) -> String {
    format!("xcomponent:{component}:{partition}")
}

/// The channel on which the runtimes that received messages from `component` send back their
/// receipts (end to end: the message is stored as done at its destination); the runtimes
/// hosting `component` subscribe to it and remove the receipted messages from their outbox.
pub fn receipt_channel(component: &str) -> String {
    format!("fsm:receipts:{component}")
}

/// The consumer group of the runtimes hosting a component (every runtime hosting it joins it).
pub const RUNTIME_GROUP: &str = "xcomponent-runtimes";

/// The monitoring and command channels the runtimes and dashboards share (the seeds' names).
/// Channels are at most once; what must arrive travels on component queues.
pub mod channels {
    /// A runtime announces each component it hosts (at start, and when asked to).
    pub const ANNOUNCE: &str = "fsm:registry:announce";
    /// A runtime is alive (every `heartbeat_interval`).
    pub const HEARTBEAT: &str = "fsm:registry:heartbeat";
    /// A runtime stops.
    pub const SHUTDOWN: &str = "fsm:registry:shutdown";
    /// A dashboard asks every runtime to announce itself.
    pub const DISCOVER: &str = "fsm:registry:discover";
    /// An instance changed state.
    pub const STATE_CHANGE: &str = "fsm:events:state_change";
    /// An instance was created.
    pub const INSTANCE_CREATED: &str = "fsm:events:instance_created";
    /// An instance reached a final or error state.
    pub const INSTANCE_COMPLETED: &str = "fsm:events:instance_completed";
    /// Send an event to an instance (the runtime that holds it acts).
    pub const TRIGGER_EVENT: &str = "fsm:commands:trigger_event";
    /// Create an instance (the runtime hosting the component acts).
    pub const CREATE_INSTANCE: &str = "fsm:commands:create_instance";
    /// Send an event to every instance of a machine matching filters (each runtime hosting the
    /// component acts on the instances it holds and answers with how many took it).
    pub const BROADCAST: &str = "fsm:commands:broadcast";
    /// A cross-component event by matching rules (the original's form; our runtimes use queues).
    pub const CROSS_COMPONENT_EVENT: &str = "fsm:commands:cross_component_event";
    /// A dashboard asks every runtime for its live instances.
    pub const QUERY_INSTANCES: &str = "fsm:commands:query_instances";
    /// A runtime's answer to `QUERY_INSTANCES`.
    pub const QUERY_RESPONSE: &str = "fsm:responses:query";
    /// A runtime's answer to a command that carried a `requestId`.
    pub const COMMAND_RESPONSE: &str = "fsm:responses:command";
    /// A dashboard without the runtimes' store reads history, records and dead letters from
    /// every runtime's store.
    pub const STORE_READ: &str = "fsm:queries:store";
    /// A runtime's answer to `STORE_READ`.
    pub const STORE_READ_RESPONSE: &str = "fsm:responses:store";
    /// Version of the JSON layout of every message on these channels (`schemaVersion`).
    pub const SCHEMA_VERSION: u32 = 1;

    /// What a command's `replyTo` must start with: answers go to response channels only, never
    /// onto a command, event or registry channel (where they would be read as one).
    pub const REPLY_CHANNEL_PREFIX: &str = "fsm:responses:";
    /// The longest `replyTo` accepted, prefix included (every broker's name limit is above it
    /// once mapped: Kafka's 249 characters with the `xcomponent.` prefix, RabbitMQ's 255-byte
    /// routing keys).
    pub const MAX_REPLY_CHANNEL_LEN: usize = 128;

    /// Checks a command's `replyTo`: `fsm:responses:` followed by at least one of the letters,
    /// digits, `_`, `-`, `:` and `.` (no broker wildcard, no space), `MAX_REPLY_CHANNEL_LEN`
    /// characters at most. The error says what is wrong.
    pub fn check_reply_channel(name: &str) -> Result<(), String> {
        if name.len() > MAX_REPLY_CHANNEL_LEN {
            return Err(format!(
                "replyTo is {} characters long; at most {MAX_REPLY_CHANNEL_LEN} are allowed",
                name.len()
            ));
        }
        let Some(suffix) = name.strip_prefix(REPLY_CHANNEL_PREFIX) else {
            return Err(format!("replyTo must start with {REPLY_CHANNEL_PREFIX}"));
        };
        if suffix.is_empty() {
            return Err(format!("replyTo needs a name after {REPLY_CHANNEL_PREFIX}"));
        }
        if let Some(bad) = suffix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')))
        {
            return Err(format!(
                "replyTo may hold letters, digits, '_', '-', ':' and '.' only, not {bad:?}"
            ));
        }
        Ok(())
    }
}

/// An infrastructure failure of a bus operation.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL or an option is invalid, or a backend is not compiled in.
    #[error("bus configuration: {0}")]
    Config(String),
    /// The broker could not be reached or refused the operation; the operation may be retried.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The broker did not confirm in time (`BusOptions::operation_timeout`).
    #[error("bus operation timed out after {0:?}")]
    Timeout(Duration),
    /// The consumer or subscription was closed.
    #[error("bus consumer closed")]
    Closed,
}

/// Result of a bus operation.
pub type BusResult<T> = Result<T, BusError>;

/// A message on a durable queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The message id (the envelope's id): the same on every delivery of this message.
    pub id: String,
    /// Ordering key (the target instance, or the component for a fan-out); kept as a header so
    /// partitioned deployments can route by it.
    pub key: String,
    /// The encoded envelope or command.
    pub body: Vec<u8>,
}

/// How far `Bus::enqueue_many` got before it failed.
#[derive(Debug)]
pub struct EnqueueFailure {
    /// The messages before this index are stored; the one at it was not confirmed, and those
    /// after it may or may not be stored.
    pub confirmed: usize,
    /// Why the message at `confirmed` was not confirmed.
    pub error: BusError,
}

/// Settles one delivery. Dropping it without `ack` leaves the message unacknowledged: the
/// broker delivers it again (to this group) after the consumer is gone or after
/// `BusOptions::redelivery_after`.
#[async_trait]
pub trait Acknowledge: Send + Sync {
    /// Tells the broker the message is done with; it will not be delivered again.
    async fn ack(self: Box<Self>) -> BusResult<()>;
}

/// One delivery of a queue message.
pub struct Delivery {
    /// The message.
    pub message: QueueMessage,
    /// `false` only when the backend knows this is the first delivery; `true` when it is, or
    /// may be, a redelivery (the receiver then checks its inbox before applying).
    pub redelivered: bool,
    /// Settles the delivery.
    pub acknowledge: Box<dyn Acknowledge>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Acknowledges the delivery.
    pub async fn ack(self) -> BusResult<()> {
        self.acknowledge.ack().await
    }
}

/// A member of a queue's consumer group. Dropping it leaves the group: its unacknowledged
/// messages go to the other members (or to the next member to join).
#[async_trait]
pub trait QueueConsumer: Send {
    /// The next delivery. Waits for one; reconnects on its own after a broker restart, and
    /// returns an error only when the consumer cannot go on (`Closed`, `Config`).
    async fn next(&mut self) -> BusResult<Delivery>;
}

/// A message published on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The logical channel name it was published on.
    pub channel: String,
    /// The payload (JSON).
    pub body: Vec<u8>,
}

/// A subscription to one or more channels.
#[async_trait]
pub trait Subscription: Send {
    /// The next message on any of the subscribed channels. Messages published while the
    /// subscriber was disconnected are lost (channels are at most once).
    async fn next(&mut self) -> BusResult<Published>;
}

/// A message broker.
#[async_trait]
pub trait Bus: Send + Sync + fmt::Debug {
    /// Backend name (`memory`, `redis`, `rabbitmq`, `kafka`, `nats`).
    fn backend(&self) -> &'static str;

    /// Stores `message` on `queue` and returns once the broker confirmed it (publisher
    /// confirm, stream append, produce ack). Creates the queue when needed.
    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()>;

    /// Stores `messages` on `queue` in this order and returns once the broker confirmed them
    /// all. The default enqueues them one after the other, stopping at the first failure.
    /// Backends that can have several messages in flight on one connection without the broker
    /// reordering them (a confirm channel, a pipeline, a stream of acknowledged publishes)
    /// override it to wait for one round trip instead of one per message.
    ///
    /// On failure, the messages before `EnqueueFailure::confirmed` are stored. The later ones
    /// may be stored too (they were in flight): whoever sends them again may so make a copy,
    /// which receivers drop by id, and such a later message may then be delivered before the
    /// unconfirmed one it followed.
    async fn enqueue_many(
        &self,
        queue: &str,
        messages: &[QueueMessage],
    ) -> Result<(), EnqueueFailure> {
        for (index, message) in messages.iter().enumerate() {
            self.enqueue(queue, message)
                .await
                .map_err(|error| EnqueueFailure { confirmed: index, error })?;
        }
        Ok(())
    }

    /// Joins `group` on `queue` as `consumer` (a name stable across restarts of one process
    /// lets a backend hand it back its own pending messages at once).
    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>>;

    /// `consume`, for a caller that guarantees it is the queue's only consumer while it reads
    /// (it holds the lease of the queue's partition, `crate::lease`): a backend whose broker
    /// arbitrates group members (Kafka's rebalances) may read the queue directly, resuming from
    /// the group's committed position, instead of joining the group and waiting for the
    /// members of a dead process to time out. The default joins the group as `consume` does.
    async fn consume_exclusive(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        self.consume(queue, group, consumer).await
    }

    /// Publishes on a channel: at most once, to the subscribers connected now.
    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()>;

    /// Subscribes to channels. Returns once the subscription is active: a message published
    /// after this returns reaches it.
    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>>;

    /// Checks that the broker answers.
    async fn ping(&self) -> BusResult<()>;
}

#[cfg(test)]
mod tests {
    use super::channels::{MAX_REPLY_CHANNEL_LEN, check_reply_channel};

    #[test]
    fn reply_channels_are_response_channels_with_plain_names() {
        assert!(check_reply_channel("fsm:responses:client-42").is_ok());
        assert!(check_reply_channel("fsm:responses:app.orders:r_1").is_ok());
        assert!(check_reply_channel("fsm:responses:").is_err(), "a name is needed");
        assert!(check_reply_channel("fsm:commands:broadcast").is_err(), "not a command channel");
        assert!(check_reply_channel("fsm:responses:a*").is_err(), "no wildcard");
        assert!(check_reply_channel("fsm:responses:a b").is_err(), "no space");
        assert!(check_reply_channel("fsm:responses:#").is_err());
        let long = format!("fsm:responses:{}", "a".repeat(MAX_REPLY_CHANNEL_LEN));
        assert!(check_reply_channel(&long).expect_err("too long").contains("at most"));
    }
}
