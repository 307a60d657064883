//! Create, transition, ignore, finish: the basic lifecycle and its runtime events.

use crate::{ctx, new_state, start};
use serde_json::json;
use xcomponent_core::InstanceId;
use xcomponent_runtime::DrawId;
use xcomponent_runtime::{Handlers, RuntimeError, RuntimeEvent, SendOutcome};

pub const SIMPLE_FLOW: &str = r#"
name: SimpleFlow
stateMachines:
  - name: Flow
    initialState: Start
    states:
      - {name: Start, type: entry}
      - {name: Processing}
      - {name: Success, type: final}
      - {name: Failed, type: error}
    transitions:
      - {from: Start, to: Processing, event: BEGIN}
      - {from: Processing, to: Success, event: FINISH}
      - {from: Processing, to: Failed, event: FAIL}
      - {from: Processing, to: Failed, event: TIMEOUT, type: timeout, timeoutMs: 1000}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_move_and_finish() {
    let mut rt = start(&[SIMPLE_FLOW], Handlers::new(), None).await;
    let id = rt
        .handle
        .create_instance("SimpleFlow", "Flow", ctx(json!({"orderId": "A1"})))
        .await
        .unwrap();
    let view = rt.handle.instance(id).await.unwrap();
    assert_eq!(&*view.current_state, "Start");
    assert_eq!(view.context.get("orderId"), Some(&json!("A1")));
    let outcome = rt.handle.send_event(id, "BEGIN", ctx(json!({"amount": 5}))).await.unwrap();
    assert_eq!(new_state(&outcome), "Processing");
    assert_eq!(
        rt.handle.instance(id).await.unwrap().context.get("amount"),
        Some(&json!(5)),
        "payload merged"
    );
    let outcome = rt.handle.send_event(id, "FINISH", Default::default()).await.unwrap();
    assert_eq!(new_state(&outcome), "Success");
    assert!(rt.handle.instance(id).await.is_none(), "final instances leave the live set");
    rt.handle.flush().await.unwrap();
    let kinds: Vec<&str> = rt.drain_events().iter().map(RuntimeEvent::kind).collect();
    assert_eq!(kinds, ["instance_created", "state_change", "state_change", "instance_disposed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_is_ignored_with_reason_and_allowed_events() {
    let rt = start(&[SIMPLE_FLOW], Handlers::new(), None).await;
    let id = rt.handle.create_instance("SimpleFlow", "Flow", Default::default()).await.unwrap();
    match rt.handle.send_event(id, "FINISH", Default::default()).await.unwrap() {
        SendOutcome::Ignored { reason, current_state, allowed_events } => {
            assert_eq!(&*current_state, "Start");
            assert!(reason.contains("no transition from state Start on event FINISH"), "{reason}");
            assert_eq!(allowed_events.iter().map(|e| &**e).collect::<Vec<_>>(), ["BEGIN"]);
        }
        other => panic!("expected ignored, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_instance_component_and_machine_are_errors() {
    let rt = start(&[SIMPLE_FLOW], Handlers::new(), None).await;
    let missing = InstanceId::draw();
    assert_eq!(
        rt.handle.send_event(missing, "BEGIN", Default::default()).await,
        Err(RuntimeError::UnknownInstance(missing))
    );
    assert!(matches!(
        rt.handle.create_instance("Nope", "Flow", Default::default()).await,
        Err(RuntimeError::UnknownComponent(_))
    ));
    assert!(matches!(
        rt.handle.create_instance("SimpleFlow", "Nope", Default::default()).await,
        Err(RuntimeError::UnknownMachine { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_independent_and_listed() {
    let rt = start(&[SIMPLE_FLOW], Handlers::new(), None).await;
    let a = rt.handle.create_instance("SimpleFlow", "Flow", Default::default()).await.unwrap();
    let b = rt.handle.create_instance("SimpleFlow", "Flow", Default::default()).await.unwrap();
    rt.handle.send_event(a, "BEGIN", Default::default()).await.unwrap();
    assert_eq!(rt.state(a).await.as_deref(), Some("Processing"));
    assert_eq!(rt.state(b).await.as_deref(), Some("Start"));
    let all = rt
        .handle
        .instances(xcomponent_runtime::InstanceFilter { limit: 10, ..Default::default() })
        .await;
    assert_eq!(all.iter().map(|v| v.id).collect::<Vec<_>>(), [a, b], "ordered by time-ordered id");
    let processing = rt
        .handle
        .instances(xcomponent_runtime::InstanceFilter {
            state: Some("Processing".into()),
            limit: 10,
            ..Default::default()
        })
        .await;
    assert_eq!(processing.len(), 1);
}

const SINGLETON: &str = r#"
name: Desk
entryMachine: Desk
entryMachineMode: singleton
autoCreateEntryPoint: false
stateMachines:
  - name: Desk
    initialState: Open
    states: [{name: Open}, {name: Closed, type: final}]
    transitions: [{from: Open, to: Closed, event: CLOSE}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_entry_machine_refuses_a_second_live_instance() {
    let rt = start(&[SINGLETON], Handlers::new(), None).await;
    let first = rt.handle.create_instance("Desk", "Desk", Default::default()).await.unwrap();
    match rt.handle.create_instance("Desk", "Desk", Default::default()).await {
        Err(RuntimeError::SingletonExists { existing, .. }) => assert_eq!(existing, first),
        other => panic!("expected SingletonExists, got {other:?}"),
    }
    rt.handle.send_event(first, "CLOSE", Default::default()).await.unwrap();
    rt.handle
        .create_instance("Desk", "Desk", Default::default())
        .await
        .expect("a new one once the first has finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_created_singleton_entry_point() {
    let yaml = SINGLETON.replace("autoCreateEntryPoint: false", "autoCreateEntryPoint: true");
    let rt = start(&[&yaml], Handlers::new(), None).await;
    let entry = rt.handle.singleton_instance("Desk").expect("entry point created at start");
    let view = rt.handle.instance(entry).await.unwrap();
    assert!(view.is_entry_point);
}
