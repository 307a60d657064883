//! Matching rules: `instanceValue OP eventValue` over dot paths, with the original's operators
//! (`=== !== > < >= <=`) and JavaScript's strict-equality and relational semantics on JSON values.
//!
//! An undefined side makes every rule false (including `!==`), as in the original. Equality keys
//! for the property index (`IndexKey`) keep `1` and `"1"` apart (the original conflated them).

use crate::model::{MatchingRule, Operator};
use crate::path::lookup_in_map;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A resolved filter: instance property `path` OP `value` (used by broadcasts, cascades, and
/// cross-component correlation once the event side has been read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyFilter {
    /// Dot path in the target instance's data.
    pub property: String,
    /// Operator (`instanceValue OP value`).
    #[serde(default)]
    pub operator: Operator,
    /// The value compared against.
    pub value: Value,
}

/// Compares two JSON values with JavaScript semantics for the six operators.
/// Returns false when either side is missing.
pub fn compare(
    instance_value: Option<&Value>,
    operator: Operator,
    event_value: Option<&Value>,
) -> bool {
    let (Some(left), Some(right)) = (instance_value, event_value) else { return false };
    match operator {
        Operator::Eq => strict_equals(left, right),
        Operator::Ne => !strict_equals(left, right),
        Operator::Gt => relational(left, right) == Some(Ordering::Greater),
        Operator::Lt => relational(left, right) == Some(Ordering::Less),
        Operator::Ge => {
            matches!(relational(left, right), Some(Ordering::Greater | Ordering::Equal))
        }
        Operator::Le => matches!(relational(left, right), Some(Ordering::Less | Ordering::Equal)),
    }
}

/// `===`: same type and value; numbers compare numerically (1 === 1.0); objects and arrays by
/// structure (JSON has no identity, so structural equality is the useful reading).
pub fn strict_equals(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => number_value(a) == number_value(b),
        _ => left == right,
    }
}

/// JavaScript relational comparison: numbers numerically, strings lexically, booleans and null as
/// numbers, mixed number/string by converting the string; anything else is not comparable.
fn relational(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => to_number(left)?.partial_cmp(&to_number(right)?),
    }
}

fn to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => Some(number_value(number)),
        Value::Bool(flag) => Some(if *flag { 1.0 } else { 0.0 }),
        Value::Null => Some(0.0),
        Value::String(text) => {
            let trimmed = text.trim();
            if trimmed.is_empty() { Some(0.0) } else { trimmed.parse::<f64>().ok() }
        }
        _ => None,
    }
}

fn number_value(number: &serde_json::Number) -> f64 {
    number.as_f64().unwrap_or(f64::NAN)
}

/// Evaluates all rules (ANDed) of a transition: the instance data against the event payload.
pub fn rules_hold(
    rules: &[MatchingRule],
    instance_data: &Map<String, Value>,
    payload: &Map<String, Value>,
) -> bool {
    rules.iter().all(|rule| {
        compare(
            lookup_in_map(instance_data, &rule.instance_property),
            rule.operator,
            lookup_in_map(payload, &rule.event_property),
        )
    })
}

/// Evaluates resolved filters (ANDed) against instance data.
pub fn filters_hold(filters: &[PropertyFilter], instance_data: &Map<String, Value>) -> bool {
    filters.iter().all(|filter| {
        compare(
            lookup_in_map(instance_data, &filter.property),
            filter.operator,
            Some(&filter.value),
        )
    })
}

/// Turns rules into filters by reading the event side from `source` (then `fallback`).
/// A rule whose event side is missing yields no filter value, so it cannot match anything:
/// such rules are returned as `None`.
pub fn resolve_filters(
    rules: &[MatchingRule],
    source: &Map<String, Value>,
    fallback: Option<&Map<String, Value>>,
) -> Option<Vec<PropertyFilter>> {
    rules
        .iter()
        .map(|rule| {
            let value = lookup_in_map(source, &rule.event_property)
                .or_else(|| fallback.and_then(|map| lookup_in_map(map, &rule.event_property)))?;
            Some(PropertyFilter {
                property: rule.instance_property.clone(),
                operator: rule.operator,
                value: value.clone(),
            })
        })
        .collect()
}

/// A hashable key for `===` lookups in the property index. Numbers are keyed by value (so 1 and
/// 1.0 share a key, as `===` says) and never collide with strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, by the bits of its f64 value (-0 folded into 0).
    Number(u64),
    /// A string.
    Str(Box<str>),
}

impl IndexKey {
    /// The key of a scalar; objects and arrays are not indexed (`None`).
    pub fn of(value: &Value) -> Option<IndexKey> {
        Some(match value {
            Value::Null => IndexKey::Null,
            Value::Bool(flag) => IndexKey::Bool(*flag),
            Value::Number(number) => {
                let float = number_value(number);
                if float.is_nan() {
                    return None;
                }
                IndexKey::Number(if float == 0.0 { 0.0f64.to_bits() } else { float.to_bits() })
            }
            Value::String(text) => IndexKey::Str(text.as_str().into()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(left: Value, op: Operator, right: Value) -> bool {
        compare(Some(&left), op, Some(&right))
    }

    #[test]
    fn strict_equality_follows_javascript() {
        assert!(check(json!(1), Operator::Eq, json!(1.0)));
        assert!(!check(json!(1), Operator::Eq, json!("1")));
        assert!(check(json!(1), Operator::Ne, json!("1")));
        assert!(check(json!({"a": 1}), Operator::Eq, json!({"a": 1})));
        assert!(!compare(None, Operator::Ne, Some(&json!(1))));
    }

    #[test]
    fn relational_comparisons_follow_javascript() {
        assert!(check(json!(10), Operator::Gt, json!(9.5)));
        assert!(check(json!("b"), Operator::Gt, json!("a")));
        assert!(check(json!("10"), Operator::Gt, json!(9)));
        assert!(!check(json!("abc"), Operator::Gt, json!(1)));
        assert!(check(json!(5), Operator::Le, json!(5)));
        assert!(!check(json!({}), Operator::Lt, json!(1)));
    }

    #[test]
    fn index_keys_separate_types_but_not_number_forms() {
        assert_eq!(IndexKey::of(&json!(1)), IndexKey::of(&json!(1.0)));
        assert_ne!(IndexKey::of(&json!(1)), IndexKey::of(&json!("1")));
        assert_eq!(IndexKey::of(&json!(0.0)), IndexKey::of(&json!(-0.0)));
        assert_eq!(IndexKey::of(&json!([1])), None);
    }
}
