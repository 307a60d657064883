//! What the SQLite and PostgreSQL stores share: the event column list, JSON encoding of the
//! document columns, and decoding of rows into `StoredEvent`s, envelopes and dead letters with
//! `Error::Corrupt` on bad data.
//!
//! Both backends store the same event columns; SQLite (schema version 2) adds integer instance
//! keys and 16-byte BLOB ids, PostgreSQL uses `UUID` and `JSONB` (see `docs/stores.md`).

use crate::common::corrupt;
#[cfg(feature = "postgres")]
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use xcomponent_core::instance::{EventId, InstanceId, Millis, ParentRef, Status};
use xcomponent_core::message::{DeadLetter, DeadLetterKind, ENVELOPE_SCHEMA_VERSION, Envelope};
#[cfg(feature = "postgres")]
use xcomponent_core::store::Error;
#[cfg(feature = "postgres")]
use xcomponent_core::store::InstanceRecord;
use xcomponent_core::store::{Result, StoredEvent};

/// Columns of `fsm_events`, in the order `RawEvent` reads them (prefix with an alias if needed).
#[cfg(feature = "postgres")]
pub(crate) const EVENT_COLUMNS: [&str; 21] = [
    "id",
    "instance_id",
    "seq",
    "component",
    "machine",
    "event_type",
    "payload",
    "state_before",
    "state_after",
    "status",
    "context",
    "timers",
    "parent_id",
    "parent_machine",
    "entry_point",
    "occurred_at",
    "causation_id",
    "correlation_id",
    "source_component",
    "schema_version",
    "changes",
];

/// `e.id, e.instance_id, …` for a select list.
#[cfg(feature = "postgres")]
pub(crate) fn event_select(alias: &str, json_suffix: &str) -> String {
    EVENT_COLUMNS
        .iter()
        .map(|c| match *c {
            "payload" | "context" | "timers" | "changes" => format!("{alias}.{c}{json_suffix}"),
            _ => format!("{alias}.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The JSON text of a document column.
#[cfg(feature = "postgres")]
pub(crate) fn json_text(backend: &str, value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Config(format!("{backend} commit: value not encodable as JSON: {e}")))
}

/// Parses a document column.
pub(crate) fn parse_json<T: DeserializeOwned>(backend: &str, what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(backend, what, e))
}

/// Parses a status column.
pub(crate) fn parse_status(backend: &str, text: &str) -> Result<Status> {
    Status::parse(text)
        .ok_or_else(|| corrupt(backend, "status column", format_args!("unknown status {text:?}")))
}

/// Converts a stored sequence number back.
pub(crate) fn parse_seq(backend: &str, seq: i64) -> Result<u64> {
    u64::try_from(seq)
        .map_err(|_| corrupt(backend, "seq column", format_args!("negative sequence number {seq}")))
}

/// An event row as read from either database, before validation.
pub(crate) struct RawEvent<'r> {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub seq: i64,
    pub component: &'r str,
    pub machine: &'r str,
    pub event_type: &'r str,
    pub payload: &'r str,
    pub state_before: &'r str,
    pub state_after: &'r str,
    pub status: &'r str,
    /// The whole data (a creation, or any event of record layout 1); NULL otherwise.
    pub context: Option<&'r str>,
    /// What a layout 2 transition changed; NULL when nothing did (and on layout 1 rows).
    pub changes: Option<&'r str>,
    pub timers: &'r str,
    pub parent_id: Option<Uuid>,
    pub parent_machine: Option<&'r str>,
    pub entry_point: bool,
    pub occurred_at: Millis,
    pub causation_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub source_component: Option<&'r str>,
}

impl RawEvent<'_> {
    /// Validates and converts the row.
    pub fn decode(self, backend: &str) -> Result<StoredEvent> {
        let parent = match (self.parent_id, self.parent_machine) {
            (Some(id), Some(machine)) => {
                Some(ParentRef { instance_id: InstanceId(id), machine: machine.to_owned() })
            }
            (None, None) => None,
            _ => {
                return Err(corrupt(
                    backend,
                    "event row",
                    "parent_id and parent_machine must both be set or null",
                ));
            }
        };
        Ok(StoredEvent {
            id: EventId(self.id),
            instance_id: InstanceId(self.instance_id),
            seq: parse_seq(backend, self.seq)?,
            component: self.component.into(),
            machine: self.machine.into(),
            event_type: self.event_type.into(),
            payload: parse_json(backend, "payload column", self.payload)?,
            state_before: self.state_before.into(),
            state_after: self.state_after.into(),
            status: parse_status(backend, self.status)?,
            context: self
                .context
                .map(|text| parse_json(backend, "context column", text))
                .transpose()?,
            changes: self
                .changes
                .map(|text| parse_json(backend, "changes column", text))
                .transpose()?
                .unwrap_or_default(),
            timers: parse_json(backend, "timers column", self.timers)?,
            parent,
            entry_point: self.entry_point,
            timestamp: self.occurred_at,
            causation_id: self.causation_id.map(EventId),
            correlation_id: EventId(self.correlation_id),
            source_component: self.source_component.map(Into::into),
        })
    }
}

