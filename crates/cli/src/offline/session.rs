//! An offline session: one runtime in this process (memory store, one shard, manual clock and
//! manual timers, so a run is exact, instant and repeatable) driven step by step, with the
//! runtime events of each step collected into trace lines.
//!
//! Drive a session from a current-thread Tokio runtime (as `run` and the golden tests do): each
//! step then ends only once everything it caused is processed and its events are published, so
//! the trace is complete and in a repeatable order. On a multi-thread runtime `tick`/`flush` can
//! return while a chain of self-routed effects is still running (a known runtime issue).

use super::script::{Item, Step, Target};
use super::trace::{Known, Line, Tracker};
use anyhow::{Context as _, Result, anyhow, bail};
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::TryRecvError};
use xcomponent_core::clock::{Clock, ManualClock};
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{Context, InstanceId, Millis, Status};
use xcomponent_core::matching::strict_equals;
use xcomponent_runtime::{
    EventBatch, Handlers, InstanceFilter, Runtime, RuntimeBuilder, RuntimeError, RuntimeHandle,
    RuntimeOptions, TimerMode,
};
use xcomponent_store::MemoryStore;

/// How an instance stands at the end of a session.
#[derive(Debug, Clone)]
pub struct FinalState {
    /// What the trace knows.
    pub known: Known,
    /// Armed timers of a live instance: (event, due time relative to the start).
    pub timers: Vec<(String, Millis)>,
}

/// A running offline session.
pub struct Session {
    runtime: Runtime,
    handle: RuntimeHandle,
    clock: Arc<ManualClock>,
    start: Millis,
    events: broadcast::Receiver<EventBatch>,
    tracker: Tracker,
    main: Option<InstanceId>,
}

impl Session {
    /// Starts a runtime hosting `definitions` with `handlers`, its clock showing `start`.
    /// Returns the session and a line per instance that already exists (auto-created entry points).
    pub async fn start(
        definitions: Vec<Definition>,
        handlers: Handlers,
        start: Millis,
    ) -> Result<(Session, Vec<Line>)> {
        let clock = Arc::new(ManualClock::new(start));
        let show_component = definitions.len() > 1;
        let options = RuntimeOptions {
            shards: 1,
            timer_mode: TimerMode::Manual,
            ..RuntimeOptions::default()
        };
        let mut builder = RuntimeBuilder::new()
            .handlers(handlers)
            .clock(clock.clone())
            .options(options)
            .store(Arc::new(MemoryStore::new()));
        for definition in definitions {
            builder = builder.component(definition);
        }
        let runtime = builder.start().await.context("the runtime did not start")?;
        let handle = runtime.handle();
        let events = handle.subscribe();
        let mut session = Session {
            runtime,
            handle,
            clock,
            start,
            events,
            tracker: Tracker::new(show_component),
            main: None,
        };
        let mut lines = Vec::new();
        for view in session
            .handle
            .instances(InstanceFilter { limit: usize::MAX, ..InstanceFilter::default() })
            .await
        {
            lines.push(session.tracker.existing(
                view.id,
                &view.component_name,
                &view.machine_name,
                &view.current_state,
                view.context.clone(),
                0,
            ));
        }
        Ok((session, lines))
    }

    /// The runtime (registry, queries).
    pub fn handle(&self) -> &RuntimeHandle {
        &self.handle
    }

    /// What the trace knows so far.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Milliseconds since the start.
    pub fn elapsed(&self) -> Millis {
        self.clock.now() - self.start
    }

    /// Creates the main instance (events without an address go to it). When the machine is a
    /// singleton entry point that already exists, that instance becomes the main one.
    pub async fn create_main(
        &mut self,
        component: &str,
        machine: &str,
        context: Context,
    ) -> Result<Vec<Line>> {
        let id = match self.handle.create_instance(component, machine, context).await {
            Ok(id) => id,
            Err(RuntimeError::SingletonExists { existing, .. }) => existing,
            Err(error) => {
                return Err(anyhow!(error).context(format!("cannot create the {machine} instance")));
            }
        };
        self.main = Some(id);
        self.settle().await
    }

    /// Carries out one item; errors name the item.
    pub async fn apply(&mut self, item: &Item) -> Result<Vec<Line>> {
        self.apply_step(&item.step)
            .await
            .with_context(|| format!("item {} `{}` failed", item.number, item.text))
    }

    /// Carries out one step.
    pub async fn apply_step(&mut self, step: &Step) -> Result<Vec<Line>> {
        match step {
            Step::Send { target, event, payload } => {
                let id = self.resolve(target)?;
                match self.handle.send_event(id, event, payload.clone()).await {
                    Ok(_) => {}
                    Err(RuntimeError::UnknownInstance(_)) => {
                        let label = self
                            .tracker
                            .get(&id)
                            .map(|known| known.label.clone())
                            .unwrap_or_else(|| id.to_string());
                        bail!("instance {label} is not live (it has finished, or never existed)");
                    }
                    Err(error) => return Err(error.into()),
                }
                self.settle().await
            }
            Step::Create { component, machine, context } => {
                let registry = self.handle.registry();
                let definition =
                    super::load::find_machine(registry.components(), machine, component.as_deref())
                        .map_err(|message| anyhow!(message))?;
                let name = definition.name.to_string();
                self.handle.create_instance(&name, machine, context.clone()).await?;
                self.settle().await
            }
            Step::Broadcast { component, machine, state, event, payload } => {
                let registry = self.handle.registry();
                let name =
                    super::load::find_machine(registry.components(), machine, component.as_deref())
                        .map_err(|message| anyhow!(message))?
                        .name
                        .to_string();
                let count = self
                    .handle
                    .broadcast(&name, machine, state.as_deref(), event, payload.clone(), Vec::new())
                    .await?;
                let t = self.elapsed();
                let scope =
                    state.as_deref().map(|state| format!(" in {state}")).unwrap_or_default();
                let text = format!(
                    "broadcast {event} to {machine}{scope} {}: {count} instance(s) moved",
                    self.tracker.render_value(&serde_json::Value::Object(payload.clone()))
                );
                let mut lines = vec![Line {
                    t,
                    text: format!("{:>8}  {text}", super::trace::format_relative(t)),
                    json: serde_json::json!({"t": t, "kind": "broadcast", "componentName": name, "machineName": machine, "state": state, "event": event, "payload": payload, "transitioned": count}),
                }];
                lines.append(&mut self.settle().await?);
                Ok(lines)
            }
            Step::Advance { ms } => self.advance(*ms).await,
        }
    }

