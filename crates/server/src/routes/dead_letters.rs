//! Dead-letter routes: the messages the runtime could not apply (target missing or finished,
//! event refused, delivery failing past the retry bound), listed in pages, shown one by one,
//! replayed (put back in the outbox and delivered again) or discarded.
//!
//! Dead letters are stored: without a store every route answers 409 `store_required`. Replay and
//! discard change state, so they sit behind the bearer token like every mutating route.

use crate::dto::{DEFAULT_PAGE, MAX_PAGE, page_size};
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use xcomponent_core::instance::{InstanceId, Millis};
use xcomponent_core::message::{DeadLetter, DeadLetterKind, MessageBody, MessageId};

/// How long a replay waits for the runtime to settle before answering 202 `pending`.
pub const REPLAY_WAIT: Duration = Duration::from_secs(5);

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKindDto {
    /// The target does not exist or has finished, or its component or machine is unknown.
    Undeliverable,
    /// The target took no transition on it (no transition, guard or rules did not hold).
    Rejected,
    /// Applying it kept failing for an infrastructure reason, past the retry bound.
    Failed,
}

impl From<DeadLetterKind> for DeadLetterKindDto {
    fn from(kind: DeadLetterKind) -> DeadLetterKindDto {
        match kind {
            DeadLetterKind::Undeliverable => DeadLetterKindDto::Undeliverable,
            DeadLetterKind::Rejected => DeadLetterKindDto::Rejected,
            DeadLetterKind::Failed => DeadLetterKindDto::Failed,
        }
    }
}

/// One dead letter: why it is here, and the message as it was sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterDto {
    /// The message id (the key of the list).
    #[schema(value_type = String, format = Uuid)]
    pub message_id: MessageId,
    /// Target component.
    pub component: String,
    /// Why it was not applied.
    pub kind: DeadLetterKindDto,
    /// A one-line explanation.
    pub reason: String,
    /// How many times applying it was attempted.
    pub attempts: u32,
    /// When it was put in the list (ms since epoch).
    pub dead_at: Millis,
    /// What the message asks: `send`, `deliver`, `broadcast`, `create` or `hookCall` (a webhook
    /// call whose reply could not be applied) (from the envelope).
    pub action: String,
    /// The event carried (absent for a creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The one instance addressed (a send or a creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub instance_id: Option<InstanceId>,
    /// The machine addressed (a delivery, broadcast or creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The envelope as stored: `{id, component, body: {kind, ...}, causationId?, correlationId?,
    /// depth, sourceComponent?, sourceInstance?, createdAt}`.
    #[schema(value_type = Object)]
    pub message: Value,
}

impl DeadLetterDto {
    fn of(letter: DeadLetter) -> DeadLetterDto {
        let body = &letter.message.body;
        let (action, machine) = match body {
            MessageBody::Send { .. } => ("send", None),
            MessageBody::Deliver { machine, .. } => ("deliver", Some(machine.clone())),
            MessageBody::Broadcast { machine, .. } => ("broadcast", Some(machine.clone())),
            MessageBody::Create { machine, .. } => ("create", Some(machine.clone())),
            MessageBody::HookCall { machine, .. } => ("hookCall", Some(machine.clone())),
        };
        let event = body.event().map(str::to_owned);
        let instance_id = body.instance();
        // An envelope is plain data (ids, strings, JSON contexts): it always serializes.
        let message = serde_json::to_value(&letter.message).unwrap_or(Value::Null);
        DeadLetterDto {
            message_id: letter.message.id,
            component: letter.message.component,
            kind: letter.kind.into(),
            reason: letter.reason,
            attempts: letter.attempts,
            dead_at: letter.dead_at,
            action: action.to_owned(),
            event,
            instance_id,
            machine,
            message,
        }
    }
}

/// A page of dead letters: `{items, nextCursor}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    /// The dead letters, ordered by message id (the time the message was produced).
    pub items: Vec<DeadLetterDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging of the dead-letter list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page (a message id; `after` is accepted too).
    #[serde(alias = "after")]
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// The message was delivered and is no longer a dead letter (applied, or dropped as a
    /// duplicate by instances that had applied it).
    Delivered,
    /// It failed again and is back in the list (see `deadLetter` for the new reason).
    DeadAgain,
    /// Delivered, but the runtime was still busy after the wait: look at the list later.
    Pending,
}

