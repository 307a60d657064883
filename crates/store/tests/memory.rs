//! Runs the conformance suite on the memory store.

mod conformance;

use std::sync::Arc;
use xcomponent_store::{StoreOptions, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    let store = open("memory", &StoreOptions::default()).await.expect("memory store opens");
    assert_eq!(store.backend(), "memory");
    conformance::run_all(Arc::clone(&store)).await;
}

#[tokio::test]
async fn unknown_scheme_is_a_clear_error() {
    let error =
        open("mongodb://localhost/x", &StoreOptions::default()).await.err().expect("rejected");
    assert!(error.to_string().contains("mongodb://localhost/x"), "{error}");
}

#[cfg(not(feature = "redis"))]
#[tokio::test]
async fn backend_not_compiled_in_is_a_clear_error() {
    let error =
        open("redis://127.0.0.1:6379", &StoreOptions::default()).await.err().expect("rejected");
    let text = error.to_string();
    assert!(text.contains("redis://127.0.0.1:6379") && text.contains("`redis` feature"), "{text}");
}
