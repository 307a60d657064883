//! The Kafka backend (rdkafka over a bundled librdkafka), behind the `kafka` feature.
//!
//! **Queues** are topics named [`naming::kafka_topic`] (`xcomponent:Payment` →
//! `xcomponent.Payment`), created when missing with **one partition** and replication factor 1.
//! One partition is what keeps a queue's enqueue order for its consumer (Kafka orders within a
//! partition only); a replicated component has a topic per partition of its own (`docs/buses.md`). Replication
//! factor 1 lets the topic be created on a one-broker development cluster; a production cluster
//! should create the topics itself (with its own replication) before the first run: an existing
//! topic is used as it is.
//!
//! `enqueue` produces with `acks=all` and waits for the delivery report; the record key is the
//! message key and the `id` header carries the message id. Queue records and channel messages
//! have a producer each, so a burst of monitoring events never queues ahead of a flow's record;
//! neither lingers (`linger.ms=0`): with one request in flight per broker, what is produced
//! while a request is out forms the next batch anyway. `enqueue_many` hands up to
//! `KAFKA_PRODUCE_PIPELINE` records to the producer before awaiting their reports; the producer
//! keeps one request in flight per broker connection, so a retry cannot reorder them. A consumer group `G` on a queue is the
//! Kafka group `<prefix>.G.<topic>`, where the prefix is the URL's `groupId` parameter
//! (`xcomponent` by default): scoped by topic, so a member joining one queue does not pause the
//! others of the same group name while Kafka rebalances. Offsets are committed by this crate, never automatically: acknowledgements may come
//! in any order, so each partition keeps the offsets it delivered and commits only the prefix
//! that is entirely acknowledged. `consume_exclusive` (a partition's queue, read by its lease
//! holder alone) assigns the topic's partition from the group's committed offset instead of
//! joining the group. A consumer holds at most `BusOptions::max_in_flight`
//! uncommitted messages: past that it pauses fetching until acknowledgements catch up.
//!
//! `redelivered`: Kafka does not say whether a record was delivered before. After each
//! assignment the offset a partition resumes from is its committed offset; the records of the
//! next `max_in_flight` offsets may have been delivered to the previous owner (it may hold that
//! many unacknowledged), so they are marked redelivered, and the records after them are not.
//!
//! **Channels** are topics too (`fsm:events:state_change` → `xcomponent.fsm.events.state_change`).
//! A subscription does not join a group: it reads the high watermark of every partition of its
//! topics and assigns itself those positions before `subscribe` returns, so whatever is published
//! afterwards reaches it, with no group join to wait for and no group left on the broker
//! afterwards. It never commits. A subscriber that falls behind lags on the log (up to the
//! topic's retention) instead of dropping messages.
//!
//! **Connections**: librdkafka reconnects to the brokers by itself; a consumer's errors are
//! logged and it goes on, pausing from [`RECONNECT_BACKOFF_MIN`] to `RECONNECT_BACKOFF_MAX`
//! between consecutive errors. A broker that comes back without the topics (restarted empty) gets
//! them again from the bus's topic keeper (`keep_topics`), woken by the producer's lost-connection
//! errors; a consumer or subscriber that lost its connection fetches again only once its topics
//! exist and its metadata is fresh (`recover`), which keeps librdkafka 2.12 from crashing on the
//! answer tansu gives to a fetch of a topic it lost. Until the keeper has checked every topic,
//! none is taken as known (`topics`), and a queue consumer checks that the broker still holds
//! the record it delivered last (`replaced`). The queue consumer itself is in `consumer`.

mod consumer;
mod replaced;
mod topics;

use crate::{BrokerUrl, BusOptions, RECONNECT_BACKOFF_MIN, naming, next_backoff};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use topics::TopicBook;
use xcomponent_core::bus::{
    Bus, BusError, BusResult, EnqueueFailure, Published, QueueConsumer, QueueMessage, Subscription,
};

/// Consumer group prefix when the URL has no `groupId` parameter.
pub const DEFAULT_GROUP_PREFIX: &str = "xcomponent";

