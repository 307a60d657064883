//! The Redis bus: queues are streams read through consumer groups, channels are pub/sub.
//!
//! **Queues.** `enqueue` appends an entry with the fields `id`, `key` and `body` to the stream
//! named after the queue (a small script refuses it past `REDIS_QUEUE_CAPACITY` entries instead of
//! trimming, since a trimmed entry nobody acknowledged would be lost); `enqueue_many` appends up to
//! `REDIS_ENQUEUE_BATCH` entries per script call, all or none, in one round trip. A consumer group is created
//! at id `0` with `MKSTREAM`, so entries appended before anyone consumed are kept for it. A
//! consumer:
//! - first reads its own pending list (`XREADGROUP … 0`): a restarted process that keeps its
//!   consumer name gets back at once what it had not acknowledged, marked redelivered; it reads it
//!   again after a lost connection or a cancelled read (a reply lost on the way leaves entries in
//!   that list), skipping what it still holds;
//! - every `redelivery_after / 2` (at most `REDIS_CLAIM_INTERVAL_MAX`) takes over, with
//!   `XAUTOCLAIM`, entries idle for `redelivery_after` in the group's pending list: those of a
//!   member that died, and its own deliveries dropped without an ack; they are marked
//!   redelivered;
//! - otherwise waits for new entries with `XREADGROUP … BLOCK` (at most `REDIS_BLOCK_MAX`), asking
//!   for no more than the free slots of `max_in_flight`.
//!
//! An ack is `XACK`. Entries are not deleted on ack (`XDEL` would take them from every group of
//! the stream, including one that has not read them yet): every `REDIS_TRIM_INTERVAL` a consumer
//! computes, over all groups of the stream, the oldest entry still pending or not yet delivered,
//! and trims the stream below it (`XTRIM MINID`). A stream with no group is never trimmed.
//!
//! **Channels.** `PUBLISH` on the logical name; each subscription has its own pub/sub connection,
//! checked every `REDIS_HEALTH_CHECK_INTERVAL`, re-established and resubscribed with backoff when
//! lost (what is published meanwhile is missed: channels are at most once).

use crate::channel_buffer::{BufferedSubscription, ChannelBuffer};
use crate::{BrokerUrl, BusOptions, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN, next_backoff};
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingReply, StreamReadReply,
};
use redis::{Client, Cmd, FromRedisValue, RedisError, RedisResult};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, EnqueueFailure, Published, QueueConsumer,
    QueueMessage, Subscription,
};

/// The longest one `XREADGROUP … BLOCK` waits, so a consumer regularly gets to claim and trim.
pub const REDIS_BLOCK_MAX: Duration = Duration::from_secs(1);

/// The longest between two `XAUTOCLAIM` passes of a consumer (it also runs every
/// `redelivery_after / 2`).
pub const REDIS_CLAIM_INTERVAL_MAX: Duration = Duration::from_secs(5);

/// How often a consumer trims its stream of the entries every group acknowledged.
pub const REDIS_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// How often a pub/sub connection is pinged, so a dead one is noticed and replaced.
pub const REDIS_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Entries one stream may hold (acknowledged ones count until trimmed); `enqueue` fails past it.
pub const REDIS_QUEUE_CAPACITY: usize = 1_000_000;

/// Attempts of one command when the connection fails (within `operation_timeout`).
const REDIS_COMMAND_ATTEMPTS: u32 = 3;

/// Reconnection attempts the connection manager makes by itself before failing a command (the
/// caller's backoff loop takes over after that).
const REDIS_MANAGER_RECONNECT_ATTEMPTS: usize = 2;

/// Appends one entry unless the stream is full: KEYS[1] stream; ARGV capacity, id, key, body.
const ENQUEUE_SCRIPT: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('XCFULL stream holds ' .. ARGV[1] .. ' entries')
end
return redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'key', ARGV[3], 'body', ARGV[4])
";

