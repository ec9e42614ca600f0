//! coord-mysql: the coordination store (`coord_core::CoordinationStore`) on MySQL 8 and
//! MariaDB 10.11, through mysql_async's pool, with optional TLS (rustls).
//!
//! What it does: the heartbeat in one round trip (a multi-statement batch that is one
//! transaction), the takeover as one conditional `UPDATE`, and the fenced ledger, all timed
//! by the database's clock (`UTC_TIMESTAMP(3)`), every operation bounded by a statement
//! timeout. Schema changes come from the `migrations` crate; [`MySqlStore::connect`] refuses
//! a missing or older schema.
//!
//! What it must never do: read a node's clock for liveness, retry inside one call (a broken
//! connection is dropped and replaced on the next call), interpolate a value into SQL other
//! than as a hex literal, or let a password reach a log line, an error or `Debug` output.

mod error;
mod ledger;
mod settings;
mod sql;
mod store;

pub use settings::{MySqlSettings, TlsMode};
pub use store::MySqlStore;
