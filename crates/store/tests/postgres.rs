//! Runs the conformance suite on PostgreSQL when `XC_TEST_POSTGRES_URL` is set, in a schema of
//! its own (`xc_test_<random>`) dropped at the end; and checks that a version 1 schema is
//! migrated in place to the latest version (the message tables, the nullable `context` and the
//! `changes` column) with its events kept and still folded.

#![cfg(feature = "postgres")]

mod conformance;

use sqlx::Connection;
use xcomponent_core::instance::Status;
use xcomponent_core::message::InboxEntry;
use xcomponent_core::store::{CommitBatch, StoredEvent};
use xcomponent_store::{Durability, StoreOptions, open};

async fn drop_schema(url: &str, schema: &str) {
    match sqlx::PgConnection::connect(url).await {
        Ok(mut conn) => {
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
                eprintln!("could not drop test schema {schema}: {error}");
            }
        }
        Err(error) => eprintln!("could not connect to drop test schema {schema}: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(url) = conformance::service_url("XC_TEST_POSTGRES_URL", "postgres") else { return };
    let schema = format!("xc_test_{}", uuid::Uuid::now_v7().simple());
    let options = StoreOptions {
        schema: schema.clone(),
        durability: Durability::EachCommit,
        ..StoreOptions::default()
    };
    let store = match open(&url, &options).await {
        Ok(store) => store,
        Err(error) => {
            drop_schema(&url, &schema).await;
            panic!("postgres store does not open at {url}: {error}");
        }
    };
    assert_eq!(store.backend(), "postgres");
    // A second open of the same schema finds it migrated, and the messages the first stored.
    let reopen = {
        let (url, options) = (url.clone(), options.clone());
        move || async move { open(&url, &options).await.expect("reopen") }
    };
    conformance::run_then_cleanup(store, Some(reopen), drop_schema(&url, &schema)).await;
}

#[tokio::test]
async fn postgres_rejects_a_bad_schema_name() {
    let options = StoreOptions { schema: "x; DROP TABLE y".to_owned(), ..StoreOptions::default() };
    let error = open("postgres://nobody@127.0.0.1:1/none", &options).await.err().expect("rejected");
    assert!(error.to_string().contains("schema"), "{error}");
}

#[tokio::test]
async fn postgres_url_schema_parameter_selects_the_schema() {
    let Some(url) = conformance::service_url("XC_TEST_POSTGRES_URL", "postgres") else { return };
    let schema = format!("xc_test_url_{}", uuid::Uuid::now_v7().simple());
    let separator = if url.contains('?') { '&' } else { '?' };
    let opened = open(&format!("{url}{separator}schema={schema}"), &StoreOptions::default()).await;
    let pinged = match &opened {
        Ok(store) => store.ping().await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let found: Result<Option<String>, sqlx::Error> = async {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query_scalar("SELECT table_schema::text FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'fsm_events'")
            .bind(&schema)
            .fetch_optional(&mut conn)
            .await
    }
    .await;
    drop_schema(&url, &schema).await;
    pinged.expect("opens with ?schema= and answers");
    assert_eq!(found.expect("catalog query"), Some(schema), "tables created in the URL's schema");
}

/// Writes `events` and their summary as a version 1 build did, in `schema`.
async fn insert_v1(conn: &mut sqlx::PgConnection, events: &[StoredEvent]) -> sqlx::Result<()> {
    for e in events {
        sqlx::query(
            "INSERT INTO fsm_events (id, instance_id, seq, component, machine, event_type, payload, state_before, \
             state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at, causation_id, \
             correlation_id, source_component, schema_version) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, \
             $11::jsonb, $12::jsonb, NULL, NULL, $13, $14, $15, $16, $17, 1)",
        )
        .bind(e.id.0)
        .bind(e.instance_id.0)
        .bind(e.seq as i64)
        .bind(&e.component)
        .bind(&e.machine)
        .bind(&e.event_type)
        .bind(json(&e.payload))
        .bind(&e.state_before)
        .bind(&e.state_after)
        .bind(e.status.as_str())
        .bind(json(e.context.as_ref().expect("layout 1 events carry the whole data")))
        .bind(json(&e.timers))
        .bind(e.entry_point)
        .bind(e.timestamp)
        .bind(e.causation_id.map(|c| c.0))
        .bind(e.correlation_id.0)
        .bind(e.source_component.as_deref())
        .execute(&mut *conn)
        .await?;
    }
    let record = conformance::expected(events);
    sqlx::query("INSERT INTO fsm_instances VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(record.id.0)
        .bind(&record.component)
        .bind(&record.machine)
        .bind(&record.state)
        .bind(record.status.as_str())
        .bind(record.seq as i64)
        .bind(record.created_at)
        .bind(record.updated_at)
        .bind(record.entry_point)
        .bind(record.correlation_id.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// JSON text of a document column.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("test data encodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_schema_gains_the_message_tables() {
    let Some(url) = conformance::service_url("XC_TEST_POSTGRES_URL", "postgres") else { return };
    let schema = format!("xc_test_v1_{}", uuid::Uuid::now_v7().simple());
    let live = conformance::whole_contexts(&conformance::chain("c_pg_v1", 3, 1_000));
    let outcome = {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            // A version 1 schema as a version 1 build left it.
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connects");
            let setup = format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; {} \
             CREATE TABLE fsm_schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL); \
             INSERT INTO fsm_schema_version VALUES (1, 0);",
                include_str!("../migrations/postgres/0001_init.sql")
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&mut conn).await.expect("v1 schema");
            insert_v1(&mut conn, &live).await.expect("v1 rows");

            let options = StoreOptions { schema: schema.clone(), ..StoreOptions::default() };
            let store = open(&url, &options).await.expect("version 1 schema opens and migrates");
            let versions: Vec<i32> =
                sqlx::query_scalar("SELECT version FROM fsm_schema_version ORDER BY version")
                    .fetch_all(&mut conn)
                    .await
                    .expect("versions");
            assert_eq!(versions, vec![1, 2, 3, 4], "migrated to version 4 in place");
            assert_eq!(
                store.history(live[0].instance_id).await.expect("store call"),
                live,
                "events kept"
            );
            assert_eq!(
                store.instance(live[0].instance_id).await.expect("store call"),
                Some(conformance::expected(&live))
            );

            // The new tables take a transition with its messages.
            let message = conformance::messages::send("c_pg_v1", live[0].instance_id);
            let applied = InboxEntry {
                message_id: conformance::messages::message_id(),
                instance_id: live[0].instance_id,
                applied_at: 1_010,
            };
            let step = conformance::next(&live[2], "GO", "S4", Status::Active, 1_010);
            store
                .commit(&CommitBatch {
                    events: vec![step.clone()],
                    outbox: vec![message.clone()],
                    inbox: vec![applied],
                    ..Default::default()
                })
                .await
                .expect("commit");
            assert_eq!(store.pending_messages(None, 10).await.expect("store call"), vec![message]);
            assert_eq!(
                store.inbox_entries(&[applied.message_id]).await.expect("store call"),
                vec![applied]
            );
            assert_eq!(
                store.history(live[0].instance_id).await.expect("store call"),
                [live.clone(), vec![step.clone()]].concat(),
                "layout 1 events (whole data) and a layout 2 event (a change) side by side"
            );
            let mut want = conformance::expected(&live);
            want.apply(&step);
            assert_eq!(
                store.instance(live[0].instance_id).await.expect("store call"),
                Some(want),
                "the change folds on the whole data of the layout 1 events"
            );
        }
    };
    let outcome = tokio::spawn(outcome).await;
    drop_schema(&url, &schema).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Issue 12, measured on PostgreSQL: one instance gains a 6 kB note per event (40 events), stored
/// as the runtime now stores it (the creation whole, each transition its change) and as record
/// layout 1 did (every event the whole data). `fsm_events` grows linearly now, quadratically then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_instance_costs_its_changes() {
    const NOTES: u64 = 40;
    const NOTE_BYTES: usize = 6_000;
    let Some(url) = conformance::service_url("XC_TEST_POSTGRES_URL", "postgres") else { return };
    let mut sizes = Vec::new();
    for layout in [1, 2] {
        let schema = format!("xc_test_growth_{}", uuid::Uuid::now_v7().simple());
        let options = StoreOptions { schema: schema.clone(), ..StoreOptions::default() };
        let outcome = tokio::spawn({
            let (url, schema) = (url.clone(), schema.clone());
            async move {
                let store = open(&url, &options).await.expect("opens");
                let mut events = conformance::chain("c_growth", NOTES + 1, 1_000);
                for (n, event) in events.iter_mut().enumerate().skip(1) {
                    // Random hex: TOAST compression cannot hide the copies.
                    let note: String =
                        std::iter::repeat_with(|| uuid::Uuid::now_v7().simple().to_string())
                            .flat_map(|hex| hex.into_bytes())
                            .take(NOTE_BYTES)
                            .map(char::from)
                            .collect();
                    event.changes.set =
                        conformance::object(serde_json::json!({ format!("note{n:02}"): note }));
                }
                if layout == 1 {
                    events = conformance::whole_contexts(&events);
                }
                for event in &events {
                    store.commit(&conformance::batch(vec![event.clone()])).await.expect("commit");
                }
                let record = store.instance(events[0].instance_id).await.expect("read");
                assert_eq!(record, Some(conformance::expected(&events)));
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("connects");
                let table = format!("\"{schema}\".fsm_events");
                sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size($1::regclass)")
                    .bind(table)
                    .fetch_one(&mut conn)
                    .await
                    .expect("size")
            }
        })
        .await;
        drop_schema(&url, &schema).await;
        match outcome {
            Ok(size) => sizes.push(size),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    let (whole, changes) = (sizes[0], sizes[1]);
    eprintln!(
        "postgres fsm_events after {NOTES} notes of {NOTE_BYTES} B: layout 1 (whole data) {whole} B, \
         layout 2 (changes) {changes} B"
    );
    assert!(changes * 4 < whole, "changes {changes} B vs whole data {whole} B");
}