/// `{messageId, outcome, deadLetter?}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReply {
    /// The message replayed.
    #[schema(value_type = String, format = Uuid)]
    pub message_id: MessageId,
    /// What happened.
    pub outcome: ReplayOutcome,
    /// The dead letter again, when the replay failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterDto>,
}

/// 409 when the runtime has no store (dead letters are only kept with one).
fn require_store(state: &AppState) -> ApiResult<()> {
    if state.runtime().store().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "store_required",
            "dead letters are kept only when the server runs with a store",
        ));
    }
    Ok(())
}

fn parse_message_id(text: &str) -> ApiResult<MessageId> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{text:?} is not a message id (a UUID)"),
        )
    })
}

fn unknown_dead_letter(id: MessageId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_dead_letter",
        format!("dead letter {id} not found"),
    )
}

/// Lists the dead letters.
#[utoipa::path(get, path = "/api/dead-letters", tag = "Messages", params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterPage), (status = 400, description = "Bad query", body = ErrorBody),
        (status = 409, description = "No store: dead letters are not kept", body = ErrorBody)))]
pub(crate) async fn list_dead_letters(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> ApiResult<Json<DeadLetterPage>> {
    require_store(&state)?;
    let limit = page_size(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let after = match query.cursor.as_deref() {
        Some(cursor) => Some(
            cursor
                .parse::<MessageId>()
                .map_err(|_| ApiError::bad_field("cursor", "cursor must be a nextCursor value"))?,
        ),
        None => None,
    };
    let mut letters = state.runtime().dead_letters(after, limit + 1).await?;
    let more = letters.len() > limit;
    letters.truncate(limit);
    let next_cursor =
        if more { letters.last().map(|letter| letter.message.id.to_string()) } else { None };
    let items = letters.into_iter().map(DeadLetterDto::of).collect();
    Ok(Json(DeadLetterPage { items, next_cursor }))
}

/// One dead letter.
#[utoipa::path(get, path = "/api/dead-letters/{id}", tag = "Messages",
    params(("id" = uuid::Uuid, Path, description = "Message id (UUID)")),
    responses((status = 200, body = DeadLetterDto), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "No store: dead letters are not kept", body = ErrorBody)))]
pub(crate) async fn get_dead_letter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeadLetterDto>> {
    require_store(&state)?;
    let id = parse_message_id(&id)?;
    match state.runtime().dead_letter(id).await? {
        Some(letter) => Ok(Json(DeadLetterDto::of(letter))),
        None => Err(unknown_dead_letter(id)),
    }
}

/// Delivers a dead letter again (after fixing its cause): it goes back to the outbox and is
/// applied like any stored message. Waits up to 5 s for the runtime to settle, then says whether
/// the message was delivered or failed again (200), or that it is still in flight (202).
#[utoipa::path(post, path = "/api/dead-letters/{id}/replay", tag = "Messages",
    params(("id" = uuid::Uuid, Path, description = "Message id (UUID)")),
    responses((status = 200, description = "Delivered, or failed again", body = ReplayReply),
        (status = 202, description = "Delivered; the outcome is not known yet", body = ReplayReply),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "No store: dead letters are not kept", body = ErrorBody)))]
pub(crate) async fn replay_dead_letter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<ReplayReply>)> {
    require_store(&state)?;
    let id = parse_message_id(&id)?;
    let runtime = state.runtime();
    if !runtime.replay_dead_letter(id).await? {
        return Err(unknown_dead_letter(id));
    }
    let settled = matches!(tokio::time::timeout(REPLAY_WAIT, runtime.flush()).await, Ok(Ok(())));
    let again = runtime.dead_letter(id).await?.map(DeadLetterDto::of);
    let (status, outcome) = match (&again, settled) {
        (Some(_), _) => (StatusCode::OK, ReplayOutcome::DeadAgain),
        (None, true) => (StatusCode::OK, ReplayOutcome::Delivered),
        (None, false) => (StatusCode::ACCEPTED, ReplayOutcome::Pending),
    };
    Ok((status, Json(ReplayReply { message_id: id, outcome, dead_letter: again })))
}

/// Removes a dead letter for good (the message is never applied).
#[utoipa::path(delete, path = "/api/dead-letters/{id}", tag = "Messages",
    params(("id" = uuid::Uuid, Path, description = "Message id (UUID)")),
    responses((status = 204, description = "Discarded"), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "No store: dead letters are not kept", body = ErrorBody)))]
pub(crate) async fn discard_dead_letter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    require_store(&state)?;
    let id = parse_message_id(&id)?;
    if state.runtime().discard_dead_letter(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_dead_letter(id))
    }
}
