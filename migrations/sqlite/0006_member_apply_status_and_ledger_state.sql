-- Where each member stands with its cluster's configuration (issue 9): the version it runs,
-- the newest one it could not apply and why, and what it runs, for `ftp-listener status`;
-- written by the member itself, `updated_at` in milliseconds since the epoch by SQLite's clock.
CREATE TABLE IF NOT EXISTS cluster_member_status (
    cluster VARCHAR(128) NOT NULL,
    member_id VARCHAR(128) NOT NULL,
    applied_version BIGINT NULL,
    failed_version BIGINT NULL,
    error TEXT NULL,
    listeners TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (cluster, member_id)
);
-- The ledger by state and age (issue 11): a takeover loads only the versions with work left
-- (claimed, failed, handled), and settled versions are pruned from the store by age, so a
-- leader's memory follows its directory, not the ledger's history.
CREATE INDEX IF NOT EXISTS processed_file_state ON processed_file (group_id, state, updated_at);
