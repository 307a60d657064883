-- xcomponent-store, SQLite schema version 4: a stored transition keeps what it changed in the
-- instance data, not the whole data (record layout 2; issue 12). `context` (the whole data)
-- becomes nullable: creations keep it, and the events written before this version (record layout
-- 1) keep theirs and are read as before (their `context` replaces the data when folded).
-- `changes` holds, for a transition of layout 2, the top-level keys it set and removed:
-- {"set": {...}, "removed": [...]}, NULL when the transition did not change the data.
-- SQLite cannot drop a NOT NULL constraint in place, so the table is copied once, in rowid order
-- (commit order is kept), every row unchanged.
CREATE TABLE fsm_events_v4 (
    ikey             INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    id               BLOB    NOT NULL,
    instance_id      BLOB    NOT NULL,
    component        TEXT    NOT NULL,
    machine          TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state_before     TEXT    NOT NULL,
    state_after      TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    context          TEXT,
    timers           TEXT    NOT NULL,
    parent_id        BLOB,
    parent_machine   TEXT,
    entry_point      INTEGER NOT NULL,
    occurred_at      INTEGER NOT NULL,
    causation_id     BLOB,
    correlation_id   BLOB    NOT NULL,
    source_component TEXT,
    schema_version   INTEGER NOT NULL,
    changes          TEXT
);
INSERT INTO fsm_events_v4 (rowid, ikey, seq, id, instance_id, component, machine, event_type, payload, state_before,
                           state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at,
                           causation_id, correlation_id, source_component, schema_version, changes)
SELECT rowid, ikey, seq, id, instance_id, component, machine, event_type, payload, state_before, state_after, status,
       context, timers, parent_id, parent_machine, entry_point, occurred_at, causation_id, correlation_id,
       source_component, schema_version, NULL
FROM fsm_events ORDER BY rowid;
DROP TABLE fsm_events;
ALTER TABLE fsm_events_v4 RENAME TO fsm_events;
CREATE UNIQUE INDEX fsm_events_instance_seq ON fsm_events (ikey, seq);
