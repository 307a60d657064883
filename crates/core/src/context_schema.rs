//! A machine's `contextSchema` read as a contract on the initial data of an instance: every
//! `required` field is present (and not `null`), and every field present has its declared type.
//!
//! The original only used `contextSchema` to draw forms; we check it when an instance is created
//! (the runtime decides when, and can be told not to: `RuntimeOptions::context_schema`). What each
//! `type` accepts, with the names the original's examples and our dashboard use:
//!
//! | `type` | accepts |
//! |---|---|
//! | `text`, `string` | a JSON string |
//! | `number` | a JSON number |
//! | `integer` | a JSON number without a fraction (`3`, not `3.5`) |
//! | `boolean` | `true` or `false` |
//! | `array` | a JSON array |
//! | `object` | a JSON object |
//! | `select` | one of the `options` values (`[{value, label}]` or plain values); any string, number or boolean when there are no options |
//! | none, or any other name (`json`, `date`...) | any value |
//!
//! A `null` value counts as absent: it fails `required` and passes every type. `min`, `max` and
//! `pattern` stay what they were in the original, attributes of the form's inputs.

use crate::instance::Context;
use crate::model::ContextField;
use indexmap::IndexMap;
use serde_json::Value;
use std::fmt;

/// What a field's `type` accepts.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Text,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    /// One of these values; any scalar when empty.
    Select(Vec<Value>),
    /// No type, or one we do not check.
    Any,
}

impl Kind {
    fn of(field: &ContextField) -> Kind {
        match field.field_type.as_deref().map(str::trim) {
            Some("text" | "string") => Kind::Text,
            Some("number") => Kind::Number,
            Some("integer") => Kind::Integer,
            Some("boolean") => Kind::Boolean,
            Some("array") => Kind::Array,
            Some("object") => Kind::Object,
            Some("select") => Kind::Select(
                field
                    .options
                    .iter()
                    .flatten()
                    .map(|option| match option {
                        Value::Object(map) => map.get("value").cloned().unwrap_or(Value::Null),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            _ => Kind::Any,
        }
    }

    fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) | (Kind::Any, _) => true,
            (Kind::Text, Value::String(_))
            | (Kind::Number, Value::Number(_))
            | (Kind::Boolean, Value::Bool(_))
            | (Kind::Array, Value::Array(_))
            | (Kind::Object, Value::Object(_)) => true,
            (Kind::Integer, Value::Number(number)) => number.is_i64() || number.is_u64(),
            (Kind::Select(options), value) if options.is_empty() => {
                matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
            }
            (Kind::Select(options), value) => options.iter().any(|option| option == value),
            _ => false,
        }
    }

    /// What the field must be, for messages: "a string", "one of \"EUR\", \"USD\"".
    fn expected(&self) -> String {
        match self {
            Kind::Text => "a string".into(),
            Kind::Number => "a number".into(),
            Kind::Integer => "an integer".into(),
            Kind::Boolean => "true or false".into(),
            Kind::Array => "an array".into(),
            Kind::Object => "an object".into(),
            Kind::Select(options) if options.is_empty() => "a string, number or boolean".into(),
            Kind::Select(options) => {
                let listed: Vec<String> = options.iter().map(Value::to_string).collect();
                format!("one of {}", listed.join(", "))
            }
            Kind::Any => "any value".into(),
        }
    }
}

/// One checked field.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    /// The `type` as written, for messages.
    declared: Option<String>,
    required: bool,
    kind: Kind,
}

/// The checks a `contextSchema` asks for, compiled once per machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextSchema {
    /// Only the fields that check something (required, or a checked type), in YAML order.
    fields: Vec<Field>,
}

/// How a field breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// The field is `required` and absent (or `null`).
    Required,
    /// The value does not have the declared type.
    Type {
        /// The `type` as written in the YAML.
        declared: String,
        /// What that type accepts ("a number", "one of \"EUR\", \"USD\"").
        expected: String,
        /// What was given ("a string", "\"JPY\"").
        found: String,
    },
}

/// The first field of some data that breaks a machine's `contextSchema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's name (a top-level key of the data).
    pub field: String,
    /// The rule it breaks.
    pub rule: Rule,
}

impl fmt::Display for Violation {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Required => write!(out, "{} is required by the contextSchema", self.field),
            Rule::Type { declared, expected, found } => write!(
                out,
                "{} must be {expected} (contextSchema type {declared}), not {found}",
                self.field
            ),
        }
    }
}

/// Whether `required` is checked (a creation with no data source, such as an entry point the
/// runtime creates at start, is only checked for types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Required fields must be present.
    Checked,
    /// Required fields may be absent; the fields present are still typed.
    Skipped,
}

impl ContextSchema {
    /// Compiles a machine's `contextSchema`; `None` when it checks nothing (no field is required
    /// or has a checked type), so that callers skip the check at no cost.
    pub fn compile(fields: &IndexMap<String, ContextField>) -> Option<ContextSchema> {
        let fields: Vec<Field> = fields
            .iter()
            .map(|(name, field)| Field {
                name: name.clone(),
                declared: field.field_type.clone(),
                required: field.required == Some(true),
                kind: Kind::of(field),
            })
            .filter(|field| field.required || field.kind != Kind::Any)
            .collect();
        if fields.is_empty() { None } else { Some(ContextSchema { fields }) }
    }

