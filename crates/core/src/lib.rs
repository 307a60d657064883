//! xcomponent-core: the component model (YAML), its validation, and the pure engine.
//!
//! Nothing in this crate does I/O, reads a clock or spawns a task: given the same definition,
//! instance, event and `now`, the engine produces the same result. The runtime, stores and
//! servers build on the types and traits defined here.

pub mod clock;
pub mod definition;
pub mod diagnostic;
pub mod effect;
pub mod engine;
pub mod flag;
pub mod guard;
pub mod instance;
pub mod load;
pub mod matching;
pub mod mermaid;
pub mod model;
pub mod path;
pub mod schema;
pub mod store;
pub mod template;
pub mod validate;

pub use clock::{Clock, ManualClock, SystemClock};
pub use instance::{
    Context, EventId, Instance, InstanceId, Millis, ParentRef, PendingTimer, Status,
};
