//! REST routes and their error paths, through the real router: health, components,
//! instances, events, broadcast. (History, diagrams, docs, metrics, auth: `api_ops.rs`.)

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestServer, assert_error, create_order};
use serde_json::{Value, json};

#[tokio::test]
async fn health_and_runtimes_report_the_process() {
    let server = TestServer::standard().await;
    let (status, health) = server.call("GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mode"], "monolith");
    assert_eq!(health["database"], true);
    assert_eq!(health["databaseType"], "memory");
    assert_eq!(health["connectedRuntimes"], 1);
    assert_eq!(health["components"], json!(["OrderComponent", "PaymentComponent", "HelpDesk"]));
    let (status, runtimes) = server.call("GET", "/api/runtimes", None).await;
    assert_eq!(status, StatusCode::OK);
    let list = runtimes["runtimes"].as_array().expect("runtimes");
    assert_eq!(list.len(), 1, "one process hosts every component");
    assert_eq!(list[0]["port"], server.addr.port());
    assert_eq!(list[0]["components"], json!(["OrderComponent", "PaymentComponent", "HelpDesk"]));
    server.stop().await;
}

#[tokio::test]
async fn components_and_machines() {
    let server = TestServer::standard().await;
    let (status, body) = server.call("GET", "/api/components", None).await;
    assert_eq!(status, StatusCode::OK);
    let components = body["components"].as_array().expect("components");
    assert_eq!(components.len(), 3);
    let desk =
        components.iter().find(|component| component["name"] == "HelpDesk").expect("HelpDesk");
    assert_eq!(desk["instanceCount"], 1, "the singleton entry point is created at start");
    assert_eq!(desk["machineCount"], 1);
    assert!(desk["stateMachines"][0]["states"].is_array());

    let (status, body) = server.call("GET", "/api/components/OrderComponent", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["component"]["name"], "OrderComponent");
    assert_eq!(body["component"]["entryMachine"], "Order");

    let (status, body) = server.call("GET", "/api/components/OrderComponent/machines", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["machines"][0]["name"], "Order");
    assert_eq!(body["machines"][0]["isEntryMachine"], true);

    for path in
        ["/api/components/Nope", "/api/components/Nope/machines", "/api/components/Nope/instances"]
    {
        let (status, body) = server.call("GET", path, None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_component");
    }
    server.stop().await;
}

#[tokio::test]
async fn create_instance_and_its_errors() {
    let server = TestServer::standard().await;
    create_order(&server, "O1").await;
    let path = "/api/components/OrderComponent/instances";
    // machineName defaults to the entry machine.
    let context = json!({"orderId": "O2", "amount": 1});
    let (status, body) = server.call("POST", path, Some(json!({"context": context}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["machineName"], "Order");
    // The machine's contextSchema holds: a missing required field or another type is a 422
    // naming the field and the rule.
    let (status, body) = server.call("POST", path, Some(json!({}))).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "context_schema");
    assert_eq!(body["field"], "context.orderId", "{body}");
    assert!(body["error"].as_str().is_some_and(|text| text.contains("is required")), "{body}");
    let context = json!({"orderId": "O3", "amount": "12"});
    let (status, body) = server.call("POST", path, Some(json!({"context": context}))).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "context_schema");
    assert_eq!(body["field"], "context.amount", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("must be a number (contextSchema type number)"), "{body}");

    let (status, body) =
        server.call("POST", path, Some(json!({"machineName": "Order", "context": [1, 2]}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "context");
    let (status, body) = server.call("POST", path, Some(json!({"machineName": 7}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "machineName");
    let (status, body) = server.call("POST", path, Some(json!({"machineName": "Ghost"}))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_machine");
    let (status, body) =
        server.call("POST", "/api/components/Nope/instances", Some(json!({}))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_component");
    let (status, body) = server
        .call("POST", "/api/components/HelpDesk/instances", Some(json!({"machineName": "Desk"})))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "singleton_exists");

    let request = |body: &str, content_type: &str| {
        Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .expect("request")
    };
    let (status, bytes) = server.raw(request("{not json", "application/json")).await;
    let body: Value = serde_json::from_slice(&bytes).expect("json error");
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, bytes) = server.raw(request("[null, null]", "application/json")).await;
    let body: Value = serde_json::from_slice(&bytes).expect("json error");
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, bytes) = server.raw(request("{}", "text/plain")).await;
    let body: Value = serde_json::from_slice(&bytes).expect("json error");
    assert_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = format!("{{\"context\": {{\"blob\": \"{}\"}}}}", "x".repeat(2 * 1024 * 1024));
    let (status, bytes) = server.raw(request(&huge, "application/json")).await;
    let body: Value = serde_json::from_slice(&bytes).expect("json error");
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    server.stop().await;
}

#[tokio::test]
async fn list_filter_and_page_instances() {
    let server = TestServer::standard().await;
    let mut ids = Vec::new();
    for index in 0..5 {
        ids.push(create_order(&server, &format!("PAGE-{index}")).await);
    }
    let (status, page) =
        server.call("GET", "/api/instances?component=OrderComponent&limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert!(page.get("instances").is_none(), "one page shape, {{items, nextCursor}}: {page}");
    let mut seen: Vec<String> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| item["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut cursor = page["nextCursor"].as_str().map(str::to_owned);
    while let Some(next) = cursor {
        let (_, page) = server
            .call(
                "GET",
                &format!("/api/instances?component=OrderComponent&limit=2&cursor={next}"),
                None,
            )
            .await;
        seen.extend(
            page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| item["id"].as_str().unwrap_or_default().to_owned()),
        );
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ids, "pages cover every instance once, in creation order");

    let (_, page) =
        server.call("GET", "/api/instances?machine=Order&state=Created&q=page-3", None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["items"][0]["context"]["orderId"], "PAGE-3");
    assert_eq!(page["items"][0]["status"], "active");
    assert!(page["items"][0]["pendingTimeouts"].is_array());

    let (_, page) = server.call("GET", "/api/components/HelpDesk/instances", None).await;
    assert_eq!(page["items"][0]["machineName"], "Desk");
    assert_eq!(page["items"][0]["isEntryPoint"], true);

    let (status, body) = server.call("GET", "/api/instances?cursor=nope", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "cursor");
    let (status, body) = server.call("GET", "/api/instances?limit=many", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = server.call("GET", "/api/instances?limit=0", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "limit");
    let (status, body) = server.call("GET", "/api/history/instances?limit=501", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn get_one_instance() {
    let server = TestServer::standard().await;
    let (_, page) = server.call("GET", "/api/components/HelpDesk/instances", None).await;
    let desk = page["items"][0]["id"].as_str().expect("desk").to_owned();
    let (_, reply) = server
        .call("POST", &format!("/api/instances/{desk}/events"), Some(json!({"type": "TICKET"})))
        .await;
    assert_eq!(reply["newState"], "Busy");
    let (status, body) = server.call("GET", &format!("/api/instances/{desk}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let instance = &body["instance"];
    assert_eq!(instance["currentState"], "Busy");
    assert_eq!(instance["pendingTimeouts"][0]["event"], "GIVE_UP");
    assert_eq!(instance["pendingTimeouts"][0]["targetState"], "Open");
    assert!(
        instance["pendingTimeouts"][0]["remainingMs"].as_i64().is_some_and(|left| left > 500_000)
    );
    let events: Vec<&str> = instance["availableTransitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["event"].as_str())
        .collect();
    assert!(events.contains(&"NOTE") && events.contains(&"RESOLVE"), "{events:?}");

    let (status, body) = server.call("GET", "/api/instances/not-a-uuid", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");
    let (status, body) =
        server.call("GET", &format!("/api/instances/{}", uuid::Uuid::now_v7()), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_instance");
    server.stop().await;
}

#[tokio::test]
async fn send_events_in_every_form() {
    let server = TestServer::standard().await;
    let order = create_order(&server, "EV-1").await;
    let path = format!("/api/instances/{order}/events");
    // Ignored: says why and what is allowed now.
    let (status, reply) = server.call("POST", &path, Some(json!({"type": "SHIP"}))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["outcome"], "ignored");
    assert_eq!(reply["success"], false);
    assert_eq!(reply["currentState"], "Created");
    let allowed = reply["allowedEvents"].as_array().expect("allowedEvents");
    assert!(allowed.contains(&json!("SUBMIT")) && allowed.contains(&json!("CANCEL")), "{reply}");

    let (status, body) = server.call("POST", &path, Some(json!({"payload": {}}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "type");
    let (status, body) =
        server.call("POST", &path, Some(json!({"type": "SUBMIT", "payload": "x"}))).await;
    assert_eq!(body["field"], "payload");
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    for blank in ["", "  ", "\u{1f}"] {
        let (status, body) = server.call("POST", &path, Some(json!({"type": blank}))).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }

    let (status, body) =
        server.call("POST", &path, Some(json!({"type": null, "event": "SUBMIT"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "type");
    let (status, body) =
        server.call("POST", &path, Some(json!({"type": "SUBMIT", "event": null}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "event");

    // `{event: "TYPE"}` (the distributed dashboard's form), component-scoped route.
    let scoped = format!("/api/components/OrderComponent/instances/{order}/events");
    let (status, reply) = server
        .call("POST", &scoped, Some(json!({"event": "SUBMIT", "payload": {"note": "fast"}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["outcome"], "transitioned");
    assert_eq!(reply["success"], true);
    assert_eq!(reply["previousState"], "Created");
    assert_eq!(reply["newState"], "PendingPayment");
    assert_eq!(reply["status"], "active");

    let (status, body) = server
        .call(
            "POST",
            &format!("/api/components/PaymentComponent/instances/{order}/events"),
            Some(json!({"type": "X"})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_instance");
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/components/Nope/instances/{order}/events"),
            Some(json!({"type": "X"})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_component");

    // `{event: {type, payload}}` on /trigger.
    let (status, reply) = server
        .call(
            "POST",
            &format!("/api/instances/{order}/trigger"),
            Some(json!({"event": {"type": "PAYMENT_FAILED", "payload": {"why": "test"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["newState"], "Cancelled");
    assert_eq!(reply["status"], "completed");

    // Finished: 409 with the final state; never existed: 404; not an id: 400.
    let (status, body) = server.call("POST", &path, Some(json!({"type": "SHIP"}))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "instance_finished");
    assert!(body["error"].as_str().is_some_and(|text| text.contains("Cancelled")), "{body}");
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/instances/{}/events", uuid::Uuid::now_v7()),
            Some(json!({"type": "X"})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_instance");
    let (status, body) =
        server.call("POST", "/api/instances/42/trigger", Some(json!({"type": "X"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");

    // A finished instance is still shown, from the store.
    let (status, body) = server.call("GET", &format!("/api/instances/{order}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["instance"]["currentState"], "Cancelled");
    assert_eq!(body["instance"]["status"], "completed");
    assert_eq!(body["instance"]["live"], false);
    server.stop().await;
}

#[tokio::test]
async fn broadcast_reaches_matching_instances() {
    let server = TestServer::standard().await;
    for id in ["B1", "B2", "B3"] {
        create_order(&server, id).await;
    }
    let path = "/api/components/OrderComponent/broadcast";
    let body = json!({"machineName": "Order", "state": "Created", "event": "CANCEL", "filters": [{"property": "orderId", "value": "B2"}]});
    let (status, reply) = server.call("POST", path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["count"], 1);
    let body = json!({"machineName": "Order", "event": {"type": "CANCEL", "payload": {}}, "filters": [{"property": "orderId", "operator": "!==", "value": "B1"}]});
    let (_, reply) = server.call("POST", path, Some(body)).await;
    assert_eq!(reply["count"], 1, "B3 only: B2 has finished");

    let (status, body) =
        server.call("POST", path, Some(json!({"machineName": "Ghost", "event": "X"}))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_machine");
    let (status, body) = server
        .call("POST", path, Some(json!({"machineName": "Order", "state": "Nowhere", "event": "X"})))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_state");
    let (status, body) = server.call("POST", path, Some(json!({"machineName": "Order", "event": "X", "filters": [{"property": "a", "operator": "~", "value": 1}]}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        body["field"].as_str().is_some_and(|field| field.starts_with("filters[0].operator")),
        "{body}"
    );
    let (status, body) = server.call("POST", path, Some(json!({"event": "X"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(body["field"], "machineName");
    let (status, body) = server
        .call(
            "POST",
            "/api/components/Nope/broadcast",
            Some(json!({"machineName": "Order", "event": "X"})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_component");
    server.stop().await;
}
