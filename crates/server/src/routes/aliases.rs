//! The original `APIServer`'s routes (`npm run api`), kept so its clients and documentation work:
//! each is a thin alias of one of our routes and answers exactly what its twin answers (our JSON
//! shapes, not the original's `{success, data}` envelope). The OpenAPI document lists them under
//! the `Aliases` tag, each naming its twin.
//!
//! A component-scoped alias (`/api/{component}/...`) first checks that the component exists and,
//! for an instance, that the instance belongs to it (404 otherwise), then calls the twin.
//! `GET /api/cross-component/events` (every event of every component, unbounded) is not
//! provided: it answers 501 naming the routes to use instead.

use crate::dto::{AcceptedReply, Handed};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody, parse_instance_id};
use crate::routes::components::{self, CreateInstanceBody, Created, find_component};
use crate::routes::history::{self, CausalityBody, CausalityQuery, HistoryBody};
use crate::routes::instances::{self, InstanceBody, ListQuery, TransitionsBody, find_instance};
use crate::schemas::EventBody;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Checks that `id` is an instance of `component` (live or finished).
async fn check_member(state: &AppState, component: &str, id: &str) -> ApiResult<()> {
    find_component(state, component)?;
    let instance = find_instance(state, parse_instance_id(id)?).await?;
    if instance.component_name != component {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_instance",
            format!("instance {id} not found in component {component}"),
        ));
    }
    Ok(())
}

/// Alias of `GET /api/instances/{id}`.
#[utoipa::path(get, path = "/api/{component}/instance/{id}", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/instances/{id}`.",
    params(("component" = String, Path, description = "Component name"), ("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = InstanceBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown component, or instance not in it", body = ErrorBody)))]
