-- Cluster configuration: one versioned document per name (DESIGN §1).
CREATE TABLE IF NOT EXISTS cluster_config (
    name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    body TEXT CHARACTER SET utf8mb4 NOT NULL,
    updated_at DATETIME(3) NOT NULL,
    updated_by VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
) ENGINE = InnoDB;
