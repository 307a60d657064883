//! Checks of what links machines together: the entry machine and its mode, cascading rules
//! aimed at this component, and parent links.

use super::names::unknown_name_hint;
use super::transitions::accepts;
use super::{Model, Report, has_state, paths, state_names};
use crate::diagnostic::{Severity, codes};
use crate::model::CascadingRule;

pub(super) fn check(model: &Model<'_>, report: &mut Report<'_>) {
    check_entry_point(model, report);
    for (machine_index, machine) in model.component.state_machines.iter().enumerate() {
        for (state_index, state) in machine.states.iter().enumerate() {
            for (rule_index, rule) in state.cascading_rules.iter().enumerate() {
                let path = format!(
                    "{}.cascadingRules[{rule_index}]",
                    paths::state(machine_index, state_index)
                );
                let subject = format!(
                    "cascadingRules[{rule_index}] of state {} in machine {}",
                    state.name, machine.name
                );
                check_cascading_rule(model, rule, &path, &subject, report);
            }
        }
        if let Some(link) = &machine.parent_link
            && link.enabled
            && link.on_state_change.as_deref().is_none_or(|event| event.trim().is_empty())
        {
            report.on_value(
                Severity::Error,
                codes::PARENT_LINK_WITHOUT_EVENT,
                &format!("{}.parentLink", paths::machine(machine_index)),
                format!("parentLink of machine {} is enabled without onStateChange, so the parent is never notified", machine.name),
                "add `onStateChange: <event the parent handles>`, or remove the parentLink".into(),
            );
        }
    }
}

fn check_entry_point(model: &Model<'_>, report: &mut Report<'_>) {
    let component = model.component;
    let Some(entry) = component.entry_machine.as_deref() else {
        for (key, is_set) in [
            ("entryMachineMode", component.entry_machine_mode.is_some()),
            ("autoCreateEntryPoint", component.auto_create_entry_point.is_some()),
        ] {
            if is_set {
                report.on_key(
                    Severity::Warning,
                    codes::ENTRY_SETTINGS_WITHOUT_ENTRY,
                    key,
                    format!("`{key}` is ignored: the component has no entryMachine"),
                    "add `entryMachine: <machine>`, or remove the setting".into(),
                );
            }
        }
        return;
    };
    if model.machine(entry).is_none() {
        report.on_value(
            Severity::Error,
            codes::UNKNOWN_ENTRY_MACHINE,
            "entryMachine",
            format!(
                "entryMachine is \"{entry}\", which is not a machine of component {}",
                component.name
            ),
            unknown_name_hint(
                entry,
                &model.machine_names(),
                "name one of the component's machines",
            ),
        );
        return;
    }
    if component.entry_machine_mode.is_none() {
        let creation = if component.auto_create_entry_point == Some(true) {
            "one is created at start (autoCreateEntryPoint: true)"
        } else {
            "none is auto-created"
        };
        report.on_value(
            Severity::Note,
            codes::ENTRY_MODE_UNSET,
            "entryMachine",
            format!(
                "entryMachine {entry} has no entryMachineMode: many instances are allowed and {creation} (as the original's distributed runtime)"
            ),
            "write `entryMachineMode: singleton` (one instance, created at start) or `multiple` to make it explicit".into(),
        );
    }
}

fn check_cascading_rule(
    model: &Model<'_>,
    rule: &CascadingRule,
    path: &str,
    subject: &str,
    report: &mut Report<'_>,
) {
    let aims_here =
        rule.target_component.as_deref().is_none_or(|target| target == model.component.name);
    if !aims_here {
        // Another component: its machines are not known here.
        return;
    }
    let Some((_, target)) = model.machine(&rule.target_machine) else {
        report.on_value(
            Severity::Error,
            codes::CASCADE_UNKNOWN_MACHINE,
            &format!("{path}.targetMachine"),
            format!("{subject} targets unknown machine \"{}\"", rule.target_machine),
            unknown_name_hint(
                &rule.target_machine,
                &model.machine_names(),
                "fix the name, or add targetComponent if the machine belongs to another component",
            ),
        );
        return;
    };
    if !has_state(target, &rule.target_state) {
        report.on_value(
            Severity::Error,
            codes::CASCADE_UNKNOWN_STATE,
            &format!("{path}.targetState"),
            format!(
                "{subject} targets state \"{}\", which machine {} does not declare",
                rule.target_state, target.name
            ),
            unknown_name_hint(
                &rule.target_state,
                &state_names(target),
                "name a state of the target machine",
            ),
        );
        return;
    }
    if !accepts(target, &rule.target_state, &rule.event) {
        report.on_value(
            Severity::Warning,
            codes::CASCADE_EVENT_NOT_ACCEPTED,
            &format!("{path}.event"),
            format!(
                "{subject} sends {} to {} instances in {}, but no transition of {} leaves {} on {}: the event is ignored",
                rule.event, target.name, rule.target_state, target.name, rule.target_state, rule.event
            ),
            format!("add a transition from {} on {} to machine {}, or fix the rule", rule.target_state, rule.event, target.name),
        );
    }
}
