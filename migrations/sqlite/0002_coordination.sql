-- Incarnations, millisecond leases and heartbeats, the processed-file ledger and the cluster
-- configuration. Timestamps are INTEGER milliseconds since the Unix epoch, written with the
-- database's clock (all processes sharing a SQLite file are on one host).

-- token_holder: the holder's process start and its lease. renewed_at NULL means released, so a
-- row made by the seeds' DDL counts as released and can be taken over.
ALTER TABLE token_holder ADD COLUMN incarnation BIGINT NULL;
ALTER TABLE token_holder ADD COLUMN renewed_at INTEGER NULL;

-- health_check: last_heartbeat becomes INTEGER milliseconds (SQLite cannot change a column's
-- type in place, so the table is rebuilt; seed rows hold text timestamps in UTC).
CREATE TABLE health_check_ms (
task_id VARCHAR(128) NOT NULL,
group_id VARCHAR(128) NOT NULL,
last_heartbeat INTEGER NOT NULL,
incarnation BIGINT NULL,
PRIMARY KEY (task_id, group_id)
);

INSERT INTO health_check_ms (task_id, group_id, last_heartbeat, incarnation)
SELECT task_id, group_id,
       CASE
           WHEN typeof(last_heartbeat) IN ('integer', 'real') THEN CAST(last_heartbeat AS INTEGER)
           ELSE COALESCE(CAST(ROUND((julianday(last_heartbeat) - 2440587.5) * 86400000.0) AS INTEGER), 0)
       END,
       NULL
FROM health_check;

DROP TABLE health_check;
ALTER TABLE health_check_ms RENAME TO health_check;

-- The processed-file ledger (DESIGN §5). path_hash is the lowercase hex SHA-256 of path.
CREATE TABLE processed_file (
group_id VARCHAR(128) NOT NULL,
path_hash CHAR(64) NOT NULL,
path TEXT NOT NULL,
size BIGINT NOT NULL,
mtime_ms BIGINT NOT NULL,
state VARCHAR(16) NOT NULL,
term BIGINT NOT NULL,
attempts INT NOT NULL DEFAULT 0,
last_error TEXT NULL,
updated_at INTEGER NOT NULL,
PRIMARY KEY (group_id, path_hash, size, mtime_ms)
);

-- Cluster configuration: one versioned body per name.
CREATE TABLE cluster_config (
name VARCHAR(128) NOT NULL PRIMARY KEY,
version BIGINT NOT NULL,
body TEXT NOT NULL,
updated_at INTEGER NOT NULL,
updated_by VARCHAR(128) NULL
);
