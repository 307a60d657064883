//! Size limits through the real server (TCP, default limits): an event payload over
//! `max_payload_bytes` is a 413 and reaches no instance; a transition whose resulting data would
//! exceed `max_data_bytes` is a 422 and leaves the instance, its history and later events intact.

mod common;

use axum::http::StatusCode;
use common::{TestServer, assert_error};
use serde_json::{Value, json};
use xcomponent_runtime::{DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_PAYLOAD_BYTES};

/// Bytes of one field's value: four of them fit under the data limit, five do not.
const FIELD: usize = DEFAULT_MAX_DATA_BYTES / 4 - 1_000;
const _: () = assert!(FIELD < DEFAULT_MAX_PAYLOAD_BYTES, "each note is an acceptable payload");

async fn note(server: &TestServer, desk: &str, payload: Value) -> (u16, Value) {
    let body = json!({"type": "NOTE", "payload": payload});
    server.http("POST", &format!("/api/instances/{desk}/events"), Some(&body)).await
}

#[tokio::test]
async fn oversized_payload_is_413_and_data_over_the_cap_is_422() {
    let server = TestServer::standard().await;
    let desk = server.handle().singleton_instance("HelpDesk").expect("desk").to_string();
    let ticket = json!({"type": "TICKET"});
    let (status, reply) =
        server.http("POST", &format!("/api/instances/{desk}/events"), Some(&ticket)).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("transitioned")), "{reply}");

    let (status, body) =
        note(&server, &desk, json!({"blob": "p".repeat(DEFAULT_MAX_PAYLOAD_BYTES)})).await;
    let status = StatusCode::from_u16(status).expect("status");
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    for n in 1..=4 {
        let (status, reply) =
            note(&server, &desk, json!({format!("f{n}"): "d".repeat(FIELD)})).await;
        assert_eq!((status, reply["outcome"].as_str()), (200, Some("transitioned")), "{reply}");
    }
    let (_, history) = server.http("GET", &format!("/api/instances/{desk}/history"), None).await;
    let stored = history["history"].as_array().map(Vec::len).expect("history");

    let (status, body) = note(&server, &desk, json!({"f5": "d".repeat(FIELD)})).await;
    let status = StatusCode::from_u16(status).expect("status");
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "data_too_large");

    let (status, view) = server.http("GET", &format!("/api/instances/{desk}"), None).await;
    assert_eq!(status, 200, "{view}");
    let data = &view["instance"]["context"];
    assert!(data.get("f5").is_none(), "the refused event changed nothing");
    assert_eq!(data["f4"].as_str().map(str::len), Some(FIELD));
    assert_eq!(view["instance"]["currentState"], "Busy");
    let (_, history) = server.http("GET", &format!("/api/instances/{desk}/history"), None).await;
    assert_eq!(history["history"].as_array().map(Vec::len), Some(stored), "nothing stored");

    // Replacing a large field by a small one is a change like any other.
    let (status, reply) = note(&server, &desk, json!({"f1": "small"})).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("transitioned")), "{reply}");
    let (status, reply) = note(&server, &desk, json!({"f5": "d".repeat(FIELD)})).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("transitioned")), "{reply}");
    server.stop().await;
}
