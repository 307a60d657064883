//! Optional bearer-token protection of the mutating routes (`POST`, `PUT`, `PATCH`, `DELETE`).
//! Reads stay open, so the dashboard and monitoring keep working; with no token configured
//! every route is open. Webhooks (`/webhooks/...`) check the token themselves, since a
//! signature can stand in for it (`routes/webhooks.rs`).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The routes that authenticate themselves (token or signature).
const WEBHOOKS_PREFIX: &str = "/webhooks/";

/// Compares without an early exit, so the time taken does not reveal the matching prefix.
pub(crate) fn same(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = expected.len() ^ given.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(|token| token.trim().to_owned())
}

/// The refusal of a mutating request without the right `Authorization: Bearer <token>`, or
/// `None` when the request may go on.
pub(crate) fn refusal(state: &AppState, request: &Request) -> Option<Response> {
    let token = state.config().token.as_deref()?;
    let mutating =
        matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if !mutating || request.uri().path().starts_with(WEBHOOKS_PREFIX) {
        return None;
    }
    match bearer(request.headers()).as_deref() {
        Some(given) if same(token.as_bytes(), given.as_bytes()) => None,
        Some(_) => Some(
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong bearer token")
                .into_response(),
        ),
        None => Some(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs Authorization: Bearer <token>",
            )
            .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn compares_whole_tokens() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secre"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"secret", b"Secret"));
        assert!(!same(b"", b"x"));
    }
}
