//! Response bodies shared by several routes, in the original's camelCase shapes, with their
//! OpenAPI schemas: instances (live or finished), event replies, paging, and the 202 of a request
//! handed to a runtime in another process (`Handed`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;
use xcomponent_core::instance::{Context, EventId, InstanceId, Millis, Status};
use xcomponent_core::message::MessageId;
use xcomponent_core::store::{InstanceRecord, StoredEvent};
use xcomponent_runtime::{AvailableTransition, InstanceView, Registry, RuntimeError, SendOutcome};

/// Default page size of instance lists.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page of instance lists.
pub const MAX_PAGE: usize = 1000;

/// A timer armed on an instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingTimeout {
    /// Event of the timed transition.
    pub event: String,
    /// Where it leads.
    pub target_state: String,
    /// `timeout` or `auto`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Absolute deadline (ms since epoch).
    pub deadline: Millis,
    /// Time left (ms), 0 when overdue.
    pub remaining_ms: i64,
}

/// A transition the instance can take now.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionInfo {
    /// Event to send.
    pub event: String,
    /// Target state.
    pub to: String,
    /// Transition type (`regular`, `timeout`, `cross_component`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Guard expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// Target machine (inter_machine, cross_component).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_machine: Option<String>,
    /// Target component (cross_component).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_component: Option<String>,
}

impl From<&AvailableTransition> for TransitionInfo {
    fn from(transition: &AvailableTransition) -> TransitionInfo {
        TransitionInfo {
            event: transition.event.to_string(),
            to: transition.to.to_string(),
            kind: kind_name(&transition.kind),
            guard: transition.guard.clone(),
            target_machine: transition.target_machine.clone(),
            target_component: transition.target_component.clone(),
        }
    }
}

/// The serde name of an enum value (`cross_component`, `final`, ...).
pub fn kind_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

/// An instance, live or finished.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDto {
    /// Instance id.
    #[schema(value_type = String, format = Uuid)]
    pub id: InstanceId,
    /// Same as `id` (the original's name).
    #[schema(value_type = String, format = Uuid)]
    pub instance_id: InstanceId,
    /// Component.
    pub component_name: String,
    /// Machine.
    pub machine_name: String,
    /// Current state.
    pub current_state: String,
    /// Type of the current state (`entry`, `regular`, `final`, `error`).
    pub state_type: String,
    /// `active`, `completed` or `error`.
    pub status: String,
    /// Instance data.
    #[schema(value_type = Object)]
    pub context: Arc<Context>,
    /// The data again, for machines that call it `publicMember`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub public_member: Option<Arc<Context>>,
    /// Created as the component's entry point.
    pub is_entry_point: bool,
    /// Parent instance (inter_machine children).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_instance_id: Option<InstanceId>,
    /// Stored events so far.
    pub seq: u64,
    /// Creation time (ms since epoch).
    pub created_at: Millis,
    /// Last change (ms since epoch).
    pub updated_at: Millis,
    /// Whether the instance is live (accepts events).
    pub live: bool,
    /// Armed timers.
    pub pending_timeouts: Vec<PendingTimeout>,
    /// Transitions leaving the current state (detail views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_transitions: Option<Vec<TransitionInfo>>,
}

impl InstanceDto {
    /// A live instance; `now` computes `remainingMs`.
    pub fn live(view: &InstanceView, now: Millis, detail: bool) -> InstanceDto {
        InstanceDto {
            id: view.id,
            instance_id: view.id,
            component_name: view.component_name.to_string(),
            machine_name: view.machine_name.to_string(),
            current_state: view.current_state.to_string(),
            state_type: kind_name(&view.state_type),
            status: view.status.as_str().to_owned(),
            public_member: view.public_member.then(|| view.context.clone()),
            context: view.context.clone(),
            is_entry_point: view.is_entry_point,
            parent_instance_id: view.parent.as_ref().map(|parent| parent.instance_id),
            seq: view.seq,
            created_at: view.created_at,
            updated_at: view.updated_at,
            live: true,
            pending_timeouts: view
                .pending_timers
                .iter()
                .map(|timer| PendingTimeout {
                    event: timer.event.to_string(),
                    target_state: timer.target_state.to_string(),
                    kind: kind_name(&timer.kind),
                    deadline: timer.deadline,
                    remaining_ms: timer.deadline.saturating_sub(now).max(0),
                })
                .collect(),
            available_transitions: detail
                .then(|| view.available_transitions.iter().map(TransitionInfo::from).collect()),
        }
    }

