//! Conformance checks on writes, conflicts, restore and retention.

use super::*;
use xcomponent_core::instance::ParentRef;
use xcomponent_core::store::{Error, InstanceQuery, Retention};

/// `ping` answers.
pub async fn ping(store: &dyn EventStore) {
    store.ping().await.unwrap();
}

/// Every field of events and snapshots comes back as written.
pub async fn round_trip(store: &dyn EventStore) {
    let parent = InstanceId(uuid::Uuid::now_v7());
    let mut first = created(
        "c_round_trip",
        InstanceId(uuid::Uuid::now_v7()),
        "Created",
        T0,
        json!({ "orderId": "O-1", "amount": 12.5, "big": 9_007_199_254_740_993u64, "neg": -3,
                "nested": { "list": [1, "two", null, true], "empty": {} }, "text": "été \"quoted\" \\ 🚀" }),
    );
    first.parent = Some(ParentRef { instance_id: parent, machine: "ParentMachine".to_owned() });
    first.entry_point = true;
    first.timers = vec![timer("TIMEOUT", T0 + 5_000), timer("AUTO", T0 + 10)];
    first.causation_id = Some(EventId(uuid::Uuid::now_v7()));
    first.source_component = Some("Upstream".into());
    let mut second = next(&first, "VALIDATE", "Validated", Status::Active, T0 + 7);
    second.payload = object(json!({ "by": "alice", "flags": [] }));
    second.timers = vec![timer("REMIND", T0 + 60_000)];
    second.source_component = None;
    commit(store, &batch(vec![first.clone(), second.clone()])).await;

    let history = store.history(first.instance_id).await.unwrap();
    assert_eq!(
        history,
        vec![first.clone(), second.clone()],
        "[{}] history round trip",
        store.backend()
    );
    let record = store.instance(first.instance_id).await.unwrap().expect("instance exists");
    assert_eq!(
        record,
        expected(&[first.clone(), second.clone()]),
        "[{}] record round trip",
        store.backend()
    );

    let mut snapshot = record.clone();
    snapshot.context.insert("fromSnapshot".to_owned(), json!({ "deep": [1.25] }));
    commit(store, &CommitBatch { snapshots: vec![snapshot.clone()], ..Default::default() }).await;
    let restored = store.instance(first.instance_id).await.unwrap().expect("instance exists");
    assert_eq!(restored, snapshot, "[{}] snapshot round trip", store.backend());
    assert_eq!(store.instance(InstanceId(uuid::Uuid::now_v7())).await.unwrap(), None);
    assert!(store.history(InstanceId(uuid::Uuid::now_v7())).await.unwrap().is_empty());
}

/// `history` is in seq order whatever the commit order of the batches.
pub async fn history_in_seq_order(store: &dyn EventStore) {
    let events = chain("c_history", 5, T0);
    commit(store, &batch(vec![events[0].clone(), events[1].clone()])).await;
    commit(store, &batch(vec![events[3].clone(), events[2].clone(), events[4].clone()])).await;
    assert_eq!(store.history(events[0].instance_id).await.unwrap(), events);
}

/// A long history committed out of order (seqs filling gaps below the highest stored, across
/// many blocks of seqs): read back in seq order, and every stored seq still conflicts.
pub async fn long_history_out_of_order(store: &dyn EventStore) {
    let events = chain("c_long_history", 200, T0);
    let (even, odd): (Vec<_>, Vec<_>) = events[1..].iter().cloned().partition(|e| e.seq % 2 == 0);
    commit(store, &batch(vec![events[0].clone()])).await;
    commit(store, &batch(even)).await;
    commit(store, &batch(odd.into_iter().rev().collect())).await;
    assert_eq!(store.history(events[0].instance_id).await.unwrap(), events);
    for seq in [1, 63, 64, 65, 128, 200] {
        let mut duplicate = events[seq - 1].clone();
        duplicate.id = EventId(uuid::Uuid::now_v7());
        let result = store.commit(&batch(vec![duplicate])).await;
        assert_conflict(store, result, events[0].instance_id, seq as u64);
    }
    let record = store.instance(events[0].instance_id).await.unwrap().expect("instance exists");
    assert_eq!(record, expected(&events), "[{}] folded from the whole history", store.backend());
}

