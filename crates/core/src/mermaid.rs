//! Mermaid `stateDiagram-v2` text for one machine: `[*] -->` the initial state, final and error
//! states `--> [*]`, one edge per transition labelled with its event and a marker for timed,
//! inter-machine and cross-component transitions and guards, and the current state (when
//! given) highlighted.
//!
//! State names that are not plain identifiers (spaces, dashes, Mermaid keywords) get a generated
//! id and are declared with `state "name" as id`, so any name renders. Label text is escaped so
//! that it cannot break the diagram's syntax.

use crate::model::{StateMachine, StateType, Transition, TransitionType};
use std::collections::HashMap;
use std::fmt::Write;

/// Words Mermaid's state diagram grammar reserves; states with these names get a generated id.
const RESERVED: &[&str] = &[
    "end",
    "state",
    "note",
    "class",
    "classDef",
    "direction",
    "style",
    "as",
    "click",
    "accTitle",
    "accDescr",
];

/// Longest guard text shown on an edge before it is shortened.
const MAX_GUARD_CHARS: usize = 40;

/// The diagram of `machine`, with `current_state` highlighted when it names one of its states.
pub fn state_diagram(machine: &StateMachine, current_state: Option<&str>) -> String {
    let ids = StateIds::new(machine);
    let mut out = String::from("stateDiagram-v2\n");
    for (name, id) in &ids.aliased {
        let _ = writeln!(out, "    state \"{}\" as {id}", escape(name));
    }
    let connected = |name: &str| {
        machine.initial_state == name
            || machine
                .transitions
                .iter()
                .any(|transition| transition.from == name || transition.to == name)
    };
    for state in machine
        .states
        .iter()
        .filter(|state| !connected(&state.name) && !state.state_type.is_terminal())
    {
        let _ = writeln!(out, "    {}", ids.id(&state.name));
    }
    let _ = writeln!(out, "    [*] --> {}", ids.id(&machine.initial_state));
    for transition in &machine.transitions {
        let _ = writeln!(
            out,
            "    {} --> {} : {}",
            ids.id(&transition.from),
            ids.id(&transition.to),
            escape(&edge_label(transition))
        );
    }
    for state in machine.states.iter().filter(|state| state.state_type.is_terminal()) {
        let _ = writeln!(out, "    {} --> [*]", ids.id(&state.name));
    }
    let failures: Vec<&str> = machine
        .states
        .iter()
        .filter(|state| state.state_type == StateType::Error)
        .map(|state| state.name.as_str())
        .collect();
    if !failures.is_empty() {
        out.push_str("    classDef failure fill:#fde2e1,stroke:#b42318\n");
        for name in failures {
            let _ = writeln!(out, "    class {} failure", ids.id(name));
        }
    }
    if let Some(current) =
        current_state.filter(|current| machine.states.iter().any(|state| state.name == *current))
    {
        out.push_str(
            "    classDef current fill:#fef0c7,stroke:#b54708,stroke-width:3px,font-weight:bold\n",
        );
        let _ = writeln!(out, "    class {} current", ids.id(current));
    }
    out
}

/// The edge label: the event, then what kind of transition it is and its guard.
fn edge_label(transition: &Transition) -> String {
    let mut label = transition.event.clone();
    let marker = match transition.transition_type {
        TransitionType::Timeout => Some(match transition.timeout_ms {
            Some(delay) => format!("timeout {}", duration(delay)),
            None => "timeout".to_owned(),
        }),
        TransitionType::Auto => Some(match transition.timeout_ms.filter(|delay| *delay > 0) {
            Some(delay) => format!("auto after {}", duration(delay)),
            None => "auto".to_owned(),
        }),
        TransitionType::InterMachine => {
            Some(format!("creates {}", transition.target_machine.as_deref().unwrap_or("?")))
        }
        TransitionType::CrossComponent => {
            let component = transition.target_component.as_deref().unwrap_or("?");
            let machine = transition.target_machine.as_deref().unwrap_or(component);
            Some(match transition.target_event.as_deref() {
                Some(event) => format!("sends {event} to {component}/{machine}"),
                None => format!("creates {component}/{machine}"),
            })
        }
        TransitionType::Regular | TransitionType::Triggerable | TransitionType::Internal => None,
    };
    if let Some(marker) = marker {
        let _ = write!(label, " [{marker}]");
    }
    if let Some(guard) = &transition.guard {
        let text = guard.expression().split_whitespace().collect::<Vec<_>>().join(" ");
        let shown: String = if text.chars().count() > MAX_GUARD_CHARS {
            text.chars().take(MAX_GUARD_CHARS - 1).chain(std::iter::once('…')).collect()
        } else {
            text
        };
        let _ = write!(label, " [if {shown}]");
    } else if transition.guards.as_ref().is_some_and(|guards| !guards.is_empty()) {
        label.push_str(" [guarded]");
    }
    label
}

