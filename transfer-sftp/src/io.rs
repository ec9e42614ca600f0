//! Streaming read and write. Each holds one pooled session for its lifetime and moves one
//! chunk (at most `chunk_size`) per blocking call, so memory stays constant whatever the file
//! size.
//!
//! Reads are pipelined by libssh2 itself: each `sftp_read` call keeps up to four times the
//! buffer it is given requested ahead, in `FXP_READ`s of at most 30,000 bytes
//! (`MAX_SFTP_READ_SIZE`, read-ahead capped at 8 MiB; libssh2 `src/sftp.c`, `sftp_read`). So
//! the buffer handed to libssh2 decides both the requests in flight and their number for a
//! small file: a fixed 256 KiB buffer sent 35 requests (1 MiB ahead) for a 4 KiB file, and
//! filling that buffer through ever shorter slices let the read-ahead collapse at the end of
//! every chunk. The reader therefore starts with a small window ([`INITIAL_WINDOW`]: two
//! requests, one round trip for a small file, end of file included), doubles it while reads
//! come back full, up to `chunk_size`, and never passes libssh2 less than half the window, so
//! between two and four windows stay in flight on a large file.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coord_core::{FileReader, FileWriter, FsError};

use crate::error::Site;
use crate::pool::{Lease, Pool, Retry};

/// The first read window: libssh2 asks for 4 × 8 KiB ahead, two `FXP_READ`s (30,000 and
/// 8,192 bytes), so a file under 30,000 bytes and its end come back in one round trip.
const INITIAL_WINDOW: usize = 8 * 1024;

/// The window after a read that came back at most half full (most likely the end of the
/// file): libssh2 asks for nothing more while at least 4 × this much is still requested, so
/// the end-of-file answer already on its way is read without new requests.
const TAIL_WINDOW: usize = 2 * 1024;

/// The next window after a refill of `got` bytes through `window` (see the module doc): a
/// refill stops once half the window is filled, so more than half means the data is flowing.
fn next_window(window: usize, got: usize, max: usize) -> usize {
    if got > window / 2 {
        window.saturating_mul(2).min(max).max(1)
    } else {
        TAIL_WINDOW.min(max).max(1)
    }
}

/// An open remote file and the session it lives on.
struct Open {
    lease: Lease,
    file: ssh2::File,
}

impl Open {
    /// Closes the handle and gives the session back (dropped if the close failed). Blocking.
    fn close(mut self, site: &Site<'_>) -> Result<(), FsError> {
        let result = self.file.close().map_err(|e| site.map(&e));
        drop(self.file);
        self.lease.release(result.as_ref().err());
        result
    }
}

/// What every blocking step needs to build its errors.
#[derive(Debug, Clone)]
struct Target {
    path: String,
    server: String,
    timeout: Duration,
}

impl Target {
    fn new(pool: &Pool, path: &str) -> Target {
        Target {
            path: path.to_string(),
            server: pool.server.clone(),
            timeout: pool.settings.operation_timeout,
        }
    }

