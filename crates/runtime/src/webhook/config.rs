//! The handlers file: which hook methods are webhooks, and how each is called.
//!
//! ```yaml
//! handlers:
//!   checkPayment:
//!     url: http://127.0.0.1:8081/check     # http or https
//!     timeoutMs: 2000                      # per attempt (default 5000, at most 300000)
//!     retries: 3                           # attempts after the first (default 2, at most 10)
//!     backoffMs: 200                       # first pause, doubled each retry (at most 30 s)
//!     secret: ${PAYMENT_HOOK_SECRET}       # HMAC-SHA256 key of the signature header
//!     onError: PAYMENT_CHECK_FAILED        # event sent to the instance on final failure
//!     component: Payments                  # only this component's hooks (default: all)
//! ```
//!
//! `${NAME}` in a string is replaced by the environment variable `NAME` (an unset one is an
//! error). YAML or JSON (JSON is YAML).

use rustc_hash::FxHashMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Timeout of one attempt when the file gives none.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest timeout of one attempt a file may ask for.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// Retries after the first attempt when the file gives none.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 2;
/// Most retries a file may ask for.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;
/// First pause between attempts when the file gives none (doubled after each retry).
pub const DEFAULT_WEBHOOK_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between two attempts.
pub const MAX_WEBHOOK_BACKOFF: Duration = Duration::from_secs(30);

/// How one hook method is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The endpoint (http or https).
    pub url: String,
    /// Time limit of one attempt (connection, request and reply).
    pub timeout: Duration,
    /// Attempts after the first, for a timeout, a connection failure, 408, 429 or 5xx.
    pub retries: u32,
    /// Pause before the first retry, doubled for each next one, at most `MAX_WEBHOOK_BACKOFF`.
    pub backoff: Duration,
    /// Key of the `X-Xcomponent-Signature` HMAC (no header without one).
    pub secret: Option<String>,
    /// Event sent to the instance when the call finally fails.
    pub on_error: Option<String>,
}

impl Webhook {
    /// A webhook to `url` with the default timeout, retries and back-off, unsigned.
    pub fn new(url: impl Into<String>) -> Webhook {
        Webhook {
            url: url.into(),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            retries: DEFAULT_WEBHOOK_RETRIES,
            backoff: DEFAULT_WEBHOOK_BACKOFF,
            secret: None,
            on_error: None,
        }
    }

    /// Checks the bounds and the URL.
    pub fn check(&self) -> Result<(), String> {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return Err(format!("url `{}` is not an absolute http(s) URL", self.url));
        };
        if !matches!(scheme, "http" | "https") || rest.is_empty() {
            return Err(format!("url `{}` must start with http:// or https://", self.url));
        }
        if reqwest::Url::parse(&self.url).is_err() {
            return Err(format!("url `{}` is not a valid URL", self.url));
        }
        if self.timeout.is_zero() || self.timeout > MAX_WEBHOOK_TIMEOUT {
            return Err(format!(
                "timeoutMs must be between 1 and {}",
                MAX_WEBHOOK_TIMEOUT.as_millis()
            ));
        }
        if self.retries > MAX_WEBHOOK_RETRIES {
            return Err(format!("retries must be at most {MAX_WEBHOOK_RETRIES}"));
        }
        if self.backoff > MAX_WEBHOOK_BACKOFF {
            return Err(format!("backoffMs must be at most {}", MAX_WEBHOOK_BACKOFF.as_millis()));
        }
        if self.on_error.as_deref().is_some_and(|event| event.trim().is_empty()) {
            return Err("onError must name an event".into());
        }
        Ok(())
    }
}

