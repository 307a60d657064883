//! The NATS bus: queues are JetStream streams read by durable pull consumers, channels are core
//! NATS subjects. Works with servers from 2.9 on (no option of later servers is used).
//!
//! **Queues.** Each queue is a stream `XC_<name>` on the subject `xcomponent.queue.<name>`
//! (`naming::nats_queue`), file storage, **work-queue retention** (an entry is removed once
//! acknowledged), at most `NATS_QUEUE_CAPACITY` entries with the discard-new policy (a full queue
//! refuses `enqueue` rather than losing entries), and the message id as `Nats-Msg-Id`, so a
//! publish retried within `NATS_DUPLICATE_WINDOW` is stored once. `enqueue` waits for the
//! JetStream publish ack; `enqueue_many` publishes up to `NATS_PUBLISH_PIPELINE` messages before
//! awaiting their acks in order.
//!
//! A consumer group is a durable pull consumer named after the group (`naming::nats_consumer`):
//! explicit acks, deliver-all (entries stored before the group existed are kept for it),
//! `ack_wait = redelivery_after` (an entry not acknowledged by then goes to any member again) and
//! `max_ack_pending = max_in_flight` (for the whole group). A work-queue stream accepts one
//! group; a second group on the same queue is refused with `BusError::Config`. Each member pulls
//! batches of at most its free slots, each pull waiting at most `NATS_PULL_EXPIRES` on the server;
//! a failed or silent pull is replaced with backoff, and the consumer is re-created if the server
//! lost it. `redelivered` is the delivery count above one. An ack is confirmed by the server
//! (`AckAck`).
//!
//! **Channels.** Core NATS publish/subscribe on `naming::nats_channel_subject`; the client
//! reconnects and resubscribes by itself (what is published meanwhile is missed).

use crate::channel_buffer::{BufferedSubscription, ChannelBuffer};
use crate::naming;
use crate::{BrokerUrl, BusOptions, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN, next_backoff};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{Context, ContextBuilder, PublishErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Message};
use async_nats::{Client, ConnectOptions, HeaderMap, ServerAddr};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, EnqueueFailure, Published, QueueConsumer,
    QueueMessage, Subscription,
};

/// The longest one pull request waits on the server for entries before it is renewed.
pub const NATS_PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Entries one queue's stream may hold; `enqueue` fails past it (discard-new policy).
pub const NATS_QUEUE_CAPACITY: i64 = 1_000_000;

/// How long the server remembers message ids to drop a retried publish.
pub const NATS_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Messages `enqueue_many` publishes before awaiting their JetStream acks.
pub const NATS_PUBLISH_PIPELINE: usize = 256;

/// The JetStream API request answered with the account information.
const ACCOUNT_INFO_SUBJECT: &str = "$JS.API.INFO";

/// The header that carries the ordering key.
const KEY_HEADER: &str = "Xc-Key";

/// JetStream API error: a work-queue stream already has a consumer on all its subjects.
const MULTIPLE_WORKQUEUE_CONSUMERS: u64 = 10099;

/// A bus on a NATS server with JetStream.
#[derive(Clone)]
pub struct NatsBus {
    client: Client,
    jetstream: Context,
    options: BusOptions,
    url: String,
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The pause before reconnection attempt `attempts` (the first is immediate).
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let mut pause = RECONNECT_BACKOFF_MIN;
    for _ in 2..attempts.min(32) {
        pause = next_backoff(pause);
    }
    pause.min(RECONNECT_BACKOFF_MAX)
}

fn unavailable(what: &str, error: impl fmt::Display) -> BusError {
    BusError::Unavailable(format!("nats {what}: {error}"))
}

/// The headers (`Nats-Msg-Id`, the key) and body of a queue message.
fn queue_message(message: &QueueMessage) -> (HeaderMap, bytes::Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
    headers.insert(KEY_HEADER, message.key.as_str());
    (headers, bytes::Bytes::copy_from_slice(&message.body))
}

/// Runs `work` within `timeout`, mapping its error to `BusError::Unavailable`.
async fn bounded<T, E: fmt::Display>(
    timeout: Duration,
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> BusResult<T> {
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(unavailable(what, error)),
        Err(_) => Err(BusError::Timeout(timeout)),
    }
}

