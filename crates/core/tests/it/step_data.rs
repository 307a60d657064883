//! What a step hands back about the instance data (`Transitioned::previous_data`): the data
//! before, only when the step replaced it, and the data before left untouched for whoever
//! shares it. The runtime relies on it to skip size checks, index updates and data diffs for
//! the steps that did not change the data, without copying the data's `Arc` before each step.

use serde_json::{Value, json};
use std::sync::Arc;
use xcomponent_core::definition::Definition;
use xcomponent_core::engine::{self, EventRef, HookCall, Hooks, NoHooks, StepResult, Transitioned};
use xcomponent_core::instance::{Context, Instance, InstanceId};
use xcomponent_core::load::parse_component;

const TICKETS: &str = r#"
name: Desk
stateMachines:
  - name: Ticket
    initialState: Open
    states:
      - name: Open
        onExit: leaveOpen
      - name: Working
    transitions:
      - {from: Open, to: Working, event: Take}
      - {from: Working, to: Working, event: Note}
"#;

fn definition() -> Definition {
    let loaded = parse_component(TICKETS, "tickets.yaml").expect("the component loads");
    Definition::compile(loaded.component).expect("the component compiles")
}

fn data(value: Value) -> Context {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn ticket(definition: &Definition) -> Instance {
    let machine = definition.machine_index("Ticket").expect("machine Ticket");
    let id = InstanceId(uuid::Uuid::from_u128(7));
    engine::create(definition, machine, id, data(json!({"owner": "ann"})), None, 1_000)
}

fn transitioned(result: StepResult) -> Transitioned {
    match result {
        StepResult::Transitioned(transitioned) => transitioned,
        other => panic!("expected a transition, got {other:?}"),
    }
}

/// A hook that writes a field, then fails when asked to.
struct Writer {
    fail: bool,
}

impl Hooks for Writer {
    fn call(&mut self, call: HookCall<'_>) -> Result<(), String> {
        call.context.insert("touched".into(), Value::Bool(true));
        if self.fail { Err("refused".into()) } else { Ok(()) }
    }
}

#[test]
fn a_step_that_leaves_the_data_keeps_its_arc_and_reports_nothing_before() {
    let definition = definition();
    let mut instance = ticket(&definition);
    let held = Arc::clone(&instance.context);
    let empty = Context::new();
    let event = EventRef { name: "Take", payload: &empty };
    // The machine declares an onExit hook; with no business code it changes nothing.
    let step = transitioned(engine::step(&definition, &mut instance, event, 2_000, &mut NoHooks));
    assert!(step.previous_data.is_none());
    assert!(Arc::ptr_eq(&held, &instance.context), "the data is shared, not copied");
}

#[test]
fn a_merged_payload_replaces_the_data_and_hands_back_the_data_before_untouched() {
    let definition = definition();
    let mut instance = ticket(&definition);
    let held = Arc::clone(&instance.context);
    let payload = data(json!({"note": "call back"}));
    let take = EventRef { name: "Take", payload: &Context::new() };
    transitioned(engine::step(&definition, &mut instance, take, 2_000, &mut NoHooks));
    let note = EventRef { name: "Note", payload: &payload };
    let step = transitioned(engine::step(&definition, &mut instance, note, 3_000, &mut NoHooks));
    let before = step.previous_data.expect("the step changed the data");
    assert!(Arc::ptr_eq(&before, &held), "the data before is the very Arc the instance had");
    assert_eq!(Value::Object(Context::clone(&before)), json!({"owner": "ann"}));
    assert_eq!(
        Value::Object(Context::clone(&instance.context)),
        json!({"owner": "ann", "note": "call back"})
    );
}

#[test]
fn a_hook_that_runs_changes_the_data_and_a_failed_one_leaves_it_as_it_was() {
    let definition = definition();
    let empty = Context::new();
    let take = || EventRef { name: "Take", payload: &empty };

    let mut instance = ticket(&definition);
    let held = Arc::clone(&instance.context);
    let step = engine::step(&definition, &mut instance, take(), 2_000, &mut Writer { fail: false });
    let before = transitioned(step).previous_data.expect("the hook changed the data");
    assert!(Arc::ptr_eq(&before, &held));
    assert_eq!(instance.context.get("touched"), Some(&Value::Bool(true)));

    let mut instance = ticket(&definition);
    let held = Arc::clone(&instance.context);
    let step = engine::step(&definition, &mut instance, take(), 2_000, &mut Writer { fail: true });
    assert!(transitioned(step).previous_data.is_none(), "a failed hook's change is undone");
    assert!(Arc::ptr_eq(&held, &instance.context));
    assert_eq!(instance.context.get("touched"), None);
}