/// Client id when the URL has no `clientId` parameter.
pub const DEFAULT_CLIENT_ID: &str = "xcomponent-ai";

/// The shortest group session Kafka brokers accept by default (`group.min.session.timeout.ms`);
/// `BusOptions::redelivery_after` is raised to it.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The longest group session Kafka brokers accept by default (`group.max.session.timeout.ms`
/// is 30 minutes; 5 minutes keeps a dead member's messages from waiting longer).
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(300);

/// Records `enqueue_many` hands to the producer before awaiting their delivery reports.
pub const KAFKA_PRODUCE_PIPELINE: usize = 256;

/// URL query parameters this backend reads; any other is refused (a typo would be ignored).
const URL_PARAMETERS: [&str; 3] = ["clientId", "groupId", "fetchWaitMs"];

/// The longest pause of the admin client (the topic keeper's) between two connection attempts
/// to a broker it lost, so that it is back before the members (librdkafka's default is 10 s).
pub const KAFKA_KEEPER_RECONNECT_MAX: Duration = Duration::from_millis(500);

/// The first pause of a consumer or subscriber before it reconnects to a broker it lost
/// (`reconnect.backoff.ms`; librdkafka jitters it by -25% to +50%, the producer and admin client
/// keep librdkafka's 100 ms). A broker restarted empty must have its topics back before a
/// member fetches from it (see `recover`): this gives the bus's topic keeper, reconnecting
/// sooner, the time to create them again.
pub const KAFKA_MEMBER_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// A Kafka bus.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// Connection settings shared by every client (servers, TLS, SASL, client id).
    base: ClientConfig,
    redacted: String,
    group_prefix: String,
    options: BusOptions,
    /// Queue records (`enqueue`, `enqueue_many`).
    producer: FutureProducer<WatchContext>,
    /// Channel messages (`publish`), at most once.
    channel_producer: FutureProducer<WatchContext>,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist (forgotten when the broker says otherwise or is lost).
    topics: Arc<TopicBook>,
}

impl fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBus")
            .field("url", &self.inner.redacted)
            .field("group_prefix", &self.inner.group_prefix)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; go on with it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue consumers' fetch wait: the URL's `fetchWaitMs`, else `default`.
fn fetch_wait(url: &BrokerUrl, default: Duration) -> BusResult<Duration> {
    let Some(wait) = url.param("fetchWaitMs") else { return Ok(default) };
    wait.parse().map(Duration::from_millis).map_err(|_| {
        BusError::Config(format!(
            "Kafka URL {}: fetchWaitMs must be a whole number of milliseconds, not {wait:?}",
            url.redacted()
        ))
    })
}

/// A producer with `acks=all`, no lingering, and one request in flight per broker: a retried
/// request is never overtaken, so records produced together (`enqueue_many`) are stored in their
/// order.
fn create_producer(
    base: &ClientConfig,
    options: &BusOptions,
    context: WatchContext,
    redacted: &str,
) -> BusResult<FutureProducer<WatchContext>> {
    base.clone()
        .set("acks", "all")
        .set("message.timeout.ms", millis(options.operation_timeout))
        .set("linger.ms", "0")
        .set("max.in.flight.requests.per.connection", "1")
        .create_with_context(context)
        .map_err(|error| kafka_error(redacted, "creating a producer", &error))
}

/// Milliseconds of a duration, as librdkafka settings want them (at least 1).
fn millis(duration: Duration) -> String {
    duration.as_millis().clamp(1, u128::from(u32::MAX)).to_string()
}

