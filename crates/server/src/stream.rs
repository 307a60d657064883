//! The one task that follows the runtime event stream for the server: it updates the live counts
//! and the metrics, and hands each batch to the WebSocket hub. It never blocks the runtime: the
//! stream is a bounded broadcast channel, and if this task falls behind it is told how many
//! batches it missed, counts them, rescans the live instances and tells clients to reload.

use crate::metrics::StreamMetrics;
use crate::state::AppState;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use xcomponent_runtime::EventBatch;

/// How often histogram buffers are drained.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until shutdown or until the runtime's stream closes.
pub(crate) async fn run(
    state: AppState,
    mut events: broadcast::Receiver<EventBatch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let runtime = state.runtime().clone();
    let registry = runtime.registry();
    let mut metrics = StreamMetrics::new(state.metrics().clone());
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(batch) => {
                    let now = runtime.clock().now();
                    state.live().apply(&batch);
                    for event in batch.iter() {
                        metrics.observe(registry, event, now);
                    }
                    state.hub().publish_events(registry, &batch);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the server fell behind the runtime event stream; rescanning live instances");
                    metrics.lagged(missed);
                    state.hub().resync(missed);
                    state.live().replace(crate::live::scan(&runtime).await);
                }
                Err(RecvError::Closed) => break,
            },
            _ = upkeep.tick() => state.metrics().upkeep(),
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}
