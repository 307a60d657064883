//! Tests of guard compilation and evaluation.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Evaluates `text` against `context`, an empty payload, event `EV` in state `Pending`.
fn eval(text: &str, context: Value) -> Result<bool, GuardError> {
    eval_with(text, context, json!({}))
}

fn eval_with(text: &str, context: Value, payload: Value) -> Result<bool, GuardError> {
    let guard = CompiledGuard::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let context = object(context);
    let payload = object(payload);
    guard.evaluate(&GuardInput {
        context: &context,
        payload: &payload,
        event_type: "EV",
        state: "Pending",
    })
}

fn holds(text: &str, context: Value) -> bool {
    eval(text, context).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn compiled_guard_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + fmt::Debug>() {}
    check::<CompiledGuard>();
}

#[test]
fn every_guard_of_the_examples_compiles_and_means_what_it_says() {
    let examples = [
        "context.deliveryAttempts < 3",
        "context.amount > 5000",
        "context.amount <= 5000",
        "context.retryCount < 3",
        "context.availableStock > 0",
        "context.availableStock <= context.threshold && context.availableStock > 0",
        "context.availableStock === 0",
        "context.availableStock > context.threshold",
        "context.retryCount >= 3",
        "context.attempts < 3",
    ];
    for text in examples {
        CompiledGuard::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    assert!(holds("context.deliveryAttempts < 3", json!({"deliveryAttempts": 2})));
    assert!(!holds("context.deliveryAttempts < 3", json!({"deliveryAttempts": 3})));
    assert!(holds("context.amount > 5000", json!({"amount": 6000.5})));
    assert!(!holds("context.amount > 5000", json!({"amount": 5000})));
    assert!(holds("context.amount <= 5000", json!({"amount": 5000.0})));
    assert!(holds("context.retryCount >= 3", json!({"retryCount": 3})));
    let low = "context.availableStock <= context.threshold && context.availableStock > 0";
    assert!(holds(low, json!({"availableStock": 5, "threshold": 10})));
    assert!(!holds(low, json!({"availableStock": 0, "threshold": 10})));
    assert!(!holds(low, json!({"availableStock": 11, "threshold": 10})));
    assert!(holds("context.availableStock === 0", json!({"availableStock": 0})));
    assert!(holds("context.availableStock === 0", json!({"availableStock": 0.0})));
    assert!(!holds("context.availableStock === 0", json!({"availableStock": 4})));
    assert!(holds(
        "context.availableStock > context.threshold",
        json!({"availableStock": 11, "threshold": 10.5})
    ));
}

#[test]
fn comparison_truth_tables_mix_integers_and_floats() {
    // (a, b, a<b, a<=b, a>b, a>=b, a==b, a!=b)
    let rows: [(Value, Value, [bool; 6]); 8] = [
        (json!(1), json!(2), [true, true, false, false, false, true]),
        (json!(2), json!(2), [false, true, false, true, true, false]),
        (json!(3), json!(2), [false, false, true, true, false, true]),
        (json!(5000), json!(5000.0), [false, true, false, true, true, false]),
        (json!(6000.5), json!(5000), [false, false, true, true, false, true]),
        (json!(-1), json!(u64::MAX), [true, true, false, false, false, true]),
        (json!(u64::MAX), json!(1.5), [false, false, true, true, false, true]),
        (json!("abc"), json!("abd"), [true, true, false, false, false, true]),
    ];
    let ops = ["<", "<=", ">", ">=", "==", "!="];
    for (a, b, expected) in rows {
        for (op, want) in ops.iter().zip(expected) {
            let text = format!("context.a {op} context.b");
            let got = holds(&text, json!({"a": a, "b": b}));
            assert_eq!(got, want, "{a} {op} {b}");
        }
    }
    // literals on either side
    assert!(holds("6000.5 > context.limit", json!({"limit": 5000})));
    assert!(holds("context.limit == 5000.0", json!({"limit": 5000})));
    assert!(holds("context.limit === 5000", json!({"limit": 5000.0})));
    assert!(holds("context.limit !== 5000.5", json!({"limit": 5000})));
    assert!(holds("context.big == 18446744073709551615u", json!({"big": u64::MAX})));
}

#[test]
fn arithmetic_mixes_numbers() {
    assert!(holds("context.amount * 2 > 10000", json!({"amount": 5000.5})));
    assert!(holds("context.amount * 1.1 > 5500", json!({"amount": 5001})));
    assert!(holds("context.total - context.paid == 0.5", json!({"total": 100.5, "paid": 100})));
    assert!(holds("context.count + 1 == 4", json!({"count": 3})));
    assert!(holds("7 / 2 == 3.5", json!({})));
    assert!(holds("6 / 3 == 2 && type(6 / 3) == int", json!({})));
    assert!(holds("context.a / context.b == 2.5", json!({"a": 5, "b": 2})));
    assert!(holds("7 % 4 == 3 && 7.5 % 2 == 1.5", json!({})));
    assert!(holds("context.u + 1 == 6", json!({"u": 5u64})));
    assert!(holds("'a' + 'b' == 'ab' && [1] + [2] == [1, 2]", json!({})));
    assert!(holds("-context.n < 0", json!({"n": 3})));
    let error = eval("context.n / 0 > 1", json!({"n": 3})).unwrap_err();
    assert!(error.to_string().contains("division by zero"), "{error}");
    let error = eval("context.n / 0.0 > 1", json!({"n": 3})).unwrap_err();
    assert!(error.to_string().contains("division by zero"), "{error}");
    let error = eval("context.n % 0 > 1", json!({"n": 3})).unwrap_err();
    assert!(error.to_string().contains("remainder by zero"), "{error}");
    let error = eval("context.n + 1 > 1", json!({"n": i64::MAX})).unwrap_err();
    assert!(error.to_string().contains("overflow"), "{error}");
    let error = eval("context.s + 1 > 1", json!({"s": "x"})).unwrap_err();
    assert!(error.to_string().contains("cannot apply `+` to (string, int)"), "{error}");
    // the map/filter macros keep working (their accumulator is not rewritten)
    assert!(holds("[1, 2, 3].map(x, x * 2) == [2, 4, 6]", json!({})));
    assert!(holds(
        "context.items.filter(i, i.qty > 1).size() == 1",
        json!({"items": [{"qty": 1}, {"qty": 2}]})
    ));
}

#[test]
fn strict_operators_are_translated_outside_string_literals_only() {
    let payload = json!({"note": "a === b", "other": "x !== y"});
    assert!(eval_with(r#"payload.note == "a === b""#, json!({}), payload.clone()).unwrap());
    assert!(eval_with(r#"payload.note === "a === b""#, json!({}), payload.clone()).unwrap());
    assert!(eval_with(r#"payload.other === 'x !== y'"#, json!({}), payload.clone()).unwrap());
    assert!(eval_with(r#"payload.note !== "a == b""#, json!({}), payload.clone()).unwrap());
    assert!(
        eval_with(r#"payload.note !== r"a === b" == false"#, json!({}), payload.clone()).unwrap()
    );
    assert!(eval_with(r#"payload.note === """a === b""""#, json!({}), payload.clone()).unwrap());
    let quoted = json!({"note": "say \"===\" now"});
    assert!(eval_with(r#"payload.note === "say \"===\" now""#, json!({}), quoted).unwrap());
    let backslash = json!({"note": "a\\"});
    assert!(eval_with(r#"payload.note === r"a\" && 1 === 1"#, json!({}), backslash).unwrap());
    assert_eq!(
        translate_js_operators("a === b // it's === here\n&& c !== d").text,
        "a == b // it's === here\n&& c != d"
    );
    assert_eq!(
        translate_js_operators(r#"a == "===" && b != '!=='"#).text,
        r#"a == "===" && b != '!=='"#
    );
}

#[test]
fn logical_operators() {
    let data = json!({"t": true, "f": false});
    for (text, want) in [
        ("context.t && context.t", true),
        ("context.t && context.f", false),
        ("context.f && context.t", false),
        ("context.f && context.f", false),
        ("context.t || context.f", true),
        ("context.f || context.t", true),
        ("context.f || context.f", false),
        ("!context.f", true),
        ("!context.t", false),
        ("!(context.t && context.f) || context.f", true),
        ("context.t ? 1 == 1 : 1 == 2", true),
    ] {
        assert_eq!(holds(text, data.clone()), want, "{text}");
    }
}

#[test]
fn missing_keys_are_evaluation_errors() {
    let error = eval("context.retryCount < 3", json!({})).unwrap_err();
    assert_eq!(
        error,
        GuardError::Evaluation {
            expression: "context.retryCount < 3".to_owned(),
            message: "no such key: retryCount".to_owned(),
        }
    );
    let error = eval("context.customer.tier == 'gold'", json!({"customer": {}})).unwrap_err();
    assert!(error.to_string().contains("no such key: tier"), "{error}");
    // presence tests and short-circuits
    assert!(!holds("has(context.retryCount)", json!({})));
    assert!(holds("has(context.retryCount)", json!({"retryCount": null})));
    assert!(holds("!has(context.retryCount) || context.retryCount < 3", json!({})));
    assert!(!holds("has(context.retryCount) && context.retryCount < 3", json!({})));
    assert!(!holds("context.missing > 1 && false", json!({})));
    assert!(holds("has(context.customer.tier)", json!({"customer": {"tier": "gold"}})));
    assert!(holds("has(event.type) && !has(event.other)", json!({})));
}

#[test]
fn type_mismatches_and_non_booleans_are_errors() {
    let error = eval("context.amount > '5000'", json!({"amount": 6000})).unwrap_err();
    assert!(matches!(error, GuardError::Evaluation { .. }), "{error}");
    assert!(error.to_string().contains("cannot apply `>` to (int, string)"), "{error}");
    let error = eval("context.amount", json!({"amount": 6000})).unwrap_err();
    assert_eq!(
        error,
        GuardError::NotBoolean { expression: "context.amount".to_owned(), found: "int".to_owned() }
    );
    assert!(error.to_string().contains("not to a bool"));
    assert!(matches!(eval("context.n + 1", json!({"n": 1})), Err(GuardError::NotBoolean { .. })));
    // equality across types is simply false
    assert!(!holds("context.amount == '6000'", json!({"amount": 6000})));
    assert!(holds("context.x == null", json!({"x": null})));
}

#[test]
fn nested_paths_lists_and_functions() {
    let data = json!({
        "customer": {"tier": "gold", "address": {"city": "Paris"}},
        "tags": ["vip", "new"],
        "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 0}],
        "status": "open",
        "weird-key": 1,
    });
    for text in [
        "context.customer.tier == \"gold\"",
        "context.customer.address.city === 'Paris'",
        "context.customer == {'tier': 'gold', 'address': {'city': 'Paris'}}",
        "{'tier': 'gold', 'address': {'city': 'Paris'}} == context.customer",
        "'vip' in context.tags",
        "context.status in ['open', 'pending']",
        "'tier' in context.customer",
        "size(context.tags) == 2 && context.tags.size() == 2",
        "context.items[0].sku == 'A' && context.items[1].qty == 0",
        "context.items.exists(i, i.qty == 0)",
        "context.items.all(i, i.sku.size() == 1)",
        "context['weird-key'] == 1",
        "context.status.startsWith('op') && context.customer.tier.contains('ol')",
        "size(context) == 5",
        "'status' in context",
        "context.tags == ['vip', 'new']",
    ] {
        assert!(holds(text, data.clone()), "{text}");
    }
    assert!(!holds("'gone' in context.tags", data.clone()));
    assert!(!holds("context.customer.tier == 'silver'", data));
}

#[test]
fn state_event_and_payload() {
    let context = json!({"limit": 10});
    let payload = json!({"amount": 12, "kind": "wire"});
    for text in [
        "state == \"Pending\"",
        "state === 'Pending' && state !== 'Done'",
        "event.type == 'EV'",
        "event.payload.amount > context.limit",
        "payload.amount > context.limit && payload.kind == 'wire'",
        "event == {'type': 'EV', 'payload': {'amount': 12, 'kind': 'wire'}}",
        "payload == event.payload",
        "size(payload) == 2",
    ] {
        assert!(eval_with(text, context.clone(), payload.clone()).unwrap(), "{text}");
    }
    assert!(!eval_with("state == 'Done'", context, payload).unwrap());
}

#[test]
fn unknown_variables_are_rejected_when_compiling() {
    let error = CompiledGuard::compile("context.a > 1 && ctx.amount > 5").unwrap_err();
    match &error {
        GuardError::Parse { message, line, column, .. } => {
            assert!(message.contains("unknown variable `ctx`"), "{message}");
            assert_eq!((*line, *column), (Some(1), Some(18)));
        }
        other => panic!("{other:?}"),
    }
    // comprehension variables and type names are known
    CompiledGuard::compile("context.items.exists(x, x.qty > 0)").unwrap();
    CompiledGuard::compile("type(context.a) == int || type(context.a) == double").unwrap();
    assert!(CompiledGuard::compile("context.items.exists(x, y > 0)").is_err());
}

#[test]
fn parse_errors_carry_the_column_in_the_original_text() {
    let error = CompiledGuard::compile("context.amount >").unwrap_err();
    match &error {
        GuardError::Parse { line, column, message, expression } => {
            assert_eq!(expression, "context.amount >");
            assert_eq!(*line, Some(1));
            assert_eq!(*column, Some(17), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().starts_with("invalid guard `context.amount >` at column 17: "),
        "{error}"
    );

    // the `===` before the error shifts the translated text by one character
    let error = CompiledGuard::compile("context.a === 1 && ) ").unwrap_err();
    match &error {
        GuardError::Parse { column, .. } => assert_eq!(*column, Some(20), "{error}"),
        other => panic!("{other:?}"),
    }
    let error =
        CompiledGuard::compile("context.a === 1 &&\n  context.b !== 2 &&\n  ) ").unwrap_err();
    match &error {
        GuardError::Parse { line, column, .. } => {
            assert_eq!((*line, *column), (Some(3), Some(3)), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("at line 3, column 3"), "{error}");
    let error = CompiledGuard::compile("   ").unwrap_err();
    assert!(matches!(error, GuardError::Parse { line: None, column: None, .. }), "{error}");
    assert!(CompiledGuard::compile("context.a = 1").is_err());
    assert!(CompiledGuard::compile("'unterminated").is_err());
}

fn legacy(
    source: Option<&str>,
    property: &str,
    operator: model::Operator,
    value: Value,
) -> model::LegacyGuard {
    model::LegacyGuard {
        source: source.map(str::to_owned),
        property: property.to_owned(),
        operator,
        value,
    }
}

#[test]
fn legacy_guards_are_anded() {
    use model::Operator::*;
    let guards = [
        legacy(Some("context"), "retryCount", Lt, json!(3)),
        legacy(None, "customer.tier", Eq, json!("gold")),
        legacy(Some("event"), "amount", Ge, json!(100.5)),
        legacy(Some("payload"), "kind", Ne, json!("cash")),
        legacy(None, "items.0.sku", Eq, json!("A")),
        legacy(None, "weird-key", Le, json!(1)),
    ];
    let guard = CompiledGuard::from_legacy(&guards).unwrap();
    assert_eq!(
        guard.source(),
        "context.retryCount < 3 && context.customer.tier == \"gold\" && payload.amount >= 100.5 \
         && payload.kind != \"cash\" && context.items[0].sku == \"A\" && context[\"weird-key\"] <= 1"
    );
    let context = object(json!({
        "retryCount": 2, "customer": {"tier": "gold"}, "items": [{"sku": "A"}], "weird-key": 1
    }));
    let payload = object(json!({"amount": 200, "kind": "wire"}));
    let mut input =
        GuardInput { context: &context, payload: &payload, event_type: "PAY", state: "S" };
    assert!(guard.evaluate(&input).unwrap());
    let cash = object(json!({"amount": 200, "kind": "cash"}));
    input.payload = &cash;
    assert!(!guard.evaluate(&input).unwrap());
    let missing = object(json!({"kind": "wire"}));
    input.payload = &missing;
    assert!(guard.evaluate(&input).is_err());

    // values of every JSON kind become literals
    let odd = [legacy(None, "v", Eq, json!({"a": [1, null, true, "q\"\\\n"], "b": 1e-7}))];
    let guard = CompiledGuard::from_legacy(&odd).unwrap();
    let context = object(json!({"v": {"a": [1, null, true, "q\"\\\n"], "b": 1e-7}}));
    let input = GuardInput { context: &context, payload: &payload, event_type: "PAY", state: "S" };
    assert!(guard.evaluate(&input).unwrap(), "{}", guard.source());

    assert!(CompiledGuard::from_legacy(&[]).unwrap().evaluate(&input).unwrap());
    let error =
        CompiledGuard::from_legacy(&[legacy(Some("state"), "x", Eq, json!(1))]).unwrap_err();
    assert!(matches!(error, GuardError::Legacy { index: 0, .. }), "{error}");
    let error = CompiledGuard::from_legacy(&[legacy(None, "a..b", Eq, json!(1))]).unwrap_err();
    assert!(error.to_string().contains("empty segment"), "{error}");
}

#[test]
fn guards_of_a_transition_combine() {
    let transition: model::Transition = serde_json::from_value(json!({
        "from": "A", "to": "B", "event": "GO",
        "guard": {"expression": "context.amount > 5000"},
        "guards": [{"type": "context", "property": "region", "operator": "===", "value": "EU"}]
    }))
    .unwrap();
    let guard = CompiledGuard::for_transition(&transition).unwrap().unwrap();
    let context = object(json!({"amount": 6000, "region": "EU"}));
    let payload = Map::new();
    let input = GuardInput { context: &context, payload: &payload, event_type: "GO", state: "A" };
    assert!(guard.evaluate(&input).unwrap());
    let plain: model::Transition =
        serde_json::from_value(json!({"from": "A", "to": "B", "event": "GO"})).unwrap();
    assert!(CompiledGuard::for_transition(&plain).unwrap().is_none());
    let bare: model::Transition = serde_json::from_value(
        json!({"from": "A", "to": "B", "event": "GO", "guard": "context.amount <"}),
    )
    .unwrap();
    assert!(matches!(CompiledGuard::for_transition(&bare), Err(GuardError::Parse { .. })));
}

#[test]
fn variables_are_read_lazily_unless_used_whole() {
    let lazy =
        CompiledGuard::compile("context.a > 1 && has(payload.b) && event.type == 'X'").unwrap();
    let whole = lazy.inner.whole;
    assert!(!whole.context && !whole.payload && !whole.event);
    let eager =
        CompiledGuard::compile("size(context) > 1 && payload == {} && event != null").unwrap();
    let whole = eager.inner.whole;
    assert!(whole.context && whole.payload && whole.event);
    // a comprehension variable named like a root does not count
    let shadowed = CompiledGuard::compile("[1].exists(context, context > 0)").unwrap();
    assert!(!shadowed.inner.whole.context);
}

/// A CEL string literal for `content`, quoted with `quote`.
fn cel_literal(content: &str, quote: char) -> String {
    let mut out = String::new();
    out.push(quote);
    for c in content.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

proptest! {
    #[test]
    fn strict_operator_translation_never_changes_string_literals(
        content in "[=!\"' \\\\ab\n/]{0,24}",
        double_quoted in any::<bool>(),
    ) {
        let literal = cel_literal(&content, if double_quoted { '"' } else { '\'' });
        let text = format!("payload.note === {literal} && !(payload.note !== {literal})");
        let translated = translate_js_operators(&text).text;
        prop_assert_eq!(&translated, &format!("payload.note == {literal} && !(payload.note != {literal})"));
        let payload = object(json!({"note": content}));
        let context = Map::new();
        let guard = CompiledGuard::compile(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = GuardInput { context: &context, payload: &payload, event_type: "E", state: "S" };
        prop_assert_eq!(guard.evaluate(&input), Ok(true));
    }

    #[test]
    fn text_without_strict_operators_is_unchanged(text in "[a-z=!<>&|\"' .()0-9\\\\]{0,40}") {
        prop_assume!(!text.contains("===") && !text.contains("!=="));
        let translation = translate_js_operators(&text);
        prop_assert_eq!(translation.text, text);
        prop_assert!(translation.removed.is_empty());
    }
}

/// A payload with `items`: `count` objects `{id, qty}`, and `ids`: `count` integers.
fn items_payload(count: i64) -> Value {
    let items: Vec<Value> = (0..count).map(|i| json!({"id": i, "qty": i % 7})).collect();
    let ids: Vec<Value> = (0..count).map(|i| json!(i)).collect();
    json!({"items": items, "ids": ids})
}

#[test]
fn a_nested_comprehension_over_a_large_list_exceeds_the_budget() {
    let payload = items_payload(300);
    let nested = [
        // 90,000 iterations: the case that held a shard.
        "payload.items.all(a, payload.items.all(b, a.id != b.id || a.qty == b.qty))",
        // 27,000,000 iterations without a budget.
        "payload.items.all(a, payload.items.all(b, payload.items.all(c, a.id >= 0)))",
        "payload.items.map(a, a.id).all(x, x in payload.items.map(b, b.id))",
    ];
    for text in nested {
        let first = eval_with(text, json!({}), payload.clone());
        assert_eq!(
            first,
            Err(GuardError::Budget { expression: text.to_owned(), limit: MAX_GUARD_STEPS }),
            "{text}"
        );
        // Deterministic: the same input gives the same verdict.
        assert_eq!(eval_with(text, json!({}), payload.clone()), first);
        let message = first.err().map(|error| error.to_string()).unwrap_or_default();
        assert!(message.contains("could not be evaluated"), "{message}");
        assert!(message.contains("exceeded its evaluation budget of 20000 steps"), "{message}");
    }
}

#[test]
fn a_spent_budget_decides_even_when_the_error_is_absorbed() {
    // `||` absorbs an error when the other side is true, and `exists` when another element
    // holds: the budget still decides.
    let payload = items_payload(300);
    for text in [
        "payload.items.all(a, payload.items.all(b, b.id >= 0)) || true",
        "payload.items.exists(a, a.id == 299 || payload.items.all(b, b.id < 0))",
    ] {
        assert_eq!(
            eval_with(text, json!({}), payload.clone()),
            Err(GuardError::Budget { expression: text.to_owned(), limit: MAX_GUARD_STEPS }),
            "{text}"
        );
    }
}

#[test]
fn membership_inside_a_loop_is_charged_per_element() {
    // One conversion of `ids` and 300 iterations: cheap, but 300 × 300 elements compared by `in`.
    let payload = items_payload(300);
    let text = "[payload.ids].all(l, payload.ids.all(x, x in l))";
    assert_eq!(
        eval_with(text, json!({}), payload.clone()),
        Err(GuardError::Budget { expression: text.to_owned(), limit: MAX_GUARD_STEPS })
    );
    // A small list is fine.
    assert_eq!(eval_with(text, json!({}), items_payload(50)), Ok(true));
}

#[test]
fn ordinary_guards_stay_within_the_budget() {
    // One comprehension over 4,000 two-field objects: 4,000 iterations and 12,001 values read.
    let payload = items_payload(4_000);
    assert_eq!(eval_with("payload.items.all(i, i.qty < 7)", json!({}), payload.clone()), Ok(true));
    assert_eq!(
        eval_with("payload.items.exists(i, i.id == 3999)", json!({}), payload.clone()),
        Ok(true)
    );
    assert_eq!(
        eval_with("payload.items.filter(i, i.qty == 0).size() > 500", json!({}), payload.clone()),
        Ok(true)
    );
    // A nested comprehension over small lists.
    assert_eq!(
        eval_with(
            "payload.items.all(a, payload.items.all(b, a.id == b.id || a.id != b.id))",
            json!({}),
            items_payload(30)
        ),
        Ok(true)
    );
    // Guards without a comprehension are not budgeted: their cost is bounded by their text and
    // their input.
    let big = items_payload(100_000);
    assert_eq!(eval_with("99999 in payload.ids", json!({}), big.clone()), Ok(true));
    assert_eq!(eval_with("size(payload.items) == 100000", json!({}), big), Ok(true));
}