    /// An instance as stored (typically finished).
    pub fn stored(record: &InstanceRecord, registry: &Registry) -> InstanceDto {
        let machine = registry
            .resolve(&record.component, &record.machine)
            .ok()
            .map(|(c, m)| registry.definition(c).machine(m));
        let state_type = machine.and_then(|machine| {
            machine.state_index(&record.state).map(|index| kind_name(&machine.state(index).kind))
        });
        let public = machine.is_some_and(|machine| machine.public_member);
        let context = Arc::new(record.context.clone());
        InstanceDto {
            id: record.id,
            instance_id: record.id,
            component_name: record.component.clone(),
            machine_name: record.machine.clone(),
            current_state: record.state.clone(),
            state_type: state_type.unwrap_or_default(),
            status: record.status.as_str().to_owned(),
            public_member: public.then(|| context.clone()),
            context,
            is_entry_point: record.entry_point,
            parent_instance_id: record.parent.as_ref().map(|parent| parent.instance_id),
            seq: record.seq,
            created_at: record.created_at,
            updated_at: record.updated_at,
            live: record.status == Status::Active,
            pending_timeouts: Vec::new(),
            available_transitions: Some(Vec::new()),
        }
    }
}

/// A page of live instances, in the shape of every list route: `{items, nextCursor}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancePage {
    /// The instances, ordered by id (creation time).
    pub items: Vec<InstanceDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `{status: "accepted", messageId, instanceId?}`: the request went over the bus to the runtime
/// that owns its target, whose answer did not come back in time; it may still be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedReply {
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: String,
    /// The message that carries the request.
    #[schema(value_type = String, format = Uuid)]
    pub message_id: MessageId,
    /// For a creation: the id the new instance gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub instance_id: Option<InstanceId>,
}

/// A route's answer when its request may be handed to another process: done (`T`), or accepted
/// without an outcome yet (202 with an [`AcceptedReply`]).
#[derive(Debug)]
pub enum Handed<T> {
    /// The outcome is known.
    Done(T),
    /// Handed over; the outcome is not known yet.
    Accepted(AcceptedReply),
}

impl<T> Handed<T> {
    /// `Accepted` for `RuntimeError::Accepted`; any other error is given back.
    pub fn accepted(error: RuntimeError) -> Result<Handed<T>, RuntimeError> {
        match error {
            RuntimeError::Accepted { message_id, instance_id } => {
                Ok(Handed::Accepted(AcceptedReply {
                    status: "accepted".to_owned(),
                    message_id,
                    instance_id,
                }))
            }
            other => Err(other),
        }
    }
}

impl<T: IntoResponse> IntoResponse for Handed<T> {
    fn into_response(self) -> Response {
        match self {
            Handed::Done(answer) => answer.into_response(),
            Handed::Accepted(reply) => (StatusCode::ACCEPTED, Json(reply)).into_response(),
        }
    }
}

/// What happened to a sent event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventReply {
    /// True when the instance took a transition.
    pub success: bool,
    /// `transitioned` or `ignored`.
    pub outcome: String,
    /// The instance.
    #[schema(value_type = String, format = Uuid)]
    pub instance_id: InstanceId,
    /// The event type sent.
    pub event: String,
    /// State before (transitioned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<String>,
    /// State after (transitioned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_state: Option<String>,
    /// Status after (transitioned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Stored event id (transitioned).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub event_id: Option<EventId>,
    /// Why nothing happened (ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The state the instance stays in (ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// Events the instance accepts now (ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_events: Option<Vec<String>>,
}

