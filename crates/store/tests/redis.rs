//! Runs the conformance suite on Redis when `XC_TEST_REDIS_URL` is set, under a key prefix of
//! its own (`xc_test_<random>`) whose keys are deleted at the end; and checks that a layout 1
//! prefix is upgraded to layout 4 (the message keys; events stored with what they changed; leases) and
//! a newer layout refused.

#![cfg(feature = "redis")]

mod conformance;
#[path = "support/redis_cleanup.rs"]
mod redis_cleanup;

use redis_cleanup::delete_prefix;

use xcomponent_core::instance::Status;
use xcomponent_core::store::CommitBatch;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_1_prefix_is_upgraded_and_a_newer_one_refused() {
    let Some(url) = conformance::service_url("XC_TEST_REDIS_URL", "redis") else { return };
    let prefix = format!("xc_test_layout_{}", uuid::Uuid::now_v7().simple());
    let options = StoreOptions { key_prefix: prefix.clone(), ..StoreOptions::default() };
    let outcome = tokio::spawn({
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            let mut conn = redis::Client::open(url.as_str())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("connects");
            let meta = format!("{prefix}:meta");
            let layout = |conn: &mut redis::aio::MultiplexedConnection| {
                let mut conn = conn.clone();
                let meta = meta.clone();
                async move {
                    redis::cmd("HGET").arg(&meta).arg("layout").query_async::<i64>(&mut conn).await
                }
            };
            let _: () = redis::cmd("HSET")
                .arg(&meta)
                .arg("layout")
                .arg(1)
                .query_async(&mut conn)
                .await
                .expect("v1 meta");
            let store = open(&url, &options).await.expect("layout 1 opens");
            assert_eq!(layout(&mut conn).await.expect("layout"), 4, "upgraded to layout 4");
            // Events as layouts 1 and 2 stored them (the whole data in `context`: the same JSON)
            // are read next to a layout 3 change.
            let old = conformance::whole_contexts(&conformance::chain("c_layout", 3, 1_000));
            let raw = serde_json::to_value(&old[1]).expect("encodes");
            assert!(raw["context"].is_object() && raw.get("changes").is_none(), "{raw}");
            store.commit(&conformance::batch(old.clone())).await.expect("old events");
            let step = conformance::next(&old[2], "GO", "S4", Status::Active, 1_010);
            store.commit(&conformance::batch(vec![step.clone()])).await.expect("a change");
            let mut want = conformance::expected(&old);
            want.apply(&step);
            assert_eq!(store.instance(old[0].instance_id).await.expect("read"), Some(want));
            store
                .commit(&CommitBatch {
                    outbox: vec![conformance::messages::send(
                        "c_layout",
                        xcomponent_core::instance::InstanceId(uuid::Uuid::now_v7()),
                    )],
                    ..Default::default()
                })
                .await
                .expect("messages stored under the upgraded prefix");
            let _: () = redis::cmd("HSET")
                .arg(&meta)
                .arg("layout")
                .arg(99)
                .query_async(&mut conn)
                .await
                .expect("newer meta");
            match open(&url, &options).await {
                Err(xcomponent_store::Error::Config(message)) => {
                    assert!(message.contains("99"), "{message}")
                }
                other => {
                    panic!("expected a configuration error, got {:?}", other.map(|s| s.backend()))
                }
            }
        }
    })
    .await;
    delete_prefix(&url, &prefix).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
