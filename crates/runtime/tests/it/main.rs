//! Integration tests of the runtime: one binary, one module per topic, shared helpers here.
//! Timers run on a `ManualClock` with `TimerMode::Manual`, so every timer test is exact and
//! instant (no sleeps).

#![allow(clippy::unwrap_used)]

mod bus;
mod check_payment;
mod cluster_creation;
mod cluster_discovery;
mod cluster_reads;
mod context_schema;
mod cross_component;
mod delivery;
mod hooks;
mod leases;
mod lifecycle;
mod matching;
mod persistence;
mod publish_hook;
mod replicas;
mod shutdown;
mod simulation;
mod timers;
mod webhooks;

use std::sync::Arc;
use xcomponent_core::clock::ManualClock;
use xcomponent_core::definition::Definition;
use xcomponent_core::model::Component;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{
    EventBatch, Handlers, Runtime, RuntimeBuilder, RuntimeEvent, RuntimeHandle, RuntimeOptions,
    SendOutcome, TimerMode,
};

/// Start of the manual clock in every test (an arbitrary fixed instant).
pub const T0: i64 = 1_700_000_000_000;

/// Parses and compiles one component from test YAML; panics on an invalid fixture.
pub fn definition(yaml: &str) -> Definition {
    let component: Component = serde_saphyr::from_str(yaml).expect("test YAML parses");
    Definition::compile(component).expect("test component compiles")
}

/// A started runtime with the pieces a test drives it through.
pub struct TestRuntime {
    /// The running runtime (dropped at the end of the test).
    pub runtime: Runtime,
    /// Handle used to send events and read instances.
    pub handle: RuntimeHandle,
    /// The manual clock the runtime reads; only `advance` moves it.
    pub clock: Arc<ManualClock>,
    /// Runtime event batches, subscribed right after the runtime started.
    pub events: tokio::sync::broadcast::Receiver<EventBatch>,
}

/// Starts a runtime on two shards with manual timers, its clock at [`T0`].
pub async fn start(
    yamls: &[&str],
    handlers: Handlers,
    store: Option<Arc<dyn EventStore>>,
) -> TestRuntime {
    start_at(yamls, handlers, store, Arc::new(ManualClock::new(T0))).await
}

/// Starts a runtime on two shards with manual timers, reading the given clock.
pub async fn start_at(
    yamls: &[&str],
    handlers: Handlers,
    store: Option<Arc<dyn EventStore>>,
    clock: Arc<ManualClock>,
) -> TestRuntime {
    let options =
        RuntimeOptions { shards: 2, timer_mode: TimerMode::Manual, ..RuntimeOptions::default() };
    start_with(yamls, handlers, store, clock, options).await
}

/// Starts a runtime with the given options, reading the given clock.
pub async fn start_with(
    yamls: &[&str],
    handlers: Handlers,
    store: Option<Arc<dyn EventStore>>,
    clock: Arc<ManualClock>,
    options: RuntimeOptions,
) -> TestRuntime {
    let mut builder =
        RuntimeBuilder::new().handlers(handlers).clock(clock.clone()).options(options);
    for yaml in yamls {
        builder = builder.component(definition(yaml));
    }
    if let Some(store) = store {
        builder = builder.store(store);
    }
    let runtime = builder.start().await.expect("runtime starts");
    let handle = runtime.handle();
    let events = handle.subscribe();
    TestRuntime { runtime, handle, clock, events }
}

impl TestRuntime {
    /// Current state name of a live instance (None once disposed).
    pub async fn state(&self, id: xcomponent_core::InstanceId) -> Option<String> {
        self.handle.instance(id).await.map(|view| view.current_state.to_string())
    }

    /// Advances the manual clock and fires what is due, letting effects settle.
    pub async fn advance(&self, ms: i64) {
        self.clock.advance(ms);
        self.handle.tick().await.expect("tick");
    }

    /// Every runtime event received so far.
    pub fn drain_events(&mut self) -> Vec<RuntimeEvent> {
        let mut out = Vec::new();
        while let Ok(batch) = self.events.try_recv() {
            out.extend(batch.iter().cloned());
        }
        out
    }
}

/// The state an outcome moved to; panics if the event was ignored.
pub fn new_state(outcome: &SendOutcome) -> &str {
    match outcome {
        SendOutcome::Transitioned { new_state, .. } => new_state,
        SendOutcome::Ignored { reason, .. } => {
            panic!("expected a transition, got ignored: {reason}")
        }
    }
}

/// A JSON object as an instance context; panics on any other JSON value.
pub fn ctx(value: serde_json::Value) -> xcomponent_core::Context {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("context must be an object, got {other}"),
    }
}
