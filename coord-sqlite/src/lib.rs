//! `coord-sqlite`: [`coord_core::CoordinationStore`] on SQLite, the embedded default for one
//! host where several listener processes share one database file (or one process that wants
//! a persistent ledger).
//!
//! How it keeps the protocol's promises (DESIGN §4):
//! - **One clock.** Every timestamp is written and every age computed in SQL from SQLite's
//!   `julianday('now')`, as integer milliseconds since the Unix epoch. All processes sharing a
//!   file are on one host, so they share that clock; node times are never sent.
//! - **Serialised writers.** The file is in WAL mode (readers never block the writer) and every
//!   write transaction starts with `BEGIN IMMEDIATE`, so concurrent processes queue on the
//!   write lock (up to the busy timeout) instead of deadlocking on a lock upgrade.
//! - **One call per tick.** The heartbeat is one multi-statement batch (begin, upsert, renew,
//!   read, commit) sent to the engine at once; a takeover is one more. A ledger claim or
//!   record is one such batch per chunk of up to 500 versions (fence check, writes and commit
//!   together), so no await ever happens while the write lock is held; a later chunk's
//!   failure is returned while earlier chunks stay applied. The ledger loads in pages of
//!   5,000 rows, each its own call.
//! - **Bounded calls.** Every operation runs under the statement timeout; a connection that
//!   timed out, broke, or failed inside its own transaction is closed, and the next call opens
//!   a fresh one. Nothing is retried inside a call.
//!
//! What it must never do: compare node clocks, retry inside a call, hand a connection with an
//! open transaction back to the pool, or create tables on its own unless `migrate` is set (the
//! schema comes from the `migrations` crate, checked at connect).
//!
//! ```no_run
//! # async fn demo() -> Result<(), coord_core::StoreError> {
//! use coord_sqlite::{SqliteSettings, SqliteStore};
//! let mut settings = SqliteSettings::from_url("sqlite:///var/lib/ftp-listener/coord.db")?;
//! settings.migrate = true; // create the file and apply migrations at start
//! let store = SqliteStore::connect(settings).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod cluster;
mod coordination;
mod error;
mod history;
mod ledger;
mod settings;
mod sql;
mod store;

pub use migrations::SQLITE_SCHEMA_VERSION;
pub use settings::SqliteSettings;
pub use store::SqliteStore;
