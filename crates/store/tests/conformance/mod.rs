//! The conformance suite every store passes: written once, run by each backend's test file.
//!
//! `run_all` runs the named checks one after the other on one store. Checks use their own
//! component names and timestamps, so they can share a store (and a database) without seeing
//! each other; only `retention` deletes, and only instances finished long before the others.

#![allow(dead_code, clippy::unwrap_used)]

mod checks;
mod leases;
pub mod messages;
mod search;

use serde_json::{Map, Value, json};
use std::sync::Arc;
use xcomponent_core::instance::{EventId, InstanceId, Millis, Status};
use xcomponent_core::store::{
    CREATED_EVENT_TYPE, CommitBatch, DataChanges, EventStore, InstanceRecord, StoredEvent,
    TimerRecord,
};

/// A time around which most checks place their events (retention cuts far below it).
pub const T0: Millis = 1_700_000_000_000;

/// Runs every check on `store`, printing each name as it passes.
pub async fn run_all(store: Arc<dyn EventStore>) {
    let name = store.backend();
    macro_rules! check {
        ($f:path) => {{
            let started = std::time::Instant::now();
            $f(&*store).await;
            eprintln!("[{name}] {} passed in {:?}", stringify!($f), started.elapsed());
        }};
    }
    check!(checks::ping);
    check!(checks::round_trip);
    check!(checks::history_in_seq_order);
    check!(checks::long_history_out_of_order);
    check!(checks::conflict_with_stored_event);
    check!(checks::conflict_within_batch);
    check!(checks::conflict_between_concurrent_committers);
    check!(checks::batch_is_all_or_nothing);
    check!(checks::restore_is_snapshot_plus_later_events);
    check!(checks::restore_folds_changes_and_whole_contexts);
    check!(checks::finished_instances_are_not_active);
    check!(checks::load_active_pages_over_many_instances);
    check!(search::search_filters);
    check!(search::search_text_sees_current_data);
    check!(search::search_cursor_paging);
    check!(search::search_limit_is_capped);
    check!(search::correlated_chain_across_components);
    check!(search::correlated_chains_that_share_an_instance);
    check!(messages::messages_are_all_or_nothing);
    check!(messages::pending_messages_in_id_order);
    check!(messages::inbox_keeps_a_set);
    check!(messages::purge_inbox_keeps_recent_and_pending);
    check!(messages::dead_letters_by_id);
    check!(messages::envelopes_round_trip);
    check!(checks::retention_purges_old_finished_instances);
    if store.leases().is_some() {
        check!(leases::partition_count_is_fixed_by_the_first_asker);
        check!(leases::a_lease_is_held_renewed_and_released);
        check!(leases::members_say_who_hosts_a_component);
        check!(leases::an_expired_lease_is_taken_with_a_new_epoch);
        check!(leases::a_fenced_commit_writes_nothing);
        leases::one_of_many_racing_acquirers_wins(Arc::clone(&store)).await;
        eprintln!("[{name}] leases::one_of_many_racing_acquirers_wins passed");
        leases::a_takeover_sees_every_acknowledged_commit(Arc::clone(&store)).await;
        eprintln!("[{name}] leases::a_takeover_sees_every_acknowledged_commit passed");
    } else {
        eprintln!("[{name}] has no leases (one host): the lease checks do not apply");
    }
}

/// A creation event of a fresh instance.
pub fn created(
    component: &str,
    id: InstanceId,
    state: &str,
    ts: Millis,
    context: Value,
) -> StoredEvent {
    let correlation_id = EventId(uuid::Uuid::now_v7());
    StoredEvent {
        id: EventId(uuid::Uuid::now_v7()),
        instance_id: id,
        seq: 1,
        component: component.into(),
        machine: "Machine".into(),
        event_type: CREATED_EVENT_TYPE.into(),
        payload: object(context.clone()),
        state_before: "".into(),
        state_after: state.into(),
        status: Status::Active,
        context: Some(object(context)),
        changes: DataChanges::default(),
        timers: Vec::new(),
        parent: None,
        entry_point: false,
        timestamp: ts,
        causation_id: None,
        correlation_id,
        source_component: None,
    }
}

/// The event following `previous` (same instance, next seq), moving to `state` and setting the
/// data's `step` to its seq (stored as a change: record layout 2).
pub fn next(
    previous: &StoredEvent,
    event_type: &str,
    state: &str,
    status: Status,
    ts: Millis,
) -> StoredEvent {
    let changes =
        DataChanges { set: object(json!({ "step": previous.seq + 1 })), removed: Vec::new() };
    StoredEvent {
        id: EventId(uuid::Uuid::now_v7()),
        seq: previous.seq + 1,
        event_type: event_type.into(),
        payload: object(json!({ "n": previous.seq + 1 })),
        state_before: previous.state_after.clone(),
        state_after: state.into(),
        status,
        context: None,
        changes,
        timers: Vec::new(),
        parent: None,
        entry_point: false,
        timestamp: ts,
        causation_id: Some(previous.id),
        source_component: None,
        ..previous.clone()
    }
}

