//! The `RemoteFs` trait: what a file source (FTP, FTPS, SFTP, a local directory) must do.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::ledger::FileVersion;

/// What kind of entry a listing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, unknown).
    Other,
}

/// One listed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Full remote path: the listed directory joined with the entry's name by `/`.
    pub path: String,
    /// The entry's name (last path segment), already checked by [`crate::check_name`].
    pub name: String,
    /// Size in bytes (0 when unknown).
    pub size: u64,
    /// Modification time as the server reports it, if it does.
    pub mtime: Option<SystemTime>,
    /// The kind of entry.
    pub kind: EntryKind,
}

impl RemoteEntry {
    /// The ledger's identity of this entry: `(path, size, mtime)`.
    pub fn version(&self) -> FileVersion {
        let mtime_ms = self
            .mtime
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        FileVersion {
            path: self.path.clone(),
            size: self.size,
            mtime_ms,
        }
    }
}

/// How to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// Descend into subdirectories, at most this many levels below the listed directory
    /// (0: only the directory itself).
    pub max_depth: u32,
}

/// The result of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// The entries, in the server's order (directories included when recursing).
    pub entries: Vec<RemoteEntry>,
    /// Lines or names that were skipped: unparsable listing lines and hostile names (each
    /// logged once by the backend).
    pub skipped: u64,
}

/// What to do when the target of a rename exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace the target.
    Overwrite,
    /// Fail with [`FsError::AlreadyExists`] when the target exists.
    NoOverwrite,
}

/// Why a file operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The path does not exist (for example removed between list and read).
    #[error("{operation} `{path}`: not found")]
    NotFound {
        /// What was being done.
        operation: &'static str,
        /// The remote path.
        path: String,
    },
    /// The server refused access.
    #[error("{operation} `{path}`: permission denied")]
    PermissionDenied {
        /// What was being done.
        operation: &'static str,
        /// The remote path.
        path: String,
    },
    /// The target of a no-overwrite rename exists.
    #[error("{operation} `{path}`: already exists")]
    AlreadyExists {
        /// What was being done.
        operation: &'static str,
        /// The remote path.
        path: String,
    },
    /// A name or path that could escape its directory or is not representable.
    #[error("{operation} `{path}`: unsafe path: {reason}")]
    UnsafePath {
        /// What was being done.
        operation: &'static str,
        /// The path, escaped for display.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Login refused (wrong user or password, key not accepted).
    #[error("authentication to {server} failed: {cause}")]
    Auth {
        /// `host:port`.
        server: String,
        /// The cause, without secrets.
        cause: String,
    },
    /// The server's identity could not be verified (host key mismatch or unknown, bad
    /// certificate).
    #[error("cannot verify {server}: {cause}")]
    Trust {
        /// `host:port`.
        server: String,
        /// The cause.
        cause: String,
    },
    /// The connection failed or broke; the next operation reconnects.
    #[error("{operation} on {server}: connection: {cause}")]
    Connection {
        /// What was being done.
        operation: &'static str,
        /// `host:port`.
        server: String,
        /// The cause.
        cause: String,
    },
    /// The operation did not finish within its timeout.
    #[error("{operation} `{path}`: timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The remote path.
        path: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Any other refusal by the server, with its reply.
    #[error("{operation} `{path}`: {cause}")]
    Other {
        /// What was being done.
        operation: &'static str,
        /// The remote path.
        path: String,
        /// The server's reply or the local cause.
        cause: String,
    },
}

impl FsError {
    /// True for errors worth retrying after a reconnect (connection, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, FsError::Connection { .. } | FsError::Timeout { .. })
    }
}

/// A streaming read of one remote file; memory stays constant whatever the file's size.
pub trait FileReader: Send {
    /// Reads up to `buf.len()` bytes; `Ok(0)` at the end of the file.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, FsError>> + Send;

    /// Finishes the transfer (for FTP, reads the server's final reply). Dropping a reader
    /// without finishing aborts the transfer.
    fn finish(self) -> impl Future<Output = Result<(), FsError>> + Send;
}

/// A streaming write (upload) of one remote file.
pub trait FileWriter: Send {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), FsError>> + Send;

    /// Completes the upload; the file is complete on the server only after this returns Ok.
    fn finish(self) -> impl Future<Output = Result<(), FsError>> + Send;
}

/// A file source. Implemented by `transfer-ftp`, `transfer-sftp`, the listener's local
/// directory source, and `testkit`'s in-memory file system.
///
/// Every operation has a timeout; a broken connection is reported as
/// [`FsError::Connection`] and the next call reconnects (with backoff).
pub trait RemoteFs: Send + Sync {
    /// The streaming reader.
    type Reader: FileReader;
    /// The streaming writer.
    type Writer: FileWriter;

    /// Lists `dir` (optionally recursively). Unparsable lines and hostile names are skipped,
    /// counted in [`Listing::skipped`] and logged, never fatal.
    fn list(
        &self,
        dir: &str,
        options: &ListOptions,
    ) -> impl Future<Output = Result<Listing, FsError>> + Send;

    /// Opens `path` for a streaming read.
    fn open_read(&self, path: &str) -> impl Future<Output = Result<Self::Reader, FsError>> + Send;

    /// Opens `path` for a streaming upload (created or truncated).
    fn open_write(&self, path: &str) -> impl Future<Output = Result<Self::Writer, FsError>> + Send;

    /// Renames `from` to `to`.
    fn rename(
        &self,
        from: &str,
        to: &str,
        mode: RenameMode,
    ) -> impl Future<Output = Result<(), FsError>> + Send;

    /// Deletes the file `path`.
    fn delete(&self, path: &str) -> impl Future<Output = Result<(), FsError>> + Send;

    /// Creates `path` and its missing parents (`mkdir -p`); existing directories are fine.
    fn create_dir_all(&self, path: &str) -> impl Future<Output = Result<(), FsError>> + Send;

    /// The size of the regular file `path`, `None` when nothing is there (a directory is not
    /// a file: [`FsError::Other`]). The default lists the parent directory; backends answer
    /// with one call of their own (FTP `SIZE`, SFTP `stat`, `metadata`).
    fn size(&self, path: &str) -> impl Future<Output = Result<Option<u64>, FsError>> + Send {
        async move {
            let (dir, name) = match path.trim_end_matches('/').rsplit_once('/') {
                Some(("", name)) => ("/", name),
                Some((dir, name)) => (dir, name),
                None => (".", path),
            };
            let listing = match self.list(dir, &ListOptions::default()).await {
                Ok(listing) => listing,
                Err(FsError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            match listing.entries.iter().find(|e| e.name == name) {
                None => Ok(None),
                Some(e) if e.kind == EntryKind::File => Ok(Some(e.size)),
                Some(_) => Err(FsError::Other {
                    operation: "size",
                    path: path.to_string(),
                    cause: "not a regular file".into(),
                }),
            }
        }
    }
}
