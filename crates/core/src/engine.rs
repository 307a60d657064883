//! The pure engine: `create` an instance, `step` it with an event, `fire_timer` a due timer.
//!
//! One transition runs in this fixed order: onExit → triggeredMethod → payload merge → state
//! change → cascading rules → onEntry → parent notification → inter_machine → cross_component →
//! final/error → timers. Hooks run synchronously through the `Hooks` trait; everything that
//! leaves the instance is returned as an `Effect` for the runtime to carry out once the
//! transition is stored. No I/O, no clock: `now` is an argument.

use crate::definition::{Definition, MachineDef, NotifyParentDef, TransitionDef};
use crate::effect::{Effect, HookKind, IdSeed, Sender};
use crate::guard::GuardInput;
use crate::instance::{
    Context, Instance, InstanceId, MachineIdx, Millis, ParentRef, PendingTimer, StateIdx, Status,
    Timers, TransitionIdx,
};
use crate::matching::{resolve_filters, rules_hold};
use crate::model::TransitionType;
use crate::template::{expand_payload, map_context};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// An event as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// Event type.
    pub name: &'a str,
    /// Payload.
    pub payload: &'a Context,
}

/// One hook invocation handed to business code.
pub struct HookCall<'a> {
    /// Which hook.
    pub kind: HookKind,
    /// The method name from the YAML.
    pub method: &'a str,
    /// The instance.
    pub instance_id: InstanceId,
    /// Its machine.
    pub machine: &'a str,
    /// The state the hook belongs to (source for onExit/triggered, target for onEntry).
    pub state: &'a str,
    /// The event being processed.
    pub event: EventRef<'a>,
    /// The instance data, to read and update.
    pub context: &'a mut Context,
    /// Sends events and creates instances after the transition is stored.
    pub sender: &'a mut Sender,
}

/// Business code called by the engine. The runtime implements it with a registry of handlers.
pub trait Hooks {
    /// Runs one hook. An error is recorded (`Effect::HookFailed`) and the transition goes on;
    /// the engine then discards the hook's data changes and commands (and does the same when a
    /// hook issues more than `MAX_COMMANDS_PER_HOOK` commands).
    fn call(&mut self, call: HookCall<'_>) -> Result<(), String>;

    /// Whether every call is a no-op: the engine then skips hooks, and the data stays as it is.
    fn is_inert(&self) -> bool {
        false
    }
}

/// No business code: hooks are no-ops (simulation, tests, benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn call(&mut self, _call: HookCall<'_>) -> Result<(), String> {
        Ok(())
    }

    fn is_inert(&self) -> bool {
        true
    }
}

/// Why a candidate transition was not taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Rejection {
    /// Its guard evaluated to false.
    GuardFalse {
        /// The guard text.
        guard: String,
    },
    /// Its guard could not be evaluated (e.g. a missing field); treated as false.
    GuardError {
        /// The guard text.
        guard: String,
        /// The evaluation error.
        error: String,
    },
    /// Its matching rules do not hold between the instance data and the payload.
    RulesDidNotMatch,
}

/// Why an event changed nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Ignored {
    /// The instance has finished.
    NotActive,
    /// No transition leaves the current state on this event.
    NoTransition,
    /// Candidates exist but none is allowed now.
    Rejected {
        /// One entry per candidate, in declaration order: (transition index, why).
        rejections: Vec<(TransitionIdx, Rejection)>,
    },
    /// The timer was no longer armed (the state changed since).
    StaleTimer,
}

impl Ignored {
    /// A one-line explanation for APIs and logs.
    pub fn describe(&self, machine: &MachineDef, state: StateIdx, event: &str) -> String {
        let state_name = &machine.state(state).name;
        match self {
            Ignored::NotActive => "the instance has finished".to_owned(),
            Ignored::NoTransition => {
                format!("no transition from state {state_name} on event {event}")
            }
            Ignored::StaleTimer => "the timer is no longer armed".to_owned(),
            Ignored::Rejected { rejections } => {
                let parts: Vec<String> = rejections
                    .iter()
                    .map(|(index, rejection)| {
                        let to = &machine.state(machine.transition(*index).to).name;
                        match rejection {
                            Rejection::GuardFalse { guard } => {
                                format!("to {to}: guard `{guard}` is false")
                            }
                            Rejection::GuardError { error, .. } => format!("to {to}: {error}"),
                            Rejection::RulesDidNotMatch => {
                                format!("to {to}: matching rules do not hold")
                            }
                        }
                    })
                    .collect();
                format!("event {event} in state {state_name} rejected ({})", parts.join("; "))
            }
        }
    }
}

