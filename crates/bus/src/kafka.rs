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
//! message key and the `id` header carries the message id. `enqueue_many` hands up to
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
//! answer tansu gives to a fetch of a topic it lost.

use crate::{BrokerUrl, BusOptions, RECONNECT_BACKOFF_MIN, naming, next_backoff};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, EnqueueFailure, Published, QueueConsumer,
    QueueMessage, Subscription,
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

/// URL query parameters this backend reads; any other is refused (a typo would be ignored).
/// Records `enqueue_many` hands to the producer before awaiting their delivery reports.
pub const KAFKA_PRODUCE_PIPELINE: usize = 256;

const URL_PARAMETERS: [&str; 2] = ["clientId", "groupId"];

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
    producer: FutureProducer<WatchContext>,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist (forgotten when the broker says otherwise).
    topics: Mutex<HashSet<String>>,
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
            "Kafka URL {}: unknown parameter {name:?} (accepted: clientId, groupId)",
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
        let lost = Arc::new(Notify::new());
        let producer: FutureProducer<WatchContext> = base
            .clone()
            .set("acks", "all")
            .set("message.timeout.ms", millis(options.operation_timeout))
            .set("linger.ms", "1")
            // One request at a time per broker: a retried request is never overtaken, so records
            // produced together (`enqueue_many`) are stored in their order.
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(WatchContext { lost: lost.clone() })
            .map_err(|error| kafka_error(&redacted, "creating the producer", &error))?;
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
                options: options.clone(),
                producer,
                admin,
                topics: Mutex::new(HashSet::new()),
            }),
        };
        bus.ping().await?;
        tokio::spawn(keep_topics(Arc::downgrade(&bus.inner), lost));
        Ok(bus)
    }

    /// Forgets that `topic` exists and creates it when missing: after the connection to the
    /// broker was lost (a broker restarted empty has lost it).
    async fn recreate_topic(&self, topic: &str) -> BusResult<()> {
        lock(&self.inner.topics).remove(topic);
        self.ensure_topic(topic).await
    }

    /// Creates `topic` (one partition, replication factor 1) unless it is known to exist.
    async fn ensure_topic(&self, topic: &str) -> BusResult<()> {
        if lock(&self.inner.topics).contains(topic) {
            return Ok(());
        }
        self.create_topics(&[topic.to_owned()]).await?;
        lock(&self.inner.topics).insert(topic.to_owned());
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
            let sent = tokio::time::timeout(timeout, self.inner.producer.send(record, timeout))
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
                        lock(&self.inner.topics).remove(topic);
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

impl KafkaBus {
    /// A consumer of `queue` for `group`: a member of the group (`exclusive` false), or a reader
    /// of its one partition by assignment resuming from the group's committed offset.
    async fn consumer(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
        exclusive: bool,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        let topic = naming::kafka_topic(queue);
        self.ensure_topic(&topic).await?;
        let options = &self.inner.options;
        let max_in_flight = options.max_in_flight.max(1);
        let session = options.redelivery_after.clamp(MIN_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT);
        let window = Arc::new(Mutex::new(Window::default()));
        let acked = Arc::new(Notify::new());
        let context =
            GroupContext { topic: topic.clone(), window: window.clone(), acked: acked.clone() };
        let group_id = group_id(&self.inner.group_prefix, group, &topic);
        let client_id =
            format!("{}-{consumer}", self.inner.base.get("client.id").unwrap_or(DEFAULT_CLIENT_ID));
        let created: StreamConsumer<GroupContext> = self
            .inner
            .base
            .clone()
            .set("group.id", &group_id)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", millis(options.kafka_fetch_wait))
            .set("session.timeout.ms", millis(session))
            .set("heartbeat.interval.ms", millis(session / 3))
            // librdkafka's own read-ahead, which a paused consumer may still hand out: bounded by
            // the in-flight window.
            .set("queued.min.messages", max_in_flight.to_string())
            .set("reconnect.backoff.ms", millis(KAFKA_MEMBER_RECONNECT_BACKOFF))
            .create_with_context(context)
            .map_err(|error| kafka_error(&self.inner.redacted, "creating a consumer", &error))?;
        if exclusive {
            // The one partition of the topic from the group's committed offset (the earliest
            // when none), as a member assigned it would; acknowledgements commit for the group.
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(&topic, 0, Offset::Stored)
                .map_err(|error| kafka_error(&self.inner.redacted, "assigning", &error))?;
            created
                .assign(&assignment)
                .map_err(|error| kafka_error(&self.inner.redacted, "assigning", &error))?;
            lock(&window).partitions.insert(0, PartitionWindow::default());
        } else {
            created
                .subscribe(&[&topic])
                .map_err(|error| kafka_error(&self.inner.redacted, "subscribing", &error))?;
        }
        Ok(Box::new(KafkaConsumer {
            consumer: Some(created),
            topic,
            window,
            acked,
            max_in_flight,
            paused: false,
            parked: VecDeque::new(),
            redacted: self.inner.redacted.clone(),
            bus: self.clone(),
            lost: false,
        }))
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
        self.produce(&naming::kafka_topic(channel), None, None, body).await
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
            .set("fetch.wait.max.ms", millis(options.kafka_fetch_wait))
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
}

impl ClientContext for WatchContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if broker_lost(&error) {
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
            let topics: Vec<String> = lock(&inner.topics).iter().cloned().collect();
            if topics.is_empty() {
                break;
            }
            let bus = KafkaBus { inner };
            match bus.create_topics(&topics).await {
                Ok(()) => {
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

/// What a group consumer delivered and what came back acknowledged, per assigned partition.
#[derive(Debug, Default)]
struct Window {
    /// Bumped at every revocation: acknowledgements of an older generation are ignored (another
    /// member owns the partition now and delivers those records again).
    generation: u64,
    partitions: HashMap<i32, PartitionWindow>,
}

#[derive(Debug, Default)]
struct PartitionWindow {
    /// The first offset delivered since the assignment: the committed offset it resumed from.
    first: Option<i64>,
    /// Delivered offsets, in order, and whether each is acknowledged.
    delivered: BTreeMap<i64, bool>,
    /// The offset after the acknowledged prefix, once it is ahead of the last commit.
    commit: Option<i64>,
    /// The last offset committed (the next one to read).
    committed: Option<i64>,
}

impl Window {
    /// Delivered, not yet acknowledged, over every partition.
    fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|partition| partition.delivered.values().filter(|acked| !**acked).count())
            .sum()
    }

    /// Drops the acknowledged prefix of each partition and returns the offsets to commit (those
    /// ahead of the last commit), recording them as committed.
    fn take_commits(&mut self, topic: &str) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (partition, window) in &mut self.partitions {
            while let Some((&offset, &true)) = window.delivered.first_key_value() {
                window.delivered.pop_first();
                window.commit = Some(offset + 1);
            }
            if let Some(next) = window.commit
                && window.committed.is_none_or(|committed| next > committed)
            {
                // Adding a valid offset to a fresh list cannot fail.
                if list.add_partition_offset(topic, *partition, Offset::Offset(next)).is_ok() {
                    window.committed = Some(next);
                }
            }
        }
        list
    }
}

/// Rebalance and commit callbacks of a group consumer.
struct GroupContext {
    topic: String,
    window: Arc<Mutex<Window>>,
    acked: Arc<Notify>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "librdkafka consumer error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Commit what was acknowledged before the partitions go; what was not is delivered
            // again by their next owner.
            let commits = {
                let mut window = lock(&self.window);
                let commits = window.take_commits(&self.topic);
                window.partitions.clear();
                window.generation += 1;
                commits
            };
            if commits.count() > 0
                && let Err(error) = consumer.commit(&commits, CommitMode::Sync)
            {
                tracing::warn!(topic = %self.topic, %error, "Kafka commit at revocation failed");
            }
            self.acked.notify_one();
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut window = lock(&self.window);
                for element in partitions.elements() {
                    window.partitions.insert(element.partition(), PartitionWindow::default());
                }
                tracing::debug!(topic = %self.topic, count = partitions.count(), "Kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(topic = %self.topic, %error, "Kafka rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(topic = %self.topic, %error, "Kafka offset commit failed");
        }
    }
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

/// A member of a queue's consumer group.
struct KafkaConsumer {
    /// `None` only while being dropped.
    consumer: Option<StreamConsumer<GroupContext>>,
    topic: String,
    window: Arc<Mutex<Window>>,
    /// Woken by every acknowledgement (and revocation).
    acked: Arc<Notify>,
    max_in_flight: usize,
    /// Fetching is paused because `max_in_flight` messages are unacknowledged.
    paused: bool,
    /// Records that arrived while the window was full, with the generation they belong to
    /// (librdkafka's read-ahead; at most `queued.min.messages` = `max_in_flight`).
    parked: VecDeque<(u64, OwnedMessage)>,
    redacted: String,
    /// To create the topic again after the broker was lost.
    bus: KafkaBus,
    /// The connection to the broker was lost: fetching is paused until the topic is known to
    /// exist again (`recover`).
    lost: bool,
}

/// Commits the acknowledged prefix (without waiting for the broker) and pauses or resumes
/// fetching by the size of the window; returns whether there is room for a delivery.
fn settle(
    consumer: &StreamConsumer<GroupContext>,
    window: &Mutex<Window>,
    topic: &str,
    max_in_flight: usize,
    paused: &mut bool,
) -> bool {
    let (commits, in_flight) = {
        let mut window = lock(window);
        (window.take_commits(topic), window.in_flight())
    };
    if commits.count() > 0
        && let Err(error) = consumer.commit(&commits, CommitMode::Async)
    {
        tracing::warn!(%topic, %error, "Kafka commit failed");
    }
    let room = in_flight < max_in_flight;
    if let Ok(assignment) = consumer.assignment() {
        if !room && !*paused {
            *paused = consumer.pause(&assignment).is_ok();
        } else if room && *paused {
            *paused = consumer.resume(&assignment).is_err();
        }
    }
    room
}

impl KafkaConsumer {
    /// Records a delivery in the window and wraps it.
    fn deliver(&self, message: OwnedMessage) -> Delivery {
        let partition = message.partition();
        let offset = message.offset();
        let (generation, redelivered) = {
            let mut window = lock(&self.window);
            let generation = window.generation;
            let entry = window.partitions.entry(partition).or_default();
            let first = *entry.first.get_or_insert(offset);
            entry.delivered.insert(offset, false);
            let bound = first.saturating_add(i64::try_from(self.max_in_flight).unwrap_or(i64::MAX));
            (generation, offset < bound)
        };
        let id = message
            .headers()
            .and_then(|headers| {
                headers.iter().find(|header| header.key == "id").and_then(|header| header.value)
            })
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        let key =
            message.key().map(|key| String::from_utf8_lossy(key).into_owned()).unwrap_or_default();
        let body = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
        Delivery {
            message: QueueMessage { id, key, body },
            redelivered,
            acknowledge: Box::new(KafkaAck {
                window: self.window.clone(),
                acked: self.acked.clone(),
                generation,
                partition,
                offset,
            }),
        }
    }
}

#[async_trait]
impl QueueConsumer for KafkaConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        // Bounded by its pause (RECONNECT_BACKOFF_MAX) between consecutive errors, not by a
        // count: a consumer outlives any broker outage; the caller stops it by dropping it.
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            if self.lost {
                let Some(consumer) = self.consumer.as_ref() else { return Err(BusError::Closed) };
                let topics = [self.topic.clone()];
                recover(consumer, &self.bus, &topics, &mut pause).await;
                // `recover` resumed every partition: the window decides again below.
                self.paused = false;
                self.lost = false;
            }
            let Some(consumer) = self.consumer.as_ref() else { return Err(BusError::Closed) };
            let room =
                settle(consumer, &self.window, &self.topic, self.max_in_flight, &mut self.paused);
            let generation = lock(&self.window).generation;
            self.parked.retain(|(parked, _)| *parked == generation);
            if room && let Some((_, message)) = self.parked.pop_front() {
                return Ok(self.deliver(message));
            }
            let acked = self.acked.clone();
            let received = tokio::select! {
                received = consumer.recv() => Some(received.map(|message| message.detach())),
                () = acked.notified() => None,
            };
            match received {
                None => {}
                Some(Ok(message)) => {
                    pause = RECONNECT_BACKOFF_MIN;
                    if room {
                        return Ok(self.deliver(message));
                    }
                    self.parked.push_back((generation, message));
                }
                Some(Err(error)) => {
                    let bus_error = kafka_error(&self.redacted, "consuming", &error);
                    if let BusError::Config(reason) = bus_error {
                        return Err(BusError::Config(reason));
                    }
                    // librdkafka reconnects by itself; errors come as events, paced here.
                    tracing::warn!(topic = %self.topic, %error, ?pause, "Kafka consumer error");
                    if broker_lost(&error) {
                        pause_all(consumer, std::slice::from_ref(&self.topic));
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

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else { return };
        let commits = lock(&self.window).take_commits(&self.topic);
        let topic = self.topic.clone();
        // Committing and leaving the group block: off the async threads when there are some.
        let close = move || {
            if commits.count() > 0
                && let Err(error) = consumer.commit(&commits, CommitMode::Sync)
            {
                tracing::warn!(%topic, %error, "Kafka commit at close failed");
            }
            drop(consumer);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}

/// Marks one delivered offset acknowledged; the consumer commits the acknowledged prefix.
struct KafkaAck {
    window: Arc<Mutex<Window>>,
    acked: Arc<Notify>,
    generation: u64,
    partition: i32,
    offset: i64,
}

#[async_trait]
impl Acknowledge for KafkaAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        {
            let mut window = lock(&self.window);
            if window.generation != self.generation {
                // The partition went to another member, which delivers the record again.
                return Ok(());
            }
            if let Some(acked) = window
                .partitions
                .get_mut(&self.partition)
                .and_then(|partition| partition.delivered.get_mut(&self.offset))
            {
                *acked = true;
            }
        }
        self.acked.notify_one();
        Ok(())
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
    fn only_the_acknowledged_prefix_is_committed() {
        let mut window = Window::default();
        let partition = window.partitions.entry(0).or_default();
        for offset in 10..15 {
            partition.delivered.insert(offset, false);
        }
        // 11 and 12 acknowledged out of order: nothing to commit while 10 is not.
        for offset in [12, 11] {
            if let Some(acked) =
                window.partitions.get_mut(&0).and_then(|p| p.delivered.get_mut(&offset))
            {
                *acked = true;
            }
        }
        assert_eq!(window.take_commits("t").count(), 0);
        assert_eq!(window.in_flight(), 3);
        if let Some(acked) = window.partitions.get_mut(&0).and_then(|p| p.delivered.get_mut(&10)) {
            *acked = true;
        }
        let commits = window.take_commits("t");
        let elements = commits.elements();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].offset(), Offset::Offset(13));
        assert_eq!(window.in_flight(), 2);
        // Nothing new acknowledged: nothing committed again.
        assert_eq!(window.take_commits("t").count(), 0);
    }

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
}
