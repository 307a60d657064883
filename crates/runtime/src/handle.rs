//! Starting a runtime (`RuntimeBuilder`), and the cheap-to-clone `RuntimeHandle` every caller
//! uses: create instances, send events, broadcast, query, subscribe, drive manual timers.
//! At start the runtime restores live instances from the store and creates entry points
//! (`restore.rs`).

use crate::commit_health::{CommitHealth, StoreHealth};
use crate::content;
use crate::delivery::{INBOX_PURGE_INTERVAL, MessageCounters};
use crate::error::RuntimeError;
use crate::handlers::Handlers;
use crate::options::{ContextSchemaMode, RuntimeOptions};
use crate::partition::{LeaseConfig, LeaseKeeper};
use crate::protocol::{CreateMsg, DeliverMsg, FanIn, QueryMsg, SendMsg, ShardMsg, Trace};
use crate::registry::{ComponentIdx, Registry};
use crate::remote::{self, BusConfig, Remote};
use crate::router::broadcast_selectors;
use crate::shard::Shard;
use crate::shared::{ShardLink, Shared};
use crate::stream::{EventBatch, STREAM_CAPACITY};
use crate::views::{BatchOutcome, InstanceFilter, InstanceView, SendOutcome, ShardStats};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use xcomponent_core::bus::Bus;
use xcomponent_core::clock::{Clock, SystemClock};
use xcomponent_core::context_schema::Presence;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{Context, EventId, InstanceId};
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::store::EventStore;

/// Builds and starts a runtime.
#[derive(Default)]
pub struct RuntimeBuilder {
    definitions: Vec<Arc<Definition>>,
    handlers: Handlers,
    store: Option<Arc<dyn EventStore>>,
    clock: Option<Arc<dyn Clock>>,
    options: RuntimeOptions,
    bus: Option<(Arc<dyn Bus>, BusConfig)>,
    leases: Option<LeaseConfig>,
}

impl RuntimeBuilder {
    /// A runtime with no components, no store, the system clock and default options.
    pub fn new() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Hosts a component.
    pub fn component(mut self, definition: Definition) -> RuntimeBuilder {
        self.definitions.push(Arc::new(definition));
        self
    }

    /// Hosts an already shared component.
    pub fn shared_component(mut self, definition: Arc<Definition>) -> RuntimeBuilder {
        self.definitions.push(definition);
        self
    }

    /// Business code.
    pub fn handlers(mut self, handlers: Handlers) -> RuntimeBuilder {
        self.handlers = handlers;
        self
    }

    /// Where events and snapshots go (none: nothing is persisted, nothing can fail).
    pub fn store(mut self, store: Arc<dyn EventStore>) -> RuntimeBuilder {
        self.store = Some(store);
        self
    }

