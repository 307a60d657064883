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
    let options = StoreOptions { schema: schema.clone(), durability: Durability::EachCommit, ..StoreOptions::default() };
    let store = match open(&url, &options).await {
        Ok(store) => store,
        Err(error) => {
            drop_schema(&url, &schema).await;
            panic!("postgres store does not open at {url}: {error}");
        }
    };
    assert_eq!(store.backend(), "postgres");
    // A second open of the same schema finds it migrated.
    open(&url, &options).await.expect("reopen").ping().await.expect("ping");
    conformance::run_then_cleanup(store, drop_schema(&url, &schema)).await;
}

#[tokio::test]
async fn postgres_rejects_a_bad_schema_name() {
    let options = StoreOptions { schema: "x; DROP TABLE y".to_owned(), ..StoreOptions::default() };
    let error = open("postgres://nobody@127.0.0.1:1/none", &options).await.err().expect("rejected");
    assert!(error.to_string().contains("schema"), "{error}");
}
