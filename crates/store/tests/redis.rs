//! Runs the conformance suite on Redis when `XC_TEST_REDIS_URL` is set, under a key prefix of
//! its own (`xc_test_<random>`) whose keys are deleted at the end.

#![cfg(feature = "redis")]

mod conformance;

use xcomponent_store::{Durability, StoreOptions, open};

/// Bound of the cleanup loop (SCAN pages of 1,000 keys).
const MAX_SCAN_PAGES: usize = 10_000;

async fn delete_prefix(url: &str, prefix: &str) {
    let result: redis::RedisResult<()> = async {
        let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        let mut cursor: u64 = 0;
        for _ in 0..MAX_SCAN_PAGES {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        eprintln!("could not delete test keys {prefix}:*: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let Some(url) = conformance::service_url("XC_TEST_REDIS_URL", "redis") else { return };
    let prefix = format!("xc_test_{}", uuid::Uuid::now_v7().simple());
    let options = StoreOptions { key_prefix: prefix.clone(), durability: Durability::Relaxed, ..StoreOptions::default() };
    let store = open(&url, &options).await.expect("redis store opens");
    assert_eq!(store.backend(), "redis");
    conformance::run_then_cleanup(store, delete_prefix(&url, &prefix)).await;
}
