//! What a runtime on a bus tells dashboards, and the commands it takes from them, on the seeds'
//! channels (`xcomponent_core::bus::channels`): it announces each hosted component (at start and
//! when a dashboard asks), heartbeats, publishes state changes, creations and completions, says
//! when it stops, answers instance queries and store reads (`reads.rs`), and executes
//! `trigger_event`, `create_instance` and `broadcast` commands addressed to what it hosts,
//! answering on the command's `replyTo` channel (`fsm:responses:command` by default).
//!
//! Everything here is at most once, like the channels themselves: a dashboard that misses an
//! announce or an event catches up with the next discover or query. Messages carry
//! `schemaVersion` and a `messageId`.

use super::reads::ReadAnswerer;
use crate::handle::{CreateRequest, RuntimeHandle, SendRequest};
use crate::shared::stopping;
use crate::stream::RuntimeEvent;
use crate::views::{InstanceFilter, InstanceView, SendOutcome};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use xcomponent_core::bus::{Bus, Published, Subscription, channels};
use xcomponent_core::instance::{Context, InstanceId};
use xcomponent_core::matching::PropertyFilter;

/// Live instances one query response lists per component (the rest are left out and counted).
pub const MAX_QUERY_INSTANCES: usize = 10_000;

/// The first pause after the command subscription failed (doubled up to `SUBSCRIBE_BACKOFF_MAX`).
const SUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between two attempts to subscribe.
const SUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Who this runtime is on the bus.
pub(crate) struct Identity {
    /// Drawn at each start (the seeds' `runtimeId`).
    pub runtime_id: String,
    /// The configured name (`--name`).
    pub name: String,
    /// Where its HTTP API listens, if anywhere.
    pub host: String,
    /// Its HTTP port (0: none).
    pub port: u16,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// A channel message: the payload's fields plus `schemaVersion`, `messageId` and `timestamp`.
pub(super) fn message(fields: Value) -> Vec<u8> {
    let mut fields = object(fields);
    fields.insert("schemaVersion".into(), json!(channels::SCHEMA_VERSION));
    fields.insert("messageId".into(), json!(uuid::Uuid::now_v7().to_string()));
    fields.entry("timestamp").or_insert_with(|| json!(now_ms()));
    serde_json::to_vec(&Value::Object(fields)).unwrap_or_default()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(super) async fn publish(bus: &dyn Bus, channel: &str, fields: Value) {
    if let Err(error) = bus.publish(channel, &message(fields)).await {
        tracing::debug!(channel, %error, "Monitoring message not published (at most once).");
    }
}

/// Runs until shutdown: announces, heartbeats, relays runtime events, answers queries and runs
/// commands.
pub(crate) async fn run_monitor(handle: RuntimeHandle, identity: Identity, heartbeat: Duration) {
    let shared = handle.shared.clone();
    let Some(remote) = shared.remote.as_ref() else { return };
    let bus = remote.bus.clone();
    let mut shutdown = shared.shutdown.subscribe();
    let mut events = handle.subscribe();
    let mut commands = subscribe_commands(bus.as_ref(), &mut shutdown).await;
    let reads = shared
        .store
        .clone()
        .map(|store| ReadAnswerer::new(store, bus.clone(), identity.runtime_id.clone()));
    announce(&handle, bus.as_ref(), &identity).await;
    let mut beat = tokio::time::interval(heartbeat.max(Duration::from_millis(100)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A change of the partitions owned is told at once (dashboards show who owns what).
    let mut ownership = shared.partitions.as_ref().map(|state| state.ownership.clone());
    let ownership_changed =
        async |ownership: &mut Option<tokio::sync::watch::Receiver<_>>| match ownership {
            Some(receiver) => {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        };
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => break,
            _ = beat.tick() => heartbeat_all(&handle, bus.as_ref(), &identity).await,
            () = ownership_changed(&mut ownership) => heartbeat_all(&handle, bus.as_ref(), &identity).await,
            batch = events.recv() => match batch {
                Ok(batch) => {
                    for event in batch.iter() {
                        relay_event(&handle, bus.as_ref(), &identity, event).await;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "Monitoring fell behind the runtime; event batches not published.");
                }
                Err(RecvError::Closed) => break,
            },
            command = next_command(&mut commands) => match command {
                Some(published) if published.channel == channels::STORE_READ => {
                    if let (Some(reads), Ok(Value::Object(body))) =
                        (&reads, serde_json::from_slice::<Value>(&published.body))
                    {
                        reads.answer(&body);
                    }
                }
                Some(published) => on_command(&handle, bus.as_ref(), &identity, published).await,
                None => {
                    tracing::warn!("Command subscription lost; subscribing again.");
                    commands = subscribe_commands(bus.as_ref(), &mut shutdown).await;
                }
            },
        }
    }
    for definition in handle.registry().components() {
        publish(
            bus.as_ref(),
            channels::SHUTDOWN,
            json!({
                "runtimeId": identity.runtime_id, "runtimeName": identity.name,
                "componentName": &*definition.name,
            }),
        )
        .await;
    }
}

/// Subscribes to the channels a runtime listens to, retrying with a back-off until it works or
/// shutdown comes (then `None`).
async fn subscribe_commands(
    bus: &dyn Bus,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Box<dyn Subscription>> {
    let names = [
        channels::DISCOVER,
        channels::QUERY_INSTANCES,
        channels::TRIGGER_EVENT,
        channels::CREATE_INSTANCE,
        channels::BROADCAST,
        channels::STORE_READ,
    ];
    let mut pause = SUBSCRIBE_BACKOFF_MIN;
    loop {
        match bus.subscribe(&names).await {
            Ok(subscription) => return Some(subscription),
            Err(error) => {
                tracing::warn!(%error, "Cannot subscribe to the command channels; retrying.")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            () = stopping(shutdown) => return None,
        }
        pause = (pause * 2).min(SUBSCRIBE_BACKOFF_MAX);
    }
}

/// The next command, `None` when the subscription failed; waits forever without one.
async fn next_command(subscription: &mut Option<Box<dyn Subscription>>) -> Option<Published> {
    match subscription {
        Some(subscription) => subscription.next().await.ok(),
        None => std::future::pending().await,
    }
}

/// One heartbeat per hosted component; for a component shared by replicas, with the partitions
/// this runtime owns (`{"partitions": {"count": 16, "owned": [0, 3, …]}}`).
async fn heartbeat_all(handle: &RuntimeHandle, bus: &dyn Bus, identity: &Identity) {
    let ownership = handle.ownership();
    for definition in handle.registry().components() {
        let mut fields = json!({
            "runtimeId": identity.runtime_id, "runtimeName": identity.name,
            "componentName": &*definition.name,
        });
        if let Some(owned) = ownership.as_ref().and_then(|o| o.get(&*definition.name)) {
            let list: Vec<u32> = owned.owned.keys().copied().collect();
            fields["partitions"] = json!({"count": owned.partitions, "owned": list});
        }
        publish(bus, channels::HEARTBEAT, fields).await;
    }
}

async fn announce(handle: &RuntimeHandle, bus: &dyn Bus, identity: &Identity) {
    for definition in handle.registry().components() {
        publish(
            bus,
            channels::ANNOUNCE,
            json!({
                "runtimeId": identity.runtime_id, "runtimeName": identity.name,
                "componentName": &*definition.name, "component": &*definition.model,
                "host": identity.host, "port": identity.port,
            }),
        )
        .await;
    }
}

/// Publishes one runtime event on its channel, in the seeds' `FSMEventBroadcast` form.
async fn relay_event(
    handle: &RuntimeHandle,
    bus: &dyn Bus,
    identity: &Identity,
    event: &RuntimeEvent,
) {
    let (channel, event_type) = match event {
        RuntimeEvent::InstanceCreated { .. } => (channels::INSTANCE_CREATED, "instance_created"),
        RuntimeEvent::StateChanged { .. } => (channels::STATE_CHANGE, "state_change"),
        RuntimeEvent::InstanceDisposed { .. } => {
            (channels::INSTANCE_COMPLETED, "instance_completed")
        }
        _ => return,
    };
    let registry = handle.registry();
    let Some(component) = event.component() else { return };
    let data = event.describe(registry);
    publish(
        bus,
        channel,
        json!({
            "runtimeId": identity.runtime_id, "runtimeName": identity.name,
            "componentName": &*registry.definition(component).name,
            "eventType": event_type, "data": data,
        }),
    )
    .await;
}

/// A command or query from a dashboard or another system.
async fn on_command(
    handle: &RuntimeHandle,
    bus: &dyn Bus,
    identity: &Identity,
    published: Published,
) {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&published.body) else {
        tracing::warn!(channel = %published.channel, "Unreadable command ignored.");
        return;
    };
    match published.channel.as_str() {
        channels::DISCOVER => announce(handle, bus, identity).await,
        channels::QUERY_INSTANCES => {
            announce(handle, bus, identity).await;
            answer_query(handle, bus, identity).await;
        }
        channels::TRIGGER_EVENT => trigger_event(handle, bus, identity, &body).await,
        channels::CREATE_INSTANCE => create_instance(handle, bus, identity, &body).await,
        channels::BROADCAST => broadcast(handle, bus, identity, &body).await,
        _ => {}
    }
}

/// Lists the live instances of each hosted component. The answer's `timestamp` is taken before
/// the instances are read: a dashboard keeps what changed after it (an instance created while
/// the shards were being read is not in the list, and its creation event may arrive first).
async fn answer_query(handle: &RuntimeHandle, bus: &dyn Bus, identity: &Identity) {
    for definition in handle.registry().components() {
        let read_at = now_ms();
        let filter = InstanceFilter {
            component: Some(definition.name.to_string()),
            limit: MAX_QUERY_INSTANCES,
            ..InstanceFilter::default()
        };
        let instances: Vec<Value> =
            handle.instances(filter).await.iter().map(instance_json).collect();
        publish(
            bus,
            channels::QUERY_RESPONSE,
            json!({
                "type": "instances", "runtimeId": identity.runtime_id, "runtimeName": identity.name,
                "componentName": &*definition.name, "instances": instances, "timestamp": read_at,
            }),
        )
        .await;
    }
}

fn instance_json(view: &InstanceView) -> Value {
    json!({
        "id": view.id, "instanceId": view.id, "machineName": &*view.machine_name,
        "currentState": &*view.current_state, "status": view.status, "context": &*view.context,
        "pendingTimeouts": view.pending_timers.iter().map(|timer| json!({
            "event": &*timer.event, "deadline": timer.deadline,
        })).collect::<Vec<_>>(),
    })
}

/// Where and how a command this runtime acts on is answered.
struct Answer {
    /// The command's `requestId` (`null` when it had none).
    request_id: Value,
    /// The channel the answer goes to; `None`: no answer was asked for (neither `requestId` nor
    /// `replyTo`).
    channel: Option<String>,
}

impl Answer {
    /// Reads `requestId` and `replyTo`. An invalid `replyTo` is answered at once with a failure
    /// on `COMMAND_RESPONSE` (the command is not run): `None`.
    async fn for_command(
        bus: &dyn Bus,
        identity: &Identity,
        body: &Map<String, Value>,
    ) -> Option<Answer> {
        let request_id = body.get("requestId").cloned().unwrap_or(Value::Null);
        let checked = match body.get("replyTo") {
            None | Some(Value::Null) => {
                Ok((!request_id.is_null()).then(|| channels::COMMAND_RESPONSE.to_owned()))
            }
            Some(Value::String(name)) => {
                channels::check_reply_channel(name).map(|()| Some(name.clone()))
            }
            Some(_) => Err("replyTo must be a string".to_owned()),
        };
        match checked {
            Ok(channel) => Some(Answer { request_id, channel }),
            Err(error) => {
                tracing::debug!(%error, "Command with an invalid replyTo refused.");
                let refused =
                    Answer { request_id, channel: Some(channels::COMMAND_RESPONSE.to_owned()) };
                refused.send(bus, identity, json!({"status": "failed", "error": error})).await;
                None
            }
        }
    }

    /// Publishes `outcome` on the answer's channel, if any.
    async fn send(&self, bus: &dyn Bus, identity: &Identity, outcome: Value) {
        let Some(channel) = &self.channel else { return };
        publish(
            bus,
            channel,
            json!({
                "requestId": self.request_id, "runtimeId": identity.runtime_id,
                "runtimeName": identity.name, "outcome": outcome,
            }),
        )
        .await;
    }
}

/// `{componentName?, instanceId, event: {type, payload?}}`: acted on by the runtime holding
/// the instance; the others stay silent.
async fn trigger_event(
    handle: &RuntimeHandle,
    bus: &dyn Bus,
    identity: &Identity,
    body: &Map<String, Value>,
) {
    if let Some(component) = body.get("componentName").and_then(Value::as_str)
        && handle.registry().index_of(component).is_none()
    {
        return;
    }
    let Some(instance) = body
        .get("instanceId")
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<uuid::Uuid>().ok())
        .map(InstanceId)
    else {
        return;
    };
    let event = body.get("event");
    let Some(event_type) = event.and_then(|event| event.get("type")).and_then(Value::as_str) else {
        return;
    };
    let payload: Context = match event.and_then(|event| event.get("payload")) {
        Some(Value::Object(payload)) => payload.clone(),
        _ => Context::new(),
    };
    if handle.instance(instance).await.is_none() {
        return;
    }
    let Some(answer) = Answer::for_command(bus, identity, body).await else { return };
    let outcome = match handle.send(SendRequest::new(instance, event_type, payload)).await {
        Ok(SendOutcome::Transitioned { new_state, .. }) => {
            json!({"status": "transitioned", "instanceId": instance, "newState": &*new_state})
        }
        Ok(SendOutcome::Ignored { reason, .. }) => {
            json!({"status": "ignored", "instanceId": instance, "reason": reason})
        }
        Err(error) => {
            json!({"status": "failed", "instanceId": instance, "error": error.to_string()})
        }
    };
    answer.send(bus, identity, outcome).await;
}

/// The component a command names, when this runtime hosts it, and how to answer the command
/// (`None`: not ours to act on, or its `replyTo` was refused and answered so).
async fn hosted_command<'a>(
    handle: &RuntimeHandle,
    bus: &dyn Bus,
    identity: &Identity,
    body: &'a Map<String, Value>,
) -> Option<(&'a str, Answer)> {
    let component = body.get("componentName").and_then(Value::as_str)?;
    handle.registry().index_of(component)?;
    let answer = Answer::for_command(bus, identity, body).await?;
    Some((component, answer))
}

/// `{componentName, machineName?, context?, requestId?, replyTo?}`: acted on by the runtime
/// hosting the component (the entry machine when no machine is named); of the runtimes sharing
/// a component, by the owner of its partition 0.
async fn create_instance(
    handle: &RuntimeHandle,
    bus: &dyn Bus,
    identity: &Identity,
    body: &Map<String, Value>,
) {
    // Of the runtimes sharing a component, the owner of partition 0 alone creates.
    if let Some(component) = body.get("componentName").and_then(Value::as_str)
        && handle.shared.shared_partitions(component).is_some()
        && !handle.shared.partitions.as_ref().is_some_and(|state| state.is_ready(component, 0))
    {
        return;
    }
    let Some((component, answer)) = hosted_command(handle, bus, identity, body).await else {
        return;
    };
    let Some(machine) = machine_name(handle, component, body) else {
        let outcome = json!({"status": "failed", "error": "no machineName and no entryMachine"});
        answer.send(bus, identity, outcome).await;
        return;
    };
    let context = match body.get("context") {
        Some(Value::Object(context)) => context.clone(),
        _ => Context::new(),
    };
    let request = CreateRequest {
        component: component.to_owned(),
        machine,
        context,
        ..CreateRequest::default()
    };
    let outcome = match handle.create(request).await {
        Ok(id) => json!({"status": "created", "instanceId": id}),
        Err(error) => json!({"status": "failed", "error": error.to_string()}),
    };
    answer.send(bus, identity, outcome).await;
}

/// The command's `machineName`, else the hosted component's entry machine (`None`: neither).
fn machine_name(
    handle: &RuntimeHandle,
    component: &str,
    body: &Map<String, Value>,
) -> Option<String> {
    if let Some(machine) = body.get("machineName").and_then(Value::as_str) {
        return Some(machine.to_owned());
    }
    let definition = handle.registry().definition(handle.registry().index_of(component)?);
    definition.entry_machine.map(|entry| definition.machine(entry).name.to_string())
}

/// `{componentName, machineName?, state?, event: {type, payload?}, filters?: [{property,
/// operator?, value}], requestId?, replyTo?}`: every runtime hosting the component sends the
/// event to the instances it holds of that machine (in `state` when given) whose properties
/// match every filter, and answers `{status: "broadcast", count}`.
async fn broadcast(
    handle: &RuntimeHandle,
    bus: &dyn Bus,
    identity: &Identity,
    body: &Map<String, Value>,
) {
    let Some((component, answer)) = hosted_command(handle, bus, identity, body).await else {
        return;
    };
    let outcome = match broadcast_request(handle, component, body) {
        Err(error) => json!({"status": "failed", "error": error}),
        Ok(request) => {
            let sent = handle
                .broadcast(
                    component,
                    &request.machine,
                    request.state.as_deref(),
                    &request.event,
                    request.payload,
                    request.filters,
                )
                .await;
            match sent {
                Ok(count) => json!({"status": "broadcast", "count": count}),
                Err(error) => json!({"status": "failed", "error": error.to_string()}),
            }
        }
    };
    answer.send(bus, identity, outcome).await;
}

/// A broadcast command, read.
struct BroadcastCommand {
    machine: String,
    state: Option<String>,
    event: String,
    payload: Context,
    filters: Vec<PropertyFilter>,
}

/// Reads a broadcast command's fields; the error says which one is wrong.
fn broadcast_request(
    handle: &RuntimeHandle,
    component: &str,
    body: &Map<String, Value>,
) -> Result<BroadcastCommand, String> {
    let machine =
        machine_name(handle, component, body).ok_or("no machineName and no entryMachine")?;
    let state = match body.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(state)) => Some(state.clone()),
        Some(_) => return Err("state must be a string".into()),
    };
    let event = body.get("event");
    let event_type = event
        .and_then(|event| event.get("type"))
        .and_then(Value::as_str)
        .ok_or("event.type (a string) is required")?;
    let payload = match event.and_then(|event| event.get("payload")) {
        None | Some(Value::Null) => Context::new(),
        Some(Value::Object(payload)) => payload.clone(),
        Some(_) => return Err("event.payload must be an object".into()),
    };
    let filters = match body.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(filters) => serde_json::from_value(filters.clone()).map_err(|error| {
            format!("filters must be a list of {{property, operator?, value}}: {error}")
        })?,
    };
    Ok(BroadcastCommand { machine, state, event: event_type.to_owned(), payload, filters })
}
