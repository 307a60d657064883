//! xcomponent-runtime: runs the instances of YAML components.
//!
//! Instances are spread over shards (one task each, one per core by default); a shard owns its
//! instances outright, so events to one instance are applied in order, one at a time, while
//! different instances progress in parallel. Each shard works in batches: apply the messages,
//! fire due timers, commit all resulting events in one store transaction, and only then reply,
//! route effects to other instances and publish runtime events. A failed commit rolls the batch
//! back: an infrastructure error never changes or destroys an instance.
//!
//! A runtime is built from compiled components, the business code their hooks name, and
//! optionally a store (without one, instances live in memory only):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use xcomponent_core::definition::Definition;
//! use xcomponent_core::load::parse_component;
//! use xcomponent_runtime::{Handlers, RuntimeBuilder, SendOutcome};
//! use xcomponent_store::StoreOptions;
//!
//! let yaml = r#"
//! name: Shop
//! entryMachine: Order
//! stateMachines:
//!   - name: Order
//!     initialState: Created
//!     states:
//!       - {name: Created, type: entry}
//!       - {name: Checking, onEntry: checkPayment}
//!       - {name: Paid}
//!     transitions:
//!       - {from: Created, to: Checking, event: SUBMIT}
//!       - {from: Checking, to: Paid, event: VALIDATE}
//! "#;
//! let loaded = parse_component(yaml, "shop.yaml").map_err(|_| "invalid YAML")?;
//! let definition = Definition::compile(loaded.component).map_err(|_| "invalid component")?;
//! // Hooks name business code; what it sends is delivered once the transition is stored.
//! let handlers = Handlers::new().on("checkPayment", |call| {
//!     call.sender.send_to_self("VALIDATE", Default::default());
//!     Ok(())
//! });
//! let store = xcomponent_store::open("memory", &StoreOptions::default()).await?;
//! let runtime = RuntimeBuilder::new()
//!     .component(definition)
//!     .handlers(handlers)
//!     .store(store)
//!     .start()
//!     .await?;
//!
//! let handle = runtime.handle();
//! let id = handle.create_instance("Shop", "Order", Default::default()).await?;
//! let outcome = handle.send_event(id, "SUBMIT", Default::default()).await?;
//! let SendOutcome::Transitioned { new_state, .. } = outcome else { panic!("SUBMIT ignored") };
//! assert_eq!(&*new_state, "Checking");
//!
//! // The reply comes before the hook's VALIDATE is delivered; `flush` waits for it.
//! handle.flush().await?;
//! let order = handle.instance(id).await.ok_or("instance is live")?;
//! assert_eq!(&*order.current_state, "Paid");
//! runtime.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod commit_health;
mod content;
mod delivery;
mod error;
mod handle;
mod handlers;
mod ids;
mod options;
mod partition;
mod placement;
mod protocol;
mod registry;
mod remote;
mod restore;
mod router;
mod shard;
mod shared;
mod size;
mod stream;
mod views;
mod webhook;

pub use api::{OwnedPartitions, RuntimeApi, RuntimePeer};
pub use commit_health::StoreHealth;
pub use delivery::{INBOX_PURGE_INTERVAL, MessageCounts};
pub use error::RuntimeError;
pub use handle::{CreateRequest, Runtime, RuntimeBuilder, RuntimeHandle, SendRequest};
pub use handlers::{Handler, HandlerError, Handlers};
pub use ids::{DrawId, seed_ids_on_this_thread};
pub use options::{
    ContextSchemaMode, DEFAULT_INBOX_RETENTION, DEFAULT_MAX_BATCH, DEFAULT_MAX_DATA_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_SNAPSHOT_INTERVAL, RuntimeOptions, TimerMode,
};
pub use partition::{
    ComponentOwnership, DEFAULT_LEASE_TTL, LeaseConfig, LeaseError, LeaseKeeper, MIN_LEASE_TTL,
    Ownership, RENEWALS_PER_TTL,
};
pub use registry::{ComponentIdx, Registry};
pub use remote::{
    BusConfig, ClusterOptions, ClusterView, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_REPLY_TIMEOUT,
    DEFAULT_RUNTIME_TIMEOUT, MAX_QUERY_INSTANCES, RELAY_QUEUE_CAPACITY, RELAY_RESEND_AFTER,
    RELAY_RESEND_MAX, RELAY_SWEEP_INTERVAL, RELAY_SWEEP_MIN_AGE, RELAY_TRACKED_MAX,
};
pub use stream::{EventBatch, RuntimeEvent, STREAM_CAPACITY};
pub use views::{
    AvailableTransition, BatchOutcome, InstanceFilter, InstanceView, SendOutcome, ShardStats,
    TimerView,
};
pub use webhook::{
    DEFAULT_WEBHOOK_BACKOFF, DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT, HookAction,
    HookReply, IDEMPOTENCY_HEADER, MAX_CONCURRENT_WEBHOOK_CALLS, MAX_WEBHOOK_BACKOFF,
    MAX_WEBHOOK_REPLY_BYTES, MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_TIMEOUT, SIGNATURE_HEADER,
    WEBHOOK_QUEUE_CAPACITY, Webhook, WebhookConfigError, Webhooks, sign,
};
