//! History routes, read from the store: one instance's events (live or finished), a search over
//! all instances ever stored, and the correlated events of every instance an instance's story
//! touched (cross-component included).
//!
//! The store answers correlation by correlation id; each external command starts a new chain,
//! so "the story of an instance" is gathered here: the correlation ids of its events, then of
//! the instances those chains reached, a bounded number of hops (`CORRELATION_HOPS`).

use crate::dto::{contexts_after, history_event, history_instance, history_of};
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorBody, parse_instance_id};
use crate::schemas::StatusParam;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use xcomponent_core::instance::{Context, EventId, InstanceId, Status};
use xcomponent_core::store::{EventStore, InstanceQuery, StoredEvent};

/// Default page of the history search.
pub const DEFAULT_SEARCH: usize = 100;
/// Largest page of the history search.
pub const MAX_SEARCH: usize = 500;
/// Hops followed from an instance to the instances its chains reached.
pub const CORRELATION_HOPS: usize = 3;
/// Most correlation chains read for one answer.
pub const MAX_CHAINS: usize = 64;
/// Most events in one correlated answer.
pub const MAX_CORRELATED_EVENTS: usize = 2000;

const NO_STORE: &str = "no store configured: history is not recorded";

/// `{instanceId, history}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryBody {
    /// The instance.
    #[schema(value_type = String, format = Uuid)]
    pub instance_id: InstanceId,
    /// Its stored events by sequence number (camelCase `StoredEvent` plus `componentName`, `machineName`).
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Value>,
}

/// `{snapshot, events}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsBody {
    /// The instance's current stored record (null when unknown to the store).
    #[schema(value_type = Option<Object>)]
    pub snapshot: Option<Value>,
    /// Its stored events.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// A page of stored instances, in the shape of every list route: `{items, nextCursor}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchBody {
    /// Stored instances (live and finished), most recently updated first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Set when there is no store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `{events, correlationKey, correlationValue, correlationIds}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedBody {
    /// Events of every chain, in time order.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Always `correlationId`.
    pub correlation_key: String,
    /// The correlation id of the instance's creation.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub correlation_value: Option<EventId>,
    /// Every chain followed.
    #[schema(value_type = Vec<String>)]
    pub correlation_ids: Vec<EventId>,
    /// True when a bound cut the answer short.
    pub truncated: bool,
}

/// History search filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Only this component.
    pub component: Option<String>,
    /// Only this machine.
    pub machine: Option<String>,
    /// Only instances now in this state.
    pub state: Option<String>,
    /// `active`, `completed` or `error`.
    #[param(inline)]
    pub status: Option<StatusParam>,
    /// Text searched in the id and the data.
    pub q: Option<String>,
    /// Page size (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page.
    #[param(
        pattern = r"^-?[0-9]{1,15}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

fn store(state: &AppState) -> Option<Arc<dyn EventStore>> {
    state.runtime().store()
}

/// An instance's events; 404 when neither the store nor the runtime knows it.
async fn events_of(state: &AppState, id: InstanceId) -> ApiResult<Vec<StoredEvent>> {
    let events = match store(state) {
        Some(store) => store.history(id).await?,
        None => Vec::new(),
    };
    if events.is_empty() && state.runtime().instance(id).await.is_none() {
        return Err(ApiError::unknown_instance(id));
    }
    Ok(events)
}

/// An instance's stored events.
#[utoipa::path(get, path = "/api/instances/{id}/history", tag = "History",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = HistoryBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody), (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn instance_history(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<HistoryBody>> {
    let id = parse_instance_id(&id)?;
    let history = history_of(&events_of(&state, id).await?);
    Ok(Json(HistoryBody { instance_id: id, history }))
}

/// An instance's stored record and events.
#[utoipa::path(get, path = "/api/history/instances/{id}/events", tag = "History",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = EventsBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody), (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn history_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<EventsBody>> {
    let id = parse_instance_id(&id)?;
    let events: Vec<Value> = history_of(&events_of(&state, id).await?);
    let snapshot = match store(&state) {
        Some(store) => store.instance(id).await?.map(|record| history_instance(&record)),
        None => None,
    };
    Ok(Json(EventsBody { snapshot, events }))
}

