//! Deletes every Redis key under a prefix (the test and bench runs' own namespace), in bounded
//! SCAN pages. Shared by the Redis conformance test and the commit bench.

/// Bound of the cleanup loop (SCAN pages of 1,000 keys).
const MAX_SCAN_PAGES: usize = 10_000;

/// Deletes `prefix:*` on the server at `url`; a failure is printed, never fatal.
pub async fn delete_prefix(url: &str, prefix: &str) {
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
        eprintln!("could not delete the keys {prefix}:*: {error}");
    }
}
