//! Structure checks: names, machines, states, the initial state, the states transitions leave
//! from and go to, transitions out of terminal states, and transitions nothing tells apart.

use super::names::unknown_name_hint;
use super::{Model, Report, describe_transition, has_state, paths, state_names};
use crate::diagnostic::{Severity, codes};
use crate::model::{StateMachine, Transition};
use std::collections::HashMap;

pub(super) fn check(model: &Model<'_>, report: &mut Report<'_>) {
    let component = model.component;
    if component.name.trim().is_empty() {
        report.on_value(
            Severity::Error,
            codes::EMPTY_NAME,
            "name",
            "the component name is empty".into(),
            "name the component (it is the registry key and the bus channel suffix)".into(),
        );
    }
    if component.state_machines.is_empty() {
        report.on_value(
            Severity::Error,
            codes::NO_MACHINES,
            "stateMachines",
            format!("component {} declares no state machine", component.name),
            "add at least one machine under `stateMachines:`".into(),
        );
    }
    let mut first_by_name: HashMap<&str, usize> = HashMap::new();
    for (index, machine) in component.state_machines.iter().enumerate() {
        let path = paths::machine(index);
        if machine.name.trim().is_empty() {
            report.on_value(
                Severity::Error,
                codes::EMPTY_NAME,
                &format!("{path}.name"),
                format!("{path} has an empty name"),
                "name the machine".into(),
            );
        } else if let Some(&first) = first_by_name.get(machine.name.as_str()) {
            let first_line = report.line_of(&paths::machine(first));
            report.on_value(
                Severity::Error,
                codes::DUPLICATE_MACHINE,
                &format!("{path}.name"),
                format!("machine {} is declared twice", machine.name),
                format!(
                    "rename one of them (the first is stateMachines[{first}], line {first_line})"
                ),
            );
        } else {
            first_by_name.insert(machine.name.as_str(), index);
        }
        check_machine(model, index, machine, report);
    }
}

fn check_machine(
    model: &Model<'_>,
    machine_index: usize,
    machine: &StateMachine,
    report: &mut Report<'_>,
) {
    let path = paths::machine(machine_index);
    let name = &machine.name;
    if machine.states.is_empty() {
        report.on_value(
            Severity::Error,
            codes::NO_STATES,
            &format!("{path}.states"),
            format!("machine {name} declares no state"),
            format!(
                "declare its states under `states:`, starting with \"{}\"",
                machine.initial_state
            ),
        );
        // Every state reference would be unknown: one error says it all.
        return;
    }
    let mut first_state: HashMap<&str, usize> = HashMap::new();
    for (state_index, state) in machine.states.iter().enumerate() {
        let state_path = paths::state(machine_index, state_index);
        if state.name.trim().is_empty() {
            report.on_value(
                Severity::Error,
                codes::EMPTY_NAME,
                &format!("{state_path}.name"),
                format!("{state_path} of machine {name} has an empty name"),
                "name the state".into(),
            );
        } else if let Some(&first) = first_state.get(state.name.as_str()) {
            let first_line = report.line_of(&paths::state(machine_index, first));
            report.on_value(
                Severity::Error,
                codes::DUPLICATE_STATE,
                &format!("{state_path}.name"),
                format!("state {} is declared twice in machine {name}", state.name),
                format!("rename one of them or merge their settings (the first is states[{first}], line {first_line})"),
            );
        } else {
            first_state.insert(state.name.as_str(), state_index);
        }
    }
    let states = state_names(machine);
    if !has_state(machine, &machine.initial_state) {
        report.on_value(
            Severity::Error,
            codes::UNKNOWN_INITIAL_STATE,
            &format!("{path}.initialState"),
            format!(
                "initialState of machine {name} is \"{}\", which is not one of its states",
                machine.initial_state
            ),
            unknown_name_hint(&machine.initial_state, &states, "declare the state or fix the name"),
        );
    }
    for (transition_index, transition) in machine.transitions.iter().enumerate() {
        check_endpoints(model, machine_index, machine, transition_index, transition, report);
    }
    check_ambiguous_transitions(machine_index, machine, report);
}

