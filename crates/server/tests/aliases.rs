//! The original APIServer's routes, each against the route of ours it aliases: the same status
//! and the same JSON for the same question; the OpenAPI document lists each under `Aliases`.

mod common;

use axum::http::StatusCode;
use common::{TestServer, assert_error, create_order, eventually};
use serde_json::{Value, json};

/// Calls `alias` and `twin` until they answer the same (flows in other instances may move
/// counts between two calls), then returns that answer.
async fn same_answer(server: &TestServer, method: &str, alias: &str, twin: &str) -> Value {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (alias_status, alias_body) = server.call(method, alias, None).await;
        let (twin_status, twin_body) = server.call(method, twin, None).await;
        assert_eq!(alias_status, twin_status, "{alias} vs {twin}: {alias_body} / {twin_body}");
        if alias_body == twin_body {
            return alias_body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{alias} and {twin} never agreed: {alias_body} / {twin_body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The reply to a sent event, without what names the instance.
fn without_ids(mut reply: Value) -> Value {
    if let Value::Object(map) = &mut reply {
        map.remove("instanceId");
        map.remove("id");
        map.remove("eventId");
    }
    reply
}

#[tokio::test]
async fn component_scoped_aliases_answer_as_their_twins() {
    let server = TestServer::standard().await;
    let order = create_order(&server, "ALIAS-1").await;

    let body = same_answer(
        &server,
        "GET",
        &format!("/api/OrderComponent/instance/{order}"),
        &format!("/api/instances/{order}"),
    )
    .await;
    assert_eq!(body["instance"]["id"], order.as_str());

    let transitions = same_answer(
        &server,
        "GET",
        &format!("/api/OrderComponent/instance/{order}/transitions"),
        &format!("/api/instances/{order}/transitions"),
    )
    .await;
    assert_eq!(transitions["transitions"], body["instance"]["availableTransitions"]);
    assert!(transitions["transitions"].as_array().is_some_and(|list| !list.is_empty()));

    let history = same_answer(
        &server,
        "GET",
        &format!("/api/OrderComponent/instance/{order}/history"),
        &format!("/api/instances/{order}/history"),
    )
    .await;
    assert_eq!(history["history"][0]["eventType"], "INSTANCE_CREATED", "{history}");
    same_answer(
        &server,
        "GET",
        &format!("/api/cross-component/instance/{order}/history"),
        &format!("/api/instances/{order}/history"),
    )
    .await;

    let page = same_answer(
        &server,
        "GET",
        "/api/HelpDesk/instances",
        "/api/components/HelpDesk/instances",
    )
    .await;
    assert!(page.get("items").is_some() && page.get("instances").is_none(), "{page}");
    same_answer(
        &server,
        "GET",
        "/api/OrderComponent/instances?limit=1",
        "/api/components/OrderComponent/instances?limit=1",
    )
    .await;
    let definition = same_answer(
        &server,
        "GET",
        "/api/OrderComponent/definition",
        "/api/components/OrderComponent",
    )
    .await;
    assert_eq!(definition["component"]["name"], "OrderComponent");
    let monitor = same_answer(
        &server,
        "GET",
        "/api/monitor/OrderComponent",
        "/api/components/OrderComponent/machines",
    )
    .await;
    assert_eq!(monitor["componentName"], "OrderComponent");
    server.stop().await;
}

#[tokio::test]
async fn creating_and_sending_through_the_aliases_does_what_the_twins_do() {
    let server = TestServer::standard().await;
    let context = json!({"orderId": "ALIAS-2", "amount": 42, "paymentMethod": "visa"});
    let (alias_status, created) = server
        .call("POST", "/api/OrderComponent/Order/instance", Some(json!({"context": context})))
        .await;
    let (twin_status, twin) = server
        .call(
            "POST",
            "/api/components/OrderComponent/instances",
            Some(json!({"machineName": "Order", "context": context})),
        )
        .await;
    assert_eq!((alias_status, twin_status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(without_ids(created.clone()), without_ids(twin.clone()));
    let via_alias = created["instanceId"].as_str().expect("instanceId");
    let via_twin = twin["instanceId"].as_str().expect("instanceId");
    let (_, detail) = server.call("GET", &format!("/api/instances/{via_alias}"), None).await;
    assert_eq!(detail["instance"]["context"], context, "the alias passed the context");

    let (alias_status, alias_reply) = server
        .call(
            "POST",
            &format!("/api/OrderComponent/instance/{via_alias}/event"),
            Some(json!({"type": "SUBMIT", "payload": {}, "timestamp": 1_700_000_000_000_u64})),
        )
        .await;
    let (twin_status, twin_reply) = server
        .call(
            "POST",
            &format!("/api/components/OrderComponent/instances/{via_twin}/events"),
            Some(json!({"type": "SUBMIT", "payload": {}, "timestamp": 1_700_000_000_000_u64})),
        )
        .await;
    assert_eq!(alias_status, StatusCode::OK, "{alias_reply}");
    assert_eq!(twin_status, StatusCode::OK, "{twin_reply}");
    assert_eq!(without_ids(alias_reply.clone()), without_ids(twin_reply));
    assert_eq!(alias_reply["outcome"], "transitioned", "{alias_reply}");

    // Errors are the twins' errors too.
    let (status, body) = server
        .call("POST", "/api/OrderComponent/Invoice/instance", Some(json!({"context": {}})))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_machine");
    let (status, body) =
        server.call("GET", &format!("/api/NoSuch/instance/{via_alias}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_component");
    let (status, body) =
        server.call("GET", &format!("/api/PaymentComponent/instance/{via_alias}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_instance");
    server.stop().await;
}

#[tokio::test]
async fn causality_follows_an_event_across_components() {
    let server = TestServer::standard().await;
    let order = create_order(&server, "ALIAS-3").await;
    let (status, _) = server
        .call("POST", &format!("/api/instances/{order}/events"), Some(json!({"type": "SUBMIT"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let submit = eventually(|| async {
        let (_, history) =
            server.call("GET", &format!("/api/instances/{order}/history"), None).await;
        history["history"].as_array()?.iter().find(|event| event["eventType"] == "SUBMIT").cloned()
    })
    .await
    .expect("SUBMIT is stored");
    let (event, chain) =
        (submit["id"].as_str().expect("id"), submit["correlationId"].as_str().expect("chain"));
    let query = format!("?correlationId={chain}");
    let twin = format!("/api/history/causality/{event}{query}");
    let caused = eventually(|| async {
        let (_, body) = server.call("GET", &twin, None).await;
        let payment = body["events"]
            .as_array()?
            .iter()
            .any(|caused| caused["componentName"] == "PaymentComponent");
        payment.then_some(body)
    })
    .await
    .expect("the payment's creation is among what SUBMIT caused");
    assert_eq!(caused["events"][0]["id"], event, "the event itself comes first");
    assert_eq!(caused["count"], caused["events"].as_array().map_or(0, Vec::len));
    same_answer(&server, "GET", &format!("/api/OrderComponent/causality/{event}{query}"), &twin)
        .await;
    same_answer(&server, "GET", &format!("/api/cross-component/causality/{event}{query}"), &twin)
        .await;

    // Without the chain, an event id is not found, and the error says what to add.
    let (status, body) = server.call("GET", &format!("/api/history/causality/{event}"), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_event");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("?correlationId=")), "{body}");
    // A chain id alone gives the whole chain: the order's creation first.
    let (status, body) = server.call("GET", &format!("/api/history/causality/{chain}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["eventType"], "INSTANCE_CREATED");
    assert_eq!(body["events"][0]["instanceId"], order.as_str());
    server.stop().await;
}

#[tokio::test]
async fn cross_component_events_is_refused_with_what_to_use_instead() {
    let server = TestServer::standard().await;
    let (status, body) = server.call("GET", "/api/cross-component/events", None).await;
    assert_error(status, &body, StatusCode::NOT_IMPLEMENTED, "not_provided");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("/api/history/instances") && message.contains("/api/history/correlated/")
    );
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_alias() {
    let server = TestServer::standard().await;
    let (_, document) = server.call("GET", "/openapi.json", None).await;
    for (path, method) in [
        ("/api/{component}/instance/{id}", "get"),
        ("/api/{component}/instance/{id}/event", "post"),
        ("/api/{component}/instance/{id}/transitions", "get"),
        ("/api/{component}/instance/{id}/history", "get"),
        ("/api/{component}/instances", "get"),
        ("/api/{component}/definition", "get"),
        ("/api/{component}/{machine}/instance", "post"),
        ("/api/{component}/causality/{eventId}", "get"),
        ("/api/cross-component/causality/{eventId}", "get"),
        ("/api/cross-component/events", "get"),
        ("/api/cross-component/instance/{id}/history", "get"),
        ("/api/monitor/{component}", "get"),
    ] {
        let operation = &document["paths"][path][method];
        assert_eq!(operation["tags"], json!(["Aliases"]), "{method} {path}: {operation}");
        let description = operation["description"].as_str().unwrap_or_default();
        assert!(description.contains("The original APIServer's route"), "{path}: {description}");
    }
    server.stop().await;
}