fn assert_conflict(store: &dyn EventStore, result: Result<(), Error>, id: InstanceId, seq: u64) {
    match result {
        Err(Error::Conflict { instance_id, seq: s }) => assert_eq!((instance_id, s), (id, seq)),
        other => panic!("[{}] expected a conflict on {id}/{seq}, got {other:?}", store.backend()),
    }
}

/// A duplicate of a stored `(instance, seq)` fails the batch, and nothing of it is written.
pub async fn conflict_with_stored_event(store: &dyn EventStore) {
    let stored = chain("c_conflict", 2, T0);
    commit(store, &batch(stored.clone())).await;
    let other = created("c_conflict", InstanceId(uuid::Uuid::now_v7()), "S1", T0, json!({}));
    let mut duplicate = next(&stored[0], "DUP", "Elsewhere", Status::Active, T0 + 50);
    duplicate.id = EventId(uuid::Uuid::now_v7());
    let third = next(&stored[1], "GO", "S3", Status::Active, T0 + 60);
    let result = store.commit(&batch(vec![other.clone(), third, duplicate])).await;
    assert_conflict(store, result, stored[0].instance_id, 2);
    assert_eq!(
        store.history(stored[0].instance_id).await.unwrap(),
        stored,
        "stored events unchanged"
    );
    assert_eq!(
        store.instance(other.instance_id).await.unwrap(),
        None,
        "no part of the batch written"
    );
    assert!(store.history(other.instance_id).await.unwrap().is_empty());
}

/// The same `(instance, seq)` twice in one batch is a conflict, and nothing is written.
pub async fn conflict_within_batch(store: &dyn EventStore) {
    let events = chain("c_conflict_batch", 2, T0);
    let mut twin = events[1].clone();
    twin.id = EventId(uuid::Uuid::now_v7());
    let result = store.commit(&batch(vec![events[0].clone(), events[1].clone(), twin])).await;
    assert_conflict(store, result, events[0].instance_id, 2);
    assert!(store.history(events[0].instance_id).await.unwrap().is_empty());
    assert_eq!(store.instance(events[0].instance_id).await.unwrap(), None);
}

/// Two writers racing on the same `(instance, seq)`: exactly one wins, the other gets `Conflict`.
pub async fn conflict_between_concurrent_committers(store: &dyn EventStore) {
    const ROUNDS: usize = 20;
    let mut pairs = Vec::new();
    for round in 0..ROUNDS {
        let base = chain("c_race", 1, T0 + round as i64);
        commit(store, &batch(base.clone())).await;
        let a = next(&base[0], "A", "WonByA", Status::Active, T0 + 100);
        let b = next(&base[0], "B", "WonByB", Status::Active, T0 + 100);
        pairs.push((a, b));
    }
    for (a, b) in &pairs {
        let (batch_a, batch_b) = (batch(vec![a.clone()]), batch(vec![b.clone()]));
        let (ra, rb) = tokio::join!(store.commit(&batch_a), store.commit(&batch_b));
        let (winner_a, loser) = match (ra, rb) {
            (Ok(()), Err(e)) => (true, e),
            (Err(e), Ok(())) => (false, e),
            other => panic!("[{}] exactly one committer must win, got {other:?}", store.backend()),
        };
        assert!(
            matches!(loser, Error::Conflict { seq: 2, .. }),
            "loser gets Conflict, got {loser:?}"
        );
        let history = store.history(a.instance_id).await.unwrap();
        assert_eq!(history.len(), 2, "[{}] one winner stored", store.backend());
        assert_eq!(&*history[1].state_after, if winner_a { "WonByA" } else { "WonByB" });
    }
}

