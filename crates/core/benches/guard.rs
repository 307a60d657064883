//! Guard compilation and evaluation cost, on a context of realistic size (50 fields), and the
//! cost of a guard stopped by its evaluation budget.
//!
//! `cargo bench -p xcomponent-core --bench guard`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use xcomponent_core::guard::{CompiledGuard, GuardInput};

fn context() -> Map<String, Value> {
    let mut context = Map::new();
    for i in 0..45 {
        context.insert(format!("field{i}"), json!(format!("value number {i}")));
    }
    context.insert("availableStock".to_owned(), json!(5));
    context.insert("threshold".to_owned(), json!(10.0));
    context.insert("customer".to_owned(), json!({"tier": "gold", "since": 2019}));
    context.insert("tags".to_owned(), json!(["vip", "new", "eu"]));
    context.insert("amount".to_owned(), json!(6000.5));
    context
}

fn guards(c: &mut Criterion) {
    let context = context();
    let payload = match json!({"quantity": 3, "note": "a === b"}) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let input = GuardInput {
        context: &context,
        payload: &payload,
        event_type: "RESERVE",
        state: "Available",
    };
    let low_stock = "context.availableStock <= context.threshold && context.availableStock > 0";

    c.bench_function("guard/compile", |b| b.iter(|| CompiledGuard::compile(black_box(low_stock))));

    let cases = [
        ("guard/eval/simple", "context.amount > 5000"),
        ("guard/eval/and", low_stock),
        ("guard/eval/nested", "context.customer.tier === 'gold' && 'vip' in context.tags"),
        (
            "guard/eval/payload",
            "payload.quantity * 1.5 < context.availableStock && state == 'Available'",
        ),
        ("guard/eval/whole-context", "size(context) > 10 && context.amount > 5000"),
    ];
    for (name, text) in cases {
        let guard = match CompiledGuard::compile(text) {
            Ok(guard) => guard,
            Err(error) => panic!("{error}"),
        };
        c.bench_function(name, |b| b.iter(|| guard.evaluate(black_box(&input))));
    }
}

/// A comprehension nested in another over a 300-item payload list (90,000 iterations without a
/// budget): the time until the guard is refused with `GuardError::Budget`.
fn nested_comprehension(c: &mut Criterion) {
    let items: Vec<Value> = (0..300).map(|i| json!({"id": i, "qty": i % 7})).collect();
    let payload = match json!({"items": items}) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let context = Map::new();
    let input =
        GuardInput { context: &context, payload: &payload, event_type: "CHECK", state: "Open" };
    let text = "payload.items.all(a, payload.items.all(b, a.id != b.id || a.qty == b.qty))";
    let guard = match CompiledGuard::compile(text) {
        Ok(guard) => guard,
        Err(error) => panic!("{error}"),
    };
    let mut group = c.benchmark_group("guard/eval");
    group.sample_size(10);
    group.bench_function("nested-comprehension-300", |b| {
        b.iter(|| guard.evaluate(black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, guards, nested_comprehension);
criterion_main!(benches);
