//! Other web pages are kept out, over real sockets: a cross-origin page cannot open `/ws` or
//! `/socket.io/`, a foreign `Host` is refused on loopback (DNS rebinding), the API token is
//! needed on the live feeds when one is set, and no response may be framed.

mod common;

use common::{TestServer, raw_request};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use xcomponent_core::store::EventStore;
use xcomponent_server::{Cors, ServerConfig};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn server(config: ServerConfig) -> TestServer {
    let store: Arc<dyn EventStore> = Arc::new(xcomponent_store::MemoryStore::new());
    TestServer::start(&[common::ORDER, common::PAYMENT], Some(store), config).await
}

/// The HTTP status of a WebSocket handshake to `path` with extra headers (101 when it opens).
async fn handshake(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request =
        format!("ws://{}{path}", server.addr).into_client_request().expect("ws request");
    for (name, value) in headers {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        request.headers_mut().insert(name, value.parse().expect("header value"));
    }
    match connect_async(request).await {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            response.status().as_u16()
        }
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake to {path} failed without an HTTP answer: {other}"),
    }
}

/// A plain request with the given extra header lines.
async fn get(server: &TestServer, path: &str, extra: &str) -> common::RawResponse {
    let mut stream = common::connect_from(LOCAL, server.addr).await.expect("connect");
    let host = if extra.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        format!("\r\nHost: {}", server.addr)
    };
    raw_request(&mut stream, &format!("GET {path} HTTP/1.1{host}{extra}")).await
}

#[tokio::test]
async fn cross_origin_pages_cannot_open_the_live_feeds() {
    let server = server(ServerConfig {
        cors: Cors::Origins(vec!["https://app.example".to_owned()]),
        ..ServerConfig::default()
    })
    .await;
    let own = format!("http://{}", server.addr);
    assert_eq!(handshake(&server, "/ws", &[("origin", "http://evil.example")]).await, 403);
    assert_eq!(handshake(&server, "/ws", &[("origin", "null")]).await, 403);
    assert_eq!(handshake(&server, "/ws", &[("origin", &own)]).await, 101, "same origin");
    assert_eq!(handshake(&server, "/ws", &[("origin", "https://app.example")]).await, 101);
    assert_eq!(handshake(&server, "/ws", &[]).await, 101, "no Origin: not a browser");

    let polling = "/socket.io/?EIO=4&transport=polling";
    let refused = get(&server, polling, "\r\nOrigin: http://evil.example").await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.json()["code"], "bad_origin");
    assert!(
        refused.json()["error"].as_str().is_some_and(|text| text.contains("evil.example")),
        "{refused:?}"
    );
    let evil_ws = "/socket.io/?EIO=4&transport=websocket";
    assert_eq!(handshake(&server, evil_ws, &[("origin", "http://evil.example")]).await, 403);
    let allowed = get(&server, polling, &format!("\r\nOrigin: {own}")).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_loopback() {
    let server = server(ServerConfig {
        allowed_hosts: vec!["box.lan".to_owned()],
        ..ServerConfig::default()
    })
    .await;
    let port = server.addr.port();
    let rebound = get(&server, "/api/components", &format!("\r\nHost: evil.example:{port}")).await;
    assert_eq!(rebound.status, 403, "{rebound:?}");
    assert_eq!(rebound.json()["code"], "bad_host");
    let dashboard = get(&server, "/dashboard.html", "\r\nHost: evil.example").await;
    assert_eq!(dashboard.status, 403);
    let ws = handshake(&server, "/ws", &[("host", &format!("evil.example:{port}"))]).await;
    assert_eq!(ws, 403);
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "box.lan".to_owned()] {
        let ok = get(&server, "/api/components", &format!("\r\nHost: {host}")).await;
        assert_eq!(ok.status, 200, "Host {host}: {ok:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_token_is_needed_on_the_live_feeds() {
    let server =
        server(ServerConfig { token: Some("s3cret".to_owned()), ..ServerConfig::default() }).await;
    assert_eq!(handshake(&server, "/ws", &[]).await, 401);
    assert_eq!(handshake(&server, "/ws?token=wrong", &[]).await, 401);
    assert_eq!(handshake(&server, "/ws?token=s3cret", &[]).await, 101);
    assert_eq!(handshake(&server, "/ws", &[("authorization", "Bearer s3cret")]).await, 101);
    let refused = get(&server, "/ws", "").await;
    assert_eq!(refused.json()["code"], "unauthorized");
    assert!(
        refused.json()["error"].as_str().is_some_and(|text| text.contains("?token=")),
        "{refused:?}"
    );

    let polling = "/socket.io/?EIO=4&transport=polling";
    assert_eq!(get(&server, polling, "").await.status, 401);
    let with_token = get(&server, &format!("{polling}&token=s3cret"), "").await;
    assert_eq!(with_token.status, 200, "{with_token:?}");
    assert_eq!(handshake(&server, "/socket.io/?EIO=4&transport=websocket", &[]).await, 401);

    // Reads of the REST API stay open.
    assert_eq!(get(&server, "/api/components", "").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn no_response_may_be_framed() {
    let server = server(ServerConfig::default()).await;
    for path in ["/dashboard.html", "/", "/api/components", "/health", "/api-docs/", "/nope"] {
        let response = get(&server, path, "").await;
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}: {response:?}");
        let policy = response.header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy:?}");
    }
    server.stop().await;
}
