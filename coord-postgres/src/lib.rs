//! The coordination store on PostgreSQL: [`PgStore`] implements
//! [`coord_core::CoordinationStore`] with tokio-postgres through a deadpool-postgres pool,
//! plain or over TLS (rustls).
//!
//! Every trait method is **one SQL statement**: one round trip and one atomic step. A
//! member's steady-state tick is one heartbeat statement; a takeover one more.
//!
//! What this crate must never do:
//! - read or send the node's clock: liveness is `clock_timestamp()` on the server, in UTC;
//! - retry inside a call: every statement has a timeout (server side, and the client gives up
//!   shortly after); a broken connection is dropped and replaced on the next call;
//! - show a password in a log line, an error or `Debug` output;
//! - create or change tables outside [`PgStore::migrate`] (the migrations crate owns the DDL).
//!
//! ```no_run
//! # async fn demo() -> Result<(), coord_core::StoreError> {
//! use coord_postgres::{PgSettings, PgStore};
//! let settings = PgSettings::from_url("postgres://postgres@127.0.0.1:5432/test?schema=ha")?;
//! // Opt-in migrations at start: open without the schema check, migrate, then use.
//! let store = PgStore::open(settings.clone())?;
//! store.migrate().await?;
//! // Or, with migrations applied by the operators: connect checks the schema version.
//! let store = PgStore::connect(settings).await?;
//! # let _ = store; Ok(()) }
//! ```

mod cluster;
mod coordination;
mod error;
mod history;
mod ledger;
mod settings;
mod sql;
mod store;
mod tls;

pub use coord_core::{Secret, TlsMode};
pub use settings::PgSettings;
pub use store::PgStore;
