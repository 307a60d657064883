//! What a transition asks the outside world to do, and the sender API business hooks use.
//!
//! The engine never performs an effect: it returns them, and the runtime executes them once the
//! transition is durable. Hooks therefore get a `Sender` that only records commands; a message
//! sent from a hook leaves only after the transition that sent it has been stored.

use crate::definition::CrossTarget;
use crate::instance::{Context, InstanceId, MachineIdx};
use crate::matching::PropertyFilter;
use crate::mix::mix64;
use serde::Serialize;
use std::sync::Arc;

/// Upper bound on commands one hook call may issue (a runaway loop in business code is cut here
/// and reported as a hook error).
pub const MAX_COMMANDS_PER_HOOK: usize = 10_000;

/// Which instance a `Command::Send` goes to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum Target {
    /// The instance whose hook issued the command (queued after the current transition).
    SelfInstance,
    /// A given instance.
    Instance(InstanceId),
}

/// A request issued by business code through the `Sender`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "command")]
pub enum Command {
    /// Send an event to one instance.
    Send {
        /// Component of the target (`None`: the sender's).
        component: Option<String>,
        /// The target.
        target: Target,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
    },
    /// Send an event to every matching instance of a machine.
    Broadcast {
        /// Component (`None`: the sender's).
        component: Option<String>,
        /// Target machine.
        machine: String,
        /// Only instances in this state.
        state: Option<String>,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
        /// Extra filters on the targets' data.
        filters: Vec<PropertyFilter>,
    },
    /// Create an instance.
    Create {
        /// Component (`None`: the sender's).
        component: Option<String>,
        /// Machine.
        machine: String,
        /// The id the new instance will have (known to the hook at once).
        id: InstanceId,
        /// Initial data.
        context: Context,
    },
}

/// Where the ids of instances created by a hook come from: derived from the transition (the
/// instance, its sequence number after the step, the step's time) and a counter, so the engine
/// draws nothing and the same step always names the same new instances.
///
/// The ids have the layout of a UUID v7 (the step's time in the top 48 bits, then version and
/// variant, then 74 bits mixed from the inputs), so they sort by creation time like the ids the
/// runtime draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSeed {
    instance: InstanceId,
    seq: u64,
    now: crate::instance::Millis,
    counter: u64,
}

impl IdSeed {
    /// The seed of one step of `instance` that produces its event number `seq` at `now`.
    pub fn new(instance: InstanceId, seq: u64, now: crate::instance::Millis) -> IdSeed {
        IdSeed { instance, seq, now, counter: 0 }
    }

    /// The next id of this step.
    pub fn next_instance_id(&mut self) -> InstanceId {
        self.counter += 1;
        let mut bits = mix64(self.instance.0.as_u128() as u64 ^ mix64(self.seq));
        bits = mix64(bits ^ (self.instance.0.as_u128() >> 64) as u64 ^ mix64(self.counter));
        let low = mix64(bits ^ self.counter.rotate_left(32));
        let millis = u64::try_from(self.now).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
        let value = (u128::from(millis) << 80)
            | (0x7u128 << 76)
            | (u128::from(bits & 0x0FFF) << 64)
            | (0b10u128 << 62)
            | u128::from(low & 0x3FFF_FFFF_FFFF_FFFF);
        InstanceId(uuid::Uuid::from_u128(value))
    }
}

/// The API given to hooks. It records commands; the runtime carries them out after the
/// transition is stored, in the order they were issued.
#[derive(Debug)]
pub struct Sender {
    commands: Vec<Command>,
    overflowed: bool,
    ids: IdSeed,
}

impl Sender {
    /// A sender whose created instances take their ids from `ids`.
    pub fn new(ids: IdSeed) -> Sender {
        Sender { commands: Vec::new(), overflowed: false, ids }
    }

    fn push(&mut self, command: Command) {
        if self.commands.len() < MAX_COMMANDS_PER_HOOK {
            self.commands.push(command);
        } else {
            self.overflowed = true;
        }
    }

    /// Sends an event to the current instance; it is processed after the current transition.
    pub fn send_to_self(&mut self, event: impl Into<String>, payload: Context) {
        self.push(Command::Send {
            component: None,
            target: Target::SelfInstance,
            event: event.into(),
            payload,
        });
    }

    /// Sends an event to an instance of this component.
    pub fn send_to(&mut self, instance: InstanceId, event: impl Into<String>, payload: Context) {
        self.push(Command::Send {
            component: None,
            target: Target::Instance(instance),
            event: event.into(),
            payload,
        });
    }

