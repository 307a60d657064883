//! Test harness: a runtime with the fixture components, the real server on 127.0.0.1:0, a
//! minimal HTTP/1.1 client over a real socket, and `oneshot` calls into the same router.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;
use xcomponent_core::definition::Definition;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{Handlers, Runtime, RuntimeBuilder, RuntimeHandle, RuntimeOptions};
use xcomponent_server::{AppState, ServerConfig, router};

pub const ORDER: &str = include_str!("../fixtures/order.yaml");
pub const PAYMENT: &str = include_str!("../fixtures/payment.yaml");
pub const DESK: &str = include_str!("../fixtures/desk.yaml");
pub const RELAY: &str = include_str!("../fixtures/relay.yaml");

/// How long polls wait for asynchronous effects.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn definition(text: &str) -> Definition {
    let loaded = match xcomponent_core::load::parse_component(text, "fixture.yaml") {
        Ok(loaded) => loaded,
        Err(diagnostics) => panic!("fixture does not parse: {diagnostics:?}"),
    };
    match Definition::compile(loaded.component) {
        Ok(definition) => definition,
        Err(errors) => panic!("fixture does not compile: {errors:?}"),
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub app: axum::Router,
    runtime: Option<Runtime>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(
        yamls: &[&str],
        store: Option<Arc<dyn EventStore>>,
        config: ServerConfig,
    ) -> TestServer {
        TestServer::start_with_handlers(yamls, store, config, Handlers::new()).await
    }

    /// `start` with business handlers (for `triggeredMethod`, `onEntry`, `onExit`).
    pub async fn start_with_handlers(
        yamls: &[&str],
        store: Option<Arc<dyn EventStore>>,
        config: ServerConfig,
        handlers: Handlers,
    ) -> TestServer {
        let mut builder = RuntimeBuilder::new()
            .options(RuntimeOptions { shards: 2, ..RuntimeOptions::default() })
            .handlers(handlers);
        if let Some(store) = store {
            builder = builder.store(store);
        }
        for yaml in yamls {
            builder = builder.component(definition(yaml));
        }
        let runtime = builder.start().await.expect("runtime starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state =
            AppState::new(Arc::new(runtime.handle()), ServerConfig { port: addr.port(), ..config })
                .await;
        let app = router(state.clone());
        let mut shutdown = state.shutdown_signal();
        let server = tokio::spawn(xcomponent_server::serve(listener, state.clone(), async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }));
        TestServer { addr, state, app, runtime: Some(runtime), server }
    }

    /// Order, payment and help desk components, memory store.
    pub async fn standard() -> TestServer {
        let store: Arc<dyn EventStore> = Arc::new(xcomponent_store::MemoryStore::new());
        TestServer::start(&[ORDER, PAYMENT, DESK], Some(store), ServerConfig::default()).await
    }

    /// The runtime's handle.
    pub fn handle(&self) -> RuntimeHandle {
        match &self.runtime {
            Some(runtime) => runtime.handle(),
            None => panic!("the runtime was stopped"),
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes sockets, stores everything and stops the runtime.
    pub async fn stop(mut self) {
        self.state.begin_shutdown();
        let _ = tokio::time::timeout(WAIT, &mut self.server).await;
        if let Some(runtime) = self.runtime.take() {
            let _ = runtime.handle().flush().await;
            runtime.shutdown().await;
        }
    }

    /// A request through the router in process (no socket).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let (status, bytes) = self.raw(request).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// A request through the router, returning the raw body.
    pub async fn raw(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.expect("router answers");
        let status = response.status();
        let bytes =
            axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024).await.expect("body");
        (status, bytes.to_vec())
    }

    /// A request over a real TCP connection.
    pub async fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(self.addr, method, path, body).await
    }
}

/// Minimal HTTP/1.1 client: one request per connection, `Connection: close`, body read to EOF.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if body.is_some() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 =
        head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` until it returns `Some` or `WAIT` passes.
pub async fn eventually<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh temporary directory (removed by `TempDir::drop`).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("xcai-server-{label}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates an Order (the fixture's entry machine) over HTTP and returns its id.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub async fn create_order(server: &TestServer, order_id: &str) -> String {
    let body = serde_json::json!({"machineName": "Order", "context": {"orderId": order_id, "amount": 42, "paymentMethod": "visa"}});
    let (status, reply) =
        server.call("POST", "/api/components/OrderComponent/instances", Some(body)).await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{reply}");
    assert_eq!(reply["componentName"], "OrderComponent");
    reply["instanceId"].as_str().expect("instanceId").to_owned()
}

/// Checks a JSON error reply: status, stable code, and a non-empty message.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn assert_error(
    status: axum::http::StatusCode,
    body: &serde_json::Value,
    expected: axum::http::StatusCode,
    code: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|text| !text.is_empty()), "{body}");
}

/// An HTTP response read to EOF: status, lower-cased header lines, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
    }
}

/// A TCP connection to `addr` from the local address `source` (any `127.x.y.z` works on Linux,
/// so tests can act as several clients).
pub async fn connect_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Sends `head` (request line and headers, without the blank line), `Connection: close`, and
/// reads the response to EOF.
pub async fn raw_request(stream: &mut TcpStream, head: &str) -> RawResponse {
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await;
    parse_response(&String::from_utf8_lossy(&response))
}

pub fn parse_response(text: &str) -> RawResponse {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    RawResponse { status, headers, body }
}
