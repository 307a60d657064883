//! xcomponent-runtime: runs the instances of YAML components.
//!
//! Instances are spread over shards (one task each, one per core by default); a shard owns its
//! instances outright, so events to one instance are applied in order, one at a time, while
//! different instances progress in parallel. Each shard works in batches: apply the messages,
//! fire due timers, commit all resulting events in one store transaction, and only then reply,
//! route effects to other instances and publish runtime events. A failed commit rolls the batch
//! back: an infrastructure error never changes or destroys an instance.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use xcomponent_core::definition::Definition;
//! use xcomponent_runtime::{Handlers, RuntimeBuilder};
//!
//! let yaml = std::fs::read_to_string("order.yaml")?;
//! let loaded = xcomponent_core::load::parse_component(&yaml, "order.yaml").map_err(|_| "invalid YAML")?;
//! let definition = Definition::compile(loaded.component).map_err(|_| "invalid component")?;
//! let handlers = Handlers::new().on("checkPaymentMethod", |call| {
//!     call.sender.send_to_self("VALIDATE", Default::default());
//!     Ok(())
//! });
//! let runtime = RuntimeBuilder::new().component(definition).handlers(handlers).start().await?;
//! let handle = runtime.handle();
//! let id = handle.create_instance("OrderComponent", "Order", Default::default()).await?;
//! let outcome = handle.send_event(id, "SUBMIT", Default::default()).await?;
//! println!("{outcome:?}");
//! runtime.shutdown().await;
//! # Ok(()) }
//! ```

mod delivery;
mod error;
mod handle;
mod handlers;
mod ids;
mod options;
mod placement;
mod protocol;
mod registry;
mod restore;
mod router;
mod shard;
mod shared;
mod stream;
mod views;

pub use delivery::{INBOX_PURGE_INTERVAL, MessageCounts};
pub use error::RuntimeError;
pub use handle::{CreateRequest, Runtime, RuntimeBuilder, RuntimeHandle, SendRequest};
pub use handlers::{Handler, HandlerError, Handlers};
pub use ids::DrawId;
pub use options::{
    DEFAULT_INBOX_RETENTION, DEFAULT_MAX_BATCH, DEFAULT_SNAPSHOT_INTERVAL, RuntimeOptions,
    TimerMode,
};
pub use registry::{ComponentIdx, Registry};
pub use stream::{EventBatch, RuntimeEvent, STREAM_CAPACITY};
pub use views::{
    AvailableTransition, BatchOutcome, InstanceFilter, InstanceView, SendOutcome, ShardStats,
    TimerView,
};
