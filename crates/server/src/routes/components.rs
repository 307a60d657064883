//! Component routes: list and describe the hosted components and their machines, create
//! instances, broadcast an event to a machine's instances.

use crate::dto::{AcceptedReply, Handed, object_field};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::schemas::{EventSpec, MAX_EVENT_NAME, OperatorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use xcomponent_core::definition::Definition;
use xcomponent_core::matching::PropertyFilter;
use xcomponent_runtime::{ComponentIdx, CreateRequest};

/// `{components: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentList {
    /// Each component's full definition plus `machineCount` and `instanceCount` (live instances).
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

/// `{component}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentBody {
    /// The component's definition as loaded from YAML (camelCase), plus `machineCount` and `instanceCount`.
    #[schema(value_type = Object)]
    pub component: Value,
}

/// `{componentName, machines}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineList {
    /// The component.
    pub component_name: String,
    /// Each machine's definition plus `instanceCount` and `isEntryMachine`.
    #[schema(value_type = Vec<Object>)]
    pub machines: Vec<Value>,
}

/// Body of `POST /api/components/{name}/instances`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateInstanceBody {
    /// Machine to instantiate (default: the component's entry machine).
    #[serde(default)]
    pub machine_name: Option<String>,
    /// Initial data (a JSON object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// `{instanceId, componentName, machineName}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The new instance.
    #[schema(value_type = String, format = Uuid)]
    pub instance_id: xcomponent_core::instance::InstanceId,
    /// Its component.
    pub component_name: String,
    /// Its machine.
    pub machine_name: String,
}

/// A property filter of a broadcast: instance `property` `operator` `value`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct FilterBody {
    /// Dot path in the instance data.
    pub property: String,
    /// `===` (default), `!==`, `>`, `<`, `>=`, `<=`.
    #[serde(default)]
    pub operator: Option<OperatorBody>,
    /// The value compared against (any JSON value).
    #[schema(value_type = serde_json::Value)]
    pub value: Value,
}

/// Body of `POST /api/components/{name}/broadcast`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastBody {
    /// Machine whose instances receive the event.
    pub machine_name: String,
    /// Only instances in this state.
    #[serde(default)]
    pub state: Option<String>,
    /// The event.
    pub event: EventSpec,
    /// Payload (when `event` is a bare type).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// Only instances whose data passes every filter.
    #[serde(default)]
    pub filters: Option<Vec<FilterBody>>,
}

/// `{count}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BroadcastReply {
    /// Instances that took a transition.
    pub count: usize,
}

pub(crate) fn find_component(
    state: &AppState,
    name: &str,
) -> ApiResult<(ComponentIdx, std::sync::Arc<Definition>)> {
    let registry = state.runtime().registry();
    let index = registry.index_of(name).ok_or_else(|| ApiError::unknown_component(name))?;
    Ok((index, registry.definition(index).clone()))
}

fn component_json(state: &AppState, index: ComponentIdx, definition: &Definition) -> Value {
    let mut value = serde_json::to_value(&*definition.model).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("machineCount".to_owned(), Value::from(definition.machines.len()));
        map.insert("instanceCount".to_owned(), Value::from(state.live().of_component(index)));
        if let Some(Value::Array(machines)) = map.get_mut("stateMachines") {
            for (machine_json, machine) in machines.iter_mut().zip(&definition.model.state_machines)
            {
                if let Value::Object(machine_map) = machine_json {
                    machine_map.insert("contextSchemaOrder".to_owned(), schema_order(machine));
                }
            }
        }
    }
    value
}

/// The `contextSchema` field names in their YAML order (JSON objects do not keep it), so forms
/// show fields as the author wrote them.
fn schema_order(machine: &xcomponent_core::model::StateMachine) -> Value {
    Value::Array(
        machine
            .context_schema
            .iter()
            .flat_map(|schema| schema.keys())
            .map(|name| Value::String(name.clone()))
            .collect(),
    )
}

/// Lists the hosted components.
#[utoipa::path(get, path = "/api/components", tag = "Components",
    responses((status = 200, description = "The components", body = ComponentList)))]
pub(crate) async fn list_components(State(state): State<AppState>) -> Json<ComponentList> {
    let registry = state.runtime().registry();
    let components = registry
        .components()
        .iter()
        .enumerate()
        .map(|(index, definition)| component_json(&state, index as ComponentIdx, definition))
        .collect();
    Json(ComponentList { components })
}

/// One component's definition.
#[utoipa::path(get, path = "/api/components/{name}", tag = "Components",
    params(("name" = String, Path, description = "Component name")),
    responses((status = 200, body = ComponentBody), (status = 404, description = "Unknown component", body = ErrorBody)))]
pub(crate) async fn get_component(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ComponentBody>> {
    let (index, definition) = find_component(&state, &name)?;
    Ok(Json(ComponentBody { component: component_json(&state, index, &definition) }))
}

/// The machines of a component.
#[utoipa::path(get, path = "/api/components/{name}/machines", tag = "Components",
    params(("name" = String, Path, description = "Component name")),
    responses((status = 200, body = MachineList), (status = 404, description = "Unknown component", body = ErrorBody)))]