/// A transition that happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Transitioned {
    /// Which transition.
    pub transition: TransitionIdx,
    /// State before.
    pub from: StateIdx,
    /// State after.
    pub to: StateIdx,
    /// What the runtime must do now, in order.
    pub effects: Vec<Effect>,
    /// The instance data before the step, when the step replaced it (a payload merged, a hook
    /// ran); `None` when the instance still holds the very data it had (the same `Arc`).
    pub previous_data: Option<Arc<Context>>,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    /// The instance moved (possibly to the same state).
    Transitioned(Transitioned),
    /// Nothing changed.
    Ignored(Ignored),
}

/// Payload of the event a fired timer produces (merged into the data, as in the original).
pub fn timer_payload(kind: TransitionType) -> Context {
    let reason = if kind == TransitionType::Auto { "auto-transition" } else { "timeout" };
    let mut payload = Context::new();
    payload.insert("reason".to_owned(), Value::String(reason.to_owned()));
    payload
}

/// Creates an instance in its machine's initial state, with the initial state's timers armed.
/// The initial state's onEntry and cascading rules do not run (as in the original).
pub fn create(
    definition: &Definition,
    machine: MachineIdx,
    id: InstanceId,
    context: Context,
    parent: Option<ParentRef>,
    now: Millis,
) -> Instance {
    let machine_def = definition.machine(machine);
    let mut instance = Instance {
        id,
        machine,
        state: machine_def.initial,
        status: Status::Active,
        entry_point: false,
        seq: 1,
        created_at: now,
        updated_at: now,
        context: Arc::new(context),
        parent: parent.map(Box::new),
        timers: Timers::new(),
    };
    if machine_def.state(machine_def.initial).kind.is_terminal() {
        instance.status = terminal_status(machine_def, machine_def.initial);
    } else {
        arm_all(machine_def, &mut instance, now);
    }
    instance
}

/// Processes one event for one instance.
pub fn step(
    definition: &Definition,
    instance: &mut Instance,
    event: EventRef<'_>,
    now: Millis,
    hooks: &mut dyn Hooks,
) -> StepResult {
    if !instance.is_active() {
        return StepResult::Ignored(Ignored::NotActive);
    }
    let machine = definition.machine(instance.machine);
    match select(machine, instance, event) {
        Ok(transition) => {
            StepResult::Transitioned(apply(definition, instance, transition, event, now, hooks))
        }
        Err(ignored) => StepResult::Ignored(ignored),
    }
}

/// Fires a timer of `instance` for `transition` if it is still armed and due at `now`.
/// The event carries `timer_payload`, which the caller passes as `payload`.
pub fn fire_timer(
    definition: &Definition,
    instance: &mut Instance,
    transition: TransitionIdx,
    payload: &Context,
    now: Millis,
    hooks: &mut dyn Hooks,
) -> StepResult {
    if !instance.is_active() {
        return StepResult::Ignored(Ignored::NotActive);
    }
    let Some(position) = instance
        .timers
        .iter()
        .position(|timer| timer.transition == transition && timer.deadline <= now)
    else {
        return StepResult::Ignored(Ignored::StaleTimer);
    };
    let machine = definition.machine(instance.machine);
    let transition_def = machine.transition(transition);
    if transition_def.from != instance.state {
        return StepResult::Ignored(Ignored::StaleTimer);
    }
    instance.timers.swap_remove(position);
    let event = EventRef { name: &transition_def.event_name, payload };
    if let Err(rejection) = check_candidate(machine, transition_def, instance, event) {
        return StepResult::Ignored(Ignored::Rejected {
            rejections: vec![(transition, rejection)],
        });
    }
    StepResult::Transitioned(apply(definition, instance, transition, event, now, hooks))
}

/// Picks the transition for an event: among the candidates leaving the current state on this
/// event, those whose matching rules and guard hold; rule-bearing ones first (the original's
/// preference), then declaration order.
fn select(
    machine: &MachineDef,
    instance: &Instance,
    event: EventRef<'_>,
) -> Result<TransitionIdx, Ignored> {
    let Some(event_index) = machine.event_index(event.name) else {
        return Err(Ignored::NoTransition);
    };
    let candidates = machine.candidates(instance.state, event_index);
    if candidates.is_empty() {
        return Err(Ignored::NoTransition);
    }
    let mut fallback = None;
    let mut rejections = Vec::new();
    for &index in candidates {
        let transition = machine.transition(index);
        match check_candidate(machine, transition, instance, event) {
            Ok(()) if transition.rules.is_some() => return Ok(index),
            Ok(()) => {
                fallback.get_or_insert(index);
            }
            Err(rejection) => rejections.push((index, rejection)),
        }
    }
    fallback.ok_or(Ignored::Rejected { rejections })
}

