//! The memory bus: queues and channels inside one process, the reference implementation of the
//! conformance suite.
//!
//! Each consumer group of a queue holds its own copy of the messages enqueued after it was
//! created; messages enqueued while a queue has no group wait in its backlog and go to the first
//! group created (as a broker keeps them in a durable queue). A consumer that is dropped gives
//! its unacknowledged messages back to the front of its group, in their original order, marked
//! redelivered.

use crate::BusOptions;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast};
use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, Published, QueueConsumer, QueueMessage,
    Subscription,
};

/// Messages one queue may hold (per group, and in its backlog); `enqueue` fails past it.
pub const MEMORY_QUEUE_CAPACITY: usize = 1_000_000;

/// A bus inside one process.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    channels: broadcast::Sender<Published>,
    max_in_flight: usize,
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Woken when a message becomes ready or a slot frees up.
    ready: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Messages enqueued while the queue had no group.
    backlog: VecDeque<QueueMessage>,
    groups: HashMap<String, Group>,
    next_consumer: u64,
}

#[derive(Debug, Default)]
struct Group {
    /// (sequence, message, redelivered), in delivery order.
    ready: VecDeque<(u64, QueueMessage, bool)>,
    /// Delivered, not acknowledged: sequence → (consumer, message).
    pending: BTreeMap<u64, (u64, QueueMessage)>,
    next_sequence: u64,
}

impl Group {
    fn push(&mut self, message: QueueMessage) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.ready.push_back((sequence, message, false));
    }

    fn in_flight(&self, consumer: u64) -> usize {
        self.pending.values().filter(|(owner, _)| *owner == consumer).count()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; go on with it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new(options: &BusOptions) -> MemoryBus {
        let (channels, _) = broadcast::channel(options.channel_buffer.max(1));
        MemoryBus {
            inner: Arc::new(Inner {
                queues: Mutex::new(HashMap::new()),
                channels,
                max_in_flight: options.max_in_flight.max(1),
            }),
        }
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        lock(&self.inner.queues).entry(name.to_owned()).or_default().clone()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        let target = self.queue(queue);
        {
            let mut state = lock(&target.state);
            if state.groups.is_empty() {
                if state.backlog.len() >= MEMORY_QUEUE_CAPACITY {
                    return Err(full(queue));
                }
                state.backlog.push_back(message.clone());
            } else {
                if state.groups.values().any(|group| group.ready.len() >= MEMORY_QUEUE_CAPACITY) {
                    return Err(full(queue));
                }
                for group in state.groups.values_mut() {
                    group.push(message.clone());
                }
            }
        }
        target.ready.notify_waiters();
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        group: &str,
        _consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        let target = self.queue(queue);
        let id = {
            let mut state = lock(&target.state);
            let first_group = state.groups.is_empty();
            let backlog =
                if first_group { std::mem::take(&mut state.backlog) } else { VecDeque::new() };
            let entry = state.groups.entry(group.to_owned()).or_default();
            for message in backlog {
                entry.push(message);
            }
            state.next_consumer += 1;
            state.next_consumer
        };
        Ok(Box::new(MemoryConsumer {
            queue: target,
            group: group.to_owned(),
            id,
            max_in_flight: self.inner.max_in_flight,
        }))
    }

    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        // No subscriber is not an error: channels are at most once.
        let _ = self
            .inner
            .channels
            .send(Published { channel: channel.to_owned(), body: body.to_vec() });
        Ok(())
    }

    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        Ok(Box::new(MemorySubscription {
            receiver: self.inner.channels.subscribe(),
            channels: channels.iter().map(|name| (*name).to_owned()).collect(),
        }))
    }

    async fn ping(&self) -> BusResult<()> {
        Ok(())
    }
}

fn full(queue: &str) -> BusError {
    BusError::Unavailable(format!(
        "memory queue {queue} holds {MEMORY_QUEUE_CAPACITY} messages (MEMORY_QUEUE_CAPACITY)"
    ))
}

struct MemoryConsumer {
    queue: Arc<Queue>,
    group: String,
    id: u64,
    max_in_flight: usize,
}

#[async_trait]
impl QueueConsumer for MemoryConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        loop {
            let notified = self.queue.ready.notified();
            {
                let mut state = lock(&self.queue.state);
                let group = state.groups.entry(self.group.clone()).or_default();
                if group.in_flight(self.id) < self.max_in_flight
                    && let Some((sequence, message, redelivered)) = group.ready.pop_front()
                {
                    group.pending.insert(sequence, (self.id, message.clone()));
                    return Ok(Delivery {
                        message,
                        redelivered,
                        acknowledge: Box::new(MemoryAck {
                            queue: self.queue.clone(),
                            group: self.group.clone(),
                            sequence,
                            consumer: self.id,
                        }),
                    });
                }
            }
            notified.await;
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.queue.state);
            let Some(group) = state.groups.get_mut(&self.group) else { return };
            let mine: Vec<u64> = group
                .pending
                .iter()
                .filter(|(_, (owner, _))| *owner == self.id)
                .map(|(sequence, _)| *sequence)
                .collect();
            // Back to the front, oldest first.
            for sequence in mine.into_iter().rev() {
                if let Some((_, message)) = group.pending.remove(&sequence) {
                    group.ready.push_front((sequence, message, true));
                }
            }
        }
        self.queue.ready.notify_waiters();
    }
}

struct MemoryAck {
    queue: Arc<Queue>,
    group: String,
    sequence: u64,
    consumer: u64,
}

#[async_trait]
impl Acknowledge for MemoryAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        {
            let mut state = lock(&self.queue.state);
            if let Some(group) = state.groups.get_mut(&self.group)
                && group
                    .pending
                    .get(&self.sequence)
                    .is_some_and(|(owner, _)| *owner == self.consumer)
            {
                group.pending.remove(&self.sequence);
            }
        }
        self.queue.ready.notify_waiters();
        Ok(())
    }
}

struct MemorySubscription {
    receiver: broadcast::Receiver<Published>,
    channels: Vec<String>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> BusResult<Published> {
        loop {
            match self.receiver.recv().await {
                Ok(published) if self.channels.contains(&published.channel) => {
                    return Ok(published);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "memory bus subscriber fell behind; messages dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return Err(BusError::Closed),
            }
        }
    }
}
