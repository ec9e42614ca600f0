-- Where a handled version went (for example the `forward` handler's destination), kept on its
-- ledger row; and every ledger version's history (one row per recorded change: state, term,
-- attempts, error or where it was moved), for `ftp-listener ledger show`. Pruned with the
-- versions themselves.
ALTER TABLE processed_file ADD COLUMN detail TEXT NULL;
CREATE TABLE IF NOT EXISTS ledger_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id VARCHAR(128) NOT NULL,
    path_hash CHAR(64) NOT NULL,
    size BIGINT NOT NULL,
    mtime_ms BIGINT NOT NULL,
    at INTEGER NOT NULL,
    term BIGINT NOT NULL,
    state VARCHAR(16) NOT NULL,
    attempts INT NOT NULL,
    detail TEXT NULL
);
CREATE INDEX IF NOT EXISTS ledger_event_version
    ON ledger_event (group_id, path_hash, size, mtime_ms, id);