impl EventReply {
    /// The reply for an outcome.
    pub fn new(instance_id: InstanceId, event: &str, outcome: SendOutcome) -> EventReply {
        let base = EventReply {
            success: false,
            outcome: String::new(),
            instance_id,
            event: event.to_owned(),
            previous_state: None,
            new_state: None,
            status: None,
            event_id: None,
            reason: None,
            current_state: None,
            allowed_events: None,
        };
        match outcome {
            SendOutcome::Transitioned { previous_state, new_state, status, event_id } => {
                EventReply {
                    success: true,
                    outcome: "transitioned".to_owned(),
                    previous_state: Some(previous_state.to_string()),
                    new_state: Some(new_state.to_string()),
                    status: Some(status.as_str().to_owned()),
                    event_id: Some(event_id),
                    ..base
                }
            }
            SendOutcome::Ignored { reason, current_state, allowed_events } => EventReply {
                outcome: "ignored".to_owned(),
                reason: Some(reason),
                current_state: Some(current_state.to_string()),
                allowed_events: Some(allowed_events.iter().map(ToString::to_string).collect()),
                ..base
            },
            // A future outcome kind: report it by its serde name.
            #[allow(unreachable_patterns)]
            other => EventReply { outcome: kind_name(&other), ..base },
        }
    }
}

/// A stored event as the API shows it: the record in camelCase (with `changes`, what it changed
/// in the data, when it changed something) plus `componentName`, `machineName` and `context`, the
/// instance data after the event (`context_after`: a stored transition keeps only its changes).
pub fn history_event(event: &StoredEvent, context_after: &Context) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Value::Object(map) = &mut value {
        map.insert("componentName".to_owned(), Value::String(event.component.to_string()));
        map.insert("machineName".to_owned(), Value::String(event.machine.to_string()));
        map.insert("context".to_owned(), Value::Object(context_after.clone()));
    }
    value
}

/// The data after each event of one instance's whole history (in seq order, from its creation),
/// by folding the events: `contexts[i]` is the data after `events[i]`.
pub fn contexts_after(events: &[StoredEvent]) -> Vec<Context> {
    let mut data = Context::new();
    events
        .iter()
        .map(|event| {
            data = event.data_after(&data);
            data.clone()
        })
        .collect()
}

/// One instance's whole history as the API shows it (`history_event` of each event).
pub fn history_of(events: &[StoredEvent]) -> Vec<Value> {
    events.iter().zip(contexts_after(events)).map(|(e, data)| history_event(e, &data)).collect()
}

/// A stored instance record as the history search shows it: the record in camelCase plus the
/// original's names (`instanceId`, `componentName`, `machineName`, `currentState`, `eventCount`).
pub fn history_instance(record: &InstanceRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Value::Object(map) = &mut value {
        map.insert("instanceId".to_owned(), Value::String(record.id.to_string()));
        map.insert("componentName".to_owned(), Value::String(record.component.clone()));
        map.insert("machineName".to_owned(), Value::String(record.machine.clone()));
        map.insert("currentState".to_owned(), Value::String(record.state.clone()));
        map.insert("eventCount".to_owned(), Value::from(record.seq));
    }
    value
}

/// Turns an optional JSON body field into instance data (an object; null or absent is empty).
pub fn object_field(field: &str, value: Option<Value>) -> Result<Context, crate::error::ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Context::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => {
            Err(crate::error::ApiError::bad_field(field, format!("{field} must be a JSON object")))
        }
    }
}

/// A requested page size: absent is `default`; outside 1..=`max` is a 400 naming `limit`.
pub fn page_size(
    requested: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, crate::error::ApiError> {
    match requested {
        None => Ok(default),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(_) => Err(crate::error::ApiError::bad_field(
            "limit",
            format!("limit must be between 1 and {max}"),
        )),
    }
}
