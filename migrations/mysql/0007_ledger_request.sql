-- Operators' requests to the leader (`ftp-listener ledger retry|forget`), taken at its
-- next poll.
CREATE TABLE IF NOT EXISTS ledger_request (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    group_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    path VARCHAR(4096) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    size BIGINT NOT NULL,
    mtime_ms BIGINT NOT NULL,
    action VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    requested_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY ledger_request_group (group_id, id)
) ENGINE = InnoDB;
