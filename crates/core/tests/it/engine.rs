//! The pure engine on its own, table-driven: each case is a small YAML component, an instance
//! created at `T0` and a script of steps (an event, or a timer fired), each with what must come
//! out: the result, the state and status, the armed timers, the hook calls and the effects in
//! order. No runtime, no clock, no Tokio: `create`, `step` and `fire_timer` are called directly.
//!
//! Every case is run twice from scratch (its own compiled definition, instance and hooks) and the
//! two runs must be identical, so each row also checks that the engine is pure and that the ids of
//! hook-created instances are derived from the step, not drawn.
//!
//! The rendering is deliberately compact: times are offsets from `T0`, small instance ids print as
//! `#n`, hook-created ids as `v7@<offset>` (after checking they are UUID v7 carrying the step's
//! time), JSON with sorted keys. The test `Hooks` (`Recorder`) logs each call with the data it
//! sees and acts on the method name: every hook sends its own name to itself, `mark*` writes
//! `{method: true}` into the data, `spawn*` creates two instances and greets the first, `fail*`
//! writes its mark, sends, then fails, `flood*` issues one command more than a hook may.

use serde_json::{Value, json};
use xcomponent_core::definition::Definition;
use xcomponent_core::diagnostic::has_errors;
use xcomponent_core::effect::{Command, Effect, MAX_COMMANDS_PER_HOOK, Target};
use xcomponent_core::engine::{
    self, EventRef, HookCall, Hooks, Ignored, Rejection, StepResult, timer_payload,
};
use xcomponent_core::instance::{Context, Instance, InstanceId, Millis, ParentRef, Status};
use xcomponent_core::load::parse_component;
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::validate::{ValidateOptions, validate};

/// Creation time of every instance; every other time is written as an offset from it.
const T0: Millis = 1_700_000_000_000;
/// The id of the instance under test.
const SUBJECT: u128 = 1;
/// The id of the parent, for cases that have one.
const PARENT: u128 = 99;

// ---------------------------------------------------------------------------------------------
// The components.

/// Every step of the documented order on one transition (inter_machine).
const ORDER: &str = r#"
name: Shop
stateMachines:
  - name: Order
    initialState: Draft
    states:
      - name: Draft
        onExit: leaveDraft
      - name: Placed
        onEntry: enterPlaced
        cascadingRules:
          - targetMachine: Line
            targetState: Open
            event: OrderPlaced
            matchingRules:
              - eventProperty: orderId
                instanceProperty: orderId
            payload:
              orderId: "{{orderId}}"
              amount: "{{amount}}"
      - name: Done
        type: final
    transitions:
      - from: Draft
        to: Placed
        event: Place
        type: inter_machine
        targetMachine: Line
        triggeredMethod: onPlace
        contextMapping:
          orderId: orderId
        notifyParent:
          event: OrderChanged
      - from: Placed
        to: Done
        event: Expire
        type: timeout
        timeoutMs: 1000
  - name: Line
    initialState: Open
    states:
      - name: Open
      - name: Closed
        type: final
    transitions:
      - from: Open
        to: Closed
        event: OrderPlaced
"#;

/// cross_component (send with correlation, and create), parentLink, a final target state.
const BILLING: &str = r#"
name: Shop
stateMachines:
  - name: Order
    initialState: Draft
    parentLink:
      enabled: true
      onStateChange: ChildChanged
    states:
      - name: Draft
        onExit: leaveDraft
      - name: Billed
        type: final
        onEntry: enterBilled
    transitions:
      - from: Draft
        to: Billed
        event: Bill
        type: cross_component
        targetComponent: Billing
        targetMachine: Invoice
        targetEvent: Charge
        triggeredMethod: onBill
        matchingRules:
          - eventProperty: ref
            instanceProperty: orderRef
        contextMapping:
          ref: orderId
          total: amount
      - from: Draft
        to: Draft
        event: Abandon
        type: timeout
        timeoutMs: 5000
      - from: Draft
        to: Draft
        event: Quote
        type: cross_component
        targetComponent: Pricing
"#;

/// Cascading rules: payload templates, resolved filters, a missing value, another component.
const FANOUT: &str = r#"
name: Fanout
stateMachines:
  - name: Batch
    initialState: Open
    states:
      - name: Open
      - name: Closed
        cascadingRules:
          - targetMachine: Item
            targetState: Pending
            event: BatchClosed
            matchingRules:
              - eventProperty: batchId
                instanceProperty: batch
            payload:
              batchId: "{{batchId}}"
              label: "batch {{batchId}} by {{user}}"
          - targetComponent: Audit
            targetMachine: Log
            targetState: Ready
            event: Record
            payload:
              closedBy: "{{user}}"
    transitions:
      - from: Open
        to: Closed
        event: Close
  - name: Item
    initialState: Pending
    states:
      - name: Pending
      - name: Done
        type: final
    transitions:
      - from: Pending
        to: Done
        event: BatchClosed
"#;

/// Timeouts (resetting and not), an auto transition, leaving and re-entering a state.
const SESSION: &str = r#"
name: Sessions
stateMachines:
  - name: Session
    initialState: Active
    states:
      - name: Active
      - name: Idle
      - name: Closed
        type: final
    transitions:
      - from: Active
        to: Active
        event: Touch
      - from: Active
        to: Idle
        event: IdleOut
        type: timeout
        timeoutMs: 1000
      - from: Active
        to: Closed
        event: HardLimit
        type: timeout
        timeoutMs: 5000
        resetOnTransition: false
      - from: Active
        to: Idle
        event: Pause
      - from: Idle
        to: Active
        event: Resume
      - from: Idle
        to: Closed
        event: Reap
        type: auto
