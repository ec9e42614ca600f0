-- Where a handled version went (for example the `forward` handler's destination), kept on its
-- ledger row; and every ledger version's history (one row per recorded change: state, term,
-- attempts, error or where it was moved), for `ftp-listener ledger show`. Pruned with the
-- versions themselves.
ALTER TABLE processed_file ADD COLUMN detail TEXT CHARACTER SET utf8mb4 NULL;
CREATE TABLE IF NOT EXISTS ledger_event (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    group_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    path_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    size BIGINT NOT NULL,
    mtime_ms BIGINT NOT NULL,
    at DATETIME(3) NOT NULL,
    term BIGINT NOT NULL,
    state VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    attempts INT NOT NULL,
    detail TEXT CHARACTER SET utf8mb4 NULL,
    KEY ledger_event_version (group_id, path_hash, size, mtime_ms, id)
) ENGINE = InnoDB;