    fn site(&self, operation: &'static str) -> Site<'_> {
        Site {
            operation,
            path: &self.path,
            server: &self.server,
            timeout: self.timeout,
        }
    }
}

fn join_error(target: &Target, operation: &'static str, e: tokio::task::JoinError) -> FsError {
    target
        .site(operation)
        .other(format!("blocking task failed: {e}"))
}

async fn open_file(
    pool: Arc<Pool>,
    target: &Target,
    operation: &'static str,
    open: fn(&ssh2::Sftp, &Path) -> Result<ssh2::File, ssh2::Error>,
) -> Result<Open, FsError> {
    // Opening is idempotent: one retry on a new session if the idle one was dead.
    match open_file_once(&pool, target, operation, open).await {
        Err((err, true)) if Retry::OnStaleSession.applies(true, &err) => {
            tracing::debug!(server = %target.server, operation, error = %err,
                "idle sftp session was dead; retrying once on a new session");
            open_file_once(&pool, target, operation, open)
                .await
                .map_err(|(e, _)| e)
        }
        result => result.map_err(|(e, _)| e),
    }
}

/// One attempt; an error comes with whether the session had been idle in the pool.
async fn open_file_once(
    pool: &Arc<Pool>,
    target: &Target,
    operation: &'static str,
    open: fn(&ssh2::Sftp, &Path) -> Result<ssh2::File, ssh2::Error>,
) -> Result<Open, (FsError, bool)> {
    let lease = pool.acquire().await.map_err(|e| (e, false))?;
    let reused = lease.reused();
    let t = target.clone();
    tokio::task::spawn_blocking(move || {
        let site = t.site(operation);
        match open(&lease.conn().sftp, Path::new(&t.path)) {
            Ok(file) => Ok(Open { lease, file }),
            Err(e) => {
                let err = site.map(&e);
                lease.release(Some(&err));
                Err(err)
            }
        }
    })
    .await
    .map_err(|e| join_error(target, operation, e))
    .and_then(|r| r)
    .map_err(|e| (e, reused))
}

/// Closes a handle that was dropped without `finish`, off the async threads.
fn close_in_background(open: Open, target: Target, operation: &'static str) {
    let close = move || {
        if let Err(e) = open.close(&target.site(operation)) {
            tracing::debug!(error = %e, "closing an abandoned sftp handle failed");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(close);
        }
        Err(_) => close(),
    }
}

/// A streaming read of one remote file (see [`FileReader`]).
pub struct SftpReader {
    open: Option<Open>,
    target: Target,
    /// `chunk_size` bytes, of which the first `window` are handed to libssh2.
    buf: Vec<u8>,
    window: usize,
    pos: usize,
    len: usize,
    eof: bool,
}

impl std::fmt::Debug for SftpReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpReader")
            .field("path", &self.target.path)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl SftpReader {
    pub(crate) async fn open(pool: Arc<Pool>, path: &str) -> Result<SftpReader, FsError> {
        let target = Target::new(&pool, path);
        let chunk = pool.settings.chunk_size;
        let open = open_file(pool, &target, "open_read", |sftp, p| sftp.open(p)).await?;
        Ok(SftpReader {
            open: Some(open),
            target,
            buf: vec![0; chunk],
            window: INITIAL_WINDOW.min(chunk),
            pos: 0,
            len: 0,
            eof: false,
        })
    }

    /// Reads the next chunk into the internal buffer: at least half the window (or up to the
    /// end of the file), through slices of at least half the window so that libssh2 keeps its
    /// read-ahead.
    async fn refill(&mut self) -> Result<(), FsError> {
        let Some(mut open) = self.open.take() else {
            return Err(self
                .target
                .site("read")
                .other("reader already failed or finished"));
        };
        let mut buf = std::mem::take(&mut self.buf);
        let window = self.window;
        let target = self.target.clone();
        let (open, buf, result) = tokio::task::spawn_blocking(move || {
            let mut filled = 0;
            let result = loop {
                if filled >= window.div_ceil(2).max(1) {
                    break Ok(filled);
                }
                match open.file.read(&mut buf[filled..window]) {
                    Ok(0) => break Ok(filled),
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(target.site("read").map_io(&e)),
                }
            };
            match result {
                Ok(n) => (Some(open), buf, Ok(n)),
                Err(err) => {
                    drop(open.file);
                    open.lease.release(Some(&err));
                    (None, buf, Err(err))
                }
            }
        })
        .await
        .map_err(|e| join_error(&self.target, "read", e))?;
        self.open = open;
        self.buf = buf;
        let n = result?;
        self.pos = 0;
        self.len = n;
        // A read of zero bytes is the end; a short one need not be (SFTP allows short reads).
        self.eof = n == 0;
        self.window = next_window(self.window, n, self.buf.len());
        Ok(())
    }
}

impl FileReader for SftpReader {
    async fn read(&mut self, out: &mut [u8]) -> Result<usize, FsError> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.len {
            if self.eof {
                return Ok(0);
            }
            self.refill().await?;
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    async fn finish(mut self) -> Result<(), FsError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || open.close(&target.site("read")))
            .await
            .map_err(|e| join_error(&self.target, "read", e))?
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            close_in_background(open, self.target.clone(), "read");
        }
    }
}