/// Appends several entries at once, all or none, unless the stream would then hold more than
/// the capacity: KEYS[1] stream; ARGV capacity, then id, key, body of each entry in order.
const ENQUEUE_MANY_SCRIPT: &str = r"
local count = (#ARGV - 1) / 3
if redis.call('XLEN', KEYS[1]) + count > tonumber(ARGV[1]) then
  return redis.error_reply('XCFULL stream holds ' .. ARGV[1] .. ' entries')
end
for i = 0, count - 1 do
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[2 + 3 * i], 'key', ARGV[3 + 3 * i], 'body', ARGV[4 + 3 * i])
end
return count
";

/// Entries appended by one script call of `enqueue_many` (a larger batch takes several calls).
pub const REDIS_ENQUEUE_BATCH: usize = 256;

/// A bus on a Redis server.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    /// Shared connection for every non-blocking command (enqueue, ack, publish, ping).
    commands: ConnectionManager,
    enqueue_script: redis::Script,
    enqueue_many_script: redis::Script,
    options: BusOptions,
    url: String,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus").field("url", &self.url).finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to the server of `broker` (`redis://[user:password@]host:port[/db]`) and checks
    /// that it answers.
    pub async fn open(broker: &BrokerUrl, options: &BusOptions) -> BusResult<RedisBus> {
        let client = Client::open(broker.raw.as_str()).map_err(|error| {
            BusError::Config(format!("redis URL {}: {error}", broker.redacted()))
        })?;
        let commands = connect(&client, options.operation_timeout, options).await?;
        let bus = RedisBus {
            client,
            commands,
            enqueue_script: redis::Script::new(ENQUEUE_SCRIPT),
            enqueue_many_script: redis::Script::new(ENQUEUE_MANY_SCRIPT),
            options: options.clone(),
            url: broker.redacted(),
        };
        bus.ping().await?;
        Ok(bus)
    }

    async fn query<T: FromRedisValue>(&self, what: &str, command: &Cmd) -> BusResult<T> {
        query(&self.commands, self.options.operation_timeout, what, command).await
    }
}

/// A connection manager whose commands wait at most `response_timeout` for their reply.
async fn connect(
    client: &Client,
    response_timeout: Duration,
    options: &BusOptions,
) -> BusResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.operation_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(REDIS_MANAGER_RECONNECT_ATTEMPTS)
        .set_min_delay(RECONNECT_BACKOFF_MIN)
        .set_max_delay(RECONNECT_BACKOFF_MAX);
    let timeout = options.operation_timeout;
    match tokio::time::timeout(timeout, client.get_connection_manager_with_config(config)).await {
        Ok(Ok(manager)) => Ok(manager),
        Ok(Err(error)) => Err(unavailable("connect", &error)),
        Err(_) => Err(BusError::Timeout(timeout)),
    }
}

fn unavailable(what: &str, error: &RedisError) -> BusError {
    BusError::Unavailable(format!("redis {what}: {error}"))
}

/// Whether a failed command may succeed on a new connection.
fn connection_failed(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

/// Runs `attempt` until it succeeds, retrying connection failures up to `REDIS_COMMAND_ATTEMPTS`
/// times with backoff, all within `timeout`.
/// Names the capacity when the script refused an entry because the stream is full.
fn full_queue(queue: &str, error: BusError) -> BusError {
    match error {
        BusError::Unavailable(text) if text.contains("XCFULL") => BusError::Unavailable(format!(
            "redis stream {queue} holds {REDIS_QUEUE_CAPACITY} entries (REDIS_QUEUE_CAPACITY)"
        )),
        other => other,
    }
}

async fn with_retries<T, F, Fut>(timeout: Duration, what: &str, mut attempt: F) -> BusResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let attempts = async {
        let mut pause = RECONNECT_BACKOFF_MIN;
        let mut tries = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if tries < REDIS_COMMAND_ATTEMPTS && connection_failed(&error) => {
                    tracing::debug!(%error, what, "redis command failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = next_backoff(pause);
                    tries += 1;
                }
                Err(error) => return Err(unavailable(what, &error)),
            }
        }
    };
    tokio::time::timeout(timeout, attempts).await.map_err(|_| BusError::Timeout(timeout))?
}

