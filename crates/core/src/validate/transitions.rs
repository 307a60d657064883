//! Transition-type checks (what `timeout`, `inter_machine` and `cross_component` require, keys a
//! type ignores, the ignored `targetState`) and guard compilation.

use super::names::unknown_name_hint;
use super::{Model, Report, describe_transition, paths};
use crate::diagnostic::{Severity, codes};
use crate::guard::{CompiledGuard, GuardError};
use crate::model::{Guard, StateMachine, Transition, TransitionType};

pub(super) fn check(model: &Model<'_>, report: &mut Report<'_>) {
    for (machine_index, machine) in model.component.state_machines.iter().enumerate() {
        for (transition_index, transition) in machine.transitions.iter().enumerate() {
            let place = Place {
                path: paths::transition(machine_index, transition_index),
                subject: format!(
                    "transitions[{transition_index}] of machine {} ({})",
                    machine.name,
                    describe_transition(transition)
                ),
            };
            check_type_requirements(model, transition, &place, report);
            check_ignored_keys(transition, &place, report);
            check_guard(transition, &place, report);
        }
    }
}

/// The transition being checked: its path and how messages name it.
struct Place {
    path: String,
    subject: String,
}

impl Place {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

fn type_name(kind: TransitionType) -> &'static str {
    match kind {
        TransitionType::Regular => "regular",
        TransitionType::Triggerable => "triggerable",
        TransitionType::Internal => "internal",
        TransitionType::Timeout => "timeout",
        TransitionType::Auto => "auto",
        TransitionType::InterMachine => "inter_machine",
        TransitionType::CrossComponent => "cross_component",
    }
}

fn check_type_requirements(
    model: &Model<'_>,
    transition: &Transition,
    place: &Place,
    report: &mut Report<'_>,
) {
    let subject = &place.subject;
    match transition.transition_type {
        TransitionType::Timeout if transition.timeout_ms.is_none() => report.on_value(
            Severity::Error,
            codes::TIMEOUT_WITHOUT_DELAY,
            &place.path,
            format!("{subject} is a timeout without timeoutMs, so it would never fire"),
            "add `timeoutMs: <milliseconds>`".into(),
        ),
        TransitionType::InterMachine => match transition.target_machine.as_deref() {
            None => report.on_value(
                Severity::Error,
                codes::INTER_MACHINE_WITHOUT_TARGET,
                &place.path,
                format!("{subject} is inter_machine without targetMachine"),
                format!("add `targetMachine: <machine>` (one of: {})", super::names::list(&model.machine_names())),
            ),
            Some(target) if model.machine(target).is_none() => report.on_value(
                Severity::Error,
                codes::INTER_MACHINE_UNKNOWN_TARGET,
                &place.key("targetMachine"),
                format!("{subject} creates an instance of unknown machine \"{target}\""),
                unknown_name_hint(target, &model.machine_names(), "inter_machine targets a machine of this component; use cross_component for another component"),
            ),
            Some(_) => {}
        },
        TransitionType::CrossComponent => check_cross_component(transition, place, report),
        _ => {}
    }
}

fn check_cross_component(transition: &Transition, place: &Place, report: &mut Report<'_>) {
    let subject = &place.subject;
    let Some(component) = transition.target_component.as_deref() else {
        report.on_value(
            Severity::Error,
            codes::CROSS_COMPONENT_WITHOUT_TARGET,
            &place.path,
            format!(
                "{subject} is cross_component without targetComponent, so it would reach nothing"
            ),
            "add `targetComponent: <component name>` and `targetMachine: <machine>`".into(),
        );
        return;
    };
    if transition.target_machine.is_none() {
        report.on_value(
            Severity::Warning,
            codes::CROSS_COMPONENT_WITHOUT_MACHINE,
            &place.key("targetComponent"),
            format!(
                "{subject} has no targetMachine: it defaults to the component name \"{component}\""
            ),
            "name the target machine with `targetMachine`".into(),
        );
    }
    if let Some(event) = transition.target_event.as_deref()
        && !transition.has_matching_rules()
    {
        report.on_value(
            Severity::Warning,
            codes::TARGET_EVENT_WITHOUT_RULES,
            &place.key("targetEvent"),
            format!("{subject} sends {event} to {component} without matchingRules: every instance of the target machine receives it"),
            "add matchingRules (eventProperty from this instance's data, instanceProperty from the target's)".into(),
        );
    }
}

/// Keys that only some transition types read, with the types that read them.
const TYPED_KEYS: &[(&str, &[TransitionType])] = &[
    ("timeoutMs", &[TransitionType::Timeout, TransitionType::Auto]),
    ("resetOnTransition", &[TransitionType::Timeout, TransitionType::Auto]),
    ("targetMachine", &[TransitionType::InterMachine, TransitionType::CrossComponent]),
    ("contextMapping", &[TransitionType::InterMachine, TransitionType::CrossComponent]),
    ("targetComponent", &[TransitionType::CrossComponent]),
    ("targetEvent", &[TransitionType::CrossComponent]),
];

fn is_set(transition: &Transition, key: &str) -> bool {
    match key {
        "timeoutMs" => transition.timeout_ms.is_some(),
        "resetOnTransition" => transition.reset_on_transition.is_some(),
        "targetMachine" => transition.target_machine.is_some(),
        "contextMapping" => transition.context_mapping.is_some(),
        "targetComponent" => transition.target_component.is_some(),
        "targetEvent" => transition.target_event.is_some(),
        _ => false,
    }
}

fn check_ignored_keys(transition: &Transition, place: &Place, report: &mut Report<'_>) {
    let kind = transition.transition_type;
    for (key, used_by) in TYPED_KEYS {
        if is_set(transition, key) && !used_by.contains(&kind) {
            let users: Vec<&str> = used_by.iter().map(|used| type_name(*used)).collect();
            report.on_key(
                Severity::Warning,
                codes::KEY_IGNORED_FOR_TYPE,
                &place.key(key),
                format!(
                    "{} is a {} transition: its `{key}` is ignored",
                    place.subject,
                    type_name(kind)
                ),
                format!(
                    "`{key}` is read by {} transitions: set `type:` accordingly, or remove the key",
                    users.join(" and ")
                ),
            );
        }
    }
    if let Some(state) = transition.target_state.as_deref() {
        report.on_key(
            Severity::Warning,
            codes::TRANSITION_TARGET_STATE,
            &place.key("targetState"),
            format!("{}: `targetState: {state}` is ignored (created instances start in their initialState)", place.subject),
            "remove it".into(),
        );
    }
}

fn check_guard(transition: &Transition, place: &Place, report: &mut Report<'_>) {
    let Err(error) = CompiledGuard::for_transition(transition) else { return };
    let path = match (&error, &transition.guard) {
        (GuardError::Legacy { index, .. }, _) => place.key(&format!("guards[{index}]")),
        (_, Some(Guard::Object { .. })) => place.key("guard.expression"),
        (_, Some(Guard::Expression(_))) => place.key("guard"),
        (_, None) => place.key("guards"),
    };
    report.on_value(
        Severity::Error,
        codes::GUARD_DOES_NOT_COMPILE,
        &path,
        format!("{}: {error}", place.subject),
        "a guard is a boolean expression over context, payload, event and state, e.g. \"context.amount > 5000\"".into(),
    );
}

/// Whether `machine` has a transition leaving `state` on `event`.
pub(super) fn accepts(machine: &StateMachine, state: &str, event: &str) -> bool {
    machine
        .transitions
        .iter()
        .any(|transition| transition.from == state && transition.event == event)
}
