//! xcomponent-bus: the message buses of xcomponent-ai behind one `open(url, options)`.
//!
//! | URL | backend | cargo feature |
//! | --- | --- | --- |
//! | `memory` | in-process, the reference implementation | always |
//! | `redis://…`, `rediss://…` | Redis: streams with consumer groups (queues), pub/sub (channels) | `redis` |
//! | `amqp://…`, `amqps://…` | RabbitMQ: quorum queues, publisher confirms, manual acks; topic exchange `xcomponent.events` | `rabbitmq` |
//! | `kafka://h1:9092,h2:9092`, `kafkas://…` | Kafka: one topic per queue, consumer groups, offsets committed after the ack | `kafka` |
//! | `nats://…` | NATS JetStream (queues), core NATS subjects (channels) | `nats` |
//!
//! Every backend implements [`Bus`] and passes the same conformance suite (`tests/`), run against
//! the real servers. How logical names map onto each broker's names is in [`naming`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> xcomponent_bus::BusResult<()> {
//! use xcomponent_bus::{BusOptions, QueueMessage, open};
//!
//! let bus = open("memory", &BusOptions::default()).await?;
//! let mut consumer = bus.consume("xcomponent:Payment", "runtimes", "runtime-1").await?;
//! let message = QueueMessage { id: "m1".into(), key: "order-1".into(), body: b"{}".to_vec() };
//! bus.enqueue("xcomponent:Payment", &message).await?;
//! let delivery = consumer.next().await?;
//! assert_eq!(delivery.message, message);
//! delivery.ack().await?;
//! # Ok(()) }
//! ```

#[cfg(any(feature = "redis", feature = "nats"))]
mod channel_buffer;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;
pub mod naming;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis;
mod url;

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "kafka")]
pub use kafka::{KAFKA_PRODUCE_PIPELINE, KafkaBus};
pub use memory::MemoryBus;
#[cfg(feature = "nats")]
pub use nats::{
    NATS_DUPLICATE_WINDOW, NATS_PUBLISH_PIPELINE, NATS_PULL_EXPIRES, NATS_QUEUE_CAPACITY, NatsBus,
};
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{RABBITMQ_PUBLISH_PIPELINE, RabbitBus};
#[cfg(feature = "redis")]
pub use redis::{
    REDIS_BLOCK_MAX, REDIS_CLAIM_INTERVAL_MAX, REDIS_ENQUEUE_BATCH, REDIS_HEALTH_CHECK_INTERVAL,
    REDIS_QUEUE_CAPACITY, REDIS_TRIM_INTERVAL, RedisBus,
};
pub use url::{BrokerUrl, Scheme};
pub use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, EnqueueFailure, Published, QueueConsumer,
    QueueMessage, Subscription,
};

/// The longest pause between two reconnection attempts of a consumer or subscription.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The first pause after a lost connection (doubled up to `RECONNECT_BACKOFF_MAX`).
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Options of `open`; each backend reads the ones that concern it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// How long an unacknowledged message stays with a consumer that went silent before another
    /// member of the group gets it (Redis claim idle time, NATS `ack_wait`, Kafka group session
    /// timeout, at least 6 s). RabbitMQ and Kafka hand messages over as soon as the consumer's
    /// connection closes or it leaves the group.
    pub redelivery_after: Duration,
    /// Unacknowledged deliveries one consumer may hold (RabbitMQ prefetch, NATS
    /// `max_ack_pending`, Redis read count, Kafka uncommitted window).
    pub max_in_flight: usize,
    /// How long `enqueue`, `publish` and `ping` wait for the broker before `BusError::Timeout`.
    pub operation_timeout: Duration,
    /// Subscriber-side buffer of channel messages; beyond it the oldest are dropped (channels are
    /// at most once) rather than the broker connection being held up.
    pub channel_buffer: usize,
    /// Kafka: the longest a queue consumer's fetch waits for records (`fetch.wait.max.ms`; the
    /// URL's `fetchWaitMs` overrides it). Real Kafka answers a waiting fetch when a record
    /// arrives, so this only paces idle fetches; some compatible brokers (tansu) hold every
    /// fetch the whole time, and there it is a delay each hop pays.
    pub kafka_fetch_wait: Duration,
    /// Kafka: the same for channel subscribers (monitoring, commands, receipts), which no flow
    /// waits on: longer, so they add less load to a broker that holds fetches.
    pub kafka_channel_fetch_wait: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            redelivery_after: Duration::from_secs(30),
            max_in_flight: 256,
            operation_timeout: Duration::from_secs(5),
            channel_buffer: 4096,
            kafka_fetch_wait: Duration::from_millis(10),
            kafka_channel_fetch_wait: Duration::from_millis(25),
        }
    }
}

/// Opens the bus named by `url` and checks that the broker answers.
///
/// Errors: `BusError::Config` for an unknown scheme, a backend not compiled in or a bad URL;
/// `BusError::Unavailable` when the broker cannot be reached.
pub async fn open(url: &str, options: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    let broker = BrokerUrl::parse(url)?;
    match broker.scheme {
        Scheme::Memory => Ok(Arc::new(MemoryBus::new(options))),
        Scheme::Redis => open_redis(&broker, options).await,
        Scheme::Amqp => open_rabbitmq(&broker, options).await,
        Scheme::Kafka => open_kafka(&broker, options).await,
        Scheme::Nats => open_nats(&broker, options).await,
    }
}

/// Error for a backend whose cargo feature is off.
#[cfg(not(all(feature = "redis", feature = "rabbitmq", feature = "kafka", feature = "nats")))]
fn not_compiled(broker: &BrokerUrl, feature: &str) -> BusError {
    BusError::Config(format!(
        "broker URL {} needs the {feature} backend, which this build does not include \
         (enable the `{feature}` feature of xcomponent-bus)",
        broker.redacted()
    ))
}

#[cfg(feature = "redis")]
async fn open_redis(broker: &BrokerUrl, options: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Ok(Arc::new(RedisBus::open(broker, options).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(broker: &BrokerUrl, _: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Err(not_compiled(broker, "redis"))
}

#[cfg(feature = "rabbitmq")]
async fn open_rabbitmq(broker: &BrokerUrl, options: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Ok(Arc::new(RabbitBus::connect(broker, options).await?))
}

#[cfg(not(feature = "rabbitmq"))]
async fn open_rabbitmq(broker: &BrokerUrl, _: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Err(not_compiled(broker, "rabbitmq"))
}

#[cfg(feature = "kafka")]
async fn open_kafka(broker: &BrokerUrl, options: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Ok(Arc::new(KafkaBus::connect(broker, options).await?))
}

#[cfg(not(feature = "kafka"))]
async fn open_kafka(broker: &BrokerUrl, _: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Err(not_compiled(broker, "kafka"))
}

#[cfg(feature = "nats")]
async fn open_nats(broker: &BrokerUrl, options: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Ok(Arc::new(NatsBus::open(broker, options).await?))
}

#[cfg(not(feature = "nats"))]
async fn open_nats(broker: &BrokerUrl, _: &BusOptions) -> BusResult<Arc<dyn Bus>> {
    Err(not_compiled(broker, "nats"))
}

/// Doubles a reconnection pause, up to `RECONNECT_BACKOFF_MAX`.
pub fn next_backoff(pause: Duration) -> Duration {
    (pause * 2).min(RECONNECT_BACKOFF_MAX)
}
