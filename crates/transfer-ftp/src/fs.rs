//! `FtpFs`: [`coord_core::RemoteFs`] over the session pool.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coord_core::{FsError, ListOptions, Listing, RemoteFs, RenameMode};
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::parse::{DirParser, ListFormat};
use crate::pool::{Lease, Pool};
use crate::session::{Probe, Refusal, Session, Shared, classify, map_ftp_error};
use crate::settings::{FtpSettings, SettingsError, TlsMode};
use crate::transfer::{FtpReader, FtpWriter};

/// An FTP or explicit-FTPS server as a [`RemoteFs`]. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct FtpFs {
    pool: Arc<Pool>,
}

/// Runs `fut` under `after`, reporting an expiry as [`FsError::Timeout`].
pub(crate) async fn timed<T>(
    operation: &'static str,
    path: &str,
    after: Duration,
    fut: impl Future<Output = Result<T, FsError>>,
) -> Result<T, FsError> {
    tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
        Err(FsError::Timeout {
            operation,
            path: path.to_string(),
            after,
        })
    })
}

impl FtpFs {
    /// Checks the settings, reads the password from its source, and prepares TLS. Connects
    /// lazily, on the first operation.
    pub fn new(settings: FtpSettings) -> Result<FtpFs, SettingsError> {
        settings.validate()?;
        let password = settings.resolve_password()?;
        let tls =
            match settings.tls {
                TlsMode::None => None,
                TlsMode::Explicit => Some(crate::tls::client_config(&settings).map_err(
                    |rule| SettingsError {
                        field: "ca_file",
                        rule,
                    },
                )?),
            };
        let server = settings.server();
        Ok(FtpFs {
            pool: Arc::new(Pool::new(Shared {
                settings,
                password,
                tls,
                server,
            })),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &FtpSettings {
        &self.pool.shared.settings
    }

    /// How many sessions (control connections) were opened successfully so far: one per
    /// reconnect, more when reads run in parallel. A metric, and a check that sessions are
    /// reused.
    pub fn sessions_opened(&self) -> u64 {
        self.pool.sessions_opened()
    }

    fn server(&self) -> &str {
        &self.pool.shared.server
    }

    /// Maps a refusal of `operation` on `path`; an ambiguous `550` is resolved with a probe
    /// (exists with the expected kind → permission denied, missing → not found, the other
    /// kind → says so).
    async fn refusal(
        &self,
        session: &mut Session,
        operation: &'static str,
        path: &str,
        abs: &str,
        e: FtpError,
        expected: Probe,
    ) -> FsError {
        let FtpError::UnexpectedResponse(r) = &e else {
            return map_ftp_error(operation, path, self.server(), e);
        };
        let Refusal::Ambiguous(cause) = classify(r) else {
            return map_ftp_error(operation, path, self.server(), e);
        };
        match session.probe(abs).await {
            Ok(Probe::Missing) => FsError::NotFound {
                operation,
                path: path.to_string(),
            },
            Ok(found) if found == expected => FsError::PermissionDenied {
                operation,
                path: path.to_string(),
            },
            Ok(found) => FsError::Other {
                operation,
                path: path.to_string(),
                cause: format!(
                    "{} ({cause})",
                    if found == Probe::Dir {
                        "is a directory"
                    } else {
                        "not a directory"
                    }
                ),
            },
            Err(probe_err) => map_ftp_error(operation, path, self.server(), probe_err),
        }
    }

    async fn list_in(
        &self,
        session: &mut Session,
        dir: &str,
        options: &ListOptions,
        timeout: Duration,
    ) -> Result<Listing, FsError> {
        let format = if session.mlsd {
            ListFormat::Mlsd
        } else {
            ListFormat::List
        };
        let now = SystemTime::now();
        let mut out = Listing::default();
        let mut queue = std::collections::VecDeque::from([(dir.to_string(), 0u32)]);
        while let Some((current, depth)) = queue.pop_front() {
            let subdirs = self
                .list_one(session, &current, format, now, timeout, &mut out)
                .await;
            let subdirs = match subdirs {
                Ok(s) => s,
                // A subdirectory that vanished or is closed to us does not fail the listing.
                Err(e @ (FsError::NotFound { .. } | FsError::PermissionDenied { .. }))
                    if depth > 0 =>
                {
                    tracing::warn!(dir = %current, error = %e, "skipping subdirectory");
                    out.skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if depth < options.max_depth {
                queue.extend(subdirs.into_iter().map(|d| (d, depth + 1)));
            }
        }
        Ok(out)
    }

    /// Lists one directory: `CWD` into it (so that no name is ever parsed as an option of
    /// `LIST`), then `MLSD` or `LIST` without argument, parsed line by line from the data
    /// connection. Returns the subdirectories found.
    async fn list_one(
        &self,
        session: &mut Session,
        dir: &str,
        format: ListFormat,
        now: SystemTime,
        timeout: Duration,
        out: &mut Listing,
    ) -> Result<Vec<String>, FsError> {
        const OP: &str = "list";
        let abs = session.abs(OP, dir)?;
        let server = self.server();
        timed(OP, dir, timeout, async {
            match session.ftp.cwd(&abs).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.refusal(session, OP, dir, &abs, e, Probe::Dir).await),
            }
        })
        .await?;
        let command = match format {
            ListFormat::Mlsd => "MLSD",
            ListFormat::List => "LIST",
        };
        let (_, stream) = timed(OP, dir, timeout, async {
            session
                .ftp
                .custom_data_command(command, &[Status::AboutToSend, Status::AlreadyOpen])
                .await
                .map_err(|e| map_ftp_error(OP, dir, server, e))
        })
        .await?;
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let mut parser = DirParser::new(dir, format, now);
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            let n = timed(OP, dir, timeout, async {
                reader
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(|e| FsError::Connection {
                        operation: OP,
                        server: server.to_string(),
                        cause: format!("listing data: {e}"),
                    })
            })
            .await?;
            if n == 0 {
                break;
            }
            parser.push_line(&line, out);
        }
        parser.finish(out);
        let stream = reader.into_inner();
        timed(OP, dir, timeout, async {
            stream
                .finish()
                .await
                .map_err(|e| map_ftp_error(OP, dir, server, e))
        })
        .await?;
        Ok(std::mem::take(&mut parser.subdirs))
    }
}

impl RemoteFs for FtpFs {
    type Reader = FtpReader;
    type Writer = FtpWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        let mut lease = self.pool.checkout("list").await?;
        let timeout = lease.op_timeout();
        let result = self
            .list_in(&mut lease.session, dir, options, timeout)
            .await;
        if let Ok(l) = &result {
            tracing::debug!(
                dir,
                entries = l.entries.len(),
                skipped = l.skipped,
                "listed"
            );
        }
        lease.settle(result)
    }

    async fn open_read(&self, path: &str) -> Result<FtpReader, FsError> {
        const OP: &str = "read";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            match lease.session.ftp.retr_as_stream(&abs).await {
                Ok(stream) => Ok(stream),
                Err(e) => {
                    let session = &mut lease.session;
                    Err(self.refusal(session, OP, path, &abs, e, Probe::File).await)
                }
            }
        })
        .await;
        match result {
            Ok(stream) => Ok(FtpReader::new(lease, stream, path)),
            Err(e) => lease.settle(Err(e)),
        }
    }

    async fn open_write(&self, path: &str) -> Result<FtpWriter, FsError> {
        const OP: &str = "write";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            lease
                .session
                .ftp
                .put_with_stream(&abs)
                .await
                .map_err(|e| map_ftp_error(OP, path, self.server(), e))
        })
        .await;
        match result {
            Ok(stream) => Ok(FtpWriter::new(lease, stream, path)),
            Err(e) => lease.settle(Err(e)),
        }
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        const OP: &str = "rename";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(
            OP,
            from,
            timeout,
            self.rename_in(&mut lease, from, to, mode),
        )
        .await;
        lease.settle(result)
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        const OP: &str = "delete";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            match lease.session.ftp.rm(&abs).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let session = &mut lease.session;
                    Err(self.refusal(session, OP, path, &abs, e, Probe::File).await)
                }
            }
        })
        .await;
        lease.settle(result)
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        const OP: &str = "create_dir_all";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, self.mkdir_in(&mut lease.session, path)).await;
        lease.settle(result)
    }
}

