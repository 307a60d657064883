//! Every API route, each registered with its OpenAPI description (utoipa-axum), grouped by
//! module: components, instances, history, diagrams, dead letters; plus health, runtimes,
//! metrics (`prometheus`) and `/ws`; the original APIServer's routes as documented aliases (`aliases`); and the
//! inbound webhooks (`webhooks`).

pub mod aliases;
pub mod components;
pub mod dead_letters;
pub mod diagrams;
pub mod history;
pub mod instances;
pub mod prometheus;
pub mod webhooks;

use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The documented routes.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(crate::health::health))
        .routes(routes!(crate::health::ready))
        .routes(routes!(crate::health::list_runtimes))
        .routes(routes!(prometheus::render_metrics))
        .routes(routes!(crate::ws::upgrade))
        .routes(routes!(components::list_components))
        .routes(routes!(components::get_component))
        .routes(routes!(components::list_machines))
        .routes(routes!(instances::list_component_instances, components::create_instance))
        .routes(routes!(components::broadcast))
        .routes(routes!(instances::send_component_event))
        .routes(routes!(instances::list_instances))
        .routes(routes!(instances::get_instance))
        .routes(routes!(instances::send_event))
        .routes(routes!(instances::trigger))
        .routes(routes!(history::instance_history))
        .routes(routes!(history::search))
        .routes(routes!(history::history_events))
        .routes(routes!(history::correlated))
        .routes(routes!(diagrams::component_diagram))
        .routes(routes!(diagrams::machine_diagram))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::get_dead_letter, dead_letters::discard_dead_letter))
        .routes(routes!(dead_letters::replay_dead_letter))
        .routes(routes!(instances::transitions))
        .routes(routes!(history::causality))
        .routes(routes!(aliases::instance))
        .routes(routes!(aliases::send_event))
        .routes(routes!(aliases::transitions))
        .routes(routes!(aliases::instance_history))
        .routes(routes!(aliases::list_instances))
        .routes(routes!(aliases::definition))
        .routes(routes!(aliases::create_instance))
        .routes(routes!(aliases::causality))
        .routes(routes!(aliases::cross_component_causality))
        .routes(routes!(aliases::cross_component_history))
        .routes(routes!(aliases::cross_component_events))
        .routes(routes!(aliases::monitor))
        .routes(routes!(webhooks::to_instance))
        .routes(routes!(webhooks::to_correlated))
}
