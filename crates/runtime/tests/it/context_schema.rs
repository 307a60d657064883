//! `contextSchema` on creation: refused through the handle with the field and the rule, a child
//! created by the engine with incomplete data is dead-lettered (and reported), an entry point
//! created at start needs no data, and `ContextSchemaMode::Lenient` accepts anything.

use crate::{T0, TestRuntime, ctx, start, start_with};
use serde_json::json;
use std::sync::Arc;
use xcomponent_core::clock::ManualClock;
use xcomponent_core::context_schema::Rule;
use xcomponent_core::message::DeadLetterKind;
use xcomponent_runtime::{
    ContextSchemaMode, Handlers, InstanceFilter, RuntimeError, RuntimeEvent, RuntimeOptions,
    TimerMode,
};
use xcomponent_store::MemoryStore;

const DESK: &str = r#"
name: Desk
entryMachine: Queue
entryMachineMode: singleton
autoCreateEntryPoint: true
stateMachines:
  - name: Queue
    initialState: Open
    contextSchema:
      team: {type: text, required: true}
    states: [{name: Open}, {name: Dispatched}]
    transitions:
      - {from: Open, to: Dispatched, event: DISPATCH, type: inter_machine, targetMachine: Ticket}
  - name: Ticket
    initialState: New
    contextSchema:
      ticketId: {type: text, required: true}
      priority: {type: select, options: [{value: low}, {value: high}]}
      minutes: {type: integer}
    states: [{name: New}, {name: Closed, type: final}]
    transitions:
      - {from: New, to: Closed, event: CLOSE}
"#;

fn violation_of(
    result: Result<xcomponent_core::InstanceId, RuntimeError>,
) -> Option<(String, Rule)> {
    match result {
        Err(RuntimeError::ContextSchema { violation, .. }) => {
            Some((violation.field, violation.rule))
        }
        _ => None,
    }
}

/// Every live instance of `machine`.
fn live(machine: &str) -> InstanceFilter {
    InstanceFilter { machine: Some(machine.into()), limit: usize::MAX, ..InstanceFilter::default() }
}

async fn queue(rt: &TestRuntime) -> xcomponent_core::InstanceId {
    let queues = rt.handle.instances(live("Queue")).await;
    assert_eq!(queues.len(), 1, "the entry point was created at start without data");
    queues[0].id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_that_breaks_the_schema_is_refused_with_the_field_and_the_rule() {
    let rt = start(&[DESK], Handlers::new(), None).await;
    let create = |context| rt.handle.create_instance("Desk", "Ticket", ctx(context));
    let missing = violation_of(create(json!({"priority": "low"})).await);
    assert_eq!(missing, Some(("ticketId".to_owned(), Rule::Required)));
    let Err(error) = create(json!({"ticketId": "T-1", "minutes": 2.5})).await else {
        panic!("a fraction for an integer is refused")
    };
    assert_eq!(
        error.to_string(),
        "Desk.Ticket: minutes must be an integer (contextSchema type integer), not a number \
         with a fraction; nothing was created"
    );
    let option = violation_of(create(json!({"ticketId": "T-1", "priority": "urgent"})).await);
    assert!(matches!(option, Some((field, Rule::Type { .. })) if field == "priority"));
    assert!(rt.handle.instances(live("Ticket")).await.is_empty(), "nothing was created");
    let id = create(json!({"ticketId": "T-1", "priority": "high", "minutes": 5})).await;
    assert!(id.is_ok(), "{id:?}");
    queue(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_with_incomplete_data_is_dead_lettered_and_reported() {
    let store = Arc::new(MemoryStore::new());
    let mut rt = start(&[DESK], Handlers::new(), Some(store)).await;
    let queue = queue(&rt).await;
    // The queue's data ({}) becomes the child's: no ticketId.
    let outcome = rt.handle.send_event(queue, "DISPATCH", Default::default()).await;
    assert!(outcome.is_ok(), "the parent's transition is stored: {outcome:?}");
    rt.handle.flush().await.expect("flushed");
    assert_eq!(rt.state(queue).await.as_deref(), Some("Dispatched"));
    assert!(rt.handle.instances(live("Ticket")).await.is_empty(), "no ticket without its id");
    let letters = rt.handle.dead_letters(None, 10).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, DeadLetterKind::Rejected);
    assert!(letters[0].reason.contains("ticketId is required"), "{}", letters[0].reason);
    let reported = rt.drain_events().into_iter().any(|event| {
        matches!(event, RuntimeEvent::EffectFailed { instance, ref error, .. }
            if instance == queue && error.contains("ticketId is required"))
    });
    assert!(reported, "the parent's failed effect is on the event stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_mode_accepts_any_data() {
    let options = RuntimeOptions {
        shards: 2,
        timer_mode: TimerMode::Manual,
        context_schema: ContextSchemaMode::Lenient,
        ..RuntimeOptions::default()
    };
    let clock = Arc::new(ManualClock::new(T0));
    let rt = start_with(&[DESK], Handlers::new(), None, clock, options).await;
    let id = rt.handle.create_instance("Desk", "Ticket", ctx(json!({"minutes": "soon"}))).await;
    assert!(id.is_ok(), "{id:?}");
    rt.handle.send_event(queue(&rt).await, "DISPATCH", Default::default()).await.expect("sent");
    rt.handle.flush().await.expect("flushed");
    assert_eq!(rt.handle.instances(live("Ticket")).await.len(), 2, "the child was created too");
}
