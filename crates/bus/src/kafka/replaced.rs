//! Whether a Kafka broker still holds the records a consumer delivered, asked after the
//! consumer lost its connection.
//!
//! A broker that lost its log (tansu on memory storage restarted, a cluster rebuilt from
//! nothing) numbers the records of a topic from 0 again. A member whose position was past them
//! would wait at its old offset and skip every record written below it: new records that nobody
//! read. Offsets alone cannot tell a replaced log from a kept one (the new log may already be as
//! long as the old), so the record this member delivered last is read again at its offset on a
//! probe consumer of its own (no group, assigned by hand) and its message id compared: gone or
//! different, the log was replaced and the partition is read again from its beginning.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// The record a consumer delivered last on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LastDelivered {
    pub offset: i64,
    /// The `id` header of the record (its message id).
    pub id: String,
}

/// The `id` header of a record, or an empty string.
pub(super) fn record_id<M: Message>(message: &M) -> String {
    message
        .headers()
        .and_then(|headers| {
            headers.iter().find(|header| header.key == "id").and_then(|header| header.value)
        })
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default()
}

/// Whether the broker's log of `topic`/`partition` no longer holds `last` at its offset.
/// Blocking (metadata, a fetch): run it off the async threads. `group_id` names the probe's
/// client group, which it never joins nor commits to.
///
/// Errors: the broker did not answer within `timeout`.
pub(super) fn log_replaced(
    base: &ClientConfig,
    group_id: &str,
    topic: &str,
    partition: i32,
    last: &LastDelivered,
    timeout: Duration,
) -> KafkaResult<bool> {
    let probe: BaseConsumer = base
        .clone()
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let (low, high) = probe.fetch_watermarks(topic, partition, timeout)?;
    if last.offset < low || last.offset >= high {
        return Ok(true);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(last.offset))?;
    probe.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut));
        }
        match probe.poll(left) {
            Some(Ok(message)) if message.offset() == last.offset => {
                return Ok(record_id(&message) != last.id);
            }
            // A record past it: the offset itself is gone (compacted or truncated).
            Some(Ok(message)) if message.offset() > last.offset => return Ok(true),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
}
