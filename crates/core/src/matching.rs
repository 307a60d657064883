//! Matching rules: `instanceValue OP eventValue` over dot paths, with the original's operators
//! (`=== !== > < >= <=`) and JavaScript's strict-equality and relational semantics on JSON values.
//!
//! An undefined side makes every rule false (including `!==`), as in the original. Equality keys
//! for the property index (`IndexKey`) keep `1` and `"1"` apart (the original conflated them).
//!
//! Numbers compare exactly: two integers as integers (`9007199254740993 !== 9007199254740992`,
//! which a JavaScript double cannot tell apart, so two ids above 2^53 never correlate by
//! mistake), an integer and a double by value without rounding the integer.

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
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        _ => left == right,
    }
}

/// JavaScript relational comparison: numbers numerically, strings lexically, booleans and null as
/// numbers, mixed number/string by converting the string; anything else is not comparable.
fn relational(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
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

/// The value of an integer JSON number (every `i64` and `u64`), `None` for a double.
fn integer_value(number: &serde_json::Number) -> Option<i128> {
    number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from))
}

/// 2^127 as a double: integral doubles below it in magnitude fit an `i128`.
const I128_BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

/// The value of an integral double that fits an `i128` (`-0.0` is `0`), `None` otherwise.
fn integral_double(value: f64) -> Option<i128> {
    (value.fract() == 0.0 && value.abs() < I128_BOUND).then_some(value as i128)
}

/// Compares two JSON numbers exactly (see the module documentation); `None` for NaN.
fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    match (integer_value(a), integer_value(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => compare_integer_double(x, number_value(b)),
        (None, Some(y)) => compare_integer_double(y, number_value(a)).map(Ordering::reverse),
        (None, None) => number_value(a).partial_cmp(&number_value(b)),
    }
}

/// `x` against the double `d`, without rounding `x` to a double.
fn compare_integer_double(x: i128, d: f64) -> Option<Ordering> {
    if d.is_nan() {
        return None;
    }
    if d >= I128_BOUND {
        return Some(Ordering::Less);
    }
    if d <= -I128_BOUND {
        return Some(Ordering::Greater);
    }
    let whole = d.trunc();
    // `whole` is integral and within the `i128` range: the conversion is exact.
    Some(x.cmp(&(whole as i128)).then(if d > whole {
        Ordering::Less
    } else if d < whole {
        Ordering::Greater
    } else {
        Ordering::Equal
    }))
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
    /// An integer, or a double with an integral value (so `1` and `1.0` share a key, and two
    /// integers above 2^53 that a double would confuse do not).
    Integer(i128),
    /// Any other number, by the bits of its f64 value.
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
                if let Some(integer) = integer_value(number) {
                    return Some(IndexKey::Integer(integer));
                }
                let float = number_value(number);
                if float.is_nan() {
                    return None;
                }
                match integral_double(float) {
                    Some(integer) => IndexKey::Integer(integer),
                    None => IndexKey::Number(float.to_bits()),
                }
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

    #[test]
    fn integers_above_2_pow_53_compare_exactly() {
        let two_53 = 9_007_199_254_740_992_u64;
        // Equal as doubles, different as integers.
        assert!(!check(json!(two_53 + 1), Operator::Eq, json!(two_53)));
        assert!(check(json!(two_53 + 1), Operator::Ne, json!(two_53)));
        assert!(check(json!(two_53 + 1), Operator::Gt, json!(two_53)));
        assert!(check(json!(u64::MAX), Operator::Gt, json!(u64::MAX - 1)));
        assert!(check(json!(i64::MIN), Operator::Lt, json!(i64::MIN + 1)));
        assert!(check(json!(two_53 + 1), Operator::Eq, json!(two_53 + 1)));
        // An integer against a double, without rounding the integer.
        assert!(!check(json!(two_53 + 1), Operator::Eq, json!(9_007_199_254_740_992.0)));
        assert!(check(json!(two_53 + 1), Operator::Gt, json!(9_007_199_254_740_992.0)));
        assert!(check(json!(two_53), Operator::Eq, json!(9_007_199_254_740_992.0)));
        assert!(check(json!(3), Operator::Lt, json!(3.5)));
        assert!(check(json!(-3), Operator::Gt, json!(-3.5)));
        assert!(check(json!(u64::MAX), Operator::Lt, json!(1e300)));
        // The index keeps them apart too, and 1 with 1.0 together.
        assert_ne!(IndexKey::of(&json!(two_53 + 1)), IndexKey::of(&json!(two_53)));
        assert_eq!(IndexKey::of(&json!(two_53)), IndexKey::of(&json!(9_007_199_254_740_992.0)));
        assert_eq!(IndexKey::of(&json!(1)), IndexKey::of(&json!(1.0)));
        assert_ne!(IndexKey::of(&json!(1)), IndexKey::of(&json!(1.5)));
    }
}