/// `30s`, `7d`, `1500ms`...
fn duration(milliseconds: u64) -> String {
    const UNITS: &[(u64, &str)] =
        &[(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")];
    UNITS
        .iter()
        .find(|(size, _)| milliseconds >= *size && milliseconds.is_multiple_of(*size))
        .map(|(size, unit)| format!("{}{unit}", milliseconds / size))
        .unwrap_or_else(|| format!("{milliseconds}ms"))
}

/// Replaces the characters that end or confuse a Mermaid label or state name by entity codes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '#' => escaped.push_str("#35;"),
            ';' => escaped.push_str("#59;"),
            '"' => escaped.push_str("#quot;"),
            '<' => escaped.push_str("#lt;"),
            '>' => escaped.push_str("#gt;"),
            '\n' | '\r' | '\t' => escaped.push(' '),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Mermaid ids of the states: the name itself when it is a safe identifier, `s<n>` otherwise.
struct StateIds {
    ids: HashMap<String, String>,
    /// (name, id) of the states that need a `state "name" as id` declaration, in first-use order.
    aliased: Vec<(String, String)>,
}

impl StateIds {
    fn new(machine: &StateMachine) -> StateIds {
        let mut ids = StateIds { ids: HashMap::new(), aliased: Vec::new() };
        let names = machine
            .states
            .iter()
            .map(|state| state.name.as_str())
            .chain(std::iter::once(machine.initial_state.as_str()))
            .chain(
                machine
                    .transitions
                    .iter()
                    .flat_map(|transition| [transition.from.as_str(), transition.to.as_str()]),
            );
        for name in names {
            ids.assign(name);
        }
        ids
    }

    fn assign(&mut self, name: &str) {
        if self.ids.contains_key(name) {
            return;
        }
        let id = if is_safe_id(name) && !self.ids.values().any(|taken| taken == name) {
            name.to_owned()
        } else {
            let mut counter = self.aliased.len();
            let mut candidate = format!("s{counter}");
            while self.ids.values().any(|taken| *taken == candidate)
                || self.ids.contains_key(&candidate)
            {
                counter += 1;
                candidate = format!("s{counter}");
            }
            self.aliased.push((name.to_owned(), candidate.clone()));
            candidate
        };
        self.ids.insert(name.to_owned(), id);
    }

    fn id<'a>(&'a self, name: &'a str) -> &'a str {
        self.ids.get(name).map(String::as_str).unwrap_or(name)
    }
}

fn is_safe_id(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
        && !RESERVED.iter().any(|reserved| reserved.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_component;

    fn machine(yaml: &str) -> StateMachine {
        match parse_component(&format!("name: C\nstateMachines:\n{yaml}"), "t.yaml") {
            Ok(mut loaded) => loaded.component.state_machines.remove(0),
            Err(diagnostics) => panic!("{diagnostics:?}"),
        }
    }

    #[test]
    fn draws_initial_final_markers_and_highlight() {
        let order = machine(
            r#"
  - name: Order
    initialState: Created
    states: [{name: Created}, {name: Pending}, {name: Done, type: final}, {name: Failed, type: error}]
    transitions:
      - {from: Created, to: Pending, event: SUBMIT, type: cross_component, targetComponent: Pay, targetMachine: Payment}
      - {from: Pending, to: Done, event: PAID, guard: "context.amount > 5"}
      - {from: Pending, to: Failed, event: TIMEOUT, type: timeout, timeoutMs: 30000}
      - {from: Pending, to: Pending, event: AUDIT, type: inter_machine, targetMachine: Audit}
      - {from: Created, to: Pending, event: GO, type: auto}
"#,
        );
        insta::assert_snapshot!(state_diagram(&order, Some("Pending")), @r##"
        stateDiagram-v2
            [*] --> Created
            Created --> Pending : SUBMIT [creates Pay/Payment]
            Pending --> Done : PAID [if context.amount #gt; 5]
            Pending --> Failed : TIMEOUT [timeout 30s]
            Pending --> Pending : AUDIT [creates Audit]
            Created --> Pending : GO [auto]
            Done --> [*]
            Failed --> [*]
            classDef failure fill:#fde2e1,stroke:#b42318
            class Failed failure
            classDef current fill:#fef0c7,stroke:#b54708,stroke-width:3px,font-weight:bold
            class Pending current
        "##);
    }

    #[test]
    fn aliases_unsafe_names_and_declares_isolated_states() {
        let odd = machine(
            r#"
  - name: Odd
    initialState: "In Review"
    states: [{name: "In Review"}, {name: end}, {name: Lonely}]
    transitions:
      - {from: "In Review", to: end, event: "A;B"}
"#,
        );
        insta::assert_snapshot!(state_diagram(&odd, Some("Unknown")), @r#"
        stateDiagram-v2
            state "In Review" as s0
            state "end" as s1
            Lonely
            [*] --> s0
            s0 --> s1 : A#59;B
        "#);
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(duration(604_800_000), "7d");
        assert_eq!(duration(7_200_000), "2h");
        assert_eq!(duration(120_000), "2min");
        assert_eq!(duration(1_500), "1500ms");
        assert_eq!(duration(0), "0ms");
    }
}
