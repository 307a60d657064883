//! Timeout and auto transitions on a manual clock: exact deadlines, clearing on state change,
//! `resetOnTransition`, auto transitions at delay 0 and in chains.

use crate::{ctx, start};
use serde_json::json;
use xcomponent_runtime::{Handlers, RuntimeEvent};

const TIMED: &str = r#"
name: Timed
stateMachines:
  - name: Session
    initialState: Waiting
    states:
      - {name: Waiting}
      - {name: Active}
      - {name: Expired, type: error}
      - {name: Done, type: final}
    transitions:
      - {from: Waiting, to: Expired, event: TIMEOUT, type: timeout, timeoutMs: 1000}
      - {from: Waiting, to: Waiting, event: PING, type: internal}
      - {from: Waiting, to: Active, event: START}
      - {from: Active, to: Done, event: STOP}
  - name: Keeper
    initialState: Watching
    states:
      - {name: Watching}
      - {name: Late, type: final}
    transitions:
      - {from: Watching, to: Late, event: DEADLINE, type: timeout, timeoutMs: 1000, resetOnTransition: false}
      - {from: Watching, to: Watching, event: PING, type: internal}
  - name: Chain
    initialState: One
    states: [{name: One}, {name: Two}, {name: Three, type: final}]
    transitions:
      - {from: One, to: Two, event: AUTO1, type: auto}
      - {from: Two, to: Three, event: AUTO2, type: auto, timeoutMs: 20}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_fires_exactly_at_its_deadline() {
    let mut rt = start(&[TIMED], Handlers::new(), None).await;
    let id = rt.handle.create_instance("Timed", "Session", Default::default()).await.unwrap();
    rt.advance(999).await;
    assert_eq!(rt.state(id).await.as_deref(), Some("Waiting"));
    rt.advance(1).await;
    assert_eq!(rt.state(id).await, None, "Expired is an error state: disposed");
    let fired = rt
        .drain_events()
        .iter()
        .filter(|event| matches!(event, RuntimeEvent::TimeoutFired { .. }))
        .count();
    assert_eq!(fired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_cleared_by_a_state_change() {
    let rt = start(&[TIMED], Handlers::new(), None).await;
    let id = rt.handle.create_instance("Timed", "Session", Default::default()).await.unwrap();
    rt.handle.send_event(id, "START", Default::default()).await.unwrap();
    rt.advance(5_000).await;
    assert_eq!(rt.state(id).await.as_deref(), Some("Active"));
    assert!(rt.handle.instance(id).await.unwrap().pending_timers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_loop_resets_by_default() {
    let rt = start(&[TIMED], Handlers::new(), None).await;
    let id = rt.handle.create_instance("Timed", "Session", Default::default()).await.unwrap();
    rt.advance(800).await;
    rt.handle.send_event(id, "PING", Default::default()).await.unwrap();
    rt.advance(800).await;
    assert_eq!(rt.state(id).await.as_deref(), Some("Waiting"), "restarted at t=800, due at 1800");
    rt.advance(200).await;
    assert_eq!(rt.state(id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_on_transition_false_keeps_the_timer_running_across_self_loops() {
    let rt = start(&[TIMED], Handlers::new(), None).await;
    let id = rt.handle.create_instance("Timed", "Keeper", Default::default()).await.unwrap();
    rt.advance(800).await;
    rt.handle.send_event(id, "PING", Default::default()).await.unwrap();
    let timers = rt.handle.instance(id).await.unwrap().pending_timers;
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].deadline, crate::T0 + 1000, "the deadline did not move");
    rt.advance(200).await;
    assert_eq!(rt.state(id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_transitions_fire_after_entry_and_chain() {
    let rt = start(&[TIMED], Handlers::new(), None).await;
    let id = rt.handle.create_instance("Timed", "Chain", ctx(json!({}))).await.unwrap();
    rt.handle.flush().await.unwrap();
    rt.advance(0).await;
    assert_eq!(
        rt.state(id).await.as_deref(),
        Some("Two"),
        "delay 0 fires right after creation, not synchronously"
    );
    rt.advance(19).await;
    assert_eq!(rt.state(id).await.as_deref(), Some("Two"));
    rt.advance(1).await;
    assert_eq!(rt.state(id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pending_timers_fire_in_deadline_order() {
    let mut rt = start(&[TIMED], Handlers::new(), None).await;
    let mut ids = Vec::new();
    for _ in 0..500 {
        ids.push(rt.handle.create_instance("Timed", "Session", Default::default()).await.unwrap());
        rt.clock.advance(1);
    }
    let stats = rt.handle.stats().await;
    assert_eq!(stats.iter().map(|s| s.timers).sum::<usize>(), 500);
    rt.drain_events();
    rt.advance(1000 - 500 + 249).await;
    let live = rt
        .handle
        .instances(xcomponent_runtime::InstanceFilter { limit: 1000, ..Default::default() })
        .await;
    assert_eq!(live.len(), 250, "the first 250 (created at T0..T0+249) expired");
    assert_eq!(live[0].id, ids[250]);
}
