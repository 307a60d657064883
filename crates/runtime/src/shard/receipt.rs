//! What a shard writes when it applies a stored message, in the same commit as the resulting
//! events: an inbox entry per instance the message reached, the message's removal from the
//! outbox once it is done, or a dead letter saying why it was not applied.

use super::ShardWork;
use super::batch::dead_letter;
use crate::protocol::Origin;
use crate::shared::Shared;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::message::{DeadLetterKind, InboxEntry};

impl ShardWork {
    /// `origin` was applied to `instance`: recorded in the inbox; `done` (a message with one
    /// target) also removes it from the outbox.
    pub(crate) fn receipt_applied(
        &mut self,
        shared: &Shared,
        origin: &Origin,
        instance: InstanceId,
        done: bool,
    ) {
        self.batch.commit.inbox.push(InboxEntry {
            message_id: origin.id(),
            instance_id: instance,
            applied_at: shared.clock.now(),
        });
        if done {
            self.batch.commit.delivered.push(origin.id());
        }
    }

    /// `origin` reached an instance that had applied it already: dropped and counted; `done`
    /// also removes it from the outbox.
    pub(crate) fn receipt_duplicate(&mut self, shared: &Shared, origin: &Origin, done: bool) {
        tracing::debug!(message = %origin.id(), "Duplicate delivery dropped.");
        shared.counters.duplicates(1);
        if done {
            self.batch.commit.delivered.push(origin.id());
        }
    }

    /// `origin`, a command whose sender waits for the outcome, was answered without being
    /// applied (ignored, or refused): removed from the outbox, not dead-lettered (its sender was
    /// told why).
    pub(crate) fn receipt_answered(&mut self, origin: &Origin) {
        self.batch.commit.delivered.push(origin.id());
    }

    /// `origin` cannot be applied (`kind` says why): put in the dead-letter list and removed
    /// from the outbox, never retried on its own.
    pub(crate) fn receipt_dead(
        &mut self,
        shared: &Shared,
        origin: &Origin,
        kind: DeadLetterKind,
        reason: String,
    ) {
        tracing::warn!(message = %origin.id(), kind = kind.as_str(), %reason, "Message dead-lettered.");
        self.batch.commit.delivered.push(origin.id());
        self.batch.commit.dead_letters.push(dead_letter(origin, kind, reason, shared.clock.now()));
    }
}
