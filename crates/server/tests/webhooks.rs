//! Inbound webhooks through the real router: by id and by correlation property, what the reply
//! says, the token, HMAC signatures (good, bad, stale, malformed), idempotency keys, and the
//! OpenAPI description.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{DESK, ORDER, PAYMENT, TestServer, assert_error, create_order};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tower::ServiceExt;
use xcomponent_core::store::EventStore;
use xcomponent_server::ServerConfig;

const SECRET: &str = "whsec_test";

async fn server_with(config: ServerConfig) -> TestServer {
    let store: Arc<dyn EventStore> = Arc::new(xcomponent_store::MemoryStore::new());
    TestServer::start(&[ORDER, PAYMENT, DESK], Some(store), config).await
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// The signature header a sender computes, written here independently of the server's code.
fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A raw POST with a JSON content type: status, JSON body, headers.
async fn post(
    server: &TestServer,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, HeaderMap) {
    let mut request =
        Request::builder().method("POST").uri(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body.to_owned())).expect("request");
    let response = server.app.clone().oneshot(request).await.expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value, headers)
}

async fn instance(server: &TestServer, id: &str) -> Value {
    let (status, body) = server.call("GET", &format!("/api/instances/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["instance"].clone()
}

async fn create_with(server: &TestServer, context: Value) -> String {
    let body = json!({"machineName": "Order", "context": context});
    let (status, reply) =
        server.call("POST", "/api/components/OrderComponent/instances", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    reply["instanceId"].as_str().expect("instanceId").to_owned()
}

#[tokio::test]
async fn a_webhook_moves_an_instance_by_id_and_says_what_happened() {
    let server = TestServer::standard().await;
    let id = create_order(&server, "WH-1").await;
    let path = format!("/webhooks/OrderComponent/{id}/CANCEL");
    let (status, reply, _) = post(&server, &path, r#"{"reason": "customer asked"}"#, &[]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["outcome"], "transitioned", "{reply}");
    assert_eq!(reply["instanceId"], id.as_str());
    assert_eq!(reply["previousState"], "Created");
    assert_eq!(reply["newState"], "Cancelled");
    assert_eq!(reply["event"], "CANCEL");
    let cancelled = instance(&server, &id).await;
    assert_eq!(cancelled["context"]["reason"], "customer asked", "the body is the payload");
    // The REST API's answers: a finished instance is 409, an unknown one 404.
    let (status, reply, _) = post(&server, &path, "{}", &[]).await;
    assert_error(status, &reply, StatusCode::CONFLICT, "instance_finished");
    let unknown = "0190a6f2-0000-7000-8000-000000000001";
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{unknown}/CANCEL"), "{}", &[]).await;
    assert_error(status, &reply, StatusCode::NOT_FOUND, "unknown_instance");
    let (status, reply, _) = post(&server, &format!("/webhooks/Nope/{id}/CANCEL"), "{}", &[]).await;
    assert_error(status, &reply, StatusCode::NOT_FOUND, "unknown_component");
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/not-a-uuid/CANCEL", "", &[]).await;
    assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_id");

    // Ignored: the reason and what the instance accepts now.
    let fresh = create_order(&server, "WH-2").await;
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{fresh}/SHIP"), "", &[]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["outcome"], "ignored", "{reply}");
    assert!(reply["reason"].as_str().is_some_and(|reason| !reason.is_empty()), "{reply}");
    assert_eq!(reply["currentState"], "Created");
    assert!(
        reply["allowedEvents"].as_array().is_some_and(|events| events.contains(&json!("CANCEL")))
    );
    // The event name is checked as on the REST API; a non-object body is wrapped.
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{fresh}/%20"), "{}", &[]).await;
    assert_error(status, &reply, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(reply["field"], "event");
    let to_fresh = format!("/webhooks/OrderComponent/{fresh}/SUBMIT");
    let (status, reply, _) = post(&server, &to_fresh, "[1, 2]", &[]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(instance(&server, &fresh).await["context"]["body"], json!([1, 2]));
    // Sent as something other than JSON: 415 (a page elsewhere cannot post it unasked).
    let request = Request::builder()
        .method("POST")
        .uri(format!("/webhooks/OrderComponent/{fresh}/CANCEL"))
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    let (status, bytes) = server.raw(request).await;
    let reply: Value = serde_json::from_slice(&bytes).expect("json error");
    assert_error(status, &reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let (status, reply, _) = post(&server, &to_fresh, "{not json", &[]).await;
    assert_error(status, &reply, StatusCode::BAD_REQUEST, "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn a_webhook_finds_its_instance_by_a_property() {
    let server = TestServer::standard().await;
    let first = create_order(&server, "ORD-7").await;
    let other = create_order(&server, "ORD-70").await;
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/orderId/ORD-7/CANCEL", "{}", &[]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["instanceId"], first.as_str(), "ORD-7, not ORD-70: {reply}");
    assert_eq!(reply["newState"], "Cancelled");
    assert_eq!(instance(&server, &other).await["currentState"], "Created");
    // Only live instances are searched: ORD-7 has finished.
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/orderId/ORD-7/CANCEL", "{}", &[]).await;
    assert_error(status, &reply, StatusCode::NOT_FOUND, "no_matching_instance");
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/orderId/NOBODY/CANCEL", "{}", &[]).await;
    assert_error(status, &reply, StatusCode::NOT_FOUND, "no_matching_instance");
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Ghost/by/orderId/ORD-70/CANCEL", "{}", &[]).await;
    assert_error(status, &reply, StatusCode::NOT_FOUND, "unknown_machine");

    // A number in the path matches a number in the data (and a string in the path a string).
    let priced = create_with(&server, json!({"orderId": "P-1", "amount": 1234.0})).await;
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/amount/1234/CANCEL", "{}", &[]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["instanceId"], priced.as_str());
    // Percent-encoded values and dot paths into nested data.
    let nested =
        create_with(&server, json!({"orderId": "A B/1", "amount": 1, "customer": {"id": "c-9"}}))
            .await;
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/customer.id/c-9/CANCEL", "{}", &[]).await;
    assert_eq!((status, reply["instanceId"].clone()), (StatusCode::OK, json!(nested)), "{reply}");

    // Two live instances hold the value: nothing is sent, both are named.
    let twin_a = create_order(&server, "TWIN").await;
    let twin_b = create_order(&server, "TWIN").await;
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/orderId/TWIN/CANCEL", "{}", &[]).await;
    assert_error(status, &reply, StatusCode::CONFLICT, "ambiguous_correlation");
    let message = reply["error"].as_str().unwrap_or_default();
    assert!(message.contains(&twin_a) && message.contains(&twin_b), "{reply}");
    assert_eq!(instance(&server, &twin_a).await["currentState"], "Created");
    assert_eq!(instance(&server, &twin_b).await["currentState"], "Created");
    let spaced = create_with(&server, json!({"orderId": "A B/2", "amount": 1})).await;
    let (status, reply, _) =
        post(&server, "/webhooks/OrderComponent/Order/by/orderId/A%20B%2F2/CANCEL", "{}", &[])
            .await;
    assert_eq!((status, reply["instanceId"].clone()), (StatusCode::OK, json!(spaced)), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn with_a_token_a_webhook_needs_it() {
    let config = ServerConfig { token: Some("t0ken".to_owned()), ..ServerConfig::default() };
    let server = server_with(config).await;
    let id = create_with_token(&server, "TOK-1").await;
    let path = format!("/webhooks/OrderComponent/{id}/CANCEL");
    let (status, reply, _) = post(&server, &path, "{}", &[]).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, reply, _) = post(&server, &path, "{}", &[("authorization", "Bearer nope")]).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "unauthorized");
    // No secret configured: a signature cannot stand in for the token.
    let signed = sign(SECRET, now_seconds(), "{}");
    let (status, reply, _) =
        post(&server, &path, "{}", &[("x-xcomponent-signature", &signed)]).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(instance(&server, &id).await["currentState"], "Created", "nothing was sent");
    let (status, reply, _) = post(&server, &path, "{}", &[("authorization", "Bearer t0ken")]).await;
    assert_eq!(
        (status, reply["newState"].clone()),
        (StatusCode::OK, json!("Cancelled")),
        "{reply}"
    );
    server.stop().await;
}

async fn create_with_token(server: &TestServer, order_id: &str) -> String {
    let body = json!({"context": {"orderId": order_id, "amount": 5}});
    let (status, reply) = server
        .call_with(
            "POST",
            "/api/components/OrderComponent/instances",
            Some(body),
            &[("authorization", "Bearer t0ken")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    reply["instanceId"].as_str().expect("instanceId").to_owned()
}

#[tokio::test]
async fn with_a_secret_a_webhook_needs_a_valid_recent_signature() {
    let config =
        ServerConfig { webhook_secret: Some(SECRET.to_owned()), ..ServerConfig::default() };
    let server = server_with(config).await;
    let id = create_order(&server, "SIG-1").await;
    let path = format!("/webhooks/OrderComponent/{id}/CANCEL");
    let body = r#"{"reason": "signed"}"#;
    let now = now_seconds();

    // Unsigned: refused even though the server has no API token.
    let (status, reply, _) = post(&server, &path, body, &[]).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "signature_required");
    let refusals = [
        (sign("another secret", now, body), "signature_mismatch"),
        (sign(SECRET, now, r#"{"reason": "tampered"}"#), "signature_mismatch"),
        // Well past the 300 s either way: the server's second may already be the next one
        // (the exact bound is a unit test of signature.rs, on a fixed clock).
        (sign(SECRET, now - 310, body), "signature_expired"),
        (sign(SECRET, now + 310, body), "signature_expired"),
        ("v1=deadbeef".to_owned(), "signature_malformed"),
        (format!("t={now},v1=not-hex"), "signature_malformed"),
    ];
    for (header, code) in &refusals {
        let (status, reply, _) =
            post(&server, &path, body, &[("x-xcomponent-signature", header)]).await;
        assert_error(status, &reply, StatusCode::UNAUTHORIZED, code);
    }
    assert_eq!(instance(&server, &id).await["currentState"], "Created", "nothing was sent");

    let good = sign(SECRET, now, body);
    let (status, reply, _) = post(&server, &path, body, &[("x-xcomponent-signature", &good)]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["newState"], "Cancelled");
    assert_eq!(instance(&server, &id).await["context"]["reason"], "signed");
    // The server's helper computes the same header.
    assert_eq!(xcomponent_server::webhook_signature(SECRET, now, body.as_bytes()), good);
    // The REST API is not affected by the webhook secret.
    create_order(&server, "SIG-2").await;
    server.stop().await;
}

#[tokio::test]
async fn with_a_secret_and_a_token_either_will_do() {
    let config = ServerConfig {
        token: Some("t0ken".to_owned()),
        webhook_secret: Some(SECRET.to_owned()),
        ..ServerConfig::default()
    };
    let server = server_with(config).await;
    let first = create_with_token(&server, "BOTH-1").await;
    let second = create_with_token(&server, "BOTH-2").await;
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{first}/CANCEL"), "{}", &[]).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "signature_required");
    let bearer = [("authorization", "Bearer t0ken")];
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{first}/CANCEL"), "{}", &bearer).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let signed = sign(SECRET, now_seconds(), "{}");
    let signature = [("x-xcomponent-signature", signed.as_str())];
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{second}/CANCEL"), "{}", &signature).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // A bad signature is refused even beside a good token.
    let third = create_with_token(&server, "BOTH-3").await;
    let forged = sign("forged", now_seconds(), "{}");
    let both = [("authorization", "Bearer t0ken"), ("x-xcomponent-signature", forged.as_str())];
    let (status, reply, _) =
        post(&server, &format!("/webhooks/OrderComponent/{third}/CANCEL"), "{}", &both).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "signature_mismatch");

    // The document says so: token or signature on webhooks, the token elsewhere.
    let (_, document) = server.call("GET", "/openapi.json", None).await;
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["webhookSignature"]["in"], "header", "{schemes}");
    let security =
        &document["paths"]["/webhooks/{component}/{instanceId}/{event}"]["post"]["security"];
    assert_eq!(security, &json!([{"bearerAuth": []}, {"webhookSignature": []}]));
    let rest = &document["paths"]["/api/instances/{id}/events"]["post"]["security"];
    assert_eq!(rest, &json!([{"bearerAuth": []}]));
    server.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_first_answer_and_applies_once() {
    let config =
        ServerConfig { webhook_secret: Some(SECRET.to_owned()), ..ServerConfig::default() };
    let server = server_with(config).await;
    let (_, page) = server.call("GET", "/api/components/HelpDesk/instances", None).await;
    let desk = page["items"][0]["id"].as_str().expect("the singleton desk").to_owned();
    let signed = |body: &str| sign(SECRET, now_seconds(), body);
    let ticket = format!("/webhooks/HelpDesk/{desk}/TICKET");
    let header = signed("{}");
    let (status, reply, _) =
        post(&server, &ticket, "{}", &[("x-xcomponent-signature", header.as_str())]).await;
    assert_eq!((status, reply["newState"].clone()), (StatusCode::OK, json!("Busy")), "{reply}");

    // NOTE loops on Busy: each application is one more stored event.
    let note = format!("/webhooks/HelpDesk/{desk}/NOTE");
    let body = r#"{"note": "first"}"#;
    let header = signed(body);
    let headers = [("x-xcomponent-signature", header.as_str()), ("idempotency-key", "evt_001")];
    let before = instance(&server, &desk).await["seq"].as_u64().expect("seq");
    let (status, first, first_headers) = post(&server, &note, body, &headers).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["outcome"], "transitioned", "{first}");
    assert!(first_headers.get("idempotent-replayed").is_none());
    let (status, again, again_headers) = post(&server, &note, body, &headers).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the first answer, word for word");
    assert_eq!(
        again_headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let after = instance(&server, &desk).await["seq"].as_u64().expect("seq");
    assert_eq!(after, before + 1, "applied once");

    // The same key for another body is a mistake, said as such; a new key applies again.
    let other = r#"{"note": "second"}"#;
    let header = signed(other);
    let reused = [("x-xcomponent-signature", header.as_str()), ("idempotency-key", "evt_001")];
    let (status, reply, _) = post(&server, &note, other, &reused).await;
    assert_error(status, &reply, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    let fresh = [("x-xcomponent-signature", header.as_str()), ("idempotency-key", "evt_002")];
    let (status, reply, _) = post(&server, &note, other, &fresh).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(instance(&server, &desk).await["seq"].as_u64(), Some(before + 2));
    // A replay still needs a valid signature: the answer is not handed to anyone.
    let (status, reply, _) = post(&server, &note, body, &[("idempotency-key", "evt_001")]).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "signature_required");
    let long = "k".repeat(256);
    let bad_key = [("x-xcomponent-signature", header.as_str()), ("idempotency-key", long.as_str())];
    let (status, reply, _) = post(&server, &note, other, &bad_key).await;
    assert_error(status, &reply, StatusCode::BAD_REQUEST, "bad_idempotency_key");

    let (_, metrics) = server.call("GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains(r#"xcomponent_webhooks_total{outcome="replayed"} 1"#), "{text}");
    assert!(text.contains(r#"xcomponent_webhooks_total{outcome="transitioned"} 3"#), "{text}");
    server.stop().await;
}
