//! The size of a JSON document without building it: what the payload and data limits
//! (`RuntimeOptions::max_payload_bytes`, `max_data_bytes`) measure.

use serde::Serialize;
use std::io::Write;

/// Bytes of `value`'s compact JSON (as the stores write it), counted without allocating.
pub(crate) fn json_bytes(value: &impl Serialize) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, and maps with string keys always serialize.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// A writer that only counts.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_the_compact_json() {
        let value = json!({"a": [1, "two"], "b": null});
        assert_eq!(json_bytes(&value), serde_json::to_string(&value).map(|s| s.len()).unwrap_or(0));
    }
}
