//! Validation of a loaded component: every check the runtime would otherwise trip over later,
//! reported at once with its position, a stable code and a fix hint.
//!
//! The checks are split by subject: `machines` (names, states, transition endpoints,
//! ambiguous transitions), `transitions` (what each transition type requires, guards),
//! `links` (entry point, cascading rules, parent links) and `keys` (keys the format does
//! not know). Under `strict`, warnings become errors; notes never fail validation.

mod keys;
mod links;
mod machines;
mod names;
mod transitions;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::{LoadedComponent, SpanIndex};
use crate::model::{Component, StateMachine, Transition};
use std::collections::HashMap;

/// How strict validation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValidateOptions {
    /// Turn every warning (unknown keys, ignored keys, dead transitions...) into an error.
    pub strict: bool,
}

/// Checks `loaded` and returns its diagnostics, sorted by position.
pub fn validate(loaded: &LoadedComponent, options: &ValidateOptions) -> Vec<Diagnostic> {
    let component = Model::new(&loaded.component);
    let mut report = Report { file: &loaded.file, spans: &loaded.spans, diagnostics: Vec::new() };
    machines::check(&component, &mut report);
    transitions::check(&component, &mut report);
    links::check(&component, &mut report);
    keys::check(&component, &mut report);
    let mut diagnostics = report.diagnostics;
    if options.strict {
        for diagnostic in &mut diagnostics {
            if diagnostic.severity == Severity::Warning {
                diagnostic.severity = Severity::Error;
            }
        }
    }
    diagnostics.sort_by(|left, right| {
        (left.line, left.column, left.severity, left.code, &left.message).cmp(&(
            right.line,
            right.column,
            right.severity,
            right.code,
            &right.message,
        ))
    });
    diagnostics
}

/// The component with its machines and states indexed by name (first declaration wins).
pub(crate) struct Model<'a> {
    pub(crate) component: &'a Component,
    machines: HashMap<&'a str, usize>,
}

impl<'a> Model<'a> {
    fn new(component: &'a Component) -> Model<'a> {
        let mut machines = HashMap::new();
        for (index, machine) in component.state_machines.iter().enumerate() {
            machines.entry(machine.name.as_str()).or_insert(index);
        }
        Model { component, machines }
    }

    /// The machine called `name`, with its index.
    pub(crate) fn machine(&self, name: &str) -> Option<(usize, &'a StateMachine)> {
        let index = *self.machines.get(name)?;
        self.component.state_machines.get(index).map(|machine| (index, machine))
    }

    /// The machine names, in declaration order.
    pub(crate) fn machine_names(&self) -> Vec<&'a str> {
        self.component.state_machines.iter().map(|machine| machine.name.as_str()).collect()
    }
}

/// The state names of `machine`, in declaration order.
pub(crate) fn state_names(machine: &StateMachine) -> Vec<&str> {
    machine.states.iter().map(|state| state.name.as_str()).collect()
}

/// Whether `machine` declares a state called `name`.
pub(crate) fn has_state(machine: &StateMachine, name: &str) -> bool {
    machine.states.iter().any(|state| state.name == name)
}

/// `Created --SUBMIT--> Validated`, for messages.
pub(crate) fn describe_transition(transition: &Transition) -> String {
    format!("{} --{}--> {}", transition.from, transition.event, transition.to)
}

/// Paths of the nodes validation talks about.
pub(crate) mod paths {
    /// `stateMachines[m]`.
    pub(crate) fn machine(machine: usize) -> String {
        format!("stateMachines[{machine}]")
    }

    /// `stateMachines[m].states[s]`.
    pub(crate) fn state(machine: usize, state: usize) -> String {
        format!("stateMachines[{machine}].states[{state}]")
    }

    /// `stateMachines[m].transitions[t]`.
    pub(crate) fn transition(machine: usize, transition: usize) -> String {
        format!("stateMachines[{machine}].transitions[{transition}]")
    }
}

/// Collects diagnostics, placing each on the node its path names.
pub(crate) struct Report<'a> {
    file: &'a str,
    spans: &'a SpanIndex,
    diagnostics: Vec<Diagnostic>,
}

impl Report<'_> {
    /// Reports on the value at `path` (or its nearest ancestor when the key is absent).
    pub(crate) fn on_value(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &str,
        message: String,
        hint: String,
    ) {
        let position = self.spans.locate(path);
        self.diagnostics.push(
            Diagnostic::new(severity, code, message).at(self.file, position, path).with_hint(hint),
        );
    }

    /// Reports on the key of `path` (for keys that should not be there).
    pub(crate) fn on_key(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &str,
        message: String,
        hint: String,
    ) {
        let position = self.spans.locate_key(path);
        self.diagnostics.push(
            Diagnostic::new(severity, code, message).at(self.file, position, path).with_hint(hint),
        );
    }

    /// Where the node at `path` starts, for hints that point at another node.
    pub(crate) fn line_of(&self, path: &str) -> u32 {
        self.spans.locate(path).line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_component;

    fn codes_of(text: &str, strict: bool) -> Vec<(Severity, &'static str)> {
        let loaded = match parse_component(text, "t.yaml") {
            Ok(loaded) => loaded,
            Err(diagnostics) => panic!("should load: {diagnostics:?}"),
        };
        validate(&loaded, &ValidateOptions { strict })
            .into_iter()
            .map(|diagnostic| (diagnostic.severity, diagnostic.code))
            .collect()
    }

    const WITH_UNKNOWN_KEY: &str = "name: C\nstateMachines:\n  - name: M\n    initialState: A\n    colour: blue\n    states: [{name: A}]\n";

    #[test]
    fn a_clean_component_has_no_diagnostics() {
        let text = "name: C\nstateMachines:\n  - name: M\n    initialState: A\n    states: [{name: A}, {name: B, type: final}]\n    transitions: [{from: A, to: B, event: GO}]\n";
        assert_eq!(codes_of(text, false), vec![]);
    }

    #[test]
    fn strict_turns_warnings_into_errors() {
        assert_eq!(codes_of(WITH_UNKNOWN_KEY, false), vec![(Severity::Warning, "XC0601")]);
        assert_eq!(codes_of(WITH_UNKNOWN_KEY, true), vec![(Severity::Error, "XC0601")]);
    }

    #[test]
    fn strict_keeps_notes() {
        let text = "name: C\nentryMachine: M\nstateMachines:\n  - name: M\n    initialState: A\n    states: [{name: A}]\n";
        assert_eq!(codes_of(text, true), vec![(Severity::Note, "XC0402")]);
    }
}