/// Decodes an `envelope` column (outbox, dead letters) stored with `schema_version`; a version
/// newer than this build's `ENVELOPE_SCHEMA_VERSION` is `Corrupt`, not guessed at.
pub(crate) fn parse_envelope(backend: &str, schema_version: i64, text: &str) -> Result<Envelope> {
    if u32::try_from(schema_version).map_or(true, |v| v > ENVELOPE_SCHEMA_VERSION) {
        return Err(corrupt(
            backend,
            "envelope",
            format_args!(
                "schema version {schema_version} is not supported (this build reads up to {ENVELOPE_SCHEMA_VERSION})"
            ),
        ));
    }
    parse_json(backend, "envelope column", text)
}

/// A `fsm_dead_letters` row as read from either database, before validation.
pub(crate) struct RawDeadLetter<'r> {
    pub envelope: &'r str,
    pub schema_version: i64,
    pub kind: &'r str,
    pub reason: &'r str,
    pub attempts: i64,
    pub dead_at: Millis,
}

impl RawDeadLetter<'_> {
    /// Validates and converts the row.
    pub fn decode(self, backend: &str) -> Result<DeadLetter> {
        let kind = match self.kind {
            "undeliverable" => DeadLetterKind::Undeliverable,
            "rejected" => DeadLetterKind::Rejected,
            "failed" => DeadLetterKind::Failed,
            other => {
                return Err(corrupt(
                    backend,
                    "dead letter",
                    format_args!("unknown kind {other:?}"),
                ));
            }
        };
        Ok(DeadLetter {
            message: parse_envelope(backend, self.schema_version, self.envelope)?,
            kind,
            reason: self.reason.to_owned(),
            attempts: u32::try_from(self.attempts).map_err(|_| {
                corrupt(
                    backend,
                    "dead letter",
                    format_args!("attempts {} out of range", self.attempts),
                )
            })?,
            dead_at: self.dead_at,
        })
    }
}

/// Parses a snapshot's `record` column.
#[cfg(feature = "postgres")]
pub(crate) fn parse_record(backend: &str, text: &str) -> Result<InstanceRecord> {
    parse_json(backend, "snapshot record", text)
}

/// The document columns of an event, as JSON text (`context` and `changes` NULL when absent).
#[cfg(feature = "postgres")]
pub(crate) struct EventDocs {
    pub payload: String,
    pub context: Option<String>,
    pub changes: Option<String>,
    pub timers: String,
}

#[cfg(feature = "postgres")]
impl EventDocs {
    /// Encodes the document columns of `event`.
    pub fn of(backend: &str, event: &StoredEvent) -> Result<EventDocs> {
        Ok(EventDocs {
            payload: json_text(backend, &event.payload)?,
            context: event.context.as_ref().map(|c| json_text(backend, c)).transpose()?,
            changes: (!event.changes.is_empty())
                .then(|| json_text(backend, &event.changes))
                .transpose()?,
            timers: json_text(backend, &event.timers)?,
        })
    }
}