/// A failing batch writes neither its events (of any instance) nor its snapshots.
pub async fn batch_is_all_or_nothing(store: &dyn EventStore) {
    let existing = chain("c_atomic", 3, T0);
    commit(store, &batch(existing.clone())).await;
    let before = store.instance(existing[0].instance_id).await.unwrap();
    let fresh: Vec<StoredEvent> = (0..3).flat_map(|i| chain("c_atomic", 2, T0 + i)).collect();
    let mut snapshot = expected(&existing);
    snapshot.state = "FromFailedBatch".to_owned();
    let mut events = fresh.clone();
    events.push(next(&existing[2], "GO", "S4", Status::Active, T0 + 10));
    let mut duplicate = existing[1].clone();
    duplicate.id = EventId(uuid::Uuid::now_v7());
    events.push(duplicate);
    let result = store
        .commit(&CommitBatch { events, snapshots: vec![snapshot], ..Default::default() })
        .await;
    assert_conflict(store, result, existing[0].instance_id, 2);
    assert_eq!(store.instance(existing[0].instance_id).await.unwrap(), before);
    assert_eq!(store.history(existing[0].instance_id).await.unwrap(), existing);
    for event in &fresh {
        assert!(
            store.history(event.instance_id).await.unwrap().is_empty(),
            "[{}] nothing written",
            store.backend()
        );
    }
    let query =
        InstanceQuery { component: Some("c_atomic".to_owned()), limit: 10, ..Default::default() };
    assert_eq!(
        store.search(&query).await.unwrap().items.len(),
        1,
        "only the first instance exists"
    );
}

/// Restore = latest snapshot + the events after it; without a snapshot, all events.
pub async fn restore_is_snapshot_plus_later_events(store: &dyn EventStore) {
    let events = chain("c_restore", 13, T0);
    let id = events[0].instance_id;
    commit(store, &batch(events[..10].to_vec())).await;
    let mut snapshot = expected(&events[..10]);
    // A marker only the snapshot carries: proves it is the base of the restore.
    snapshot.created_at = 42;
    snapshot.context.insert("snapshotOnly".to_owned(), json!(true));
    let older = expected(&events[..5]);
    commit(store, &CommitBatch { snapshots: vec![older, snapshot.clone()], ..Default::default() })
        .await;
    commit(store, &batch(events[10..].to_vec())).await;

    let mut want = snapshot.clone();
    for event in &events[10..] {
        want.apply(event);
    }
    assert_eq!(want.seq, 13);
    let record = store.instance(id).await.unwrap().expect("exists");
    assert_eq!(record, want, "[{}] instance = snapshot at 10 + events 11..13", store.backend());
    assert_eq!(record.created_at, 42, "the snapshot is the base");
    assert!(
        record.context.contains_key("snapshotOnly"),
        "later events change the snapshot's data, key by key"
    );
    let active = load_all_active(store, "c_restore", 1000).await;
    assert_eq!(
        active,
        vec![want.clone()],
        "[{}] load_active = snapshot + later events",
        store.backend()
    );

    // An older snapshot arriving late does not replace the newer one.
    commit(store, &CommitBatch { snapshots: vec![expected(&events[..3])], ..Default::default() })
        .await;
    assert_eq!(store.instance(id).await.unwrap(), Some(want));

    // No snapshot: creation + all events.
    let plain = chain("c_restore_plain", 3, T0);
    commit(store, &batch(plain.clone())).await;
    assert_eq!(store.instance(plain[0].instance_id).await.unwrap(), Some(expected(&plain)));
}

