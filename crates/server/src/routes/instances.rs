//! Instance routes: list live instances (filtered, paged), show one (live, or finished from the
//! store), and send events to one (`/events`, the component-scoped `/events`, `/trigger`).

use crate::dto::{
    AcceptedReply, DEFAULT_PAGE, EventReply, Handed, InstanceDto, InstancePage, MAX_PAGE,
    object_field,
};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody, parse_instance_id};
use crate::routes::components::{check_event_name, find_component};
use crate::schemas::{EventBody, EventSpec};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Instant;
use utoipa::{IntoParams, ToSchema};
use xcomponent_core::instance::{Context, InstanceId, Status};
use xcomponent_runtime::{InstanceFilter, RuntimeError, SendRequest};

/// Filters and paging of instance lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this component.
    pub component: Option<String>,
    /// Only this machine.
    pub machine: Option<String>,
    /// Only this state.
    pub state: Option<String>,
    /// Text searched in the id and the data.
    pub q: Option<String>,
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<String>,
}

/// `{instance}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceBody {
    /// The instance, with `availableTransitions` and `pendingTimeouts`.
    pub instance: InstanceDto,
}

async fn list(
    state: &AppState,
    component: Option<String>,
    query: ListQuery,
) -> ApiResult<InstancePage> {
    let limit = crate::dto::page_size(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let after = match query.cursor.as_deref() {
        Some(cursor) => Some(
            cursor
                .parse::<InstanceId>()
                .map_err(|_| ApiError::bad_field("cursor", "cursor must be a nextCursor value"))?,
        ),
        None => None,
    };
    let empty_to_none = |value: Option<String>| value.filter(|text| !text.is_empty());
    let filter = InstanceFilter {
        component: empty_to_none(component),
        machine: empty_to_none(query.machine),
        state: empty_to_none(query.state),
        text: empty_to_none(query.q).map(|text| text.to_lowercase()),
        after,
        limit: limit + 1,
    };
    let mut views = state.runtime().instances(filter).await;
    let more = views.len() > limit;
    views.truncate(limit);
    let now = state.runtime().clock().now();
    let items: Vec<InstanceDto> =
        views.iter().map(|view| InstanceDto::live(view, now, false)).collect();
    let next_cursor = if more { items.last().map(|item| item.id.to_string()) } else { None };
    Ok(InstancePage { items, next_cursor })
}

/// Lists live instances.
#[utoipa::path(get, path = "/api/instances", tag = "Instances", params(ListQuery),
    responses((status = 200, body = InstancePage), (status = 400, description = "Bad query", body = ErrorBody)))]
pub(crate) async fn list_instances(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<InstancePage>> {
    let component = query.component.clone();
    Ok(Json(list(&state, component, query).await?))
}

/// Lists the live instances of a component.
#[utoipa::path(get, path = "/api/components/{name}/instances", tag = "Instances",
    params(("name" = String, Path, description = "Component name"), ListQuery),
    responses((status = 200, body = InstancePage), (status = 400, description = "Bad query", body = ErrorBody),
        (status = 404, description = "Unknown component", body = ErrorBody)))]
pub(crate) async fn list_component_instances(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<InstancePage>> {
    find_component(&state, &name)?;
    Ok(Json(list(&state, Some(name), query).await?))
}

/// A live instance, or a finished one from the store.
pub(crate) async fn find_instance(state: &AppState, id: InstanceId) -> ApiResult<InstanceDto> {
    if let Some(view) = state.runtime().instance(id).await {
        return Ok(InstanceDto::live(&view, state.runtime().clock().now(), true));
    }
    if let Some(store) = state.runtime().store()
        && let Some(record) = store.instance(id).await?
    {
        return Ok(InstanceDto::stored(&record, &state.runtime().registry()));
    }
    Err(ApiError::unknown_instance(id))
}

/// One instance.
#[utoipa::path(get, path = "/api/instances/{id}", tag = "Instances",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = InstanceBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody)))]
pub(crate) async fn get_instance(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<InstanceBody>> {
    let id = parse_instance_id(&id)?;
    Ok(Json(InstanceBody { instance: find_instance(&state, id).await? }))
}

fn event_of(body: EventBody) -> ApiResult<(String, Value)> {
    let spec = match body.event {
        Some(value) => Some(serde_json::from_value::<EventSpec>(value).map_err(|_| {
            ApiError::bad_field(
                "event",
                "event must be an event type or {\"type\": ..., \"payload\": {...}}",
            )
        })?),
        None => None,
    };
    match &spec {
        Some(EventSpec::Full { event_type, payload }) => {
            check_event_name("event.type", event_type)?;
            object_field("event.payload", payload.clone())?;
        }
        Some(EventSpec::Name(event)) => check_event_name("event", event)?,
        None => {}
    }
    let event_type = match body.event_type {
        Some(Value::String(name)) => Some(name),
        Some(_) => {
            return Err(ApiError::bad_field("type", "type must be a string (the event type)"));
        }
        None => None,
    };
    let (event, nested_payload) = match (event_type, spec) {
        (Some(event), _) => (event, None),
        (None, Some(EventSpec::Name(event))) => (event, None),
        (None, Some(EventSpec::Full { event_type, payload })) => (event_type, payload),
        (None, None) => {
            return Err(ApiError::bad_field(
                "type",
                "missing event type: send {\"type\": \"EVENT\", \"payload\": {...}}",
            ));
        }
    };
    check_event_name("type", &event)?;
    Ok((event, body.payload.or(nested_payload).unwrap_or(Value::Null)))
}

async fn send(
    state: &AppState,
    id: InstanceId,
    body: EventBody,
    component: Option<&str>,
) -> ApiResult<Handed<Json<EventReply>>> {
    let (event, payload) = event_of(body)?;
    let payload = object_field("payload", Some(payload))?;
    send_to(state, id, event, payload, component).await
}

/// Sends `event` with `payload` to instance `id` (of `component`, when given: 404 when the
/// instance belongs to another one) and says what happened; the one path of every route that
/// sends to one instance (REST, aliases, webhooks).
pub(crate) async fn send_to(
    state: &AppState,
    id: InstanceId,
    event: String,
    payload: Context,
    component: Option<&str>,
) -> ApiResult<Handed<Json<EventReply>>> {
    if let Some(component) = component {
        find_component(state, component)?;
        if let Some(view) = state.runtime().instance(id).await
            && *view.component_name != *component
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_instance",
                format!("instance {id} not found in component {component}"),
            ));
        }
    }
    let started = Instant::now();
    let result = state.runtime().send(SendRequest::new(id, event.clone(), payload)).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(RuntimeError::UnknownInstance(_)) => {
            return Err(finished_or_unknown(state, id, component).await);
        }
        Err(error) => return Ok(Handed::accepted(error)?),
    };
    let reply = EventReply::new(id, &event, outcome);
    state.metrics().event_duration(&reply.outcome).record(started.elapsed().as_secs_f64());
    Ok(Handed::Done(Json(reply)))
}

