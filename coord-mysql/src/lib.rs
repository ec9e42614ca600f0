//! coord-mysql: the coordination store (`coord_core::CoordinationStore`) on MySQL 8 and
//! MariaDB 10.11, through mysql_async's pool, with optional TLS (rustls).
//!
//! What it does: the heartbeat in one round trip (a multi-statement batch that is one
//! READ COMMITTED transaction: upsert the member's row, renew the lease if this member *and*
//! incarnation hold the token, read the holder and the lease's age), the takeover as one
//! conditional `UPDATE` (term and lease re-checked under InnoDB's row lock, so at most one
//! candidate wins a term), and the fenced ledger (a transaction that holds a shared lock on
//! the group's `token_holder` row, so no takeover interleaves). Liveness is timed by the
//! database's clock only (`UTC_TIMESTAMP(3)`, so the session time zone cannot skew it), and
//! every operation is bounded by a statement timeout on both sides (client deadline, server
//! `max_statement_time`/`max_execution_time`, `innodb_lock_wait_timeout`). Schema changes come
//! from the `migrations` crate; [`MySqlStore::connect`] refuses a missing or older schema.
//!
//! What it must never do: read a node's clock for liveness, retry inside one call (a failed
//! or timed-out connection is closed and the next call gets a fresh one), put a value into
//! SQL other than as a hex literal or a formatted number, or let a password reach a log line,
//! an error or `Debug` output.
//!
//! Server requirements: InnoDB tables; `binlog_format` ROW or MIXED if the binary log is on
//! (the defaults: READ COMMITTED writes are refused under STATEMENT).

mod cluster;
mod coordination;
mod error;
mod history;
mod ledger;
mod settings;
mod sql;
mod store;

pub use coord_core::{Secret, TlsMode};
pub use settings::MySqlSettings;
pub use store::MySqlStore;
