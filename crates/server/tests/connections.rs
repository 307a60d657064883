//! Connection bounds over real sockets: an unanswered ping closes a WebSocket, a slow request
//! head and an idle keep-alive connection are closed, one address gets at most its share (of
//! open connections, and of new connections per window), the
//! reserve keeps `/health` and the dashboard reachable when the pool is full, an oversized
//! WebSocket message gets close 1009; and a well-behaved client is still served, without
//! errors, beside 1,000 misbehaving connections (fault injection; it prints its throughput).

mod common;

use common::{TestServer, connect_from, raw_request};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{WebSocketStream, client_async};
use xcomponent_core::store::EventStore;
use xcomponent_server::{ConnectionLimits, ServerConfig, WS_MAX_INCOMING};

/// The bad clients' address.
const BAD: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// A well-behaved client's address (Linux routes all of 127.0.0.0/8 to loopback).
const GOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn server(config: ServerConfig) -> TestServer {
    let store: Arc<dyn EventStore> = Arc::new(xcomponent_store::MemoryStore::new());
    TestServer::start(&[common::ORDER, common::PAYMENT], Some(store), config).await
}

fn limits(max: usize, reserve: usize, per_address: usize, header: Duration) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: max,
        reserve_connections: reserve,
        max_per_address: per_address,
        header_read_timeout: header,
        ..ConnectionLimits::default()
    }
}

async fn get(server: &TestServer, from: IpAddr, path: &str) -> common::RawResponse {
    let mut stream = connect_from(from, server.addr).await.expect("connect");
    raw_request(&mut stream, &format!("GET {path} HTTP/1.1\r\nHost: {}", server.addr)).await
}

/// A WebSocket to `/ws` over a connection from `from`.
async fn websocket(server: &TestServer, from: IpAddr) -> WebSocketStream<TcpStream> {
    let stream = connect_from(from, server.addr).await.expect("connect");
    let (socket, _) =
        client_async(format!("ws://{}/ws", server.addr), stream).await.expect("ws handshake");
    socket
}

/// Reads until the server's close frame; its code, or None if the socket ended without one.
async fn close_code(socket: &mut WebSocketStream<TcpStream>) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(common::WAIT, socket.next()).await.ok()?? {
            Ok(Message::Close(frame)) => return frame.map(|frame| frame.code),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Whether the server closes `stream` (EOF or reset) within `common::WAIT`, reading what it sends.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn an_unanswered_ping_closes_the_websocket() {
    let ping = Duration::from_millis(100);
    let pong = Duration::from_millis(200);
    let server = server(ServerConfig {
        ws_ping_interval: ping,
        ws_pong_timeout: pong,
        ..ServerConfig::default()
    })
    .await;
    // This client never reads, so it never answers the ping.
    let mut silent = websocket(&server, BAD).await;
    // This one reads all the time (tungstenite answers pings while reading).
    let (mut sink, mut stream) = websocket(&server, GOOD).await.split();
    let reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Text(text) = message {
                texts.push(text.to_string());
                if texts.last().is_some_and(|text| text.contains("\"pong\"")) {
                    break;
                }
            }
        }
        texts
    });
    // Three deadlines pass: the silent client is closed, the answering one is not.
    tokio::time::sleep((ping + pong) * 3).await;
    assert_eq!(close_code(&mut silent).await, Some(CloseCode::Away), "closed after the deadline");
    sink.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.expect("send");
    let texts = tokio::time::timeout(common::WAIT, reader).await.expect("pong").expect("reader");
    assert!(texts.iter().any(|text| text.contains("\"pong\"")), "{texts:?}");
    server.stop().await;
}

#[tokio::test]
async fn slow_heads_and_idle_keep_alive_connections_are_closed() {
    let header = Duration::from_millis(300);
    let server =
        server(ServerConfig { connections: limits(64, 4, 64, header), ..ServerConfig::default() })
            .await;
    // A head sent one line at a time, never finished.
    let mut slow = connect_from(BAD, server.addr).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.expect("write");
    let started = Instant::now();
    let mut dribble = tokio::spawn(async move {
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if slow.write_all(format!("X-Slow-{n}: 1\r\n").as_bytes()).await.is_err() {
                return started.elapsed();
            }
        }
        started.elapsed()
    });
    let held =
        tokio::time::timeout(common::WAIT, &mut dribble).await.expect("closed").expect("task");
    assert!(held >= header, "closed after the header timeout, not before: {held:?}");

    // A keep-alive connection that answered one request and then stays silent.
    let mut idle = connect_from(BAD, server.addr).await.expect("connect");
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    idle.write_all(request.as_bytes()).await.expect("write");
    assert!(closed_by_server(&mut idle).await, "an idle keep-alive connection is closed");
    server.stop().await;
}