fn check_candidate(
    machine: &MachineDef,
    transition: &TransitionDef,
    instance: &Instance,
    event: EventRef<'_>,
) -> Result<(), Rejection> {
    if let Some(rules) = &transition.rules
        && !rules_hold(rules, &instance.context, event.payload)
    {
        return Err(Rejection::RulesDidNotMatch);
    }
    let Some(guard) = &transition.guard else { return Ok(()) };
    // The guard sees the data as the transition would leave it after the payload merge.
    let context: Cow<'_, Context> = if transition.merges_payload() && !event.payload.is_empty() {
        let mut merged = Context::clone(&instance.context);
        merge(&mut merged, event.payload);
        Cow::Owned(merged)
    } else {
        Cow::Borrowed(instance.context.as_ref())
    };
    let input = GuardInput {
        context: &context,
        payload: event.payload,
        event_type: event.name,
        state: &machine.state(instance.state).name,
    };
    match guard.evaluate(&input) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Rejection::GuardFalse { guard: guard.source().to_owned() }),
        Err(error) => Err(Rejection::GuardError {
            guard: guard.source().to_owned(),
            error: error.to_string(),
        }),
    }
}

fn merge(context: &mut Context, payload: &Context) {
    for (key, value) in payload {
        context.insert(key.clone(), value.clone());
    }
}

fn terminal_status(machine: &MachineDef, state: StateIdx) -> Status {
    match machine.state(state).kind {
        crate::model::StateType::Error => Status::Error,
        _ => Status::Completed,
    }
}

struct HookRun<'h> {
    hooks: &'h mut dyn Hooks,
    sender: Sender,
    /// The data before the step, once the step has replaced it (`data_to_change`).
    previous_data: Option<Arc<Context>>,
}

impl HookRun<'_> {
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        kind: HookKind,
        method: &Arc<str>,
        machine: &MachineDef,
        state: StateIdx,
        instance: &mut Instance,
        event: EventRef<'_>,
        effects: &mut Vec<Effect>,
    ) {
        if self.hooks.is_inert() {
            return;
        }
        // The data before the hook (a reference, cheap): put back if the hook fails, so a
        // failed hook's data changes never stay, whatever `Hooks` implementation ran it.
        let saved = instance.context.clone();
        let call = HookCall {
            kind,
            method,
            instance_id: instance.id,
            machine: &machine.name,
            state: &machine.state(state).name,
            event,
            context: data_to_change(instance, &mut self.previous_data),
            sender: &mut self.sender,
        };
        // A failed hook's commands are dropped with its data changes: nothing half-done leaves.
        let error = match self.hooks.call(call) {
            Err(error) => Some(error),
            Ok(()) if self.sender.overflowed() => Some(format!(
                "more than {} commands issued by one hook call",
                crate::effect::MAX_COMMANDS_PER_HOOK
            )),
            Ok(()) => {
                self.sender.drain_into(effects);
                None
            }
        };
        if error.is_some() {
            self.sender.discard();
            // Back to the data of before this step: the step has not changed it after all.
            if self.previous_data.as_ref().is_some_and(|before| Arc::ptr_eq(before, &saved)) {
                self.previous_data = None;
            }
            instance.context = saved;
        }
        if let Some(error) = error {
            effects.push(Effect::HookFailed { kind, method: method.clone(), error });
        }
    }
}

