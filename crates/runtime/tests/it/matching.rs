//! Property-routed broadcasts: rules with operators, the index kept exact as data changes, and
//! a property test comparing the indexed path with a brute-force scan.

use crate::{ctx, start};
use proptest::prelude::*;
use serde_json::json;
use xcomponent_core::matching::{PropertyFilter, compare};
use xcomponent_core::model::Operator;
use xcomponent_runtime::Handlers;

pub const ORDERS: &str = r#"
name: Orders
stateMachines:
  - name: Order
    initialState: Pending
    publicMemberType: Order
    states:
      - {name: Pending}
      - {name: Executed}
      - {name: HighValue}
      - {name: LowValue}
    transitions:
      - from: Pending
        to: Executed
        event: EXECUTION
        matchingRules: [{eventProperty: OrderId, instanceProperty: Id}]
      - from: Pending
        to: Pending
        event: RENAME
      - from: Pending
        to: HighValue
        event: CLASSIFY
        matchingRules:
          - {eventProperty: customer.id, instanceProperty: Id}
          - {eventProperty: threshold, instanceProperty: balance, operator: ">"}
      - from: Pending
        to: LowValue
        event: CLASSIFY
        matchingRules:
          - {eventProperty: customer.id, instanceProperty: Id}
          - {eventProperty: threshold, instanceProperty: balance, operator: "<="}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_only_the_matching_instance() {
    let rt = start(&[ORDERS], Handlers::new(), None).await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            rt.handle
                .create_instance("Orders", "Order", ctx(json!({"Id": n, "balance": n * 100})))
                .await
                .unwrap(),
        );
    }
    let count = rt
        .handle
        .broadcast(
            "Orders",
            "Order",
            Some("Pending"),
            "EXECUTION",
            ctx(json!({"OrderId": 2})),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(rt.state(ids[1]).await.as_deref(), Some("Executed"));
    assert_eq!(rt.state(ids[0]).await.as_deref(), Some("Pending"));
    let none = rt
        .handle
        .broadcast("Orders", "Order", None, "EXECUTION", ctx(json!({"OrderId": 9})), vec![])
        .await
        .unwrap();
    assert_eq!(none, 0);
    let string_key = rt
        .handle
        .broadcast("Orders", "Order", None, "EXECUTION", ctx(json!({"OrderId": "1"})), vec![])
        .await
        .unwrap();
    assert_eq!(string_key, 0, "1 and \"1\" are different (strict equality)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_choose_between_transitions() {
    let rt = start(&[ORDERS], Handlers::new(), None).await;
    let rich = rt
        .handle
        .create_instance("Orders", "Order", ctx(json!({"Id": 1, "balance": 900})))
        .await
        .unwrap();
    let poor = rt
        .handle
        .create_instance("Orders", "Order", ctx(json!({"Id": 2, "balance": 10})))
        .await
        .unwrap();
    rt.handle
        .broadcast(
            "Orders",
            "Order",
            None,
            "CLASSIFY",
            ctx(json!({"customer": {"id": 1}, "threshold": 500})),
            vec![],
        )
        .await
        .unwrap();
    rt.handle
        .broadcast(
            "Orders",
            "Order",
            None,
            "CLASSIFY",
            ctx(json!({"customer": {"id": 2}, "threshold": 500})),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rt.state(rich).await.as_deref(), Some("HighValue"));
    assert_eq!(rt.state(poor).await.as_deref(), Some("LowValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_follows_data_changes() {
    let rt = start(&[ORDERS], Handlers::new(), None).await;
    let a = rt.handle.create_instance("Orders", "Order", ctx(json!({"Id": 1}))).await.unwrap();
    let b = rt.handle.create_instance("Orders", "Order", ctx(json!({"Id": 1}))).await.unwrap();
    // b's Id changes through a payload merge: it must no longer be reached as 1, and must be as 7.
    rt.handle.send_event(b, "RENAME", ctx(json!({"Id": 7}))).await.unwrap();
    let count = rt
        .handle
        .broadcast("Orders", "Order", None, "EXECUTION", ctx(json!({"OrderId": 7})), vec![])
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(rt.state(b).await.as_deref(), Some("Executed"));
    assert_eq!(rt.state(a).await.as_deref(), Some("Pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_sends_honour_matching_rules() {
    let rt = start(&[ORDERS], Handlers::new(), None).await;
    let id = rt.handle.create_instance("Orders", "Order", ctx(json!({"Id": 1}))).await.unwrap();
    let outcome = rt.handle.send_event(id, "EXECUTION", ctx(json!({"OrderId": 2}))).await.unwrap();
    assert!(matches!(outcome, xcomponent_runtime::SendOutcome::Ignored { .. }), "{outcome:?}");
    let outcome = rt.handle.send_event(id, "EXECUTION", ctx(json!({"OrderId": 1}))).await.unwrap();
    assert_eq!(crate::new_state(&outcome), "Executed");
}

fn scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (0i64..4).prop_map(|n| json!(n)),
        (0i64..4).prop_map(|n| json!(n.to_string())),
        Just(json!(null)),
        Just(json!(true))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    /// Whatever sequence of creates and data changes, an indexed broadcast reaches exactly the
    /// instances a brute-force scan of the data says match.
    #[test]
    fn indexed_broadcast_equals_brute_force(initial in proptest::collection::vec(scalar(), 1..12), changes in proptest::collection::vec((0usize..12, scalar()), 0..12), probe in scalar()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let rt = start(&[ORDERS], Handlers::new(), None).await;
            let mut ids = Vec::new();
            let mut model = Vec::new();
            for value in &initial {
                ids.push(rt.handle.create_instance("Orders", "Order", ctx(json!({"Id": value}))).await.unwrap());
                model.push(value.clone());
            }
            for (which, value) in &changes {
                let which = which % ids.len();
                rt.handle.send_event(ids[which], "RENAME", ctx(json!({"Id": value}))).await.unwrap();
                model[which] = value.clone();
            }
            let expected: Vec<_> = model.iter().enumerate().filter(|(_, v)| compare(Some(v), Operator::Eq, Some(&probe))).map(|(i, _)| ids[i]).collect();
            let count = rt.handle.broadcast("Orders", "Order", Some("Pending"), "EXECUTION", ctx(json!({"OrderId": probe.clone()})), vec![]).await.unwrap();
            assert_eq!(count, expected.len());
            for id in expected {
                assert_eq!(rt.state(id).await.as_deref(), Some("Executed"));
            }
            let _ = PropertyFilter { property: "Id".into(), operator: Operator::Eq, value: probe };
        });
    }
}
