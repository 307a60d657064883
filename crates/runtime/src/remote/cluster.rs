//! The distributed dashboard's view of every runtime on a bus (`ClusterView`): the components
//! they announce, their live instances (from query answers and the events they publish), the
//! runtimes themselves (gone after a missed-heartbeat timeout), and commands routed to the
//! runtime that hosts their target.
//!
//! Commands (create, send) travel as envelopes on the target component's queue, like any
//! cross-component message, so they are never lost: the owner applies them once, and answers on
//! `fsm:responses:command`. The caller gets the owner's outcome, or `RuntimeError::Accepted` with
//! the message id when no answer comes within `ClusterOptions::reply_timeout`. A creation its
//! owner answered returns once the view lists the instance (the owner's event), or after
//! `CREATION_SEEN_WAIT`: who created an instance can read it at once.
//!
//! The view is built from at-most-once channels: an event it misses is corrected by the next
//! query answer (it asks every `ClusterOptions::refresh_interval`). With a shared store, history
//! and dead letters are read from it; without one, from every runtime's store over the bus
//! (`reads.rs`).

use super::monitor::publish;
use super::reads::BusReads;
use super::reply::CommandOutcome;
use super::wire;
use crate::api::{RuntimeApi, RuntimePeer};
use crate::commit_health::StoreHealth;
use crate::content;
use crate::delivery::MessageCounts;
use crate::error::RuntimeError;
use crate::handle::{CreateRequest, SendRequest};
use crate::ids::DrawId;
use crate::registry::Registry;
use crate::shard::query::available_from;
use crate::shared::stopping;
use crate::stream::{EventBatch, RuntimeEvent, STREAM_CAPACITY};
use crate::views::{InstanceFilter, InstanceView, SendOutcome, TimerView};
use async_trait::async_trait;
use rustc_hash::FxHashMap;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};
use xcomponent_core::bus::{Bus, Published, channels, component_queue};
use xcomponent_core::clock::Clock;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::{
    Context, EventId, InstanceId, MachineIdx, Millis, StateIdx, Status,
};
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::message::{DeadLetter, Envelope, MessageBody, MessageId};
use xcomponent_core::model::{Component, StateType};
use xcomponent_core::store::EventStore;

/// Default for `ClusterOptions::reply_timeout`.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Default for `ClusterOptions::runtime_timeout` (three of the seeds' 30 s heartbeats).
pub const DEFAULT_RUNTIME_TIMEOUT: Duration = Duration::from_secs(90);
/// Live instances the view keeps (past it, the oldest updates are dropped from the cache).
pub const MAX_CACHED_INSTANCES: usize = 1_000_000;
/// Commands waiting for their answer at once; past it a command is answered `Accepted` at once.
pub const MAX_PENDING_COMMANDS: usize = 10_000;
/// How long a creation its owner answered waits for the owner's `instance_created` event, so the
/// view lists the instance when `create` returns (read your own creation). The answer and the
/// event travel on different channels; past this wait `create` returns all the same.
pub const CREATION_SEEN_WAIT: Duration = Duration::from_secs(1);
/// How long an instance created through the view is remembered with its component when no event
/// of it has come (`created`), so an event sent to it finds its owner; older entries are dropped
/// when the map is full.
pub const CREATED_KEPT: Duration = Duration::from_secs(60);

/// The first pause after the view's subscription failed (doubled up to `RESUBSCRIBE_BACKOFF_MAX`).
pub const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between two attempts to subscribe the view again.
pub const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often the view checks that the bus answers (a ping), to notice a broker's outage.
pub const BUS_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// After an outage, how many probes in a row (one per `BUS_PROBE_INTERVAL`) ask every runtime
/// again: longer than the runtimes' reconnection back-off (`xcomponent_bus::RECONNECT_BACKOFF_MAX`,
/// 5 s), so their subscriptions are back for the last ones.
pub const RECOVERY_QUERIES: u32 = 10;
/// The shortest time between two requests to announce caused by heartbeats naming a component
/// the view does not know (an announcement it missed, or one it could not compile).
pub const UNKNOWN_COMPONENT_ASK_INTERVAL: Duration = Duration::from_secs(5);

/// The channels a cluster view follows.
const VIEW_CHANNELS: [&str; 9] = [
    channels::ANNOUNCE,
    channels::HEARTBEAT,
    channels::SHUTDOWN,
    channels::STATE_CHANGE,
    channels::INSTANCE_CREATED,
    channels::INSTANCE_COMPLETED,
    channels::QUERY_RESPONSE,
    channels::COMMAND_RESPONSE,
    channels::STORE_READ_RESPONSE,
];

