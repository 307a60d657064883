//! Runs the conformance suite on PostgreSQL when `XC_TEST_POSTGRES_URL` is set, in a schema of
//! its own (`xc_test_<random>`) dropped at the end.

#![cfg(feature = "postgres")]

mod conformance;

use sqlx::Connection;
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
