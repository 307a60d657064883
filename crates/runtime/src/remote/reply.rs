//! The answer to a command that came through a component's queue with a `replyTo` channel: what
//! the owning runtime did with it, published once the outcome is stored (or known to have
//! failed). The distributed dashboard waits for it to answer its REST caller.

use crate::error::RuntimeError;
use crate::views::SendOutcome;
use serde::{Deserialize, Serialize};
use xcomponent_core::instance::InstanceId;
use xcomponent_core::store;

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub(crate) enum CommandOutcome {
    /// The instance was created and stored.
    Created {
        #[serde(rename = "instanceId")]
        instance_id: InstanceId,
    },
    /// The event was applied (or ignored) and stored.
    Sent { result: SendOutcome },
    /// A broadcast reached `count` instances that took a transition, all stored.
    Broadcast { count: usize },
    /// Nothing was applied.
    Failed {
        /// `unknown_component`, `unknown_machine`, `unknown_instance`, `singleton_exists`,
        /// `duplicate_instance`, `storage`, `too_large` or `invalid`.
        kind: String,
        error: String,
        #[serde(rename = "instanceId", default, skip_serializing_if = "Option::is_none")]
        instance_id: Option<InstanceId>,
    },
}

impl CommandOutcome {
    /// The failure of `error`, for `instance` when it concerns one.
    pub fn failed(error: &RuntimeError, instance: Option<InstanceId>) -> CommandOutcome {
        let kind = match error {
            RuntimeError::UnknownComponent(_) => "unknown_component",
            RuntimeError::UnknownMachine { .. } => "unknown_machine",
            RuntimeError::UnknownInstance(_) => "unknown_instance",
            RuntimeError::SingletonExists { .. } => "singleton_exists",
            RuntimeError::DuplicateInstance(_) => "duplicate_instance",
            RuntimeError::Storage(_) | RuntimeError::ShuttingDown => "storage",
            RuntimeError::PayloadTooLarge { .. } | RuntimeError::DataTooLarge { .. } => "too_large",
            _ => "invalid",
        };
        CommandOutcome::Failed {
            kind: kind.into(),
            error: error.to_string(),
            instance_id: instance,
        }
    }

    /// An answer of another kind than the command asked for (an owner running another version):
    /// reported as a refusal naming it.
    pub fn unexpected(self) -> RuntimeError {
        RuntimeError::Invalid(format!("the owner answered with an unexpected outcome: {self:?}"))
    }

    /// The error a caller in another process sees for a failure.
    pub fn into_error(kind: &str, error: String, instance: Option<InstanceId>) -> RuntimeError {
        match (kind, instance) {
            ("unknown_instance", Some(id)) => RuntimeError::UnknownInstance(id),
            ("duplicate_instance", Some(id)) => RuntimeError::DuplicateInstance(id),
            ("storage", _) => RuntimeError::Storage(store::Error::Unavailable(error)),
            _ => RuntimeError::Invalid(error),
        }
    }
}
