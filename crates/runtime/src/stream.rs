//! The stream of runtime events that servers, dashboards and tests subscribe to.
//!
//! Events are published in batches (`Arc<Vec<RuntimeEvent>>`, one allocation per shard batch) on a
//! bounded broadcast channel: a subscriber that falls more than `STREAM_CAPACITY` batches behind
//! is told how many it missed and never slows the runtime down. Events carry indexes, not names;
//! `Registry` resolves them (see `RuntimeEvent::describe`).

use crate::registry::{ComponentIdx, Registry};
use serde_json::{Value, json};
use std::sync::Arc;
use xcomponent_core::effect::HookKind;
use xcomponent_core::instance::{
    Context, EventId, InstanceId, MachineIdx, Millis, StateIdx, Status, TransitionIdx,
};

/// Batches kept for slow subscribers before they start missing some.
pub const STREAM_CAPACITY: usize = 1024;

/// One thing that happened in the runtime, published only once it is durable.
#[derive(Debug, Clone)]
pub enum RuntimeEvent {
    /// An instance was created.
    InstanceCreated {
        /// Component.
        component: ComponentIdx,
        /// Instance.
        instance: InstanceId,
        /// Machine.
        machine: MachineIdx,
        /// Initial state.
        state: StateIdx,
        /// Initial data.
        context: Arc<Context>,
        /// Parent, for inter_machine children.
        parent: Option<InstanceId>,
        /// Stored event id (nil without a store).
        event_id: EventId,
        /// When.
        at: Millis,
    },
    /// An instance took a transition.
    StateChanged {
        /// Component.
        component: ComponentIdx,
        /// Instance.
        instance: InstanceId,
        /// Machine.
        machine: MachineIdx,
        /// State before.
        from: StateIdx,
        /// State after.
        to: StateIdx,
        /// The transition taken.
        transition: TransitionIdx,
        /// Data after.
        context: Arc<Context>,
        /// Status after.
        status: Status,
        /// Stored event id (nil without a store).
        event_id: EventId,
        /// When.
        at: Millis,
    },
    /// An event changed nothing.
    EventIgnored {
        /// Component.
        component: ComponentIdx,
        /// Instance.
        instance: InstanceId,
        /// Event type.
        event: Arc<str>,
        /// Why.
        reason: String,
    },
    /// An instance reached a final/error state and left the live set (its history stays).
    InstanceDisposed {
        /// Component.
        component: ComponentIdx,
        /// Instance.
        instance: InstanceId,
        /// Machine.
        machine: MachineIdx,
        /// Final state.
        state: StateIdx,
        /// `completed` or `error`.
        status: Status,
    },
    /// A timer fired (the transition follows as `StateChanged`).
    TimeoutFired {
        /// Component.
        component: ComponentIdx,
        /// Instance.
        instance: InstanceId,
        /// Machine.
        machine: MachineIdx,
        /// The timed transition.
        transition: TransitionIdx,
    },
    /// Business code failed; the transition went on.
    HookFailed {
        /// Component.
        component: ComponentIdx,
        /// Instance.
        instance: InstanceId,
        /// Which hook.
        kind: HookKind,
        /// Method name.
        method: Arc<str>,
        /// The error.
        error: String,
    },
    /// An effect could not be carried out (unknown target, cascade limit...).
    EffectFailed {
        /// Component of the instance that produced the effect.
        component: ComponentIdx,
        /// That instance.
        instance: InstanceId,
        /// What failed.
        error: String,
    },
    /// A batch could not be stored: its transitions were rolled back, instances are unchanged.
    CommitFailed {
        /// The store's error.
        error: String,
        /// How many events were rolled back.
        events: usize,
    },
}

