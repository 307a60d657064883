//! Live-instance counts per (component, machine, state), kept up to date from the runtime event
//! stream so that `/api/components` and `/metrics` never scan the instances.
//!
//! The counts start from a paged scan of the runtime, then follow `instance_created`,
//! `state_change` and `instance_disposed`. If the server ever misses stream batches (it fell
//! behind), the stream task rescans.

use std::collections::HashMap;
use std::sync::Mutex;
use xcomponent_runtime::{InstanceFilter, RuntimeApi, RuntimeEvent};

/// Instances fetched per page when rescanning.
pub const SCAN_PAGE: usize = 10_000;

/// (component, machine, state) indexes.
pub type StateKey = (u16, u16, u16);

/// The counts (shared between the stream task and the handlers).
#[derive(Debug, Default)]
pub struct LiveCounts {
    counts: Mutex<HashMap<StateKey, i64>>,
}

impl LiveCounts {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<StateKey, i64>) -> R) -> R {
        let mut guard = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Replaces every count.
    pub fn replace(&self, counts: HashMap<StateKey, i64>) {
        self.with(|current| {
            // Keep known keys at zero so gauges drop to 0 instead of freezing.
            for value in current.values_mut() {
                *value = 0;
            }
            current.extend(counts);
        });
    }

    /// Follows one batch of runtime events.
    pub fn apply(&self, events: &[RuntimeEvent]) {
        let relevant = events.iter().any(|event| {
            matches!(
                event,
                RuntimeEvent::InstanceCreated { .. }
                    | RuntimeEvent::StateChanged { .. }
                    | RuntimeEvent::InstanceDisposed { .. }
            )
        });
        if !relevant {
            return;
        }
        self.with(|counts| {
            for event in events {
                match event {
                    RuntimeEvent::InstanceCreated { component, machine, state, .. } => {
                        *counts.entry((*component, *machine, *state)).or_default() += 1;
                    }
                    RuntimeEvent::StateChanged { component, machine, from, to, .. }
                        if from != to =>
                    {
                        *counts.entry((*component, *machine, *from)).or_default() -= 1;
                        *counts.entry((*component, *machine, *to)).or_default() += 1;
                    }
                    RuntimeEvent::InstanceDisposed { component, machine, state, .. } => {
                        *counts.entry((*component, *machine, *state)).or_default() -= 1;
                    }
                    _ => {}
                }
            }
        });
    }

    /// Every count.
    pub fn snapshot(&self) -> Vec<(StateKey, i64)> {
        self.with(|counts| counts.iter().map(|(key, count)| (*key, *count)).collect())
    }

    /// Live instances of one component.
    pub fn of_component(&self, component: u16) -> u64 {
        self.with(|counts| {
            counts
                .iter()
                .filter(|((c, _, _), _)| *c == component)
                .map(|(_, count)| (*count).max(0) as u64)
                .sum()
        })
    }

    /// Live instances of one machine.
    pub fn of_machine(&self, component: u16, machine: u16) -> u64 {
        self.with(|counts| {
            counts
                .iter()
                .filter(|((c, m, _), _)| *c == component && *m == machine)
                .map(|(_, count)| (*count).max(0) as u64)
                .sum()
        })
    }
}

/// Counts the runtime's live instances, page by page.
pub async fn scan(runtime: &dyn RuntimeApi) -> HashMap<StateKey, i64> {
    let mut counts = HashMap::new();
    let mut after = None;
    loop {
        let page = runtime
            .instances(InstanceFilter { after, limit: SCAN_PAGE, ..InstanceFilter::default() })
            .await;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        // Read per page: a cluster view's registry grows as runtimes announce components.
        let registry = runtime.registry();
        let full = page.len() == SCAN_PAGE;
        for view in &page {
            let Ok((component, machine)) =
                registry.resolve(&view.component_name, &view.machine_name)
            else {
                continue;
            };
            let Some(state) =
                registry.definition(component).machine(machine).state_index(&view.current_state)
            else {
                continue;
            };
            *counts.entry((component, machine, state)).or_default() += 1;
        }
        if !full {
            break;
        }
    }
    counts
}
