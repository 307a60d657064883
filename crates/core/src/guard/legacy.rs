//! Legacy structured guards (`guards: [{type, property, operator, value}]`) turned into one CEL
//! expression.

#[allow(unused_imports)]
use super::*;

pub(super) fn legacy_expression(guards: &[model::LegacyGuard]) -> Result<String, GuardError> {
    if guards.is_empty() {
        return Ok("true".to_owned());
    }
    let mut parts = Vec::with_capacity(guards.len());
    for (index, guard) in guards.iter().enumerate() {
        let error = |message: String| GuardError::Legacy {
            index,
            property: guard.property.clone(),
            message,
        };
        let root = match guard.source.as_deref().map(str::trim) {
            None | Some("context") => "context",
            Some("event") | Some("payload") => "payload",
            Some(other) => {
                return Err(error(format!(
                    "unknown type `{other}` (expected `context`, `event` or `payload`)"
                )));
            }
        };
        if guard.property.split('.').any(str::is_empty) {
            return Err(error("the property path has an empty segment".to_owned()));
        }
        let mut path = root.to_owned();
        for segment in guard.property.split('.') {
            if is_plain_identifier(segment) {
                path.push('.');
                path.push_str(segment);
            } else if segment.bytes().all(|b| b.is_ascii_digit()) && segment.parse::<i64>().is_ok()
            {
                path.push('[');
                path.push_str(segment);
                path.push(']');
            } else {
                path.push('[');
                push_string_literal(&mut path, segment);
                path.push(']');
            }
        }
        let operator = match guard.operator {
            model::Operator::Eq => "==",
            model::Operator::Ne => "!=",
            model::Operator::Gt => ">",
            model::Operator::Lt => "<",
            model::Operator::Ge => ">=",
            model::Operator::Le => "<=",
        };
        let mut part = format!("{path} {operator} ");
        push_json_literal(&mut part, &guard.value);
        parts.push(part);
    }
    Ok(parts.join(" && "))
}

/// CEL words that cannot follow a dot as a field name.
pub(super) const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

pub(super) fn is_plain_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(is_ident_char)
        && !RESERVED.contains(&segment)
}

/// Appends `text` as a double-quoted CEL string literal.
pub(super) fn push_string_literal(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a JSON value as a CEL literal.
pub(super) fn push_json_literal(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&format!("{u}u"));
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // `{:?}` always writes a decimal point or an exponent: a CEL double literal.
                out.push_str(&format!("{f:?}"));
            }
        }
        Value::String(s) => push_string_literal(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_json_literal(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_string_literal(out, key);
                out.push_str(": ");
                push_json_literal(out, item);
            }
            out.push('}');
        }
    }
}