/// Why a handlers file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The reason.
        error: std::io::Error,
    },
    /// The file is not a valid handlers file (the message carries line and column).
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        error: String,
    },
    /// One handler is invalid.
    #[error("{path}: handlers.{method}: {error}")]
    Invalid {
        /// The file.
        path: String,
        /// The method.
        method: String,
        /// What is wrong.
        error: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlersFile {
    handlers: BTreeMap<String, FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileEntry {
    url: String,
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    backoff_ms: Option<u64>,
    secret: Option<String>,
    on_error: Option<String>,
    component: Option<String>,
}

/// Webhook handlers by method name, optionally scoped to one component.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    global: FxHashMap<Box<str>, Arc<Webhook>>,
    scoped: FxHashMap<(Box<str>, Box<str>), Arc<Webhook>>,
}

impl Webhooks {
    /// No webhooks.
    pub fn new() -> Webhooks {
        Webhooks::default()
    }

    /// Maps `method` (in every component) to `webhook`.
    pub fn on(mut self, method: &str, webhook: Webhook) -> Webhooks {
        self.global.insert(method.into(), Arc::new(webhook));
        self
    }

    /// Maps `method` in `component` only (wins over a global one).
    pub fn on_component(mut self, component: &str, method: &str, webhook: Webhook) -> Webhooks {
        self.scoped.insert((component.into(), method.into()), Arc::new(webhook));
        self
    }

    /// Both mappings; `other`'s wins for a method mapped in both.
    pub fn merge(mut self, other: Webhooks) -> Webhooks {
        self.global.extend(other.global);
        self.scoped.extend(other.scoped);
        self
    }

    /// Every mapping: (component it is scoped to, method, webhook).
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &str, &Webhook)> {
        let global = self.global.iter().map(|(method, hook)| (None, &**method, &**hook));
        let scoped = self
            .scoped
            .iter()
            .map(|((component, method), hook)| (Some(&**component), &**method, &**hook));
        global.chain(scoped)
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.scoped.is_empty()
    }

    /// How many methods are mapped.
    pub fn len(&self) -> usize {
        self.global.len() + self.scoped.len()
    }

    /// The webhook of `method` in `component`.
    pub fn find(&self, component: &str, method: &str) -> Option<&Arc<Webhook>> {
        if !self.scoped.is_empty()
            && let Some(webhook) = self.scoped.get(&(Box::from(component), Box::from(method)))
        {
            return Some(webhook);
        }
        self.global.get(method)
    }

    /// Reads a handlers file (YAML or JSON), `${NAME}` replaced from the environment.
    pub fn load(path: &std::path::Path) -> Result<Webhooks, WebhookConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| WebhookConfigError::Io { path: shown.clone(), error })?;
        Webhooks::parse(&text, &shown, |name| std::env::var(name).ok())
    }

    /// Parses a handlers file's text; `origin` names it in errors, `env` resolves `${NAME}`.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Webhooks, WebhookConfigError> {
        let file: HandlersFile = serde_saphyr::from_str(text).map_err(|error| {
            WebhookConfigError::Parse { path: origin.to_owned(), error: error.to_string() }
        })?;
        let mut webhooks = Webhooks::new();
        for (method, entry) in file.handlers {
            let invalid = |error: String| WebhookConfigError::Invalid {
                path: origin.to_owned(),
                method: method.clone(),
                error,
            };
            let expand = |field: &str, value: &str| {
                interpolate(value, &env).map_err(|name| {
                    invalid(format!("{field}: environment variable {name} is not set"))
                })
            };
            let webhook = Webhook {
                url: expand("url", &entry.url)?,
                timeout: entry.timeout_ms.map_or(DEFAULT_WEBHOOK_TIMEOUT, Duration::from_millis),
                retries: entry.retries.unwrap_or(DEFAULT_WEBHOOK_RETRIES),
                backoff: entry.backoff_ms.map_or(DEFAULT_WEBHOOK_BACKOFF, Duration::from_millis),
                secret: entry
                    .secret
                    .as_deref()
                    .map(|secret| expand("secret", secret))
                    .transpose()?,
                on_error: entry.on_error,
            };
            if webhook.secret.as_deref().is_some_and(str::is_empty) {
                return Err(invalid("secret is empty".into()));
            }
            webhook.check().map_err(invalid)?;
            webhooks = match entry.component {
                Some(component) => webhooks.on_component(&component, &method, webhook),
                None => webhooks.on(&method, webhook),
            };
        }
        Ok(webhooks)
    }
}

/// Replaces every `${NAME}` by `env(NAME)`; the error is the first unset name.
fn interpolate(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(&env(name).ok_or_else(|| name.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_with_defaults_and_environment() {
        let text = "handlers:\n  checkPayment:\n    url: http://127.0.0.1:9/${PATH_PART}\n    secret: ${KEY}\n    onError: FAILED\n  audit:\n    url: https://example.com/audit\n    component: Shop\n    retries: 0\n";
        let env = |name: &str| match name {
            "PATH_PART" => Some("check".to_owned()),
            "KEY" => Some("s3cret".to_owned()),
            _ => None,
        };
        let webhooks = Webhooks::parse(text, "h.yaml", env).expect("valid file");
        let check = webhooks.find("Any", "checkPayment").expect("global");
        assert_eq!(check.url, "http://127.0.0.1:9/check");
        assert_eq!(check.secret.as_deref(), Some("s3cret"));
        assert_eq!(check.on_error.as_deref(), Some("FAILED"));
        assert_eq!(check.timeout, DEFAULT_WEBHOOK_TIMEOUT);
        assert_eq!(check.retries, DEFAULT_WEBHOOK_RETRIES);
        assert!(webhooks.find("Other", "audit").is_none());
        assert_eq!(webhooks.find("Shop", "audit").map(|hook| hook.retries), Some(0));
    }

    #[test]
    fn errors_name_the_file_the_method_and_the_cause() {
        let missing_env = "handlers:\n  m:\n    url: http://h/\n    secret: ${NOPE}\n";
        let error = Webhooks::parse(missing_env, "h.yaml", |_| None).expect_err("unset variable");
        assert_eq!(
            error.to_string(),
            "h.yaml: handlers.m: secret: environment variable NOPE is not set"
        );
        let bad_url = "handlers:\n  m:\n    url: ftp://h/\n";
        let error = Webhooks::parse(bad_url, "h.yaml", |_| None).expect_err("bad scheme");
        assert!(error.to_string().contains("must start with http://"), "{error}");
        let too_many = "handlers:\n  m:\n    url: http://h/\n    retries: 11\n";
        let error = Webhooks::parse(too_many, "h.yaml", |_| None).expect_err("retries");
        assert!(error.to_string().contains("retries must be at most 10"), "{error}");
        let unknown = "handlers:\n  m:\n    url: http://h/\n    retry: 1\n";
        let error = Webhooks::parse(unknown, "h.yaml", |_| None).expect_err("unknown field");
        assert!(error.to_string().contains("line 4"), "{error}");
    }
}
