-- xcomponent-store, SQLite schema version 2: 16-byte BLOB ids, an integer key per instance
-- (`ikey`) that events and snapshots use, and correlation chains indexed once per instance and
-- batch (`fsm_correlations`) instead of once per event. Existing version 1 data is copied over
-- (text UUIDs converted with unhex); an event or snapshot without a summary row stops the
-- migration (NOT NULL ikey), so nothing is dropped silently.

-- Current summary of each instance; `ikey` (the rowid) is the key the other tables use.
CREATE TABLE fsm_instances_v2 (
    ikey           INTEGER PRIMARY KEY,
    instance_id    BLOB    NOT NULL UNIQUE,
    component      TEXT    NOT NULL,
    machine        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    entry_point    INTEGER NOT NULL,
    correlation_id BLOB    NOT NULL
);
INSERT INTO fsm_instances_v2 (instance_id, component, machine, state, status, seq, created_at, updated_at,
                              entry_point, correlation_id)
SELECT unhex(instance_id, '-'), component, machine, state, status, seq, created_at, updated_at, entry_point,
       unhex(correlation_id, '-')
FROM fsm_instances ORDER BY instance_id;

-- Every stored event, in commit order (rowid); (ikey, seq) is unique.
CREATE TABLE fsm_events_v2 (
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
    context          TEXT    NOT NULL,
    timers           TEXT    NOT NULL,
    parent_id        BLOB,
    parent_machine   TEXT,
    entry_point      INTEGER NOT NULL,
    occurred_at      INTEGER NOT NULL,
    causation_id     BLOB,
    correlation_id   BLOB    NOT NULL,
    source_component TEXT,
    schema_version   INTEGER NOT NULL
);
INSERT INTO fsm_events_v2
SELECT i.ikey, e.seq, unhex(e.id, '-'), unhex(e.instance_id, '-'), e.component, e.machine, e.event_type, e.payload,
       e.state_before, e.state_after, e.status, e.context, e.timers, unhex(e.parent_id, '-'), e.parent_machine,
       e.entry_point, e.occurred_at, unhex(e.causation_id, '-'), unhex(e.correlation_id, '-'), e.source_component,
       e.schema_version
FROM fsm_events e LEFT JOIN fsm_instances_v2 i ON i.instance_id = unhex(e.instance_id, '-')
ORDER BY e.rowid;

-- The latest snapshot of each instance (the full record as JSON).
CREATE TABLE fsm_snapshots_v2 (
    ikey           INTEGER PRIMARY KEY,
    instance_id    BLOB    NOT NULL,
    seq            INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    record         TEXT    NOT NULL,
    schema_version INTEGER NOT NULL
);
INSERT INTO fsm_snapshots_v2
SELECT i.ikey, unhex(s.instance_id, '-'), s.seq, s.state, s.status, s.record, s.schema_version
FROM fsm_snapshots s LEFT JOIN fsm_instances_v2 i ON i.instance_id = unhex(s.instance_id, '-');

DROP TABLE fsm_events;
DROP TABLE fsm_snapshots;
DROP TABLE fsm_instances;
ALTER TABLE fsm_instances_v2 RENAME TO fsm_instances;
ALTER TABLE fsm_events_v2 RENAME TO fsm_events;
ALTER TABLE fsm_snapshots_v2 RENAME TO fsm_snapshots;

CREATE UNIQUE INDEX fsm_events_instance_seq ON fsm_events (ikey, seq);
-- (seq included: a restore reads the page of live instances from the index alone)
CREATE INDEX fsm_instances_status ON fsm_instances (status, instance_id, seq);
CREATE INDEX fsm_instances_updated ON fsm_instances (updated_at, instance_id);

-- Which instances took part in a correlation chain, and the range of their sequence numbers
-- that may hold its events: `correlated` reads only those ranges.
CREATE TABLE fsm_correlations (
    correlation_id BLOB    NOT NULL,
    ikey           INTEGER NOT NULL,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    PRIMARY KEY (correlation_id, ikey)
) WITHOUT ROWID;
INSERT INTO fsm_correlations
SELECT correlation_id, ikey, min(seq), max(seq) FROM fsm_events GROUP BY correlation_id, ikey;
