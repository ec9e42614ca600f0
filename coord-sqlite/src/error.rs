//! From sqlx's errors to [`StoreError`]: transient (retry on a later tick) or not, and
//! whether the connection must be replaced.

use coord_core::StoreError;

/// SQLite primary result codes we tell apart (the low byte of the extended code).
const SQLITE_ERROR: i32 = 1;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_NOTADB: i32 = 26;

/// A failed call, classified.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: StoreError,
    /// The connection may be unusable (or left inside a transaction): close it.
    pub(crate) broken: bool,
}

pub(crate) fn classify(operation: &'static str, group: &str, error: sqlx::Error) -> Failure {
    let unavailable = |cause: String, broken| Failure {
        error: StoreError::Unavailable {
            operation,
            group: group.to_owned(),
            cause,
        },
        broken,
    };
    let rejected = |cause: String, broken| Failure {
        error: StoreError::Rejected {
            operation,
            group: group.to_owned(),
            cause,
        },
        broken,
    };
    match error {
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map_or(0, |c| c & 0xff);
            let message = db.message().to_owned();
            match code {
                SQLITE_BUSY | SQLITE_LOCKED => unavailable(message, false),
                SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN | SQLITE_PROTOCOL => {
                    unavailable(message, true)
                }
                SQLITE_NOTADB | SQLITE_CORRUPT => rejected(message, true),
                SQLITE_ERROR
                    if message.contains("no such table") || message.contains("no such column") =>
                {
                    Failure {
                        error: StoreError::Schema(format!(
                            "{operation}: {message}; run `ftp-listener migrate`"
                        )),
                        broken: false,
                    }
                }
                _ => rejected(message, false),
            }
        }
        sqlx::Error::PoolTimedOut => unavailable("no free connection in the pool".into(), false),
        sqlx::Error::PoolClosed => unavailable("the pool is closed".into(), false),
        e @ (sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)) => {
            unavailable(e.to_string(), true)
        }
        other => rejected(other.to_string(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_transient() {
        let f = classify("heartbeat", "g", sqlx::Error::PoolTimedOut);
        assert!(f.error.is_transient());
        assert!(!f.broken);
        assert!(f.error.to_string().contains("heartbeat on group `g`"));
    }

    #[test]
    fn decode_errors_are_not_transient() {
        let f = classify("claim", "g", sqlx::Error::RowNotFound);
        assert!(!f.error.is_transient());
    }
}
