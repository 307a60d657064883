//! The RabbitMQ backend (AMQP 0-9-1 through lapin), behind the `rabbitmq` feature.
//!
//! **Queues** are durable quorum queues named [`naming::dotted`] (`xcomponent:Payment` →
//! `xcomponent.Payment`), declared idempotently by `enqueue` and `consume`. A RabbitMQ queue *is*
//! the consumer group: every member that consumes it competes for its messages, so all members of
//! one group must use the same queue and the group name is not part of any broker name (use the
//! same group name on every member; two groups on one queue would share, not copy, its messages).
//! The queues are declared with `x-single-active-consumer`: one member at a time receives, the
//! others wait as hot standbys and take over, unacknowledged messages first, the moment it goes.
//! That keeps the enqueue order across a failover, which competing consumers would break.
//!
//! `enqueue` publishes persistent messages (delivery mode 2) on a publisher-confirm channel with
//! `mandatory` set and returns once the broker acknowledged them; a nack, a returned message or no
//! confirm within `BusOptions::operation_timeout` is an error. The message id travels as the
//! `message_id` property and the `id` header, the key as the `key` header. `enqueue_many`
//! publishes up to `RABBITMQ_PUBLISH_PIPELINE` messages before awaiting their confirms in order
//! (one channel keeps the publishing order). Consumers use manual
//! acknowledgements with a prefetch (`basic.qos`) of `BusOptions::max_in_flight`; `redelivered` is
//! the delivery's redelivered flag, or a non-zero `x-delivery-count`.
//!
//! **Channels** go through the durable topic exchange [`naming::RABBITMQ_EXCHANGE`] with the
//! dotted channel name as routing key. A subscription is an exclusive, auto-delete, server-named
//! queue bound to each routing key, at most `BusOptions::channel_buffer` long (the broker drops
//! the oldest beyond that).
//!
//! **Connections**: lapin does not reconnect by itself here (its optional auto-recovery is left
//! off so recovery is explicit and bounded by this crate's constants). The publishing connection
//! is reopened lazily by the next `enqueue`, `publish` or `ping`, retrying with a doubling pause
//! from [`RECONNECT_BACKOFF_MIN`] within `operation_timeout`. Every consumer and subscription has
//! its own connection, which it reopens by itself with the same backoff (capped at
//! `RECONNECT_BACKOFF_MAX`), declaring, binding and consuming again. Dropping a consumer closes
//! its connection at once, so the broker requeues its unacknowledged messages immediately.

use crate::{BrokerUrl, BusOptions, RECONNECT_BACKOFF_MIN, naming, next_backoff};
use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind,
    ExchangeKind,
};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, EnqueueFailure, Published, QueueConsumer,
    QueueMessage, Subscription,
};

/// Messages a subscription's connection holds before acknowledging them to the broker (its
/// prefetch); the rest wait in its queue, itself capped by `BusOptions::channel_buffer`.
pub const SUBSCRIPTION_PREFETCH: u16 = 64;

/// Messages `enqueue_many` publishes on the confirm channel before awaiting their confirms.
pub const RABBITMQ_PUBLISH_PIPELINE: usize = 256;

/// AMQP reply code of a normal close.
const REPLY_SUCCESS: u16 = 200;

/// A RabbitMQ bus. Cheap to clone: clones share the publishing connection.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL as given (it holds the password; never printed).
    url: String,
    /// The URL without its password, for errors and logs.
    redacted: String,
    options: BusOptions,
    /// The publishing connection, opened lazily and reopened after a loss.
    publisher: Mutex<Option<Publisher>>,
}

impl fmt::Debug for RabbitBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBus").field("url", &self.inner.redacted).finish_non_exhaustive()
    }
}

/// The publishing connection and its confirm channel.
struct Publisher {
    /// Kept so the connection lives as long as its channel.
    _connection: Connection,
    channel: Channel,
    /// Queues declared on this connection (declared again after a reconnection).
    declared: HashSet<String>,
}

