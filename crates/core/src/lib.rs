//! xcomponent-core: the component model (YAML), its validation, and the pure engine.
//!
//! Nothing in this crate does I/O, reads a clock or spawns a task: given the same definition,
//! instance, event and `now`, the engine produces the same result. The runtime, stores and
//! servers build on the types and traits defined here.

pub mod clock;
pub mod guard;
pub mod instance;
pub mod model;
pub mod path;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use instance::{Context, EventId, Instance, InstanceId, Millis, ParentRef, PendingTimer, Status};
