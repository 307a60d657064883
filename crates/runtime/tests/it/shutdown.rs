//! A runtime on a bus stopped right after its start stops: on a single-threaded executor none
//! of its tasks has run yet when the shutdown is sent, so each must see a shutdown that
//! happened before it first looked (not wait for a change that already came).

use crate::bus::{memory_bus, start_hosting};
use crate::cross_component::{BILLING, SHOP};
use std::sync::Arc;
use std::time::Duration;
use xcomponent_store::MemoryStore;

/// Far longer than a shutdown of idle runtimes takes.
const STOPPED_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "current_thread")]
async fn a_runtime_stopped_before_its_tasks_first_ran_stops() {
    let bus = memory_bus();
    for (yaml, name) in [(SHOP, "shop-1"), (BILLING, "billing-1")] {
        let runtime = start_hosting(yaml, Arc::new(MemoryStore::new()), bus.clone(), name).await;
        let stopped = tokio::time::timeout(STOPPED_WITHIN, runtime.shutdown()).await;
        assert!(stopped.is_ok(), "{name} did not stop within {STOPPED_WITHIN:?}");
    }
}