pub(crate) async fn instance(
    State(state): State<AppState>,
    ApiPath((component, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<InstanceBody>> {
    check_member(&state, &component, &id).await?;
    instances::get_instance(State(state), ApiPath(id)).await
}

/// Alias of `POST /api/components/{name}/instances/{id}/events`.
#[utoipa::path(post, path = "/api/{component}/instance/{id}/event", tag = "Aliases",
    description = "The original APIServer's route; same answer as `POST /api/components/{name}/instances/{id}/events`.",
    params(("component" = String, Path, description = "Component name"), ("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    request_body = EventBody,
    responses((status = 200, description = "What happened", body = crate::dto::EventReply),
        (status = 202, description = "Handed to the runtime hosting the instance (in another process); the outcome is not known yet", body = AcceptedReply),
        (status = 400, description = "Bad body or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown component or instance", body = ErrorBody),
        (status = 409, description = "The instance has finished", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "The transition would make the data larger than the limit (`data_too_large`)", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn send_event(
    state: State<AppState>,
    ApiPath((component, id)): ApiPath<(String, String)>,
    body: ApiJson<EventBody>,
) -> ApiResult<Handed<Json<crate::dto::EventReply>>> {
    instances::send_component_event(state, ApiPath((component, id)), body).await
}

/// Alias of `GET /api/instances/{id}/transitions`.
#[utoipa::path(get, path = "/api/{component}/instance/{id}/transitions", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/instances/{id}/transitions`.",
    params(("component" = String, Path, description = "Component name"), ("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = TransitionsBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown component, or instance not in it", body = ErrorBody)))]
pub(crate) async fn transitions(
    State(state): State<AppState>,
    ApiPath((component, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<TransitionsBody>> {
    check_member(&state, &component, &id).await?;
    instances::transitions(State(state), ApiPath(id)).await
}

/// Alias of `GET /api/instances/{id}/history`.
#[utoipa::path(get, path = "/api/{component}/instance/{id}/history", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/instances/{id}/history`.",
    params(("component" = String, Path, description = "Component name"), ("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = HistoryBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown component, or instance not in it", body = ErrorBody)))]
pub(crate) async fn instance_history(
    State(state): State<AppState>,
    ApiPath((component, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<HistoryBody>> {
    check_member(&state, &component, &id).await?;
    history::instance_history(State(state), ApiPath(id)).await
}

/// Alias of `GET /api/components/{name}/instances`.
#[utoipa::path(get, path = "/api/{component}/instances", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/components/{name}/instances`.",
    params(("component" = String, Path, description = "Component name"), ListQuery),
    responses((status = 200, body = crate::dto::InstancePage), (status = 400, description = "Bad query", body = ErrorBody),
        (status = 404, description = "Unknown component", body = ErrorBody)))]
pub(crate) async fn list_instances(
    state: State<AppState>,
    ApiPath(component): ApiPath<String>,
    query: ApiQuery<ListQuery>,
) -> ApiResult<Json<crate::dto::InstancePage>> {
    instances::list_component_instances(state, ApiPath(component), query).await
}

/// Alias of `GET /api/components/{name}`.
#[utoipa::path(get, path = "/api/{component}/definition", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/components/{name}`.",
    params(("component" = String, Path, description = "Component name")),
    responses((status = 200, body = components::ComponentBody), (status = 404, description = "Unknown component", body = ErrorBody)))]
pub(crate) async fn definition(
    state: State<AppState>,
    ApiPath(component): ApiPath<String>,
) -> ApiResult<Json<components::ComponentBody>> {
    components::get_component(state, ApiPath(component)).await
}

/// Body of the original's `POST /api/{component}/{machine}/instance`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct MachineInstanceBody {
    /// Initial data (a JSON object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// Alias of `POST /api/components/{name}/instances` with `machineName` from the path.
#[utoipa::path(post, path = "/api/{component}/{machine}/instance", tag = "Aliases",
    description = "The original APIServer's route; same answer as `POST /api/components/{name}/instances` with `{machineName, context}`.",
    params(("component" = String, Path, description = "Component name"), ("machine" = String, Path, description = "Machine name")),
    request_body = MachineInstanceBody,
    responses((status = 201, description = "Created", body = Created),
        (status = 202, description = "Handed to the runtime hosting the component (in another process); not known to be created yet", body = AcceptedReply),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown component or machine", body = ErrorBody),
        (status = 409, description = "Singleton entry machine already has a live instance", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "The context breaks the machine's contextSchema (`context_schema`, the field is named) or is larger than the data limit", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn create_instance(
    state: State<AppState>,
    ApiPath((component, machine)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<MachineInstanceBody>,
) -> ApiResult<Handed<(StatusCode, Json<Created>)>> {
    let body = CreateInstanceBody { machine_name: Some(machine), context: body.context };
    components::create_instance(state, ApiPath(component), ApiJson(body)).await
}

/// Alias of `GET /api/history/causality/{eventId}`.
#[utoipa::path(get, path = "/api/{component}/causality/{eventId}", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/history/causality/{eventId}` (causality crosses components).",
    params(("component" = String, Path, description = "Component name"), ("eventId" = uuid::Uuid, Path, description = "Stored event id (UUID)"), CausalityQuery),
    responses((status = 200, body = CausalityBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown component or event", body = ErrorBody)))]
pub(crate) async fn causality(
    state: State<AppState>,
    ApiPath((component, event_id)): ApiPath<(String, String)>,
    query: ApiQuery<CausalityQuery>,
) -> ApiResult<Json<CausalityBody>> {
    find_component(&state, &component)?;
    history::causality(state, ApiPath(event_id), query).await
}

/// Alias of `GET /api/history/causality/{eventId}`.
#[utoipa::path(get, path = "/api/cross-component/causality/{eventId}", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/history/causality/{eventId}`.",
    params(("eventId" = uuid::Uuid, Path, description = "Stored event id (UUID)"), CausalityQuery),
    responses((status = 200, body = CausalityBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown event", body = ErrorBody)))]
pub(crate) async fn cross_component_causality(
    state: State<AppState>,
    event_id: ApiPath<String>,
    query: ApiQuery<CausalityQuery>,
) -> ApiResult<Json<CausalityBody>> {
    history::causality(state, event_id, query).await
}

/// Alias of `GET /api/instances/{id}/history`.
#[utoipa::path(get, path = "/api/cross-component/instance/{id}/history", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/instances/{id}/history` (an instance is found whatever its component).",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = HistoryBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody)))]
pub(crate) async fn cross_component_history(
    state: State<AppState>,
    id: ApiPath<String>,
) -> ApiResult<Json<HistoryBody>> {
    history::instance_history(state, id).await
}

/// Not provided: every event of every component in one answer has no bound.
#[utoipa::path(get, path = "/api/cross-component/events", tag = "Aliases",
    description = "The original APIServer's route, not provided (its answer grows without bound): 501 naming `/api/history/instances`, `/api/history/correlated/{id}` and `/api/instances/{id}/history` instead.",
    responses((status = 501, description = "Not provided; the message names the routes to use", body = ErrorBody)))]
pub(crate) async fn cross_component_events() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_provided",
        "every event of every component in one answer is not provided (it has no bound): search \
         instances with GET /api/history/instances, then read GET /api/history/correlated/{id} \
         (the story across components) or GET /api/instances/{id}/history",
    )
}

/// Alias of `GET /api/components/{name}/machines`.
#[utoipa::path(get, path = "/api/monitor/{component}", tag = "Aliases",
    description = "The original APIServer's route; same answer as `GET /api/components/{name}/machines` (each machine with its live instance count). The original's text summary and AI insights are not produced; Prometheus metrics are at `/metrics`.",
    params(("component" = String, Path, description = "Component name")),
    responses((status = 200, body = components::MachineList), (status = 404, description = "Unknown component", body = ErrorBody)))]
pub(crate) async fn monitor(
    state: State<AppState>,
    component: ApiPath<String>,
) -> ApiResult<Json<components::MachineList>> {
    components::list_machines(state, component).await
}
