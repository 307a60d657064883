//! Inbound webhooks: another system (a payment provider, a CI, a form service) tells an instance
//! that something happened, with the event in the URL and its payload as the body.
//!
//! - `POST /webhooks/{component}/{instanceId}/{event}` sends `event` to one instance.
//! - `POST /webhooks/{component}/{machine}/by/{property}/{value}/{event}` sends it to the live
//!   instance of `machine` whose data `property` (a dot path) equals `value`: the instance is
//!   found by a business key the sender knows (`orderId`), not by its id. `value` matches a
//!   string equal to it, and a number equal to it when it reads as one (`42` matches `42`, `42.0`
//!   and `"42"`). None: 404 `no_matching_instance`. Several: 409 `ambiguous_correlation`, naming
//!   them, and nothing is sent (a webhook means one thing happened to one instance; the
//!   broadcast route is there for fan-out).
//!
//! The body is the payload: a JSON object as is, an empty body or `null` as `{}`, any other
//! JSON value wrapped as `{"body": value}` (senders that post an array or a string still reach
//! the machine). It must be sent as JSON (`Content-Type: application/json` or `*+json`: a
//! page on another site cannot post that without the browser asking the server first).
//!
//! The event goes through the REST API's path (`instances::send_to`): contextSchema, content
//! checks, payload and data bounds, and the 202 of a cluster view apply alike, and the answer
//! is the REST API's: 200 `EventReply` (transitioned from/to, or ignored with the reason and
//! the events allowed now), 202 `AcceptedReply`, 404, 409, 422.
//!
//! Authentication, checked before anything else (`authenticate`): with a webhook secret
//! (`--webhook-secret`), a request carrying `X-Xcomponent-Signature` must carry a valid one
//! (`signature.rs`); without the header, the API token (`Authorization: Bearer`) is the only
//! other way in, and with no token either it is 401 `signature_required`. With only a token,
//! the token is needed (401 `unauthorized`). With neither, webhooks are open like the rest of
//! the API. An `Idempotency-Key` header makes retries safe (`idempotency.rs`).
//!
//! Every answer is counted in `xcomponent_webhooks_total{outcome}`: `transitioned`, `ignored`,
//! `accepted`, `replayed`, or the error code.

use crate::auth::{bearer, same};
use crate::dto::{AcceptedReply, EventReply, Handed};
use crate::error::{ApiError, ApiPath, ApiResult, ErrorBody, json_content_type, parse_instance_id};
use crate::idempotency::{
    Answer, Begin, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, check_key, fingerprint,
};
use crate::routes::components::check_event_name;
use crate::routes::instances::send_to;
use crate::signature::{self, WEBHOOK_SIGNATURE_HEADER};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::time::Instant;
use xcomponent_core::instance::{Context, InstanceId};
use xcomponent_core::matching::strict_equals;
use xcomponent_core::path::lookup_in_map;
use xcomponent_runtime::InstanceFilter;

/// Live instances read per page while looking for a correlated instance.
const CORRELATION_PAGE: usize = 1000;

/// Most instance ids named in an `ambiguous_correlation` answer (the search stops past it).
pub const CORRELATION_MAX_LISTED: usize = 10;

/// Longest accepted correlation property path (bytes).
const MAX_PROPERTY_PATH: usize = 256;

/// Where a webhook goes.
enum Target {
    /// One instance, by id.
    Id { component: String, id: String },
    /// The live instance of a machine whose data `property` equals `value`.
    Correlated { component: String, machine: String, property: String, value: String },
}

