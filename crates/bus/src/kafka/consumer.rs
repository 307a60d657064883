//! Queue consumers of the Kafka bus: a member of the queue's consumer group (or, for
//! `consume_exclusive`, a reader of its one partition by assignment), with the window of what it
//! delivered and what came back acknowledged. Offsets are committed by this module, never
//! automatically: acknowledgements may come in any order, so each partition keeps the offsets it
//! delivered and commits only the prefix that is entirely acknowledged.

use super::replaced::{LastDelivered, log_replaced, record_id};
use super::{
    DEFAULT_CLIENT_ID, KAFKA_MEMBER_RECONNECT_BACKOFF, KafkaBus, MAX_SESSION_TIMEOUT,
    MIN_SESSION_TIMEOUT, broker_lost, group_id, kafka_error, lock, log_librdkafka, millis,
    pause_all, recover, unique_suffix,
};
use crate::{RECONNECT_BACKOFF_MIN, naming, next_backoff};
use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use xcomponent_core::bus::{
    Acknowledge, BusError, BusResult, Delivery, QueueConsumer, QueueMessage,
};

impl KafkaBus {
    /// A consumer of `queue` for `group`: a member of the group (`exclusive` false), or a reader
    /// of its one partition by assignment resuming from the group's committed offset.
    pub(super) async fn consumer(
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
    /// Bumped when the partition is read again from its beginning (the broker replaced its
    /// log): acknowledgements of an older epoch are ignored.
    epoch: u64,
    /// The record delivered last, to tell after a lost connection whether the broker still
    /// holds it (`replaced`).
    last: Option<LastDelivered>,
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
    /// After a lost connection: each partition whose log the broker replaced (the record
    /// delivered last is gone or another, see `replaced`) is read again from its beginning;
    /// its unacknowledged deliveries are forgotten (their acknowledgements ignored) and come
    /// again if the new log holds them. A probe that fails leaves the partition as it is.
    async fn read_replaced_logs_again(&mut self) {
        let lasts: Vec<(i32, LastDelivered)> = lock(&self.window)
            .partitions
            .iter()
            .filter_map(|(partition, window)| window.last.clone().map(|last| (*partition, last)))
            .collect();
        let timeout = self.bus.inner.options.operation_timeout;
        tracing::debug!(topic = %self.topic, ?lasts, "Kafka logs to check after a lost connection");
        for (partition, last) in lasts {
            let base = self.bus.inner.base.clone();
            let probe_group = format!("{}.probe.{}", self.bus.inner.group_prefix, unique_suffix());
            let topic = self.topic.clone();
            let probed = tokio::task::spawn_blocking(move || {
                log_replaced(&base, &probe_group, &topic, partition, &last, timeout)
            })
            .await;
            tracing::debug!(topic = %self.topic, partition, ?probed, "Kafka log checked after a lost connection");
            match probed {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => self.read_again_from_beginning(partition, timeout),
                Ok(Err(error)) => {
                    tracing::warn!(topic = %self.topic, partition, %error, "Kafka log not checked after a lost connection");
                }
                Err(error) => {
                    tracing::warn!(topic = %self.topic, partition, %error, "Kafka log check task failed");
                }
            }
        }
    }

    fn read_again_from_beginning(&mut self, partition: i32, timeout: std::time::Duration) {
        {
            let mut window = lock(&self.window);
            let entry = window.partitions.entry(partition).or_default();
            *entry = PartitionWindow { epoch: entry.epoch + 1, ..PartitionWindow::default() };
        }
        self.parked.retain(|(_, message)| message.partition() != partition);
        self.acked.notify_one();
        let Some(consumer) = self.consumer.as_ref() else { return };
        match consumer.seek(&self.topic, partition, Offset::Beginning, timeout) {
            Ok(()) => tracing::warn!(
                topic = %self.topic,
                partition,
                "Kafka broker no longer holds the records delivered before it was lost (restarted empty?): reading the partition again from its beginning"
            ),
            Err(error) => {
                tracing::warn!(topic = %self.topic, partition, %error, "Kafka seek to the beginning failed")
            }
        }
    }

    /// Records a delivery in the window and wraps it.
    fn deliver(&self, message: OwnedMessage) -> Delivery {
        let partition = message.partition();
        let offset = message.offset();
        let id = record_id(&message);
        let (generation, epoch, redelivered) = {
            let mut window = lock(&self.window);
            let generation = window.generation;
            let entry = window.partitions.entry(partition).or_default();
            let first = *entry.first.get_or_insert(offset);
            entry.delivered.insert(offset, false);
            entry.last = Some(LastDelivered { offset, id: id.clone() });
            let bound = first.saturating_add(i64::try_from(self.max_in_flight).unwrap_or(i64::MAX));
            (generation, entry.epoch, offset < bound)
        };
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
                epoch,
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
                self.read_replaced_logs_again().await;
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
    epoch: u64,
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
                .filter(|partition| partition.epoch == self.epoch)
                .and_then(|partition| partition.delivered.get_mut(&self.offset))
            {
                *acked = true;
            }
        }
        self.acked.notify_one();
        Ok(())
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
}