    /// The clock (default: system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RuntimeBuilder {
        self.clock = Some(clock);
        self
    }

    /// Settings.
    pub fn options(mut self, options: RuntimeOptions) -> RuntimeBuilder {
        self.options = options;
        self
    }

    /// Joins a bus: messages for components this runtime does not host are sent to their
    /// queue, and the queues of the hosted components are consumed. Needs a store (the memory
    /// store will do): a message is stored before it is sent and acknowledged once applied.
    pub fn bus(mut self, bus: Arc<dyn Bus>, config: BusConfig) -> RuntimeBuilder {
        self.bus = Some((bus, config));
        self
    }

    /// Shares the hosted components with the other runtimes hosting them: their instances are
    /// split into partitions, and this runtime processes those whose lease it holds (fair
    /// share, taken over when another runtime dies; `crate::partition`). Needs a bus and a store
    /// that keeps leases (PostgreSQL, Redis; the memory store within one process).
    pub fn replicas(mut self, config: LeaseConfig) -> RuntimeBuilder {
        self.leases = Some(config);
        self
    }

    /// Starts the shards, restores from the store and creates entry points.
    /// Must be called inside a Tokio runtime.
    pub async fn start(self) -> Result<Runtime, RuntimeError> {
        let registry = Arc::new(Registry::new(self.definitions)?);
        if self.bus.is_some() && self.store.is_none() {
            return Err(RuntimeError::Invalid(
                "a runtime on a bus needs a store: messages are stored before they are sent".into(),
            ));
        }
        let directory = crate::partition::Directory::new(self.store.clone());
        let mut keeper = None;
        if let Some(config) = self.leases {
            let (Some(store), true) = (&self.store, self.bus.is_some()) else {
                return Err(RuntimeError::Invalid(
                    "sharing components between runtimes needs a bus and a shared store".into(),
                ));
            };
            let names = registry.components().iter().map(|d| d.name.to_string());
            let mut lease_keeper = LeaseKeeper::new(store.clone(), names, config)
                .await
                .map_err(|error| RuntimeError::Invalid(error.to_string()))?;
            lease_keeper.tick().await.map_err(|error| RuntimeError::Invalid(error.to_string()))?;
            for (component, owned) in lease_keeper.subscribe().borrow().iter() {
                directory.learn(component, owned.partitions);
            }
            keeper = Some(lease_keeper);
        }
        let partitions =
            keeper.as_ref().map(|keeper| crate::partition::Partitions::new(keeper.subscribe()));
        let (remote, relay_queue) = match self.bus {
            Some((bus, config)) => {
                let (remote, queue) = Remote::new(bus, config, directory);
                (Some(remote), Some(queue))
            }
            None => (None, None),
        };
        let (webhook_queue, webhook_jobs) = if self.handlers.has_webhooks() {
            let (queue, jobs) = mpsc::channel(crate::webhook::WEBHOOK_QUEUE_CAPACITY);
            (Some(queue), Some(jobs))
        } else {
            (None, None)
        };
        let shard_count = self.options.shards.max(1);
        let (stream, _) = broadcast::channel(STREAM_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        let mut links = Vec::with_capacity(shard_count);
        let mut receivers = Vec::with_capacity(shard_count);
        for _ in 0..shard_count {
            let (external_tx, external_rx) = mpsc::channel(self.options.inbox_capacity.max(1));
            let (internal_tx, internal_rx) = mpsc::unbounded_channel();
            links.push(ShardLink { external: external_tx, internal: internal_tx });
            receivers.push((external_rx, internal_rx));
        }
        let shared = Arc::new(Shared {
            singletons: registry.components().iter().map(|_| Mutex::new(None)).collect(),
            registry,
            handlers: self.handlers,
            store: self.store,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            options: RuntimeOptions { shards: shard_count, ..self.options },
            stream,
            shards: links,
            in_flight: AtomicUsize::new(0),
            counters: MessageCounters::default(),
            commit_health: CommitHealth::new(shard_count),
            shutdown,
            remote,
            webhook_queue,
            partitions,
        });
        let tasks = receivers
            .into_iter()
            .enumerate()
            .map(|(index, (external, internal))| {
                tokio::spawn(Shard::new(index, shared.clone(), external, internal).run())
            })
            .collect();
        let mut runtime = Runtime { handle: RuntimeHandle { shared }, tasks, keeper: None };
        if let Some(jobs) = webhook_jobs {
            // Started before the outbox is delivered again: hook calls left there are made.
            let dispatcher =
                crate::webhook::dispatch::run_dispatcher(runtime.handle.shared.clone(), jobs);
            runtime.tasks.push(tokio::spawn(dispatcher));
        }
        runtime.handle.restore().await?;
        // Effects of transitions stored before a stop are applied before any new work.
        runtime.handle.redeliver_pending().await?;
        runtime.handle.create_entry_points().await?;
        if let Some(relay_queue) = relay_queue {
            runtime.tasks.extend(remote::start(&runtime.handle, relay_queue));
        }
        if let (Some(keeper), Some(state)) = (keeper, &runtime.handle.shared.partitions) {
            let initial = state.ownership.borrow().clone();
            let takeover = crate::partition::takeover::run_takeover(
                runtime.handle.clone(),
                state.ownership.clone(),
                initial,
            );
            runtime.tasks.push(tokio::spawn(takeover));
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(keeper.run(stopped, state.fenced.clone()));
            runtime.keeper = Some((stop, task));
        }
        if runtime.handle.shared.store.is_some() {
            // Subscribed here, before the task runs, so a shutdown sent at once is not missed.
            let shutdown = runtime.handle.shared.shutdown.subscribe();
            let purge = purge_inbox_periodically(runtime.handle.clone(), shutdown);
            runtime.tasks.push(tokio::spawn(purge));
        }
        Ok(runtime)
    }
}

