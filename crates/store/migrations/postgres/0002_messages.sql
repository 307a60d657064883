-- xcomponent-store, PostgreSQL schema version 2: the outbox, the inbox and the dead-letter list
-- (issue 7, effects that survive a crash). Only new tables: a version 1 schema is upgraded in
-- place, its events untouched. Times are milliseconds since the Unix epoch; envelopes are JSONB
-- (query them with ->>, e.g. envelope->>'component').

-- Messages produced by stored transitions and not yet fully applied, written in the same
-- statement as the events that produced them and deleted by the commit that applies them.
CREATE TABLE fsm_outbox (
    message_id     UUID    NOT NULL PRIMARY KEY,
    envelope       JSONB   NOT NULL,
    schema_version INTEGER NOT NULL
);

-- Messages applied to an instance (one row per instance reached), written with the instance's
-- resulting event; a message delivered again finds its row and is dropped. Purged by time.
CREATE TABLE fsm_inbox (
    message_id  UUID   NOT NULL,
    instance_id UUID   NOT NULL,
    applied_at  BIGINT NOT NULL,
    CONSTRAINT fsm_inbox_pkey PRIMARY KEY (message_id, instance_id)
);
CREATE INDEX fsm_inbox_applied ON fsm_inbox (applied_at);

-- Messages that could not be applied, kept until replayed or discarded.
CREATE TABLE fsm_dead_letters (
    message_id     UUID    NOT NULL PRIMARY KEY,
    envelope       JSONB   NOT NULL,
    schema_version INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    attempts       BIGINT  NOT NULL,
    dead_at        BIGINT  NOT NULL
);
