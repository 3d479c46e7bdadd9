-- Dashboard logins, in the database as on PostgreSQL, where a login on one node must be valid on
-- every other node behind a load balancer. Only a hash of the session token is stored: reading
-- this table (a backup, a SQL console) must not hand out working sessions. The flash is the
-- one-shot message of the next page; both of its columns are set or neither is.

CREATE TABLE dashboard_sessions (
    token_hash  TEXT    PRIMARY KEY,
    key_name    TEXT    NOT NULL,             -- the admin key's name, what the audit log shows
    key_digest  TEXT     NOT NULL,            -- SHA-256 of that key: a session ends with its key
    csrf        TEXT    NOT NULL,             -- the token every form of this session must carry
    expires_at  INTEGER NOT NULL,             -- unix ms, UTC
    flash_ok    INTEGER CHECK (flash_ok IN (0, 1)),
    flash_text  TEXT,
    CHECK ((flash_ok IS NULL) = (flash_text IS NULL))
) STRICT, WITHOUT ROWID;

-- Expired sessions are deleted by expiry without a scan.
CREATE INDEX dashboard_sessions_by_expires_at ON dashboard_sessions(expires_at);