impl NatsBus {
    /// Connects to the servers of `broker` (`nats://[user:password@|token@]host:port[,host:port…]`,
    /// `tls://` for TLS) and checks that JetStream answers.
    pub async fn open(broker: &BrokerUrl, options: &BusOptions) -> BusResult<NatsBus> {
        let scheme = if broker.tls { "tls" } else { "nats" };
        let mut addresses = Vec::new();
        for host in &broker.hosts {
            let address: ServerAddr = format!("{scheme}://{host}").parse().map_err(|error| {
                BusError::Config(format!("nats URL {}: {error}", broker.redacted()))
            })?;
            addresses.push(address);
        }
        let mut connect = ConnectOptions::new()
            .name("xcomponent-ai")
            .connection_timeout(options.operation_timeout)
            .request_timeout(Some(options.operation_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .require_tls(broker.tls)
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection event");
            });
        connect = match (&broker.username, &broker.password) {
            (Some(user), Some(password)) => {
                connect.user_and_password(user.clone(), password.clone())
            }
            (Some(token), None) => connect.token(token.clone()),
            _ => connect,
        };
        let client =
            bounded(options.operation_timeout, "connect", connect.connect(addresses)).await?;
        let jetstream =
            ContextBuilder::new().timeout(options.operation_timeout).build(client.clone());
        let bus = NatsBus { client, jetstream, options: options.clone(), url: broker.redacted() };
        bus.ping().await?;
        Ok(bus)
    }
}

impl NatsBus {
    /// Asks JetStream for the account information: a round trip that fails when the server is
    /// unreachable or has no JetStream. (The reply is not decoded: its fields vary with the
    /// server version.)
    async fn account_info(&self, what: &str) -> BusResult<()> {
        let request = self.client.request(ACCOUNT_INFO_SUBJECT, bytes::Bytes::new());
        let reply = bounded(self.options.operation_timeout, what, request).await?;
        let text = String::from_utf8_lossy(&reply.payload);
        if text.contains("\"error\"") {
            return Err(unavailable(what, format!("JetStream answered {text}")));
        }
        Ok(())
    }
}

/// Creates the stream of `queue` unless it exists.
async fn ensure_stream(
    jetstream: &Context,
    timeout: Duration,
    queue: &str,
) -> BusResult<stream::Stream> {
    let (name, subject) = naming::nats_queue(queue);
    let config = stream::Config {
        name,
        subjects: vec![subject],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        max_messages: NATS_QUEUE_CAPACITY,
        discard: DiscardPolicy::New,
        duplicate_window: NATS_DUPLICATE_WINDOW,
        num_replicas: 1,
        ..stream::Config::default()
    };
    bounded(timeout, "create stream", jetstream.get_or_create_stream(config)).await
}

