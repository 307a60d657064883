-- xcomponent-store, PostgreSQL schema version 1. Times are milliseconds since the Unix epoch;
-- payload, context, timers and snapshot records are JSONB (query them with ->>).

-- Every stored event: an instance's creation or one of its transitions, with what it produced.
CREATE TABLE fsm_events (
    id               UUID    NOT NULL,
    instance_id      UUID    NOT NULL,
    seq              BIGINT  NOT NULL,
    component        TEXT    NOT NULL,
    machine          TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          JSONB   NOT NULL,
    state_before     TEXT    NOT NULL,
    state_after      TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    context          JSONB   NOT NULL,
    timers           JSONB   NOT NULL,
    parent_id        UUID,
    parent_machine   TEXT,
    entry_point      BOOLEAN NOT NULL,
    occurred_at      BIGINT  NOT NULL,
    causation_id     UUID,
    correlation_id   UUID    NOT NULL,
    source_component TEXT,
    schema_version   INTEGER NOT NULL,
    CONSTRAINT fsm_events_pkey PRIMARY KEY (instance_id, seq)
);
CREATE INDEX fsm_events_correlation ON fsm_events (correlation_id, occurred_at, id);

-- The latest snapshot of each instance (the full record).
CREATE TABLE fsm_snapshots (
    instance_id    UUID    NOT NULL PRIMARY KEY,
    seq            BIGINT  NOT NULL,
    state          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    record         JSONB   NOT NULL,
    schema_version INTEGER NOT NULL
);

-- Current summary of each instance, written in the same transaction as its events.
CREATE TABLE fsm_instances (
    instance_id    UUID    NOT NULL PRIMARY KEY,
    component      TEXT    NOT NULL,
    machine        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    seq            BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    entry_point    BOOLEAN NOT NULL,
    correlation_id UUID    NOT NULL
);
CREATE INDEX fsm_instances_status ON fsm_instances (status, instance_id);
CREATE INDEX fsm_instances_updated ON fsm_instances (updated_at, instance_id);
