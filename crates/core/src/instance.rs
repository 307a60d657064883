//! A running instance of a state machine, and the identifiers around it.
//!
//! An `Instance` is plain data: the engine changes it, the runtime owns it, the store persists it.
//! It is kept small on purpose (ids are numbers, names live in the `Definition`) because a process
//! holds millions of idle ones.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Instance data (`context`, or `publicMember` for machines that declare `publicMemberType`).
pub type Context = Map<String, Value>;

/// Milliseconds since the Unix epoch, the only time unit of the engine.
pub type Millis = i64;

/// Defines a UUID-v7 identifier type: time-ordered, displayed hyphenated, parsed from text.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub ::uuid::Uuid);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(self, f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::uuid::Error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                ::uuid::Uuid::parse_str(text).map($name)
            }
        }
    };
}

pub(crate) use uuid_id;

uuid_id!(
    /// Globally unique, time-ordered instance identifier (UUID v7).
    InstanceId
);
uuid_id!(
    /// Identifier of a stored event or of a command (UUID v7, so ids sort by time).
    EventId
);

/// Index of a machine inside its `Definition`.
pub type MachineIdx = u16;
/// Index of a state inside its machine.
pub type StateIdx = u16;
/// Index of a transition inside its machine (declaration order).
pub type TransitionIdx = u16;

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepts events.
    Active,
    /// Reached a `final` state.
    Completed,
    /// Reached an `error` state.
    Error,
}

impl Status {
    /// The lowercase name used in APIs and stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Completed => "completed",
            Status::Error => "error",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "active" => Some(Status::Active),
            "completed" => Some(Status::Completed),
            "error" => Some(Status::Error),
            _ => None,
        }
    }
}

/// Link from a child (created by an `inter_machine` transition) to its parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// The parent instance.
    pub instance_id: InstanceId,
    /// The parent's machine name.
    pub machine: String,
}

/// A timer armed for an instance: transition `transition` fires at `deadline` unless the state changes.
///
/// Deadlines are absolute, so a restart can fire overdue timers once and re-arm the others with
/// exactly their remaining time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTimer {
    /// The timeout/auto transition to fire.
    pub transition: TransitionIdx,
    /// When it fires (ms since epoch).
    pub deadline: Millis,
}

/// The armed timers of an instance.
pub type Timers = thin_vec::ThinVec<PendingTimer>;

/// One instance of a machine. Names are resolved through the instance's `Definition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Identity.
    pub id: InstanceId,
    /// The machine (index in the component's `Definition`).
    pub machine: MachineIdx,
    /// The current state (index in the machine).
    pub state: StateIdx,
    /// Lifecycle.
    pub status: Status,
    /// Created as the component's entry point.
    pub entry_point: bool,
    /// Number of stored events of this instance so far (the creation is event 1).
    pub seq: u64,
    /// Creation time.
    pub created_at: Millis,
    /// Time of the last transition.
    pub updated_at: Millis,
    /// The instance data, shared copy-on-write with stream events and stored records.
    pub context: Arc<Context>,
    /// Parent link, for children created by `inter_machine`.
    pub parent: Option<Box<ParentRef>>,
    /// Armed timers (empty for most instances: no allocation, and one pointer in the instance
    /// instead of a `Vec`'s three words, which every live instance would carry).
    pub timers: Timers,
}

impl Instance {
    /// Whether the instance still accepts events.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Reads a dot path (`customer.id`) from the instance data.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        crate::path::lookup_in_map(&self.context, path)
    }
}