/// The durable pull consumer of `group` on `queue`, created (with its stream) unless it exists.
async fn ensure_consumer(
    jetstream: &Context,
    options: &BusOptions,
    queue: &str,
    group: &str,
) -> BusResult<PullConsumer> {
    let stream = ensure_stream(jetstream, options.operation_timeout, queue).await?;
    let durable = naming::nats_consumer(group);
    let config = pull::Config {
        durable_name: Some(durable.clone()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: options.redelivery_after,
        max_ack_pending: i64::try_from(options.max_in_flight.max(1)).unwrap_or(i64::MAX),
        ..pull::Config::default()
    };
    let creating = stream.get_or_create_consumer(&durable, config);
    match tokio::time::timeout(options.operation_timeout, creating).await {
        Ok(Ok(consumer)) => Ok(consumer),
        Ok(Err(error)) => {
            if let async_nats::jetstream::stream::ConsumerErrorKind::JetStream(api) = error.kind()
                && api.error_code().0 == MULTIPLE_WORKQUEUE_CONSUMERS
            {
                return Err(BusError::Config(format!(
                    "nats queue {queue} already has a consumer group other than {group}: a \
                     queue is read by one group"
                )));
            }
            Err(unavailable("create consumer", error))
        }
        Err(_) => Err(BusError::Timeout(options.operation_timeout)),
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn backend(&self) -> &'static str {
        "nats"
    }

    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        let (_, subject) = naming::nats_queue(queue);
        let (headers, body) = queue_message(message);
        let timeout = self.options.operation_timeout;
        let publish = || async {
            let ack = self
                .jetstream
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await?;
            ack.await
        };
        let first = tokio::time::timeout(timeout, publish()).await;
        match first {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.kind() == PublishErrorKind::StreamNotFound => {
                ensure_stream(&self.jetstream, timeout, queue).await?;
                bounded(timeout, "publish", publish()).await.map(|_| ())
            }
            Ok(Err(error)) => Err(unavailable("publish", error)),
            Err(_) => Err(BusError::Timeout(timeout)),
        }
    }

    /// Publishes up to `NATS_PUBLISH_PIPELINE` messages before awaiting their JetStream acks, in
    /// order (one connection keeps the publishing order). A message whose publish failed is
    /// enqueued alone once more (which re-creates a lost stream), then the pipeline goes on
    /// after it; copies of the ones published behind it are dropped by `Nats-Msg-Id`.
    async fn enqueue_many(
        &self,
        queue: &str,
        messages: &[QueueMessage],
    ) -> Result<(), EnqueueFailure> {
        let (_, subject) = naming::nats_queue(queue);
        let timeout = self.options.operation_timeout;
        let mut confirmed = 0;
        while confirmed < messages.len() {
            let end = (confirmed + NATS_PUBLISH_PIPELINE).min(messages.len());
            let mut acked = 0;
            let pipeline = async {
                // Awaiting a publish hands it to the connection, so they go out in order.
                let mut pending = Vec::with_capacity(end - confirmed);
                for message in &messages[confirmed..end] {
                    let (headers, body) = queue_message(message);
                    let subject = subject.clone();
                    pending
                        .push(self.jetstream.publish_with_headers(subject, headers, body).await?);
                }
                for ack in pending {
                    ack.await?;
                    acked += 1;
                }
                Ok::<_, async_nats::jetstream::context::PublishError>(())
            };
            let outcome = tokio::time::timeout(timeout, pipeline).await;
            confirmed += acked;
            if matches!(outcome, Ok(Ok(()))) {
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
        _consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        let consumer = ensure_consumer(&self.jetstream, &self.options, queue, group).await?;
        Ok(Box::new(NatsConsumer {
            jetstream: self.jetstream.clone(),
            options: self.options.clone(),
            queue: queue.to_owned(),
            group: group.to_owned(),
            consumer,
            batch: None,
            held: Arc::new(Held::default()),
            pause: RECONNECT_BACKOFF_MIN,
        }))
    }

    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        let subject = naming::nats_channel_subject(channel);
        let body = bytes::Bytes::copy_from_slice(body);
        bounded(self.options.operation_timeout, "publish", self.client.publish(subject, body)).await
    }

    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        let timeout = self.options.operation_timeout;
        let mut names = HashMap::new();
        let mut subscribers = Vec::new();
        for channel in channels {
            let subject = naming::nats_channel_subject(channel);
            let subscriber =
                bounded(timeout, "subscribe", self.client.subscribe(subject.clone())).await?;
            subscribers.push(subscriber);
            names.insert(subject, (*channel).to_owned());
        }
        // A request answered on this connection was read after the subscriptions: they are
        // active once it returns.
        bounded(timeout, "flush", self.client.flush()).await?;
        self.account_info("confirm subscription").await?;
        let buffer = ChannelBuffer::new(self.options.channel_buffer);
        let feed = buffer.clone();
        let reader = tokio::spawn(async move {
            let mut merged = futures_util::stream::select_all(subscribers);
            while let Some(message) = merged.next().await {
                let subject = message.subject.as_str();
                let channel = names.get(subject).cloned().unwrap_or_else(|| subject.to_owned());
                feed.push(Published { channel, body: message.payload.to_vec() });
            }
            feed.close();
        });
        Ok(Box::new(BufferedSubscription::new(buffer, reader)))
    }

    async fn ping(&self) -> BusResult<()> {
        self.account_info("ping").await
    }
}

/// Deliveries a member holds: returned by `next`, not yet acknowledged or dropped.
#[derive(Debug, Default)]
struct Held {
    count: AtomicUsize,
    /// Woken when one is released.
    released: Notify,
}

struct NatsConsumer {
    jetstream: Context,
    options: BusOptions,
    queue: String,
    group: String,
    consumer: PullConsumer,
    /// The pull request being read.
    batch: Option<pull::Batch>,
    held: Arc<Held>,
    pause: Duration,
}

