-- Operators' requests to the leader (`ftp-listener ledger retry|forget`), taken at its
-- next poll.
CREATE TABLE IF NOT EXISTS ledger_request (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id VARCHAR(128) NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ms BIGINT NOT NULL,
    action VARCHAR(16) NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_request_group ON ledger_request (group_id, id);