/// Sends the event in the URL to an instance, with the body as its payload.
#[utoipa::path(post, path = "/webhooks/{component}/{instanceId}/{event}", tag = "Webhooks",
    params(
        ("component" = String, Path, description = "Component name"),
        ("instanceId" = uuid::Uuid, Path, description = "Instance id (UUID)"),
        ("event" = String, Path, description = "Event type"),
        ("X-Xcomponent-Signature" = Option<String>, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` keyed with the webhook secret"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer again, and the event is sent once"),
    ),
    request_body(content = Object, content_type = "application/json",
        description = "The event payload: an object as is; empty or null is `{}`; any other JSON value becomes `{\"body\": value}`"),
    responses(
        (status = 200, description = "What happened: the new state, or why it was ignored and what is allowed now", body = EventReply),
        (status = 202, description = "Handed to the runtime hosting the instance (in another process); the outcome is not known yet", body = AcceptedReply),
        (status = 400, description = "Bad body, id, event or Idempotency-Key", body = ErrorBody),
        (status = 401, description = "Missing or wrong token or signature", body = ErrorBody),
        (status = 404, description = "Unknown component or instance", body = ErrorBody),
        (status = 409, description = "The instance has finished, or a request with this Idempotency-Key is being served", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 422, description = "The payload breaks a limit (`data_too_large`), or the Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn to_instance(
    State(state): State<AppState>,
    ApiPath((component, id, event)): ApiPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(&state, &uri, &headers, body, Target::Id { component, id }, event).await
}

/// Sends the event in the URL to the live instance whose data property equals a value.
#[utoipa::path(post, path = "/webhooks/{component}/{machine}/by/{property}/{value}/{event}", tag = "Webhooks",
    params(
        ("component" = String, Path, description = "Component name"),
        ("machine" = String, Path, description = "Machine name"),
        ("property" = String, Path, description = "Dot path in the instance data (`orderId`, `customer.id`)"),
        ("value" = String, Path, description = "The value it must equal: a string, or a number when it reads as one"),
        ("event" = String, Path, description = "Event type"),
        ("X-Xcomponent-Signature" = Option<String>, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` keyed with the webhook secret"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer again, and the event is sent once"),
    ),
    request_body(content = Object, content_type = "application/json",
        description = "The event payload: an object as is; empty or null is `{}`; any other JSON value becomes `{\"body\": value}`"),
    responses(
        (status = 200, description = "What happened to the instance found", body = EventReply),
        (status = 202, description = "Handed to the runtime hosting the instance (in another process); the outcome is not known yet", body = AcceptedReply),
        (status = 400, description = "Bad body, property, event or Idempotency-Key", body = ErrorBody),
        (status = 401, description = "Missing or wrong token or signature", body = ErrorBody),
        (status = 404, description = "Unknown component or machine, or no live instance has that value (`no_matching_instance`)", body = ErrorBody),
        (status = 409, description = "Several live instances have that value (`ambiguous_correlation`, nothing sent), the instance has finished, or a request with this Idempotency-Key is being served", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 422, description = "The payload breaks a limit (`data_too_large`), or the Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub(crate) async fn to_correlated(
    State(state): State<AppState>,
    ApiPath((component, machine, property, value, event)): ApiPath<(
        String,
        String,
        String,
        String,
        String,
    )>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let target = Target::Correlated { component, machine, property, value };
    receive(&state, &uri, &headers, body, target, event).await
}

/// Serves one webhook and counts its outcome.
async fn receive(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    target: Target,
    event: String,
) -> Response {
    let (outcome, response) = match serve(state, uri, headers, body, target, event).await {
        Ok((outcome, answer, replayed)) => (outcome, respond(&answer, replayed)),
        Err(error) => (error.code, error.into_response()),
    };
    state
        .metrics()
        .counter("xcomponent_webhooks_total", &[("outcome", outcome.to_owned())])
        .increment(1);
    response
}

fn respond(answer: &Answer, replayed: bool) -> Response {
    let mut response = (answer.status, answer.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Authenticates, then replays a remembered answer or delivers: `(outcome, answer, replayed)`.
async fn serve(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    target: Target,
    event: String,
) -> ApiResult<(&'static str, Answer, bool)> {
    let body = body.map_err(crate::error::body_rejection)?;
    authenticate(state, headers, &body)?;
    if !json_content_type(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be sent as JSON (Content-Type: application/json), even when empty",
        ));
    }
    let reservation = match idempotency_key(headers)? {
        Some(key) => {
            match state.idempotency().begin(key, fingerprint(uri.path(), &body), Instant::now())? {
                Begin::Replay(answer) => return Ok(("replayed", answer, true)),
                Begin::Serve(reservation) => Some(reservation),
            }
        }
        None => None,
    };
    // An error drops the reservation: the key is forgotten and a retry is served again.
    let (outcome, answer) = deliver(state, &body, target, event).await?;
    if let Some(reservation) = reservation {
        reservation.finish(&answer, Instant::now());
    }
    Ok((outcome, answer, false))
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    check_key(key)?;
    Ok(Some(key))
}

/// Token or signature, as the module documentation says.
fn authenticate(state: &AppState, headers: &HeaderMap, body: &[u8]) -> ApiResult<()> {
    let config = state.config();
    if let Some(secret) = config.webhook_secret.as_deref()
        && let Some(header) = headers.get(WEBHOOK_SIGNATURE_HEADER)
    {
        let header = header.to_str().unwrap_or_default();
        return signature::verify(secret, header, body, state.runtime().clock().now());
    }
    if let Some(token) = config.token.as_deref()
        && let Some(given) = bearer(headers)
    {
        if same(token.as_bytes(), given.as_bytes()) {
            return Ok(());
        }
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong bearer token"));
    }
    match (config.webhook_secret.is_some(), config.token.is_some()) {
        (false, false) => Ok(()),
        (true, token) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_required",
            if token {
                "this webhook needs X-Xcomponent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\"> or Authorization: Bearer <token>"
            } else {
                "this webhook needs X-Xcomponent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">"
            },
        )),
        (false, true) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs Authorization: Bearer <token>",
        )),
    }
}

/// The body as a payload (see the module documentation).
fn payload_of(body: &[u8]) -> ApiResult<Context> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    if let Some((field, literal)) = crate::integers::out_of_range(body) {
        return Err(ApiError::bad_field(
            &field,
            format!(
                "{field}: the integer {literal} does not fit in 64 bits (-2^63 to 2^64-1) and \
                 would lose digits; send it as a string"
            ),
        ));
    }
    Ok(match value {
        Value::Object(map) => map,
        Value::Null => Context::new(),
        other => Map::from_iter([("body".to_owned(), other)]),
    })
}

/// Finds the target and sends: `(outcome, answer)` for a 200 or a 202.
async fn deliver(
    state: &AppState,
    body: &[u8],
    target: Target,
    event: String,
) -> ApiResult<(&'static str, Answer)> {
    check_event_name("event", &event)?;
    let payload = payload_of(body)?;
    let (component, id) = match target {
        Target::Id { component, id } => {
            let id = parse_instance_id(&id)?;
            (component, id)
        }
        Target::Correlated { component, machine, property, value } => {
            let id = correlate(state, &component, &machine, &property, &value).await?;
            (component, id)
        }
    };
    let (outcome, status, body) = match send_to(state, id, event, payload, Some(&component)).await?
    {
        Handed::Done(axum::Json(reply)) => {
            let outcome = if reply.success { "transitioned" } else { "ignored" };
            (outcome, StatusCode::OK, serde_json::to_vec(&reply))
        }
        Handed::Accepted(reply) => ("accepted", StatusCode::ACCEPTED, serde_json::to_vec(&reply)),
    };
    let body = body.map_err(|error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string())
    })?;
    Ok((outcome, Answer { status, body: Bytes::from(body) }))
}

