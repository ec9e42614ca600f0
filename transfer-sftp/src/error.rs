//! Mapping libssh2's errors to [`FsError`], and deciding which ones break the session.

use std::io;
use std::time::Duration;

use coord_core::FsError;
use ssh2::ErrorCode;

// SFTP status codes (draft-ietf-secsh-filexfer-02, as libssh2 reports them).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_FAILURE: i32 = 4;
const FX_NO_CONNECTION: i32 = 6;
const FX_CONNECTION_LOST: i32 = 7;
const FX_NO_SUCH_PATH: i32 = 10;
const FX_FILE_ALREADY_EXISTS: i32 = 11;
const FX_WRITE_PROTECT: i32 = 12;
// libssh2 session codes.
pub(crate) const ERROR_TIMEOUT: i32 = -9;
/// Returned by ssh2's `File::readdir` at the end of a directory.
pub(crate) const ERROR_FILE: i32 = -16;

/// Where an error happened, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site<'a> {
    pub(crate) operation: &'static str,
    pub(crate) path: &'a str,
    pub(crate) server: &'a str,
    pub(crate) timeout: Duration,
}

impl Site<'_> {
    /// Maps an error of an SFTP call. Any libssh2 session-level error means the session can no
    /// longer be trusted: it is reported as `Connection` (or `Timeout`), which the pool treats
    /// as "discard this session".
    pub(crate) fn map(&self, err: &ssh2::Error) -> FsError {
        match err.code() {
            ErrorCode::SFTP(FX_NO_SUCH_FILE | FX_NO_SUCH_PATH) => self.not_found(),
            ErrorCode::SFTP(FX_PERMISSION_DENIED | FX_WRITE_PROTECT) => FsError::PermissionDenied {
                operation: self.operation,
                path: self.path.to_string(),
            },
            ErrorCode::SFTP(FX_FILE_ALREADY_EXISTS) => FsError::AlreadyExists {
                operation: self.operation,
                path: self.path.to_string(),
            },
            ErrorCode::SFTP(FX_NO_CONNECTION | FX_CONNECTION_LOST) => {
                self.connection(err.message())
            }
            ErrorCode::SFTP(code) => FsError::Other {
                operation: self.operation,
                path: self.path.to_string(),
                cause: format!("sftp status {code}: {}", err.message()),
            },
            ErrorCode::Session(ERROR_TIMEOUT) => self.timed_out(),
            ErrorCode::Session(_) => self.connection(err.message()),
        }
    }

    /// Maps an error of a streaming read or write (ssh2 reports those as `io::Error`, without
    /// the SFTP code). Anything but "not found" or "timed out" is treated as a broken session:
    /// the handle's state is unknown after a failed transfer call.
    pub(crate) fn map_io(&self, err: &io::Error) -> FsError {
        match err.kind() {
            io::ErrorKind::NotFound => self.not_found(),
            io::ErrorKind::TimedOut => self.timed_out(),
            _ => self.connection(&err.to_string()),
        }
    }

    pub(crate) fn not_found(&self) -> FsError {
        FsError::NotFound {
            operation: self.operation,
            path: self.path.to_string(),
        }
    }

    pub(crate) fn timed_out(&self) -> FsError {
        FsError::Timeout {
            operation: self.operation,
            path: self.path.to_string(),
            after: self.timeout,
        }
    }

    pub(crate) fn connection(&self, cause: &str) -> FsError {
        FsError::Connection {
            operation: self.operation,
            server: self.server.to_string(),
            cause: cause.to_string(),
        }
    }

    pub(crate) fn other(&self, cause: impl Into<String>) -> FsError {
        FsError::Other {
            operation: self.operation,
            path: self.path.to_string(),
            cause: cause.into(),
        }
    }
}

/// True for the generic SFTP failure that OpenSSH's v3 server sends when a rename target
/// exists (it renames files with link + unlink, which fails with EEXIST).
pub(crate) fn maybe_target_exists(err: &ssh2::Error) -> bool {
    matches!(
        err.code(),
        ErrorCode::SFTP(FX_FAILURE | FX_FILE_ALREADY_EXISTS)
    )
}

/// True when the error leaves the session unusable (the pool drops it).
pub(crate) fn breaks_session(err: &FsError) -> bool {
    err.is_transient()
}