impl RabbitBus {
    /// Connects to the broker named by `url` (`amqp://` or `amqps://`) and declares the channels'
    /// exchange.
    ///
    /// Errors: `BusError::Config` for a refused login, vhost or declaration;
    /// `BusError::Unavailable` or `BusError::Timeout` when the broker cannot be reached.
    pub async fn connect(url: &BrokerUrl, options: &BusOptions) -> BusResult<RabbitBus> {
        let bus = RabbitBus {
            inner: Arc::new(Inner {
                url: url.raw.clone(),
                redacted: url.redacted(),
                options: options.clone(),
                publisher: Mutex::new(None),
            }),
        };
        bus.publishing_channel(None).await?;
        Ok(bus)
    }

    /// The confirm channel of the publishing connection (reconnecting when it was lost), with
    /// `queue` declared on it.
    async fn publishing_channel(&self, queue: Option<&str>) -> BusResult<Channel> {
        let inner = &self.inner;
        let timeout = inner.options.operation_timeout;
        let deadline = Instant::now() + timeout;
        let mut guard = inner.publisher.lock().await;
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            if let Some(publisher) = guard.as_ref()
                && publisher.channel.status().connected()
            {
                break;
            }
            *guard = None;
            match tokio::time::timeout_at(deadline, open_publisher(&inner.url)).await {
                Ok(Ok(publisher)) => {
                    *guard = Some(publisher);
                    break;
                }
                Ok(Err(error)) if is_permanent(&error) => {
                    return Err(config(&inner.redacted, "connecting", &error));
                }
                Ok(Err(error)) => {
                    // Retry within the operation's time, never past it.
                    if Instant::now() + pause >= deadline {
                        return Err(unavailable(&inner.redacted, "connecting", &error));
                    }
                    tracing::debug!(url = %inner.redacted, %error, "RabbitMQ connection failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = next_backoff(pause);
                }
                Err(_) => return Err(BusError::Timeout(timeout)),
            }
        }
        let Some(publisher) = guard.as_mut() else {
            return Err(BusError::Unavailable("RabbitMQ publishing connection lost".to_owned()));
        };
        if let Some(queue) = queue
            && !publisher.declared.contains(queue)
        {
            let declared = tokio::time::timeout_at(
                deadline,
                declare_queue(&publisher.channel, &naming::dotted(queue)),
            )
            .await
            .map_err(|_| BusError::Timeout(timeout))?;
            match declared {
                Ok(()) => {
                    publisher.declared.insert(queue.to_owned());
                }
                Err(error) => {
                    // A failed declaration closes the channel: start afresh next time.
                    *guard = None;
                    return Err(classify(&inner.redacted, "declaring the queue", error));
                }
            }
        }
        Ok(publisher.channel.clone())
    }

    /// Forgets that `queue` was declared (it was deleted behind our back).
    async fn forget_declared(&self, queue: &str) {
        if let Some(publisher) = self.inner.publisher.lock().await.as_mut() {
            publisher.declared.remove(queue);
        }
    }

    /// Publishes and waits for the broker's confirm.
    /// What a queue message's confirmation means: stored, or why not.
    async fn settle(&self, queue: &str, name: &str, confirmation: Confirmation) -> BusResult<()> {
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                // Unroutable: the queue vanished since it was declared; declare it next time.
                self.forget_declared(queue).await;
                Err(BusError::Unavailable(format!(
                    "RabbitMQ returned the message: queue {name} does not exist"
                )))
            }
            Confirmation::Nack(_) => Err(BusError::Unavailable(format!(
                "RabbitMQ refused to store the message on queue {name} (nack)"
            ))),
            Confirmation::NotRequested => {
                Err(BusError::Unavailable("RabbitMQ channel is not in confirm mode".to_owned()))
            }
        }
    }

    async fn publish_confirmed(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> BusResult<Confirmation> {
        let timeout = self.inner.options.operation_timeout;
        let publish = async {
            let confirm = channel
                .basic_publish(
                    short(exchange)?,
                    short(routing_key)?,
                    BasicPublishOptions { mandatory, immediate: false },
                    body,
                    properties,
                )
                .await
                .map_err(|error| classify(&self.inner.redacted, "publishing", error))?;
            confirm
                .await
                .map_err(|error| classify(&self.inner.redacted, "awaiting the confirm", error))
        };
        tokio::time::timeout(timeout, publish).await.map_err(|_| BusError::Timeout(timeout))?
    }
}

