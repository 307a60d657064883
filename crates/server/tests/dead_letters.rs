//! Dead letters over HTTP, produced for real by the runtime: a Relay's handler sends PING to a
//! Sink that refuses it (rejected) or to an instance that does not exist (undeliverable). Listed,
//! shown, replayed (failing again, then applied once the cause is fixed), discarded; counted in
//! `/metrics`; guarded by the token; refused without a store.

mod common;

use axum::http::StatusCode;
use common::{RELAY, TestServer, assert_error, eventually};
use serde_json::{Value, json};
use std::sync::Arc;
use xcomponent_core::instance::{Context, InstanceId};
use xcomponent_core::store::EventStore;
use xcomponent_runtime::Handlers;
use xcomponent_server::ServerConfig;

/// `forward` sends PING to the instance whose id is in the Relay's `target` field.
fn handlers() -> Handlers {
    Handlers::new().on("forward", |call| {
        let target = call.context.get("target").and_then(Value::as_str).ok_or("no target")?;
        let target: InstanceId = target.parse()?;
        call.sender.send_to(target, "PING", Context::new());
        Ok(())
    })
}

async fn relay_server(config: ServerConfig) -> TestServer {
    let store: Arc<dyn EventStore> = Arc::new(xcomponent_store::MemoryStore::new());
    TestServer::start_with_handlers(&[RELAY], Some(store), config, handlers()).await
}

async fn create(server: &TestServer, machine: &str, context: Value) -> String {
    let body = json!({"machineName": machine, "context": context});
    let (status, reply) =
        server.http("POST", "/api/components/RelayComponent/instances", Some(&body)).await;
    assert_eq!(status, 201, "{reply}");
    reply["instanceId"].as_str().expect("instanceId").to_owned()
}

