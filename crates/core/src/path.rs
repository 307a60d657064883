//! Dot paths (`customer.address.city`) into JSON data, used by matching rules, templates and
//! context mappings. A path never panics: a missing segment or a non-object on the way is `None`.

use serde_json::{Map, Value};

/// Reads `path` from a JSON object. Array elements can be addressed by index (`items.0.sku`).
pub fn lookup_in_map<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let first = segments.next()?;
    let mut current = map.get(first)?;
    for segment in segments {
        current = match current {
            Value::Object(inner) => inner.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Reads `path` from any JSON value (an object at the top).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => lookup_in_map(map, path),
        _ => None,
    }
}

/// The first segment of a path (the top-level key), used by the property index.
pub fn top_level_key(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_nested_paths_and_array_indexes() {
        let data = json!({"customer": {"id": 7, "tags": ["a", "b"]}});
        assert_eq!(lookup(&data, "customer.id"), Some(&json!(7)));
        assert_eq!(lookup(&data, "customer.tags.1"), Some(&json!("b")));
        assert_eq!(lookup(&data, "customer.missing"), None);
        assert_eq!(lookup(&data, "customer.id.deeper"), None);
        assert_eq!(top_level_key("customer.id"), "customer");
    }
}