/// The properties of a queue message: persistent, its id as `message_id` and `id` header, its
/// key as `key` header.
fn queue_properties(message: &QueueMessage) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("id".into(), AMQPValue::LongString(message.id.as_str().into()));
    headers.insert("key".into(), AMQPValue::LongString(message.key.as_str().into()));
    let properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    match ShortString::try_new(message.id.as_str()) {
        Ok(id) => properties.with_message_id(id),
        Err(_) => properties,
    }
}

/// Opens a connection with a confirm channel and the channels' exchange declared on it.
async fn open_publisher(url: &str) -> lapin::Result<Publisher> {
    let connection = open_connection(url).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    declare_exchange(&channel).await?;
    Ok(Publisher { _connection: connection, channel, declared: HashSet::new() })
}

async fn open_connection(url: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name("xcomponent-ai".into());
    Connection::connect(url, properties).await
}

async fn declare_exchange(channel: &Channel) -> lapin::Result<()> {
    channel
        .exchange_declare(
            naming::RABBITMQ_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
}

/// Declares a durable quorum queue with a single active consumer (same arguments every time:
/// RabbitMQ refuses a declaration whose arguments differ from the existing queue's).
async fn declare_queue(channel: &Channel, name: &str) -> Result<(), QueueError> {
    let name = ShortString::try_new(name).map_err(|_| QueueError::NameTooLong(name.to_owned()))?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    channel
        .queue_declare(
            name,
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
            arguments,
        )
        .await
        .map(|_| ())
        .map_err(QueueError::Broker)
}

/// Why a queue could not be declared.
enum QueueError {
    NameTooLong(String),
    Broker(lapin::Error),
}

/// Maps a declaration failure onto a bus error.
fn classify(url: &str, what: &str, error: impl Into<QueueError>) -> BusError {
    match error.into() {
        QueueError::NameTooLong(name) => BusError::Config(format!(
            "RabbitMQ name {name:?} is longer than 255 bytes, the AMQP limit"
        )),
        QueueError::Broker(error) if is_permanent(&error) => config(url, what, &error),
        QueueError::Broker(error) => unavailable(url, what, &error),
    }
}

impl From<lapin::Error> for QueueError {
    fn from(error: lapin::Error) -> Self {
        QueueError::Broker(error)
    }
}

/// An AMQP short string (at most 255 bytes).
fn short(text: &str) -> BusResult<ShortString> {
    ShortString::try_new(text).map_err(|_| {
        BusError::Config(format!("RabbitMQ name {text:?} is longer than 255 bytes, the AMQP limit"))
    })
}

/// Errors that retrying cannot fix: refused credentials or vhost, a queue declared elsewhere with
/// other arguments.
fn is_permanent(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(
                    AMQPHardError::NOTALLOWED
                        | AMQPHardError::INVALIDPATH
                        | AMQPHardError::NOTIMPLEMENTED
                )
        ),
        ErrorKind::InvalidProtocolVersion(_) | ErrorKind::AuthProviderError(_) => true,
        _ => false,
    }
}

fn config(url: &str, what: &str, error: &lapin::Error) -> BusError {
    BusError::Config(format!("RabbitMQ at {url}: {what}: {error}"))
}

fn unavailable(url: &str, what: &str, error: &lapin::Error) -> BusError {
    BusError::Unavailable(format!("RabbitMQ at {url}: {what}: {error}"))
}

