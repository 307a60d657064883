//! Which bus a command joins: `--broker URL`, else the first of `BROKER_URL`,
//! `XCOMPONENT_BROKER_URL` and `REDIS_URL` that is set (the names the seeds use), and how it is
//! opened. `memory` keeps every component in one process.

use super::startup;
use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::time::Duration;
use xcomponent_bus::{BrokerUrl, Bus, BusError, BusOptions, Scheme};

/// Environment variables read for the broker URL, in order, when `--broker` is not given.
pub const BROKER_ENV: [&str; 3] = ["BROKER_URL", "XCOMPONENT_BROKER_URL", "REDIS_URL"];

/// The broker URL from the flag or the environment, if any.
pub fn broker_url(flag: Option<&str>) -> Option<String> {
    if let Some(url) = flag.filter(|url| !url.trim().is_empty()) {
        return Some(url.trim().to_owned());
    }
    BROKER_ENV
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|url| url.trim().to_owned())
        .find(|url| !url.is_empty())
}

/// Whether `url` names the in-process bus.
pub fn is_memory(url: &str) -> Result<bool> {
    Ok(BrokerUrl::parse(url)?.scheme == Scheme::Memory)
}

/// Opens the bus at `url` (checking that the broker answers), trying again for up to `wait`
/// while the broker cannot be reached (`startup::retry`). `redelivery_ms` overrides
/// `BusOptions::redelivery_after` (how long a silent consumer keeps its messages).
pub async fn open(url: &str, redelivery_ms: Option<u64>, wait: Duration) -> Result<Arc<dyn Bus>> {
    let redacted = BrokerUrl::parse(url).map(|parsed| parsed.redacted())?;
    let mut options = BusOptions::default();
    if let Some(ms) = redelivery_ms {
        options.redelivery_after = Duration::from_millis(ms.max(1));
    }
    let unreachable =
        |error: &BusError| matches!(error, BusError::Unavailable(_) | BusError::Timeout(_));
    startup::retry(&format!("the broker {redacted}"), wait, unreachable, || {
        xcomponent_bus::open(url, &options)
    })
    .await
    .with_context(|| format!("cannot reach the broker {redacted}"))
}

/// The URL without its password, for logs.
pub fn redacted(url: &str) -> String {
    BrokerUrl::parse(url).map_or_else(|_| url.to_owned(), |parsed| parsed.redacted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_blank_values_do_not_count() {
        assert_eq!(broker_url(Some(" amqp://h ")).as_deref(), Some("amqp://h"));
        assert!(is_memory("memory").unwrap_or(false));
        assert!(!is_memory("redis://h").unwrap_or(true));
        assert!(is_memory("mqtt://h").is_err());
    }
}