/// 409 for an instance that has finished, 404 for one that never existed.
async fn finished_or_unknown(
    state: &AppState,
    id: InstanceId,
    component: Option<&str>,
) -> ApiError {
    let record = match state.runtime().store() {
        Some(store) => match store.instance(id).await {
            Ok(record) => record,
            Err(error) => return ApiError::storage(&error),
        },
        None => None,
    };
    match record {
        Some(record)
            if record.status != Status::Active
                && component.is_none_or(|component| component == record.component) =>
        {
            ApiError::new(
                StatusCode::CONFLICT,
                "instance_finished",
                format!(
                    "instance {id} has finished in state {} ({}); it accepts no more events",
                    record.state,
                    record.status.as_str()
                ),
            )
        }
        _ => ApiError::unknown_instance(id),
    }
}

/// Sends an event to an instance.
#[utoipa::path(post, path = "/api/instances/{id}/events", tag = "Events",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    request_body = EventBody,
    responses(
        (status = 200, description = "What happened: the new state, or why it was ignored and what is allowed now", body = EventReply),
        (status = 202, description = "Handed to the runtime hosting the instance (in another process); the outcome is not known yet", body = AcceptedReply),
        (status = 400, description = "Bad body or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
        (status = 409, description = "The instance has finished", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The transition would make the data larger than the limit (`data_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn send_event(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EventBody>,
) -> ApiResult<Handed<Json<EventReply>>> {
    let id = parse_instance_id(&id)?;
    send(&state, id, body, None).await
}

/// Sends an event to an instance (the distributed dashboard's route; same as `/events`).
#[utoipa::path(post, path = "/api/instances/{id}/trigger", tag = "Events",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    request_body = EventBody,
    responses(
        (status = 200, description = "What happened", body = EventReply),
        (status = 202, description = "Handed to the runtime hosting the instance (in another process); the outcome is not known yet", body = AcceptedReply),
        (status = 400, description = "Bad body or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
        (status = 409, description = "The instance has finished", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The transition would make the data larger than the limit (`data_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EventBody>,
) -> ApiResult<Handed<Json<EventReply>>> {
    let id = parse_instance_id(&id)?;
    send(&state, id, body, None).await
}

/// Sends an event to an instance of a component.
#[utoipa::path(post, path = "/api/components/{name}/instances/{id}/events", tag = "Events",
    params(("name" = String, Path, description = "Component name"), ("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    request_body = EventBody,
    responses(
        (status = 200, description = "What happened", body = EventReply),
        (status = 202, description = "Handed to the runtime hosting the instance (in another process); the outcome is not known yet", body = AcceptedReply),
        (status = 400, description = "Bad body or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown component or instance", body = ErrorBody),
        (status = 409, description = "The instance has finished", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The transition would make the data larger than the limit (`data_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn send_component_event(
    State(state): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<EventBody>,
) -> ApiResult<Handed<Json<EventReply>>> {
    let id = parse_instance_id(&id)?;
    send(&state, id, body, Some(&name)).await
}

/// `{instanceId, transitions}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionsBody {
    /// The instance.
    #[schema(value_type = String, format = Uuid)]
    pub instance_id: InstanceId,
    /// Transitions leaving its current state (none once it has finished).
    pub transitions: Vec<crate::dto::TransitionInfo>,
}

/// The transitions an instance can take from its current state.
#[utoipa::path(get, path = "/api/instances/{id}/transitions", tag = "Instances",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = TransitionsBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody)))]
pub(crate) async fn transitions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TransitionsBody>> {
    let id = parse_instance_id(&id)?;
    let instance = find_instance(&state, id).await?;
    let transitions = if instance.live { instance.available_transitions } else { None };
    Ok(Json(TransitionsBody { instance_id: id, transitions: transitions.unwrap_or_default() }))
}
