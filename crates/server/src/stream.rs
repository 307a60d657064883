//! The one task that follows the runtime event stream for the server: it updates the live counts
//! and the metrics, and hands each batch to the WebSocket hub. It never blocks the runtime: the
//! stream is a bounded broadcast channel, and if this task falls behind it is told how many
//! batches it missed, counts them, rescans the live instances and tells clients to reload.
//!
//! The registry may grow while the server runs (a cluster view appends the components of
//! runtimes as they announce themselves; components are never reordered): a batch naming a
//! component beyond the registry in hand makes the task read it again, and an event whose
//! component is still unknown after that is left out of the metrics and the feed. WebSocket
//! clients get a new `components_list` when the registry grew, and, over a cluster view, a
//! `runtimes_update` when runtimes come or go (checked on each batch and every
//! `UPKEEP_INTERVAL`).

use crate::metrics::StreamMetrics;
use crate::state::AppState;
use crate::ws::hub::components_message;
use crate::ws::queue::Outgoing;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use xcomponent_runtime::{EventBatch, Registry, RuntimeEvent};

/// How often histogram buffers are drained.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until shutdown or until the runtime's stream closes.
pub(crate) async fn run(
    state: AppState,
    mut events: broadcast::Receiver<EventBatch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let runtime = state.runtime().clone();
    let mut registry = runtime.registry();
    let mut known_runtimes = runtime_ids(&state);
    let mut metrics = StreamMetrics::new(state.metrics().clone());
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(batch) => {
                    if !batch.iter().all(|event| knows(&registry, event)) {
                        registry = refresh(&state, &registry, &mut known_runtimes);
                    }
                    let now = runtime.clock().now();
                    state.live().apply(&batch);
                    for event in batch.iter() {
                        if knows(&registry, event) {
                            metrics.observe(&registry, event, now);
                        } else {
                            tracing::warn!(component = event.component(), "runtime event about a component the registry does not have; skipped");
                        }
                    }
                    state.hub().publish_events(&registry, &batch);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the server fell behind the runtime event stream; rescanning live instances");
                    metrics.lagged(missed);
                    state.hub().resync(missed);
                    state.live().replace(crate::live::scan(runtime.as_ref()).await);
                    registry = refresh(&state, &registry, &mut known_runtimes);
                }
                Err(RecvError::Closed) => break,
            },
            _ = upkeep.tick() => {
                state.metrics().upkeep();
                registry = refresh(&state, &registry, &mut known_runtimes);
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}

/// The registry read again; clients are told of new components and of runtimes come or gone.
fn refresh(
    state: &AppState,
    registry: &Arc<Registry>,
    known_runtimes: &mut Vec<String>,
) -> Arc<Registry> {
    let current = state.runtime().registry();
    if current.components().len() > registry.components().len() {
        state.hub().publish(&[components_message(&current)]);
    }
    let runtimes = runtime_ids(state);
    if runtimes != *known_runtimes {
        *known_runtimes = runtimes;
        let list = crate::health::runtimes(state);
        let message = Outgoing::new("runtimes_update", None, None, json!({ "runtimes": list }));
        state.hub().publish(&[message]);
    }
    current
}

/// The ids of the runtimes seen over the bus, sorted (none for a runtime alone: its one entry
/// never changes).
fn runtime_ids(state: &AppState) -> Vec<String> {
    let mut ids: Vec<String> =
        state.runtime().peers().into_iter().map(|peer| peer.runtime_id).collect();
    ids.sort_unstable();
    ids
}

/// Whether the registry has the component an event is about (events about no component: yes).
pub(crate) fn knows(registry: &Registry, event: &RuntimeEvent) -> bool {
    event.component().is_none_or(|index| usize::from(index) < registry.components().len())
}