/// The settings every client of `url` shares: servers, security, credentials, client id.
fn base_config(url: &BrokerUrl) -> BusResult<ClientConfig> {
    if let Some((name, _)) =
        url.params.iter().find(|(name, _)| !URL_PARAMETERS.contains(&name.as_str()))
    {
        return Err(BusError::Config(format!(
            "Kafka URL {}: unknown parameter {name:?} (accepted: clientId, groupId, fetchWaitMs)",
            url.redacted()
        )));
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", url.hosts.join(","))
        .set("client.id", url.param("clientId").unwrap_or(DEFAULT_CLIENT_ID))
        .set_log_level(RDKafkaLogLevel::Warning);
    let sasl = url.username.is_some();
    let protocol = match (url.tls, sasl) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(username) = &url.username {
        config
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", username)
            .set("sasl.password", url.password.as_deref().unwrap_or_default());
    }
    Ok(config)
}

fn kafka_error(url: &str, what: &str, error: &KafkaError) -> BusError {
    let permanent = error.rdkafka_error_code().is_some_and(is_permanent);
    let text = format!("Kafka at {url}: {what}: {error}");
    if permanent || matches!(error, KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)) {
        BusError::Config(text)
    } else {
        BusError::Unavailable(text)
    }
}

/// Errors retrying cannot fix: refused credentials or rights, bad names.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidGroupId
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
    )
}

impl KafkaBus {
    /// Creates the producer and admin clients for `url` (`kafka://h1:9092,h2:9092`, `kafkas://`
    /// for TLS, `user:pass@` for SASL/PLAIN, `?clientId=` and `?groupId=`) and checks that a
    /// broker answers.
    ///
    /// Errors: `BusError::Config` for a bad URL or setting; `BusError::Unavailable` when no broker
    /// answers within `BusOptions::operation_timeout`.
    pub async fn connect(url: &BrokerUrl, options: &BusOptions) -> BusResult<KafkaBus> {
        let redacted = url.redacted();
        let base = base_config(url)?;
        let mut options = options.clone();
        options.kafka_fetch_wait = fetch_wait(url, options.kafka_fetch_wait)?;
        let lost = Arc::new(Notify::new());
        let topics = Arc::new(TopicBook::default());
        // Both producers report lost connections: either may be the first to see one.
        let context = || WatchContext { lost: lost.clone(), topics: topics.clone() };
        let producer = create_producer(&base, &options, context(), &redacted)?;
        let channel_producer = create_producer(&base, &options, context(), &redacted)?;
        let admin: AdminClient<DefaultClientContext> = base
            .clone()
            .set("reconnect.backoff.max.ms", millis(KAFKA_KEEPER_RECONNECT_MAX))
            .create()
            .map_err(|error| kafka_error(&redacted, "creating the admin client", &error))?;
        let bus = KafkaBus {
            inner: Arc::new(Inner {
                base,
                redacted,
                group_prefix: url.param("groupId").unwrap_or(DEFAULT_GROUP_PREFIX).to_owned(),
                options,
                producer,
                channel_producer,
                admin,
                topics,
            }),
        };
        bus.ping().await?;
        tokio::spawn(keep_topics(Arc::downgrade(&bus.inner), lost));
        Ok(bus)
    }

    /// Forgets that `topic` exists and creates it when missing: after the connection to the
    /// broker was lost (a broker restarted empty has lost it).
    async fn recreate_topic(&self, topic: &str) -> BusResult<()> {
        self.inner.topics.remove(topic);
        self.ensure_topic(topic).await
    }

    /// Creates `topic` (one partition, replication factor 1) unless it is known to exist.
    async fn ensure_topic(&self, topic: &str) -> BusResult<()> {
        if self.inner.topics.is_known(topic) {
            return Ok(());
        }
        self.create_topics(&[topic.to_owned()]).await?;
        self.inner.topics.insert(topic);
        Ok(())
    }

