//! Which components are shared, and by how many partitions: what the relay needs to address a
//! message to a partition's queue. Read from the shared store's leases (the count is fixed once
//! stored, so a known count is kept for good); a component found unshared is asked again after
//! `DIRECTORY_RECHECK`, as its runtimes may start later.

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use xcomponent_core::store::EventStore;

/// How long a component found unshared is taken as such before the store is asked again.
pub const DIRECTORY_RECHECK: Duration = Duration::from_secs(5);

/// Components remembered; past it, unshared ones are forgotten first (asked again).
const DIRECTORY_MAX: usize = 4_096;

/// Partition counts by component name.
pub(crate) struct Directory {
    store: Option<Arc<dyn EventStore>>,
    known: Mutex<FxHashMap<String, Known>>,
}

#[derive(Clone, Copy)]
enum Known {
    Shared(u32),
    Unshared(Instant),
}

impl Directory {
    pub fn new(store: Option<Arc<dyn EventStore>>) -> Directory {
        Directory { store, known: Mutex::new(FxHashMap::default()) }
    }

    /// Records a count this runtime knows (its own shared components).
    pub fn learn(&self, component: &str, partitions: u32) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(component.to_owned(), Known::Shared(partitions));
        }
    }

    /// The partition count of `component` when it is shared, `None` when it is not (or the
    /// store has no leases, or cannot be read now: the message then goes to the component's
    /// queue, whose runtimes forward it).
    pub async fn partitions(&self, component: &str) -> Option<u32> {
        let cached = self.known.lock().ok().and_then(|known| known.get(component).copied());
        match cached {
            Some(Known::Shared(count)) => return Some(count),
            Some(Known::Unshared(at)) if at.elapsed() < DIRECTORY_RECHECK => return None,
            _ => {}
        }
        let leases = self.store.as_ref()?.leases()?;
        let found = match leases.lease_table(component).await {
            Ok(table) => table.partitions,
            Err(error) => {
                tracing::debug!(component, %error, "Partition count not read; the component queue is used.");
                return None;
            }
        };
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= DIRECTORY_MAX {
                known.retain(|_, entry| matches!(entry, Known::Shared(_)));
            }
            let entry =
                if found > 0 { Known::Shared(found) } else { Known::Unshared(Instant::now()) };
            if known.len() < DIRECTORY_MAX {
                known.insert(component.to_owned(), entry);
            }
        }
        (found > 0).then_some(found)
    }
}
