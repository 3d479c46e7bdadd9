-- Leases for background work that must run on one node at a time (the retention cleanup):
-- a node holds a lease until `until` (unix ms) and renews it while it works; a node that
-- dies lets it expire.
CREATE TABLE leases (
    name    TEXT    PRIMARY KEY,
    holder  TEXT    NOT NULL,                 -- the node's id, random per process
    until   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