async fn send(server: &TestServer, instance: &str, event: &str) {
    let path = format!("/api/instances/{instance}/events");
    let (status, reply) = server.http("POST", &path, Some(&json!({"type": event}))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"], "transitioned", "{reply}");
}

/// A Relay aimed at `target`, forwarded: its PING becomes a message.
async fn forward_to(server: &TestServer, target: &str) -> String {
    let relay = create(server, "Relay", json!({"target": target})).await;
    send(server, &relay, "FORWARD").await;
    relay
}

/// The dead-letter list once it has `count` items.
async fn dead_letters(server: &TestServer, count: usize) -> Vec<Value> {
    eventually(|| async {
        let (status, page) = server.http("GET", "/api/dead-letters", None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        (items.len() == count).then_some(items)
    })
    .await
    .unwrap_or_else(|| panic!("the dead-letter list never had {count} item(s)"))
}

#[tokio::test]
async fn a_refused_message_is_listed_fails_again_then_applies_once_the_cause_is_fixed() {
    let server = relay_server(ServerConfig::default()).await;
    let sink = create(&server, "Sink", json!({})).await;
    let relay = forward_to(&server, &sink).await;

    let items = dead_letters(&server, 1).await;
    let letter = &items[0];
    let id = letter["messageId"].as_str().expect("messageId").to_owned();
    assert_eq!(letter["component"], "RelayComponent");
    assert_eq!(letter["kind"], "rejected");
    assert_eq!(letter["action"], "send");
    assert_eq!(letter["event"], "PING");
    assert_eq!(letter["instanceId"], sink.as_str());
    assert!(letter["reason"].as_str().is_some_and(|reason| !reason.is_empty()), "{letter}");
    assert!(letter["attempts"].as_u64().is_some_and(|attempts| attempts >= 1), "{letter}");
    assert!(letter["deadAt"].as_i64().is_some_and(|at| at > 0), "{letter}");
    assert_eq!(letter["message"]["id"], id.as_str());
    assert_eq!(letter["message"]["body"]["kind"], "send");
    assert_eq!(letter["message"]["sourceInstance"], relay.as_str());

    let (status, one) = server.http("GET", &format!("/api/dead-letters/{id}"), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one, letter);

    // The Sink still refuses PING: the replay fails again and the letter is back.
    let replay = format!("/api/dead-letters/{id}/replay");
    let (status, reply) = server.http("POST", &replay, None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["messageId"], id.as_str());
    assert_eq!(reply["outcome"], "dead_again", "{reply}");
    assert_eq!(reply["deadLetter"]["kind"], "rejected");
    assert_eq!(dead_letters(&server, 1).await[0]["messageId"], id.as_str());

    // Fix the cause, replay: the PING is applied and the list is empty.
    send(&server, &sink, "OPEN").await;
    let (status, reply) = server.http("POST", &replay, None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"], "delivered", "{reply}");
    assert!(reply.get("deadLetter").is_none(), "{reply}");
    let (_, instance) = server.http("GET", &format!("/api/instances/{sink}"), None).await;
    assert_eq!(instance["instance"]["currentState"], "Pinged", "{instance}");
    dead_letters(&server, 0).await;
    let (status, body) = server.call("GET", &format!("/api/dead-letters/{id}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_dead_letter");
    let (status, body) = server.call("POST", &replay, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_dead_letter");

    // One dead-lettering at the forward, one at the failed replay; both replays redelivered.
    let (status, text) = server.call("GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap_or_default();
    for line in [
        "xcomponent_messages_dead_lettered_total 2",
        "xcomponent_messages_redelivered_total 2",
        "xcomponent_messages_duplicates_total 0",
        "xcomponent_messages_retried_total 0",
        "xcomponent_messages_resent_total 0",
    ] {
        assert!(text.lines().any(|metric| metric == line), "{line} in:\n{text}");
    }
    assert!(text.contains("# HELP xcomponent_messages_dead_lettered_total"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn undeliverable_messages_are_paged_and_discarded() {
    let server = relay_server(ServerConfig::default()).await;
    let nobody = "0190a6f2-0000-7000-8000-00000000dead";
    forward_to(&server, nobody).await;
    forward_to(&server, nobody).await;
    let items = dead_letters(&server, 2).await;
    assert!(items.iter().all(|item| item["kind"] == "undeliverable"), "{items:?}");
    assert!(items.iter().all(|item| item["instanceId"] == nobody), "{items:?}");
    let first = items[0]["messageId"].as_str().expect("id").to_owned();
    let second = items[1]["messageId"].as_str().expect("id").to_owned();

    let (status, page) = server.http("GET", "/api/dead-letters?limit=1", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["messageId"], first.as_str());
    assert_eq!(page["nextCursor"], first.as_str());
    for key in ["cursor", "after"] {
        let path = format!("/api/dead-letters?limit=1&{key}={first}");
        let (status, page) = server.http("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"][0]["messageId"], second.as_str(), "{key}");
        assert!(page.get("nextCursor").is_none(), "last page: {page}");
    }

    let (status, body) = server.http("DELETE", &format!("/api/dead-letters/{first}"), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.call("GET", &format!("/api/dead-letters/{first}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_dead_letter");
    let (status, body) = server.call("DELETE", &format!("/api/dead-letters/{first}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_dead_letter");
    assert_eq!(dead_letters(&server, 1).await[0]["messageId"], second.as_str());

    // Replaying while the target is still missing puts it straight back.
    let (status, reply) =
        server.http("POST", &format!("/api/dead-letters/{second}/replay"), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"], "dead_again", "{reply}");
    assert_eq!(reply["deadLetter"]["kind"], "undeliverable");

    let (status, body) = server.call("GET", "/api/dead-letters/not-a-uuid", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");
    let (status, body) = server.call("GET", "/api/dead-letters?cursor=nope", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "cursor");
    let (status, body) = server.call("GET", "/api/dead-letters?limit=0", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn replay_and_discard_need_the_token_reads_do_not() {
    let config = ServerConfig { token: Some("s3cret".to_owned()), ..ServerConfig::default() };
    let server = relay_server(config).await;
    let (status, _) = server.call("GET", "/api/dead-letters", None).await;
    assert_eq!(status, StatusCode::OK);
    let missing = "0190a6f2-0000-7000-8000-000000000001";
    for (method, path) in [
        ("POST", format!("/api/dead-letters/{missing}/replay")),
        ("DELETE", format!("/api/dead-letters/{missing}")),
    ] {
        let (status, body) = server.call(method, &path, None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, body) =
            server.call_with(method, &path, None, &[("authorization", "Bearer s3cret")]).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_dead_letter");
    }
    let (_, document) = server.call("GET", "/openapi.json", None).await;
    let paths = &document["paths"];
    assert!(paths["/api/dead-letters"]["get"].is_object(), "{paths}");
    assert!(paths["/api/dead-letters/{id}"]["get"].is_object(), "{paths}");
    assert!(paths["/api/dead-letters/{id}"]["delete"]["security"].is_array(), "{paths}");
    assert!(paths["/api/dead-letters/{id}/replay"]["post"]["security"].is_array(), "{paths}");
    assert!(document["components"]["schemas"]["DeadLetterDto"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn without_a_store_dead_letters_are_refused_with_a_clear_code() {
    let server =
        TestServer::start_with_handlers(&[RELAY], None, ServerConfig::default(), handlers()).await;
    let id = "0190a6f2-0000-7000-8000-000000000001";
    for (method, path) in [
        ("GET", "/api/dead-letters".to_owned()),
        ("GET", format!("/api/dead-letters/{id}")),
        ("POST", format!("/api/dead-letters/{id}/replay")),
        ("DELETE", format!("/api/dead-letters/{id}")),
    ] {
        let (status, body) = server.call(method, &path, None).await;
        assert_error(status, &body, StatusCode::CONFLICT, "store_required");
    }
    server.stop().await;
}