    /// Sends an event to an instance of another component.
    pub fn send_to_component(
        &mut self,
        component: impl Into<String>,
        instance: InstanceId,
        event: impl Into<String>,
        payload: Context,
    ) {
        self.push(Command::Send {
            component: Some(component.into()),
            target: Target::Instance(instance),
            event: event.into(),
            payload,
        });
    }

    /// Broadcasts an event to instances of `machine` (optionally only those in `state`); the
    /// target transitions' matching rules apply.
    pub fn broadcast(
        &mut self,
        machine: impl Into<String>,
        state: Option<&str>,
        event: impl Into<String>,
        payload: Context,
    ) {
        self.push(Command::Broadcast {
            component: None,
            machine: machine.into(),
            state: state.map(str::to_owned),
            event: event.into(),
            payload,
            filters: Vec::new(),
        });
    }

    /// Broadcasts to another component, with optional extra filters.
    pub fn broadcast_to_component(
        &mut self,
        component: impl Into<String>,
        machine: impl Into<String>,
        state: Option<&str>,
        event: impl Into<String>,
        payload: Context,
        filters: Vec<PropertyFilter>,
    ) {
        self.push(Command::Broadcast {
            component: Some(component.into()),
            machine: machine.into(),
            state: state.map(str::to_owned),
            event: event.into(),
            payload,
            filters,
        });
    }

    /// Creates an instance of a machine of this component; returns its id at once.
    pub fn create_instance(&mut self, machine: impl Into<String>, context: Context) -> InstanceId {
        let id = self.ids.next_instance_id();
        self.push(Command::Create { component: None, machine: machine.into(), id, context });
        id
    }

    /// Creates an instance in another component; returns its id at once.
    pub fn create_instance_in_component(
        &mut self,
        component: impl Into<String>,
        machine: impl Into<String>,
        context: Context,
    ) -> InstanceId {
        let id = self.ids.next_instance_id();
        self.push(Command::Create {
            component: Some(component.into()),
            machine: machine.into(),
            id,
            context,
        });
        id
    }

    /// The commands recorded so far.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    pub(crate) fn discard(&mut self) {
        self.commands.clear();
        self.overflowed = false;
    }

    /// Whether the hook tried to issue more than `MAX_COMMANDS_PER_HOOK` commands.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub(crate) fn drain_into(&mut self, effects: &mut Vec<Effect>) {
        effects.extend(self.commands.drain(..).map(Effect::Command));
    }
}

/// Which hook ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HookKind {
    /// `onExit` of the source state.
    Exit,
    /// `triggeredMethod` of the transition.
    Triggered,
    /// `onEntry` of the target state.
    Entry,
}

impl HookKind {
    /// The name used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Exit => "onExit",
            HookKind::Triggered => "triggeredMethod",
            HookKind::Entry => "onEntry",
        }
    }
}

/// Something a transition asks the runtime to do, in the order it arose.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A command issued by a hook.
    Command(Command),
    /// A cascading rule of the entered state.
    Cascade {
        /// Target component (`None`: this one).
        component: Option<Arc<str>>,
        /// Target machine.
        machine: Arc<str>,
        /// Only instances in this state.
        state: Arc<str>,
        /// Event sent.
        event: Arc<str>,
        /// Expanded payload.
        payload: Context,
        /// Target selection; `None` when a rule's value is missing (nothing can match).
        filters: Option<Vec<PropertyFilter>>,
    },
    /// Send an event to the parent instance.
    NotifyParent {
        /// The parent.
        parent: InstanceId,
        /// Event type.
        event: Arc<str>,
        /// `{childInstanceId, childMachine, previousState, newState?, childContext?}`.
        payload: Context,
    },
    /// Create a child instance (inter_machine) of this component, linked to this instance.
    CreateChild {
        /// Child machine.
        machine: MachineIdx,
        /// Its initial data.
        context: Context,
    },
    /// Cross-component: create an instance there, or send `target.event` to matching instances.
    CrossComponent {
        /// Where.
        target: CrossTarget,
        /// Outgoing data (mapped, or the whole source data).
        context: Context,
        /// Correlation filters on the target instances; `None`: a rule's value is missing.
        filters: Option<Vec<PropertyFilter>>,
    },
    /// A hook failed; the transition went on (the failure is recorded and reported).
    HookFailed {
        /// Which hook.
        kind: HookKind,
        /// Method name.
        method: Arc<str>,
        /// What went wrong.
        error: String,
    },
}
