-- Every version of a cluster's configuration, with its audit trail (issue 9): `version` is
-- 1, 2, ... per cluster; `pushed_at` is the database's clock.
CREATE TABLE IF NOT EXISTS cluster_config_version (
    cluster VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    version BIGINT NOT NULL,
    body MEDIUMTEXT CHARACTER SET utf8mb4 NOT NULL,
    pushed_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    pushed_by VARCHAR(256) CHARACTER SET utf8mb4 NOT NULL,
    comment TEXT CHARACTER SET utf8mb4 NOT NULL,
    PRIMARY KEY (cluster, version)
) ENGINE = InnoDB;
