//! Runs the conformance suite on the SQLite store (always: a file in a temporary directory).

mod conformance;

use std::sync::Arc;
use xcomponent_store::{Durability, StoreOptions, open};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("xc-store-test-{}", uuid::Uuid::now_v7()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/nested/dir/store.db", dir.0.display());
    let options = StoreOptions { durability: Durability::Relaxed, ..StoreOptions::default() };
    let store = open(&url, &options).await.expect("sqlite store opens");
    assert_eq!(store.backend(), "sqlite");
    assert!(store.leases().is_none(), "SQLite is one host: no leases to share it");
    conformance::run_all(Arc::clone(&store)).await;
    let left = conformance::messages::leave_for_reopen(&*store).await;
    drop(store);

    // Reopening applies no migration twice and finds the data, messages included.
    let store = open(&url, &options).await.expect("sqlite store reopens");
    store.ping().await.expect("ping after reopen");
    assert!(!store.load_active(None, 10).await.expect("load_active after reopen").is_empty());
    conformance::messages::found_after_reopen(&*store, &left).await;
}

#[tokio::test]
async fn sqlite_url_without_path_is_rejected() {
    let error = open("sqlite://", &StoreOptions::default()).await.err().expect("rejected");
    assert!(error.to_string().contains("sqlite://"), "{error}");
}
