//! The dashboard: static files from `crates/server/dashboard/`, embedded in the binary (no CDN,
//! nothing read from disk at run time). `/` and `/dashboard.html` (the original's URL) serve
//! `index.html`; other paths serve the file of that name. Anything else is a JSON 404, and the
//! same fallback answers unknown API paths.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "dashboard/"]
#[allow_missing = true]
struct Assets;

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mime = file.metadata.mimetype().to_owned();
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Some(response)
}

/// Whether `path` (without its leading `/`) is one of the dashboard's embedded files.
pub(crate) fn is_asset(path: &str) -> bool {
    !path.starts_with("api/") && !path.contains("..") && Assets::get(path).is_some()
}

/// Whether the dashboard was embedded (its folder existed at build time).
pub fn embedded() -> bool {
    Assets::get("index.html").is_some()
}

/// Serves `index.html`.
pub(crate) async fn index() -> Response {
    asset("index.html").unwrap_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_dashboard",
            "this build has no dashboard; the API is under /api and documented at /api-docs",
        )
        .into_response()
    })
}

/// Serves an embedded file, or a JSON 404.
pub(crate) async fn fallback(request: Request) -> Response {
    let path = request.uri().path().trim_start_matches('/');
    let servable = matches!(*request.method(), Method::GET | Method::HEAD)
        && !path.starts_with("api/")
        && !path.contains("..");
    if servable && let Some(response) = asset(path) {
        return response;
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

/// JSON 405.
pub(crate) async fn method_not_allowed(request: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
    .into_response()
}
