//! Diagram routes: a machine's Mermaid `stateDiagram-v2` text (current state highlighted), its
//! terminal states, and its transitions with whether each is available from `currentState`.

use crate::dto::kind_name;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::routes::components::find_component;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use xcomponent_core::definition::Definition;
use xcomponent_core::model::StateMachine;

/// The state to highlight.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DiagramQuery {
    /// Highlight this state and mark the transitions leaving it as available.
    pub current_state: Option<String>,
}

/// Which component to look in, for the machine-only route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MachineDiagramQuery {
    /// Highlight this state and mark the transitions leaving it as available.
    pub current_state: Option<String>,
    /// Look in this component (default: the first component that has the machine).
    pub component: Option<String>,
}

/// A state.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateInfo {
    /// Name.
    pub name: String,
    /// `entry`, `regular`, `final` or `error`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A transition and whether it can be taken from the current state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagramTransition {
    /// Source state.
    pub from: String,
    /// Target state.
    pub to: String,
    /// Event.
    pub event: String,
    /// Transition type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Leaves the current state (false when no current state is given).
    pub available: bool,
    /// Delay of timeout/auto transitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Target machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_machine: Option<String>,
    /// Target component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_component: Option<String>,
    /// Event sent to the target component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_event: Option<String>,
    /// Guard expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
}

/// A machine diagram.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagramBody {
    /// Mermaid `stateDiagram-v2` text.
    pub diagram: String,
    /// The same text (name used by some clients).
    pub mermaid: String,
    /// Component.
    pub component_name: String,
    /// Machine.
    pub machine_name: String,
    /// Initial state.
    pub initial_state: String,
    /// The highlighted state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// Final and error states.
    pub terminal_states: Vec<String>,
    /// Every state.
    pub states: Vec<StateInfo>,
    /// Every transition.
    pub transitions: Vec<DiagramTransition>,
}

fn diagram(
    definition: &Definition,
    machine: &StateMachine,
    current: Option<String>,
) -> DiagramBody {
    // A display hint: an unknown state highlights nothing and leaves no transition available.
    let current =
        current.filter(|state| machine.states.iter().any(|candidate| candidate.name == *state));
    let text = xcomponent_core::mermaid::state_diagram(machine, current.as_deref());
    let transitions = machine
        .transitions
        .iter()
        .map(|transition| DiagramTransition {
            from: transition.from.clone(),
            to: transition.to.clone(),
            event: transition.event.clone(),
            kind: kind_name(&transition.transition_type),
            available: current.as_deref() == Some(transition.from.as_str()),
            timeout_ms: transition.timeout_ms,
            target_machine: transition.target_machine.clone(),
            target_component: transition.target_component.clone(),
            target_event: transition.target_event.clone(),
            guard: transition.guard.as_ref().map(|guard| guard.expression().to_owned()),
        })
        .collect();
    DiagramBody {
        mermaid: text.clone(),
        diagram: text,
        component_name: definition.name.to_string(),
        machine_name: machine.name.clone(),
        initial_state: machine.initial_state.clone(),
        current_state: current,
        terminal_states: machine
            .states
            .iter()
            .filter(|state| state.state_type.is_terminal())
            .map(|state| state.name.clone())
            .collect(),
        states: machine
            .states
            .iter()
            .map(|state| StateInfo { name: state.name.clone(), kind: kind_name(&state.state_type) })
            .collect(),
        transitions,
    }
}

fn machine_of<'a>(definition: &'a Definition, name: &str) -> Option<&'a StateMachine> {
    definition.model.state_machines.iter().find(|machine| machine.name == name)
}

/// A machine's diagram.
#[utoipa::path(get, path = "/api/components/{name}/diagrams/{machine}", tag = "Diagrams",
    params(("name" = String, Path, description = "Component name"), ("machine" = String, Path, description = "Machine name"), DiagramQuery),
    responses((status = 200, body = DiagramBody),
        (status = 404, description = "Unknown component or machine", body = ErrorBody)))]
pub(crate) async fn component_diagram(
    State(state): State<AppState>,
    ApiPath((name, machine)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DiagramQuery>,
) -> ApiResult<Json<DiagramBody>> {
    let (_, definition) = find_component(&state, &name)?;
    let model = machine_of(&definition, &machine)
        .ok_or_else(|| ApiError::unknown_machine(Some(&name), &machine))?;
    Ok(Json(diagram(&definition, model, query.current_state)))
}

/// A machine's diagram, found by machine name.
#[utoipa::path(get, path = "/api/machines/{machine}/diagram", tag = "Diagrams",
    params(("machine" = String, Path, description = "Machine name"), MachineDiagramQuery),
    responses((status = 200, body = DiagramBody),
        (status = 404, description = "Unknown component or machine", body = ErrorBody)))]
pub(crate) async fn machine_diagram(
    State(state): State<AppState>,
    ApiPath(machine): ApiPath<String>,
    ApiQuery(query): ApiQuery<MachineDiagramQuery>,
) -> ApiResult<Json<DiagramBody>> {
    let registry = state.runtime().registry();
    let definition = match query.component.as_deref().filter(|name| !name.is_empty()) {
        Some(name) => find_component(&state, name)?.1,
        None => registry
            .components()
            .iter()
            .find(|definition| machine_of(definition, &machine).is_some())
            .cloned()
            .ok_or_else(|| ApiError::unknown_machine(None, &machine))?,
    };
    let model = machine_of(&definition, &machine)
        .ok_or_else(|| ApiError::unknown_machine(Some(&definition.name), &machine))?;
    Ok(Json(diagram(&definition, model, query.current_state)))
}
