//! The OpenAPI document, generated from the handlers' annotations (`GET /openapi.json`, also at
//! `/api-docs/openapi.json`), and the bundled Swagger UI at `/api-docs` (vendored: no CDN).

use crate::error::ErrorBody;
use crate::state::AppState;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
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
        (name = "Webhooks", description = "Events from other systems: the event in the URL, the payload as the body, authenticated by the API token or an HMAC-SHA256 signature (docs/webhooks.md)"),
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

/// Declares bearer authentication on the mutating operations when a token is configured, and
/// on the webhooks the alternatives they take: the token, or a signature when a webhook secret
/// is configured.
pub(crate) fn finish(mut document: Document, token: bool, webhook_secret: bool) -> Document {
    if !token && !webhook_secret {
        return document;
    }
    let components = document.components.get_or_insert_with(Default::default);
    if token {
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    if webhook_secret {
        components.add_security_scheme(
            "webhookSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Xcomponent-Signature",
                "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\"> keyed with the webhook secret",
            ))),
        );
    }
    let requirement = |name: &str| SecurityRequirement::new(name, Vec::<String>::new());
    for (path, item) in document.paths.paths.iter_mut() {
        let webhook = path.starts_with("/webhooks/");
        let security = match (webhook, token, webhook_secret) {
            (true, true, true) => vec![requirement("bearerAuth"), requirement("webhookSignature")],
            (true, false, true) => vec![requirement("webhookSignature")],
            (_, true, _) => vec![requirement("bearerAuth")],
            // A secret alone guards only the webhooks.
            _ => continue,
        };
        for operation in
            [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            operation.security = Some(security.clone());
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
