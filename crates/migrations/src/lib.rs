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