"#;

/// Auto transitions from the initial state and with a delay; a guarded timeout.
const BOOT: &str = r#"
name: Boot
stateMachines:
  - name: Boot
    initialState: Starting
    states:
      - name: Starting
      - name: Warm
      - name: Ready
    transitions:
      - from: Starting
        to: Warm
        event: Started
        type: auto
      - from: Warm
        to: Ready
        event: Warmed
        type: auto
        timeoutMs: 250
      - from: Warm
        to: Warm
        event: Poke
  - name: Lease
    initialState: Held
    states:
      - name: Held
      - name: Released
        type: final
    transitions:
      - from: Held
        to: Released
        event: Expire
        type: timeout
        timeoutMs: 100
        guard: "context.expires"
"#;

/// Guards: declaration order, fallbacks, false, un-evaluable, the merged payload.
const LOANS: &str = r#"
name: Loans
stateMachines:
  - name: Loan
    initialState: Review
    states:
      - name: Review
      - name: Big
      - name: Small
      - name: Manual
    transitions:
      - from: Review
        to: Big
        event: Decide
        guard: "context.amount > 5000"
      - from: Review
        to: Small
        event: Decide
        guard: "context.amount > 0"
      - from: Review
        to: Manual
        event: Decide
  - name: Strict
    initialState: Review
    states:
      - name: Review
      - name: Approved
      - name: Escalated
    transitions:
      - from: Review
        to: Approved
        event: Approve
        guard: "context.amount > 5000"
      - from: Review
        to: Escalated
        event: Approve
        guard: "payload.urgent == true"
      - from: Approved
        to: Review
        event: Reopen
"#;

/// Matching rules on a direct send: rule-bearing candidates first, no payload merge.
const ROUTING: &str = r#"
name: Routing
stateMachines:
  - name: Router
    initialState: Waiting
    states:
      - name: Waiting
      - name: General
      - name: Specific
    transitions:
      - from: Waiting
        to: General
        event: Route
      - from: Waiting
        to: Specific
        event: Route
        matchingRules:
          - eventProperty: id
            instanceProperty: id
  - name: Picky
    initialState: Waiting
    states:
      - name: Waiting
      - name: Big
      - name: Matched
    transitions:
      - from: Waiting
        to: Big
        event: Offer
        guard: "payload.total > 100"
        matchingRules:
          - eventProperty: customer
            instanceProperty: customer
      - from: Waiting
        to: Matched
        event: Offer
        matchingRules:
          - eventProperty: customer
            instanceProperty: customer
"#;

/// Hooks that fail, write data, create instances, flood; an error state.
const JOBS: &str = r#"
name: Jobs
stateMachines:
  - name: Job
    initialState: Queued
    states:
      - name: Queued
        onExit: failExit
      - name: Running
        onEntry: markRunning
      - name: Crashed
        type: error
        onEntry: spawnReport
    transitions:
      - from: Queued
        to: Running
        event: Start
        triggeredMethod: spawnWorkers
      - from: Running
        to: Crashed
        event: Crash
      - from: Running
        to: Running
        event: Scale
        triggeredMethod: spawnMore
  - name: Pump
    initialState: Idle
    states:
      - name: Idle
      - name: Busy
        onEntry: floodEntry
    transitions:
      - from: Idle
        to: Busy
        event: Flood
"#;

/// A transition-level notifyParent with the context and without the state.
const FAMILY: &str = r#"
name: Family
stateMachines:
  - name: Child
    initialState: Born
    states:
      - name: Born
      - name: Grown
      - name: Gone
        type: final
    transitions:
      - from: Born
        to: Grown
        event: Grow
        notifyParent:
          event: ChildGrew
          includeState: false
          includeContext: true
      - from: Grown
        to: Gone
        event: Leave
"#;

// ---------------------------------------------------------------------------------------------
// The table.