#[tokio::test]
async fn one_address_gets_at_most_its_share() {
    let server = server(ServerConfig {
        connections: limits(64, 4, 4, Duration::from_secs(30)),
        ..ServerConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(websocket(&server, BAD).await);
    }
    let refused = get(&server, BAD, "/health").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.json()["code"], "too_many_connections");
    assert!(refused.body.contains("your address"), "{refused:?}");
    assert_eq!(get(&server, GOOD, "/health").await.status, 200, "another address is served");
    // A closed WebSocket gives its slot back.
    let mut first = held.remove(0);
    let _ = first.close(None).await;
    let _ = close_code(&mut first).await;
    drop(first);
    let mut status = 0;
    for _ in 0..100 {
        status = get(&server, BAD, "/health").await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "the slot came back");
    server.stop().await;
}

#[tokio::test]
async fn one_address_opens_at_most_its_rate_of_new_connections() {
    // Three per hour: the allowance cannot refill during the test, whatever the machine's pace.
    let server = server(ServerConfig {
        connections: ConnectionLimits {
            max_new_per_address: 3,
            new_connection_window: Duration::from_secs(3600),
            ..ConnectionLimits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // Each request closes its connection: what is limited is opening them, not holding them.
    for _ in 0..3 {
        assert_eq!(get(&server, BAD, "/health").await.status, 200);
    }
    for _ in 0..5 {
        let refused = get(&server, BAD, "/health").await;
        assert_eq!(refused.status, 429, "{refused:?}");
        assert_eq!(refused.json()["code"], "too_many_connections");
        assert!(refused.body.contains("new connections from your address"), "{refused:?}");
        assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    }
    for _ in 0..3 {
        assert_eq!(get(&server, GOOD, "/health").await.status, 200, "another address is served");
    }
    assert_eq!(get(&server, GOOD, "/health").await.status, 429, "with its own allowance");
    server.stop().await;
}

#[tokio::test]
async fn health_and_the_dashboard_answer_when_the_pool_is_full() {
    let server = server(ServerConfig {
        connections: limits(8, 2, 100, Duration::from_secs(30)),
        ..ServerConfig::default()
    })
    .await;
    let mut pool = Vec::new();
    for _ in 0..8 {
        pool.push(websocket(&server, BAD).await);
    }
    let health = get(&server, GOOD, "/health").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(get(&server, GOOD, "/dashboard.html").await.status, 200);
    let api = get(&server, GOOD, "/api/components").await;
    assert_eq!(api.status, 503, "{api:?}");
    assert_eq!(api.json()["code"], "too_many_connections");
    // Two idle reserve connections take the reserve; the next is refused at once.
    let reserve = [
        connect_from(GOOD, server.addr).await.expect("connect"),
        connect_from(GOOD, server.addr).await.expect("connect"),
    ];
    let mut status = 0;
    for _ in 0..100 {
        status = get(&server, GOOD, "/health").await.status;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503, "past the reserve");
    drop(reserve);
    drop(pool);
    let mut status = 0;
    for _ in 0..100 {
        status = get(&server, GOOD, "/api/components").await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "served normally once the pool has room");
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_websocket_message_gets_close_1009() {
    let server = server(ServerConfig::default()).await;
    let mut socket = websocket(&server, GOOD).await;
    let big = "x".repeat(70 * 1024);
    assert!(big.len() > WS_MAX_INCOMING);
    socket.send(Message::Text(big.into())).await.expect("send");
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
    // A message within the limit is still answered on a new connection.
    let mut socket = websocket(&server, GOOD).await;
    let ping = json!({"type": "ping", "pad": "y".repeat(WS_MAX_INCOMING / 2)}).to_string();
    socket.send(Message::Text(ping.into())).await.expect("send");
    let mut answered = false;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(common::WAIT, socket.next()).await {
        if let Message::Text(text) = message
            && text.contains("\"pong\"")
        {
            answered = true;
            break;
        }
    }
    assert!(answered);
    server.stop().await;
}

/// Requests a well-behaved client makes in each phase of the fault-injection test.
const GOOD_REQUESTS: usize = 300;
/// Misbehaving connections held open during the fault-injection test.
const BAD_CONNECTIONS: usize = 1000;
/// The stated bound: beside the bad connections the good client keeps at least this share of
/// its requests per second alone (20-90% measured on two shared cores; the bound leaves room
/// for a busy machine and still fails if every event costs a write per client again).
const MIN_GOOD_SHARE: f64 = 0.10;
/// Pause of a bad connection before it reconnects (a flood of reconnections is not measured
/// here: it is a connection-rate problem, see the report).
const BAD_RETRY: Duration = Duration::from_secs(1);

/// `GOOD_REQUESTS` requests (a list, then an instance created and read back); returns
/// (requests per second, errors).
async fn good_client(server: &TestServer) -> (f64, usize) {
    let started = Instant::now();
    let mut errors = 0;
    for n in 0..GOOD_REQUESTS {
        let mut stream = match connect_from(GOOD, server.addr).await {
            Ok(stream) => stream,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        let response = if n % 2 == 0 {
            raw_request(
                &mut stream,
                &format!("GET /api/components HTTP/1.1\r\nHost: {}", server.addr),
            )
            .await
        } else {
            let body = json!({"machineName": "Order", "context": {"orderId": format!("G{n}"), "amount": 1}})
                .to_string();
            let head = format!(
                "POST /api/components/OrderComponent/instances HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                server.addr,
                body.len()
            );
            // The body goes after the head's blank line; `raw_request` adds `Connection: close`
            // before it, so send it whole here.
            stream
                .write_all(head.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut bytes = Vec::new();
            let _ = tokio::time::timeout(common::WAIT, stream.read_to_end(&mut bytes)).await;
            common::parse_response(&String::from_utf8_lossy(&bytes))
        };
        if !(200..300).contains(&response.status) {
            errors += 1;
        }
    }
    (GOOD_REQUESTS as f64 / started.elapsed().as_secs_f64(), errors)
}

/// The bad client, on its own thread and runtime: `BAD_CONNECTIONS` connections from one
/// address, half idle WebSocket
/// handshakes that never read (so never answer a ping), half request heads dribbled a line
/// every 200 ms; each reopened `BAD_RETRY` after the server closed or refused it, until `stop`. Returns how many
/// connections it opened.
fn bad_client(
    addr: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("bad client runtime");
        runtime.block_on(async move {
            let opened = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for n in 0..BAD_CONNECTIONS {
                let (stop, opened) = (stop.clone(), opened.clone());
                let from = BAD;
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut stream) = connect_from(from, addr).await else {
                            tokio::time::sleep(BAD_RETRY).await;
                            continue;
                        };
                        opened.fetch_add(1, Ordering::Relaxed);
                        let head = if n % 2 == 0 {
                            format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                        } else {
                            format!("GET /api/components HTTP/1.1\r\nHost: {addr}\r\n")
                        };
                        let mut open = stream.write_all(head.as_bytes()).await.is_ok();
                        let mut buffer = [0u8; 1024];
                        while open && !stop.load(Ordering::Relaxed) {
                            if n % 2 == 1 {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                open = stream.write_all(b"X-Slow: 1\r\n").await.is_ok();
                            } else {
                                // Raw TCP: reads what comes (the 101, pings) and never answers.
                                let read = tokio::time::timeout(
                                    Duration::from_millis(200),
                                    stream.read(&mut buffer),
                                );
                                open = !matches!(read.await, Ok(Ok(0) | Err(_)));
                            }
                        }
                        tokio::time::sleep(BAD_RETRY).await;
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            opened.load(Ordering::Relaxed)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_client_is_served_beside_a_thousand_bad_connections() {
    let server = server(ServerConfig {
        connections: limits(2048, 64, 256, Duration::from_secs(2)),
        ..ServerConfig::default()
    })
    .await;
    let (baseline, baseline_errors) = good_client(&server).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bad = bad_client(server.addr, stop.clone());
    // Let the bad connections pile up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (attacked, attacked_errors) = good_client(&server).await;
    let mut live = websocket(&server, GOOD).await;
    live.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.expect("send");
    let mut pong = false;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(common::WAIT, live.next()).await {
        if let Message::Text(text) = message
            && text.contains("\"pong\"")
        {
            pong = true;
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = tokio::task::spawn_blocking(move || bad.join().unwrap_or(0)).await.unwrap_or(0);
    eprintln!(
        "fault injection: good client {baseline:.0} req/s ({baseline_errors} errors) alone, {attacked:.0} req/s ({attacked_errors} errors) beside {BAD_CONNECTIONS} bad connections ({opened} opened in all)"
    );
    assert!(pong, "the good client's live feed works during the attack");
    assert_eq!(baseline_errors, 0);
    assert_eq!(attacked_errors, 0, "no request of the good client fails");
    // Beside 256 admitted bad connections, 128 of them unfiltered WebSockets every event is sent
    // to, it kept 7% of its throughput when each event cost a write per client, 20-90% since
    // writes to a client are batched (`WS_WRITE_INTERVAL`).
    assert!(
        attacked >= MIN_GOOD_SHARE * baseline,
        "beside the bad connections the good client kept {:.0}% of its throughput (bound: {:.0}%)",
        100.0 * attacked / baseline,
        100.0 * MIN_GOOD_SHARE
    );
    server.stop().await;
}
