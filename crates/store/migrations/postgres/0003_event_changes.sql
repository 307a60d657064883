-- xcomponent-store, PostgreSQL schema version 3: a stored transition keeps what it changed in the
-- instance data, not the whole data (record layout 2; issue 12). `context` (the whole data) stays
-- for creations and for the events written before this version (record layout 1), which are read
-- as before: their `context` replaces the data when folded. `changes` holds, for a transition of
-- layout 2, the top-level keys it set and removed: {"set": {...}, "removed": [...]}, NULL when the
-- transition did not change the data. Both statements only change the catalog: no row is rewritten.
ALTER TABLE fsm_events ALTER COLUMN context DROP NOT NULL;
ALTER TABLE fsm_events ADD COLUMN changes JSONB;
