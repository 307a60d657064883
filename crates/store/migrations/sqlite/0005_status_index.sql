-- xcomponent-store, SQLite schema version 5: the index by status no longer holds `seq`.
-- An index entry holding `seq` moved at every transition (a delete and an insert in the index,
-- about 2 of the 18 pages each group commit wrote under a steady load); without it a transition
-- that leaves the status as it was does not touch the index at all (the writer then leaves
-- `status` out of its UPDATE). `load_active` reads `seq` from the row, by key.
DROP INDEX fsm_instances_status;
CREATE INDEX fsm_instances_status ON fsm_instances (status, instance_id);
