//! The webhook dispatcher: one task that makes the stored hook calls (`MessageBody::HookCall`)
//! over HTTP, at most `MAX_CONCURRENT_WEBHOOK_CALLS` at once, and hands each outcome to the
//! instance's shard as a `ShardMsg::HookResult`.
//!
//! A call is a POST of `{method, hook, component, machine, instanceId, state, event, payload,
//! context, messageId}` with `Idempotency-Key: <message id>` (the same on every attempt and after
//! a restart) and, when a secret is configured, `X-Xcomponent-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`. A timeout, a connection failure, 408, 429 and 5xx are retried
//! (`Webhook::retries`, pause `Webhook::backoff` doubled each time, at most
//! `MAX_WEBHOOK_BACKOFF`); another status (a redirect too: it is not followed), an invalid reply
//! or a reply larger than `MAX_WEBHOOK_REPLY_BYTES` fails at once.
//!
//! Calls are queued (`WEBHOOK_QUEUE_CAPACITY`); a call that finds the queue full fails at once
//! (recorded, `onError` sent), so nothing waits without bound. A call in progress at shutdown or
//! at a crash is still in the outbox: it is made again at the next start, with the same key.

use crate::protocol::{HookOutcome, HookResultMsg, Origin, ShardMsg};
use crate::shared::Shared;
use crate::webhook::{HookReply, MAX_WEBHOOK_BACKOFF, Webhook};
use hmac::{KeyInit, Mac};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use xcomponent_core::message::{Envelope, MessageBody};

/// Hook calls waiting for the dispatcher; past it a call fails at once.
pub const WEBHOOK_QUEUE_CAPACITY: usize = 10_000;
/// Webhook calls in progress at once (a slow endpoint holds at most this many; the shards never
/// wait for any).
pub const MAX_CONCURRENT_WEBHOOK_CALLS: usize = 64;
/// Largest reply body read; a larger reply fails the call.
pub const MAX_WEBHOOK_REPLY_BYTES: usize = 1024 * 1024;
/// The header carrying the call's idempotency key (its message id).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The header carrying the HMAC signature (only with a configured secret).
pub const SIGNATURE_HEADER: &str = "X-Xcomponent-Signature";

/// One call to make.
#[derive(Debug)]
pub(crate) struct WebhookJob {
    pub envelope: Arc<Envelope>,
    pub origin: Option<Origin>,
}

/// The signature header's value: `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts a key of any length: the error case cannot happen.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return format!("t={timestamp},v1=");
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Shared {
    /// Hands a stored hook call to the dispatcher (after the commit that stored it).
    pub(crate) fn dispatch_hook_call(&self, envelope: Arc<Envelope>, origin: Option<Origin>) {
        let job = WebhookJob { envelope, origin };
        let Some(queue) = &self.webhook_queue else {
            self.hook_call_failed(job, "no webhook dispatcher runs".into());
            return;
        };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let error = format!("webhook queue full ({WEBHOOK_QUEUE_CAPACITY} calls waiting)");
                self.hook_call_failed(job, error);
            }
            // Stopping: the call stays in the outbox and is made at the next start.
            Err(mpsc::error::TrySendError::Closed(job)) => {
                tracing::debug!(message = %job.envelope.id, "Runtime stopping; the hook call waits in the outbox.");
            }
        }
    }

    fn hook_call_failed(&self, job: WebhookJob, error: String) {
        tracing::warn!(message = %job.envelope.id, %error, "Hook call not made.");
        self.hook_result(job, HookOutcome::Failed { error, attempts: 0 });
    }

    /// Sends the outcome of a call to the shard of its instance.
    fn hook_result(&self, job: WebhookJob, outcome: HookOutcome) {
        let envelope = &job.envelope;
        let MessageBody::HookCall { instance_id, method, hook, .. } = &envelope.body else {
            return;
        };
        let on_error = self
            .handlers
            .webhook(&envelope.component, method)
            .and_then(|webhook| webhook.on_error.as_deref())
            .map(Arc::from);
        let message = HookResultMsg {
            target: *instance_id,
            method: method.as_str().into(),
            hook: hook.as_str().into(),
            outcome,
            on_error,
            trace: crate::placement::trace_of(envelope),
            origin: job.origin,
        };
        self.send_internal(self.shard_of(instance_id), ShardMsg::HookResult(message));
    }
}

