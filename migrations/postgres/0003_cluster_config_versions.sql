-- Every version of a cluster's configuration, with its audit trail (issue 9): `version` is
-- 1, 2, ... per cluster; `pushed_at` is the database's clock.
CREATE TABLE IF NOT EXISTS cluster_config_version (
    cluster VARCHAR(128) NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    pushed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    pushed_by VARCHAR(256) NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (cluster, version)
);