/// Purges old inbox entries every `INBOX_PURGE_INTERVAL` until shutdown.
async fn purge_inbox_periodically(handle: RuntimeHandle, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(INBOX_PURGE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match handle.purge_inbox().await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "Purged old inbox entries."),
            Err(error) => tracing::warn!(%error, "Inbox purge failed; retried at the next round."),
        }
    }
}

/// A running runtime: its handle and its shard tasks.
pub struct Runtime {
    handle: RuntimeHandle,
    tasks: Vec<JoinHandle<()>>,
    /// The lease keeper of shared components: stopped (its leases released) after the shards.
    keeper: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Runtime {
    /// A handle to talk to the runtime (cheap to clone).
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Stops every task at once, as a crash would: nothing queued is finished or committed.
    /// Returns once every task has stopped (a task is cancelled at its next await, so one that
    /// was running goes no further than that). For fault tests; a running program calls
    /// `shutdown`.
    pub async fn abort(self) {
        let keeper = self.keeper.map(|(_, task)| task);
        for task in self.tasks.iter().chain(keeper.iter()) {
            task.abort();
        }
        for task in self.tasks.into_iter().chain(keeper) {
            let _ = task.await;
        }
    }

    /// Stops taking work, finishes what is queued, commits, and waits for the shards to end.
    pub async fn shutdown(self) {
        let _ = self.handle.shared.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // The shards have committed: the partitions can be handed over.
        if let Some((stop, task)) = self.keeper {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

/// How to create an instance.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Component name.
    pub component: String,
    /// Machine name.
    pub machine: String,
    /// Initial data.
    pub context: Context,
    /// Use this id instead of a fresh one.
    pub id: Option<InstanceId>,
    /// Join an existing causal chain.
    pub correlation_id: Option<EventId>,
}

/// How to send an event.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Target instance.
    pub instance: InstanceId,
    /// Event type.
    pub event: String,
    /// Payload.
    pub payload: Context,
    /// Join an existing causal chain.
    pub correlation_id: Option<EventId>,
    /// The command that causes this event (e.g. an API request id).
    pub causation_id: Option<EventId>,
}

impl SendRequest {
    /// A request to send `event` with `payload` to `instance`, starting no chain of its own.
    pub fn new(instance: InstanceId, event: impl Into<String>, payload: Context) -> SendRequest {
        SendRequest {
            instance,
            event: event.into(),
            payload,
            correlation_id: None,
            causation_id: None,
        }
    }
}

/// The API of a running runtime.
#[derive(Clone)]
pub struct RuntimeHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle").field("shards", &self.shared.shard_count()).finish()
    }
}

