//! `xcomponent-ai simulate FILE... --machine NAME` (or the original's `simulate FILE MACHINE`): a dry walk of one instance through its
//! machine with the pure engine. No runtime, no store, no business code: effects that would
//! reach other instances (inter_machine, cross_component, cascading rules) are listed, not
//! carried out. Timers run on a virtual clock: `{"advanceMs": N}` fires them at their deadlines.

use super::run::{EVENTS_HELP, EXIT_INVALID_INPUT, Inputs, Output};
use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;
use xcomponent_cli::offline::script::{Step, Target};
use xcomponent_cli::offline::trace::{Tracker, format_relative};
use xcomponent_core::definition::{Definition, MachineDef};
use xcomponent_core::effect::Effect;
use xcomponent_core::engine::{self, EventRef, Ignored, NoHooks, StepResult};
use xcomponent_core::instance::{Context, Instance, InstanceId, Millis};
use xcomponent_core::matching::PropertyFilter;
use xcomponent_runtime::DrawId;

/// Walk one instance through its machine without side effects and print the path taken.
#[derive(Debug, Args)]
#[command(after_help = format!("{EVENTS_HELP}
simulate follows the one instance created by --machine: items that create or address other
instances are refused (use `run`).

Auto transitions fire as soon as they are due; timeouts fire when the virtual clock passes their
deadline. The walk stops at a final or error state. Guards are evaluated; hooks do nothing.

