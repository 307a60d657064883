//! Every request answers within `REQUEST_TIMEOUT`. A shard blocked in a commit answers nothing
//! (not even a read of live instances) until the commit ends, and a store can stall for longer
//! than any client waits; past the limit the caller gets 503: `store_stalled` when the runtime's
//! commit health shows a stalled or failing store, else `request_timeout`. A write answered this
//! way may still be applied later (its outcome is unknown to the server too): read before
//! retrying.

use crate::error::ApiError;
use crate::health::commit_problem;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Longest any API request is served before a 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `answer`, or the 503 when it takes longer than `REQUEST_TIMEOUT`.
pub(crate) async fn bound(state: &AppState, answer: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(response) => response,
        Err(_) => {
            let seconds = REQUEST_TIMEOUT.as_secs();
            let error = match commit_problem(&state.runtime().store_health()) {
                Some(problem) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_stalled",
                    format!(
                        "no answer within {seconds} s ({problem}); a write may still be applied, read before retrying"
                    ),
                ),
                None => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request_timeout",
                    format!(
                        "no answer within {seconds} s; a write may still be applied, read before retrying"
                    ),
                ),
            };
            error.into_response()
        }
    }
}