fn apply(
    definition: &Definition,
    instance: &mut Instance,
    index: TransitionIdx,
    event: EventRef<'_>,
    now: Millis,
    hooks: &mut dyn Hooks,
) -> Transitioned {
    let machine = definition.machine(instance.machine);
    let transition = machine.transition(index);
    let (from, to) = (instance.state, transition.to);
    let mut effects = Vec::new();
    let mut hook_run = HookRun {
        hooks,
        sender: Sender::new(IdSeed::new(instance.id, instance.seq + 1, now)),
        previous_data: None,
    };

    if let Some(method) = &machine.state(from).on_exit {
        hook_run.run(HookKind::Exit, method, machine, from, instance, event, &mut effects);
    }
    if let Some(method) = &transition.triggered {
        hook_run.run(HookKind::Triggered, method, machine, from, instance, event, &mut effects);
    }
    if transition.merges_payload() && !event.payload.is_empty() {
        merge(data_to_change(instance, &mut hook_run.previous_data), event.payload);
    }
    instance.state = to;
    instance.updated_at = now;
    instance.seq += 1;

    for cascade in &machine.state(to).cascades {
        let payload = expand_payload(cascade.payload.as_ref(), &instance.context);
        let filters = resolve_filters(&cascade.rules, &payload, Some(&instance.context));
        effects.push(Effect::Cascade {
            component: cascade.component.clone(),
            machine: cascade.machine.clone(),
            state: cascade.state.clone(),
            event: cascade.event.clone(),
            payload,
            filters,
        });
    }
    if let Some(method) = &machine.state(to).on_entry {
        hook_run.run(HookKind::Entry, method, machine, to, instance, event, &mut effects);
    }
    if let Some(parent) = &instance.parent {
        let notify = transition.notify_parent.clone().or_else(|| {
            machine.parent_link_event.as_ref().map(|event| NotifyParentDef {
                event: event.clone(),
                include_state: true,
                include_context: false,
            })
        });
        if let Some(notify) = notify {
            effects.push(Effect::NotifyParent {
                parent: parent.instance_id,
                event: notify.event.clone(),
                payload: parent_payload(machine, instance, from, &notify),
            });
        }
    }
    if transition.child_machine.is_some() || transition.cross.is_some() {
        let mut source = Context::clone(&instance.context);
        merge(&mut source, event.payload);
        let outgoing = map_context(transition.mapping.as_deref(), source.clone());
        if let Some(child) = transition.child_machine {
            effects.push(Effect::CreateChild { machine: child, context: outgoing.clone() });
        }
        if let Some(target) = &transition.cross {
            let filters = match &target.event {
                Some(_) => resolve_filters(&target.correlation, &outgoing, Some(&source)),
                None => Some(Vec::new()),
            };
            effects.push(Effect::CrossComponent {
                target: target.clone(),
                context: outgoing,
                filters,
            });
        }
    }
    if machine.state(to).kind.is_terminal() {
        instance.status = terminal_status(machine, to);
        instance.timers.clear();
    } else if from == to {
        rearm_self_loop(machine, instance, now);
    } else {
        instance.timers.clear();
        arm_all(machine, instance, now);
    }
    Transitioned { transition: index, from, to, effects, previous_data: hook_run.previous_data }
}

/// The instance data, to change. At the step's first change the instance gets a copy of its
/// own and the data before goes to `previous_data`, untouched: whoever shares it (other
/// instances holding the same empty data, a caller that must put it back) sees no change.
fn data_to_change<'i>(
    instance: &'i mut Instance,
    previous_data: &mut Option<Arc<Context>>,
) -> &'i mut Context {
    if previous_data.is_none() {
        let copy = Arc::new(Context::clone(&instance.context));
        *previous_data = Some(std::mem::replace(&mut instance.context, copy));
    }
    Arc::make_mut(&mut instance.context)
}

fn parent_payload(
    machine: &MachineDef,
    instance: &Instance,
    from: StateIdx,
    notify: &NotifyParentDef,
) -> Context {
    let mut payload = Context::new();
    payload.insert("childInstanceId".into(), Value::String(instance.id.to_string()));
    payload.insert("childMachine".into(), Value::String(machine.name.to_string()));
    payload.insert("previousState".into(), Value::String(machine.state(from).name.to_string()));
    if notify.include_state {
        payload.insert(
            "newState".into(),
            Value::String(machine.state(instance.state).name.to_string()),
        );
    }
    if notify.include_context {
        payload.insert("childContext".into(), Value::Object(Context::clone(&instance.context)));
    }
    payload
}

fn arm_all(machine: &MachineDef, instance: &mut Instance, now: Millis) {
    for &index in &machine.state(instance.state).timed {
        instance.timers.push(PendingTimer {
            transition: index,
            deadline: deadline(now, machine.transition(index)),
        });
    }
}

/// On a self-loop: timeouts with `resetOnTransition: false` keep running; the others (and auto
/// transitions) restart.
fn rearm_self_loop(machine: &MachineDef, instance: &mut Instance, now: Millis) {
    instance.timers.retain(|timer| {
        let transition = machine.transition(timer.transition);
        transition.kind == TransitionType::Timeout
            && !transition.resets_on_self_loop
            && transition.from == instance.state
    });
    for &index in &machine.state(instance.state).timed {
        if instance.timers.iter().any(|timer| timer.transition == index) {
            continue;
        }
        instance.timers.push(PendingTimer {
            transition: index,
            deadline: deadline(now, machine.transition(index)),
        });
    }
}

fn deadline(now: Millis, transition: &TransitionDef) -> Millis {
    now.saturating_add(i64::try_from(transition.delay_ms).unwrap_or(i64::MAX))
}

/// The transitions leaving the instance's current state (for APIs: "what can I send now").
pub fn available_transitions<'d>(
    definition: &'d Definition,
    instance: &Instance,
) -> Vec<(TransitionIdx, &'d TransitionDef)> {
    if !instance.is_active() {
        return Vec::new();
    }
    let machine = definition.machine(instance.machine);
    machine
        .transitions
        .iter()
        .enumerate()
        .filter(|(_, transition)| transition.from == instance.state)
        .map(|(index, transition)| (index as TransitionIdx, transition))
        .collect()
}
