-- Every version of a cluster's configuration, with its audit trail (issue 9): `version` is
-- 1, 2, ... per cluster; `pushed_at` is milliseconds since the epoch by SQLite's clock.
CREATE TABLE IF NOT EXISTS cluster_config_version (
    cluster VARCHAR(128) NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    pushed_at INTEGER NOT NULL,
    pushed_by VARCHAR(256) NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (cluster, version)
);