/// The live instance of `component`/`machine` whose data `property` equals `value`.
async fn correlate(
    state: &AppState,
    component: &str,
    machine: &str,
    property: &str,
    value: &str,
) -> ApiResult<InstanceId> {
    state.runtime().registry().resolve(component, machine)?;
    check_property(property)?;
    let mut found: Vec<InstanceId> = Vec::new();
    for wanted in wanted_values(value) {
        let mut after = None;
        loop {
            let filter = InstanceFilter {
                component: Some(component.to_owned()),
                machine: Some(machine.to_owned()),
                text: prefilter(property, &wanted),
                after,
                limit: CORRELATION_PAGE,
                ..InstanceFilter::default()
            };
            let page = state.runtime().instances(filter).await;
            found.extend(
                page.iter()
                    .filter(|view| {
                        lookup_in_map(&view.context, property)
                            .is_some_and(|held| strict_equals(held, &wanted))
                    })
                    .map(|view| view.id),
            );
            if found.len() > CORRELATION_MAX_LISTED || page.len() < CORRELATION_PAGE {
                break;
            }
            after = page.last().map(|view| view.id);
        }
    }
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [] => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_matching_instance",
            format!("no live instance of {machine} in {component} has {property} = {value:?}"),
        )),
        [id] => Ok(*id),
        many => {
            let listed: Vec<String> =
                many.iter().take(CORRELATION_MAX_LISTED).map(ToString::to_string).collect();
            let count = if many.len() > CORRELATION_MAX_LISTED {
                format!("more than {CORRELATION_MAX_LISTED}")
            } else {
                many.len().to_string()
            };
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "ambiguous_correlation",
                format!(
                    "{count} live instances of {machine} in {component} have {property} = {value:?} ({}); nothing was sent: address one by id (/webhooks/{component}/{{instanceId}}/{{event}})",
                    listed.join(", ")
                ),
            ))
        }
    }
}