    /// Creates those of `topics` that do not exist (one partition, replication factor 1).
    async fn create_topics(&self, topics: &[String]) -> BusResult<()> {
        let timeout = self.inner.options.operation_timeout;
        let admin_options = AdminOptions::new().operation_timeout(Some(timeout));
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| NewTopic::new(topic, 1, TopicReplication::Fixed(1)))
            .collect();
        let created =
            tokio::time::timeout(timeout, self.inner.admin.create_topics(&new, &admin_options))
                .await
                .map_err(|_| BusError::Timeout(timeout))?
                .map_err(|error| kafka_error(&self.inner.redacted, "creating a topic", &error))?;
        for result in created {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    let error = KafkaError::AdminOp(code);
                    return Err(kafka_error(
                        &self.inner.redacted,
                        &format!("creating topic {name}"),
                        &error,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Produces one record and waits for its delivery report; a topic the broker lost is
    /// created again once.
    async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        id: Option<&str>,
        body: &[u8],
        producer: &FutureProducer<WatchContext>,
    ) -> BusResult<()> {
        let timeout = self.inner.options.operation_timeout;
        // One try, and one more after re-creating a topic the broker no longer knows.
        const ATTEMPTS: usize = 2;
        for attempt in 1..=ATTEMPTS {
            self.ensure_topic(topic).await?;
            let mut record = FutureRecord::to(topic).payload(body);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(id) = id {
                record = record
                    .headers(OwnedHeaders::new().insert(Header { key: "id", value: Some(id) }));
            }
            let sent = tokio::time::timeout(timeout, producer.send(record, timeout))
                .await
                .map_err(|_| BusError::Timeout(timeout))?;
            match sent {
                Ok(_) => return Ok(()),
                Err((error, _)) => {
                    let unknown = matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::UnknownTopic
                                | RDKafkaErrorCode::UnknownPartition
                        )
                    );
                    if unknown && attempt < ATTEMPTS {
                        self.inner.topics.remove(topic);
                        continue;
                    }
                    if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageTimedOut))
                    {
                        return Err(BusError::Timeout(timeout));
                    }
                    return Err(kafka_error(
                        &self.inner.redacted,
                        &format!("producing to {topic}"),
                        &error,
                    ));
                }
            }
        }
        Err(BusError::Unavailable(format!(
            "Kafka at {}: topic {topic} keeps vanishing",
            self.inner.redacted
        )))
    }

    /// Every partition of `topics` at its high watermark: where a subscription starts.
    async fn positions(&self, topics: &[String]) -> BusResult<TopicPartitionList> {
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            for (partition, high) in self.high_watermarks(topic).await? {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(high))
                    .map_err(|error| kafka_error(&self.inner.redacted, "positioning", &error))?;
            }
        }
        Ok(assignment)
    }

    /// The partitions of `topic` and their high watermarks (the offset the next record gets).
    async fn high_watermarks(&self, topic: &str) -> BusResult<Vec<(i32, i64)>> {
        let producer = self.inner.producer.clone();
        let timeout = self.inner.options.operation_timeout;
        let name = topic.to_owned();
        let redacted = self.inner.redacted.clone();
        let blocking = tokio::task::spawn_blocking(move || -> BusResult<Vec<(i32, i64)>> {
            let client = producer.client();
            let metadata = client
                .fetch_metadata(Some(&name), timeout)
                .map_err(|error| kafka_error(&redacted, "reading topic metadata", &error))?;
            let mut positions = Vec::new();
            for found in metadata.topics().iter().filter(|found| found.name() == name) {
                for partition in found.partitions() {
                    let (_, high) = client
                        .fetch_watermarks(&name, partition.id(), timeout)
                        .map_err(|error| kafka_error(&redacted, "reading watermarks", &error))?;
                    positions.push((partition.id(), high));
                }
            }
            if positions.is_empty() {
                return Err(BusError::Unavailable(format!(
                    "Kafka at {redacted}: topic {name} has no partitions yet"
                )));
            }
            Ok(positions)
        });
        blocking.await.map_err(|error| BusError::Unavailable(format!("watermark task: {error}")))?
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        self.produce(
            &naming::kafka_topic(queue),
            Some(&message.key),
            Some(&message.id),
            &message.body,
            &self.inner.producer,
        )
        .await
    }

    /// Hands up to `KAFKA_PRODUCE_PIPELINE` records to the producer before awaiting their
    /// delivery reports, in order. The producer keeps one request in flight per broker
    /// connection, so a retried request cannot be overtaken. A record that failed is produced
    /// alone once more (which re-creates a lost topic), then the pipeline goes on after it.
    async fn enqueue_many(
        &self,
        queue: &str,
        messages: &[QueueMessage],
    ) -> Result<(), EnqueueFailure> {
        let topic = naming::kafka_topic(queue);
        let timeout = self.inner.options.operation_timeout;
        let mut confirmed = 0;
        while confirmed < messages.len() {
            self.ensure_topic(&topic).await.map_err(|error| EnqueueFailure { confirmed, error })?;
            let end = (confirmed + KAFKA_PRODUCE_PIPELINE).min(messages.len());
            let mut reports = Vec::with_capacity(end - confirmed);
            for message in &messages[confirmed..end] {
                let record =
                    FutureRecord::to(&topic).payload(&message.body).key(&message.key).headers(
                        OwnedHeaders::new()
                            .insert(Header { key: "id", value: Some(message.id.as_str()) }),
                    );
                match self.inner.producer.send_result(record) {
                    Ok(report) => reports.push(report),
                    Err(_) => break,
                }
            }
            let mut delivered = 0;
            let _ = tokio::time::timeout(timeout, async {
                for report in reports {
                    if !matches!(report.await, Ok(Ok(_))) {
                        break;
                    }
                    delivered += 1;
                }
            })
            .await;
            confirmed += delivered;
            if confirmed == end {
                continue;
            }
            self.enqueue(queue, &messages[confirmed])
                .await
                .map_err(|error| EnqueueFailure { confirmed, error })?;
            confirmed += 1;
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        self.consumer(queue, group, consumer, false).await
    }

    /// Reads the topic's partition by assignment, with the group's committed offsets: no group
    /// join, so no rebalance waits for the session of a dead process's member to end.
    async fn consume_exclusive(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        self.consumer(queue, group, consumer, true).await
    }

    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        self.produce(&naming::kafka_topic(channel), None, None, body, &self.inner.channel_producer)
            .await
    }

    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        let mut routes = HashMap::new();
        for channel in channels {
            let topic = naming::kafka_topic(channel);
            self.ensure_topic(&topic).await?;
            routes.insert(topic, (*channel).to_owned());
        }
        let topics: Vec<String> = routes.keys().cloned().collect();
        let assignment = self.positions(&topics).await?;
        let options = &self.inner.options;
        // A group id no other client uses: it is never joined nor committed (the partitions are
        // assigned by hand), so the broker keeps no group for it.
        let group_id = format!("{}.subscription.{}", self.inner.group_prefix, unique_suffix());
        let consumer: StreamConsumer = self
            .inner
            .base
            .clone()
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", millis(options.kafka_channel_fetch_wait))
            .set("queued.min.messages", options.channel_buffer.max(1).to_string())
            .set("reconnect.backoff.ms", millis(KAFKA_MEMBER_RECONNECT_BACKOFF))
            .create()
            .map_err(|error| kafka_error(&self.inner.redacted, "creating a subscriber", &error))?;
        consumer
            .assign(&assignment)
            .map_err(|error| kafka_error(&self.inner.redacted, "assigning partitions", &error))?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(consumer),
            routes,
            bus: self.clone(),
            lost: false,
        }))
    }

    async fn ping(&self) -> BusResult<()> {
        let producer = self.inner.producer.clone();
        let timeout = self.inner.options.operation_timeout;
        let redacted = self.inner.redacted.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|error| kafka_error(&redacted, "reading cluster metadata", &error))
        })
        .await
        .map_err(|error| BusError::Unavailable(format!("metadata task: {error}")))?
    }
}