    /// Moves the clock forward by `ms`, stopping at each timer deadline on the way so every
    /// timer fires at its own time (and timers armed on the way are honoured).
    pub async fn advance(&mut self, ms: u64) -> Result<Vec<Line>> {
        let target = self.clock.now().saturating_add(Millis::try_from(ms).unwrap_or(Millis::MAX));
        let mut lines = Vec::new();
        while let Some(next) = self.next_deadline().await.filter(|deadline| *deadline <= target) {
            let now = self.clock.now();
            if next > now {
                self.clock.set(next);
            }
            let mut fired = self.settle().await?;
            if fired.is_empty() && next <= now {
                // Due already and nothing happened: the timer cannot fire (stop, do not spin).
                break;
            }
            lines.append(&mut fired);
        }
        self.clock.set(target);
        lines.append(&mut self.settle().await?);
        Ok(lines)
    }

    async fn next_deadline(&self) -> Option<Millis> {
        let views = self
            .handle
            .instances(InstanceFilter { limit: usize::MAX, ..InstanceFilter::default() })
            .await;
        views.iter().flat_map(|view| view.pending_timers.iter().map(|timer| timer.deadline)).min()
    }

    /// Fires what is due, waits for everything caused to settle, and renders the new events.
    async fn settle(&mut self) -> Result<Vec<Line>> {
        self.handle.tick().await.context("the runtime stopped")?;
        Ok(self.drain())
    }

    fn drain(&mut self) -> Vec<Line> {
        let t = self.elapsed();
        let mut lines = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(batch) => {
                    for event in batch.iter() {
                        lines.push(self.tracker.observe(self.handle.registry(), event, t));
                    }
                }
                Err(TryRecvError::Lagged(missed)) => lines.push(Line {
                    t,
                    text: format!("{:>8}  (trace incomplete: {missed} batches of runtime events were missed)", super::trace::format_relative(t)),
                    json: serde_json::json!({"t": t, "kind": "trace_lagged", "missedBatches": missed}),
                }),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        lines
    }

    fn resolve(&self, target: &Target) -> Result<InstanceId> {
        match target {
            Target::Main => {
                self.main.ok_or_else(|| anyhow!("there is no main instance to send to"))
            }
            Target::Id(id) => Ok(*id),
            Target::Label(number) => self
                .tracker
                .by_number(*number)
                .map(|known| known.id)
                .ok_or_else(|| anyhow!("no instance #{number} in the trace so far")),
            Target::Latest { component, machine, filter } => {
                let registry = self.handle.registry();
                super::load::find_machine(registry.components(), machine, component.as_deref())
                    .map_err(|message| anyhow!(message))?;
                self.tracker
                    .instances()
                    .iter()
                    .rev()
                    .find(|known| {
                        known.live
                            && &*known.machine == machine.as_str()
                            && component.as_deref().is_none_or(|name| &*known.component == name)
                            && filter.iter().all(|(key, value)| {
                                known
                                    .context
                                    .get(key)
                                    .is_some_and(|held| strict_equals(held, value))
                            })
                    })
                    .map(|known| known.id)
                    .ok_or_else(|| {
                        let live: Vec<&str> = self
                            .tracker
                            .instances()
                            .iter()
                            .filter(|known| known.live)
                            .map(|known| known.label.as_str())
                            .collect();
                        let filter = if filter.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " whose data holds {}",
                                serde_json::Value::Object(filter.clone())
                            )
                        };
                        anyhow!(
                            "no live instance of machine {machine}{filter} (live: {})",
                            if live.is_empty() { "none".to_owned() } else { live.join(", ") }
                        )
                    })
            }
        }
    }

    /// Every instance seen, with the live ones' current state and timers.
    pub async fn final_states(&self) -> Vec<FinalState> {
        let mut out = Vec::new();
        for known in self.tracker.instances() {
            let mut known = known.clone();
            let mut timers = Vec::new();
            if let Some(view) = self.handle.instance(known.id).await {
                known.state = view.current_state.clone();
                known.status = view.status;
                known.context = view.context.clone();
                known.live = true;
                timers = view
                    .pending_timers
                    .iter()
                    .map(|timer| (timer.event.to_string(), timer.deadline - self.start))
                    .collect();
            } else if known.live && known.status == Status::Active {
                known.live = false;
            }
            out.push(FinalState { known, timers });
        }
        out
    }

    /// Stops the runtime.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await;
    }
}
