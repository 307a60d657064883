//! `GET /metrics`: the server's Prometheus exposition. The recorder and its series live in
//! `crate::metrics`; this handler refreshes what is read at scrape time (gauges, the runtime's
//! message counters) and renders the text format.

use crate::metrics::Metrics;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use xcomponent_runtime::MessageCounts;

/// Copies the runtime's message counters (totals since it started) into the exposition.
///
/// There is no gauge of the dead-letter list's size: the store can only list dead letters (whole
/// envelopes, in pages), not count them, so a gauge would read the list at every scrape.
/// `xcomponent_messages_dead_lettered_total` rising is the signal to alert on; the list itself is
/// at `GET /api/dead-letters`.
fn record_message_counts(metrics: &Metrics, counts: MessageCounts) {
    for (name, value) in [
        ("xcomponent_messages_duplicates_total", counts.duplicates),
        ("xcomponent_messages_dead_lettered_total", counts.dead_letters),
        ("xcomponent_messages_redelivered_total", counts.redelivered),
        ("xcomponent_messages_retried_total", counts.retried),
        ("xcomponent_messages_resent_total", counts.resent),
    ] {
        metrics.counter(name, &[]).absolute(value);
    }
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub(crate) async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.refresh_gauges();
    record_message_counts(state.metrics(), state.runtime().message_counts());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics().render())
}
