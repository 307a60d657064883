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
//! - `max_new_per_address` new connections per client IP address per `new_connection_window`
//!   (a token bucket: that many at once, refilled evenly over the window); more get a canned 429
//!   from the accept loop itself, which costs a write and a close instead of a connection task,
//!   so a flood of reconnections from one address cannot crowd out the others.
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
use std::time::{Duration, Instant};
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

/// Default new connections one IP address may open per [`NEW_CONNECTION_WINDOW`]. Generous
/// for browsers and API clients (which keep connections alive) and for a reverse proxy that
/// does not; a client reconnecting in a loop is held to it.
pub const DEFAULT_MAX_NEW_CONNECTIONS_PER_ADDRESS: usize = 1000;

/// The window of the default connection rate limit.
pub const NEW_CONNECTION_WINDOW: Duration = Duration::from_secs(1);

/// Most addresses whose connection rate is tracked at once. An address is forgotten once its
/// allowance is full again; when the table is full of addresses still spending theirs (many
/// addresses at once), it is pruned at most once per window and new addresses go untracked,
/// still held to `max_per_address`.
pub const MAX_RATE_TRACKED_ADDRESSES: usize = 65_536;

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
    /// New connections one IP address may open per `new_connection_window` (0: no rate limit).
    pub max_new_per_address: usize,
    /// The window of `max_new_per_address`.
    pub new_connection_window: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reserve_connections: DEFAULT_RESERVE_CONNECTIONS,
            max_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_new_per_address: DEFAULT_MAX_NEW_CONNECTIONS_PER_ADDRESS,
            new_connection_window: NEW_CONNECTION_WINDOW,
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
    Rate,
    Full,
}

/// What is left of an address's allowance of new connections, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    tokens: f64,
    at: Instant,
}

/// Open connections, per pool and per address, and the addresses' connection allowances.
#[derive(Debug, Default)]
struct Counts {
    normal: usize,
    reserve: usize,
    by_address: HashMap<IpAddr, usize>,
    allowances: HashMap<IpAddr, Allowance>,
    /// When `allowances` was last pruned because it was full.
    pruned_at: Option<Instant>,
}

/// The admission bookkeeping shared by the accept loop and every connection's slot.
#[derive(Debug)]
struct Admission {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

impl Admission {
    fn admit(self: &Arc<Self>, address: IpAddr) -> Result<(Slot, Pool), Refusal> {
        self.admit_at(address, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, address: IpAddr, now: Instant) -> Result<(Slot, Pool), Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        let allowance = self.allowance(&counts, address, now);
        if let Some(allowance) = allowance
            && allowance.tokens < 1.0
        {
            counts.allowances.insert(address, allowance);
            return Err(Refusal::Rate);
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
        if let Some(allowance) = allowance {
            self.spend(
                &mut counts,
                address,
                Allowance { tokens: allowance.tokens - 1.0, ..allowance },
            );
        }
        Ok((Slot { admission: self.clone(), address, pool }, pool))
    }

    /// New connections per second the rate limit allows one address; `None` without a limit.
    fn rate(&self) -> Option<f64> {
        let window = self.limits.new_connection_window.as_secs_f64();
        (self.limits.max_new_per_address > 0 && window > 0.0)
            .then(|| self.limits.max_new_per_address as f64 / window)
    }

    /// `address`'s allowance at `now`, refilled since it was last spent; `None` without a limit.
    fn allowance(&self, counts: &Counts, address: IpAddr, now: Instant) -> Option<Allowance> {
        let rate = self.rate()?;
        let full = self.limits.max_new_per_address as f64;
        let tokens = counts.allowances.get(&address).map_or(full, |spent| {
            let refill = now.saturating_duration_since(spent.at).as_secs_f64() * rate;
            (spent.tokens + refill).min(full)
        });
        Some(Allowance { tokens, at: now })
    }

    /// Records what is left of `address`'s allowance, within `MAX_RATE_TRACKED_ADDRESSES`.
    fn spend(&self, counts: &mut Counts, address: IpAddr, allowance: Allowance) {
        if counts.allowances.len() >= MAX_RATE_TRACKED_ADDRESSES
            && !counts.allowances.contains_key(&address)
        {
            let window = self.limits.new_connection_window;
            let due = counts
                .pruned_at
                .is_none_or(|at| allowance.at.saturating_duration_since(at) >= window);
            if due {
                // Forget the addresses whose allowance is full again.
                let (rate, full) =
                    (self.rate().unwrap_or(0.0), self.limits.max_new_per_address as f64);
                counts.allowances.retain(|_, spent| {
                    let refill =
                        allowance.at.saturating_duration_since(spent.at).as_secs_f64() * rate;
                    spent.tokens + refill < full
                });
                counts.pruned_at = Some(allowance.at);
            }
            if counts.allowances.len() >= MAX_RATE_TRACKED_ADDRESSES {
                return;
            }
        }
        counts.allowances.insert(address, allowance);
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

/// The answer written to a refused connection before it is closed (no request is read): 429
/// past the connection rate, 503 past a bound on open connections.
fn refusal_bytes(refusal: Refusal, limits: &ConnectionLimits) -> Vec<u8> {
    let message = match refusal {
        Refusal::PerAddress => format!(
            "too many connections from your address (at most {} at once)",
            limits.max_per_address
        ),
        Refusal::Rate => format!(
            "too many new connections from your address (at most {} per {} ms); keep connections alive or slow down",
            limits.max_new_per_address,
            limits.new_connection_window.as_millis()
        ),
        Refusal::Full => format!(
            "the server has no free connection (at most {} plus {} reserved for /health and the dashboard)",
            limits.max_connections, limits.reserve_connections
        ),
    };
    let body = serde_json::json!({ "error": message, "code": "too_many_connections" }).to_string();
    let status = match refusal {
        Refusal::Rate => "429 Too Many Requests",
        Refusal::PerAddress | Refusal::Full => "503 Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
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
                max_new_per_address: 0,
                new_connection_window: NEW_CONNECTION_WINDOW,
            },
            counts: Mutex::default(),
        })
    }

