//! Messages between instances: the serializable, name-addressed envelopes that carry every effect
//! leaving an instance (a send, a broadcast, a cascade, a parent notification, a child or
//! cross-component creation, a hook's commands).
//!
//! An envelope says *what* is delivered and to *whom by name* (component, machine, instance or a
//! selector); it holds no process-local index, channel or reply, so it can be stored in an
//! outbox, published on a bus and applied in another process. Its identity is fixed before the
//! transition that produced it is stored: the message id, and for a creation the new instance's
//! id, so a message delivered twice can be recognised (the inbox) and a creation delivered twice
//! cannot make two instances.

use crate::instance::{Context, EventId, InstanceId, Millis, ParentRef};
use crate::matching::PropertyFilter;
use serde::{Deserialize, Serialize};

crate::instance::uuid_id!(
    /// Identifier of a routed message (UUID v7 drawn by the runtime before the commit that
    /// stores it, so ids sort by the time they were produced).
    MessageId
);

/// Version of the envelope layout, stored with every outbox row and dead letter.
pub const ENVELOPE_SCHEMA_VERSION: u32 = 1;

/// Which instances of a machine a delivery reaches: those in one of `states` (any state when
/// `None`) whose data passes every filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorSpec {
    /// State names; `None`: every state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<String>>,
    /// Filters on the instance data, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<PropertyFilter>,
}

/// What a message asks its target component to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MessageBody {
    /// Send `event` to one instance.
    #[serde(rename_all = "camelCase")]
    Send {
        /// The target instance.
        instance_id: InstanceId,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
    },
    /// Send `event` to every instance of `machine` that one of the selectors picks (a broadcast,
    /// a cascade, a cross-component event with correlation rules).
    #[serde(rename_all = "camelCase")]
    Deliver {
        /// Target machine.
        machine: String,
        /// Target selection (an instance is reached once even when several selectors pick it).
        selectors: Vec<SelectorSpec>,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
    },
    /// Send `event` to the instances of `machine` (in `state`, if given) that the target
    /// transitions' matching rules pick, read against the payload, narrowed by `filters`: a
    /// hook's broadcast, resolved by the component that receives it.
    #[serde(rename_all = "camelCase")]
    Broadcast {
        /// Target machine.
        machine: String,
        /// Only instances in this state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
        /// Extra filters on the targets' data.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        filters: Vec<PropertyFilter>,
    },
    /// Create an instance of `machine` with the given id (fixed by the sender, so a creation
    /// delivered twice makes one instance).
    #[serde(rename_all = "camelCase")]
    Create {
        /// Machine of the new instance.
        machine: String,
        /// Its id.
        instance_id: InstanceId,
        /// Its initial data.
        context: Context,
        /// Parent link (an inter_machine child).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
    },
    /// A call of a hook mapped to a webhook, made by the runtime that stores it once the
    /// transition that reached the hook is stored; the message id is the call's idempotency key.
    /// Its reply (a data patch and sender actions, or the failure) is applied to `instance_id`
    /// as a stored event of its own, in the commit that removes this message from the outbox.
    #[serde(rename_all = "camelCase")]
    HookCall {
        /// The instance whose hook it is.
        instance_id: InstanceId,
        /// Its machine.
        machine: String,
        /// The method name from the YAML.
        method: String,
        /// Which hook: `onEntry`, `onExit` or `triggeredMethod`.
        hook: String,
        /// The state the hook belongs to.
        state: String,
        /// The event being processed.
        event: String,
        /// Its payload.
        payload: Context,
        /// The instance data as the hook saw it.
        context: Context,
    },
}

impl MessageBody {
    /// The event type carried (`None` for a creation).
    pub fn event(&self) -> Option<&str> {
        match self {
            MessageBody::Send { event, .. }
            | MessageBody::Deliver { event, .. }
            | MessageBody::Broadcast { event, .. } => Some(event),
            MessageBody::Create { .. } | MessageBody::HookCall { .. } => None,
        }
    }

    /// The one instance addressed, when the message addresses one (a send or a creation).
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            MessageBody::Send { instance_id, .. }
            | MessageBody::Create { instance_id, .. }
            | MessageBody::HookCall { instance_id, .. } => Some(*instance_id),
            MessageBody::Deliver { .. } | MessageBody::Broadcast { .. } => None,
        }
    }
}

/// One routed message, as stored in the sender's outbox and carried by a bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Identity, fixed before the commit that stores the message.
    pub id: MessageId,
    /// Target component (by name).
    pub component: String,
    /// What to do there.
    pub body: MessageBody,
    /// The stored event that produced the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
    /// The root of the causal chain; `None`: an event continues the target instance's own chain,
    /// a creation starts a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<EventId>,
    /// Hops from the external event that started the chain (bounded by the runtime).
    #[serde(default)]
    pub depth: u32,
    /// Component that sent it, when it crosses components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_component: Option<String>,
    /// The instance whose transition produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_instance: Option<InstanceId>,
    /// When it was produced (ms since epoch).
    pub created_at: Millis,
}

/// A record that a message was applied to an instance: written in the same store transaction as
/// the instance's resulting event, so a message delivered again is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxEntry {
    /// The message.
    pub message_id: MessageId,
    /// The instance it was applied to (a broadcast has one entry per instance reached).
    pub instance_id: InstanceId,
    /// When it was applied (ms since epoch); entries older than the inbox retention are purged.
    pub applied_at: Millis,
}

/// Why a message was put in the dead-letter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// Its target does not exist or has finished, or its component or machine is unknown here.
    Undeliverable,
    /// The target took no transition on it (no transition, guard or rules did not hold).
    Rejected,
    /// Applying it kept failing for an infrastructure reason, past the retry bound.
    Failed,
}

impl DeadLetterKind {
    /// The snake_case name used in APIs and stores.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Undeliverable => "undeliverable",
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::Failed => "failed",
        }
    }
}

/// A message that could not be applied, kept with its reason until an operator replays or
/// discards it. Never retried on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The message, as it was sent.
    pub message: Envelope,
    /// Why it was not applied.
    pub kind: DeadLetterKind,
    /// A one-line explanation.
    pub reason: String,
    /// How many times applying it was attempted.
    pub attempts: u32,
    /// When it was put in the list (ms since epoch).
    pub dead_at: Millis,
}