async fn query<T: FromRedisValue>(
    connection: &ConnectionManager,
    timeout: Duration,
    what: &str,
    command: &Cmd,
) -> BusResult<T> {
    with_retries(timeout, what, || {
        let mut connection = connection.clone();
        async move { command.query_async(&mut connection).await }
    })
    .await
}

/// Creates `group` on `stream` at its first entry, creating the stream when needed.
async fn create_group(
    connection: &ConnectionManager,
    timeout: Duration,
    stream: &str,
    group: &str,
) -> BusResult<()> {
    let mut command = redis::cmd("XGROUP");
    command.arg("CREATE").arg(stream).arg(group).arg("0").arg("MKSTREAM");
    with_retries(timeout, "create consumer group", || {
        let mut connection = connection.clone();
        let command = &command;
        async move {
            match command.query_async::<()>(&mut connection).await {
                Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
                other => other,
            }
        }
    })
    .await
}

#[async_trait]
impl Bus for RedisBus {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        let mut invocation = self.enqueue_script.prepare_invoke();
        invocation
            .key(queue)
            .arg(REDIS_QUEUE_CAPACITY)
            .arg(&message.id)
            .arg(&message.key)
            .arg(&message.body);
        let invocation = &invocation;
        with_retries(self.options.operation_timeout, "enqueue", || {
            let mut connection = self.commands.clone();
            async move { invocation.invoke_async::<String>(&mut connection).await }
        })
        .await
        .map_err(|error| full_queue(queue, error))?;
        Ok(())
    }

    /// One script call per `REDIS_ENQUEUE_BATCH` messages, each appending its messages in order,
    /// all or none: one round trip instead of one per message.
    async fn enqueue_many(
        &self,
        queue: &str,
        messages: &[QueueMessage],
    ) -> Result<(), EnqueueFailure> {
        for (index, chunk) in messages.chunks(REDIS_ENQUEUE_BATCH).enumerate() {
            let mut invocation = self.enqueue_many_script.prepare_invoke();
            invocation.key(queue).arg(REDIS_QUEUE_CAPACITY);
            for message in chunk {
                invocation.arg(&message.id).arg(&message.key).arg(&message.body);
            }
            let invocation = &invocation;
            with_retries(self.options.operation_timeout, "enqueue", || {
                let mut connection = self.commands.clone();
                async move { invocation.invoke_async::<usize>(&mut connection).await }
            })
            .await
            .map_err(|error| EnqueueFailure {
                confirmed: index * REDIS_ENQUEUE_BATCH,
                error: full_queue(queue, error),
            })?;
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        create_group(&self.commands, self.options.operation_timeout, queue, group).await?;
        let claim_interval = (self.options.redelivery_after / 2)
            .clamp(Duration::from_millis(10), REDIS_CLAIM_INTERVAL_MAX);
        let block = REDIS_BLOCK_MAX.min(claim_interval).max(Duration::from_millis(1));
        // The blocking reads get their own connection; a reply may take the block time.
        let reader =
            connect(&self.client, block + self.options.operation_timeout, &self.options).await?;
        let now = Instant::now();
        Ok(Box::new(RedisConsumer {
            reader,
            commands: self.commands.clone(),
            stream: queue.to_owned(),
            group: group.to_owned(),
            name: consumer.to_owned(),
            max_in_flight: self.options.max_in_flight.max(1),
            redelivery_after: self.options.redelivery_after,
            timeout: self.options.operation_timeout,
            block,
            claim_interval,
            held: Arc::new(Held::default()),
            ready: VecDeque::new(),
            read_own: true,
            own_cursor: "0".to_owned(),
            read_started: false,
            claim_cursor: "0-0".to_owned(),
            next_claim: now,
            next_trim: now + REDIS_TRIM_INTERVAL,
            pause: RECONNECT_BACKOFF_MIN,
        }))
    }

    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel).arg(body);
        self.query::<i64>("publish", &command).await?;
        Ok(())
    }

    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        let channels: Vec<String> = channels.iter().map(|name| (*name).to_owned()).collect();
        let timeout = self.options.operation_timeout;
        let (sink, stream) = connect_pubsub(&self.client, &channels, timeout).await?;
        let buffer = ChannelBuffer::new(self.options.channel_buffer);
        let reader = tokio::spawn(read_pubsub(
            self.client.clone(),
            channels,
            timeout,
            buffer.clone(),
            sink,
            stream,
        ));
        Ok(Box::new(BufferedSubscription::new(buffer, reader)))
    }

    async fn ping(&self) -> BusResult<()> {
        self.query::<String>("ping", &redis::cmd("PING")).await?;
        Ok(())
    }
}

