-- The holder's process start and its lease (DESIGN §4). A NULL `renewed_at` means released,
-- so rows written by the seeds (no lease) can be taken over at once.
--
-- One ALTER TABLE per migration: MySQL 8 has no `ADD COLUMN IF NOT EXISTS`, and DDL commits
-- implicitly, so a migration with two statements could stop half-applied. A single ALTER is
-- atomic on both MySQL 8 and MariaDB 10.6+, so this migration is applied entirely or not at
-- all. The ID columns become binary-collated: member and group IDs are case-sensitive.
ALTER TABLE token_holder
    MODIFY group_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY task_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    ADD COLUMN incarnation BIGINT NULL,
    ADD COLUMN renewed_at DATETIME(3) NULL;