/// Completed and failed instances are never in `load_active`, but `instance` and `search` see them.
/// They finish in a later commit than the one that created them, as they do in a runtime.
pub async fn finished_instances_are_not_active(store: &dyn EventStore) {
    let component = "c_finished";
    let live = chain(component, 2, T0);
    let mut done = chain(component, 2, T0);
    let mut failed = chain(component, 1, T0);
    commit(store, &batch([live.clone(), done.clone(), failed.clone()].concat())).await;
    let mut before = vec![expected(&live), expected(&done), expected(&failed)];
    before.sort_by_key(|r| r.id);
    assert_eq!(
        load_all_active(store, component, 2).await,
        before,
        "[{}] all three are active before they finish",
        store.backend()
    );
    let finish = next(&done[1], "FINISH", "Done", Status::Completed, T0 + 20);
    let fail = next(&failed[0], "FAIL", "Failed", Status::Error, T0 + 30);
    done.push(finish.clone());
    failed.push(fail.clone());
    let final_snapshot = expected(&done);
    commit(
        store,
        &CommitBatch {
            events: vec![finish, fail],
            snapshots: vec![final_snapshot],
            ..Default::default()
        },
    )
    .await;

    let active = load_all_active(store, component, 2).await;
    assert_eq!(
        active,
        vec![expected(&live)],
        "[{}] only the live instance is active",
        store.backend()
    );
    let record =
        store.instance(done[0].instance_id).await.unwrap().expect("finished instance readable");
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record, expected(&done));
    assert_eq!(
        store.instance(failed[0].instance_id).await.unwrap().map(|r| r.status),
        Some(Status::Error)
    );
    for (status, id) in
        [(Status::Completed, done[0].instance_id), (Status::Error, failed[0].instance_id)]
    {
        let query = InstanceQuery {
            component: Some(component.to_owned()),
            status: Some(status),
            limit: 10,
            ..Default::default()
        };
        let ids: Vec<InstanceId> =
            store.search(&query).await.unwrap().items.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![id], "[{}] search by status {status:?}", store.backend());
    }
}

/// `load_active` pages through 2,500 instances in id order, without gaps or repeats.
pub async fn load_active_pages_over_many_instances(store: &dyn EventStore) {
    const INSTANCES: usize = 2_500;
    const FINISHED_EVERY: usize = 25;
    let component = "c_paging";
    let mut wanted = Vec::new();
    let mut events = Vec::new();
    for i in 0..INSTANCES {
        let mut chain = chain(component, 1 + (i % 3) as u64, T0 + i as i64);
        if i % FINISHED_EVERY == 0 {
            let last = chain.last().unwrap().clone();
            chain.push(next(&last, "END", "End", Status::Completed, T0 + i as i64 + 10));
        } else {
            wanted.push(expected(&chain));
        }
        events.extend(chain);
        if events.len() >= 1_000 || i + 1 == INSTANCES {
            commit(store, &batch(std::mem::take(&mut events))).await;
        }
    }
    wanted.sort_by_key(|r| r.id);
    for page in [1_000, 333] {
        let loaded = load_all_active(store, component, page).await;
        assert_eq!(
            loaded.len(),
            wanted.len(),
            "[{}] all active instances with page {page}",
            store.backend()
        );
        assert!(loaded == wanted, "[{}] records of page size {page} differ", store.backend());
    }
}

/// Retention purges finished instances older than the cutoff, nothing else.
pub async fn retention_purges_old_finished_instances(store: &dyn EventStore) {
    let component = "c_retention";
    let old_ts = 1_000;
    let mut old_done = chain(component, 2, old_ts);
    old_done.push(next(&old_done[1], "END", "End", Status::Completed, old_ts + 5));
    let mut old_failed = chain(component, 1, old_ts);
    old_failed.push(next(&old_failed[0], "FAIL", "Failed", Status::Error, old_ts + 6));
    let old_live = chain(component, 2, old_ts);
    let mut recent_done = chain(component, 1, 9_000);
    recent_done.push(next(&recent_done[0], "END", "End", Status::Completed, 9_001));
    let snapshot = expected(&old_done);
    let all =
        [old_done.clone(), old_failed.clone(), old_live.clone(), recent_done.clone()].concat();
    commit(store, &CommitBatch { events: all, snapshots: vec![snapshot], ..Default::default() })
        .await;

    assert_eq!(
        store.apply_retention(Retention { keep_finished_ms: None }, 10_000).await.unwrap(),
        0
    );
    let purged =
        store.apply_retention(Retention { keep_finished_ms: Some(5_000) }, 10_000).await.unwrap();
    assert_eq!(purged, 2, "[{}] two old finished instances purged", store.backend());
    for gone in [&old_done, &old_failed] {
        assert!(store.history(gone[0].instance_id).await.unwrap().is_empty());
        assert_eq!(store.instance(gone[0].instance_id).await.unwrap(), None);
        assert!(store.correlated(gone[0].correlation_id, 100).await.unwrap().is_empty());
    }
    assert_eq!(store.instance(old_live[0].instance_id).await.unwrap(), Some(expected(&old_live)));
    assert_eq!(
        store.instance(recent_done[0].instance_id).await.unwrap(),
        Some(expected(&recent_done))
    );
    assert_eq!(store.history(recent_done[0].instance_id).await.unwrap(), recent_done);
    assert_eq!(
        store.apply_retention(Retention { keep_finished_ms: Some(5_000) }, 10_000).await.unwrap(),
        0
    );
}

