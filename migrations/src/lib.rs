//! Versioned SQL for each dialect (`postgres/`, `mysql/`, `sqlite/` beside `src/`), applied by
//! sqlx's migrator: checksummed, and locked against concurrent starts. Also printable per
//! dialect ([`ddl`]) for teams that apply schema changes themselves.
//!
//! The seed tables `token_holder` and `health_check` keep their names and columns, so a
//! database created with the seeds' DDL is upgraded in place.
//!
//! Each dialect lives in its own module behind its own cargo feature.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "mysql")]
pub use mysql::*;
#[cfg(feature = "postgres")]
pub use postgres::*;
#[cfg(feature = "sqlite")]
pub use sqlite::*;

/// Why applying migrations failed. Messages name the database and the cause, never a
/// password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Could not connect to the database.
    #[error("migrations: cannot connect to {target}: {cause}")]
    Connect {
        /// `dialect://host:port/database`, without credentials.
        target: String,
        /// The cause.
        cause: String,
    },
    /// A migration failed, or an applied one was changed (checksum mismatch), or the database
    /// is newer than this build.
    #[error("migrations on {target}: {cause}")]
    Migrate {
        /// `dialect://host:port/database`, without credentials.
        target: String,
        /// The cause.
        cause: String,
    },
}