/// Settings of a cluster view.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How long a command waits for its owner's answer before `Accepted`.
    pub reply_timeout: Duration,
    /// A runtime silent for this long is dropped from the runtimes list.
    pub runtime_timeout: Duration,
    /// How often every runtime is asked for its live instances (and to announce itself).
    pub refresh_interval: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            runtime_timeout: DEFAULT_RUNTIME_TIMEOUT,
            refresh_interval: Duration::from_secs(30),
        }
    }
}

/// A view over every runtime on a bus (cheap to clone).
#[derive(Clone)]
pub struct ClusterView {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView").field("bus", &self.inner.bus.backend()).finish()
    }
}

struct Inner {
    bus: Arc<dyn Bus>,
    store: Option<Arc<dyn EventStore>>,
    clock: Arc<dyn Clock>,
    options: ClusterOptions,
    registry: RwLock<Arc<Registry>>,
    peers: Arc<Mutex<HashMap<String, RuntimePeer>>>,
    /// Store reads over the bus, when no store was given.
    reads: Option<Arc<BusReads>>,
    instances: Mutex<FxHashMap<InstanceId, Cached>>,
    /// Components of instances created through this view and not yet seen in an event (their
    /// creation event may still be on its way), so an event sent right away finds its owner;
    /// with when each was added (at most `MAX_PENDING_COMMANDS`, kept `CREATED_KEPT`).
    created: Mutex<FxHashMap<InstanceId, (String, tokio::time::Instant)>>,
    /// Woken whenever an instance enters the cache (`create` waits for its own).
    cached: tokio::sync::Notify,
    pending: Mutex<HashMap<MessageId, oneshot::Sender<CommandOutcome>>>,
    stream: broadcast::Sender<EventBatch>,
    shutdown: watch::Sender<bool>,
    /// Set when a command could not be handed to the bus: the broker may have been away, and
    /// what was published meanwhile missed (`watch_bus` asks everyone again).
    interrupted: AtomicBool,
    /// Set when a heartbeat or an event named a component the registry lacks: its announcement
    /// was missed (channels are at most once), and `watch_bus` asks everyone again.
    heard_unknown: AtomicBool,
}