/// The producer's callbacks: a lost broker connection wakes the topic keeper. Called by the
/// producer's own polling thread, so it does not depend on any consumer being polled.
struct WatchContext {
    lost: Arc<Notify>,
    topics: Arc<TopicBook>,
}

impl ClientContext for WatchContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if broker_lost(&error) {
            self.topics.connection_lost();
            self.lost.notify_one();
        }
        tracing::warn!(%error, reason, "librdkafka producer error");
    }
}

/// The topic keeper: after each lost broker connection, creates again every topic this bus
/// used (one `CreateTopics` request; those that exist are left as they are), retrying with a
/// doubling pause from `RECONNECT_BACKOFF_MIN` to `RECONNECT_BACKOFF_MAX` until the broker
/// answers. A broker restarted empty so has the topics back before the members, which
/// reconnect after `KAFKA_MEMBER_RECONNECT_BACKOFF`, fetch from it. Ends with the bus.
async fn keep_topics(inner: std::sync::Weak<Inner>, lost: Arc<Notify>) {
    loop {
        lost.notified().await;
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            let Some(inner) = inner.upgrade() else { return };
            let seen = inner.topics.losses();
            let topics = inner.topics.all();
            if topics.is_empty() {
                inner.topics.checked(seen);
                break;
            }
            let bus = KafkaBus { inner };
            match bus.create_topics(&topics).await {
                Ok(()) => {
                    bus.inner.topics.checked(seen);
                    tracing::info!(
                        count = topics.len(),
                        "Kafka topics checked after a lost broker connection"
                    );
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, ?pause, "Kafka topics not checked yet after a lost broker connection");
                }
            }
            drop(bus);
            tokio::time::sleep(pause).await;
            pause = next_backoff(pause);
        }
    }
}

