//! Broker URLs: `memory`, `redis://`, `rediss://`, `amqp://`, `amqps://`,
//! `kafka://h1:9092,h2:9092` (`kafkas://` for TLS, `user:pass@` for SASL/PLAIN, `?clientId=`,
//! `?groupId=`) and `nats://`. Parsed by hand because a Kafka URL may list several hosts, which
//! general URL parsers refuse.

use xcomponent_core::bus::{BusError, BusResult};

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `memory` (or `in-memory`): one process.
    Memory,
    /// `redis://`, `rediss://`.
    Redis,
    /// `amqp://`, `amqps://` (RabbitMQ).
    Amqp,
    /// `kafka://`, `kafkas://`.
    Kafka,
    /// `nats://`, `tls://`.
    Nats,
}

/// A parsed broker URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The backend.
    pub scheme: Scheme,
    /// TLS asked for (`rediss`, `amqps`, `kafkas`, `tls`).
    pub tls: bool,
    /// `host:port` entries, in the order given (at least one, except for `memory`).
    pub hosts: Vec<String>,
    /// User name, percent-decoded.
    pub username: Option<String>,
    /// Password, percent-decoded.
    pub password: Option<String>,
    /// Path after the hosts, without the leading `/` (Redis database, AMQP vhost).
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub params: Vec<(String, String)>,
    /// The URL as given (holds the password: print `redacted()` instead).
    pub raw: String,
}

impl std::fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl BrokerUrl {
    /// Parses `url`; the error says what is wrong and which forms are accepted.
    pub fn parse(url: &str) -> BusResult<BrokerUrl> {
        let url = url.trim();
        if url == "memory" || url == "in-memory" || url == "memory://" {
            return Ok(BrokerUrl {
                scheme: Scheme::Memory,
                tls: false,
                hosts: Vec::new(),
                username: None,
                password: None,
                path: String::new(),
                params: Vec::new(),
                raw: url.to_owned(),
            });
        }
        let Some((scheme_name, rest)) = url.split_once("://") else {
            return Err(unsupported(url));
        };
        let (scheme, tls, default_port) = match scheme_name.to_ascii_lowercase().as_str() {
            "redis" => (Scheme::Redis, false, 6379),
            "rediss" => (Scheme::Redis, true, 6379),
            "amqp" => (Scheme::Amqp, false, 5672),
            "amqps" => (Scheme::Amqp, true, 5671),
            "kafka" => (Scheme::Kafka, false, 9092),
            "kafkas" => (Scheme::Kafka, true, 9093),
            "nats" => (Scheme::Nats, false, 4222),
            "tls" => (Scheme::Nats, true, 4222),
            _ => return Err(unsupported(url)),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        };
        let (credentials, host_list) = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => (Some(credentials), hosts),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            Some(credentials) => match credentials.split_once(':') {
                Some((user, password)) => {
                    (non_empty(decode(user, url)?), Some(decode(password, url)?))
                }
                None => (non_empty(decode(credentials, url)?), None),
            },
            None => (None, None),
        };
        let mut hosts = Vec::new();
        for host in host_list.split(',') {
            let host = host.trim();
            if host.is_empty() {
                return Err(BusError::Config(format!(
                    "broker URL {}: empty host in {host_list:?}",
                    redact(url)
                )));
            }
            let with_port =
                if has_port(host) { host.to_owned() } else { format!("{host}:{default_port}") };
            hosts.push(with_port);
        }
        let mut params = Vec::new();
        for pair in query.into_iter().flat_map(|query| query.split('&')).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.push((decode(key, url)?, decode(value, url)?));
        }
        Ok(BrokerUrl {
            scheme,
            tls,
            hosts,
            username,
            password,
            path: decode(path, url)?,
            params,
            raw: url.to_owned(),
        })
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The URL with its password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }
}

/// Replaces the password of a URL by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, hosts)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{hosts}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn unsupported(url: &str) -> BusError {
    BusError::Config(format!(
        "unsupported broker URL {}: expected memory, redis://, rediss://, amqp://, amqps://, \
         kafka://host:port[,host:port…], kafkas://… or nats://",
        redact(url)
    ))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// `host:port`, `[v6]:port` have a port; `host`, `[v6]` do not.
fn has_port(host: &str) -> bool {
    match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    }
}

/// Percent-decodes one URL part.
fn decode(part: &str, url: &str) -> BusResult<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex =
                bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
            let value = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()).ok_or_else(|| {
                BusError::Config(format!("broker URL {}: bad percent escape", redact(url)))
            })?;
            out.push(value);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        BusError::Config(format!("broker URL {}: not UTF-8 once decoded", redact(url)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_lists_several_hosts_with_credentials_and_parameters() {
        let url = BrokerUrl::parse("kafkas://app:s%40cret@b1:9092,b2?clientId=orders&groupId=xc")
            .expect("valid");
        assert_eq!(url.scheme, Scheme::Kafka);
        assert!(url.tls);
        assert_eq!(url.hosts, ["b1:9092", "b2:9093"]);
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        assert_eq!(url.param("clientId"), Some("orders"));
        assert_eq!(url.param("groupId"), Some("xc"));
        assert_eq!(url.redacted(), "kafkas://app:***@b1:9092,b2?clientId=orders&groupId=xc");
        assert!(!format!("{url:?}").contains("s%40cret"));
    }

    #[test]
    fn every_scheme_gets_its_default_port() {
        for (text, scheme, host) in [
            ("redis://localhost", Scheme::Redis, "localhost:6379"),
            ("amqp://guest:guest@127.0.0.1/%2f", Scheme::Amqp, "127.0.0.1:5672"),
            ("nats://127.0.0.1", Scheme::Nats, "127.0.0.1:4222"),
            ("kafka://[::1]", Scheme::Kafka, "[::1]:9092"),
        ] {
            let url = BrokerUrl::parse(text).expect("valid");
            assert_eq!((url.scheme, url.hosts[0].as_str()), (scheme, host), "{text}");
        }
        assert_eq!(BrokerUrl::parse("amqp://h/%2f").expect("valid").path, "/");
        assert_eq!(BrokerUrl::parse("in-memory").expect("valid").scheme, Scheme::Memory);
    }

    #[test]
    fn bad_urls_say_what_is_accepted_and_hide_the_password() {
        let error = BrokerUrl::parse("mqtt://u:pw@h").expect_err("unsupported").to_string();
        assert!(error.contains("expected memory") && error.contains("u:***@h"), "{error}");
        assert!(!error.contains("pw"), "{error}");
        let error = BrokerUrl::parse("kafka://a:1,,b:2").expect_err("empty host").to_string();
        assert!(error.contains("empty host"), "{error}");
        assert!(BrokerUrl::parse("redis://h/%zz").is_err());
    }
}
