//! REST routes and their error paths, through the real router: history, diagrams, OpenAPI,
//! metrics, dashboard, fallbacks, bearer token, CORS, running without a store.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestServer, assert_error, create_order};
use serde_json::json;
use xcomponent_server::{Cors, ServerConfig};

#[tokio::test]
async fn history_search_and_correlation() {
    let server = TestServer::standard().await;
    let order = create_order(&server, "H1").await;
    let (_, reply) = server
        .call(
            "POST",
            &format!("/api/instances/{order}/events"),
            Some(json!({"type": "SUBMIT", "payload": {"note": "first"}})),
        )
        .await;
    assert_eq!(reply["outcome"], "transitioned");
    let (status, body) = server.call("GET", &format!("/api/instances/{order}/history"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let history = body["history"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["eventType"], "INSTANCE_CREATED");
    assert_eq!(history[1]["eventType"], "SUBMIT");
    assert_eq!(history[1]["stateBefore"], "Created");
    assert_eq!(history[1]["stateAfter"], "PendingPayment");
    assert_eq!(history[1]["componentName"], "OrderComponent");
    assert_eq!(history[1]["machineName"], "Order");
    // The store keeps what the event changed; the API still shows the data after each event.
    assert_eq!(history[1]["changes"], json!({"set": {"note": "first"}}), "{body}");
    assert_eq!(history[0]["context"]["orderId"], "H1");
    assert_eq!(history[1]["context"]["orderId"], "H1", "data rebuilt from the creation");
    assert_eq!(history[1]["context"]["note"], "first");
    assert!(history[0]["context"].get("note").is_none());

    let (status, body) =
        server.call("GET", &format!("/api/history/instances/{order}/events"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["snapshot"]["currentState"], "PendingPayment");

    let payment = common::eventually(|| async {
        let (_, page) =
            server.call("GET", "/api/history/instances?machine=Payment&q=H1", None).await;
        page["items"]
            .as_array()
            .and_then(|list| list.first())
            .map(|item| item["instanceId"].as_str().unwrap_or_default().to_owned())
    })
    .await
    .expect("the payment was created and stored");
    let (status, body) =
        server.call("GET", &format!("/api/history/correlated/{order}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let instances: Vec<&str> = body["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|event| event["instanceId"].as_str())
        .collect();
    assert!(instances.contains(&order.as_str()) && instances.contains(&payment.as_str()), "{body}");
    let submit = body["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|event| event["eventType"] == "SUBMIT")
        .expect("the SUBMIT is in the chain");
    assert_eq!(submit["context"]["orderId"], "H1", "chain events carry the data after them");
    assert_eq!(submit["context"]["note"], "first");
    assert_eq!(body["correlationKey"], "correlationId");

    let (status, body) = server.call("GET", "/api/history/instances?status=weird", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = server.call("GET", "/api/history/instances?cursor=garbage", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, page) =
        server.call("GET", "/api/history/instances?limit=1&component=OrderComponent", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/instances/{unknown}/history"),
        format!("/api/history/instances/{unknown}/events"),
        format!("/api/history/correlated/{unknown}"),
    ] {
        let (status, body) = server.call("GET", &path, None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_instance");
    }
    let (status, body) = server.call("GET", "/api/history/correlated/xyz", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_id");
    server.stop().await;
}

#[tokio::test]
async fn diagrams() {
    let server = TestServer::standard().await;
    let (status, body) = server
        .call("GET", "/api/components/OrderComponent/diagrams/Order?currentState=Created", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["diagram"].as_str().is_some_and(|text| text.starts_with("stateDiagram-v2")));
    assert_eq!(body["terminalStates"], json!(["Completed", "Cancelled"]));
    let available: Vec<&str> = body["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["available"] == true)
        .filter_map(|t| t["event"].as_str())
        .collect();
    assert_eq!(available, ["SUBMIT", "CANCEL"]);
    let (status, body) = server.call("GET", "/api/machines/Payment/diagram", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["componentName"], "PaymentComponent");

    let (status, body) = server
        .call("GET", "/api/components/OrderComponent/diagrams/Order?currentState=Mars", None)
        .await;
    assert_eq!(status, StatusCode::OK, "an unknown state highlights nothing: {body}");
    assert!(
        body["transitions"].as_array().into_iter().flatten().all(|t| t["available"] == false),
        "{body}"
    );
    let (status, body) =
        server.call("GET", "/api/components/OrderComponent/diagrams/Ghost", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_machine");
    let (status, body) = server.call("GET", "/api/components/Nope/diagrams/Order", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_component");
    let (status, body) = server.call("GET", "/api/machines/Ghost/diagram", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_machine");
    server.stop().await;
}

#[tokio::test]
async fn openapi_docs_metrics_dashboard_and_fallbacks() {
    let server = TestServer::standard().await;
    let (status, document) = server.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/health",
        "/metrics",
        "/ws",
        "/api/runtimes",
        "/api/components",
        "/api/components/{name}",
        "/api/components/{name}/machines",
        "/api/components/{name}/instances",
        "/api/components/{name}/broadcast",
        "/api/components/{name}/instances/{id}/events",
        "/api/components/{name}/diagrams/{machine}",
        "/api/machines/{machine}/diagram",
        "/api/instances",
        "/api/instances/{id}",
        "/api/instances/{id}/events",
        "/api/instances/{id}/trigger",
        "/api/instances/{id}/history",
        "/api/history/instances",
        "/api/history/instances/{id}/events",
        "/api/history/correlated/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert!(
        paths["/api/components/{name}/instances"]["post"].is_object()
            && paths["/api/components/{name}/instances"]["get"].is_object()
    );
    let (status, copy) = server.call("GET", "/api-docs/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(copy, document);
    let (status, page) = server.call("GET", "/api-docs/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().is_some_and(|html| html.contains("swagger")), "the viewer is bundled");

    let order = create_order(&server, "M1").await;
    server
        .call("POST", &format!("/api/instances/{order}/events"), Some(json!({"type": "CANCEL"})))
        .await;
    let text = common::eventually(|| async {
        let (_, text) = server.call("GET", "/metrics", None).await;
        let text = text.as_str().unwrap_or_default().to_owned();
        text.contains(r#"xcomponent_transitions_total{component="OrderComponent",machine="Order",event="CANCEL"} 1"#).then_some(text)
    })
    .await
    .expect("transition counted");
    assert!(text.contains("xcomponent_http_requests_total{method=\"POST\",route=\"/api/instances/{id}/events\",status=\"200\"}"), "{text}");
    assert!(text.contains("xcomponent_http_request_duration_seconds_bucket"), "{text}");
    assert!(
        text.contains(
            r#"xcomponent_live_instances{component="HelpDesk",machine="Desk",state="Open"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("xcomponent_instances_finished_total"), "{text}");
    assert!(!text.contains(&order), "no instance id in labels");

    for path in ["/", "/dashboard.html"] {
        let (status, html) = server.call("GET", path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.as_str().is_some_and(|html| html.contains("<html")), "{path}");
    }
    let request = Request::builder().uri("/app.js").body(Body::empty()).expect("request");
    let response = tower::ServiceExt::oneshot(server.app.clone(), request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"].to_str().is_ok_and(|kind| kind.contains("javascript"))
    );

    let (status, body) = server.call("GET", "/api/nothing/here", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.call("GET", "/no-such-file.js", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.call("DELETE", "/api/components", None).await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn bearer_token_guards_mutations_only() {
    let store: std::sync::Arc<dyn xcomponent_core::store::EventStore> =
        std::sync::Arc::new(xcomponent_store::MemoryStore::new());
    let config = ServerConfig { token: Some("s3cret".to_owned()), ..ServerConfig::default() };
    let server = TestServer::start(&[common::ORDER], Some(store), config).await;
    let path = "/api/components/OrderComponent/instances";
    let (status, body) = server.call("POST", path, Some(json!({}))).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) =
        server.call_with("POST", path, Some(json!({})), &[("authorization", "Bearer wrong")]).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let order = json!({"context": {"orderId": "T-1", "amount": 1}});
    let (status, body) =
        server.call_with("POST", path, Some(order), &[("authorization", "Bearer s3cret")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = server.call("GET", "/api/instances", None).await;
    assert_eq!(status, StatusCode::OK, "reads stay open");
    let (_, document) = server.call("GET", "/openapi.json", None).await;
    assert!(document["components"]["securitySchemes"]["bearerAuth"].is_object());
    assert!(document["paths"]["/api/instances/{id}/events"]["post"]["security"].is_array());
    server.stop().await;
}

#[tokio::test]
async fn cors_is_off_unless_configured() {
    let server = TestServer::standard().await;
    let request = Request::builder()
        .uri("/api/components")
        .header("origin", "https://elsewhere.example")
        .body(Body::empty())
        .expect("request");
    let response = tower::ServiceExt::oneshot(server.app.clone(), request).await.expect("answer");
    assert!(response.headers().get("access-control-allow-origin").is_none());
    server.stop().await;

    let config = ServerConfig {
        cors: Cors::Origins(vec!["https://app.example".to_owned()]),
        ..ServerConfig::default()
    };
    let server = TestServer::start(&[common::ORDER], None, config).await;
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/api/components/OrderComponent/instances")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .expect("request");
    let response = tower::ServiceExt::oneshot(server.app.clone(), preflight).await.expect("answer");
    assert_eq!(
        response.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_store_history_is_empty_but_routes_answer() {
    let server = TestServer::start(&[common::ORDER], None, ServerConfig::default()).await;
    let order = create_order(&server, "NS").await;
    let (status, body) = server.call("GET", &format!("/api/instances/{order}/history"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["history"], json!([]));
    let (status, body) = server.call("GET", "/api/history/instances", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["message"].is_string());
    let (_, health) = server.call("GET", "/health", None).await;
    assert_eq!(health["database"], false);
    server.stop().await;
}
