-- xcomponent-store, PostgreSQL schema version 4: partitions and leases (issue 9), so several
-- runtimes can share one component's instances. `fsm_partitioning` keeps each component's
-- partition count, fixed by the first runtime that asked (an instance's partition depends on it).
-- `fsm_leases` has one row per partition ever leased: its owner, its epoch (raised at every
-- acquisition) and its expiry in milliseconds by the database's clock (0 once released). Every
-- fenced commit locks the rows of its partitions in share mode and compares their epochs.
-- `fsm_lease_members` lists the runtimes hosting each component (until when), so a runtime that
-- holds no partition yet still counts in the others' fair share.
CREATE TABLE fsm_partitioning (
    component TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL CHECK (partitions > 0)
);
CREATE TABLE fsm_leases (
    component TEXT NOT NULL,
    partition INTEGER NOT NULL CHECK (partition >= 0),
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (component, partition)
);
CREATE TABLE fsm_lease_members (
    component TEXT NOT NULL,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL,
    PRIMARY KEY (component, owner)
);