/// A streaming upload of one remote file (see [`FileWriter`]). The file is created or
/// truncated at open; dropped without `finish`, the handle is closed and a partial file stays.
pub struct SftpWriter {
    open: Option<Open>,
    target: Target,
    buf: Vec<u8>,
    chunk: usize,
}

impl std::fmt::Debug for SftpWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpWriter")
            .field("path", &self.target.path)
            .finish_non_exhaustive()
    }
}

impl SftpWriter {
    pub(crate) async fn open(pool: Arc<Pool>, path: &str) -> Result<SftpWriter, FsError> {
        let target = Target::new(&pool, path);
        let chunk = pool.settings.chunk_size;
        let open = open_file(pool, &target, "open_write", |sftp, p| sftp.create(p)).await?;
        Ok(SftpWriter {
            open: Some(open),
            target,
            buf: Vec::with_capacity(chunk),
            chunk,
        })
    }

    /// Sends the buffered bytes.
    async fn flush(&mut self) -> Result<(), FsError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(mut open) = self.open.take() else {
            return Err(self
                .target
                .site("write")
                .other("writer already failed or finished"));
        };
        let mut buf = std::mem::take(&mut self.buf);
        let target = self.target.clone();
        let (open, buf, result) =
            tokio::task::spawn_blocking(move || match open.file.write_all(&buf) {
                Ok(()) => {
                    buf.clear();
                    (Some(open), buf, Ok(()))
                }
                Err(e) => {
                    let err = target.site("write").map_io(&e);
                    drop(open.file);
                    open.lease.release(Some(&err));
                    (None, buf, Err(err))
                }
            })
            .await
            .map_err(|e| join_error(&self.target, "write", e))?;
        self.open = open;
        self.buf = buf;
        result
    }
}

impl FileWriter for SftpWriter {
    async fn write_all(&mut self, mut data: &[u8]) -> Result<(), FsError> {
        while !data.is_empty() {
            let room = self.chunk - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.chunk {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(), FsError> {
        self.flush().await?;
        let Some(open) = self.open.take() else {
            return Err(self
                .target
                .site("write")
                .other("writer already failed or finished"));
        };
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || open.close(&target.site("write")))
            .await
            .map_err(|e| join_error(&self.target, "write", e))?
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            tracing::warn!(path = %coord_core::escape_for_log(self.target.path.as_bytes()),
                "upload dropped before finish; the remote file is incomplete");
            close_in_background(open, self.target.clone(), "write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_while_reads_come_back_full_and_shrinks_at_the_tail() {
        let max = 256 * 1024;
        let mut w = INITIAL_WINDOW;
        let mut seen = vec![w];
        while w < max {
            w = next_window(w, w, max);
            seen.push(w);
        }
        assert_eq!(
            seen,
            [8, 16, 32, 64, 128, 256].map(|k| k * 1024).to_vec(),
            "doubling up to chunk_size"
        );
        assert_eq!(next_window(max, max, max), max, "never past chunk_size");
        // Half full or less: most likely the end of the file.
        assert_eq!(next_window(INITIAL_WINDOW, 4096, max), TAIL_WINDOW);
        assert_eq!(next_window(max, 0, max), TAIL_WINDOW);
        // Just over half: still flowing.
        assert_eq!(next_window(INITIAL_WINDOW, 4097, max), 2 * INITIAL_WINDOW);
        // A chunk_size below the windows bounds them.
        assert_eq!(next_window(1, 1, 1), 1);
        assert_eq!(next_window(1, 0, 1), 1);
    }
}
