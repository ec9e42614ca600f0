//! From driver errors to [`StoreError`]: what a caller can act on, never a password.

use std::time::Duration;

use coord_core::StoreError;

/// What went wrong inside one operation, before it is named for the caller.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The driver or the server refused.
    Db(mysql_async::Error),
    /// The fence no longer holds; nothing was written.
    Fenced,
    /// A value does not fit the schema (too long a path, ...).
    Input(String),
    /// A row does not have the expected shape (schema drift).
    BadRow(String),
    /// The schema is missing, half-migrated or older than this build.
    Schema(String),
}

impl From<mysql_async::Error> for Failure {
    fn from(value: mysql_async::Error) -> Self {
        Failure::Db(value)
    }
}

pub(crate) fn bad_row(message: impl Into<String>) -> Failure {
    Failure::BadRow(message.into())
}

impl Failure {
    /// True when the connection may be left mid-transaction or broken: it is discarded
    /// rather than returned to the pool.
    pub(crate) fn taints_connection(&self) -> bool {
        matches!(self, Failure::Db(_) | Failure::BadRow(_))
    }
}

/// The run-migrations hint every schema error carries.
pub(crate) const RUN_MIGRATE: &str = "run `ftp-listener migrate` (or apply `print-ddl --dialect mysql`), or enable migrate_on_connect";

/// Server error codes that mean the schema is missing or old.
const NO_SUCH_TABLE: u16 = 1146;
const UNKNOWN_COLUMN: u16 = 1054;
/// Server error codes that mean a statement ran out of time.
const LOCK_WAIT_TIMEOUT: u16 = 1205;
const MARIADB_STATEMENT_TIMEOUT: u16 = 1969;
const MYSQL_STATEMENT_TIMEOUT: u16 = 3024;
/// Server error codes a later attempt may not see (deadlock, server going away, too busy).
const TRANSIENT: [u16; 6] = [1213, 1040, 1053, 1077, 1152, 1927];

/// Names a failure for the caller.
pub(crate) fn store_error(
    operation: &'static str,
    group: &str,
    timeout: Duration,
    failure: Failure,
) -> StoreError {
    match failure {
        Failure::Fenced => unreachable_fenced(operation, group),
        Failure::Input(cause) => StoreError::Rejected {
            operation,
            group: group.to_string(),
            cause,
        },
        Failure::BadRow(cause) => StoreError::Schema(format!(
            "{operation} on group `{group}`: unexpected row: {cause}; {RUN_MIGRATE}"
        )),
        Failure::Schema(cause) => StoreError::Schema(format!("{cause}; {RUN_MIGRATE}")),
        Failure::Db(e) => db_error(operation, group, timeout, e),
    }
}

// A fenced failure is turned into `StoreError::Fenced` by the caller, which has the fence;
// reaching here means a caller forgot, so say so rather than panic.
fn unreachable_fenced(operation: &'static str, group: &str) -> StoreError {
    StoreError::Rejected {
        operation,
        group: group.to_string(),
        cause: "fenced".to_string(),
    }
}

fn db_error(
    operation: &'static str,
    group: &str,
    timeout: Duration,
    e: mysql_async::Error,
) -> StoreError {
    let group = group.to_string();
    match e {
        mysql_async::Error::Server(server) => {
            let cause = format!("{} ({})", server.message, server.code);
            match server.code {
                NO_SUCH_TABLE | UNKNOWN_COLUMN => StoreError::Schema(format!(
                    "{operation} on group `{group}`: {cause}; {RUN_MIGRATE}"
                )),
                LOCK_WAIT_TIMEOUT | MARIADB_STATEMENT_TIMEOUT | MYSQL_STATEMENT_TIMEOUT => {
                    StoreError::Timeout {
                        operation,
                        group,
                        after: timeout,
                    }
                }
                code if TRANSIENT.contains(&code) => StoreError::Unavailable {
                    operation,
                    group,
                    cause,
                },
                _ => StoreError::Rejected {
                    operation,
                    group,
                    cause,
                },
            }
        }
        mysql_async::Error::Io(io) => StoreError::Unavailable {
            operation,
            group,
            cause: io.to_string(),
        },
        mysql_async::Error::Driver(d) => StoreError::Unavailable {
            operation,
            group,
            cause: d.to_string(),
        },
        other => StoreError::Rejected {
            operation,
            group,
            cause: other.to_string(),
        },
    }
}
