-- xcomponent-store, SQLite schema version 3: the outbox, the inbox and the dead-letter list
-- (issue 7, effects that survive a crash). Only new tables: a version 2 database is upgraded in
-- place, its events untouched. Message and instance ids are 16-byte BLOBs (UUID bytes, so they
-- sort like the ids), times are milliseconds since the Unix epoch, envelopes are JSON text.

-- Messages produced by stored transitions and not yet fully applied, written in the same
-- transaction as the events that produced them and deleted by the commit that applies them.
-- WITHOUT ROWID: the row lives in the primary-key B-tree, so an insert or a delete touches one
-- tree, not a table and its key index.
CREATE TABLE fsm_outbox (
    message_id     BLOB    NOT NULL PRIMARY KEY,
    envelope       TEXT    NOT NULL,
    schema_version INTEGER NOT NULL
) WITHOUT ROWID;

-- Messages applied to an instance (one row per instance reached), written with the instance's
-- resulting event; a message delivered again finds its row and is dropped. Purged by time with
-- no index of its own: message ids are UUID v7, so the key order is the order messages were
-- produced in, and a purge walks the key range produced before its cutoff.
CREATE TABLE fsm_inbox (
    message_id  BLOB    NOT NULL,
    instance_id BLOB    NOT NULL,
    applied_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, instance_id)
) WITHOUT ROWID;

-- Messages that could not be applied, kept until replayed or discarded.
CREATE TABLE fsm_dead_letters (
    message_id     BLOB    NOT NULL PRIMARY KEY,
    envelope       TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    attempts       INTEGER NOT NULL,
    dead_at        INTEGER NOT NULL
);