impl RuntimeHandle {
    /// The hosted components.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The store, if any.
    pub fn store(&self) -> Option<&Arc<dyn EventStore>> {
        self.shared.store.as_ref()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// The settings in force.
    pub fn options(&self) -> &RuntimeOptions {
        &self.shared.options
    }

    pub(crate) async fn to_shard(
        &self,
        shard: usize,
        message: ShardMsg,
    ) -> Result<(), RuntimeError> {
        self.shared.shards[shard]
            .external
            .send(message)
            .await
            .map_err(|_| RuntimeError::ShuttingDown)
    }

    /// `PayloadTooLarge` when `payload`'s JSON exceeds `RuntimeOptions::max_payload_bytes`.
    fn check_payload(&self, payload: &Context) -> Result<(), RuntimeError> {
        if payload.is_empty() {
            // `{}`: nothing to measure (events often carry no payload).
            return Ok(());
        }
        let limit = self.shared.options.max_payload_bytes;
        let bytes = crate::size::json_bytes(payload);
        if bytes > limit { Err(RuntimeError::PayloadTooLarge { bytes, limit }) } else { Ok(()) }
    }

    /// Creates an instance and returns its id once its creation is stored.
    pub async fn create_instance(
        &self,
        component: &str,
        machine: &str,
        context: Context,
    ) -> Result<InstanceId, RuntimeError> {
        self.create(CreateRequest {
            component: component.to_owned(),
            machine: machine.to_owned(),
            context,
            ..CreateRequest::default()
        })
        .await
    }

    /// Creates an instance with every option.
    pub async fn create(&self, request: CreateRequest) -> Result<InstanceId, RuntimeError> {
        let (component, machine) =
            self.shared.registry.resolve(&request.component, &request.machine)?;
        content::check_data("context", &request.context)?;
        self.create_resolved(
            component,
            machine,
            request.context,
            request.id,
            request.correlation_id,
            false,
        )
        .await
    }

    pub(crate) async fn create_resolved(
        &self,
        component: ComponentIdx,
        machine: u16,
        context: Context,
        id: Option<InstanceId>,
        correlation: Option<EventId>,
        entry_point: bool,
    ) -> Result<InstanceId, RuntimeError> {
        self.check_payload(&context)?;
        let id = match id {
            Some(id) => id,
            None => self.shared.draw_id_for(component, machine, entry_point)?,
        };
        self.shared.check_owner(component, &id)?;
        let (reply, answer) = oneshot::channel();
        let trace = Trace::root(correlation, None);
        let message = CreateMsg {
            component,
            machine,
            id,
            context,
            parent: None,
            entry_point,
            trace,
            reply: Some(reply),
            origin: None,
        };
        self.to_shard(self.shared.shard_of(&id), ShardMsg::Create(message)).await?;
        answer.await.map_err(|_| RuntimeError::ShuttingDown)?
    }

    /// Creates many instances of one machine at once (one message per shard); returns their ids
    /// once all creations are stored. Entry-point singletons are enforced as usual.
    pub async fn create_many(
        &self,
        component: &str,
        machine: &str,
        contexts: Vec<Context>,
    ) -> Result<Vec<InstanceId>, RuntimeError> {
        let (component_index, machine_index) = self.shared.registry.resolve(component, machine)?;
        for (index, context) in contexts.iter().enumerate() {
            content::check_data(&format!("contexts.{index}"), context)?;
        }
        contexts.iter().try_for_each(|context| self.check_payload(context))?;
        // Checked here too (the shards count what they created, without the reasons), so that
        // the caller learns which rule the data breaks.
        let definition = self.shared.registry.definition(component_index);
        if let (ContextSchemaMode::Enforced, Some(schema)) =
            (self.shared.options.context_schema, &definition.machine(machine_index).context_schema)
        {
            for context in &contexts {
                schema.check(context, Presence::Checked).map_err(|violation| {
                    RuntimeError::ContextSchema {
                        component: definition.name.to_string(),
                        machine: definition.machine(machine_index).name.to_string(),
                        violation: Box::new(violation),
                    }
                })?;
            }
        }
        let shard_count = self.shared.shard_count();
        let mut per_shard: Vec<Vec<CreateMsg>> = (0..shard_count).map(|_| Vec::new()).collect();
        let mut ids = Vec::with_capacity(contexts.len());
        for context in contexts {
            let id = self.shared.draw_id_for(component_index, machine_index, false)?;
            ids.push(id);
            per_shard[self.shared.shard_of(&id)].push(CreateMsg {
                component: component_index,
                machine: machine_index,
                id,
                context,
                parent: None,
                entry_point: false,
                trace: Trace::root(None, None),
                reply: None,
                origin: None,
            });
        }
        let mut answers = Vec::new();
        for (shard, creates) in per_shard.into_iter().enumerate() {
            if creates.is_empty() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            self.to_shard(shard, ShardMsg::CreateMany(creates, reply)).await?;
            answers.push(answer);
        }
        let mut created = 0;
        for answer in answers {
            created += answer.await.map_err(|_| RuntimeError::ShuttingDown)??;
        }
        if created != ids.len() {
            return Err(RuntimeError::Invalid(format!(
                "{} of {} instances were not created (a singleton entry machine allows one)",
                ids.len() - created,
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// Sends an event to an instance; answers once the transition is stored.
    pub async fn send_event(
        &self,
        instance: InstanceId,
        event: &str,
        payload: Context,
    ) -> Result<SendOutcome, RuntimeError> {
        self.send(SendRequest::new(instance, event, payload)).await
    }

    /// Sends an event with every option.
    pub async fn send(&self, request: SendRequest) -> Result<SendOutcome, RuntimeError> {
        content::check_text("event", &request.event)?;
        content::check_data("payload", &request.payload)?;
        self.check_payload(&request.payload)?;
        let (reply, answer) = oneshot::channel();
        let trace = Trace::root(request.correlation_id, request.causation_id);
        let message = SendMsg {
            target: request.instance,
            event: request.event.into(),
            payload: request.payload,
            trace,
            reply: Some(reply),
            origin: None,
        };
        self.to_shard(self.shared.shard_of(&request.instance), ShardMsg::Send(message)).await?;
        answer.await.map_err(|_| RuntimeError::ShuttingDown)?
    }

    /// Sends one event type to many instances at once (one message per shard); the order of
    /// events to the same instance is kept. Answers with totals once everything is applied and
    /// stored.
    pub async fn send_many(
        &self,
        event: &str,
        targets: Vec<(InstanceId, Context)>,
    ) -> Result<BatchOutcome, RuntimeError> {
        content::check_text("event", event)?;
        for (index, (_, payload)) in targets.iter().enumerate() {
            // The field is named (formatted) only for the payload that fails.
            if content::check_data("payload", payload).is_err() {
                content::check_data(&format!("targets.{index}.payload"), payload)?;
            }
        }
        targets.iter().try_for_each(|(_, payload)| self.check_payload(payload))?;
        let shard_count = self.shared.shard_count();
        let event: Arc<str> = event.into();
        let per_shard: Vec<Vec<(InstanceId, Context)>> = if shard_count == 1 {
            vec![targets]
        } else {
            let mut per_shard: Vec<Vec<(InstanceId, Context)>> = (0..shard_count)
                .map(|_| Vec::with_capacity(targets.len() / shard_count + 1))
                .collect();
            for item in targets {
                per_shard[self.shared.shard_of(&item.0)].push(item);
            }
            per_shard
        };
        let mut answers = Vec::new();
        for (shard, items) in per_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            self.to_shard(shard, ShardMsg::SendMany(event.clone(), items, Some(reply))).await?;
            answers.push(answer);
        }
        let mut total = BatchOutcome::default();
        for answer in answers {
            let outcome = answer.await.map_err(|_| RuntimeError::ShuttingDown)?;
            total.transitioned += outcome.transitioned;
            total.ignored += outcome.ignored;
            total.failed += outcome.failed;
        }
        Ok(total)
    }

    /// Sends `event` to instances of `machine` (in `state`, if given). When the machine's
    /// transitions on this event carry matching rules, only instances they match are reached.
    /// Returns how many instances took a transition.
    pub async fn broadcast(
        &self,
        component: &str,
        machine: &str,
        state: Option<&str>,
        event: &str,
        payload: Context,
        filters: Vec<PropertyFilter>,
    ) -> Result<usize, RuntimeError> {
        let (component_index, machine_index) = self.shared.registry.resolve(component, machine)?;
        content::check_text("event", event)?;
        content::check_data("payload", &payload)?;
        self.check_payload(&payload)?;
        let definition = self.shared.registry.definition(component_index);
        let state_index = match state {
            Some(name) => {
                Some(definition.machine(machine_index).state_index(name).ok_or_else(|| {
                    RuntimeError::Invalid(format!(
                        "state {name} not found in machine {machine} of component {component}"
                    ))
                })?)
            }
            None => None,
        };
        let selectors: Arc<[_]> =
            broadcast_selectors(definition, machine_index, state_index, event, &payload, &filters)
                .into();
        let (reply, answer) = oneshot::channel();
        let fan_in = FanIn::new(self.shared.shard_count(), reply);
        let payload = Arc::new(payload);
        let event: Arc<str> = event.into();
        let trace = Trace::root(None, None);
        for shard in 0..self.shared.shard_count() {
            let message = DeliverMsg {
                component: component_index,
                selectors: selectors.clone(),
                event: event.clone(),
                payload: payload.clone(),
                trace: trace.clone(),
                reply: Some(fan_in.clone()),
                origin: None,
            };
            self.to_shard(shard, ShardMsg::Deliver(message)).await?;
        }
        answer.await.map_err(|_| RuntimeError::ShuttingDown)?
    }

    /// A live instance.
    pub async fn instance(&self, id: InstanceId) -> Option<InstanceView> {
        let (reply, answer) = oneshot::channel();
        self.to_shard(self.shared.shard_of(&id), ShardMsg::Query(QueryMsg::One(id, reply)))
            .await
            .ok()?;
        answer.await.ok().flatten()
    }

    /// Live instances matching `filter`, ordered by id (ids are time-ordered), at most `limit`.
    pub async fn instances(&self, filter: InstanceFilter) -> Vec<InstanceView> {
        let filter = Arc::new(filter);
        let mut answers = Vec::new();
        for shard in 0..self.shared.shard_count() {
            let (reply, answer) = oneshot::channel();
            if self
                .to_shard(shard, ShardMsg::Query(QueryMsg::Many(filter.clone(), reply)))
                .await
                .is_ok()
            {
                answers.push(answer);
            }
        }
        let mut all = Vec::new();
        for answer in answers {
            all.extend(answer.await.unwrap_or_default());
        }
        all.sort_unstable_by_key(|view| view.id);
        all.truncate(filter.limit.max(1));
        all
    }

    /// How the store's commits are going, read without asking any shard (a shard blocked in a
    /// commit answers nothing until it ends).
    pub fn store_health(&self) -> StoreHealth {
        self.shared.commit_health.report()
    }

    /// Per-shard counters.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let mut out = Vec::new();
        for shard in 0..self.shared.shard_count() {
            let (reply, answer) = oneshot::channel();
            if self.to_shard(shard, ShardMsg::Query(QueryMsg::Stats(reply))).await.is_ok() {
                out.push(answer.await.unwrap_or_default());
            }
        }
        out
    }

    /// Subscribes to runtime events (published after they are stored).
    pub fn subscribe(&self) -> broadcast::Receiver<EventBatch> {
        self.shared.stream.subscribe()
    }

    /// Fires every timer due at the clock's current time and waits until the resulting work
    /// (including effects between shards) has settled. For `TimerMode::Manual`.
    pub async fn tick(&self) -> Result<(), RuntimeError> {
        self.settle(true).await
    }

    /// Waits until everything sent before, and everything it caused, is processed and stored.
    /// Webhook calls in progress are not waited for (an endpoint may take its whole timeout and
    /// retries): their replies are applied when they come.
    pub async fn flush(&self) -> Result<(), RuntimeError> {
        self.settle(false).await
    }

    /// Rounds of barriers until no internal work is left. A shard answers a barrier after it
    /// has routed (and counted in `in_flight`) everything its batch caused, and stops counting a
    /// message only after routing what it caused, so `in_flight == 0` after a round means the
    /// system is quiet. Bounded: chains are cut at `max_chain_depth`.
    async fn settle(&self, tick: bool) -> Result<(), RuntimeError> {
        let rounds = self.shared.options.max_chain_depth as usize + 2;
        for round in 0..rounds {
            let mut answers = Vec::new();
            for shard in 0..self.shared.shard_count() {
                let (reply, answer) = oneshot::channel();
                let message = if tick && round == 0 {
                    ShardMsg::Tick(reply)
                } else {
                    ShardMsg::Barrier(reply)
                };
                self.to_shard(shard, message).await?;
                answers.push(answer);
            }
            for answer in answers {
                answer.await.map_err(|_| RuntimeError::ShuttingDown)?;
            }
            if self.shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The live singleton instance of a component, if any.
    pub fn singleton_instance(&self, component: &str) -> Option<InstanceId> {
        self.shared.registry.index_of(component).and_then(|index| self.shared.singleton(index))
    }
}
