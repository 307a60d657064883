//! A WebSocket client's bounded outgoing queue, with coalescing under load.
//!
//! The hub pushes without ever waiting. While a client keeps up, every message is delivered.
//! Once its backlog reaches `WS_COALESCE_AFTER`, a new `state_change` of an instance that still
//! has an unsent `state_change` is merged into it (first `previousState`, latest everything else,
//! `coalesced` counts the merged messages). If the backlog still reaches `WS_CLIENT_QUEUE`, the
//! queue is dropped and marked slow: the client's task tells it (`slow_consumer`) and closes it.

use axum::extract::ws::Utf8Bytes;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use xcomponent_core::instance::InstanceId;

/// Most messages waiting for one client before it is dropped as too slow.
pub const WS_CLIENT_QUEUE: usize = 1024;

/// Backlog from which `state_change` messages of one instance are merged.
pub const WS_COALESCE_AFTER: usize = 64;

/// One message to a client: `{"type": kind, "data": data}`, serialized once for every client.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Message type.
    pub kind: &'static str,
    /// Component concerned (for subscription filters).
    pub component: Option<Arc<str>>,
    /// Instance concerned (for filters and coalescing).
    pub instance: Option<InstanceId>,
    /// The `data` object.
    pub data: Arc<Value>,
    /// The serialized message (cheap to clone: shared bytes).
    pub text: Utf8Bytes,
}

impl Outgoing {
    /// A message with its text rendered.
    pub fn new(
        kind: &'static str,
        component: Option<Arc<str>>,
        instance: Option<InstanceId>,
        data: Value,
    ) -> Outgoing {
        let text = serde_json::json!({ "type": kind, "data": &data }).to_string();
        Outgoing { kind, component, instance, data: Arc::new(data), text: Utf8Bytes::from(text) }
    }

    /// `older` followed by `self`, as one `state_change`.
    fn merged_after(&self, older: &Outgoing) -> Outgoing {
        let mut data = (*self.data).clone();
        let previous = older.data.get("previousState").cloned();
        let merged = older.data.get("coalesced").and_then(Value::as_u64).unwrap_or(1)
            + self.data.get("coalesced").and_then(Value::as_u64).unwrap_or(1);
        if let Value::Object(map) = &mut data {
            if let Some(previous) = previous {
                map.insert("previousState".to_owned(), previous);
            }
            map.insert("coalesced".to_owned(), Value::from(merged));
        }
        Outgoing::new(self.kind, self.component.clone(), self.instance, data)
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Appended.
    Queued,
    /// Merged into a waiting message.
    Coalesced,
    /// The queue overflowed just now: the client is being dropped.
    Overflowed,
    /// The client is already being dropped or gone.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Outgoing>,
    /// Sequence number of `items[0]`.
    first_seq: u64,
    /// Instance → sequence number of its waiting `state_change`.
    waiting_change: HashMap<InstanceId, u64>,
    slow: bool,
    closed: bool,
}

/// The queue (shared by the hub, which pushes, and the client's task, which pops).
#[derive(Debug, Default)]
pub struct ClientQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl ClientQueue {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Queues a message without waiting.
    pub fn push(&self, message: Outgoing) -> Pushed {
        let pushed = self.with(|inner| {
            if inner.slow || inner.closed {
                return Pushed::Closed;
            }
            let change = message.kind == "state_change";
            if change
                && inner.items.len() >= WS_COALESCE_AFTER
                && let Some(seq) =
                    message.instance.and_then(|id| inner.waiting_change.get(&id).copied())
                && let Some(older) = inner
                    .items
                    .get_mut(usize::try_from(seq - inner.first_seq).unwrap_or(usize::MAX))
            {
                *older = message.merged_after(older);
                return Pushed::Coalesced;
            }
            if inner.items.len() >= WS_CLIENT_QUEUE {
                inner.slow = true;
                inner.items.clear();
                inner.waiting_change.clear();
                return Pushed::Overflowed;
            }
            let seq = inner.first_seq + inner.items.len() as u64;
            if let (true, Some(id)) = (change, message.instance) {
                inner.waiting_change.insert(id, seq);
            }
            inner.items.push_back(message);
            Pushed::Queued
        });
        if matches!(pushed, Pushed::Queued | Pushed::Overflowed) {
            self.notify.notify_one();
        }
        pushed
    }

    /// The next message, if any.
    pub fn pop(&self) -> Option<Outgoing> {
        self.with(|inner| {
            let message = inner.items.pop_front()?;
            let seq = inner.first_seq;
            inner.first_seq += 1;
            if let Some(id) = message.instance
                && inner.waiting_change.get(&id) == Some(&seq)
            {
                inner.waiting_change.remove(&id);
            }
            Some(message)
        })
    }

    /// Whether the queue overflowed.
    pub fn is_slow(&self) -> bool {
        self.with(|inner| inner.slow)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.with(|inner| inner.items.len())
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting messages.
    pub fn close(&self) {
        self.with(|inner| inner.closed = true);
        self.notify.notify_one();
    }

    /// Waits until something was pushed (or the queue overflowed or closed) since the last wait.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use xcomponent_runtime::DrawId;

    fn change(id: InstanceId, from: &str, to: &str) -> Outgoing {
        Outgoing::new(
            "state_change",
            None,
            Some(id),
            json!({"instanceId": id, "previousState": from, "newState": to}),
        )
    }

    #[test]
    fn delivers_in_order_while_the_client_keeps_up() {
        let queue = ClientQueue::default();
        let id = InstanceId::draw();
        assert_eq!(queue.push(change(id, "A", "B")), Pushed::Queued);
        assert_eq!(queue.push(change(id, "B", "C")), Pushed::Queued);
        assert_eq!(queue.pop().map(|m| m.data["newState"].clone()), Some(json!("B")));
        assert_eq!(queue.pop().map(|m| m.data["newState"].clone()), Some(json!("C")));
        assert!(queue.pop().is_none());
    }

    #[test]
    fn coalesces_changes_of_one_instance_under_load() {
        let queue = ClientQueue::default();
        let busy = InstanceId::draw();
        for _ in 0..WS_COALESCE_AFTER {
            queue.push(change(InstanceId::draw(), "X", "Y"));
        }
        assert_eq!(queue.push(change(busy, "A", "B")), Pushed::Queued);
        assert_eq!(queue.push(change(busy, "B", "C")), Pushed::Coalesced);
        assert_eq!(queue.push(change(busy, "C", "D")), Pushed::Coalesced);
        for _ in 0..WS_COALESCE_AFTER {
            queue.pop();
        }
        let merged = queue.pop().map(|m| (*m.data).clone());
        assert_eq!(
            merged,
            Some(
                json!({"instanceId": busy, "previousState": "A", "newState": "D", "coalesced": 3})
            )
        );
        assert!(queue.is_empty());
        // Once popped, a new change is queued again, not merged into a sent one.
        assert_eq!(queue.push(change(busy, "D", "E")), Pushed::Queued);
    }

    #[test]
    fn overflow_marks_the_client_slow_and_drops_its_backlog() {
        let queue = ClientQueue::default();
        let mut outcome = Pushed::Queued;
        for _ in 0..=WS_CLIENT_QUEUE {
            outcome = queue.push(Outgoing::new(
                "instance_created",
                None,
                Some(InstanceId::draw()),
                json!({}),
            ));
        }
        assert_eq!(outcome, Pushed::Overflowed);
        assert!(queue.is_slow());
        assert!(queue.is_empty());
        assert_eq!(
            queue.push(Outgoing::new("instance_created", None, None, json!({}))),
            Pushed::Closed
        );
    }
}
