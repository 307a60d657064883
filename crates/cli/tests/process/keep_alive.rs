//! An HTTP/1.1 client on one kept-alive connection, as real clients use (a pool of persistent
//! connections). A test that measures throughput needs it: a client that opens one connection
//! per request leaves a socket in TIME_WAIT for a minute per request, and at a few thousand
//! requests per second the loopback's ephemeral ports run out (28,232 by default), after which
//! every `connect` scans the port range and the test measures the kernel, not the server.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one answer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest header section read (the server's answers are small).
const MAX_HEADER_LINES: usize = 64;

/// One persistent connection to `127.0.0.1:port`, opened on first use and again after the
/// server closed it.
pub struct Client {
    port: u16,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of the server on `port`; connects on the first request.
    pub fn new(port: u16) -> Client {
        Client { port, connection: None }
    }

    /// One request; `None` when the server cannot be reached or the answer is malformed.
    /// A request on a reused connection that the server had closed before answering (no byte
    /// of an answer came back) is sent once more on a new connection.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let reused = self.connection.is_some();
        match self.exchange(&request) {
            Ok(answer) => Some(answer),
            Err(Failure::ClosedBeforeAnswer) if reused => self.exchange(&request).ok(),
            Err(_) => None,
        }
    }

    fn exchange(&mut self, request: &str) -> Result<(u16, Value), Failure> {
        let outcome = self.try_exchange(request);
        if !matches!(outcome, Ok((_, _, true))) {
            self.connection = None;
        }
        outcome.map(|(status, body, _)| (status, body))
    }

    /// The status, the body, and whether the connection may be used again.
    fn try_exchange(&mut self, request: &str) -> Result<(u16, Value, bool), Failure> {
        if self.connection.is_none() {
            let stream =
                TcpStream::connect(("127.0.0.1", self.port)).map_err(|_| Failure::Broken)?;
            stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|_| Failure::Broken)?;
            stream.set_nodelay(true).map_err(|_| Failure::Broken)?;
            self.connection = Some(BufReader::new(stream));
        }
        let connection = self.connection.as_mut().ok_or(Failure::Broken)?;
        if connection.get_mut().write_all(request.as_bytes()).is_err() {
            return Err(Failure::ClosedBeforeAnswer);
        }
        let mut status_line = String::new();
        match connection.read_line(&mut status_line) {
            Ok(0) | Err(_) if status_line.is_empty() => return Err(Failure::ClosedBeforeAnswer),
            Ok(_) => {}
            Err(_) => return Err(Failure::Broken),
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or(Failure::Broken)?;
        let (mut length, mut chunked, mut keep_alive) = (None, false, true);
        for _ in 0..MAX_HEADER_LINES {
            let mut line = String::new();
            connection.read_line(&mut line).map_err(|_| Failure::Broken)?;
            let line = line.trim_end();
            if line.is_empty() {
                let body = match (length, chunked) {
                    (_, true) => read_chunked(connection)?,
                    (Some(length), false) => {
                        let mut body = vec![0; length];
                        connection.read_exact(&mut body).map_err(|_| Failure::Broken)?;
                        body
                    }
                    (None, false) => {
                        keep_alive = false;
                        let mut body = Vec::new();
                        connection.read_to_end(&mut body).map_err(|_| Failure::Broken)?;
                        body
                    }
                };
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                return Ok((status, body, keep_alive));
            }
            let (name, value) = line.split_once(':').ok_or(Failure::Broken)?;
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.parse().map_err(|_| Failure::Broken)?),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        Err(Failure::Broken)
    }
}

/// Why an exchange failed.
enum Failure {
    /// The connection was closed before any byte of the answer: the request was not taken.
    ClosedBeforeAnswer,
    /// Anything else (the request may have been taken).
    Broken,
}

/// A chunked body (RFC 9112 §7.1), trailers ignored.
fn read_chunked(connection: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        connection.read_line(&mut size).map_err(|_| Failure::Broken)?;
        let size = size.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| Failure::Broken)?;
        if size == 0 {
            let mut trailer = String::new();
            while connection.read_line(&mut trailer).map_err(|_| Failure::Broken)? > 2 {
                trailer.clear();
            }
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        connection.read_exact(&mut body[start..]).map_err(|_| Failure::Broken)?;
        let mut crlf = [0; 2];
        connection.read_exact(&mut crlf).map_err(|_| Failure::Broken)?;
    }
}