/// Opens a pub/sub connection subscribed to `channels`.
async fn connect_pubsub(
    client: &Client,
    channels: &[String],
    timeout: Duration,
) -> BusResult<(PubSubSink, PubSubStream)> {
    let connecting = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channels).await?;
        Ok::<_, RedisError>(pubsub.split())
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(error)) => Err(unavailable("subscribe", &error)),
        Err(_) => Err(BusError::Timeout(timeout)),
    }
}

/// Feeds `buffer` from the pub/sub connection, replacing it when it is lost or stops answering.
async fn read_pubsub(
    client: Client,
    channels: Vec<String>,
    timeout: Duration,
    buffer: Arc<ChannelBuffer>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) {
    loop {
        let mut health = tokio::time::interval(REDIS_HEALTH_CHECK_INTERVAL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => buffer.push(Published {
                        channel: message.get_channel_name().to_owned(),
                        body: message.get_payload_bytes().to_vec(),
                    }),
                    None => break,
                },
                _ = health.tick() => {
                    let ping = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        tracing::warn!(?channels, "redis pub/sub connection lost; resubscribing");
        let mut pause = RECONNECT_BACKOFF_MIN;
        loop {
            tokio::time::sleep(pause).await;
            match connect_pubsub(&client, &channels, timeout).await {
                Ok((new_sink, new_stream)) => {
                    (sink, stream) = (new_sink, new_stream);
                    tracing::info!(?channels, "redis pub/sub resubscribed");
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "redis pub/sub reconnection failed");
                    pause = next_backoff(pause);
                }
            }
        }
    }
}

/// Stream ids a consumer holds: read and not yet handed back by an ack or a dropped delivery.
#[derive(Debug, Default)]
struct Held {
    ids: Mutex<HashSet<String>>,
    /// Woken when an id is released.
    released: Notify,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release(&self, id: &str) {
        self.lock().remove(id);
        self.released.notify_one();
    }
}

/// An entry read and not yet returned by `next`.
struct Ready {
    entry_id: String,
    message: QueueMessage,
    redelivered: bool,
}

struct RedisConsumer {
    /// Dedicated connection for the blocking reads.
    reader: ConnectionManager,
    /// The bus's shared connection, for acks, claims and trims.
    commands: ConnectionManager,
    stream: String,
    group: String,
    name: String,
    max_in_flight: usize,
    redelivery_after: Duration,
    timeout: Duration,
    block: Duration,
    claim_interval: Duration,
    held: Arc<Held>,
    /// Read, held, not yet returned; at most `max_in_flight` (reads ask for the free slots only).
    ready: VecDeque<Ready>,
    /// Read the own pending list (again) before new entries.
    read_own: bool,
    own_cursor: String,
    /// A blocking read was started and has not returned: if `next` was cancelled meanwhile, its
    /// entries may sit in the pending list unseen.
    read_started: bool,
    claim_cursor: String,
    next_claim: Instant,
    next_trim: Instant,
    pause: Duration,
}

