-- xcomponent-store, SQLite schema version 6: an instance's events form a chain instead of an
-- index. The unique index on (ikey, seq) put each event of a busy instance into a different
-- leaf, one more page written (and often three pages rebalanced) per event: about a quarter of
-- the writer's time under a steady load of many instances. Now each event holds `prev`, the
-- rowid of the same instance's event with the next lower seq (NULL for its first), and the
-- instance's row holds `last_event`, the rowid of its highest-seq event; the summary row is
-- written at every commit anyway. A partial index keeps one event in 64 per instance, so a read
-- can enter a chain near any seq. The chains are built from the old index before it is dropped.
ALTER TABLE fsm_events ADD COLUMN prev INTEGER;
ALTER TABLE fsm_instances ADD COLUMN last_event INTEGER;
UPDATE fsm_events SET prev = (
    SELECT p.rowid FROM fsm_events p WHERE p.ikey = fsm_events.ikey AND p.seq < fsm_events.seq
    ORDER BY p.seq DESC LIMIT 1);
UPDATE fsm_instances SET last_event = (
    SELECT e.rowid FROM fsm_events e WHERE e.ikey = fsm_instances.ikey ORDER BY e.seq DESC LIMIT 1);
CREATE INDEX fsm_events_block ON fsm_events (ikey, seq) WHERE seq % 64 = 0;
DROP INDEX fsm_events_instance_seq;