fn check_property(property: &str) -> ApiResult<()> {
    let well_formed = !property.is_empty()
        && property.len() <= MAX_PROPERTY_PATH
        && !property.chars().any(char::is_control)
        && property.split('.').all(|segment| !segment.is_empty());
    if well_formed {
        return Ok(());
    }
    Err(ApiError::bad_field(
        "property",
        format!(
            "property must be a dot path of non-empty names (orderId, customer.id), at most {MAX_PROPERTY_PATH} bytes, without control characters"
        ),
    ))
}

/// What `value` (a path segment, which has no type) may equal: the string, and the number it
/// reads as, if any.
fn wanted_values(value: &str) -> Vec<Value> {
    let mut wanted = vec![Value::String(value.to_owned())];
    if let Ok(number) = value.trim().parse::<serde_json::Number>() {
        wanted.push(Value::Number(number));
    }
    wanted
}

/// Text every instance holding `wanted` at `property` contains in its data's JSON (the
/// instance list's `text` filter, case-insensitive), to skip the others before the exact
/// comparison. Must never miss one: `None` (no pre-filter) when that cannot be sure.
fn prefilter(property: &str, wanted: &Value) -> Option<String> {
    let key = property.rsplit('.').next()?;
    if key.parse::<usize>().is_ok() {
        return None; // An array index: the element has no key in the JSON text.
    }
    let key = Value::String(key.to_owned());
    let text = match wanted {
        Value::String(_) => format!("{key}:{wanted}"),
        // Integers below 10^15 are written with their digits whatever their JSON form (`42`,
        // `42.0`); others may be written with an exponent: match on the key alone.
        Value::Number(number)
            if number
                .as_i64()
                .is_some_and(|integer| integer.unsigned_abs() < 1_000_000_000_000_000) =>
        {
            format!("{key}:{wanted}")
        }
        _ => format!("{key}:"),
    };
    // Lower-casing keeps an ASCII text a substring of the lower-cased data; other characters
    // may lower-case differently in context.
    text.is_ascii().then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_become_payloads() {
        assert_eq!(payload_of(b"").ok(), Some(Context::new()));
        assert_eq!(payload_of(b" null ").ok(), Some(Context::new()));
        let object = payload_of(br#"{"a": 1}"#).ok().map(Value::Object);
        assert_eq!(object, Some(json!({"a": 1})));
        let wrapped = payload_of(b"[1, 2]").ok().map(Value::Object);
        assert_eq!(wrapped, Some(json!({"body": [1, 2]})));
        assert_eq!(payload_of(b"{nope").err().map(|e| e.code), Some("bad_request"));
        let huge = payload_of(br#"{"n": 123456789012345678901234}"#).err();
        assert_eq!(huge.and_then(|e| e.field), Some("n".to_owned()));
    }

    #[test]
    fn a_value_is_a_string_or_a_number() {
        assert_eq!(wanted_values("O-1"), vec![json!("O-1")]);
        assert_eq!(wanted_values("42"), vec![json!("42"), json!(42)]);
        assert_eq!(wanted_values("1.5"), vec![json!("1.5"), json!(1.5)]);
    }

    #[test]
    fn prefilters_never_miss_a_match() {
        let data = |value: Value| json!({"orderId": value}).to_string().to_lowercase();
        let holds = |property: &str, wanted: &Value, held: Value| {
            prefilter(property, wanted).is_none_or(|text| data(held).contains(&text.to_lowercase()))
        };
        assert!(holds("orderId", &json!("O-1"), json!("O-1")));
        assert!(holds("orderId", &json!(42), json!(42)));
        assert!(holds("orderId", &json!(42), json!(42.0)));
        assert!(holds("orderId", &json!(1.0e20), json!(1.0e20)));
        assert!(holds("orderId", &json!("a\"b"), json!("a\"b")));
        assert_eq!(prefilter("orderId", &json!("O-1")).as_deref(), Some("\"orderId\":\"O-1\""));
        assert_eq!(prefilter("lines.0", &json!("x")), None);
        assert_eq!(prefilter("orderId", &json!("é")), None);
        assert_eq!(prefilter("customer.id", &json!(7)).as_deref(), Some("\"id\":7"));
    }

    #[test]
    fn properties_are_dot_paths() {
        assert!(check_property("customer.id").is_ok());
        for bad in ["", "a..b", ".a", "a\u{1}"] {
            assert_eq!(check_property(bad).err().map(|e| e.code), Some("bad_request"), "{bad}");
        }
    }
}
