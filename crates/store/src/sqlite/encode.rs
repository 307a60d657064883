//! A commit batch encoded for the writer thread, on the caller's task: ids as 16-byte arrays,
//! every text and JSON column appended to one byte arena, one summary per instance, the newest
//! snapshot per instance and one correlation range per (chain, instance), then the message parts
//! (outbox, inbox, delivered ids, dead letters) in the order the writer applies them.
//!
//! Encoding runs on the committing shard, in parallel with the writer; the writer then only
//! binds slices of the arena. Nothing is allocated per column.

use crate::common::{Summary, check_batch, latest_snapshots, seq_to_i64, summaries};
use std::collections::HashMap;
use xcomponent_core::instance::{EventId, InstanceId};
use xcomponent_core::message::MessageId;
use xcomponent_core::store::{CommitBatch, Error, Result, StoredEvent};

/// Largest arena of one batch (spans are 32-bit offsets).
const MAX_ARENA_BYTES: usize = u32::MAX as usize;

/// A slice of the arena.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    start: u32,
    end: u32,
}

/// One `fsm_events` row.
#[derive(Debug)]
pub(super) struct EventRow {
    /// Index of the instance in `Encoded::instances`.
    pub instance: usize,
    pub seq: i64,
    pub id: [u8; 16],
    pub component: Span,
    pub machine: Span,
    pub event_type: Span,
    pub payload: Span,
    pub state_before: Span,
    pub state_after: Span,
    pub status: &'static str,
    /// The whole data (creations); `None` for a transition, which stores `changes`.
    pub context: Option<Span>,
    /// What a transition changed; `None` when nothing did.
    pub changes: Option<Span>,
    pub timers: Span,
    pub parent: Option<([u8; 16], Span)>,
    pub entry_point: bool,
    pub occurred_at: i64,
    pub causation_id: Option<[u8; 16]>,
    pub correlation_id: [u8; 16],
    pub source_component: Option<Span>,
}

/// One `fsm_instances` upsert.
#[derive(Debug)]
pub(super) struct InstanceRow {
    pub id: InstanceId,
    pub component: Span,
    pub machine: Span,
    pub state: Span,
    pub status: &'static str,
    pub seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub entry_point: bool,
    pub correlation_id: [u8; 16],
}

/// One `fsm_snapshots` upsert.
#[derive(Debug)]
pub(super) struct SnapshotRow {
    pub instance: usize,
    pub seq: i64,
    pub state: Span,
    pub status: &'static str,
    pub record: Span,
}

/// One `fsm_correlations` upsert: the seq range of an instance's events in a chain.
#[derive(Debug)]
pub(super) struct PairRow {
    pub correlation_id: [u8; 16],
    pub instance: usize,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// One `fsm_outbox` upsert.
#[derive(Debug)]
pub(super) struct OutboxRow {
    pub message_id: [u8; 16],
    pub envelope: Span,
}

/// One `fsm_inbox` insert (a no-op when the entry exists).
#[derive(Debug)]
pub(super) struct InboxRow {
    pub message_id: [u8; 16],
    pub instance_id: [u8; 16],
    pub applied_at: i64,
}

/// One `fsm_dead_letters` upsert.
#[derive(Debug)]
pub(super) struct DeadLetterRow {
    pub message_id: [u8; 16],
    pub envelope: Span,
    pub kind: &'static str,
    pub reason: Span,
    pub attempts: i64,
    pub dead_at: i64,
}

/// What the writer stores for one `commit` call.
#[derive(Debug, Default)]
pub(super) struct Encoded {
    arena: Vec<u8>,
    /// One per instance touched, sorted by id (writers lock rows in the same order).
    pub instances: Vec<InstanceRow>,
    pub events: Vec<EventRow>,
    pub snapshots: Vec<SnapshotRow>,
    pub pairs: Vec<PairRow>,
    pub outbox: Vec<OutboxRow>,
    pub inbox: Vec<InboxRow>,
    /// Outbox rows to delete (after the outbox upserts: a message produced and delivered in one
    /// batch leaves nothing).
    pub delivered: Vec<[u8; 16]>,
    pub dead_letters: Vec<DeadLetterRow>,
    /// Dead letters to delete (after the upserts).
    pub dead_letters_removed: Vec<[u8; 16]>,
}

impl Encoded {
    /// Checks and encodes `batch` (`Conflict` for a pair twice in the batch, `Config` for a value
    /// that cannot be stored).
    pub fn of(batch: &CommitBatch) -> Result<Encoded> {
        check_batch(batch)?;
        let mut out =
            Encoded { arena: Vec::with_capacity(batch.events.len() * 96), ..Encoded::default() };
        let summaries = summaries(batch);
        for summary in &summaries {
            out.push_summary(summary)?;
        }
        let index = |id: &InstanceId| {
            summaries.binary_search_by(|s| s.id.cmp(id)).map_err(|_| missing(*id))
        };
        let mut pairs: HashMap<(EventId, usize), (i64, i64)> = HashMap::new();
        out.events.reserve(batch.events.len());
        for event in &batch.events {
            let instance = index(&event.instance_id)?;
            let row = out.event_row(event, instance)?;
            let range = pairs.entry((event.correlation_id, instance)).or_insert((row.seq, row.seq));
            *range = (range.0.min(row.seq), range.1.max(row.seq));
            out.events.push(row);
        }
        out.pairs = pairs
            .into_iter()
            .map(|((correlation, instance), (first_seq, last_seq))| PairRow {
                correlation_id: *correlation.0.as_bytes(),
                instance,
                first_seq,
                last_seq,
            })
            .collect();
        out.pairs.sort_unstable_by_key(|p| (p.correlation_id, p.instance));
        for snapshot in latest_snapshots(batch) {
            let instance = index(&snapshot.id)?;
            let state = out.text(&snapshot.state)?;
            let record = out.json(snapshot)?;
            out.snapshots.push(SnapshotRow {
                instance,
                seq: seq_to_i64(snapshot.seq)?,
                state,
                status: snapshot.status.as_str(),
                record,
            });
        }
        out.push_messages(batch)?;
        Ok(out)
    }