    /// The first field of `data` that breaks the schema, in the schema's order.
    pub fn check(&self, data: &Context, presence: Presence) -> Result<(), Violation> {
        for field in &self.fields {
            let value = data.get(&field.name).unwrap_or(&Value::Null);
            if value.is_null() {
                if field.required && presence == Presence::Checked {
                    return Err(Violation { field: field.name.clone(), rule: Rule::Required });
                }
                continue;
            }
            if !field.kind.accepts(value) {
                return Err(Violation {
                    field: field.name.clone(),
                    rule: Rule::Type {
                        declared: field.declared.clone().unwrap_or_default(),
                        expected: field.kind.expected(),
                        found: describe(value, &field.kind),
                    },
                });
            }
        }
        Ok(())
    }
}

/// What a value is, for messages: its JSON type, or the value itself for a `select`.
fn describe(value: &Value, kind: &Kind) -> String {
    match (kind, value) {
        (Kind::Select(_), Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            value.to_string()
        }
        (_, Value::String(_)) => "a string".into(),
        (_, Value::Number(number)) if number.is_f64() => "a number with a fraction".into(),
        (_, Value::Number(_)) => "a number".into(),
        (_, Value::Bool(_)) => "a boolean".into(),
        (_, Value::Array(_)) => "an array".into(),
        (_, Value::Object(_)) => "an object".into(),
        (_, Value::Null) => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(yaml: Value) -> Option<ContextSchema> {
        let fields: IndexMap<String, ContextField> =
            serde_json::from_value(yaml).expect("a contextSchema");
        ContextSchema::compile(&fields)
    }

    fn data(value: Value) -> Context {
        match value {
            Value::Object(map) => map,
            _ => Context::new(),
        }
    }

    fn order() -> ContextSchema {
        schema(json!({
            "orderId": {"type": "text", "required": true},
            "amount": {"type": "number", "required": true},
            "count": {"type": "integer"},
            "express": {"type": "boolean"},
            "lines": {"type": "array"},
            "address": {"type": "object"},
            "currency": {"type": "select", "options": [{"value": "EUR", "label": "Euro"}, "USD"]},
            "notes": {"type": "textarea"}
        }))
        .expect("checks something")
    }

    #[test]
    fn well_typed_data_passes_and_null_counts_as_absent() {
        let good = data(json!({
            "orderId": "O-1", "amount": 12.5, "count": 3, "express": false, "lines": [],
            "address": {}, "currency": "USD", "notes": 42, "extra": [1]
        }));
        assert_eq!(order().check(&good, Presence::Checked), Ok(()));
        let nulls = data(json!({"orderId": "O-1", "amount": 1, "count": null, "currency": null}));
        assert_eq!(order().check(&nulls, Presence::Checked), Ok(()));
    }

    #[test]
    fn a_missing_or_null_required_field_is_named() {
        let missing = order().check(&data(json!({"orderId": "O-1"})), Presence::Checked);
        assert_eq!(missing, Err(Violation { field: "amount".into(), rule: Rule::Required }));
        let null = order().check(&data(json!({"orderId": null, "amount": 1})), Presence::Checked);
        assert_eq!(
            null.map_err(|violation| violation.to_string()).err().as_deref(),
            Some("orderId is required by the contextSchema")
        );
        assert_eq!(order().check(&Context::new(), Presence::Skipped), Ok(()));
    }

    #[test]
    fn a_wrong_type_names_the_field_the_type_and_what_was_given() {
        let cases = [
            (
                json!({"amount": "12"}),
                "amount must be a number (contextSchema type number), not a string",
            ),
            (
                json!({"count": 1.5}),
                "count must be an integer (contextSchema type integer), not a number with a fraction",
            ),
            (
                json!({"express": "yes"}),
                "express must be true or false (contextSchema type boolean), not a string",
            ),
            (
                json!({"lines": {}}),
                "lines must be an array (contextSchema type array), not an object",
            ),
            (
                json!({"address": [1]}),
                "address must be an object (contextSchema type object), not an array",
            ),
            (
                json!({"currency": "JPY"}),
                "currency must be one of \"EUR\", \"USD\" (contextSchema type select), not \"JPY\"",
            ),
            (
                json!({"orderId": 7}),
                "orderId must be a string (contextSchema type text), not a number",
            ),
        ];
        for (given, message) in cases {
            let mut given = data(given);
            given.entry("orderId").or_insert(json!("O-1"));
            given.entry("amount").or_insert(json!(1));
            let violation = order().check(&given, Presence::Skipped).err();
            assert_eq!(violation.map(|violation| violation.to_string()).as_deref(), Some(message));
        }
    }

    #[test]
    fn a_schema_that_checks_nothing_compiles_to_none() {
        assert_eq!(
            schema(json!({"a": {"type": "date"}, "b": {"label": "B", "required": false}})),
            None
        );
        let select = schema(json!({"s": {"type": "select"}})).expect("a select is checked");
        assert_eq!(select.check(&data(json!({"s": 3})), Presence::Checked), Ok(()));
        assert!(select.check(&data(json!({"s": [3]})), Presence::Checked).is_err());
    }
}
