-- xcomponent-store, SQLite schema version 1. Ids are lowercase hyphenated UUID text,
-- times are milliseconds since the Unix epoch, documents are JSON text.

-- Every stored event: an instance's creation or one of its transitions, with what it produced.
CREATE TABLE fsm_events (
    id               TEXT    NOT NULL,
    instance_id      TEXT    NOT NULL,
    seq              INTEGER NOT NULL,
    component        TEXT    NOT NULL,
    machine          TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state_before     TEXT    NOT NULL,
    state_after      TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    context          TEXT    NOT NULL,
    timers           TEXT    NOT NULL,
    parent_id        TEXT,
    parent_machine   TEXT,
    entry_point      INTEGER NOT NULL,
    occurred_at      INTEGER NOT NULL,
    causation_id     TEXT,
    correlation_id   TEXT    NOT NULL,
    source_component TEXT,
    schema_version   INTEGER NOT NULL,
    CONSTRAINT fsm_events_instance_seq UNIQUE (instance_id, seq)
);
CREATE INDEX fsm_events_correlation ON fsm_events (correlation_id, occurred_at, id);

-- The latest snapshot of each instance (the full record as JSON).
CREATE TABLE fsm_snapshots (
    instance_id    TEXT    NOT NULL PRIMARY KEY,
    seq            INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    record         TEXT    NOT NULL,
    schema_version INTEGER NOT NULL
);

-- Current summary of each instance, written in the same transaction as its events.
CREATE TABLE fsm_instances (
    instance_id    TEXT    NOT NULL PRIMARY KEY,
    component      TEXT    NOT NULL,
    machine        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    entry_point    INTEGER NOT NULL,
    correlation_id TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX fsm_instances_status ON fsm_instances (status, instance_id);
CREATE INDEX fsm_instances_updated ON fsm_instances (updated_at, instance_id);
