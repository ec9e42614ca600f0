//! From driver and pool errors to [`StoreError`], by SQLSTATE where the server answered.

use std::error::Error as _;
use std::time::Duration;

use coord_core::StoreError;
use deadpool_postgres::{PoolError, TimeoutType};

/// What to do with the connection after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connection {
    /// The server answered with an error; the connection is fine.
    Keep,
    /// The connection broke or is in an unknown state: drop it, the pool opens a new one.
    Discard,
}

/// Tells the operator what to do about a missing or old schema.
pub(crate) const RUN_MIGRATE: &str =
    "run `ftp-listener migrate` (or apply `ftp-listener print-ddl --dialect postgres`)";

/// The error chain as one line (`outer: inner: innermost`), without repeats.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

/// Maps a driver error. `statement_timeout` is reported for a server-side cancel.
pub(crate) fn from_pg(
    error: &tokio_postgres::Error,
    operation: &'static str,
    group: &str,
    statement_timeout: Duration,
) -> (StoreError, Connection) {
    let group = group.to_owned();
    let Some(db) = error.as_db_error() else {
        // I/O, TLS, protocol, closed connection: the link is gone or unusable.
        return (
            StoreError::Unavailable {
                operation,
                group,
                cause: chain(error),
            },
            Connection::Discard,
        );
    };
    let code = db.code().code();
    let cause = format!("{} (SQLSTATE {code})", db.message());
    let mapped = match code {
        // query_canceled: our statement_timeout fired.
        "57014" => StoreError::Timeout {
            operation,
            group,
            after: statement_timeout,
        },
        // undefined_table, undefined_column, invalid_schema_name, undefined_function
        "42P01" | "42703" | "3F000" | "42883" => StoreError::Schema(format!(
            "{operation} on group `{group}`: {cause}; {RUN_MIGRATE}"
        )),
        // connection exceptions, shutdown, too many connections, serialization, deadlock
        c if c.starts_with("08")
            || c.starts_with("57P")
            || c == "53300"
            || c == "40001"
            || c == "40P01" =>
        {
            StoreError::Unavailable {
                operation,
                group,
                cause,
            }
        }
        // authentication, missing database, permissions, constraints, ...
        _ => StoreError::Rejected {
            operation,
            group,
            cause,
        },
    };
    let connection = if code.starts_with("08") || code.starts_with("57P") {
        Connection::Discard
    } else {
        Connection::Keep
    };
    (mapped, connection)
}

/// Maps a failure to get a pooled connection (which may mean opening one).
pub(crate) fn from_pool(
    error: &PoolError,
    operation: &'static str,
    group: &str,
    target: &str,
    statement_timeout: Duration,
    connect_timeout: Duration,
) -> StoreError {
    match error {
        PoolError::Backend(e) => {
            let (mapped, _) = from_pg(e, operation, group, statement_timeout);
            // Name the server: a connect error is about where we went, not what we asked.
            match mapped {
                StoreError::Unavailable {
                    operation,
                    group,
                    cause,
                } => StoreError::Unavailable {
                    operation,
                    group,
                    cause: format!("{target}: {cause}"),
                },
                StoreError::Rejected {
                    operation,
                    group,
                    cause,
                } => StoreError::Rejected {
                    operation,
                    group,
                    cause: format!("{target}: {cause}"),
                },
                other => other,
            }
        }
        // Every pooled connection is busy for longer than the connect timeout.
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Timeout {
            operation,
            group: group.to_owned(),
            after: connect_timeout,
        },
        // Opening (or checking) a connection took too long: the server is unreachable.
        PoolError::Timeout(_) => StoreError::Unavailable {
            operation,
            group: group.to_owned(),
            cause: format!("{target}: no connection within {connect_timeout:?}"),
        },
        other => StoreError::Unavailable {
            operation,
            group: group.to_owned(),
            cause: format!(
                "{target}: connection pool: {}",
                other
                    .source()
                    .map_or_else(|| other.to_string(), |s| s.to_string())
            ),
        },
    }
}
