//! Keys the format does not know (every `extra` map of the model): a warning each (an error
//! under `strict`), with the closest known key as a suggestion. The known keys are read from the
//! JSON Schema of the model types, so they cannot drift from the model.

use super::names::closest;
use super::{Model, Report, paths};
use crate::diagnostic::{Severity, codes};
use crate::load::child_key;
use crate::model::{
    CascadingRule, Component, ContextField, ExtraKeys, MatchingRule, NotifyParent, ParentLink,
    State, StateMachine, Transition,
};
use schemars::JsonSchema;
use std::sync::LazyLock;

/// The mappings of the format that can hold unknown keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Component,
    Machine,
    ParentLink,
    ContextField,
    State,
    CascadingRule,
    Transition,
    MatchingRule,
    NotifyParent,
}

fn property_names<T: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    schema
        .as_object()
        .and_then(|object| object.get("properties"))
        .and_then(|properties| properties.as_object())
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

macro_rules! known_keys {
    ($($owner:ident => $model:ty),* $(,)?) => {
        fn known_keys(owner: Owner) -> &'static [String] {
            $(
                #[allow(non_upper_case_globals)]
                static $owner: LazyLock<Vec<String>> = LazyLock::new(property_names::<$model>);
            )*
            match owner {
                $(Owner::$owner => &$owner,)*
            }
        }
    };
}

known_keys! {
    Component => Component,
    Machine => StateMachine,
    ParentLink => ParentLink,
    ContextField => ContextField,
    State => State,
    CascadingRule => CascadingRule,
    Transition => Transition,
    MatchingRule => MatchingRule,
    NotifyParent => NotifyParent,
}

fn owner_name(owner: Owner) -> &'static str {
    match owner {
        Owner::Component => "the component",
        Owner::Machine => "a machine",
        Owner::ParentLink => "parentLink",
        Owner::ContextField => "a contextSchema field",
        Owner::State => "a state",
        Owner::CascadingRule => "a cascading rule",
        Owner::Transition => "a transition",
        Owner::MatchingRule => "a matching rule",
        Owner::NotifyParent => "notifyParent",
    }
}

/// Keys users are known to write in the wrong place, with where they belong.
fn known_misplacement(owner: Owner, key: &str) -> Option<&'static str> {
    match (owner, key) {
        (Owner::Transition, "createInstance") => Some(
            "to create an instance on a transition, use `type: inter_machine` with `targetMachine` (and `contextMapping`)",
        ),
        (Owner::Machine, "matchingRules") => {
            Some("matchingRules belong on transitions and cascading rules, not on a machine")
        }
        (Owner::Machine, "transition") | (Owner::Machine, "state") => {
            Some("the lists are called `states:` and `transitions:`")
        }
        _ => None,
    }
}

pub(super) fn check(model: &Model<'_>, report: &mut Report<'_>) {
    let component = model.component;
    report_extra(report, Owner::Component, "", &component.extra);
    for (machine_index, machine) in component.state_machines.iter().enumerate() {
        let machine_path = paths::machine(machine_index);
        report_extra(report, Owner::Machine, &machine_path, &machine.extra);
        if let Some(link) = &machine.parent_link {
            report_extra(
                report,
                Owner::ParentLink,
                &format!("{machine_path}.parentLink"),
                &link.extra,
            );
        }
        for (field_name, field) in machine.context_schema.iter().flatten() {
            let field_path = child_key(&format!("{machine_path}.contextSchema"), field_name);
            report_extra(report, Owner::ContextField, &field_path, &field.extra);
        }
        for (state_index, state) in machine.states.iter().enumerate() {
            let state_path = paths::state(machine_index, state_index);
            report_extra(report, Owner::State, &state_path, &state.extra);
            for (rule_index, rule) in state.cascading_rules.iter().enumerate() {
                let rule_path = format!("{state_path}.cascadingRules[{rule_index}]");
                report_extra(report, Owner::CascadingRule, &rule_path, &rule.extra);
                report_matching_rules(report, &rule_path, rule.matching_rules.as_deref());
            }
        }
        for (transition_index, transition) in machine.transitions.iter().enumerate() {
            let transition_path = paths::transition(machine_index, transition_index);
            report_extra(report, Owner::Transition, &transition_path, &transition.extra);
            report_matching_rules(report, &transition_path, transition.matching_rules.as_deref());
            if let Some(notify) = &transition.notify_parent {
                report_extra(
                    report,
                    Owner::NotifyParent,
                    &format!("{transition_path}.notifyParent"),
                    &notify.extra,
                );
            }
        }
    }
}

fn report_matching_rules(
    report: &mut Report<'_>,
    owner_path: &str,
    rules: Option<&[MatchingRule]>,
) {
    for (rule_index, rule) in rules.unwrap_or_default().iter().enumerate() {
        report_extra(
            report,
            Owner::MatchingRule,
            &format!("{owner_path}.matchingRules[{rule_index}]"),
            &rule.extra,
        );
    }
}

fn report_extra(report: &mut Report<'_>, owner: Owner, owner_path: &str, extra: &ExtraKeys) {
    let known = known_keys(owner);
    let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
    for key in extra.keys() {
        let hint = match (known_misplacement(owner, key), closest(key, &known_refs)) {
            (Some(advice), _) => advice.to_owned(),
            (None, Some(suggestion)) => format!("did you mean `{suggestion}`?"),
            (None, None) => format!(
                "remove it, or keep free-form information under `metadata:` (known keys: {})",
                known_refs.join(", ")
            ),
        };
        report.on_key(
            Severity::Warning,
            codes::UNKNOWN_KEY,
            &child_key(owner_path, key),
            format!("unknown key `{key}` in {} is ignored", owner_name(owner)),
            hint,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_come_from_the_model() {
        let transition_keys = known_keys(Owner::Transition);
        for key in ["from", "to", "event", "type", "timeoutMs", "matchingRules", "guard", "guards"]
        {
            assert!(
                transition_keys.iter().any(|known| known == key),
                "{key} missing from {transition_keys:?}"
            );
        }
        assert!(!transition_keys.iter().any(|known| known == "extra"));
        assert!(known_keys(Owner::ContextField).iter().any(|known| known == "type"));
    }
}