#[async_trait]
impl Bus for RabbitBus {
    fn backend(&self) -> &'static str {
        "rabbitmq"
    }

    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        let name = naming::dotted(queue);
        let channel = self.publishing_channel(Some(queue)).await?;
        let confirmation = self
            .publish_confirmed(&channel, "", &name, &message.body, queue_properties(message), true)
            .await?;
        self.settle(queue, &name, confirmation).await
    }

    /// Publishes up to `RABBITMQ_PUBLISH_PIPELINE` messages on the confirm channel before
    /// awaiting their confirms, in order: one channel keeps the publishing order, so the broker
    /// stores them in it.
    async fn enqueue_many(
        &self,
        queue: &str,
        messages: &[QueueMessage],
    ) -> Result<(), EnqueueFailure> {
        let name = naming::dotted(queue);
        let timeout = self.inner.options.operation_timeout;
        let failed = |confirmed: usize| move |error| EnqueueFailure { confirmed, error };
        let exchange = short("").map_err(failed(0))?;
        let routing_key = short(&name).map_err(failed(0))?;
        let mut confirmed = 0;
        for chunk in messages.chunks(RABBITMQ_PUBLISH_PIPELINE) {
            let channel = self.publishing_channel(Some(queue)).await.map_err(failed(confirmed))?;
            let deadline = Instant::now() + timeout;
            let mut pending = Vec::with_capacity(chunk.len());
            let mut refused = None;
            for message in chunk {
                let published = tokio::time::timeout_at(
                    deadline,
                    channel.basic_publish(
                        exchange.clone(),
                        routing_key.clone(),
                        BasicPublishOptions { mandatory: true, immediate: false },
                        &message.body,
                        queue_properties(message),
                    ),
                )
                .await;
                match published {
                    Ok(Ok(confirm)) => pending.push(confirm),
                    Ok(Err(error)) => {
                        refused = Some(classify(&self.inner.redacted, "publishing", error));
                        break;
                    }
                    Err(_) => {
                        refused = Some(BusError::Timeout(timeout));
                        break;
                    }
                }
            }
            for confirm in pending {
                let confirmation = match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(confirmation)) => confirmation,
                    Ok(Err(error)) => {
                        let error = classify(&self.inner.redacted, "awaiting the confirm", error);
                        return Err(failed(confirmed)(error));
                    }
                    Err(_) => return Err(failed(confirmed)(BusError::Timeout(timeout))),
                };
                self.settle(queue, &name, confirmation).await.map_err(failed(confirmed))?;
                confirmed += 1;
            }
            if let Some(error) = refused {
                return Err(failed(confirmed)(error));
            }
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        _group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        let mut member = RabbitConsumer {
            url: self.inner.url.clone(),
            redacted: self.inner.redacted.clone(),
            queue: naming::dotted(queue),
            tag: consumer.to_owned(),
            prefetch: prefetch(self.inner.options.max_in_flight),
            operation_timeout: self.inner.options.operation_timeout,
            session: None,
        };
        member.session = Some(member.open().await?);
        Ok(Box::new(member))
    }

    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        let publishing = self.publishing_channel(None).await?;
        let confirmation = self
            .publish_confirmed(
                &publishing,
                naming::RABBITMQ_EXCHANGE,
                &naming::dotted(channel),
                body,
                BasicProperties::default().with_delivery_mode(1),
                false,
            )
            .await?;
        match confirmation {
            // No subscriber is not an error: channels are at most once.
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) | Confirmation::NotRequested => Err(BusError::Unavailable(
                format!("RabbitMQ did not accept the message on channel {channel}"),
            )),
        }
    }

    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        let routes = channels
            .iter()
            .map(|channel| (naming::dotted(channel), (*channel).to_owned()))
            .collect();
        let mut subscription = RabbitSubscription {
            url: self.inner.url.clone(),
            redacted: self.inner.redacted.clone(),
            routes,
            max_length: i64::try_from(self.inner.options.channel_buffer.max(1)).unwrap_or(i64::MAX),
            operation_timeout: self.inner.options.operation_timeout,
            session: None,
        };
        subscription.session = Some(subscription.open().await?);
        Ok(Box::new(subscription))
    }

    async fn ping(&self) -> BusResult<()> {
        self.publishing_channel(None).await.map(|_| ())
    }
}

/// `max_in_flight` as an AMQP prefetch count (1 to 65,535).
fn prefetch(max_in_flight: usize) -> u16 {
    u16::try_from(max_in_flight.max(1)).unwrap_or(u16::MAX)
}