fn check_endpoints(
    model: &Model<'_>,
    machine_index: usize,
    machine: &StateMachine,
    transition_index: usize,
    transition: &Transition,
    report: &mut Report<'_>,
) {
    let path = paths::transition(machine_index, transition_index);
    let subject = format!(
        "transitions[{transition_index}] of machine {} ({})",
        machine.name,
        describe_transition(transition)
    );
    let states = state_names(machine);
    if transition.event.trim().is_empty() {
        report.on_value(
            Severity::Error,
            codes::EMPTY_NAME,
            &format!("{path}.event"),
            format!("{subject} has an empty event"),
            "name the event that fires the transition".into(),
        );
    }
    let source = machine.states.iter().find(|state| state.name == transition.from);
    let leaves_terminal = source.is_some_and(|state| state.state_type.is_terminal());
    match source {
        None => report.on_value(
            Severity::Error,
            codes::UNKNOWN_SOURCE_STATE,
            &format!("{path}.from"),
            format!("{subject} leaves from unknown state \"{}\"", transition.from),
            unknown_name_hint(&transition.from, &states, "declare the state or fix the name"),
        ),
        Some(state) if leaves_terminal => report.on_value(
            Severity::Warning,
            codes::TRANSITION_FROM_TERMINAL,
            &format!("{path}.from"),
            format!(
                "{subject} never fires: {} is {} state, and an instance that enters it ends",
                state.name,
                state_kind(state)
            ),
            format!(
                "remove the transition, or make {} a regular state if instances continue from it",
                state.name
            ),
        ),
        Some(_) => {}
    }
    if !has_state(machine, &transition.to) {
        let elsewhere = model
            .component
            .state_machines
            .iter()
            .find(|other| other.name != machine.name && has_state(other, &transition.to))
            .map(|other| other.name.as_str());
        let mut hint =
            unknown_name_hint(&transition.to, &states, "declare the state or fix the name");
        if let Some(other) = elsewhere {
            hint = format!(
                "\"{}\" is a state of machine {other}: a transition stays in its machine (use inter_machine/targetMachine to start another); {hint}",
                transition.to
            );
        }
        let (severity, message) = if leaves_terminal {
            (
                Severity::Warning,
                format!(
                    "{subject} goes to unknown state \"{}\" (a warning only because the transition never fires)",
                    transition.to
                ),
            )
        } else {
            (Severity::Error, format!("{subject} goes to unknown state \"{}\"", transition.to))
        };
        report.on_value(
            severity,
            codes::UNKNOWN_TARGET_STATE,
            &format!("{path}.to"),
            message,
            hint,
        );
    }
}

fn state_kind(state: &crate::model::State) -> &'static str {
    match state.state_type {
        crate::model::StateType::Error => "an error",
        _ => "a final",
    }
}

/// What tells two transitions with the same (from, event) apart: the guard (as written), the
/// legacy guards and the matching rules. Equal keys mean nothing does.
fn discriminator(transition: &Transition) -> (Option<String>, String, String) {
    let guard = transition.guard.as_ref().map(|guard| guard.expression().trim().to_owned());
    let legacy = transition
        .guards
        .as_ref()
        .filter(|guards| !guards.is_empty())
        .map(|guards| serde_json::to_string(guards).unwrap_or_default())
        .unwrap_or_default();
    let rules = transition
        .matching_rules
        .as_ref()
        .filter(|rules| !rules.is_empty())
        .map(|rules| serde_json::to_string(rules).unwrap_or_default())
        .unwrap_or_default();
    (guard, legacy, rules)
}

fn check_ambiguous_transitions(
    machine_index: usize,
    machine: &StateMachine,
    report: &mut Report<'_>,
) {
    let mut earlier: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (index, transition) in machine.transitions.iter().enumerate() {
        let same_trigger =
            earlier.entry((transition.from.as_str(), transition.event.as_str())).or_default();
        let shadowing = same_trigger.iter().copied().find(|&first| {
            machine
                .transitions
                .get(first)
                .is_some_and(|first| discriminator(first) == discriminator(transition))
        });
        if let Some(first) = shadowing {
            let path = paths::transition(machine_index, index);
            let first_line = report.line_of(&paths::transition(machine_index, first));
            let told_by = match discriminator(transition) {
                (None, legacy, rules) if legacy.is_empty() && rules.is_empty() => {
                    "neither has a guard or matchingRules"
                }
                _ => "their guards and matchingRules are the same",
            };
            report.on_value(
                Severity::Warning,
                codes::AMBIGUOUS_TRANSITIONS,
                &format!("{path}.event"),
                format!(
                    "transitions[{index}] of machine {} ({}) never fires: transitions[{first}] (line {first_line}) also leaves {} on {} and {told_by}, so the first declared wins",
                    machine.name,
                    describe_transition(transition),
                    transition.from,
                    transition.event
                ),
                "give both transitions guards that exclude each other (or different matchingRules), or remove one".into(),
            );
        }
        same_trigger.push(index);
    }
}
