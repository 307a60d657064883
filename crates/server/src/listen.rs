//! Serving the router on a TCP listener with bounded connections: the accept loop `serve` uses
//! instead of `axum::serve`, so that one bad client cannot lock the others out.
//!
//! Bounds (all in [`ConnectionLimits`]):
//! - `max_connections` connections are served normally. Past it, `reserve_connections` more are
//!   accepted but answer only `GET /health` and the dashboard's files (everything else gets 503
//!   `too_many_connections`), one request per connection, so monitoring and the dashboard stay
//!   reachable when the general pool is exhausted. Past the reserve, a connection gets a canned
//!   503 and is closed at once.
//! - `max_per_address` connections per client IP address; more get the canned 503.
//! - `header_read_timeout`: a connection must send a complete request head within this time of
//!   starting to wait for it; this also closes idle keep-alive connections.
//!
//! A connection keeps its slot for as long as its socket lives, including after a WebSocket
//! upgrade (`/ws`, `/socket.io/`): the slot is held by the I/O object itself ([`Counted`]).

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// Default connections served normally at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Default connections accepted past `max_connections` for `/health` and the dashboard only.
pub const DEFAULT_RESERVE_CONNECTIONS: usize = 64;

/// Default connections from one IP address at once.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// Default longest wait for a complete request head (also the keep-alive idle timeout).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (for example at the file-descriptor limit) before the next one.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The connection bounds of [`serve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served normally at once.
    pub max_connections: usize,
    /// Connections accepted past `max_connections` that answer only `/health` and the dashboard.
    pub reserve_connections: usize,
    /// Connections from one IP address at once (normal and reserve together).
    pub max_per_address: usize,
    /// Longest wait for a complete request head; also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reserve_connections: DEFAULT_RESERVE_CONNECTIONS,
            max_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Which pool a connection was admitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    Normal,
    Reserve,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress,
    Full,
}

/// Open connections, per pool and per address.
#[derive(Debug, Default)]
struct Counts {
    normal: usize,
    reserve: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The admission bookkeeping shared by the accept loop and every connection's slot.
#[derive(Debug)]
struct Admission {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

impl Admission {
    fn admit(self: &Arc<Self>, address: IpAddr) -> Result<(Slot, Pool), Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        let pool = if counts.normal < self.limits.max_connections {
            counts.normal += 1;
            Pool::Normal
        } else if counts.reserve < self.limits.reserve_connections {
            counts.reserve += 1;
            Pool::Reserve
        } else {
            return Err(Refusal::Full);
        };
        *counts.by_address.entry(address).or_insert(0) += 1;
        Ok((Slot { admission: self.clone(), address, pool }, pool))
    }
}

/// One admitted connection; frees its place when dropped.
#[derive(Debug)]
struct Slot {
    admission: Arc<Admission>,
    address: IpAddr,
    pool: Pool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts =
            self.admission.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.pool {
            Pool::Normal => counts.normal = counts.normal.saturating_sub(1),
            Pool::Reserve => counts.reserve = counts.reserve.saturating_sub(1),
        }
        if let Some(count) = counts.by_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

/// A TCP stream holding its connection slot, so an upgraded WebSocket keeps counting.
#[derive(Debug)]
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The answer written to a refused connection before it is closed (no request is read).
fn refusal_bytes(refusal: Refusal, limits: &ConnectionLimits) -> Vec<u8> {
    let message = match refusal {
        Refusal::PerAddress => format!(
            "too many connections from your address (at most {} at once)",
            limits.max_per_address
        ),
        Refusal::Full => format!(
            "the server has no free connection (at most {} plus {} reserved for /health and the dashboard)",
            limits.max_connections, limits.reserve_connections
        ),
    };
    let body = serde_json::json!({ "error": message, "code": "too_many_connections" }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether a request on a reserve connection is served: `/health` and the dashboard's files.
fn reserve_serves(request: &Request<Incoming>) -> bool {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let path = request.uri().path();
    matches!(path, "/health" | "/" | "/dashboard.html")
        || crate::dashboard::is_asset(path.trim_start_matches('/'))
}

fn reserve_refusal(limits: &ConnectionLimits) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        format!(
            "all {} connections are busy; this reserved connection serves only /health and the dashboard",
            limits.max_connections
        ),
    )
    .into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves `router(state)` on `listener` within `state.config().connections` until `shutdown`
/// resolves; then stops accepting, lets open requests finish and returns once every
/// connection has ended (WebSockets are closed by `AppState::begin_shutdown`).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = state.config().connections.clone();
    let router = crate::router(state);
    let admission = Arc::new(Admission { limits: limits.clone(), counts: Mutex::default() });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let (slot, pool) = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::debug!(%peer, ?refusal, "connection refused");
                // A fresh socket's send buffer takes this whole; a failure only means the
                // client sees the connection closed.
                let _ = stream.try_write(&refusal_bytes(refusal, &limits));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Counted { stream, _slot: slot });
        let service = {
            // On a reserve connection only what the reserve serves reaches the router.
            let router = router.clone();
            let limits = limits.clone();
            TowerToHyperService::new(tower::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                let refused = pool == Pool::Reserve && !reserve_serves(&request);
                let limits = limits.clone();
                async move {
                    if refused {
                        return Ok::<_, Infallible>(reserve_refusal(&limits));
                    }
                    router.oneshot(request.map(Body::new)).await
                }
            }))
        };
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(pool == Pool::Normal);
            builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
            let connection = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                stopping = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
                    if stopping {
                        connection.as_mut().graceful_shutdown();
                    }
                    connection.as_mut().await
                }
            };
            if let Err(error) = result {
                tracing::trace!(%peer, %error, "connection ended with an error");
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn admission(max: usize, reserve: usize, per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limits: ConnectionLimits {
                max_connections: max,
                reserve_connections: reserve,
                max_per_address: per_address,
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            },
            counts: Mutex::default(),
        })
    }

    #[test]
    fn normal_then_reserve_then_refused_and_slots_come_back() {
        let admission = admission(2, 1, 10);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let first = admission.admit(a);
        let second = admission.admit(a);
        let third = admission.admit(a);
        assert_eq!(first.as_ref().map(|(_, pool)| *pool).ok(), Some(Pool::Normal));
        assert_eq!(second.as_ref().map(|(_, pool)| *pool).ok(), Some(Pool::Normal));
        assert_eq!(third.as_ref().map(|(_, pool)| *pool).ok(), Some(Pool::Reserve));
        assert_eq!(admission.admit(a).err(), Some(Refusal::Full));
        drop(first);
        assert_eq!(admission.admit(a).map(|(_, pool)| pool).ok(), Some(Pool::Normal));
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let admission = admission(100, 0, 2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let held = [admission.admit(a), admission.admit(a)];
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(admission.admit(a).err(), Some(Refusal::PerAddress));
        assert!(admission.admit(b).is_ok());
        drop(held);
        let counts = admission.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!((counts.normal, counts.reserve), (0, 0));
        assert!(counts.by_address.is_empty(), "no entry left for closed addresses");
    }
}