/// A live instance as last reported, and by which runtime.
#[derive(Clone)]
struct Cached {
    view: InstanceView,
    runtime_id: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClusterView {
    /// Joins the bus as a viewer: subscribes to the monitoring channels, asks every runtime to
    /// announce itself and list its instances, and keeps the view current until `stop`.
    pub async fn connect(
        bus: Arc<dyn Bus>,
        store: Option<Arc<dyn EventStore>>,
        clock: Arc<dyn Clock>,
        options: ClusterOptions,
    ) -> Result<ClusterView, RuntimeError> {
        let subscription = bus.subscribe(&VIEW_CHANNELS).await.map_err(|error| {
            RuntimeError::Invalid(format!("cannot subscribe to the bus: {error}"))
        })?;
        let registry = Registry::new(Vec::new())?;
        let (stream, _) = broadcast::channel(STREAM_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        let peers: Arc<Mutex<HashMap<String, RuntimePeer>>> = Arc::default();
        let reads = store.is_none().then(|| {
            let known = peers.clone();
            let expected = Box::new(move || lock(&known).len());
            Arc::new(BusReads::new(bus.clone(), options.reply_timeout, expected))
        });
        let store = store.or_else(|| reads.clone().map(|reads| reads as Arc<dyn EventStore>));
        let view = ClusterView {
            inner: Arc::new(Inner {
                bus,
                store,
                clock,
                options,
                registry: RwLock::new(Arc::new(registry)),
                peers,
                reads,
                instances: Mutex::new(FxHashMap::default()),
                created: Mutex::new(FxHashMap::default()),
                cached: tokio::sync::Notify::new(),
                pending: Mutex::new(HashMap::new()),
                stream,
                shutdown,
                interrupted: AtomicBool::new(false),
                heard_unknown: AtomicBool::new(false),
            }),
        };
        tokio::spawn(view.clone().listen(subscription));
        tokio::spawn(view.clone().watch_bus());
        view.ask_everyone().await;
        Ok(view)
    }

    /// Stops following the bus.
    pub fn stop(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Pings the bus every `BUS_PROBE_INTERVAL`. The channels are at most once: events published
    /// while the broker was away (restarted, unreachable) are lost for the view, whose
    /// subscription reconnects by itself without a word. So once a ping failed (or a command
    /// could not be sent), the view asks every runtime to announce itself and list its instances
    /// at each of the next `RECOVERY_QUERIES` probes that reach the bus: the runtimes' own
    /// subscriptions may come back later than the view's (their reconnection back-off), and
    /// the regular refresh may be far away. A heartbeat naming a component the view does not
    /// know (its announcement was missed) also makes it ask, at most once per
    /// `UNKNOWN_COMPONENT_ASK_INTERVAL`.
    async fn watch_bus(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut probe = tokio::time::interval(BUS_PROBE_INTERVAL);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut queries_left = 0;
        let mut asked_for_unknown: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = stopping(&mut shutdown) => return,
                _ = probe.tick() => {}
            }
            let ping = tokio::time::timeout(BUS_PROBE_INTERVAL, self.inner.bus.ping()).await;
            let interrupted = self.inner.interrupted.swap(false, Ordering::Relaxed);
            if !matches!(ping, Ok(Ok(()))) {
                if queries_left == 0 {
                    tracing::warn!(
                        "Cluster view cannot reach the bus; it will ask every runtime again once it can."
                    );
                }
                queries_left = RECOVERY_QUERIES;
                continue;
            }
            if interrupted {
                queries_left = RECOVERY_QUERIES;
            }
            let unknown_due = self.inner.heard_unknown.load(Ordering::Relaxed)
                && asked_for_unknown
                    .is_none_or(|asked| asked.elapsed() >= UNKNOWN_COMPONENT_ASK_INTERVAL);
            if queries_left > 0 || unknown_due {
                queries_left = queries_left.saturating_sub(1);
                if unknown_due {
                    self.inner.heard_unknown.store(false, Ordering::Relaxed);
                    asked_for_unknown = Some(tokio::time::Instant::now());
                    tracing::info!(
                        "A runtime heartbeats a component this view does not know; asking every runtime to announce."
                    );
                }
                self.ask_everyone().await;
            }
        }
    }

    async fn ask_everyone(&self) {
        let bus = self.inner.bus.as_ref();
        publish(bus, channels::DISCOVER, json!({"type": "discover"})).await;
        publish(bus, channels::QUERY_INSTANCES, json!({"type": "query_all_instances"})).await;
    }

    async fn listen(self, mut subscription: Box<dyn xcomponent_core::bus::Subscription>) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut refresh = tokio::time::interval(self.inner.options.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        loop {
            tokio::select! {
                () = stopping(&mut shutdown) => return,
                _ = refresh.tick() => {
                    self.forget_silent_runtimes();
                    self.ask_everyone().await;
                }
                next = subscription.next() => match next {
                    Ok(published) => self.on_message(published),
                    Err(error) => {
                        tracing::warn!(%error, "Cluster view lost its subscription; subscribing again.");
                        let Some(again) = self.resubscribe(&mut shutdown).await else { return };
                        subscription = again;
                        // What was published meanwhile is lost: ask for the current state.
                        self.ask_everyone().await;
                    }
                },
            }
        }
    }

    /// Subscribes again, pausing `RESUBSCRIBE_BACKOFF_MIN` before the first attempt and doubling
    /// the pause up to `RESUBSCRIBE_BACKOFF_MAX` between failed ones; `None` once `stop` was called.
    async fn resubscribe(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Box<dyn xcomponent_core::bus::Subscription>> {
        let mut pause = RESUBSCRIBE_BACKOFF_MIN;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                () = stopping(shutdown) => return None,
            }
            match self.inner.bus.subscribe(&VIEW_CHANNELS).await {
                Ok(subscription) => {
                    tracing::info!("Cluster view subscribed again.");
                    return Some(subscription);
                }
                Err(error) => {
                    tracing::warn!(%error, ?pause, "Cluster view cannot subscribe yet; retrying.");
                }
            }
            pause = (pause * 2).min(RESUBSCRIBE_BACKOFF_MAX);
        }
    }

    fn now(&self) -> Millis {
        self.inner.clock.now()
    }

