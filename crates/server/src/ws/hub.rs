//! The WebSocket hub: the connected clients, their subscription filters, and the fan-out of
//! runtime events as the original's messages (`state_change`, `instance_created`,
//! `instance_completed`, `instance_disposed`, `event_ignored`, ...).
//!
//! Publishing never waits: each message goes into each interested client's bounded queue
//! (`queue.rs`), so a slow client can only hurt itself. When nobody is connected, runtime events
//! are not even rendered.

use super::queue::{ClientQueue, Outgoing, Pushed};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use xcomponent_core::instance::InstanceId;
use xcomponent_runtime::{Registry, RuntimeEvent};

/// Most WebSocket clients at once; more are refused with 503.
pub const WS_MAX_CLIENTS: usize = 1024;

/// What a client wants to receive (no field set: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only messages about this component.
    pub component: Option<String>,
    /// Only messages about this instance.
    pub instance: Option<InstanceId>,
}

impl Filter {
    fn accepts(&self, message: &Outgoing) -> bool {
        let component_ok = match (&self.component, &message.component) {
            (Some(wanted), Some(actual)) => **wanted == **actual,
            _ => true,
        };
        let instance_ok = match (self.instance, message.instance) {
            (Some(wanted), Some(actual)) => wanted == actual,
            (Some(_), None) => message.component.is_none(),
            _ => true,
        };
        component_ok && instance_ok
    }
}

/// One connected client.
#[derive(Debug, Default)]
pub struct Client {
    /// Its outgoing queue.
    pub queue: ClientQueue,
    filter: Mutex<Filter>,
}

impl Client {
    /// Replaces the client's filter.
    pub fn set_filter(&self, filter: Filter) {
        *self.filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = filter;
    }