pub(crate) async fn list_machines(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<MachineList>> {
    let (index, definition) = find_component(&state, &name)?;
    let machines = definition
        .model
        .state_machines
        .iter()
        .map(|machine| {
            let mut value = serde_json::to_value(machine).unwrap_or_else(|_| json!({}));
            let machine_index = definition.machine_index(&machine.name);
            if let Value::Object(map) = &mut value {
                let count = machine_index
                    .map_or(0, |machine_index| state.live().of_machine(index, machine_index));
                map.insert("instanceCount".to_owned(), Value::from(count));
                map.insert(
                    "isEntryMachine".to_owned(),
                    Value::Bool(
                        definition.model.entry_machine.as_deref() == Some(machine.name.as_str()),
                    ),
                );
                map.insert("contextSchemaOrder".to_owned(), schema_order(machine));
            }
            value
        })
        .collect();
    Ok(Json(MachineList { component_name: definition.name.to_string(), machines }))
}

/// Creates an instance.
#[utoipa::path(post, path = "/api/components/{name}/instances", tag = "Instances",
    params(("name" = String, Path, description = "Component name")),
    request_body = CreateInstanceBody,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 202, description = "Handed to the runtime hosting the component (in another process); not known to be created yet", body = AcceptedReply),
        (status = 400, description = "Bad body (the field is named)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown component or machine", body = ErrorBody),
        (status = 409, description = "Singleton entry machine already has a live instance", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The context breaks the machine's contextSchema (`context_schema`, the field is named) or is larger than the data limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create_instance(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<CreateInstanceBody>,
) -> ApiResult<Handed<(StatusCode, Json<Created>)>> {
    let (_, definition) = find_component(&state, &name)?;
    let machine = match body
        .machine_name
        .filter(|machine| !machine.is_empty())
        .or_else(|| definition.model.entry_machine.clone())
    {
        Some(machine) => machine,
        None => {
            return Err(ApiError::bad_field(
                "machineName",
                format!("machineName is required: component {name} has no entry machine"),
            ));
        }
    };
    if definition.machine_index(&machine).is_none() {
        return Err(ApiError::unknown_machine(Some(&name), &machine));
    }
    let context = object_field("context", body.context)?;
    let request = CreateRequest {
        component: name.clone(),
        machine: machine.clone(),
        context,
        ..CreateRequest::default()
    };
    let id = match state.runtime().create(request).await {
        Ok(id) => id,
        Err(error) => return Ok(Handed::accepted(error)?),
    };
    Ok(Handed::Done((
        StatusCode::CREATED,
        Json(Created { instance_id: id, component_name: name, machine_name: machine }),
    )))
}

/// Validates an event type: not blank, no control character, at most `MAX_EVENT_NAME` bytes
/// (what `EVENT_NAME_PATTERN` says in the OpenAPI schema).
pub(crate) fn check_event_name(field: &str, name: &str) -> ApiResult<()> {
    if let Some((offset, control)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ApiError::bad_field(
            field,
            format!(
                "the event type must not contain control characters (U+{:04X} at byte {offset})",
                u32::from(control)
            ),
        ));
    }
    // U+FEFF counts as white space for the schema's `\s` (ECMAScript), not for Rust.
    if name.chars().all(|c| c.is_whitespace() || c == '\u{feff}') {
        return Err(ApiError::bad_field(field, "the event type must not be empty"));
    }
    if name.len() > MAX_EVENT_NAME {
        return Err(ApiError::bad_field(
            field,
            format!("the event type is longer than {MAX_EVENT_NAME} bytes"),
        ));
    }
    Ok(())
}

/// Sends an event to the instances of a machine (in a state, passing filters).
#[utoipa::path(post, path = "/api/components/{name}/broadcast", tag = "Events",
    params(("name" = String, Path, description = "Component name")),
    request_body = BroadcastBody,
    responses(
        (status = 200, description = "How many instances took a transition", body = BroadcastReply),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown component, machine or state", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn broadcast(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<BroadcastBody>,
) -> ApiResult<Json<BroadcastReply>> {
    let (_, definition) = find_component(&state, &name)?;
    let machine = definition
        .machine_by_name(&body.machine_name)
        .ok_or_else(|| ApiError::unknown_machine(Some(&name), &body.machine_name))?;
    if let Some(wanted) = body.state.as_deref().filter(|wanted| !wanted.is_empty())
        && machine.state_index(wanted).is_none()
    {
        return Err(ApiError::unknown_state(&body.machine_name, wanted));
    }
    let (event, payload) = match body.event {
        EventSpec::Name(event) => (event, body.payload),
        EventSpec::Full { event_type, payload } => (event_type, payload.or(body.payload)),
    };
    check_event_name("event", &event)?;
    let payload = object_field("payload", payload)?;
    let filters = body
        .filters
        .unwrap_or_default()
        .into_iter()
        .map(|filter| PropertyFilter {
            property: filter.property,
            operator: filter.operator.unwrap_or_default().into(),
            value: filter.value,
        })
        .collect();
    let state_filter = body.state.as_deref().filter(|wanted| !wanted.is_empty());
    let count = state
        .runtime()
        .broadcast(&name, &body.machine_name, state_filter, &event, payload, filters)
        .await?;
    Ok(Json(BroadcastReply { count }))
}