    fn on_message(&self, published: Published) {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&published.body) else {
            return;
        };
        let body = Value::Object(body);
        let runtime_id = body["runtimeId"].as_str().unwrap_or_default().to_owned();
        match published.channel.as_str() {
            channels::ANNOUNCE => self.on_announce(&runtime_id, &body),
            channels::HEARTBEAT => {
                self.touch(&runtime_id, &body);
                self.note_unknown_component(&body);
            }
            channels::SHUTDOWN => {
                lock(&self.inner.peers).remove(&runtime_id);
            }
            channels::STATE_CHANGE | channels::INSTANCE_CREATED | channels::INSTANCE_COMPLETED => {
                self.touch(&runtime_id, &body);
                self.note_unknown_component(&body);
                self.on_event(&published.channel, &runtime_id, &body);
            }
            channels::QUERY_RESPONSE => self.on_query_answer(&runtime_id, &body),
            channels::COMMAND_RESPONSE => self.on_command_answer(&body),
            channels::STORE_READ_RESPONSE => {
                if let Some(reads) = &self.inner.reads {
                    reads.on_answer(&body);
                }
            }
            _ => {}
        }
    }

    /// A runtime is alive: refresh its last-seen time, adding it if unknown.
    fn touch(&self, runtime_id: &str, body: &Value) {
        if runtime_id.is_empty() {
            return;
        }
        let now = self.now();
        let mut peers = lock(&self.inner.peers);
        let peer = peers.entry(runtime_id.to_owned()).or_insert_with(|| RuntimePeer {
            runtime_id: runtime_id.to_owned(),
            name: body["runtimeName"].as_str().unwrap_or(runtime_id).to_owned(),
            components: Vec::new(),
            host: String::new(),
            port: 0,
            last_seen: now,
            first_seen: now,
            partitions: std::collections::BTreeMap::new(),
        });
        peer.last_seen = now;
        if let (Some(component), Ok(owned)) = (
            body["componentName"].as_str(),
            serde_json::from_value::<crate::api::OwnedPartitions>(body["partitions"].clone()),
        ) {
            peer.partitions.insert(component.to_owned(), owned);
        }
        if let Some(component) = body["componentName"].as_str()
            && !peer.components.iter().any(|known| known == component)
        {
            peer.components.push(component.to_owned());
        }
    }

    /// Notes a heartbeat or event naming a component the registry lacks (see `watch_bus`).
    fn note_unknown_component(&self, body: &Value) {
        if let Some(component) = body["componentName"].as_str()
            && self.registry().index_of(component).is_none()
        {
            self.inner.heard_unknown.store(true, Ordering::Relaxed);
        }
    }

    fn on_announce(&self, runtime_id: &str, body: &Value) {
        self.touch(runtime_id, body);
        if let Some(peer) = lock(&self.inner.peers).get_mut(runtime_id) {
            peer.host = body["host"].as_str().unwrap_or_default().to_owned();
            peer.port =
                body["port"].as_u64().and_then(|port| u16::try_from(port).ok()).unwrap_or(0);
        }
        let Ok(component) = serde_json::from_value::<Component>(body["component"].clone()) else {
            return;
        };
        let name = component.name.clone();
        let registry = self.registry();
        if let Some(index) = registry.index_of(&name)
            && serde_json::to_value(&*registry.definition(index).model).ok()
                == serde_json::to_value(&component).ok()
        {
            return;
        }
        let definition = match Definition::compile(component) {
            Ok(definition) => Arc::new(definition),
            Err(errors) => {
                tracing::warn!(component = %name, ?errors, "Announced component does not compile; ignored.");
                return;
            }
        };
        // Components keep their index: a new one is appended, a changed one replaced in place.
        let mut definitions: Vec<Arc<Definition>> = registry.components().to_vec();
        match registry.index_of(&name) {
            Some(index) => definitions[usize::from(index)] = definition,
            None => definitions.push(definition),
        }
        match Registry::new(definitions) {
            Ok(grown) => {
                *self.inner.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Arc::new(grown);
            }
            Err(error) => tracing::warn!(%error, "Announced component not added."),
        }
    }

    /// Resolves a published instance event against the registry.
    fn on_event(&self, channel: &str, runtime_id: &str, body: &Value) {
        let data = &body["data"];
        let registry = self.registry();
        let Some(component) =
            body["componentName"].as_str().and_then(|name| registry.index_of(name))
        else {
            return;
        };
        let definition = registry.definition(component);
        let Some(id) = parse_id(&data["instanceId"]) else { return };
        let Some(machine) =
            data["machineName"].as_str().and_then(|name| definition.machine_index(name))
        else {
            return;
        };
        let machine_def = definition.machine(machine);
        let at = data["timestamp"].as_i64().or_else(|| body["timestamp"].as_i64()).unwrap_or(0);
        let event_id = data["eventId"]
            .as_str()
            .and_then(|text| text.parse::<uuid::Uuid>().ok())
            .map_or_else(|| EventId(uuid::Uuid::nil()), EventId);
        let context = Arc::new(match &data["context"] {
            Value::Object(map) => map.clone(),
            _ => Context::new(),
        });
        let event = match channel {
            channels::INSTANCE_CREATED => {
                let Some(state) = state_of(&data["currentState"], machine_def) else { return };
                let parent = parse_id(&data["parentInstanceId"]);
                self.cache(
                    runtime_id,
                    view(definition, machine, state, id, context.clone(), at, at),
                );
                RuntimeEvent::InstanceCreated {
                    component,
                    instance: id,
                    machine,
                    state,
                    context,
                    parent,
                    event_id,
                    at,
                }
            }
            channels::STATE_CHANGE => {
                let (Some(from), Some(to)) = (
                    state_of(&data["previousState"], machine_def),
                    state_of(&data["newState"], machine_def),
                ) else {
                    return;
                };
                let event_name = data["event"].as_str().unwrap_or_default();
                let Some(transition) = machine_def
                    .transitions
                    .iter()
                    .position(|t| t.from == from && t.to == to && &*t.event_name == event_name)
                    .or_else(|| {
                        machine_def.transitions.iter().position(|t| t.from == from && t.to == to)
                    })
                else {
                    return;
                };
                let status = serde_json::from_value::<Status>(data["status"].clone())
                    .unwrap_or(Status::Active);
                let created = lock(&self.inner.instances)
                    .get(&id)
                    .map_or(at, |cached| cached.view.created_at);
                if status == Status::Active {
                    self.cache(
                        runtime_id,
                        view(definition, machine, to, id, context.clone(), created, at),
                    );
                }
                RuntimeEvent::StateChanged {
                    component,
                    instance: id,
                    machine,
                    from,
                    to,
                    transition: u16::try_from(transition).unwrap_or(0),
                    context,
                    status,
                    event_id,
                    at,
                }
            }
            _ => {
                let Some(state) = state_of(&data["finalState"], machine_def) else { return };
                let status = serde_json::from_value::<Status>(data["status"].clone())
                    .unwrap_or(Status::Completed);
                lock(&self.inner.instances).remove(&id);
                lock(&self.inner.created).remove(&id);
                RuntimeEvent::InstanceDisposed { component, instance: id, machine, state, status }
            }
        };
        let _ = self.inner.stream.send(Arc::new(vec![event]));
    }

    /// Caches an instance's view (then `entered_cache`).
    fn cache(&self, runtime_id: &str, view: InstanceView) {
        let id = view.id;
        {
            let mut instances = lock(&self.inner.instances);
            if instances.len() >= MAX_CACHED_INSTANCES && !instances.contains_key(&id) {
                return;
            }
            instances.insert(id, Cached { view, runtime_id: runtime_id.to_owned() });
        }
        self.entered_cache(&[id]);
    }

    /// After instances entered the cache: forgets them as `created` and wakes who waits for them.
    /// Called after the insertion, never before: `remember_created` looks at the cache under the
    /// `created` lock, so no entry is left behind.
    fn entered_cache(&self, ids: &[InstanceId]) {
        {
            let mut created = lock(&self.inner.created);
            if !created.is_empty() {
                for id in ids {
                    created.remove(id);
                }
            }
        }
        self.inner.cached.notify_waiters();
    }

    /// Remembers the component of an instance created through the view, unless an event of it
    /// came already. A full map drops its entries older than `CREATED_KEPT` first.
    fn remember_created(&self, id: InstanceId, component: String) {
        let mut created = lock(&self.inner.created);
        if lock(&self.inner.instances).contains_key(&id) {
            return;
        }
        let now = tokio::time::Instant::now();
        if created.len() >= MAX_PENDING_COMMANDS {
            created.retain(|_, (_, added)| now.duration_since(*added) < CREATED_KEPT);
        }
        if created.len() < MAX_PENDING_COMMANDS {
            created.insert(id, (component, now));
        }
    }

    /// Waits until the cache holds `id`, for at most `CREATION_SEEN_WAIT`.
    async fn until_cached(&self, id: InstanceId) {
        let deadline = tokio::time::Instant::now() + CREATION_SEEN_WAIT;
        loop {
            let woken = self.inner.cached.notified();
            tokio::pin!(woken);
            // Registered before the check, so an insertion between the two is not missed.
            woken.as_mut().enable();
            if lock(&self.inner.instances).contains_key(&id) {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// A runtime's live instances of one component: they replace what that runtime reported
    /// before for it (not what other runtimes report).
    fn on_query_answer(&self, runtime_id: &str, body: &Value) {
        self.touch(runtime_id, body);
        let registry = self.registry();
        let Some(component) =
            body["componentName"].as_str().and_then(|name| registry.index_of(name))
        else {
            return;
        };
        let definition = registry.definition(component);
        // Views from an answer are as of the answer (the runtime's clock, like its events').
        let now = body["timestamp"].as_i64().unwrap_or_else(|| self.now());
        let mut fresh = Vec::new();
        for item in body["instances"].as_array().into_iter().flatten() {
            let (Some(id), Some(machine)) = (
                parse_id(&item["id"]).or_else(|| parse_id(&item["instanceId"])),
                item["machineName"].as_str().and_then(|name| definition.machine_index(name)),
            ) else {
                continue;
            };
            let Some(state) = state_of(&item["currentState"], definition.machine(machine)) else {
                continue;
            };
            let context = Arc::new(match &item["context"] {
                Value::Object(map) => map.clone(),
                _ => Context::new(),
            });
            let mut instance = view(definition, machine, state, id, context, now, now);
            instance.pending_timers = timers(definition, machine, state, &item["pendingTimeouts"]);
            fresh.push(instance);
        }
        // What the runtime reported before is replaced, except what changed after it answered
        // (events published after the answer may have arrived first).
        let answered_at = body["timestamp"].as_i64().unwrap_or(i64::MAX);
        let mut instances = lock(&self.inner.instances);
        instances.retain(|_, cached| {
            cached.runtime_id != runtime_id
                || *cached.view.component_name != *definition.name
                || cached.view.updated_at > answered_at
        });
        let mut entered = Vec::with_capacity(fresh.len());
        for instance in fresh {
            if instances.len() < MAX_CACHED_INSTANCES {
                entered.push(instance.id);
                instances.insert(
                    instance.id,
                    Cached { view: instance, runtime_id: runtime_id.to_owned() },
                );
            }
        }
        drop(instances);
        self.entered_cache(&entered);
    }

    fn on_command_answer(&self, body: &Value) {
        let Some(id) = body["requestId"].as_str().and_then(|text| text.parse::<uuid::Uuid>().ok())
        else {
            return;
        };
        let Ok(outcome) = serde_json::from_value::<CommandOutcome>(body["outcome"].clone()) else {
            return;
        };
        if let Some(waiter) = lock(&self.inner.pending).remove(&MessageId(id)) {
            let _ = waiter.send(outcome);
        }
    }

    fn forget_silent_runtimes(&self) {
        let limit =
            i64::try_from(self.inner.options.runtime_timeout.as_millis()).unwrap_or(i64::MAX);
        let now = self.now();
        lock(&self.inner.peers).retain(|_, peer| now.saturating_sub(peer.last_seen) <= limit);
    }

    /// Sends a command on the component's queue and waits for its owner's answer: the outcome,
    /// the owner's refusal as its error, or `Accepted` (with `instance`, when the command names
    /// one) when no answer came in time.
    async fn command(
        &self,
        envelope: Envelope,
        instance: Option<InstanceId>,
    ) -> Result<CommandOutcome, RuntimeError> {
        let message_id = envelope.id;
        match self.send_command(envelope).await? {
            Some(CommandOutcome::Failed { kind, error, instance_id }) => {
                Err(CommandOutcome::into_error(&kind, error, instance_id))
            }
            Some(outcome) => Ok(outcome),
            None => Err(RuntimeError::Accepted { message_id, instance_id: instance }),
        }
    }

    /// Sends a command on the component's queue and waits for its owner's answer, if any.
    async fn send_command(
        &self,
        envelope: Envelope,
    ) -> Result<Option<CommandOutcome>, RuntimeError> {
        let message = wire::encode_command(&envelope, Some(channels::COMMAND_RESPONSE))
            .map_err(|error| RuntimeError::Invalid(error.to_string()))?;
        let (waiter, answer) = oneshot::channel();
        let waiting = {
            let mut pending = lock(&self.inner.pending);
            (pending.len() < MAX_PENDING_COMMANDS)
                .then(|| pending.insert(envelope.id, waiter))
                .is_some()
        };
        // The whole command, the broker's confirm included, waits at most `reply_timeout`.
        let deadline = tokio::time::Instant::now() + self.inner.options.reply_timeout;
        let queue = component_queue(&envelope.component);
        let sent =
            tokio::time::timeout_at(deadline, self.inner.bus.enqueue(&queue, &message)).await;
        let refused = match sent {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("the bus refused the command: {error}")),
            Err(_) => {
                Some("the bus did not confirm the command in time; it may still arrive".into())
            }
        };
        if let Some(reason) = refused {
            self.inner.interrupted.store(true, Ordering::Relaxed);
            lock(&self.inner.pending).remove(&envelope.id);
            return Err(RuntimeError::Storage(xcomponent_core::store::Error::Unavailable(reason)));
        }
        if !waiting {
            return Ok(None);
        }
        let outcome = tokio::time::timeout_at(deadline, answer).await;
        lock(&self.inner.pending).remove(&envelope.id);
        Ok(outcome.ok().and_then(Result::ok))
    }

    fn envelope(
        &self,
        component: String,
        body: MessageBody,
        correlation: Option<EventId>,
        causation: Option<EventId>,
    ) -> Envelope {
        Envelope {
            id: MessageId::draw(),
            component,
            body,
            causation_id: causation,
            correlation_id: correlation,
            depth: 0,
            source_component: None,
            source_instance: None,
            created_at: self.now(),
        }
    }

    /// The component of an instance: from the view, else from the shared store.
    async fn component_of(&self, id: InstanceId) -> Option<String> {
        if let Some(cached) = lock(&self.inner.instances).get(&id) {
            return Some(cached.view.component_name.to_string());
        }
        if let Some((component, _)) = lock(&self.inner.created).get(&id) {
            return Some(component.clone());
        }
        let store = self.inner.store.as_ref()?;
        let record = store.instance(id).await.ok()??;
        Some(record.component)
    }

    fn the_registry(&self) -> Arc<Registry> {
        self.inner.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

fn parse_id(value: &Value) -> Option<InstanceId> {
    value.as_str().and_then(|text| text.parse::<uuid::Uuid>().ok()).map(InstanceId)
}

fn state_of(value: &Value, machine: &xcomponent_core::definition::MachineDef) -> Option<StateIdx> {
    value.as_str().and_then(|name| machine.state_index(name))
}

/// An instance view built from what a runtime published.
fn view(
    definition: &Definition,
    machine: MachineIdx,
    state: StateIdx,
    id: InstanceId,
    context: Arc<Context>,
    created_at: Millis,
    updated_at: Millis,
) -> InstanceView {
    let machine_def = definition.machine(machine);
    let state_def = machine_def.state(state);
    let status = match state_def.kind {
        StateType::Final => Status::Completed,
        StateType::Error => Status::Error,
        _ => Status::Active,
    };
    InstanceView {
        id,
        component_name: definition.name.clone(),
        machine_name: machine_def.name.clone(),
        current_state: state_def.name.clone(),
        state_type: state_def.kind,
        status,
        context,
        public_member: machine_def.public_member,
        is_entry_point: false,
        parent: None,
        seq: 0,
        created_at,
        updated_at,
        pending_timers: Vec::new(),
        available_transitions: available_from(definition, machine, state),
    }
}

/// Timers a query answer lists (`[{event, deadline}]`), resolved against the state's timed
/// transitions.
fn timers(
    definition: &Definition,
    machine: MachineIdx,
    state: StateIdx,
    listed: &Value,
) -> Vec<TimerView> {
    let machine_def = definition.machine(machine);
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|timer| {
            let event = timer["event"].as_str()?;
            let deadline = timer["deadline"].as_i64()?;
            let transition = machine_def
                .transitions
                .iter()
                .find(|transition| transition.from == state && &*transition.event_name == event)?;
            Some(TimerView {
                event: transition.event_name.clone(),
                target_state: machine_def.state(transition.to).name.clone(),
                kind: transition.kind,
                deadline,
            })
        })
        .collect()
}

#[async_trait]
impl RuntimeApi for ClusterView {
    fn registry(&self) -> Arc<Registry> {
        self.the_registry()
    }

    fn store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.store.clone()
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    async fn instance(&self, id: InstanceId) -> Option<InstanceView> {
        lock(&self.inner.instances).get(&id).map(|cached| cached.view.clone())
    }

    async fn instances(&self, filter: InstanceFilter) -> Vec<InstanceView> {
        let text = filter.text.as_deref().map(str::to_lowercase);
        let mut found: Vec<InstanceView> = lock(&self.inner.instances)
            .values()
            .map(|cached| &cached.view)
            .filter(|view| {
                filter.component.as_deref().is_none_or(|name| *view.component_name == *name)
            })
            .filter(|view| filter.machine.as_deref().is_none_or(|name| *view.machine_name == *name))
            .filter(|view| filter.state.as_deref().is_none_or(|name| *view.current_state == *name))
            .filter(|view| filter.after.is_none_or(|after| view.id > after))
            .filter(|view| {
                text.as_deref().is_none_or(|text| {
                    view.id.to_string().contains(text)
                        || Value::Object((*view.context).clone())
                            .to_string()
                            .to_lowercase()
                            .contains(text)
                })
            })
            .cloned()
            .collect();
        found.sort_unstable_by_key(|view| view.id);
        found.truncate(filter.limit.max(1));
        found
    }

    async fn create(&self, request: CreateRequest) -> Result<InstanceId, RuntimeError> {
        self.the_registry().resolve(&request.component, &request.machine)?;
        content::check_data("context", &request.context)?;
        let id = request.id.unwrap_or_else(InstanceId::draw);
        let body = MessageBody::Create {
            machine: request.machine.clone(),
            instance_id: id,
            context: request.context,
            parent: None,
        };
        let component = request.component.clone();
        let envelope = self.envelope(request.component, body, request.correlation_id, None);
        let outcome = self.command(envelope, Some(id)).await;
        if matches!(
            outcome,
            Ok(CommandOutcome::Created { .. }) | Err(RuntimeError::Accepted { .. })
        ) {
            self.remember_created(id, component);
        }
        match outcome? {
            CommandOutcome::Created { instance_id } => {
                self.until_cached(instance_id).await;
                Ok(instance_id)
            }
            other => Err(other.unexpected()),
        }
    }

    async fn send(&self, request: SendRequest) -> Result<SendOutcome, RuntimeError> {
        let component = self
            .component_of(request.instance)
            .await
            .ok_or(RuntimeError::UnknownInstance(request.instance))?;
        content::check_text("event", &request.event)?;
        content::check_data("payload", &request.payload)?;
        let body = MessageBody::Send {
            instance_id: request.instance,
            event: request.event,
            payload: request.payload,
        };
        let envelope = self.envelope(component, body, request.correlation_id, request.causation_id);
        match self.command(envelope, None).await? {
            CommandOutcome::Sent { result } => Ok(result),
            other => Err(other.unexpected()),
        }
    }

    async fn broadcast(
        &self,
        component: &str,
        machine: &str,
        state: Option<&str>,
        event: &str,
        payload: Context,
        filters: Vec<PropertyFilter>,
    ) -> Result<usize, RuntimeError> {
        self.the_registry().resolve(component, machine)?;
        content::check_text("event", event)?;
        content::check_data("payload", &payload)?;
        let body = MessageBody::Broadcast {
            machine: machine.to_owned(),
            state: state.map(str::to_owned),
            event: event.to_owned(),
            payload,
            filters,
        };
        let envelope = self.envelope(component.to_owned(), body, None, None);
        match self.command(envelope, None).await? {
            CommandOutcome::Broadcast { count } => Ok(count),
            other => Err(other.unexpected()),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<EventBatch> {
        self.inner.stream.subscribe()
    }

    fn store_health(&self) -> StoreHealth {
        StoreHealth::default()
    }

    fn message_counts(&self) -> MessageCounts {
        MessageCounts::default()
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, RuntimeError> {
        match &self.inner.store {
            Some(store) => store.dead_letters(after, limit).await.map_err(RuntimeError::Storage),
            None => Ok(Vec::new()),
        }
    }

    async fn dead_letter(&self, id: MessageId) -> Result<Option<DeadLetter>, RuntimeError> {
        match &self.inner.store {
            Some(store) => store.dead_letter(id).await.map_err(RuntimeError::Storage),
            None => Ok(None),
        }
    }

    async fn replay_dead_letter(&self, _id: MessageId) -> Result<bool, RuntimeError> {
        Err(RuntimeError::Invalid(
            "replay a dead letter from the runtime that stored it (its own API)".into(),
        ))
    }

    async fn discard_dead_letter(&self, _id: MessageId) -> Result<bool, RuntimeError> {
        Err(RuntimeError::Invalid(
            "discard a dead letter from the runtime that stored it (its own API)".into(),
        ))
    }

    fn peers(&self) -> Vec<RuntimePeer> {
        let mut peers: Vec<RuntimePeer> = lock(&self.inner.peers).values().cloned().collect();
        peers.sort_by(|left, right| {
            left.name.cmp(&right.name).then(left.runtime_id.cmp(&right.runtime_id))
        });
        peers
    }

    fn is_cluster_view(&self) -> bool {
        true
    }
}
