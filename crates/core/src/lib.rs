//! xcomponent-core: the component model (YAML), its validation, and the pure engine.
//!
//! Nothing in this crate does I/O, reads a clock or spawns a task: given the same definition,
//! instance, event and `now`, the engine produces the same result. The runtime, stores and
//! servers build on the types and traits defined here.
//!
//! A component goes through four stages: [`load`] parses the YAML and keeps node positions,
//! [`validate`] reports every problem with a code and a hint, [`definition::Definition`]
//! compiles the model into indexed machines, and [`engine`] creates and steps instances:
//!
//! ```
//! use xcomponent_core::definition::Definition;
//! use xcomponent_core::diagnostic::has_errors;
//! use xcomponent_core::engine::{self, EventRef, NoHooks, StepResult};
//! use xcomponent_core::validate::{ValidateOptions, validate};
//! use xcomponent_core::{Context, InstanceId, Status};
//!
//! let yaml = r#"
//! name: Shop
//! entryMachine: Order
//! stateMachines:
//!   - name: Order
//!     initialState: Created
//!     states:
//!       - {name: Created, type: entry}
//!       - {name: Paid, type: final}
//!     transitions:
//!       - {from: Created, to: Paid, event: PAY}
//! "#;
//! let loaded = xcomponent_core::load::parse_component(yaml, "shop.yaml").expect("YAML parses");
//! assert!(!has_errors(&validate(&loaded, &ValidateOptions::default())));
//! let definition = Definition::compile(loaded.component).expect("component compiles");
//!
//! // Time is an argument: the engine never reads a clock.
//! let machine = definition.machine_index("Order").expect("machine exists");
//! let mut order =
//!     engine::create(&definition, machine, InstanceId(uuid::Uuid::now_v7()), Context::new(), None, 1_000);
//! let payload = Context::new();
//! let event = EventRef { name: "PAY", payload: &payload };
//! let result = engine::step(&definition, &mut order, event, 2_000, &mut NoHooks);
//!
//! assert!(matches!(result, StepResult::Transitioned(_)));
//! assert_eq!(&*definition.machine(machine).state(order.state).name, "Paid");
//! assert_eq!(order.status, Status::Completed); // a final state ends the instance
//! ```

pub mod bus;
pub mod clock;
pub mod context_schema;
pub mod definition;
pub mod diagnostic;
pub mod effect;
pub mod engine;
pub mod flag;
pub mod guard;
pub mod instance;
pub mod lease;
pub mod load;
pub mod matching;
pub mod mermaid;
pub mod message;
pub mod mix;
pub mod model;
pub mod path;
pub mod schema;
pub mod store;
pub mod template;
pub mod validate;

pub use clock::{Clock, ManualClock, SystemClock};
pub use instance::{
    Context, EventId, Instance, InstanceId, Millis, ParentRef, PendingTimer, Status, Timers,
};