impl FtpFs {
    async fn rename_in(
        &self,
        lease: &mut Lease,
        from: &str,
        to: &str,
        mode: RenameMode,
    ) -> Result<(), FsError> {
        const OP: &str = "rename";
        let session = &mut lease.session;
        let from_abs = session.abs(OP, from)?;
        let to_abs = session.abs(OP, to)?;
        if mode == RenameMode::NoOverwrite {
            // FTP has no atomic no-overwrite rename: between this check and RNTO another
            // client can create `to`, which RNTO then replaces (on POSIX servers). The window
            // is one round trip; the listener's leader is the only writer in normal operation.
            let found = session
                .probe(&to_abs)
                .await
                .map_err(|e| map_ftp_error(OP, to, self.server(), e))?;
            if found != Probe::Missing {
                return Err(FsError::AlreadyExists {
                    operation: OP,
                    path: to.to_string(),
                });
            }
        }
        match session.ftp.rename(&from_abs, &to_abs).await {
            Ok(()) => Ok(()),
            // RNFR or RNTO refused: an ambiguous 550 is resolved by probing the source.
            Err(e) => Err(self
                .refusal(session, OP, from, &from_abs, e, Probe::File)
                .await),
        }
    }

    async fn mkdir_in(&self, session: &mut Session, path: &str) -> Result<(), FsError> {
        const OP: &str = "create_dir_all";
        let abs = session.abs(OP, path)?;
        let mut prefix = String::new();
        for segment in abs.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(FsError::UnsafePath {
                    operation: OP,
                    path: path.to_string(),
                    reason: "contains a `.` or `..` segment".into(),
                });
            }
            prefix.push('/');
            prefix.push_str(segment);
            match session.ftp.cwd(&prefix).await {
                Ok(()) => continue,
                Err(FtpError::UnexpectedResponse(_)) => {}
                Err(e) => return Err(map_ftp_error(OP, path, self.server(), e)),
            }
            if let Err(e) = session.ftp.mkdir(&prefix).await {
                // Someone else may have created it in between: fine if it is there now.
                if session.ftp.cwd(&prefix).await.is_ok() {
                    continue;
                }
                return Err(map_ftp_error(OP, &prefix, self.server(), e));
            }
        }
        Ok(())
    }
}