#[async_trait]
impl QueueConsumer for NatsConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        loop {
            let Some(batch) = self.batch.as_mut() else {
                self.pull().await?;
                continue;
            };
            // The batch ends by itself shortly after its expiry; this bound also covers a
            // connection that went silent.
            let wait = NATS_PULL_EXPIRES + self.options.operation_timeout;
            match tokio::time::timeout(wait, batch.next()).await {
                Ok(Some(Ok(message))) => {
                    self.pause = RECONNECT_BACKOFF_MIN;
                    return Ok(self.delivery(message));
                }
                Ok(Some(Err(error))) => {
                    self.batch = None;
                    self.recover(&error.to_string()).await?;
                }
                Ok(None) => self.batch = None,
                Err(_) => {
                    self.batch = None;
                    tracing::debug!(queue = %self.queue, "nats pull went silent; renewing it");
                }
            }
        }
    }
}

impl NatsConsumer {
    /// Sends a pull request for the free slots, or waits for a slot to free up.
    async fn pull(&mut self) -> BusResult<()> {
        let max_in_flight = self.options.max_in_flight.max(1);
        let free = max_in_flight.saturating_sub(self.held.count.load(Ordering::SeqCst));
        if free == 0 {
            let _ = tokio::time::timeout(NATS_PULL_EXPIRES, self.held.released.notified()).await;
            return Ok(());
        }
        let request =
            self.consumer.batch().max_messages(free).expires(NATS_PULL_EXPIRES).messages();
        match tokio::time::timeout(self.options.operation_timeout, request).await {
            Ok(Ok(batch)) => {
                self.batch = Some(batch);
                Ok(())
            }
            Ok(Err(error)) => self.recover(&error.to_string()).await,
            Err(_) => self.recover("pull request timed out").await,
        }
    }

    /// Waits the backoff after a failure, then makes sure the stream and consumer still exist.
    async fn recover(&mut self, error: &str) -> BusResult<()> {
        tracing::warn!(error, queue = %self.queue, "nats consumer: retrying");
        tokio::time::sleep(self.pause).await;
        self.pause = next_backoff(self.pause);
        match ensure_consumer(&self.jetstream, &self.options, &self.queue, &self.group).await {
            Ok(consumer) => self.consumer = consumer,
            Err(error @ BusError::Config(_)) => return Err(error),
            Err(error) => tracing::debug!(%error, "nats consumer: not back yet"),
        }
        Ok(())
    }

    fn delivery(&self, message: Message) -> Delivery {
        let (redelivered, sequence) = match message.info() {
            Ok(info) => (info.delivered > 1, info.stream_sequence),
            Err(_) => (true, 0),
        };
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str().to_owned())
        };
        let id = header(async_nats::header::NATS_MESSAGE_ID.as_ref());
        let key = header(KEY_HEADER).unwrap_or_default();
        let (message, acker) = message.split();
        // Every message this bus enqueues has the id header; another publisher's gets its place.
        let id = id.unwrap_or_else(|| format!("nats:{}:{sequence}", message.subject));
        self.held.count.fetch_add(1, Ordering::SeqCst);
        Delivery {
            message: QueueMessage { id, key, body: message.payload.to_vec() },
            redelivered,
            acknowledge: Box::new(NatsAck {
                acker,
                held: self.held.clone(),
                timeout: self.options.operation_timeout,
            }),
        }
    }
}

struct NatsAck {
    acker: jetstream::message::Acker,
    held: Arc<Held>,
    timeout: Duration,
}

impl Drop for NatsAck {
    fn drop(&mut self) {
        // Acknowledged or given up (the server delivers it again after `ack_wait`).
        self.held.count.fetch_sub(1, Ordering::SeqCst);
        self.held.released.notify_one();
    }
}

#[async_trait]
impl Acknowledge for NatsAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        bounded(self.timeout, "ack", self.acker.double_ack()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_pauses_grow_to_the_bound() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), RECONNECT_BACKOFF_MIN);
        assert_eq!(reconnect_delay(3), RECONNECT_BACKOFF_MIN * 2);
        assert_eq!(reconnect_delay(1_000), RECONNECT_BACKOFF_MAX);
    }
}
