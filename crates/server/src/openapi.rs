//! The OpenAPI document, generated from the handlers' annotations (`GET /openapi.json`, also at
//! `/api-docs/openapi.json`), and the bundled Swagger UI at `/api-docs` (vendored: no CDN).

use crate::error::ErrorBody;
use crate::state::AppState;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xcomponent-ai",
        description = "Business state machines declared in YAML: components, instances, events, history, diagrams, dead letters, live feed (`/ws`) and metrics.",
    ),
    tags(
        (name = "Components", description = "Hosted components and their machines"),
        (name = "Instances", description = "Create, list and inspect instances"),
        (name = "Events", description = "Send events to one instance or broadcast them"),
        (name = "History", description = "Stored events, search, correlation across components"),
        (name = "Diagrams", description = "Mermaid state diagrams"),
        (name = "Messages", description = "Dead letters: messages between instances that could not be applied"),
        (name = "Live", description = "WebSocket feed"),
        (name = "Operations", description = "Health, runtimes and Prometheus metrics"),
        (name = "Aliases", description = "The original APIServer's routes: each answers exactly what the route it names answers (docs/compatibility.md)"),
    ),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

/// The document's fixed part (routes add their paths).
pub(crate) fn base() -> Document {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// Declares bearer authentication on the mutating operations when a token is configured.
pub(crate) fn finish(mut document: Document, token: bool) -> Document {
    if !token {
        return document;
    }
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearerAuth",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for item in document.paths.paths.values_mut() {
        for operation in
            [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            operation.security =
                Some(vec![SecurityRequirement::new("bearerAuth", Vec::<String>::new())]);
        }
    }
    document
}

/// `/openapi.json`, `/api-docs/openapi.json` and the Swagger UI at `/api-docs`.
pub(crate) fn docs(document: Document) -> Router<AppState> {
    let shared = Arc::new(document.clone());
    let ui: Router<AppState> = SwaggerUi::new("/api-docs").url("/openapi.json", document).into();
    ui.route("/api-docs/openapi.json", get(move || async move { Json(shared.as_ref().clone()) }))
}