    fn rate_limited(per_second: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limits: ConnectionLimits {
                max_new_per_address: per_second,
                new_connection_window: Duration::from_secs(1),
                ..ConnectionLimits::default()
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

    #[test]
    fn one_address_opens_at_most_its_rate_and_the_allowance_refills() {
        let admission = rate_limited(3);
        let (a, b) =
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        let t0 = Instant::now();
        // Closed at once (their slots dropped): the rate counts openings, not open connections.
        for _ in 0..3 {
            assert!(admission.admit_at(a, t0).is_ok());
        }
        assert_eq!(admission.admit_at(a, t0).err(), Some(Refusal::Rate));
        assert!(admission.admit_at(b, t0).is_ok(), "another address has its own allowance");
        // A third of the window gives one connection back, and refusals spend nothing.
        let later = t0 + Duration::from_millis(340);
        assert!(admission.admit_at(a, later).is_ok());
        assert_eq!(admission.admit_at(a, later).err(), Some(Refusal::Rate));
        // A full window later the whole allowance is back, never more.
        let much_later = later + Duration::from_secs(10);
        for _ in 0..3 {
            assert!(admission.admit_at(a, much_later).is_ok());
        }
        assert_eq!(admission.admit_at(a, much_later).err(), Some(Refusal::Rate));
    }

    #[test]
    fn the_rate_table_forgets_addresses_whose_allowance_is_full_again() {
        let admission = rate_limited(1);
        let t0 = Instant::now();
        let address = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        for n in 0..MAX_RATE_TRACKED_ADDRESSES as u32 {
            assert!(admission.admit_at(address(n), t0).is_ok());
        }
        // Full of spent allowances: a new address is admitted untracked.
        assert!(admission.admit_at(address(u32::MAX >> 8), t0).is_ok());
        let tracked = |admission: &Arc<Admission>| {
            admission
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .allowances
                .len()
        };
        assert_eq!(tracked(&admission), MAX_RATE_TRACKED_ADDRESSES);
        // Once their allowances refilled, the next new address prunes them.
        assert!(admission.admit_at(address(u32::MAX >> 7), t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(tracked(&admission), 1);
    }
}