/// A connection with one channel consuming one queue.
struct Session {
    connection: Connection,
    consumer: lapin::Consumer,
}

impl Session {
    /// Closes the connection in the background: the broker requeues what it had not seen acked.
    fn close(self) {
        let Session { connection, consumer } = self;
        drop(consumer);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = connection.close(REPLY_SUCCESS, "closed by xcomponent-ai".into()).await;
                });
            }
            // No runtime: dropping the connection closes it once nothing else holds it.
            Err(_) => drop(connection),
        }
    }
}

/// A member of a queue's group, with its own connection.
struct RabbitConsumer {
    url: String,
    redacted: String,
    queue: String,
    tag: String,
    prefetch: u16,
    operation_timeout: Duration,
    session: Option<Session>,
}

impl RabbitConsumer {
    /// Connects, declares the queue, sets the prefetch and starts consuming.
    async fn open(&self) -> BusResult<Session> {
        let open = async {
            let connection = open_connection(&self.url)
                .await
                .map_err(|error| classify(&self.redacted, "connecting", error))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| classify(&self.redacted, "opening a channel", error))?;
            declare_queue(&channel, &self.queue)
                .await
                .map_err(|error| classify(&self.redacted, "declaring the queue", error))?;
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await
                .map_err(|error| classify(&self.redacted, "setting the prefetch", error))?;
            let consumer = channel
                .basic_consume(
                    short(&self.queue)?,
                    short(&self.tag)?,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| classify(&self.redacted, "consuming", error))?;
            Ok(Session { connection, consumer })
        };
        tokio::time::timeout(self.operation_timeout, open)
            .await
            .map_err(|_| BusError::Timeout(self.operation_timeout))?
    }
}

#[async_trait]
impl QueueConsumer for RabbitConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        // Bounded by its pause (RECONNECT_BACKOFF_MAX), not by a count: a consumer outlives any
        // broker outage; the caller stops it by dropping the future or the consumer.
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            let Some(session) = self.session.as_mut() else {
                match self.open().await {
                    Ok(session) => {
                        tracing::info!(queue = %self.queue, "RabbitMQ consumer reconnected");
                        self.session = Some(session);
                        pause = RECONNECT_BACKOFF_MIN;
                    }
                    Err(BusError::Config(reason)) => return Err(BusError::Config(reason)),
                    Err(error) => {
                        tracing::warn!(queue = %self.queue, %error, ?pause, "RabbitMQ consumer cannot reconnect yet");
                        tokio::time::sleep(pause).await;
                        pause = next_backoff(pause);
                    }
                }
                continue;
            };
            match session.consumer.next().await {
                Some(Ok(delivery)) => return Ok(to_delivery(delivery)),
                Some(Err(error)) => {
                    tracing::warn!(queue = %self.queue, %error, "RabbitMQ consumer lost its connection");
                }
                None => {
                    tracing::warn!(queue = %self.queue, "RabbitMQ consumer cancelled by the broker");
                }
            }
            if let Some(session) = self.session.take() {
                session.close();
            }
        }
    }
}

impl Drop for RabbitConsumer {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
    }
}

/// A lapin delivery as a bus delivery.
fn to_delivery(delivery: lapin::message::Delivery) -> Delivery {
    let headers = delivery.properties.headers().as_ref();
    let header = |name: &str| -> Option<String> {
        match headers?.inner().get(name)? {
            AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into()),
            AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
            _ => None,
        }
    };
    let id = header("id")
        .or_else(|| delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned()))
        .unwrap_or_default();
    let key = header("key").unwrap_or_default();
    let delivery_count = headers.and_then(|table| table.inner().get("x-delivery-count"));
    let counted = delivery_count.is_some_and(|count| match count {
        AMQPValue::LongLongInt(n) => *n > 0,
        AMQPValue::LongInt(n) => *n > 0,
        AMQPValue::LongUInt(n) => *n > 0,
        AMQPValue::ShortInt(n) => *n > 0,
        AMQPValue::ShortUInt(n) => *n > 0,
        _ => false,
    });
    Delivery {
        message: QueueMessage { id, key, body: delivery.data },
        redelivered: delivery.redelivered || counted,
        acknowledge: Box::new(RabbitAck { acker: delivery.acker }),
    }
}

