-- Millisecond heartbeats and the writer's process start (DESIGN §2: a second live process
-- with the same member ID is refused). One atomic ALTER TABLE, see 0002.
ALTER TABLE health_check
    MODIFY task_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY group_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY last_heartbeat DATETIME(3) NOT NULL,
    ADD COLUMN incarnation BIGINT NULL;
