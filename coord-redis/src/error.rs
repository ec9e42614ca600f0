//! Redis errors as [`StoreError`]s, with secrets scrubbed from every cause.

use std::time::Duration;

use coord_core::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::settings::scrub;

/// Connection trouble (a later call, on a new connection, may succeed) as opposed to a refusal.
fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
        // A script of another client running past `busy-reply-threshold`.
        || e.code() == Some("BUSY")
}

/// `e`, met while doing `operation` on `group`, as a store error.
pub(crate) fn store_error(
    operation: &'static str,
    group: &str,
    e: &RedisError,
    after: Duration,
    secrets: &[String],
) -> StoreError {
    let group = group.to_owned();
    if e.is_timeout() {
        return StoreError::Timeout {
            operation,
            group,
            after,
        };
    }
    let cause = scrub(e.to_string(), secrets);
    if is_unavailable(e) {
        StoreError::Unavailable {
            operation,
            group,
            cause,
        }
    } else {
        StoreError::Rejected {
            operation,
            group,
            cause,
        }
    }
}

/// A reply the scripts never give (a bug, or keys written by something else).
pub(crate) fn malformed(operation: &'static str, group: &str, what: &str) -> StoreError {
    StoreError::Rejected {
        operation,
        group: group.to_owned(),
        cause: format!("malformed reply: {what}"),
    }
}