/// Runs until shutdown (or until every sender is gone). Calls in progress are dropped with it:
/// they stay in the outbox.
pub(crate) async fn run_dispatcher(shared: Arc<Shared>, mut queue: mpsc::Receiver<WebhookJob>) {
    // A redirect is not followed (it would carry the signed call elsewhere): it fails the call.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "Webhook client cannot start; hook calls wait in the outbox.");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_WEBHOOK_CALLS));
    let mut calls = JoinSet::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        while calls.try_join_next().is_some() {}
        if *shutdown.borrow_and_update() {
            return;
        }
        let job = tokio::select! {
            _ = shutdown.changed() => continue,
            job = queue.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let permit = tokio::select! {
            _ = shutdown.changed() => continue,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (shared, client) = (shared.clone(), client.clone());
        calls.spawn(async move {
            let outcome = call(&shared, &client, &job.envelope).await;
            drop(permit);
            shared.hook_result(job, outcome);
        });
    }
}

/// Makes one call, with its retries.
async fn call(shared: &Shared, client: &reqwest::Client, envelope: &Envelope) -> HookOutcome {
    let MessageBody::HookCall {
        instance_id,
        machine,
        method,
        hook,
        state,
        event,
        payload,
        context,
    } = &envelope.body
    else {
        return HookOutcome::Failed { error: "not a hook call".into(), attempts: 0 };
    };
    let Some(webhook) = shared.handlers.webhook(&envelope.component, method).cloned() else {
        let error = format!("no webhook is configured for method {method}");
        return HookOutcome::Failed { error, attempts: 0 };
    };
    let body = serde_json::json!({
        "method": method,
        "hook": hook,
        "component": envelope.component,
        "machine": machine,
        "instanceId": instance_id,
        "state": state,
        "event": event,
        "payload": payload,
        "context": context,
        "messageId": envelope.id,
    });
    let body = match serde_json::to_vec(&body) {
        Ok(body) => body,
        Err(error) => return HookOutcome::Failed { error: error.to_string(), attempts: 0 },
    };
    let key = envelope.id.to_string();
    let mut last_error = String::new();
    let mut attempts = 0;
    for attempt in 0..=webhook.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(&webhook, attempt)).await;
        }
        attempts += 1;
        match attempt_once(client, &webhook, &key, &body).await {
            Ok(reply) => return HookOutcome::Replied(reply),
            Err(Failure::Retryable(error)) => {
                tracing::debug!(message = %envelope.id, attempt = attempts, %error, "Webhook attempt failed.");
                last_error = error;
            }
            Err(Failure::Final(error)) => return HookOutcome::Failed { error, attempts },
        }
    }
    let error = format!("{last_error} (gave up after {attempts} attempts)");
    HookOutcome::Failed { error, attempts }
}

/// Why an attempt failed.
enum Failure {
    /// Worth another attempt (timeout, connection, 408, 429, 5xx).
    Retryable(String),
    /// Another attempt would fail the same way.
    Final(String),
}

/// Pause before retry number `attempt` (1-based): the back-off doubled each time, bounded.
fn backoff(webhook: &Webhook, attempt: u32) -> Duration {
    webhook.backoff.saturating_mul(1u32 << (attempt - 1).min(16)).min(MAX_WEBHOOK_BACKOFF)
}

async fn attempt_once(
    client: &reqwest::Client,
    webhook: &Webhook,
    key: &str,
    body: &[u8],
) -> Result<HookReply, Failure> {
    let mut request = client
        .post(&webhook.url)
        .timeout(webhook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_HEADER, key)
        .body(body.to_vec());
    if let Some(secret) = &webhook.secret {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX));
        request = request.header(SIGNATURE_HEADER, sign(secret.as_bytes(), now, body));
    }
    let describe = |error: reqwest::Error| {
        if error.is_timeout() {
            format!("timed out after {} ms", webhook.timeout.as_millis())
        } else {
            format!("request failed: {error}")
        }
    };
    let mut response = request.send().await.map_err(|error| Failure::Retryable(describe(error)))?;
    let status = response.status();
    if !status.is_success() {
        let error = format!("endpoint answered HTTP {}", status.as_u16());
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        return Err(if retryable { Failure::Retryable(error) } else { Failure::Final(error) });
    }
    let mut reply = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|error| Failure::Retryable(describe(error)))?
    {
        if reply.len() + chunk.len() > MAX_WEBHOOK_REPLY_BYTES {
            return Err(Failure::Final(format!(
                "reply larger than {MAX_WEBHOOK_REPLY_BYTES} bytes"
            )));
        }
        reply.extend_from_slice(&chunk);
    }
    HookReply::parse(&reply).map_err(Failure::Final)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'key', b'1.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(sign(b"other", 1, b"{}"), sign(b"key", 1, b"{}"));
    }
}
