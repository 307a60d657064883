//! SQLite-specific checks: a schema version 1 database (text ids) is migrated to the latest
//! version with every record intact, a version 2 database gains the message tables of version 3
//! and the nullable `context` / `changes` columns of version 4 (its layout 1 events, each with the
//! whole data, still read and folded), and a group commit fails only the batch that conflicts
//! (its messages included), and the writer's remembered instance keys never write over the row
//! of another instance.

#![allow(clippy::unwrap_used)]

mod conformance;

use conformance::messages::{self, send};
use conformance::{batch, chain, expected, next, timer, whole_contexts};
use serde_json::json;
use std::sync::Arc;
use xcomponent_core::instance::{EventId, InstanceId, ParentRef, Status};
use xcomponent_core::message::InboxEntry;
use xcomponent_core::store::{CommitBatch, Error, EventStore, InstanceRecord, StoredEvent};
use xcomponent_store::{Durability, StoreOptions, open};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("xc-store-layout-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// Writes `event` as schema version 1 stored it (hyphenated text ids, JSON text).
fn insert_v1_event(conn: &rusqlite::Connection, e: &StoredEvent) {
    conn.execute(
        "INSERT INTO fsm_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, 1)",
        rusqlite::params![
            e.id.to_string(),
            e.instance_id.to_string(),
            e.seq as i64,
            e.component,
            e.machine,
            e.event_type,
            text(&e.payload),
            e.state_before,
            e.state_after,
            e.status.as_str(),
            text(e.context.as_ref().expect("layout 1 events carry the whole data")),
            text(&e.timers),
            e.parent.as_ref().map(|p| p.instance_id.to_string()),
            e.parent.as_ref().map(|p| p.machine.clone()),
            e.entry_point,
            e.timestamp,
            e.causation_id.map(|c| c.to_string()),
            e.correlation_id.to_string(),
            e.source_component,
        ],
    )
    .unwrap();
}

/// Writes the summary row version 1 kept for the instance `record` describes.
fn insert_v1_summary(conn: &rusqlite::Connection, record: &InstanceRecord) {
    conn.execute(
        "INSERT INTO fsm_instances VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        rusqlite::params![
            record.id.to_string(),
            record.component,
            record.machine,
            record.state,
            record.status.as_str(),
            record.seq as i64,
            record.created_at,
            record.updated_at,
            record.entry_point,
            record.correlation_id.to_string(),
        ],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_database_is_migrated() {
    let dir = TempDir::new();
    let path = dir.0.join("v1.db");
    let mut live = whole_contexts(&chain("c_v1", 3, 1_000));
    live[0].parent = Some(ParentRef {
        instance_id: InstanceId(uuid::Uuid::now_v7()),
        machine: "Parent".to_owned(),
    });
    live[0].entry_point = true;
    live[0].source_component = Some("Upstream".into());
    live[2].timers = vec![timer("TIMEOUT", 9_000)];
    live[2].payload = conformance::object(json!({ "note": "été \"quoted\"" }));
    let mut snapshot = expected(&live[..2]);
    snapshot.context.insert("fromSnapshot".to_owned(), json!(true));
    let mut done = chain("c_v1", 1, 2_000);
    done.push(next(&done[0], "END", "End", Status::Completed, 2_001));
    let done = whole_contexts(&done);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql")).unwrap();
        conn.execute_batch(
            "CREATE TABLE fsm_schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL); \
             INSERT INTO fsm_schema_version VALUES (1, 0);",
        )
        .unwrap();
        for event in live.iter().chain(&done) {
            insert_v1_event(&conn, event);
        }
        let mut want = snapshot.clone();
        want.apply(&live[2]);
        insert_v1_summary(&conn, &want);
        insert_v1_summary(&conn, &expected(&done));
        conn.execute(
            "INSERT INTO fsm_snapshots VALUES (?1, 2, ?2, 'active', ?3, 1)",
            rusqlite::params![snapshot.id.to_string(), snapshot.state, text(&snapshot)],
        )
        .unwrap();
    }

    let url = format!("sqlite://{}", path.display());
    let options = StoreOptions { durability: Durability::Relaxed, ..StoreOptions::default() };
    let store = open(&url, &options).await.expect("version 1 database opens and migrates");
    let mut want = snapshot.clone();
    want.apply(&live[2]);
    assert_eq!(
        store.instance(live[0].instance_id).await.unwrap(),
        Some(want.clone()),
        "snapshot + later event"
    );
    assert_eq!(store.history(live[0].instance_id).await.unwrap(), live, "every column survives");
    assert_eq!(store.history(done[0].instance_id).await.unwrap(), done);
    assert_eq!(
        store.load_active(None, 10).await.unwrap(),
        vec![want],
        "only the live instance is active"
    );
    let chain_events = store.correlated(live[0].correlation_id, 10).await.unwrap();
    assert_eq!(chain_events, live, "correlation ranges rebuilt");
    // Writes continue on the migrated data: the next seq is accepted (stored as a change and
    // folded on the whole data of the layout 1 events), a stored one conflicts.
    let step = next(&live[2], "GO", "S4", Status::Active, 1_010);
    store.commit(&batch(vec![step.clone()])).await.unwrap();
    let now = store.instance(live[0].instance_id).await.unwrap().expect("exists");
    assert_eq!(now.seq, 4);
    assert_eq!(now.context.get("step"), Some(&json!(4)), "the change folded on layout 1 data");
    assert_eq!(
        now.context.get("fromSnapshot"),
        None,
        "event 3 (layout 1) replaced the snapshot's data whole, event 4 changed one key"
    );
    let duplicate = next(&live[1], "DUP", "Elsewhere", Status::Active, 1_011);
    assert!(matches!(
        store.commit(&batch(vec![duplicate])).await,
        Err(Error::Conflict { seq: 3, .. })
    ));
}

/// The versions recorded in `fsm_schema_version`.
fn versions(path: &std::path::Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement =
        conn.prepare("SELECT version FROM fsm_schema_version ORDER BY version").unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_database_gains_the_message_tables() {
    let dir = TempDir::new();
    let path = dir.0.join("v2.db");
    let live = whole_contexts(&chain("c_v2", 3, 1_000));
    {
        // A version 2 file as a version 2 build left it: version 1 data, then its migration.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql")).unwrap();
        for event in &live {
            insert_v1_event(&conn, event);
        }
        insert_v1_summary(&conn, &expected(&live));
        conn.execute_batch(include_str!("../migrations/sqlite/0002_compact_keys.sql")).unwrap();
        conn.execute_batch(
            "CREATE TABLE fsm_schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL); \
             INSERT INTO fsm_schema_version VALUES (1, 0), (2, 0);",
        )
        .unwrap();
    }
    assert_eq!(versions(&path), vec![1, 2]);

    let url = format!("sqlite://{}", path.display());
    let options = StoreOptions { durability: Durability::Relaxed, ..StoreOptions::default() };
    let store = open(&url, &options).await.expect("version 2 database opens and migrates");
    assert_eq!(versions(&path), vec![1, 2, 3, 4, 5, 6], "migrated to version 6 in place");
    assert_eq!(store.history(live[0].instance_id).await.unwrap(), live, "events kept");
    assert_eq!(store.instance(live[0].instance_id).await.unwrap(), Some(expected(&live)));

    // The new tables take a transition with its messages.
    let message = send("c_v2", live[0].instance_id);
    let applied = InboxEntry {
        message_id: messages::message_id(),
        instance_id: live[0].instance_id,
        applied_at: 1_010,
    };
    let step = next(&live[2], "GO", "S4", Status::Active, 1_010);
    store
        .commit(&CommitBatch {
            events: vec![step.clone()],
            outbox: vec![message.clone()],
            inbox: vec![applied],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.pending_messages(None, 10).await.unwrap(), vec![message]);
    assert_eq!(store.inbox_entries(&[applied.message_id]).await.unwrap(), vec![applied]);
    assert_eq!(store.history(live[0].instance_id).await.unwrap(), [live, vec![step]].concat());
    drop(store);
    drop(open(&url, &options).await.expect("reopens"));
    assert_eq!(versions(&path), vec![1, 2, 3, 4, 5, 6], "no migration applied twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_fails_only_the_conflicting_batch() {
    const WRITERS: usize = 24;
    let dir = TempDir::new();
    let url = format!("sqlite://{}/group.db", dir.0.display());
    let store: Arc<dyn EventStore> = open(&url, &StoreOptions::default()).await.unwrap();
    let stored = chain("c_group", 1, 5_000);
    store.commit(&batch(stored.clone())).await.unwrap();
    let mut duplicate = stored[0].clone();
    duplicate.id = EventId(uuid::Uuid::now_v7());
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let events: Vec<StoredEvent> = if writer == WRITERS / 2 {
            vec![duplicate.clone()]
        } else {
            (0..50).flat_map(|i| chain("c_group", 3, 5_000 + i)).collect()
        };
        // Every batch carries a message: the conflicting one's must not be stored.
        let message = send("c_group", events[0].instance_id);
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let batch = CommitBatch {
                events: events.clone(),
                outbox: vec![message.clone()],
                ..Default::default()
            };
            let result = store.commit(&batch).await;
            (events, message, result)
        }));
    }
    let mut stored_messages = Vec::new();
    for task in tasks {
        let (events, message, result) = task.await.unwrap();
        if events[0].instance_id == stored[0].instance_id {
            assert!(
                matches!(result, Err(Error::Conflict { seq: 1, .. })),
                "the duplicate conflicts: {result:?}"
            );
        } else {
            result.expect("the other batches of the group are stored");
            for instance in events.chunks(3) {
                assert_eq!(store.history(instance[0].instance_id).await.unwrap(), instance);
            }
            stored_messages.push(message);
        }
    }
    assert_eq!(store.history(stored[0].instance_id).await.unwrap(), stored);
    stored_messages.sort_by_key(|m| m.id);
    assert_eq!(
        store.pending_messages(None, 1000).await.unwrap(),
        stored_messages,
        "exactly the messages of the stored batches"
    );
}

