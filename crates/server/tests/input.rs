//! What a client may put in a request, through the real server on a real socket: event names
//! (no control character, not blank; the OpenAPI schema says the same), integers above 2^53
//! (kept exact through the body, the SQLite store and matching), integers beyond 64 bits
//! (refused with their field, never rounded).

mod common;

use common::{TempDir, TestServer, create_order};
use serde_json::{Value, json};
use std::sync::Arc;
use xcomponent_core::store::EventStore;
use xcomponent_server::ServerConfig;
use xcomponent_store::StoreOptions;

#[tokio::test]
async fn event_names_with_control_characters_are_refused_and_the_schema_says_so() {
    let server = TestServer::standard().await;
    let order = create_order(&server, "NAME-1").await;
    let path = format!("/api/instances/{order}/events");
    for (name, field, body) in [
        ("\u{1}", "type", json!({"type": "\u{1}"})),
        ("SUB\u{0}MIT", "type", json!({"type": "SUB\u{0}MIT"})),
        ("SUBMIT\n", "type", json!({"type": "SUBMIT\n"})),
        ("\u{7f}", "event", json!({"event": "\u{7f}"})),
        ("\u{85}", "event.type", json!({"event": {"type": "\u{85}"}})),
    ] {
        let (status, reply) = server.http("POST", &path, Some(&body)).await;
        assert_eq!(status, 400, "{name:?}: {reply}");
        assert_eq!(reply["code"], "bad_request", "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(message.contains("control character"), "{message}");
    }
    for blank in ["", " ", "\u{feff}"] {
        let (status, reply) = server.http("POST", &path, Some(&json!({"type": blank}))).await;
        assert_eq!(status, 400, "{blank:?}: {reply}");
        assert_eq!(reply["field"], "type", "{reply}");
    }
    // Broadcasts check the same rule.
    let (status, reply) = server
        .http(
            "POST",
            "/api/components/OrderComponent/broadcast",
            Some(&json!({"machineName": "Order", "event": "\u{1}"})),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["field"], "event", "{reply}");
    // Still accepted: names with spaces or non-ASCII letters.
    let (status, reply) = server.http("POST", &path, Some(&json!({"type": "NOT KNOWN é"}))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"], "ignored", "{reply}");

    // The schema: the event name's pattern refuses control characters.
    let (status, document) = server.http("GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    let patterns = patterns_of(&document);
    let control = r"[^\u0000-\u001F\u007F-\u009F]";
    assert!(
        patterns.iter().any(|pattern| pattern.starts_with(&format!("^{control}*"))),
        "{patterns:?}"
    );
    assert!(!patterns.iter().any(|pattern| pattern == r"\S"), "{patterns:?}");
    server.stop().await;
}

/// Every `pattern` in a JSON document.
fn patterns_of(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("pattern", Value::String(pattern)) => found.push(pattern.clone()),
                    _ => found.extend(patterns_of(child)),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| found.extend(patterns_of(item))),
        _ => {}
    }
    found
}

#[tokio::test]
async fn integers_above_2_pow_53_stay_exact_and_never_match_their_neighbour() {
    let dir = TempDir::new("big-integers");
    let url = format!("sqlite://{}", dir.path().join("xcomponent.db").display());
    let store: Arc<dyn EventStore> =
        xcomponent_store::open(&url, &StoreOptions::default()).await.expect("sqlite store");
    let server =
        TestServer::start(&[common::ORDER, common::PAYMENT], Some(store), ServerConfig::default())
            .await;
    // 2^53 and 2^53 + 1 are the same double.
    let two_53 = 9_007_199_254_740_992_u64;
    let mut ids = Vec::new();
    for (order, reference) in [("BIG-1", two_53), ("BIG-2", two_53 + 1), ("BIG-3", u64::MAX)] {
        let body = json!({"machineName": "Order", "context": {"orderId": order, "amount": 1, "ref": reference}});
        let (status, reply) =
            server.http("POST", "/api/components/OrderComponent/instances", Some(&body)).await;
        assert_eq!(status, 201, "{reply}");
        ids.push(reply["instanceId"].as_str().expect("instanceId").to_owned());
    }
    // A broadcast filtered on 2^53 + 1 reaches that order only.
    let body = json!({"machineName": "Order", "event": "CANCEL", "filters": [{"property": "ref", "value": two_53 + 1}]});
    let (status, reply) =
        server.http("POST", "/api/components/OrderComponent/broadcast", Some(&body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["count"], 1, "{reply}");
    // Read back: the live ones from memory, the cancelled one from the SQLite store.
    let expected =
        [(two_53, "Created", true), (two_53 + 1, "Cancelled", false), (u64::MAX, "Created", true)];
    for (id, (reference, state, live)) in ids.iter().zip(expected) {
        let (status, reply) = server.http("GET", &format!("/api/instances/{id}"), None).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["instance"]["currentState"], state, "{reply}");
        assert_eq!(reply["instance"]["live"], live, "{reply}");
        assert_eq!(reply["instance"]["context"]["ref"].as_u64(), Some(reference), "{reply}");
    }
    server.stop().await;
}

#[tokio::test]
async fn integers_beyond_64_bits_are_refused_with_their_field_never_rounded() {
    let server = TestServer::standard().await;
    let order = create_order(&server, "WIDE-1").await;
    let create = "/api/components/OrderComponent/instances";
    let event = format!("/api/instances/{order}/events");
    let cases = [
        (
            create,
            r#"{"context": {"orderId": "W", "amount": 18446744073709551616}}"#,
            "context.amount",
        ),
        (
            create,
            r#"{"context": {"orderId": "W", "amount": 1, "n": -9223372036854775809}}"#,
            "context.n",
        ),
        (
            &event,
            r#"{"type": "PAY", "payload": {"lines": [{"q": 1}, {"q": 123456789012345678901234567890}]}}"#,
            "payload.lines.1.q",
        ),
    ];
    for (path, body, field) in cases {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("request");
        let (status, bytes) = server.raw(request).await;
        let reply: Value = serde_json::from_slice(&bytes).expect("a JSON error");
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(
            (reply["code"].as_str(), reply["field"].as_str()),
            (Some("bad_request"), Some(field)),
            "{reply}"
        );
        assert!(
            reply["error"].as_str().is_some_and(|text| text.contains("does not fit in 64 bits")),
            "{reply}"
        );
    }
    // The bounds themselves, and doubles of any size, pass.
    let body = r#"{"type": "SUBMIT", "payload": {"max": 18446744073709551615, "min": -9223372036854775808, "d": 1e300}}"#;
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(&event)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .expect("request");
    let (status, bytes) = server.raw(request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let (_, reply) = server.call("GET", &format!("/api/instances/{order}"), None).await;
    assert_eq!(reply["instance"]["context"]["max"].as_u64(), Some(u64::MAX), "{reply}");
    assert_eq!(reply["instance"]["context"]["min"].as_i64(), Some(i64::MIN), "{reply}");
    server.stop().await;
}