/// A chain of `count` events of a new instance (creation then transitions to S2, S3, …), one ms apart.
pub fn chain(component: &str, count: u64, ts: Millis) -> Vec<StoredEvent> {
    let mut events = vec![created(
        component,
        InstanceId(uuid::Uuid::now_v7()),
        "S1",
        ts,
        json!({ "k": component }),
    )];
    for n in 2..=count {
        let last = events.last().unwrap();
        let event = next(last, "GO", &format!("S{n}"), Status::Active, ts + n as i64 - 1);
        events.push(event);
    }
    events
}

/// `events` as record layout 1 stored them (before schema versions SQLite 4 / PostgreSQL 3 /
/// Redis layout 3): every event carries the whole data after it, none a change.
pub fn whole_contexts(events: &[StoredEvent]) -> Vec<StoredEvent> {
    let mut data = Map::new();
    events
        .iter()
        .map(|event| {
            data = event.data_after(&data);
            StoredEvent {
                context: Some(data.clone()),
                changes: DataChanges::default(),
                ..event.clone()
            }
        })
        .collect()
}

/// A batch of events only.
pub fn batch(events: Vec<StoredEvent>) -> CommitBatch {
    CommitBatch { events, ..Default::default() }
}

/// The record the events produce, folded by hand (the expected value of a restore).
pub fn expected(events: &[StoredEvent]) -> InstanceRecord {
    let mut record = InstanceRecord::from_creation(&events[0]);
    for event in &events[1..] {
        record.apply(event);
    }
    record
}

/// `value` as a JSON object (panics on other values: test data only).
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test data must be an object, got {other}"),
    }
}

/// A timer record for tests.
pub fn timer(event: &str, deadline: Millis) -> TimerRecord {
    TimerRecord { event: event.to_owned(), deadline }
}

/// Commits and panics with the backend's error.
pub async fn commit(store: &dyn EventStore, batch: &CommitBatch) {
    if let Err(error) = store.commit(batch).await {
        panic!("[{}] commit failed: {error}", store.backend());
    }
}

/// Every active instance of `component`, loaded page by page with `page` instances per call;
/// checks that ids strictly increase across pages.
pub async fn load_all_active(
    store: &dyn EventStore,
    component: &str,
    page: usize,
) -> Vec<InstanceRecord> {
    let mut out = Vec::new();
    let mut after = None;
    let mut last_id: Option<InstanceId> = None;
    loop {
        let records = store.load_active(after, page).await.unwrap();
        assert!(
            records.len() <= page,
            "[{}] load_active returned more than the limit",
            store.backend()
        );
        for record in &records {
            assert!(
                last_id.is_none_or(|last| last < record.id),
                "[{}] load_active ids must increase",
                store.backend()
            );
            assert_eq!(
                record.status,
                Status::Active,
                "[{}] load_active returned a finished instance",
                store.backend()
            );
            last_id = Some(record.id);
        }
        let Some(last) = records.last() else { break };
        after = Some(last.id);
        out.extend(records.into_iter().filter(|r| r.component == component));
    }
    out
}

/// The URL of an external test service from `var`; `None` (with a loud notice) when unset,
/// a failure when unset and `XC_REQUIRE_SERVICES` is true (`scripts/test.sh` sets it in CI).
pub fn service_url(var: &str, backend: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if required("XC_REQUIRE_SERVICES") => {
            panic!(
                "{var} is not set but XC_REQUIRE_SERVICES is on: the {backend} store must be tested"
            )
        }
        _ => {
            eprintln!(
                "\n!!!!!!!! {backend} store NOT TESTED: set {var} to run its conformance suite !!!!!!!!\n"
            );
            None
        }
    }
}

/// Whether a boolean environment variable is set to true (the spellings of
/// `xcomponent_core::flag`); any other value fails the test rather than meaning "off".
fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|value| {
        xcomponent_core::flag::parse(&value).unwrap_or_else(|error| panic!("{var}: {error}"))
    })
}

/// Runs the suite in its own task so that `cleanup` runs even when a check fails; then, with
/// `reopen`, stores messages and checks that a second store opened on the same data lists them.
pub async fn run_then_cleanup<F, R, O>(store: Arc<dyn EventStore>, reopen: Option<R>, cleanup: F)
where
    F: Future<Output = ()>,
    R: FnOnce() -> O + Send + 'static,
    O: Future<Output = Arc<dyn EventStore>> + Send,
{
    let outcome = tokio::spawn(async move {
        run_all(Arc::clone(&store)).await;
        if let Some(reopen) = reopen {
            let left = messages::leave_for_reopen(&*store).await;
            let reopened = reopen().await;
            messages::found_after_reopen(&*reopened, &left).await;
        }
    })
    .await;
    cleanup.await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