/// The Kafka group of `group` on `topic`: `<prefix>.<group>.<topic>`. Scoped by topic as the
/// other backends scope a group by queue: a Kafka group spanning several topics would make every
/// member that joins on one queue stop the consumption of all the others while it rebalances.
fn group_id(prefix: &str, group: &str, topic: &str) -> String {
    format!("{prefix}.{group}.{topic}")
}

/// A process-unique, time-ordered suffix for subscription group ids.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {message}");
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// Whether a consumer error says the connection to a broker was lost (the broker may come back
/// empty, without the topics).
fn broker_lost(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
    )
}

/// Every partition of `topics` this client knows (assigned or not), or only the assignment when
/// metadata cannot be read from the local cache.
fn partitions_of<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topics: &[String],
) -> TopicPartitionList {
    let mut list = consumer.assignment().unwrap_or_default();
    for topic in topics {
        // Queues and channels have one partition (created so by this crate); an existing topic
        // with more is covered by the assignment.
        if list.find_partition(topic, 0).is_none() {
            list.add_partition(topic, 0);
        }
    }
    list
}

/// Stops fetching `topics` at once: a broker restarted empty answers a fetch for a topic it
/// lost in a way that crashes librdkafka 2.12 (see `recover`).
fn pause_all<C: ConsumerContext>(consumer: &StreamConsumer<C>, topics: &[String]) {
    let list = partitions_of(consumer, topics);
    if let Err(error) = consumer.pause(&list) {
        tracing::debug!(%error, "Kafka pause after a lost connection");
    }
}

/// After the connection to the broker was lost, with fetching paused: creates the topics again
/// when the broker lost them and reads their metadata on this member's client, retrying with a doubling pause (from `RECONNECT_BACKOFF_MIN` to
/// `RECONNECT_BACKOFF_MAX`) until it answers, then resumes fetching.
///
/// Why: tansu (memory storage) answers a fetch for a topic it does not know with a
/// leader-change hint (`CurrentLeader`, `NodeEndpoints`) naming the topic by a zero topic id;
/// librdkafka 2.12.1 (`rd_kafka_handle_Fetch_metadata_update`) turns it into a metadata update
/// whose topic has no name and looks it up with `strcmp(NULL)`: the process dies. So a member
/// never fetches a topic before it exists again.
async fn recover<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    bus: &KafkaBus,
    topics: &[String],
    pause: &mut Duration,
) {
    let timeout = bus.inner.options.operation_timeout;
    for topic in topics {
        loop {
            // The topic back, then this member's metadata read again: a topic created again has
            // a new id, and a fetch by the old one gets the same crashing answer.
            let restored = match bus.recreate_topic(topic).await {
                Ok(()) => {
                    consumer.client().fetch_metadata(Some(topic), timeout).map(|_| ()).map_err(
                        |error| kafka_error(&bus.inner.redacted, "reading metadata", &error),
                    )
                }
                Err(error) => Err(error),
            };
            match restored {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%topic, %error, ?pause, "Kafka topic not restored yet after a lost connection");
                    tokio::time::sleep(*pause).await;
                    *pause = next_backoff(*pause);
                }
            }
        }
    }
    let list = partitions_of(consumer, topics);
    if let Err(error) = consumer.resume(&list) {
        tracing::warn!(%error, "Kafka resume after a lost connection");
    }
    tracing::info!(?topics, "Kafka topics checked after a lost connection; fetching again");
}

