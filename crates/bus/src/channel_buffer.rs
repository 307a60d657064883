//! The subscriber-side buffer of channel messages shared by the broker backends.
//!
//! A background task reads the broker connection and pushes into a `ChannelBuffer`; the
//! `Subscription` handed to the caller pops from it. The buffer holds at most
//! `BusOptions::channel_buffer` messages: when the reader falls behind, the oldest are dropped
//! (channels are at most once) so the broker connection is never held up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use xcomponent_core::bus::{BusError, BusResult, Published, Subscription};

/// A bounded, drop-oldest buffer between a reader task and one subscription.
#[derive(Debug)]
pub(crate) struct ChannelBuffer {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Published>,
    /// Messages dropped because the buffer was full, since the last warning.
    dropped: u64,
    /// Set once the reader task stopped for good.
    closed: bool,
}

impl ChannelBuffer {
    /// An empty buffer holding at most `capacity` messages (at least one).
    pub(crate) fn new(capacity: usize) -> Arc<ChannelBuffer> {
        Arc::new(ChannelBuffer {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: go on after a panic elsewhere.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a message, dropping the oldest one when full.
    pub(crate) fn push(&self, published: Published) {
        {
            let mut state = self.lock();
            if state.messages.len() >= self.capacity {
                state.messages.pop_front();
                state.dropped += 1;
                // Warn on the first drop and then every `capacity` drops, not on each one.
                if state.dropped == 1 || state.dropped.is_multiple_of(self.capacity as u64) {
                    tracing::warn!(
                        dropped = state.dropped,
                        capacity = self.capacity,
                        "channel subscriber fell behind; oldest messages dropped"
                    );
                }
            }
            state.messages.push_back(published);
        }
        self.ready.notify_one();
    }

    /// Marks the buffer closed: `next` fails with `BusError::Closed` once it is empty. (The Redis
    /// reader never gives up, so only NATS closes.)
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The oldest buffered message, waiting for one.
    pub(crate) async fn next(&self) -> BusResult<Published> {
        loop {
            {
                let mut state = self.lock();
                if let Some(published) = state.messages.pop_front() {
                    if state.messages.is_empty() {
                        state.dropped = 0;
                    }
                    return Ok(published);
                }
                if state.closed {
                    return Err(BusError::Closed);
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check above
            // and this wait is not missed.
            self.ready.notified().await;
        }
    }
}

/// A subscription fed by a reader task; dropping it stops the task.
pub(crate) struct BufferedSubscription {
    buffer: Arc<ChannelBuffer>,
    reader: JoinHandle<()>,
}

impl BufferedSubscription {
    /// Wraps the buffer and the task that fills it.
    pub(crate) fn new(buffer: Arc<ChannelBuffer>, reader: JoinHandle<()>) -> BufferedSubscription {
        BufferedSubscription { buffer, reader }
    }
}

impl Drop for BufferedSubscription {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[async_trait::async_trait]
impl Subscription for BufferedSubscription {
    async fn next(&mut self) -> BusResult<Published> {
        self.buffer.next().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(index: usize) -> Published {
        Published { channel: "c".into(), body: index.to_string().into_bytes() }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_and_a_closed_one_ends() {
        let buffer = ChannelBuffer::new(2);
        for index in 0..3 {
            buffer.push(published(index));
        }
        buffer.close();
        assert_eq!(buffer.next().await.expect("second").body, b"1");
        assert_eq!(buffer.next().await.expect("third").body, b"2");
        assert!(matches!(buffer.next().await, Err(BusError::Closed)));
    }
}