/// The writer remembers each instance's row key and updates its summary by that key. Another
/// process sharing the file may delete the row and give the key to a new instance: the update
/// must then leave that instance alone and the summary be written as a new row.
#[tokio::test]
async fn a_remembered_key_taken_by_another_instance_is_not_written_over() {
    let dir = TempDir::new();
    let path = dir.0.join("keys.db");
    let url = format!("sqlite://{}", path.display());
    let first: Arc<dyn EventStore> = open(&url, &StoreOptions::default()).await.unwrap();
    let second: Arc<dyn EventStore> = open(&url, &StoreOptions::default()).await.unwrap();
    let x = chain("c_keys", 3, 9_000);
    // Created, then updated by the key the writer of `first` now remembers.
    first.commit(&batch(x[..1].to_vec())).await.unwrap();
    first.commit(&batch(x[1..2].to_vec())).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let key_of = |id: InstanceId| -> Option<i64> {
        conn.query_row(
            "SELECT ikey FROM fsm_instances WHERE instance_id = ?1",
            [id.0.as_bytes()],
            |row| row.get(0),
        )
        .ok()
    };
    let x_key = key_of(x[0].instance_id).unwrap();
    // Another process purges `x` (its row has the largest key) and creates `y`: SQLite gives `y`
    // the key `x` had.
    conn.execute_batch(&format!(
        "DELETE FROM fsm_events WHERE ikey = {x_key}; DELETE FROM fsm_snapshots WHERE ikey = {x_key}; \
         DELETE FROM fsm_correlations WHERE ikey = {x_key}; DELETE FROM fsm_instances WHERE ikey = {x_key};"
    ))
    .unwrap();
    let y = chain("c_keys_other", 1, 9_500);
    second.commit(&batch(y.clone())).await.unwrap();
    assert_eq!(key_of(y[0].instance_id), Some(x_key), "the key was given to another instance");
    // `first` stores the next event of `x`: it must not land on `y`.
    first.commit(&batch(x[2..].to_vec())).await.unwrap();
    assert_eq!(first.history(y[0].instance_id).await.unwrap(), y);
    assert_eq!(first.instance(y[0].instance_id).await.unwrap(), Some(expected(&y)));
    assert_eq!(first.history(x[0].instance_id).await.unwrap(), x[2..].to_vec());
    let x_now = first.instance(x[0].instance_id).await.unwrap().expect("x has a row again");
    assert_eq!((x_now.seq, x_now.state.as_str()), (3, "S3"));
    assert_ne!(key_of(x[0].instance_id), Some(x_key));
}

#[tokio::test]
async fn a_newer_schema_is_refused_as_configuration() {
    let dir = TempDir::new();
    let path = dir.0.join("newer.db");
    let url = format!("sqlite://{}", path.display());
    drop(open(&url, &StoreOptions::default()).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO fsm_schema_version (version, applied_at) VALUES (99, 0)", [])
        .unwrap();
    drop(conn);
    match open(&url, &StoreOptions::default()).await {
        Err(Error::Config(message)) => assert!(message.contains("99"), "{message}"),
        other => panic!("expected a configuration error, got {:?}", other.map(|s| s.backend())),
    }
}