/// A subscription: a consumer with hand-assigned partitions, positioned at their ends.
struct KafkaSubscription {
    /// `None` only while being dropped.
    consumer: Option<StreamConsumer>,
    /// Topic → logical channel name.
    routes: HashMap<String, String>,
    /// To create the topics again after the broker was lost.
    bus: KafkaBus,
    /// The connection to the broker was lost: fetching is paused until the topics are known to
    /// exist again (`recover`).
    lost: bool,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> BusResult<Published> {
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            let Some(consumer) = self.consumer.as_ref() else { return Err(BusError::Closed) };
            if self.lost {
                let topics: Vec<String> = self.routes.keys().cloned().collect();
                recover(consumer, &self.bus, &topics, &mut pause).await;
                // A topic created again starts from offset 0 and some brokers (tansu) answer a
                // fetch past the end with nothing rather than an out-of-range error: positioned
                // again at the ends, as at `subscribe`.
                match self.bus.positions(&topics).await {
                    Ok(positions) => {
                        if let Err(error) = consumer.assign(&positions) {
                            tracing::warn!(%error, "Kafka subscription not positioned again");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Kafka subscription not positioned again");
                    }
                }
                self.lost = false;
            }
            match consumer.recv().await {
                Ok(message) => {
                    let Some(channel) = self.routes.get(message.topic()) else { continue };
                    let body = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                    return Ok(Published { channel: channel.clone(), body });
                }
                Err(error) => {
                    tracing::warn!(%error, ?pause, "Kafka subscription error");
                    if broker_lost(&error) {
                        let topics: Vec<String> = self.routes.keys().cloned().collect();
                        pause_all(consumer, &topics);
                        self.lost = true;
                        continue;
                    }
                    tokio::time::sleep(pause).await;
                    pause = next_backoff(pause);
                }
            }
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else { return };
        // Closing blocks: off the async threads when there are some.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_onto_security_settings() {
        let url =
            BrokerUrl::parse("kafkas://app:pw@b1:9093,b2:9093?clientId=orders").expect("valid");
        let config = base_config(&url).expect("config");
        assert_eq!(config.get("bootstrap.servers"), Some("b1:9093,b2:9093"));
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(config.get("sasl.username"), Some("app"));
        assert_eq!(config.get("client.id"), Some("orders"));
        let plain = base_config(&BrokerUrl::parse("kafka://h").expect("valid")).expect("config");
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        let typo = BrokerUrl::parse("kafka://h?groupid=x").expect("valid");
        assert!(matches!(base_config(&typo), Err(BusError::Config(_))));
    }

    #[test]
    fn fetch_wait_comes_from_the_url_or_the_options() {
        let default = Duration::from_millis(10);
        let url = |text| BrokerUrl::parse(text).expect("valid");
        assert_eq!(fetch_wait(&url("kafka://h"), default).ok(), Some(default));
        let set = url("kafka://h?fetchWaitMs=1");
        assert!(base_config(&set).is_ok(), "fetchWaitMs is a known parameter");
        assert_eq!(fetch_wait(&set, default).ok(), Some(Duration::from_millis(1)));
        match fetch_wait(&url("kafka://h?fetchWaitMs=1ms"), default) {
            Err(BusError::Config(text)) => assert!(text.contains("fetchWaitMs"), "{text}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}