/// Searches stored instances (live and finished).
#[utoipa::path(get, path = "/api/history/instances", tag = "History", params(SearchQuery),
    responses((status = 200, body = SearchBody), (status = 400, description = "Bad query", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> ApiResult<Json<SearchBody>> {
    let status: Option<Status> = query.status.map(Into::into);
    let limit = crate::dto::page_size(query.limit, DEFAULT_SEARCH, MAX_SEARCH)?;
    let Some(store) = store(&state) else {
        return Ok(Json(SearchBody {
            items: Vec::new(),
            next_cursor: None,
            message: Some(NO_STORE.to_owned()),
        }));
    };
    // No store keeps a NUL character (the runtime refuses it), and PostgreSQL refuses it even
    // as a parameter: a filter holding one is a bad request, not a store failure.
    for (field, value) in [
        ("q", &query.q),
        ("component", &query.component),
        ("machine", &query.machine),
        ("state", &query.state),
        ("cursor", &query.cursor),
    ] {
        if value.as_deref().is_some_and(|text| text.contains('\0')) {
            return Err(ApiError::bad_field(field, format!("{field} holds a NUL character")));
        }
    }
    let empty_to_none = |value: Option<String>| value.filter(|text| !text.is_empty());
    let store_query = InstanceQuery {
        component: empty_to_none(query.component),
        machine: empty_to_none(query.machine),
        state: empty_to_none(query.state),
        status,
        text: empty_to_none(query.q),
        limit,
        cursor: query.cursor,
        ..InstanceQuery::default()
    };
    let page = store.search(&store_query).await.map_err(|error| match error {
        xcomponent_core::store::Error::Config(message)
        | xcomponent_core::store::Error::Corrupt(message)
            if store_query.cursor.is_some() =>
        {
            ApiError::bad_field("cursor", format!("invalid cursor: {message}"))
        }
        other => ApiError::storage(&other),
    })?;
    Ok(Json(SearchBody {
        items: page.items.iter().map(history_instance).collect(),
        next_cursor: page.next_cursor,
        message: None,
    }))
}

/// Every event of the causal chains an instance took part in, across components.
#[utoipa::path(get, path = "/api/history/correlated/{id}", tag = "History",
    params(("id" = uuid::Uuid, Path, description = "Instance id (UUID)")),
    responses((status = 200, body = CorrelatedBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody), (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn correlated(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CorrelatedBody>> {
    let id = parse_instance_id(&id)?;
    let first = events_of(&state, id).await?;
    let Some(store) = store(&state) else {
        return Ok(Json(CorrelatedBody {
            events: Vec::new(),
            correlation_key: "correlationId".to_owned(),
            correlation_value: None,
            correlation_ids: Vec::new(),
            truncated: false,
        }));
    };
    let root = first.first().map(|event| event.correlation_id);
    let mut chains: Vec<EventId> = Vec::new();
    let mut seen_chains: HashSet<EventId> = HashSet::new();
    let mut seen_instances: HashSet<InstanceId> = HashSet::from([id]);
    let mut events: BTreeMap<(i64, EventId), StoredEvent> = BTreeMap::new();
    let mut frontier: Vec<StoredEvent> = first;
    let mut truncated = false;
    for _ in 0..CORRELATION_HOPS {
        let mut next_instances = Vec::new();
        let new_chains: Vec<EventId> = frontier
            .iter()
            .map(|event| event.correlation_id)
            .filter(|chain| seen_chains.insert(*chain))
            .collect();
        for event in frontier.drain(..) {
            events.insert((event.timestamp, event.id), event);
        }
        for chain in new_chains {
            if chains.len() >= MAX_CHAINS || events.len() >= MAX_CORRELATED_EVENTS {
                truncated = true;
                break;
            }
            chains.push(chain);
            for event in store.correlated(chain, MAX_CORRELATED_EVENTS).await? {
                if seen_instances.insert(event.instance_id) {
                    next_instances.push(event.instance_id);
                }
                events.insert((event.timestamp, event.id), event);
            }
        }
        if next_instances.is_empty() || truncated {
            break;
        }
        for instance in next_instances {
            frontier.extend(store.history(instance).await?);
        }
    }
    // Events of instances reached on the last hop whose chains were not followed yet.
    for event in frontier {
        events.insert((event.timestamp, event.id), event);
    }
    if events.len() > MAX_CORRELATED_EVENTS {
        truncated = true;
    }
    let events =
        chain_events(&*store, events.values().take(MAX_CORRELATED_EVENTS).collect()).await?;
    Ok(Json(CorrelatedBody {
        events,
        correlation_key: "correlationId".to_owned(),
        correlation_value: root,
        correlation_ids: chains,
        truncated,
    }))
}

/// Events of several instances (a chain) as the API shows them, each with the data after it.
/// A stored transition keeps only what it changed, so that data comes from folding its
/// instance's whole history: read once per instance whose events here do not all carry it.
async fn chain_events(store: &dyn EventStore, events: Vec<&StoredEvent>) -> ApiResult<Vec<Value>> {
    let mut data: HashMap<(InstanceId, u64), Context> = HashMap::new();
    let partial: HashSet<InstanceId> =
        events.iter().filter(|e| e.context.is_none()).map(|e| e.instance_id).collect();
    for instance in partial {
        let history = store.history(instance).await?;
        for (event, context) in history.iter().zip(contexts_after(&history)) {
            data.insert((instance, event.seq), context);
        }
    }
    Ok(events
        .into_iter()
        .map(|event| {
            let context = data
                .remove(&(event.instance_id, event.seq))
                .or_else(|| event.context.clone())
                .unwrap_or_default();
            history_event(event, &context)
        })
        .collect())
}

/// Where to look for an event's chain.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct CausalityQuery {
    /// The event's `correlationId` (every history event carries it). Without it the path id is
    /// taken as a chain id (a `correlationId`) and the whole chain is the answer.
    #[param(value_type = Option<String>, format = Uuid)]
    pub correlation_id: Option<String>,
}

/// `{eventId, correlationId, events, count, truncated}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CausalityBody {
    /// The event asked about.
    #[schema(value_type = String, format = Uuid)]
    pub event_id: EventId,
    /// The chain it belongs to.
    #[schema(value_type = String, format = Uuid)]
    pub correlation_id: EventId,
    /// The event, then every event it caused directly or through others, across components,
    /// in time order (for a chain id: every event of the chain).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// `events.len()`.
    pub count: usize,
    /// True when the chain was longer than `MAX_CORRELATED_EVENTS` and was cut.
    pub truncated: bool,
}

/// An event and everything it caused (following `causationId` links), across components. The
/// store finds events by chain, so the event's chain is named by `?correlationId=`; without it,
/// the path id is a chain id and the whole chain (everything one command caused) is returned.
#[utoipa::path(get, path = "/api/history/causality/{eventId}", tag = "History",
    params(("eventId" = uuid::Uuid, Path, description = "Stored event id (UUID)"), CausalityQuery),
    responses((status = 200, body = CausalityBody), (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "The event is not in that chain, or there is no store", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub(crate) async fn causality(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CausalityQuery>,
) -> ApiResult<Json<CausalityBody>> {
    let parse = |field: &str, text: &str| {
        text.parse::<EventId>().map_err(|_| {
            ApiError::bad_field(field, format!("{text:?} is not an event id (a UUID)"))
        })
    };
    let event_id = parse("eventId", &event_id)?;
    let chain = match query.correlation_id.as_deref() {
        Some(text) => parse("correlationId", text)?,
        None => event_id,
    };
    let Some(store) = store(&state) else {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, "unknown_event", NO_STORE));
    };
    let events = store.correlated(chain, MAX_CORRELATED_EVENTS + 1).await?;
    let truncated = events.len() > MAX_CORRELATED_EVENTS;
    let whole_chain =
        query.correlation_id.is_none() && !events.iter().any(|event| event.id == event_id);
    // Causes are stored before their effects, so one pass in time order finds every descendant.
    let mut caused: HashSet<EventId> = HashSet::new();
    let mut found = Vec::new();
    for event in events.iter().take(MAX_CORRELATED_EVENTS) {
        let descends = whole_chain
            || event.id == event_id
            || event.causation_id.is_some_and(|cause| caused.contains(&cause));
        if descends {
            caused.insert(event.id);
            found.push(event);
        }
    }
    let found = chain_events(&*store, found).await?;
    if found.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_event",
            format!(
                "no event {event_id} in chain {chain}, and no chain of that id: pass ?correlationId= (the event's correlationId in /api/instances/{{id}}/history)"
            ),
        ));
    }
    Ok(Json(CausalityBody {
        event_id,
        correlation_id: chain,
        count: found.len(),
        events: found,
        truncated,
    }))
}
