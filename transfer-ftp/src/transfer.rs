//! Streaming transfers: [`FtpReader`] (RETR) and [`FtpWriter`] (STOR).
//!
//! Each holds its session for the whole transfer (FTP has one transfer per control
//! connection); `finish` reads the server's final reply and returns the session to the pool.
//! Dropping either without `finish` closes the session, which aborts the transfer.

use coord_core::{FileReader, FileWriter, FsError};
use suppaftp::tokio::{AsyncRustlsStream, TransferStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fs::timed;
use crate::pool::Lease;
use crate::session::map_ftp_error;

type Stream = TransferStream<AsyncRustlsStream>;

/// A download in progress; memory use is the caller's buffer, whatever the file's size.
#[derive(Debug)]
pub struct FtpReader {
    stream: Stream,
    lease: Lease,
    path: String,
}

impl FtpReader {
    pub(crate) fn new(lease: Lease, stream: Stream, path: &str) -> FtpReader {
        FtpReader {
            stream,
            lease,
            path: path.to_string(),
        }
    }
}

fn data_error(op: &'static str, lease: &Lease, e: std::io::Error) -> FsError {
    FsError::Connection {
        operation: op,
        server: lease.server().to_string(),
        cause: format!("data connection: {e}"),
    }
}

impl FileReader for FtpReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        const OP: &str = "read";
        let timeout = self.lease.op_timeout();
        let (stream, lease) = (&mut self.stream, &self.lease);
        timed(OP, &self.path, timeout, async {
            stream.read(buf).await.map_err(|e| data_error(OP, lease, e))
        })
        .await
    }

    async fn finish(self) -> Result<(), FsError> {
        const OP: &str = "read";
        let FtpReader {
            stream,
            lease,
            path,
        } = self;
        let timeout = lease.op_timeout();
        let server = lease.server().to_string();
        let result = timed(OP, &path, timeout, async {
            stream
                .finish()
                .await
                .map_err(|e| map_ftp_error(OP, &path, &server, e))
        })
        .await;
        lease.settle(result)
    }
}

/// An upload in progress; the file is complete on the server once `finish` returns Ok.
#[derive(Debug)]
pub struct FtpWriter {
    stream: Stream,
    lease: Lease,
    path: String,
}

impl FtpWriter {
    pub(crate) fn new(lease: Lease, stream: Stream, path: &str) -> FtpWriter {
        FtpWriter {
            stream,
            lease,
            path: path.to_string(),
        }
    }
}

impl FileWriter for FtpWriter {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError> {
        const OP: &str = "write";
        let timeout = self.lease.op_timeout();
        let (stream, lease) = (&mut self.stream, &self.lease);
        timed(OP, &self.path, timeout, async {
            stream
                .write_all(buf)
                .await
                .map_err(|e| data_error(OP, lease, e))
        })
        .await
    }

    async fn finish(self) -> Result<(), FsError> {
        const OP: &str = "write";
        let FtpWriter {
            mut stream,
            lease,
            path,
        } = self;
        let timeout = lease.op_timeout();
        let server = lease.server().to_string();
        let result = timed(OP, &path, timeout, async {
            stream
                .flush()
                .await
                .map_err(|e| data_error(OP, &lease, e))?;
            stream
                .finish()
                .await
                .map_err(|e| map_ftp_error(OP, &path, &server, e))
        })
        .await;
        lease.settle(result)
    }
}
