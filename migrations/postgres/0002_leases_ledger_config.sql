-- Leases, incarnations, millisecond heartbeats, the processed-file ledger and cluster config.
-- Every timestamp column holds UTC wall time written by the database's own clock
-- (clock_timestamp() AT TIME ZONE 'UTC'); node clocks never reach these columns.

-- The holder's process start (Incarnation, the same 64 bits as a signed BIGINT) and its
-- lease. renewed_at NULL means released: a seed-era row (no incarnation, no lease) has no
-- holder, so a standby takes over at once after the upgrade.
ALTER TABLE token_holder ADD COLUMN IF NOT EXISTS incarnation BIGINT NULL;
ALTER TABLE token_holder ADD COLUMN IF NOT EXISTS renewed_at TIMESTAMP(3) NULL;

-- Millisecond heartbeats (the seed column is TIMESTAMP, microseconds) and the writer's
-- process start, so a second live process with the same member ID is refused.
ALTER TABLE health_check ALTER COLUMN last_heartbeat TYPE TIMESTAMP(3);
ALTER TABLE health_check ADD COLUMN IF NOT EXISTS incarnation BIGINT NULL;

-- The processed-file ledger (DESIGN section 5). path_hash is the lowercase hex SHA-256 of
-- path, so the key stays short for every dialect.
CREATE TABLE IF NOT EXISTS processed_file (
    group_id VARCHAR(128) NOT NULL,
    path_hash CHAR(64) NOT NULL,
    path TEXT NOT NULL CHECK (octet_length(path) <= 4096),
    size BIGINT NOT NULL,
    mtime_ms BIGINT NOT NULL,
    state VARCHAR(16) NOT NULL CHECK (state IN ('claimed', 'handled', 'done', 'failed', 'error')),
    term BIGINT NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    updated_at TIMESTAMP(3) NOT NULL,
    PRIMARY KEY (group_id, path_hash, size, mtime_ms)
);

-- Cluster configuration: one row per named definition, versioned.
CREATE TABLE IF NOT EXISTS cluster_config (
    name VARCHAR(128) NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at TIMESTAMP(3) NOT NULL,
    updated_by VARCHAR(128) NULL
);