fn cases() -> Vec<Case> {
    vec![
        case("transition order: onExit, triggered, merge, state, cascade, onEntry, parent, child, timers", ORDER, "Order")
            .context(json!({"orderId": "o-1"}))
            .parent()
            .steps(vec![
                send(10, "Place", json!({"amount": 30}))
                    .gives("t0 Draft -> Placed", "Placed")
                    .timers(&[("Expire", 1010)])
                    .calls(&[
                        r#"onExit leaveDraft@Draft {"orderId":"o-1"}"#,
                        r#"triggeredMethod onPlace@Draft {"orderId":"o-1"}"#,
                        r#"onEntry enterPlaced@Placed {"amount":30,"orderId":"o-1"}"#,
                    ])
                    .effects(&[
                        "send self leaveDraft {}",
                        "send self onPlace {}",
                        r#"cascade Line[Open] OrderPlaced {"amount":30,"orderId":"o-1"} filters=[orderId === "o-1"]"#,
                        "send self enterPlaced {}",
                        r##"notify #99 OrderChanged {"childInstanceId":"#1","childMachine":"Order","newState":"Placed","previousState":"Draft"}"##,
                        r#"child Line {"orderId":"o-1"}"#,
                    ]),
                fire(1010, "Expire")
                    .gives("t1 Placed -> Done", "Done (completed)")
                    .data(json!({"amount": 30, "orderId": "o-1", "reason": "timeout"})),
                send(2000, "Place", json!({})).gives("ignored NotActive", "Done (completed)"),
            ]),
        case("cross_component send to a final state: parentLink, correlation, timers cleared", BILLING, "Order")
            .context(json!({"orderId": "o-1"}))
            .parent()
            .created_timers(&[("Abandon", 5000)])
            .steps(vec![
                send(10, "Bill", json!({"amount": 30}))
                    .gives("t0 Draft -> Billed", "Billed (completed)")
                    .calls(&[
                        r#"onExit leaveDraft@Draft {"orderId":"o-1"}"#,
                        r#"triggeredMethod onBill@Draft {"orderId":"o-1"}"#,
                        // A cross_component transition with (correlation) rules does not merge.
                        r#"onEntry enterBilled@Billed {"orderId":"o-1"}"#,
                    ])
                    .effects(&[
                        "send self leaveDraft {}",
                        "send self onBill {}",
                        "send self enterBilled {}",
                        r##"notify #99 ChildChanged {"childInstanceId":"#1","childMachine":"Order","newState":"Billed","previousState":"Draft"}"##,
                        r#"cross Billing/Invoice Charge {"ref":"o-1","total":30} filters=[orderRef === "o-1"]"#,
                    ])
                    .data(json!({"orderId": "o-1"})),
                fire(5000, "Abandon").gives("ignored NotActive", "Billed (completed)"),
                send(5000, "Bill", json!({})).gives("ignored NotActive", "Billed (completed)"),
            ]),
        case("cross_component create on a self-loop, no parent: whole data sent, timeout re-armed", BILLING, "Order")
            .context(json!({"orderId": "o-1"}))
            .created_timers(&[("Abandon", 5000)])
            .steps(vec![
                send(300, "Quote", json!({"qty": 2}))
                    .gives("t2 Draft -> Draft", "Draft")
                    .timers(&[("Abandon", 5300)])
                    .calls(&[r#"onExit leaveDraft@Draft {"orderId":"o-1"}"#])
                    .effects(&[
                        "send self leaveDraft {}",
                        r#"cross Pricing/Pricing create {"orderId":"o-1","qty":2} filters=[]"#,
                    ])
                    .data(json!({"orderId": "o-1", "qty": 2})),
                fire(5000, "Abandon").gives("ignored StaleTimer", "Draft").timers(&[("Abandon", 5300)]),
                fire(5300, "Abandon")
                    .gives("t1 Draft -> Draft", "Draft")
                    .timers(&[("Abandon", 10300)])
                    .calls(&[r#"onExit leaveDraft@Draft {"orderId":"o-1","qty":2}"#])
                    .effects(&["send self leaveDraft {}"])
                    .data(json!({"orderId": "o-1", "qty": 2, "reason": "timeout"})),
            ]),
        case("cascades: templates typed and interpolated, filters resolved, another component", FANOUT, "Batch")
            .context(json!({"batchId": 5}))
            .steps(vec![
                send(1, "Close", json!({"user": "ann"}))
                    .gives("t0 Open -> Closed", "Closed")
                    .effects(&[
                        r#"cascade Item[Pending] BatchClosed {"batchId":5,"label":"batch 5 by ann"} filters=[batch === 5]"#,
                        r#"cascade Audit/Log[Ready] Record {"closedBy":"ann"} filters=[]"#,
                    ]),
            ]),
        case("cascades: a missing rule value selects nothing (filters none), missing keys dropped", FANOUT, "Batch")
            .steps(vec![
                send(1, "Close", json!({}))
                    .gives("t0 Open -> Closed", "Closed")
                    .effects(&[
                        r#"cascade Item[Pending] BatchClosed {"label":"batch  by "} filters=none"#,
                        "cascade Audit/Log[Ready] Record {} filters=[]",
                    ]),
            ]),
        case("self-loop re-arms from the step's now, resetOnTransition:false keeps its deadline; leaving cancels", SESSION, "Session")
            .created_timers(&[("HardLimit", 5000), ("IdleOut", 1000)])
            .steps(vec![
                send(600, "Touch", json!({}))
                    .gives("t0 Active -> Active", "Active")
                    .timers(&[("HardLimit", 5000), ("IdleOut", 1600)]),
                fire(1000, "IdleOut")
                    .gives("ignored StaleTimer", "Active")
                    .timers(&[("HardLimit", 5000), ("IdleOut", 1600)]),
                fire(1600, "IdleOut")
                    .gives("t1 Active -> Idle", "Idle")
                    .timers(&[("Reap", 1600)])
                    .data(json!({"reason": "timeout"})),
                fire(5000, "HardLimit").gives("ignored StaleTimer", "Idle").timers(&[("Reap", 1600)]),
                fire(1600, "Reap")
                    .gives("t5 Idle -> Closed", "Closed (completed)")
                    .data(json!({"reason": "auto-transition"})),
            ]),
        case("re-entering a state arms all its timers afresh; the left state's auto timer is stale", SESSION, "Session")
            .created_timers(&[("HardLimit", 5000), ("IdleOut", 1000)])
            .steps(vec![
                send(100, "Pause", json!({})).gives("t3 Active -> Idle", "Idle").timers(&[("Reap", 100)]),
                send(150, "Resume", json!({}))
                    .gives("t4 Idle -> Active", "Active")
                    .timers(&[("HardLimit", 5150), ("IdleOut", 1150)]),
                fire(150, "Reap")
                    .gives("ignored StaleTimer", "Active")
                    .timers(&[("HardLimit", 5150), ("IdleOut", 1150)]),
            ]),
        case("a timer fired before its deadline is stale and stays armed", SESSION, "Session")
            .created_timers(&[("HardLimit", 5000), ("IdleOut", 1000)])
            .steps(vec![
                fire(999, "IdleOut")
                    .gives("ignored StaleTimer", "Active")
                    .timers(&[("HardLimit", 5000), ("IdleOut", 1000)]),
                fire(1000, "IdleOut").gives("t1 Active -> Idle", "Idle").timers(&[("Reap", 1000)]),
            ]),
        case("unknown event and known event from another state: NoTransition", SESSION, "Session")
            .created_timers(&[("HardLimit", 5000), ("IdleOut", 1000)])
            .steps(vec![
                send(10, "Nope", json!({}))
                    .gives("ignored NoTransition", "Active")
                    .timers(&[("HardLimit", 5000), ("IdleOut", 1000)]),
                send(10, "Resume", json!({}))
                    .gives("ignored NoTransition", "Active")
                    .timers(&[("HardLimit", 5000), ("IdleOut", 1000)]),
            ]),
        case("auto transitions: armed at creation with delay 0, then with a delay, restarted by a self-loop", BOOT, "Boot")
            .created_timers(&[("Started", 0)])
            .steps(vec![
                fire(0, "Started").gives("t0 Starting -> Warm", "Warm").timers(&[("Warmed", 250)]),
                send(100, "Poke", json!({})).gives("t2 Warm -> Warm", "Warm").timers(&[("Warmed", 350)]),
                fire(350, "Warmed")
                    .gives("t1 Warm -> Ready", "Ready")
                    .data(json!({"reason": "auto-transition"})),
            ]),
        // Pinned as the engine behaves today: the refused timer is consumed and not re-armed, so
        // the instance stays in `Held` with no timer left (a later event is its only way out).
        case("a timeout whose guard is false is rejected and consumed", BOOT, "Lease")
            .context(json!({"expires": false}))
            .created_timers(&[("Expire", 100)])
            .steps(vec![
                fire(100, "Expire")
                    .gives("ignored Rejected[t0 GuardFalse `context.expires`]", "Held"),
                fire(100, "Expire").gives("ignored StaleTimer", "Held"),
            ]),
        case("guards: the first candidate that holds, in declaration order (both hold)", LOANS, "Loan")
            .context(json!({"amount": 9000}))
            .steps(vec![send(1, "Decide", json!({})).gives("t0 Review -> Big", "Big")]),
        case("guards: a false guard passes to the next candidate", LOANS, "Loan")
            .context(json!({"amount": 100}))
            .steps(vec![send(1, "Decide", json!({})).gives("t1 Review -> Small", "Small")]),
        case("guards: un-evaluable guards fall through to an unguarded candidate", LOANS, "Loan")
            .steps(vec![send(1, "Decide", json!({})).gives("t2 Review -> Manual", "Manual")]),
        case("guards: all false, then the payload merged before the guard makes one hold", LOANS, "Strict")
            .context(json!({"amount": 10}))
            .steps(vec![
                send(1, "Approve", json!({"urgent": false}))
                    .gives(
                        "ignored Rejected[t0 GuardFalse `context.amount > 5000`; t1 GuardFalse `payload.urgent == true`]",
                        "Review",
                    )
                    .data(json!({"amount": 10})),
                send(2, "Approve", json!({"amount": 6000}))
                    .gives("t0 Review -> Approved", "Approved")
                    .data(json!({"amount": 6000})),
                send(3, "Reopen", json!({})).gives("t2 Approved -> Review", "Review"),
            ]),
        case("guards: missing fields are GuardErrors with the evaluator's reason", LOANS, "Strict")
            .steps(vec![
                send(1, "Approve", json!({})).gives(
                    "ignored Rejected[\
                     t0 GuardError guard `context.amount > 5000` could not be evaluated: no such key: amount; \
                     t1 GuardError guard `payload.urgent == true` could not be evaluated: no such key: urgent]",
                    "Review",
                ),
            ]),
        case("rules: a rule-bearing candidate wins over an earlier plain one and does not merge", ROUTING, "Router")
            .context(json!({"id": 7}))
            .steps(vec![
                send(1, "Route", json!({"id": 7, "note": "x"}))
                    .gives("t1 Waiting -> Specific", "Specific")
                    .data(json!({"id": 7})),
            ]),
        case("rules: when they do not hold, the plain candidate is taken and merges", ROUTING, "Router")
            .context(json!({"id": 7}))
            .steps(vec![
                send(1, "Route", json!({"id": 8}))
                    .gives("t0 Waiting -> General", "General")
                    .data(json!({"id": 8})),
            ]),
        case("rules: not holding, missing in the payload, then holding with the guard false", ROUTING, "Picky")
            .context(json!({"customer": "c1"}))
            .steps(vec![
                send(1, "Offer", json!({"customer": "c2", "total": 500}))
                    .gives("ignored Rejected[t0 RulesDidNotMatch; t1 RulesDidNotMatch]", "Waiting"),
                send(2, "Offer", json!({"total": 500}))
                    .gives("ignored Rejected[t0 RulesDidNotMatch; t1 RulesDidNotMatch]", "Waiting"),
                send(3, "Offer", json!({"customer": "c1", "total": 50}))
                    .gives("t1 Waiting -> Matched", "Matched")
                    .data(json!({"customer": "c1"})),
            ]),
        case("rules and guard both holding on the first candidate", ROUTING, "Picky")
            .context(json!({"customer": "c1"}))
            .steps(vec![
                send(1, "Offer", json!({"customer": "c1", "total": 500}))
                    .gives("t0 Waiting -> Big", "Big"),
            ]),
        // The failing onExit's commands and data change are both dropped.
        case("hooks: a failing hook is recorded and its commands dropped; created ids are v7 at now", JOBS, "Job")
            .steps(vec![
                send(10, "Start", json!({}))
                    .gives("t0 Queued -> Running", "Running")
                    .calls(&[
                        "onExit failExit@Queued {}",
                        r#"triggeredMethod spawnWorkers@Queued {}"#,
                        r#"onEntry markRunning@Running {}"#,
                    ])
                    .effects(&[
                        "hook-failed onExit failExit: failExit failed",
                        r#"create Worker v7@10 {"by":"spawnWorkers"}"#,
                        "create Remote/Agent v7@10 {}",
                        "send v7@10 Hello {}",
                        "send self spawnWorkers {}",
                        "send self markRunning {}",
                    ])
                    .data(json!({"markRunning": true})),
                send(20, "Scale", json!({}))
                    .gives("t2 Running -> Running", "Running")
                    .calls(&[
                        r#"triggeredMethod spawnMore@Running {"markRunning":true}"#,
                        r#"onEntry markRunning@Running {"markRunning":true}"#,
                    ])
                    .effects(&[
                        r#"create Worker v7@20 {"by":"spawnMore"}"#,
                        "create Remote/Agent v7@20 {}",
                        "send v7@20 Hello {}",
                        "send self spawnMore {}",
                        "send self markRunning {}",
                    ]),
                send(30, "Crash", json!({}))
                    .gives("t1 Running -> Crashed", "Crashed (error)")
                    .calls(&[r#"onEntry spawnReport@Crashed {"markRunning":true}"#])
                    .effects(&[
                        r#"create Worker v7@30 {"by":"spawnReport"}"#,
                        "create Remote/Agent v7@30 {}",
                        "send v7@30 Hello {}",
                        "send self spawnReport {}",
                    ]),
                send(40, "Scale", json!({})).gives("ignored NotActive", "Crashed (error)"),
            ]),
        // Past the bound the hook failed: none of its commands leave.
        case("hooks: more commands than a hook may issue is a hook failure", JOBS, "Pump")
            .steps(vec![
                send(1, "Flood", json!({}))
                    .gives("t0 Idle -> Busy", "Busy")
                    .calls(&["onEntry floodEntry@Busy {}"])
                    .effects(&[
                        "hook-failed onEntry floodEntry: more than 10000 commands issued by one hook call",
                    ]),
            ]),
        case("notifyParent on a transition: context included, state left out; none without it", FAMILY, "Child")
            .context(json!({"name": "kid"}))
            .parent()
            .steps(vec![
                send(1, "Grow", json!({"age": 3}))
                    .gives("t0 Born -> Grown", "Grown")
                    .effects(&[
                        r##"notify #99 ChildGrew {"childContext":{"age":3,"name":"kid"},"childInstanceId":"#1","childMachine":"Child","previousState":"Born"}"##,
                    ]),
                send(2, "Leave", json!({})).gives("t1 Grown -> Gone", "Gone (completed)"),
            ]),
        case("notifyParent on a transition of an instance without a parent: nothing sent", FAMILY, "Child")
            .steps(vec![send(1, "Grow", json!({})).gives("t0 Born -> Grown", "Grown")]),
    ]
}

// ---------------------------------------------------------------------------------------------
// Rows: a case and its steps, built with small chained setters so each row reads as a sentence.

struct Case {
    name: &'static str,
    yaml: &'static str,
    machine: &'static str,
    context: Value,
    parent: bool,
    created_timers: Vec<(&'static str, Millis)>,
    steps: Vec<Step>,
}

fn case(name: &'static str, yaml: &'static str, machine: &'static str) -> Case {
    Case {
        name,
        yaml,
        machine,
        context: json!({}),
        parent: false,
        created_timers: Vec::new(),
        steps: Vec::new(),
    }
}

impl Case {
    fn context(mut self, context: Value) -> Case {
        self.context = context;
        self
    }
    /// The instance is a child of `#99` (machine `Customer`).
    fn parent(mut self) -> Case {
        self.parent = true;
        self
    }
    fn created_timers(mut self, timers: &[(&'static str, Millis)]) -> Case {
        self.created_timers = timers.to_vec();
        self
    }
    fn steps(mut self, steps: Vec<Step>) -> Case {
        self.steps = steps;
        self
    }
}

#[derive(Debug, Clone)]
enum Input {
    /// An event with its payload.
    Event(&'static str, Value),
    /// The timer of the timed transition on this event fires.
    Timer(&'static str),
}

struct Step {
    /// `now`, as an offset from `T0`.
    at: Millis,
    input: Input,
    expected: Observed,
    /// The whole instance data after the step, when the row pins it.
    data: Option<Value>,
}

/// What one step produced, rendered; also what a row expects (empty lists mean "none").
#[derive(Debug, Clone, PartialEq, Default)]
struct Observed {
    outcome: String,
    state: String,
    timers: Vec<(String, Millis)>,
    calls: Vec<String>,
    effects: Vec<String>,
}

fn send(at: Millis, event: &'static str, payload: Value) -> Step {
    Step { at, input: Input::Event(event, payload), expected: Observed::default(), data: None }
}

fn fire(at: Millis, event: &'static str) -> Step {
    Step { at, input: Input::Timer(event), expected: Observed::default(), data: None }
}

impl Step {
    /// The result (`t<index> From -> To` or `ignored <reason>`) and the state after it
    /// (`Name`, or `Name (completed)` / `Name (error)` once finished).
    fn gives(mut self, outcome: &str, state: &str) -> Step {
        self.expected.outcome = outcome.to_owned();
        self.expected.state = state.to_owned();
        self
    }
    fn timers(mut self, timers: &[(&str, Millis)]) -> Step {
        self.expected.timers = timers.iter().map(|(name, at)| ((*name).to_owned(), *at)).collect();
        self
    }
    fn calls(mut self, calls: &[&str]) -> Step {
        self.expected.calls = calls.iter().map(|call| (*call).to_owned()).collect();
        self
    }
    fn effects(mut self, effects: &[&str]) -> Step {
        self.expected.effects = effects.iter().map(|effect| (*effect).to_owned()).collect();
        self
    }
    fn data(mut self, data: Value) -> Step {
        self.data = Some(data);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The test hooks.

/// Logs every call and acts on the method name (see the module comment).
#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<String>,
}

impl Hooks for Recorder {
    fn call(&mut self, call: HookCall<'_>) -> Result<(), String> {
        let method = call.method.to_owned();
        self.calls.push(format!(
            "{} {}@{} {}",
            call.kind.as_str(),
            method,
            call.state,
            canon_map(call.context)
        ));
        if method.starts_with("flood") {
            for _ in 0..=MAX_COMMANDS_PER_HOOK {
                call.sender.send_to_self("tick", Context::new());
            }
            return Ok(());
        }
        if method.starts_with("spawn") {
            let worker = call.sender.create_instance("Worker", object(json!({"by": method})));
            call.sender.create_instance_in_component("Remote", "Agent", Context::new());
            call.sender.send_to(worker, "Hello", Context::new());
        }
        call.sender.send_to_self(method.clone(), Context::new());
        if method.starts_with("mark") || method.starts_with("fail") {
            call.context.insert(method.clone(), Value::Bool(true));
        }
        if method.starts_with("fail") {
            return Err(format!("{method} failed"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case.

/// Everything one run produced, compared between the two runs of a case.
#[derive(Debug, PartialEq)]
struct Run {
    created: Instance,
    steps: Vec<(StepResult, Instance, Vec<String>)>,
}

fn compile(case: &Case) -> Definition {
    let loaded = parse_component(case.yaml, case.name)
        .unwrap_or_else(|diagnostics| panic!("{}: does not load: {diagnostics:?}", case.name));
    let diagnostics = validate(&loaded, &ValidateOptions { strict: false });
    assert!(!has_errors(&diagnostics), "{}: invalid component: {diagnostics:?}", case.name);
    Definition::compile(loaded.component)
        .unwrap_or_else(|errors| panic!("{}: does not compile: {errors:?}", case.name))
}

fn run(case: &Case) -> (Definition, Run) {
    let definition = compile(case);
    let machine = definition
        .machine_index(case.machine)
        .unwrap_or_else(|| panic!("{}: no machine {}", case.name, case.machine));
    let parent = case.parent.then(|| ParentRef {
        instance_id: InstanceId(uuid::Uuid::from_u128(PARENT)),
        machine: "Customer".to_owned(),
    });
    let mut instance = engine::create(
        &definition,
        machine,
        InstanceId(uuid::Uuid::from_u128(SUBJECT)),
        object(case.context.clone()),
        parent,
        T0,
    );
    let created = instance.clone();
    let mut steps = Vec::new();
    for step in &case.steps {
        let mut hooks = Recorder::default();
        let now = T0 + step.at;
        let result = match &step.input {
            Input::Event(name, payload) => {
                let payload = object(payload.clone());
                let event = EventRef { name, payload: &payload };
                engine::step(&definition, &mut instance, event, now, &mut hooks)
            }
            Input::Timer(name) => {
                let machine_def = definition.machine(machine);
                let index = machine_def
                    .transitions
                    .iter()
                    .position(|t| t.kind.is_timed() && &*t.event_name == *name)
                    .unwrap_or_else(|| panic!("{}: no timed transition on {name}", case.name));
                let payload = timer_payload(machine_def.transitions[index].kind);
                let index = u16::try_from(index).expect("few transitions");
                engine::fire_timer(&definition, &mut instance, index, &payload, now, &mut hooks)
            }
        };
        steps.push((result, instance.clone(), hooks.calls));
    }
    (definition, Run { created, steps })
}

#[test]
fn engine_cases() {
    let cases = cases();
    assert!(cases.len() >= 20, "the table shrank to {} cases", cases.len());
    for case in &cases {
        let (definition, first) = run(case);
        let (_, second) = run(case);
        assert_eq!(first, second, "{}: two runs on the same inputs differ", case.name);

        let machine = definition.machine(first.created.machine);
        assert_eq!(first.created.status, Status::Active, "{}: created", case.name);
        assert_eq!(
            timers_of(&definition, &first.created),
            owned_timers(&case.created_timers),
            "{}: timers armed at creation",
            case.name
        );
        let mut created_ids = Vec::new();
        for (number, (step, (result, instance, calls))) in
            case.steps.iter().zip(&first.steps).enumerate()
        {
            let label =
                format!("{} / step {} ({:?} at +{})", case.name, number + 1, step.input, step.at);
            let effects = match result {
                StepResult::Transitioned(moved) => {
                    assert_eq!(instance.state, moved.to, "{label}: state is the target");
                    assert_eq!(instance.updated_at, T0 + step.at, "{label}: updated_at is now");
                    for effect in &moved.effects {
                        if let Effect::Command(Command::Create { id, .. }) = effect {
                            assert!(!created_ids.contains(id), "{label}: id {id} given twice");
                            created_ids.push(*id);
                        }
                    }
                    moved.effects.as_slice()
                }
                StepResult::Ignored(_) => &[],
            };
            let observed = Observed {
                outcome: render_result(machine, result),
                state: render_state(machine, instance),
                timers: timers_of(&definition, instance),
                calls: calls.clone(),
                effects: run_length(
                    effects.iter().map(|e| render_effect(&definition, e)).collect(),
                ),
            };
            assert_eq!(observed, step.expected, "{label}");
            if let Some(data) = &step.data {
                assert_eq!(
                    Value::Object(Context::clone(&instance.context)),
                    *data,
                    "{label}: data"
                );
            }
        }
    }
}

/// A step on a copy of an instance at the same `now` names the same new instances; at another
/// `now` (or later in the sequence) it names others.
#[test]
fn hook_created_ids_derive_from_the_step() {
    let definition = compile(&case("ids", JOBS, "Job"));
    let machine = definition.machine_index("Job").expect("Job machine");
    let start = engine::create(
        &definition,
        machine,
        InstanceId(uuid::Uuid::from_u128(SUBJECT)),
        Context::new(),
        None,
        T0,
    );
    let created_by = |instance: &Instance, now: Millis| -> Vec<InstanceId> {
        let mut instance = instance.clone();
        let payload = Context::new();
        let result = engine::step(
            &definition,
            &mut instance,
            EventRef { name: "Start", payload: &payload },
            now,
            &mut Recorder::default(),
        );
        let StepResult::Transitioned(moved) = result else { panic!("Start is taken: {result:?}") };
        moved
            .effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Command(Command::Create { id, .. }) => Some(*id),
                _ => None,
            })
            .collect()
    };
    let first = created_by(&start, T0 + 10);
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1], "distinct within a step");
    assert_eq!(created_by(&start, T0 + 10), first, "same step, same ids");
    let later = created_by(&start, T0 + 11);
    assert!(later.iter().all(|id| !first.contains(id)), "another now, other ids");
    let mut other = start.clone();
    other.id = InstanceId(uuid::Uuid::from_u128(2));
    let from_other = created_by(&other, T0 + 10);
    assert!(from_other.iter().all(|id| !first.contains(id)), "another instance, other ids");
    for id in first.iter().chain(&later) {
        assert_eq!(id.0.get_version_num(), 7, "{id} is a v7 UUID");
        assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122, "{id} has the RFC 4122 variant");
    }
}

/// What an API may offer: every transition leaving the current state, timed ones included, in
/// declaration order; nothing once the instance has finished.
#[test]
fn available_transitions_follow_the_state() {
    let definition = compile(&case("available", SESSION, "Session"));
    let machine = definition.machine_index("Session").expect("Session machine");
    let mut instance = engine::create(
        &definition,
        machine,
        InstanceId(uuid::Uuid::from_u128(SUBJECT)),
        Context::new(),
        None,
        T0,
    );
    let offered = |instance: &Instance| -> Vec<String> {
        engine::available_transitions(&definition, instance)
            .into_iter()
            .map(|(index, transition)| format!("t{index} {}", transition.event_name))
            .collect()
    };
    assert_eq!(offered(&instance), ["t0 Touch", "t1 IdleOut", "t2 HardLimit", "t3 Pause"]);
    let payload = Context::new();
    let pause = EventRef { name: "Pause", payload: &payload };
    engine::step(&definition, &mut instance, pause, T0 + 1, &mut Recorder::default());
    assert_eq!(offered(&instance), ["t4 Resume", "t5 Reap"]);
    let reap = timer_payload(definition.machine(machine).transition(5).kind);
    engine::fire_timer(&definition, &mut instance, 5, &reap, T0 + 1, &mut Recorder::default());
    assert_eq!(instance.status, Status::Completed);
    assert!(offered(&instance).is_empty(), "a finished instance offers nothing");
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn object(value: Value) -> Context {
    match value {
        Value::Object(map) => map,
        other => panic!("test data must be a JSON object, got {other}"),
    }
}

fn owned_timers(timers: &[(&str, Millis)]) -> Vec<(String, Millis)> {
    timers.iter().map(|(name, at)| ((*name).to_owned(), *at)).collect()
}

/// Armed timers as (event, deadline offset), sorted: their order in the instance is not a contract.
fn timers_of(definition: &Definition, instance: &Instance) -> Vec<(String, Millis)> {
    let machine = definition.machine(instance.machine);
    let mut timers: Vec<(String, Millis)> = instance
        .timers
        .iter()
        .map(|timer| {
            (machine.transition(timer.transition).event_name.to_string(), timer.deadline - T0)
        })
        .collect();
    timers.sort();
    timers
}

fn render_result(machine: &xcomponent_core::definition::MachineDef, result: &StepResult) -> String {
    match result {
        StepResult::Transitioned(moved) => format!(
            "t{} {} -> {}",
            moved.transition,
            machine.state(moved.from).name,
            machine.state(moved.to).name
        ),
        StepResult::Ignored(Ignored::Rejected { rejections }) => {
            let parts: Vec<String> = rejections
                .iter()
                .map(|(index, rejection)| match rejection {
                    Rejection::GuardFalse { guard } => format!("t{index} GuardFalse `{guard}`"),
                    Rejection::GuardError { error, .. } => format!("t{index} GuardError {error}"),
                    Rejection::RulesDidNotMatch => format!("t{index} RulesDidNotMatch"),
                })
                .collect();
            format!("ignored Rejected[{}]", parts.join("; "))
        }
        StepResult::Ignored(ignored) => format!("ignored {ignored:?}"),
    }
}

fn render_state(machine: &xcomponent_core::definition::MachineDef, instance: &Instance) -> String {
    let name = &machine.state(instance.state).name;
    match instance.status {
        Status::Active => name.to_string(),
        status => format!("{name} ({})", status.as_str()),
    }
}

fn render_effect(definition: &Definition, effect: &Effect) -> String {
    let component =
        |component: Option<&str>| component.map(|c| format!("{c}/")).unwrap_or_default();
    match effect {
        Effect::Command(Command::Send { component: to, target, event, payload }) => {
            let target = match target {
                Target::SelfInstance => "self".to_owned(),
                Target::Instance(id) => short_id(*id),
            };
            format!("send {}{target} {event} {}", component(to.as_deref()), canon_map(payload))
        }
        Effect::Command(Command::Broadcast {
            component: to,
            machine,
            state,
            event,
            payload,
            filters,
        }) => {
            format!(
                "broadcast {}{machine}[{}] {event} {} filters={}",
                component(to.as_deref()),
                state.as_deref().unwrap_or("*"),
                canon_map(payload),
                render_filters(Some(filters))
            )
        }
        Effect::Command(Command::Create { component: to, machine, id, context }) => format!(
            "create {}{machine} {} {}",
            component(to.as_deref()),
            short_id(*id),
            canon_map(context)
        ),
        Effect::Cascade { component: to, machine, state, event, payload, filters } => format!(
            "cascade {}{machine}[{state}] {event} {} filters={}",
            component(to.as_deref()),
            canon_map(payload),
            render_filters(filters.as_ref())
        ),
        Effect::NotifyParent { parent, event, payload } => {
            format!("notify {} {event} {}", short_id(*parent), canon_map(payload))
        }
        Effect::CreateChild { machine, context } => {
            format!("child {} {}", definition.machine(*machine).name, canon_map(context))
        }
        Effect::CrossComponent { target, context, filters } => format!(
            "cross {}/{} {} {} filters={}",
            target.component,
            target.machine,
            target.event.as_deref().unwrap_or("create"),
            canon_map(context),
            render_filters(filters.as_ref())
        ),
        Effect::HookFailed { kind, method, error } => {
            format!("hook-failed {} {method}: {error}", kind.as_str())
        }
    }
}

fn render_filters(filters: Option<&Vec<PropertyFilter>>) -> String {
    match filters {
        None => "none".to_owned(),
        Some(filters) => {
            let parts: Vec<String> = filters
                .iter()
                .map(|f| format!("{} {} {}", f.property, f.operator.as_str(), canon(&f.value)))
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// Folds runs of identical effects into one line ending in `xN`.
fn run_length(lines: Vec<String>) -> Vec<String> {
    let mut folded: Vec<(String, usize)> = Vec::new();
    for line in lines {
        match folded.last_mut() {
            Some((last, count)) if *last == line => *count += 1,
            _ => folded.push((line, 1)),
        }
    }
    folded
        .into_iter()
        .map(|(line, count)| if count == 1 { line } else { format!("{line} x{count}") })
        .collect()
}

/// `#n` for the fixed ids of the tests; `v7@<offset>` for a hook-created id, after checking it
/// is a UUID v7 whose timestamp is a millisecond time at or after `T0`.
fn short_id(id: InstanceId) -> String {
    let value = id.0.as_u128();
    if value < 1 << 16 {
        return format!("#{value}");
    }
    assert_eq!(id.0.get_version_num(), 7, "{id} is not a UUID v7");
    assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122, "{id} has not the RFC 4122 variant");
    let (seconds, nanos) = id.0.get_timestamp().expect("a v7 UUID has a timestamp").to_unix();
    let millis = i64::try_from(seconds).expect("seconds fit") * 1000 + i64::from(nanos / 1_000_000);
    format!("v7@{}", millis - T0)
}

fn canon_map(map: &Context) -> String {
    canon(&Value::Object(map.clone()))
}

/// JSON with sorted keys (whatever serde_json's map order is) and test ids shortened.
fn canon(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| format!("{}:{}", Value::String(key.clone()), canon(value)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            format!("[{}]", items.iter().map(canon).collect::<Vec<_>>().join(","))
        }
        Value::String(text) => match text.parse::<uuid::Uuid>() {
            Ok(id) => format!("\"{}\"", short_id(InstanceId(id))),
            Err(_) => value.to_string(),
        },
        other => other.to_string(),
    }
}
