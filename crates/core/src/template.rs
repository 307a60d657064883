//! Building outgoing data: cascading-rule payload templates (`"{{path}}"` keeps the JSON type of
//! the value) and context mappings (select + rename + dot paths) for child and cross-component
//! instances.

use crate::path::lookup_in_map;
use serde_json::{Map, Value};

/// Expands a cascading-rule payload template against the source instance's data.
///
/// - a string that is exactly `{{path}}` becomes the value at `path`, with its JSON type; a missing
///   value removes the key (the original produced `undefined`);
/// - other strings get each `{{path}}` replaced by the value's text (missing → empty);
/// - objects and arrays are expanded recursively; numbers, booleans and null are copied.
pub fn expand(template: &Value, data: &Map<String, Value>) -> Option<Value> {
    match template {
        Value::String(text) => expand_string(text, data),
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                if let Some(expanded) = expand(value, data) {
                    out.insert(key.clone(), expanded);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items.iter().map(|item| expand(item, data).unwrap_or(Value::Null)).collect(),
        )),
        other => Some(other.clone()),
    }
}

/// Expands a template whose top level must be an object (a payload); anything else gives `{}`.
pub fn expand_payload(template: Option<&Value>, data: &Map<String, Value>) -> Map<String, Value> {
    match template.and_then(|template| expand(template, data)) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn expand_string(text: &str, data: &Map<String, Value>) -> Option<Value> {
    let trimmed = text.trim();
    if let Some(path) = whole_placeholder(trimmed) {
        return lookup_in_map(data, path).cloned();
    }
    if !text.contains("{{") {
        return Some(Value::String(text.to_owned()));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else { break };
        out.push_str(&rest[..start]);
        let path = rest[start + 2..start + end].trim();
        match lookup_in_map(data, path) {
            Some(Value::String(value)) => out.push_str(value),
            Some(Value::Null) | None => {}
            Some(value) => out.push_str(&value.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Some(Value::String(out))
}

fn whole_placeholder(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// Builds the context of a child or cross-component instance from `source`
/// (the instance data with the event payload merged over it): the whole source when there is no
/// mapping, otherwise only the mapped keys, renamed, read by dot path (missing ones are left out).
pub fn map_context(
    mapping: Option<&[(String, String)]>,
    source: Map<String, Value>,
) -> Map<String, Value> {
    match mapping {
        None => source,
        Some(pairs) => pairs
            .iter()
            .filter_map(|(target, path)| {
                lookup_in_map(&source, path).map(|value| (target.clone(), value.clone()))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Map<String, Value> {
        match json!({"Id": 7, "Name": "x", "Address": {"City": "Paris"}, "flag": true}) {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn whole_placeholders_keep_types_and_missing_ones_vanish() {
        let template = json!({"orderId": "{{Id}}", "city": "{{Address.City}}", "gone": "{{Nope}}", "nested": {"f": "{{flag}}"}});
        let out = expand_payload(Some(&template), &data());
        assert_eq!(
            Value::Object(out),
            json!({"orderId": 7, "city": "Paris", "nested": {"f": true}})
        );
    }

    #[test]
    fn embedded_placeholders_interpolate_text() {
        let out = expand(&json!("order-{{Id}}-{{Name}}{{Nope}}"), &data());
        assert_eq!(out, Some(json!("order-7-x")));
    }

    #[test]
    fn mapping_selects_renames_and_reads_paths() {
        let mapping = vec![
            ("paymentAmount".to_string(), "Id".to_string()),
            ("city".into(), "Address.City".into()),
            ("none".into(), "zzz".into()),
        ];
        let out = map_context(Some(&mapping), data());
        assert_eq!(Value::Object(out), json!({"paymentAmount": 7, "city": "Paris"}));
        assert_eq!(map_context(None, data()), data());
    }
}