/// Events of record layout 2 carry what they changed, events of layout 1 (written before it)
/// the whole data; a restore folds both, in seq order, to the data each step produced: the same
/// record as the same steps stored whole.
pub async fn restore_folds_changes_and_whole_contexts(store: &dyn EventStore) {
    let steps = [
        json!({ "a": 1, "big": "x".repeat(1_000) }),
        json!({ "a": 2, "old": true, "big": "y".repeat(1_000) }),
        json!({ "a": 2, "big": "y".repeat(1_000), "list": [1, 2, 3] }),
        json!({ "a": 3, "big": "y".repeat(1_000), "list": [1, 2, 3] }),
        json!({ "only": { "nested": [null, 1.5] } }),
        json!({ "only": { "nested": [null, 1.5] }, "c": "end" }),
    ];
    let whole = |component: &str| {
        let mut events =
            vec![created(component, InstanceId(uuid::Uuid::now_v7()), "S1", T0, steps[0].clone())];
        for (n, data) in steps.iter().enumerate().skip(1) {
            let mut event =
                next(events.last().unwrap(), "GO", &format!("S{n}"), Status::Active, T0 + n as i64);
            event.changes = DataChanges::default();
            event.context = Some(object(data.clone()));
            events.push(event);
        }
        events
    };
    // Layout 1: every event whole. Mixed: changes, except the events of seq 2 and 5 (whole).
    let layout_1 = whole("c_fold_whole");
    let mut mixed = whole("c_fold_mixed");
    for n in [2, 3, 5] {
        let before = object(steps[n - 1].clone());
        mixed[n].changes = DataChanges::between(&before, &object(steps[n].clone()));
        mixed[n].context = None;
    }
    assert_eq!(mixed[2].changes.removed, vec!["old".to_owned()]);
    assert_eq!(mixed[2].changes.set.keys().collect::<Vec<_>>(), vec!["list"]);
    // Snapshotted copy: a snapshot at seq 3, then events 4.. folded on it.
    let mut snapshotted = whole("c_fold_snapshot");
    for n in 1..snapshotted.len() {
        let before = object(steps[n - 1].clone());
        snapshotted[n].changes = DataChanges::between(&before, &object(steps[n].clone()));
        snapshotted[n].context = None;
    }
    let snapshot = expected(&snapshotted[..3]);
    commit(store, &batch([layout_1.clone(), mixed.clone()].concat())).await;
    commit(
        store,
        &CommitBatch {
            events: snapshotted.clone(),
            snapshots: vec![snapshot],
            ..Default::default()
        },
    )
    .await;

    let name = store.backend();
    let want = object(steps[steps.len() - 1].clone());
    for events in [&layout_1, &mixed, &snapshotted] {
        let id = events[0].instance_id;
        let record = store.instance(id).await.unwrap().expect("exists");
        assert_eq!(record, expected(events), "[{name}] {} restored", events[0].component);
        assert_eq!(
            record.context, want,
            "[{name}] {}: the data of the last step",
            events[0].component
        );
        assert_eq!(
            store.history(id).await.unwrap(),
            *events,
            "[{name}] events come back as written"
        );
        let mut data = Map::new();
        for (n, event) in events.iter().enumerate() {
            data = event.data_after(&data);
            assert_eq!(data, object(steps[n].clone()), "[{name}] data after event {}", n + 1);
        }
    }
    for component in ["c_fold_whole", "c_fold_mixed", "c_fold_snapshot"] {
        let active = load_all_active(store, component, 1000).await;
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].context, want, "[{name}] load_active of {component}");
    }
}
