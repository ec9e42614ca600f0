-- The seed tables, exactly as the seeds' DDL creates them (IF NOT EXISTS, so a database made
-- with that DDL is taken over in place; 0002 upgrades them).
CREATE TABLE IF NOT EXISTS token_holder (
group_id VARCHAR(128) NOT NULL PRIMARY KEY,
task_id VARCHAR(128) NOT NULL,
term BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS health_check (
task_id VARCHAR(128) NOT NULL,
group_id VARCHAR(128) NOT NULL,
last_heartbeat DATETIME NOT NULL,
PRIMARY KEY (task_id, group_id)
);