struct RabbitAck {
    acker: Acker,
}

#[async_trait]
impl Acknowledge for RabbitAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        self.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(|error| {
            // The channel is gone: the broker delivers the message again.
            BusError::Unavailable(format!("RabbitMQ ack not sent: {error}"))
        })
    }
}

/// A subscription: an exclusive server-named queue bound to the channels' routing keys.
struct RabbitSubscription {
    url: String,
    redacted: String,
    /// Routing key → logical channel name.
    routes: HashMap<String, String>,
    /// `x-max-length` of the subscription's queue (`BusOptions::channel_buffer`).
    max_length: i64,
    operation_timeout: Duration,
    session: Option<Session>,
}

impl RabbitSubscription {
    /// Connects, declares the exchange and a fresh queue, binds it and consumes it.
    async fn open(&self) -> BusResult<Session> {
        let open = async {
            let connection = open_connection(&self.url)
                .await
                .map_err(|error| classify(&self.redacted, "connecting", error))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| classify(&self.redacted, "opening a channel", error))?;
            declare_exchange(&channel)
                .await
                .map_err(|error| classify(&self.redacted, "declaring the exchange", error))?;
            let mut arguments = FieldTable::default();
            arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(self.max_length));
            let queue = channel
                .queue_declare(
                    ShortString::default(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    arguments,
                )
                .await
                .map_err(|error| classify(&self.redacted, "declaring the queue", error))?;
            for routing_key in self.routes.keys() {
                channel
                    .queue_bind(
                        queue.name().clone(),
                        naming::RABBITMQ_EXCHANGE.into(),
                        short(routing_key)?,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|error| classify(&self.redacted, "binding the queue", error))?;
            }
            channel
                .basic_qos(SUBSCRIPTION_PREFETCH, BasicQosOptions::default())
                .await
                .map_err(|error| classify(&self.redacted, "setting the prefetch", error))?;
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    ShortString::default(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| classify(&self.redacted, "consuming", error))?;
            Ok(Session { connection, consumer })
        };
        tokio::time::timeout(self.operation_timeout, open)
            .await
            .map_err(|_| BusError::Timeout(self.operation_timeout))?
    }
}

#[async_trait]
impl Subscription for RabbitSubscription {
    async fn next(&mut self) -> BusResult<Published> {
        // Bounded by its pause, like `RabbitConsumer::next`.
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            let Some(session) = self.session.as_mut() else {
                match self.open().await {
                    Ok(session) => {
                        tracing::info!("RabbitMQ subscription reconnected");
                        self.session = Some(session);
                        pause = RECONNECT_BACKOFF_MIN;
                    }
                    Err(BusError::Config(reason)) => return Err(BusError::Config(reason)),
                    Err(error) => {
                        tracing::warn!(%error, ?pause, "RabbitMQ subscription cannot reconnect yet");
                        tokio::time::sleep(pause).await;
                        pause = next_backoff(pause);
                    }
                }
                continue;
            };
            match session.consumer.next().await {
                Some(Ok(delivery)) => {
                    // Taken: the message is ours from now on (channels are at most once).
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                    let Some(channel) = self.routes.get(delivery.routing_key.as_str()) else {
                        continue;
                    };
                    return Ok(Published { channel: channel.clone(), body: delivery.data });
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "RabbitMQ subscription lost its connection");
                }
                None => tracing::warn!("RabbitMQ subscription cancelled by the broker"),
            }
            if let Some(session) = self.session.take() {
                session.close();
            }
        }
    }
}

impl Drop for RabbitSubscription {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_stays_within_amqp_bounds() {
        assert_eq!(prefetch(0), 1);
        assert_eq!(prefetch(256), 256);
        assert_eq!(prefetch(1_000_000), u16::MAX);
    }

    #[test]
    fn long_names_are_a_configuration_error() {
        assert!(matches!(short(&"q".repeat(256)), Err(BusError::Config(_))));
        assert!(short("xcomponent.Payment").is_ok());
    }
}