    fn filter(&self) -> Filter {
        self.filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The connected clients.
pub struct Hub {
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    count: AtomicUsize,
    next_id: AtomicU64,
    metrics: Metrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("clients", &self.client_count()).finish()
    }
}

impl Hub {
    /// No clients.
    pub fn new(metrics: Metrics) -> Hub {
        Hub {
            clients: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, Arc<Client>>) -> R) -> R {
        let mut guard = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds a client, unless `WS_MAX_CLIENTS` are connected.
    pub fn register(&self, filter: Filter) -> Option<(u64, Arc<Client>)> {
        self.with(|clients| {
            if clients.len() >= WS_MAX_CLIENTS {
                return None;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let client =
                Arc::new(Client { queue: ClientQueue::default(), filter: Mutex::new(filter) });
            clients.insert(id, client.clone());
            self.count.store(clients.len(), Ordering::Relaxed);
            Some((id, client))
        })
    }

    /// Removes a client.
    pub fn unregister(&self, id: u64) {
        self.with(|clients| {
            if let Some(client) = clients.remove(&id) {
                client.queue.close();
            }
            self.count.store(clients.len(), Ordering::Relaxed);
        });
    }

    /// Sends messages to every client whose filter accepts them.
    pub fn publish(&self, messages: &[Outgoing]) {
        if messages.is_empty() || self.client_count() == 0 {
            return;
        }
        let clients: Vec<Arc<Client>> = self.with(|clients| clients.values().cloned().collect());
        for client in clients {
            let filter = client.filter();
            for message in messages.iter().filter(|message| filter.accepts(message)) {
                match client.queue.push(message.clone()) {
                    Pushed::Coalesced => self
                        .metrics
                        .counter("xcomponent_ws_coalesced_messages_total", &[])
                        .increment(1),
                    Pushed::Overflowed => {
                        self.metrics.counter("xcomponent_ws_slow_clients_total", &[]).increment(1);
                        tracing::warn!("WebSocket client too slow: dropping it");
                        break;
                    }
                    Pushed::Closed => break,
                    Pushed::Queued => {}
                }
            }
        }
    }

    /// Renders and sends one batch of runtime events.
    pub fn publish_events(&self, registry: &Registry, events: &[RuntimeEvent]) {
        if self.client_count() == 0 {
            return;
        }
        let messages: Vec<Outgoing> =
            events.iter().flat_map(|event| messages_for(registry, event)).collect();
        self.publish(&messages);
    }

    /// Tells every client that it missed `missed` batches and should reload.
    pub fn resync(&self, missed: u64) {
        let message = Outgoing::new(
            "slow_consumer",
            None,
            None,
            json!({ "reason": "server_lagged", "missedBatches": missed }),
        );
        self.publish(&[message]);
    }
}

/// The WebSocket messages for one runtime event (`kind()` names them; reaching a final or error
/// state also gives `instance_completed`, as in the original's distributed dashboard). None for
/// an event about a component the registry does not have (yet).
pub fn messages_for(registry: &Registry, event: &RuntimeEvent) -> Vec<Outgoing> {
    if !crate::stream::knows(registry, event) {
        return Vec::new();
    }
    let component = event.component().map(|index| registry.definition(index).name.clone());
    let instance = event.instance();
    let data = event.describe(registry);
    match event {
        RuntimeEvent::InstanceDisposed { .. } => {
            let completed =
                Outgoing::new("instance_completed", component.clone(), instance, data.clone());
            vec![completed, Outgoing::new(event.kind(), component, instance, data)]
        }
        // The component of an undeliverable routed event is unknown: show it to everyone.
        RuntimeEvent::EffectFailed { .. } => vec![Outgoing::new(event.kind(), None, None, data)],
        _ => vec![Outgoing::new(event.kind(), component, instance, data)],
    }
}

/// The `components_list` message (full definitions, for the dashboard's diagrams and forms).
pub fn components_message(registry: &Registry) -> Outgoing {
    let components: Vec<Value> = registry
        .components()
        .iter()
        .map(|definition| serde_json::to_value(&*definition.model).unwrap_or(Value::Null))
        .collect();
    Outgoing::new("components_list", None, None, json!({ "components": components }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::queue::WS_CLIENT_QUEUE;
    use xcomponent_runtime::DrawId;

    fn message(component: &str, instance: InstanceId) -> Outgoing {
        Outgoing::new(
            "instance_created",
            Some(component.into()),
            Some(instance),
            json!({"instanceId": instance}),
        )
    }

    #[test]
    fn filters_pick_component_and_instance() {
        let hub = Hub::new(Metrics::new());
        let (_, all) = hub.register(Filter::default()).expect("room");
        let (_, orders) = hub
            .register(Filter { component: Some("Orders".into()), instance: None })
            .expect("room");
        let one = InstanceId::draw();
        let (_, single) =
            hub.register(Filter { component: None, instance: Some(one) }).expect("room");
        hub.publish(&[
            message("Orders", one),
            message("Orders", InstanceId::draw()),
            message("Payments", InstanceId::draw()),
        ]);
        hub.publish(&[Outgoing::new("components_list", None, None, json!({}))]);
        let drain = |client: &Client| std::iter::from_fn(|| client.queue.pop()).count();
        assert_eq!((drain(&all), drain(&orders), drain(&single)), (4, 3, 2));
    }

    #[test]
    fn a_slow_client_is_dropped_without_slowing_the_others() {
        let hub = Hub::new(Metrics::new());
        let (slow_id, slow) = hub.register(Filter::default()).expect("room");
        let (_, fast) = hub.register(Filter::default()).expect("room");
        for _ in 0..=WS_CLIENT_QUEUE {
            hub.publish(&[message("Orders", InstanceId::draw())]);
            assert!(fast.queue.pop().is_some(), "the fast client gets every message");
        }
        assert!(slow.queue.is_slow(), "the slow client overflowed and is told so by its task");
        assert!(slow.queue.pop().is_none(), "its backlog is dropped");
        hub.unregister(slow_id);
        assert_eq!(hub.client_count(), 1);
    }

    #[test]
    fn clients_are_bounded() {
        let hub = Hub::new(Metrics::new());
        for _ in 0..WS_MAX_CLIENTS {
            assert!(hub.register(Filter::default()).is_some());
        }
        assert!(hub.register(Filter::default()).is_none());
    }
}
