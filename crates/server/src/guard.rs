//! What keeps other web pages out, checked before any route (and before Socket.IO):
//!
//! - **Host** (DNS rebinding): when the server is bound to a loopback address, a request whose
//!   `Host` is not `localhost`, a loopback IP or one of `allowed_hosts` gets 403 `bad_host`.
//! - **Origin** on the live feeds (`/ws`, `/socket.io/`): browsers do not apply CORS to
//!   WebSockets, so a handshake whose `Origin` is neither this server's own origin nor one of
//!   the `--cors` origins gets 403 `bad_origin`. Clients that send no `Origin` (not browsers)
//!   pass.
//! - **Token** on the live feeds: with a token configured, `/ws` and `/socket.io/` need it,
//!   as `Authorization: Bearer <token>` or, since browsers cannot set headers on a WebSocket,
//!   the query parameter `token=<token>` (the dashboard sends the token it keeps for the tab).
//! - **Framing**: every response says `X-Frame-Options: DENY` and
//!   `Content-Security-Policy: frame-ancestors 'none'` (unless it sets its own policy).

use crate::auth::{bearer, same};
use crate::error::ApiError;
use crate::state::{AppState, Cors};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The query parameter carrying the API token on the live feeds.
pub const TOKEN_QUERY_PARAMETER: &str = "token";

/// Checks Host, then Origin and token on the live feeds; adds the framing headers.
pub(crate) async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(error) = admit(&state, &request) {
        return with_frame_headers(error.into_response());
    }
    with_frame_headers(next.run(request).await)
}

fn admit(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let config = state.config();
    let headers = request.headers();
    if is_loopback(&config.host)
        && let Some(host) = header_text(headers, header::HOST.as_str())
        && !loopback_host_allowed(host, &config.allowed_hosts)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_host",
            format!(
                "Host {host:?} is not this server: bound to the loopback address {}, it answers only localhost, loopback addresses and --allow-host names",
                config.host
            ),
        ));
    }
    let path = request.uri().path();
    let live_feed = path == "/ws" || path == "/socket.io" || path.starts_with("/socket.io/");
    if !live_feed {
        return Ok(());
    }
    if let Some(origin) = header_text(headers, header::ORIGIN.as_str()) {
        let own = header_text(headers, header::HOST.as_str());
        if !origin_allowed(origin, own, &config.cors) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_origin",
                format!(
                    "{path} refuses pages from the origin {origin:?}: only this server's own origin and the --cors origins may connect"
                ),
            ));
        }
    }
    if let Some(token) = config.token.as_deref() {
        let given = bearer(headers).or_else(|| query_token(request.uri().query()));
        match given {
            Some(given) if same(token.as_bytes(), given.as_bytes()) => {}
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    format!("wrong API token for {path}"),
                ));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    format!(
                        "{path} needs the API token: Authorization: Bearer <token> or ?{TOKEN_QUERY_PARAMETER}=<token>"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The `token` query parameter, percent-decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == TOKEN_QUERY_PARAMETER)
        .map(|(_, value)| value.into_owned())
}

fn with_frame_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    response
}

/// Whether the listening address is a loopback one (`127.0.0.0/8`, `::1`, `localhost`).
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback())
}

/// The host name of a `Host` header value, without its port.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn loopback_host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    is_loopback(name) || allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
}

fn origin_allowed(origin: &str, own_host: Option<&str>, cors: &Cors) -> bool {
    match cors {
        Cors::Any => return true,
        Cors::Origins(list) if list.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)) => {
            return true;
        }
        _ => {}
    }
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    matches!((authority, own_host), (Some(authority), Some(own)) if authority.eq_ignore_ascii_case(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0"));
        assert!(loopback_host_allowed("127.0.0.1:3000", &[]));
        assert!(loopback_host_allowed("[::1]:3000", &[]));
        assert!(loopback_host_allowed("LOCALHOST:3000", &[]));
        assert!(!loopback_host_allowed("evil.example:3000", &[]));
        assert!(!loopback_host_allowed("127.0.0.1.evil.example", &[]));
        assert!(loopback_host_allowed("box.lan:3000", &["box.lan".to_owned()]));
    }

    #[test]
    fn origins() {
        assert!(origin_allowed("http://127.0.0.1:3000", Some("127.0.0.1:3000"), &Cors::Off));
        assert!(!origin_allowed("http://evil.example", Some("127.0.0.1:3000"), &Cors::Off));
        assert!(!origin_allowed("null", Some("127.0.0.1:3000"), &Cors::Off));
        assert!(!origin_allowed("http://127.0.0.1:3000", None, &Cors::Off));
        let list = Cors::Origins(vec!["https://app.example".to_owned()]);
        assert!(origin_allowed("https://app.example", Some("127.0.0.1:3000"), &list));
        assert!(origin_allowed("http://evil.example", None, &Cors::Any));
    }

    #[test]
    fn token_from_the_query() {
        assert_eq!(query_token(Some("component=A&token=a%2Bb")).as_deref(), Some("a+b"));
        assert_eq!(query_token(Some("component=A")), None);
        assert_eq!(query_token(None), None);
    }
}