#[async_trait]
impl QueueConsumer for RedisConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        loop {
            if let Some(ready) = self.ready.pop_front() {
                return Ok(self.delivery(ready));
            }
            match self.fill().await {
                Ok(()) => self.pause = RECONNECT_BACKOFF_MIN,
                Err(error @ (BusError::Config(_) | BusError::Closed)) => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, stream = %self.stream, "redis consumer: retrying");
                    self.read_own = true;
                    tokio::time::sleep(self.pause).await;
                    self.pause = next_backoff(self.pause);
                }
            }
        }
    }
}

impl RedisConsumer {
    fn delivery(&self, ready: Ready) -> Delivery {
        Delivery {
            message: ready.message,
            redelivered: ready.redelivered,
            acknowledge: Box::new(RedisAck {
                commands: self.commands.clone(),
                stream: self.stream.clone(),
                group: self.group.clone(),
                entry_id: ready.entry_id,
                held: self.held.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// Reads what comes next into `ready`, or waits up to the block time.
    async fn fill(&mut self) -> BusResult<()> {
        if std::mem::take(&mut self.read_started) {
            self.read_own = true;
        }
        let free = self.max_in_flight.saturating_sub(self.held.lock().len());
        if free == 0 {
            let _ = tokio::time::timeout(self.block, self.held.released.notified()).await;
            return Ok(());
        }
        if self.read_own {
            return self.read_own_pending(free).await;
        }
        let now = Instant::now();
        if now >= self.next_claim {
            let scan_complete = self.claim(free).await?;
            self.next_claim = if scan_complete { now + self.claim_interval } else { now };
            if !self.ready.is_empty() {
                return Ok(());
            }
        }
        if now >= self.next_trim {
            self.next_trim = now + REDIS_TRIM_INTERVAL;
            if let Err(error) = trim(&self.commands, self.timeout, &self.stream).await {
                tracing::warn!(%error, stream = %self.stream, "redis: trimming acknowledged entries failed");
            }
        }
        self.read_new(free).await
    }

    /// Reads the consumer's own pending list from `own_cursor`, skipping what it still holds.
    async fn read_own_pending(&mut self, free: usize) -> BusResult<()> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(free)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(&self.own_cursor);
        let reply: Option<StreamReadReply> =
            self.read(&command, "read own pending entries").await?;
        let entries: Vec<StreamId> =
            reply.into_iter().flat_map(|reply| reply.keys).flat_map(|key| key.ids).collect();
        if entries.is_empty() {
            self.read_own = false;
            self.own_cursor = "0".to_owned();
            return Ok(());
        }
        for entry in entries {
            self.own_cursor = entry.id.clone();
            self.take(entry, true).await;
        }
        Ok(())
    }

    /// One `XAUTOCLAIM` step; returns whether the scan of the pending list is complete.
    async fn claim(&mut self, free: usize) -> BusResult<bool> {
        let mut command = redis::cmd("XAUTOCLAIM");
        command
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(self.redelivery_after.as_millis() as u64)
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(free);
        let reply: StreamAutoClaimReply =
            match query(&self.commands, self.timeout, "claim idle entries", &command).await {
                Ok(reply) => reply,
                Err(error) if error.to_string().contains("NOGROUP") => {
                    self.recreate_group().await?;
                    return Ok(true);
                }
                Err(error) => return Err(error),
            };
        for entry in reply.claimed {
            // Its own deliveries still held are claimed back to itself; not delivered twice.
            if !self.held.lock().contains(&entry.id) {
                self.take(entry, true).await;
            }
        }
        self.claim_cursor = reply.next_stream_id;
        Ok(self.claim_cursor == "0-0")
    }

    /// Waits up to the block time for entries never delivered to the group.
    async fn read_new(&mut self, free: usize) -> BusResult<()> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(free)
            .arg("BLOCK")
            .arg(self.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">");
        self.read_started = true;
        let reply: Option<StreamReadReply> = self.read(&command, "read new entries").await?;
        self.read_started = false;
        for entry in reply.into_iter().flat_map(|reply| reply.keys).flat_map(|key| key.ids) {
            self.take(entry, false).await;
        }
        Ok(())
    }

    /// Runs an `XREADGROUP` on the reader connection, recreating the group when it is gone (a
    /// server restarted without persistence).
    async fn read(&mut self, command: &Cmd, what: &str) -> BusResult<Option<StreamReadReply>> {
        let timeout = self.block + self.timeout;
        let mut connection = self.reader.clone();
        match tokio::time::timeout(timeout, command.query_async(&mut connection)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) if error.code() == Some("NOGROUP") => {
                self.read_started = false;
                self.recreate_group().await?;
                Ok(None)
            }
            Ok(Err(error)) => Err(unavailable(what, &error)),
            Err(_) => Err(BusError::Timeout(timeout)),
        }
    }

    async fn recreate_group(&mut self) -> BusResult<()> {
        tracing::warn!(stream = %self.stream, group = %self.group, "redis consumer group gone; creating it again");
        create_group(&self.commands, self.timeout, &self.stream, &self.group).await
    }

    /// Holds an entry and queues it for `next`; an entry without the expected fields (not
    /// written by this bus) is acknowledged and skipped.
    async fn take(&mut self, entry: StreamId, redelivered: bool) {
        let body = entry.get::<Vec<u8>>("body");
        let id = entry.get::<String>("id");
        match (id, body) {
            (Some(id), Some(body)) => {
                let key = entry.get::<String>("key").unwrap_or_default();
                self.held.lock().insert(entry.id.clone());
                self.ready.push_back(Ready {
                    entry_id: entry.id,
                    message: QueueMessage { id, key, body },
                    redelivered,
                });
            }
            _ => {
                tracing::warn!(stream = %self.stream, entry = %entry.id, "redis: skipping an entry without id and body fields");
                let mut command = redis::cmd("XACK");
                command.arg(&self.stream).arg(&self.group).arg(&entry.id);
                if let Err(error) =
                    query::<i64>(&self.commands, self.timeout, "ack", &command).await
                {
                    tracing::warn!(%error, "redis: acknowledging a malformed entry failed");
                }
            }
        }
    }
}

/// `ms-seq` → (ms, seq); `None` for anything else.
fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The id right after `id`.
fn successor(id: (u64, u64)) -> (u64, u64) {
    match id.1.checked_add(1) {
        Some(seq) => (id.0, seq),
        None => (id.0.saturating_add(1), 0),
    }
}

/// Removes the entries every group of `stream` acknowledged: those below the oldest entry that
/// some group still has pending or has not delivered yet.
async fn trim(connection: &ConnectionManager, timeout: Duration, stream: &str) -> BusResult<()> {
    let mut command = redis::cmd("XINFO");
    command.arg("GROUPS").arg(stream);
    let groups: StreamInfoGroupsReply = query(connection, timeout, "list groups", &command).await?;
    let mut bound: Option<(u64, u64)> = None;
    for group in &groups.groups {
        let group_bound = if group.pending > 0 {
            let mut command = redis::cmd("XPENDING");
            command.arg(stream).arg(&group.name);
            match query(connection, timeout, "pending summary", &command).await? {
                StreamPendingReply::Data(data) => parse_entry_id(&data.start_id),
                // Acknowledged since XINFO: nothing older than what was delivered is needed.
                _ => parse_entry_id(&group.last_delivered_id).map(successor),
            }
        } else {
            parse_entry_id(&group.last_delivered_id).map(successor)
        };
        let Some(group_bound) = group_bound else { return Ok(()) };
        bound = Some(bound.map_or(group_bound, |bound| bound.min(group_bound)));
    }
    let Some((ms, seq)) = bound else { return Ok(()) };
    let mut command = redis::cmd("XTRIM");
    command.arg(stream).arg("MINID").arg(format!("{ms}-{seq}"));
    let removed: i64 = query(connection, timeout, "trim", &command).await?;
    if removed > 0 {
        tracing::debug!(stream, removed, "redis: trimmed acknowledged entries");
    }
    Ok(())
}

struct RedisAck {
    commands: ConnectionManager,
    stream: String,
    group: String,
    entry_id: String,
    held: Arc<Held>,
    timeout: Duration,
}

impl Drop for RedisAck {
    fn drop(&mut self) {
        // Acknowledged or given up: either way the consumer no longer holds it (a dropped one is
        // claimed again after `redelivery_after`).
        self.held.release(&self.entry_id);
    }
}

#[async_trait]
impl Acknowledge for RedisAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        let mut command = redis::cmd("XACK");
        command.arg(&self.stream).arg(&self.group).arg(&self.entry_id);
        query::<i64>(&self.commands, self.timeout, "ack", &command).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test server, or `None` when `XC_TEST_REDIS_URL` is unset (the conformance suite
    /// reports the skip loudly; this test just returns).
    async fn server() -> Option<(Client, ConnectionManager)> {
        let url = std::env::var("XC_TEST_REDIS_URL").ok().filter(|url| !url.is_empty())?;
        let client = Client::open(url).expect("redis URL");
        let manager = client.get_connection_manager().await.expect("connect");
        Some((client, manager))
    }

    async fn run<T: FromRedisValue>(connection: &ConnectionManager, command: &mut Cmd) -> T {
        query(connection, Duration::from_secs(5), "test", command).await.expect("command")
    }

    #[tokio::test]
    async fn trimming_removes_only_what_every_group_acknowledged() {
        let Some((_client, connection)) = server().await else { return };
        let timeout = Duration::from_secs(5);
        let stream = format!("xcomponent:redis-trim-test-{}", std::process::id());
        let _: i64 = run(&connection, redis::cmd("DEL").arg(&stream)).await;
        let mut ids = Vec::new();
        for index in 0..3 {
            let id: String = run(
                &connection,
                redis::cmd("XADD").arg(&stream).arg("*").arg("id").arg(index).arg("body").arg("{}"),
            )
            .await;
            ids.push(id);
        }
        trim(&connection, timeout, &stream).await.expect("trim");
        let length: usize = run(&connection, redis::cmd("XLEN").arg(&stream)).await;
        assert_eq!(length, 3, "a stream nobody consumes yet keeps everything");

        for group in ["fast", "slow"] {
            create_group(&connection, timeout, &stream, group).await.expect("group");
            let _: redis::Value = run(
                &connection,
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg("member")
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">"),
            )
            .await;
        }
        let _: i64 = run(&connection, redis::cmd("XACK").arg(&stream).arg("fast").arg(&ids)).await;
        let _: i64 =
            run(&connection, redis::cmd("XACK").arg(&stream).arg("slow").arg(&ids[0])).await;
        trim(&connection, timeout, &stream).await.expect("trim");
        let length: usize = run(&connection, redis::cmd("XLEN").arg(&stream)).await;
        assert_eq!(length, 2, "only the entry both groups acknowledged is removed");

        let _: i64 =
            run(&connection, redis::cmd("XACK").arg(&stream).arg("slow").arg(&ids[1..])).await;
        trim(&connection, timeout, &stream).await.expect("trim");
        let length: usize = run(&connection, redis::cmd("XLEN").arg(&stream)).await;
        assert_eq!(length, 0, "everything acknowledged by every group is removed");
        let _: i64 = run(&connection, redis::cmd("DEL").arg(&stream)).await;
    }

    #[test]
    fn entry_ids_parse_and_advance() {
        assert_eq!(parse_entry_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(parse_entry_id("0-0"), Some((0, 0)));
        assert_eq!(parse_entry_id("junk"), None);
        assert_eq!(successor((5, 1)), (5, 2));
        assert_eq!(successor((5, u64::MAX)), (6, 0));
    }
}
