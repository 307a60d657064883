//! Webhook handlers: hooks (`triggeredMethod`, `onEntry`, `onExit`) served by an HTTP endpoint
//! instead of a Rust closure.
//!
//! A transition that reaches a hook mapped to a webhook is stored as usual and, in the same
//! commit, a `MessageBody::HookCall` envelope goes into the outbox: a crash never loses the call,
//! and its message id is the call's idempotency key. Once the commit succeeded the envelope goes
//! to the dispatcher (`dispatch`), which POSTs it (timeout, bounded retries with back-off, the
//! `Idempotency-Key` and `X-Xcomponent-Signature` headers) outside the shard, and hands the
//! reply (a data patch and sender actions) or the final failure back to the instance's shard as
//! a `ShardMsg::HookResult`. The shard applies it like any stored message (`shard/hook_result.rs`):
//! one stored event `hook:<method>`, the inbox entry and the outbox removal in one commit, so it
//! is applied exactly once. The shard never waits for HTTP.
//!
//! Configuration (`config`): a handlers file maps method names to endpoints.

mod config;
pub(crate) mod dispatch;
pub(crate) mod reply;

pub use config::{
    DEFAULT_WEBHOOK_BACKOFF, DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT, MAX_WEBHOOK_BACKOFF,
    MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_TIMEOUT, Webhook, WebhookConfigError, Webhooks,
};
pub use dispatch::{
    IDEMPOTENCY_HEADER, MAX_CONCURRENT_WEBHOOK_CALLS, MAX_WEBHOOK_REPLY_BYTES, SIGNATURE_HEADER,
    WEBHOOK_QUEUE_CAPACITY, sign,
};
pub use reply::{HookAction, HookReply};