Examples:
  xcomponent-ai simulate order.yaml Order --events '[\"SUBMIT\"]'   (the original's form)
  xcomponent-ai simulate order.yaml --machine Order --context '{{\"amount\": 120}}' --events '[\"SUBMIT\", \"PAY\"]'

Exit status: 0 when every event found a transition (or the walk reached a final state), 1 when an
event has no transition from the current state (`No transition from X for event Y`), 2 when the
input is invalid."))]
pub struct SimulateArgs {
    #[command(flatten)]
    inputs: Inputs,
}

/// One transition of the walk.
struct Walked {
    t: Millis,
    from: String,
    event: String,
    to: String,
    kind: String,
    effects: Vec<String>,
}

/// Runs the command.
pub fn run(args: SimulateArgs) -> Result<ExitCode> {
    let inputs = &args.inputs;
    let prepared = match inputs.prepare() {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    if let Some(item) = prepared.items.iter().find(|item| {
        !matches!(item.step, Step::Advance { .. } | Step::Send { target: Target::Main, .. })
    }) {
        eprintln!(
            "error: item {} `{}`: simulate follows a single instance; use `run` to create or address other instances",
            item.number, item.text
        );
        return Ok(ExitCode::from(EXIT_INVALID_INPUT));
    }
    let Some(definition) = prepared
        .loaded
        .definitions
        .iter()
        .find(|definition| *definition.name == prepared.component)
    else {
        anyhow::bail!("component {} vanished after loading", prepared.component);
    };
    let Some(machine_index) = definition.machine_index(&prepared.machine) else {
        anyhow::bail!("machine {} vanished after loading", prepared.machine);
    };
    let machine = definition.machine(machine_index);
    let mut walk = Walk {
        definition,
        machine,
        now: 0,
        steps: Vec::new(),
        instance: engine::create(
            definition,
            machine_index,
            InstanceId::draw(),
            prepared.context,
            None,
            0,
        ),
    };
    let mut path = vec![machine.state(walk.instance.state).name.to_string()];
    walk.fire_due(0, &mut path);
    let mut error = None;
    let mut skipped = 0;
    let advance_at_end = inputs.advance_ms.map(|ms| Step::Advance { ms });
    let steps: Vec<&Step> =
        prepared.items.iter().map(|item| &item.step).chain(advance_at_end.as_ref()).collect();
    for (position, step) in steps.iter().enumerate() {
        if !walk.instance.is_active() {
            skipped = steps.len() - position;
            break;
        }
        match step {
            Step::Send { event, payload, .. } => {
                let state = machine.state(walk.instance.state).name.to_string();
                let result = engine::step(
                    definition,
                    &mut walk.instance,
                    EventRef { name: event, payload },
                    walk.now,
                    &mut NoHooks,
                );
                match result {
                    StepResult::Transitioned(transitioned) => {
                        walk.record(
                            event,
                            &transitioned.effects,
                            transitioned.from,
                            transitioned.to,
                            transitioned.transition,
                            &mut path,
                        );
                        walk.fire_due(walk.now, &mut path);
                    }
                    StepResult::Ignored(ignored) => {
                        let reason = match &ignored {
                            Ignored::Rejected { .. } => format!(
                                ": {}",
                                ignored.describe(machine, walk.instance.state, event)
                            ),
                            _ => String::new(),
                        };
                        error =
                            Some(format!("No transition from {state} for event {event}{reason}"));
                        break;
                    }
                }
            }
            Step::Advance { ms } => {
                let target = walk.now.saturating_add(Millis::try_from(*ms).unwrap_or(Millis::MAX));
                walk.fire_due(target, &mut path);
                walk.now = target;
            }
            Step::Create { .. } | Step::Broadcast { .. } => {}
        }
    }
    print(inputs.output, &walk, &path, error.as_deref(), skipped);
    Ok(if error.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

struct Walk<'d> {
    definition: &'d Definition,
    machine: &'d MachineDef,
    now: Millis,
    steps: Vec<Walked>,
    instance: Instance,
}

impl Walk<'_> {
    /// Fires, in deadline order, every timer due at or before `until`.
    fn fire_due(&mut self, until: Millis, path: &mut Vec<String>) {
        while self.instance.is_active() {
            let Some(timer) = self
                .instance
                .timers
                .iter()
                .filter(|timer| timer.deadline <= until)
                .min_by_key(|timer| (timer.deadline, timer.transition))
                .copied()
            else {
                break;
            };
            self.now = self.now.max(timer.deadline);
            let transition = self.machine.transition(timer.transition);
            let event = transition.event_name.to_string();
            let payload = engine::timer_payload(transition.kind);
            if let StepResult::Transitioned(done) = engine::fire_timer(
                self.definition,
                &mut self.instance,
                timer.transition,
                &payload,
                self.now,
                &mut NoHooks,
            ) {
                self.record(&event, &done.effects, done.from, done.to, done.transition, path);
            } else {
                self.instance.timers.retain(|armed| *armed != timer);
            }
        }
    }

    fn record(
        &mut self,
        event: &str,
        effects: &[Effect],
        from: u16,
        to: u16,
        transition: u16,
        path: &mut Vec<String>,
    ) {
        let kind = serde_json::to_value(self.machine.transition(transition).kind)
            .ok()
            .and_then(|kind| kind.as_str().map(str::to_owned))
            .unwrap_or_default();
        let to_name = self.machine.state(to).name.to_string();
        path.push(to_name.clone());
        let effects =
            effects.iter().map(|effect| describe_effect(self.definition, effect)).collect();
        self.steps.push(Walked {
            t: self.now,
            from: self.machine.state(from).name.to_string(),
            event: event.to_owned(),
            to: to_name,
            kind,
            effects,
        });
    }
}

fn describe_effect(definition: &Definition, effect: &Effect) -> String {
    let tracker = Tracker::new(false);
    let data = |context: &Context| tracker.render_value(&Value::Object(context.clone()));
    match effect {
        Effect::Command(command) => {
            format!("command {}", serde_json::to_string(command).unwrap_or_default())
        }
        Effect::Cascade { component, machine, state, event, payload, filters } => {
            let component = component.as_deref().map(|name| format!("{name}/")).unwrap_or_default();
            format!(
                "cascade: send {event} to {component}{machine} instances in {state}{} with {}",
                where_clause(filters.as_deref()),
                data(payload)
            )
        }
        Effect::NotifyParent { event, payload, .. } => {
            format!("notify parent: {event} with {}", data(payload))
        }
        Effect::CreateChild { machine, context } => {
            format!("create child {} with {}", definition.machine(*machine).name, data(context))
        }
        Effect::CrossComponent { target, context, filters } => match &target.event {
            None => {
                format!("create {}/{} with {}", target.component, target.machine, data(context))
            }
            Some(event) => format!(
                "send {event} to {}/{} instances{} with {}",
                target.component,
                target.machine,
                where_clause(filters.as_deref()),
                data(context)
            ),
        },
        Effect::HookFailed { kind, method, error } => {
            format!("hook {} {method} failed: {error}", kind.as_str())
        }
    }
}

fn where_clause(filters: Option<&[PropertyFilter]>) -> String {
    match filters {
        None => " (a matching value is missing: reaches no instance)".to_owned(),
        Some([]) => String::new(),
        Some(filters) => {
            let parts: Vec<String> = filters
                .iter()
                .map(|filter| {
                    let operator = serde_json::to_value(filter.operator)
                        .ok()
                        .and_then(|op| op.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("{} {operator} {}", filter.property, filter.value)
                })
                .collect();
            format!(" where {}", parts.join(" and "))
        }
    }
}

fn print(output: Output, walk: &Walk<'_>, path: &[String], error: Option<&str>, skipped: usize) {
    let final_state = walk.machine.state(walk.instance.state);
    let stopped = (skipped > 0).then(|| {
        format!(
            "stopped in {} ({}): {skipped} step(s) not taken",
            final_state.name,
            walk.instance.status.as_str()
        )
    });
    match output {
        Output::Json => {
            let steps: Vec<Value> = walk
                .steps
                .iter()
                .map(|step| json!({"t": step.t, "from": step.from, "event": step.event, "to": step.to, "type": step.kind, "effects": step.effects}))
                .collect();
            let report = json!({
                "success": error.is_none(),
                "path": path,
                "steps": steps,
                "error": error,
                "stopped": stopped,
                "status": walk.instance.status,
                "context": &*walk.instance.context,
            });
            println!("{report}");
        }
        Output::Text => {
            for step in &walk.steps {
                let kind = if matches!(step.kind.as_str(), "regular" | "triggerable") {
                    String::new()
                } else {
                    format!(" [{}]", step.kind)
                };
                println!(
                    "{:>8}  {} --{}--> {}{kind}",
                    format_relative(step.t),
                    step.from,
                    step.event,
                    step.to
                );
                for effect in &step.effects {
                    println!("{:>8}    effect: {effect}", "");
                }
            }
            if let Some(stopped) = &stopped {
                println!("{stopped}");
            }
            println!("path: [{}]", path.join(", "));
            println!("status: {}", walk.instance.status.as_str());
            println!(
                "data: {}",
                Tracker::new(false)
                    .render_value(&Value::Object(walk.instance.context.as_ref().clone()))
            );
            if let Some(error) = error {
                eprintln!("{error}");
            }
        }
    }
}