    /// Encodes the message parts of `batch`.
    fn push_messages(&mut self, batch: &CommitBatch) -> Result<()> {
        let id = |m: &MessageId| *m.0.as_bytes();
        self.outbox.reserve(batch.outbox.len());
        for message in &batch.outbox {
            let envelope = self.json(message)?;
            self.outbox.push(OutboxRow { message_id: id(&message.id), envelope });
        }
        self.inbox = batch
            .inbox
            .iter()
            .map(|e| InboxRow {
                message_id: id(&e.message_id),
                instance_id: *e.instance_id.0.as_bytes(),
                applied_at: e.applied_at,
            })
            .collect();
        self.delivered = batch.delivered.iter().map(id).collect();
        self.dead_letters.reserve(batch.dead_letters.len());
        for letter in &batch.dead_letters {
            let envelope = self.json(&letter.message)?;
            let reason = self.text(&letter.reason)?;
            self.dead_letters.push(DeadLetterRow {
                message_id: id(&letter.message.id),
                envelope,
                kind: letter.kind.as_str(),
                reason,
                attempts: i64::from(letter.attempts),
                dead_at: letter.dead_at,
            });
        }
        self.dead_letters_removed = batch.dead_letters_removed.iter().map(id).collect();
        Ok(())
    }

    /// Rows written (the size of a group commit): events plus message rows.
    pub fn len(&self) -> usize {
        self.events.len()
            + self.outbox.len()
            + self.inbox.len()
            + self.delivered.len()
            + self.dead_letters.len()
            + self.dead_letters_removed.len()
    }

    /// The bytes of a span (text columns are valid UTF-8: they come from `&str` and serde_json).
    pub fn bytes(&self, span: Span) -> &[u8] {
        &self.arena[span.start as usize..span.end as usize]
    }

    fn push_summary(&mut self, s: &Summary) -> Result<()> {
        let row = InstanceRow {
            id: s.id,
            component: self.text(&s.component)?,
            machine: self.text(&s.machine)?,
            state: self.text(&s.state)?,
            status: s.status.as_str(),
            seq: seq_to_i64(s.seq)?,
            created_at: s.created_at,
            updated_at: s.updated_at,
            entry_point: s.entry_point,
            correlation_id: *s.correlation_id.0.as_bytes(),
        };
        self.instances.push(row);
        Ok(())
    }

    fn event_row(&mut self, e: &StoredEvent, instance: usize) -> Result<EventRow> {
        let parent = match &e.parent {
            Some(parent) => Some((*parent.instance_id.0.as_bytes(), self.text(&parent.machine)?)),
            None => None,
        };
        let source_component = e.source_component.as_deref().map(|s| self.text(s)).transpose()?;
        Ok(EventRow {
            instance,
            seq: seq_to_i64(e.seq)?,
            id: *e.id.0.as_bytes(),
            component: self.text(&e.component)?,
            machine: self.text(&e.machine)?,
            event_type: self.text(&e.event_type)?,
            payload: self.json(&e.payload)?,
            state_before: self.text(&e.state_before)?,
            state_after: self.text(&e.state_after)?,
            status: e.status.as_str(),
            context: e.context.as_ref().map(|c| self.json(c)).transpose()?,
            changes: if e.changes.is_empty() { None } else { Some(self.json(&e.changes)?) },
            timers: self.json(&e.timers)?,
            parent,
            entry_point: e.entry_point,
            occurred_at: e.timestamp,
            causation_id: e.causation_id.map(|c| *c.0.as_bytes()),
            correlation_id: *e.correlation_id.0.as_bytes(),
            source_component,
        })
    }

    fn text(&mut self, text: &str) -> Result<Span> {
        let start = self.arena.len();
        self.arena.extend_from_slice(text.as_bytes());
        self.span(start)
    }

    fn json(&mut self, value: &impl serde::Serialize) -> Result<Span> {
        let start = self.arena.len();
        serde_json::to_writer(&mut self.arena, value).map_err(|e| {
            Error::Config(format!("{} commit: value not encodable as JSON: {e}", super::BACKEND))
        })?;
        self.span(start)
    }

    fn span(&self, start: usize) -> Result<Span> {
        let end = self.arena.len();
        if end > MAX_ARENA_BYTES {
            return Err(Error::Config(format!(
                "{} commit: batch too large ({end} bytes of text, at most {MAX_ARENA_BYTES})",
                super::BACKEND
            )));
        }
        // Both fit: `end` was checked and `start <= end`.
        Ok(Span { start: start as u32, end: end as u32 })
    }
}

fn missing(id: InstanceId) -> Error {
    Error::Unavailable(format!("{} commit: no summary for instance {id}", super::BACKEND))
}
