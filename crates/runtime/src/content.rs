//! What every store can keep. PostgreSQL refuses a NUL character (`\u0000`) in text and JSONB;
//! SQLite, Redis and memory would take it. So that one client's odd input fails the same way on
//! every backend, and fails alone, every string a caller hands the runtime (event names, payloads,
//! initial data, keys included) is checked before it joins a batch: a NUL is refused with the
//! field that holds it.

use crate::error::RuntimeError;
use serde_json::Value;
use xcomponent_core::Context;

/// The character no store is asked to keep.
const NUL: char = '\0';

/// Refuses `text` if it holds a NUL character.
pub(crate) fn check_text(field: &str, text: &str) -> Result<(), RuntimeError> {
    if text.contains(NUL) {
        return Err(refused(field.to_owned()));
    }
    Ok(())
}

/// Refuses `data` if any key or string in it (at any depth) holds a NUL character; the error
/// names the first such field as a dot path (`payload.customer.name`, `payload.lines.2`).
pub(crate) fn check_data(field: &str, data: &Context) -> Result<(), RuntimeError> {
    if data.is_empty() {
        return Ok(());
    }
    // A fast pass without paths; the path is only built for the error.
    let mut stack: Vec<&Value> = Vec::new();
    let mut clean = true;
    for (key, value) in data {
        clean &= !key.contains(NUL);
        stack.push(value);
    }
    while clean && let Some(value) = stack.pop() {
        match value {
            Value::String(text) => clean = !text.contains(NUL),
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (key, value) in map {
                    clean &= !key.contains(NUL);
                    stack.push(value);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    if clean {
        return Ok(());
    }
    let mut path = field.to_owned();
    find(data.iter(), &mut path);
    Err(refused(path))
}

/// Appends to `path` the way to the first NUL under `entries`; true when found.
fn find<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, path: &mut String) -> bool {
    for (key, value) in entries {
        let length = path.len();
        path.push('.');
        path.push_str(&key.replace(NUL, "\\u0000"));
        if key.contains(NUL) || holds_nul(value, path) {
            return true;
        }
        path.truncate(length);
    }
    false
}

fn holds_nul(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(text) => text.contains(NUL),
        Value::Object(map) => find(map.iter(), path),
        Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
            let length = path.len();
            path.push_str(&format!(".{index}"));
            let found = holds_nul(item, path);
            if !found {
                path.truncate(length);
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn refused(field: String) -> RuntimeError {
    RuntimeError::InvalidField {
        message: format!("{field} holds a NUL character (\\u0000), which no store can keep"),
        field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Context {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    fn field_of(result: Result<(), RuntimeError>) -> Option<String> {
        match result {
            Err(RuntimeError::InvalidField { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn a_nul_anywhere_is_refused_with_its_path() {
        let nested = data(json!({"a": 1, "b": {"c": ["x", "y\u{0}z"]}}));
        assert_eq!(field_of(check_data("payload", &nested)).as_deref(), Some("payload.b.c.1"));
        let key = data(json!({"ok": true, "k\u{0}": 1}));
        assert_eq!(field_of(check_data("context", &key)).as_deref(), Some("context.k\\u0000"));
        assert_eq!(field_of(check_text("event", "GO\u{0}")).as_deref(), Some("event"));
    }

    #[test]
    fn other_control_and_unicode_characters_pass() {
        let fine = data(json!({"t": "tab\tnewline\n\u{1}é😀", "n": [1, null, {"x": false}]}));
        assert_eq!(check_data("payload", &fine), Ok(()));
        assert_eq!(check_text("event", "SUBMIT"), Ok(()));
    }
}
