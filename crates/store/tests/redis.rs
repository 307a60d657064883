//! Runs the conformance suite on Redis when `XC_TEST_REDIS_URL` is set, under a key prefix of
//! its own (`xc_test_<random>`) whose keys are deleted at the end.

#![cfg(feature = "redis")]

mod conformance;
#[path = "support/redis_cleanup.rs"]
mod redis_cleanup;

use redis_cleanup::delete_prefix;

use xcomponent_store::{Durability, StoreOptions, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let Some(url) = conformance::service_url("XC_TEST_REDIS_URL", "redis") else { return };
    let prefix = format!("xc_test_{}", uuid::Uuid::now_v7().simple());
    let options = StoreOptions {
        key_prefix: prefix.clone(),
        durability: Durability::Relaxed,
        ..StoreOptions::default()
    };
    let store = open(&url, &options).await.expect("redis store opens");
    assert_eq!(store.backend(), "redis");
    // Opening the same prefix again finds the messages the first store left.
    let reopen = {
        let (url, options) = (url.clone(), options.clone());
        move || async move { open(&url, &options).await.expect("reopen") }
    };
    conformance::run_then_cleanup(store, Some(reopen), delete_prefix(&url, &prefix)).await;
}
