//! Errors the runtime returns to callers. Each says what went wrong and with which names, so the
//! server can map it to a status code in one place.

use xcomponent_core::instance::InstanceId;

/// A runtime error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No such component.
    #[error("component {0} not found")]
    UnknownComponent(String),
    /// No such machine in the component.
    #[error("machine {machine} not found in component {component}")]
    UnknownMachine {
        /// Component.
        component: String,
        /// Machine.
        machine: String,
    },
    /// No live instance with this id (it never existed, or it has finished).
    #[error("instance {0} not found")]
    UnknownInstance(InstanceId),
    /// The component's entry machine is a singleton and an instance is already live.
    #[error(
        "component {component} is a singleton: instance {existing} of {machine} already exists"
    )]
    SingletonExists {
        /// Component.
        component: String,
        /// Entry machine.
        machine: String,
        /// The live instance.
        existing: InstanceId,
    },
    /// An instance with this id already exists.
    #[error("instance {0} already exists")]
    DuplicateInstance(InstanceId),
    /// The store refused or failed; the transition was not applied and the instance is unchanged.
    #[error("storage failed, nothing was changed: {0}")]
    Storage(#[source] xcomponent_core::store::Error),
    /// The request was handed to the runtime that owns its target (in another process) but its
    /// outcome did not come back in time: it may still be applied (HTTP 202).
    #[error("accepted by the bus as message {message_id}; the outcome is not known yet")]
    Accepted {
        /// The message that carries the request.
        message_id: xcomponent_core::message::MessageId,
        /// For a creation: the id the new instance gets.
        instance_id: Option<InstanceId>,
    },
    /// This runtime (a view over other processes) cannot do this operation (named).
    #[error("{0} is not supported here")]
    Unsupported(&'static str),
    /// The runtime is shutting down or has stopped.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// An event payload (or a creation's initial data) is larger than
    /// `RuntimeOptions::max_payload_bytes`; nothing was sent.
    #[error("payload of {bytes} bytes is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the payload's JSON.
        bytes: usize,
        /// `RuntimeOptions::max_payload_bytes`.
        limit: usize,
    },
    /// The transition (or creation) would make the instance data larger than
    /// `RuntimeOptions::max_data_bytes`; it was refused and the instance is unchanged.
    #[error(
        "instance {instance}: the data would be {bytes} bytes, larger than the limit of {limit} bytes; the event was refused"
    )]
    DataTooLarge {
        /// The instance.
        instance: InstanceId,
        /// Size of the resulting data's JSON.
        bytes: usize,
        /// `RuntimeOptions::max_data_bytes`.
        limit: usize,
    },
    /// The initial data of a creation breaks the machine's `contextSchema` (a `required` field
    /// is missing, or a field has another type than the declared one); nothing was created.
    #[error("{component}.{machine}: {violation}; nothing was created")]
    ContextSchema {
        /// Component.
        component: String,
        /// Machine.
        machine: String,
        /// The field and the rule it breaks.
        violation: Box<xcomponent_core::context_schema::Violation>,
    },
    /// The instance belongs to a partition of a shared component that another runtime owns
    /// (or that no runtime owns right now): this runtime cannot apply it (the dashboard and the
    /// bus route it to the owner).
    #[error(
        "{component} partition {partition} is owned by another runtime; send through the dashboard or the bus"
    )]
    NotOwner {
        /// The component.
        component: String,
        /// The partition.
        partition: u32,
    },
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// One field of the request holds a value no store can keep (a NUL character): refused
    /// before it reaches a batch, so it cannot fail other callers' work.
    #[error("{message}")]
    InvalidField {
        /// Dot path of the field (`payload.name`, `context.lines.2`, `event`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}