impl RuntimeEvent {
    /// The event's type name as used on the WebSocket and the bus.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeEvent::InstanceCreated { .. } => "instance_created",
            RuntimeEvent::StateChanged { .. } => "state_change",
            RuntimeEvent::EventIgnored { .. } => "event_ignored",
            RuntimeEvent::InstanceDisposed { .. } => "instance_disposed",
            RuntimeEvent::TimeoutFired { .. } => "timeout_fired",
            RuntimeEvent::HookFailed { .. } => "hook_error",
            RuntimeEvent::EffectFailed { .. } => "effect_error",
            RuntimeEvent::CommitFailed { .. } => "commit_failed",
        }
    }

    /// The instance concerned, if any.
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            RuntimeEvent::InstanceCreated { instance, .. }
            | RuntimeEvent::StateChanged { instance, .. }
            | RuntimeEvent::EventIgnored { instance, .. }
            | RuntimeEvent::InstanceDisposed { instance, .. }
            | RuntimeEvent::TimeoutFired { instance, .. }
            | RuntimeEvent::HookFailed { instance, .. }
            | RuntimeEvent::EffectFailed { instance, .. } => Some(*instance),
            RuntimeEvent::CommitFailed { .. } => None,
        }
    }

    /// The component concerned, if any.
    pub fn component(&self) -> Option<ComponentIdx> {
        match self {
            RuntimeEvent::InstanceCreated { component, .. }
            | RuntimeEvent::StateChanged { component, .. }
            | RuntimeEvent::EventIgnored { component, .. }
            | RuntimeEvent::InstanceDisposed { component, .. }
            | RuntimeEvent::TimeoutFired { component, .. }
            | RuntimeEvent::HookFailed { component, .. }
            | RuntimeEvent::EffectFailed { component, .. } => Some(*component),
            RuntimeEvent::CommitFailed { .. } => None,
        }
    }

    /// A JSON rendering with names resolved (the WebSocket `data` of the original's messages).
    pub fn describe(&self, registry: &Registry) -> Value {
        let component_name =
            |component: ComponentIdx| registry.definition(component).name.to_string();
        let machine_def = |component: ComponentIdx, machine: MachineIdx| {
            registry.definition(component).machine(machine)
        };
        match self {
            RuntimeEvent::InstanceCreated {
                component,
                instance,
                machine,
                state,
                context,
                parent,
                event_id,
                at,
            } => {
                let machine_def = machine_def(*component, *machine);
                json!({
                    "instanceId": instance, "componentName": component_name(*component),
                    "machineName": &*machine_def.name, "currentState": &*machine_def.state(*state).name,
                    "context": &**context, "parentInstanceId": parent, "eventId": event_id, "timestamp": at,
                })
            }
            RuntimeEvent::StateChanged {
                component,
                instance,
                machine,
                from,
                to,
                transition,
                context,
                status,
                event_id,
                at,
            } => {
                let machine_def = machine_def(*component, *machine);
                let transition_def = machine_def.transition(*transition);
                json!({
                    "instanceId": instance, "componentName": component_name(*component),
                    "machineName": &*machine_def.name, "previousState": &*machine_def.state(*from).name,
                    "newState": &*machine_def.state(*to).name, "stateType": machine_def.state(*to).kind,
                    "event": &*transition_def.event_name, "transitionType": transition_def.kind,
                    "context": &**context, "status": status, "eventId": event_id, "timestamp": at,
                })
            }
            RuntimeEvent::EventIgnored { component, instance, event, reason } => json!({
                "instanceId": instance, "componentName": component_name(*component), "event": &**event, "reason": reason,
            }),
            RuntimeEvent::InstanceDisposed { component, instance, machine, state, status } => {
                let machine_def = machine_def(*component, *machine);
                json!({
                    "instanceId": instance, "componentName": component_name(*component), "machineName": &*machine_def.name,
                    "finalState": &*machine_def.state(*state).name, "status": status,
                })
            }
            RuntimeEvent::TimeoutFired { component, instance, machine, transition } => {
                let machine_def = machine_def(*component, *machine);
                json!({
                    "instanceId": instance, "componentName": component_name(*component), "machineName": &*machine_def.name,
                    "event": &*machine_def.transition(*transition).event_name,
                })
            }
            RuntimeEvent::HookFailed { component, instance, kind, method, error } => json!({
                "instanceId": instance, "componentName": component_name(*component), "hook": kind.as_str(), "method": &**method, "error": error,
            }),
            RuntimeEvent::EffectFailed { component, instance, error } => json!({
                "instanceId": instance, "componentName": component_name(*component), "error": error,
            }),
            RuntimeEvent::CommitFailed { error, events } => {
                json!({ "error": error, "events": events })
            }
        }
    }
}

/// A batch of runtime events.
pub type EventBatch = Arc<Vec<RuntimeEvent>>;
