//! Business hooks: call order, deferred sendToSelf in FIFO order, and failures that never corrupt
//! an instance.

use crate::{ctx, new_state, start};
use serde_json::json;
use std::sync::{Arc, Mutex};
use xcomponent_runtime::{Handlers, RuntimeEvent};

const PIPELINE: &str = r#"
name: Pipeline
stateMachines:
  - name: Job
    initialState: A
    states:
      - {name: A, onExit: leaveA}
      - {name: B, onEntry: enterB}
      - {name: C}
      - {name: D}
    transitions:
      - {from: A, to: B, event: GO, triggeredMethod: during}
      - {from: B, to: C, event: NEXT}
      - {from: C, to: D, event: LAST}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_exit_then_triggered_then_entry_and_self_sends_are_fifo_after_the_transition() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = |name: &'static str, calls: Arc<Mutex<Vec<String>>>| {
        move |call: &mut xcomponent_core::engine::HookCall<'_>| {
            calls.lock().unwrap().push(format!("{name}@{}", call.state));
            Ok(())
        }
    };
    let handlers = Handlers::new()
        .on("leaveA", log("exit", calls.clone()))
        .on("during", log("triggered", calls.clone()))
        .on("enterB", {
            let calls = calls.clone();
            move |call| {
                calls.lock().unwrap().push(format!("entry@{}", call.state));
                call.sender.send_to_self("NEXT", Default::default());
                call.sender.send_to_self("LAST", Default::default());
                Ok(())
            }
        });
    let mut rt = start(&[PIPELINE], handlers, None).await;
    let id = rt.handle.create_instance("Pipeline", "Job", Default::default()).await.unwrap();
    let outcome = rt.handle.send_event(id, "GO", Default::default()).await.unwrap();
    assert_eq!(new_state(&outcome), "B", "the self-sends run after the transition completes");
    rt.handle.flush().await.unwrap();
    assert_eq!(rt.state(id).await.as_deref(), Some("D"));
    assert_eq!(*calls.lock().unwrap(), ["exit@A", "triggered@A", "entry@B"]);
    let path: Vec<String> = rt
        .drain_events()
        .iter()
        .filter_map(|event| match event {
            RuntimeEvent::StateChanged { from, to, .. } => Some(format!("{from}->{to}")),
            _ => None,
        })
        .collect();
    assert_eq!(path, ["0->1", "1->2", "2->3"]);
}

const ACCUMULATE: &str = r#"
name: Trading
stateMachines:
  - name: Order
    initialState: Open
    states: [{name: Open}, {name: Filled, type: final}]
    transitions:
      - {from: Open, to: Open, event: EXECUTION, type: internal, triggeredMethod: accumulate}
      - {from: Open, to: Filled, event: FULLY_EXECUTED}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hook_is_recorded_its_changes_undone_and_the_transition_completes() {
    let handlers = Handlers::new().on("accumulate", |call| {
        let quantity = call.event.payload.get("quantity").and_then(|q| q.as_f64()).unwrap_or(0.0);
        if quantity < 0.0 {
            call.context.insert("executed".into(), json!(-999));
            return Err("negative quantity".into());
        }
        let executed =
            call.context.get("executed").and_then(|q| q.as_f64()).unwrap_or(0.0) + quantity;
        call.context.insert("executed".into(), json!(executed));
        if executed >= 100.0 {
            call.sender.send_to_self("FULLY_EXECUTED", Default::default());
        }
        Ok(())
    });
    let mut rt = start(&[ACCUMULATE], handlers, None).await;
    let id = rt.handle.create_instance("Trading", "Order", Default::default()).await.unwrap();
    rt.handle.send_event(id, "EXECUTION", ctx(json!({"quantity": 40}))).await.unwrap();
    let outcome =
        rt.handle.send_event(id, "EXECUTION", ctx(json!({"quantity": -1}))).await.unwrap();
    assert_eq!(new_state(&outcome), "Open", "a hook failure does not abort the transition");
    let view = rt.handle.instance(id).await.unwrap();
    assert_eq!(
        view.context.get("executed"),
        Some(&json!(40.0)),
        "the failed hook's change was undone"
    );
    rt.handle.send_event(id, "EXECUTION", ctx(json!({"quantity": 60}))).await.unwrap();
    rt.handle.flush().await.unwrap();
    assert!(rt.handle.instance(id).await.is_none(), "FULLY_EXECUTED reached the final state");
    let failures: Vec<String> = rt
        .drain_events()
        .iter()
        .filter_map(|event| match event {
            RuntimeEvent::HookFailed { method, error, .. } => Some(format!("{method}: {error}")),
            _ => None,
        })
        .collect();
    assert_eq!(failures, ["accumulate: negative quantity"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_hook_is_contained() {
    let handlers = Handlers::new().on("accumulate", |_call| panic!("boom"));
    let rt = start(&[ACCUMULATE], handlers, None).await;
    let id = rt.handle.create_instance("Trading", "Order", ctx(json!({"x": 1}))).await.unwrap();
    let outcome = rt.handle.send_event(id, "EXECUTION", Default::default()).await.unwrap();
    assert_eq!(new_state(&outcome), "Open");
    assert_eq!(rt.handle.instance(id).await.unwrap().context.get("x"), Some(&json!(1)));
}

const COUNTER: &str = r#"
name: Loop
stateMachines:
  - name: Counter
    initialState: Idle
    states: [{name: Idle}, {name: Counting, onEntry: bump}, {name: Done, type: final}]
    transitions:
      - {from: Idle, to: Counting, event: GO}
      - {from: Counting, to: Counting, event: PING}
      - {from: Counting, to: Done, event: STOP}
"#;

/// `flush` returns only once a whole chain of self-sends has run (a regression: effects a shard
/// routed to itself were not counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_a_whole_chain_of_self_sends() {
    let handlers = Handlers::new().on("bump", |call| {
        let n = call.context.get("n").and_then(|n| n.as_u64()).unwrap_or(0) + 1;
        call.context.insert("n".into(), json!(n));
        call.sender.send_to_self(if n == 30 { "STOP" } else { "PING" }, Default::default());
        Ok(())
    });
    let rt = start(&[COUNTER], handlers, None).await;
    for _ in 0..40 {
        let id = rt.handle.create_instance("Loop", "Counter", Default::default()).await.unwrap();
        rt.handle.send_event(id, "GO", Default::default()).await.unwrap();
        rt.handle.flush().await.unwrap();
        assert_eq!(rt.state(id).await, None, "the chain reached Done before flush returned");
    }
}
