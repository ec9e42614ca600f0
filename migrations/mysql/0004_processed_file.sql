-- The processed-file ledger (DESIGN §5). A long utf8mb4 path cannot be indexed, so the key
-- holds its SHA-256 (lowercase hex) and the path is kept beside it.
CREATE TABLE IF NOT EXISTS processed_file (
    group_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    path_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    path VARCHAR(4096) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    size BIGINT NOT NULL,
    mtime_ms BIGINT NOT NULL,
    state VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    term BIGINT NOT NULL,
    attempts INT NOT NULL,
    last_error TEXT CHARACTER SET utf8mb4 NULL,
    updated_at DATETIME(3) NOT NULL,
    PRIMARY KEY (group_id, path_hash, size, mtime_ms)
) ENGINE = InnoDB;
