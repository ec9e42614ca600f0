//! One FTP session: connect, `AUTH TLS`, login, `TYPE I`, `FEAT`, `PWD`; error mapping.

use std::sync::Arc;
use std::time::Instant;

use coord_core::FsError;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::tokio_rustls::TlsConnector;
use suppaftp::tokio_rustls::rustls::ClientConfig;
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};

use crate::settings::{FtpSettings, PassiveMode, Secret, TlsMode};

/// The client type for plain and TLS sessions alike (without `AUTH TLS` it never uses TLS).
pub(crate) type Ftp = AsyncRustlsFtpStream;

/// What every session of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: FtpSettings,
    pub(crate) password: Secret,
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) server: String,
}

/// A logged-in control connection.
pub(crate) struct Session {
    pub(crate) ftp: Ftp,
    /// The server offers MLSD/MLST (FEAT lists `MLST`).
    pub(crate) mlsd: bool,
    /// The server offers `MDTM` (FEAT lists it): exact times for LIST-only servers.
    pub(crate) mdtm: bool,
    /// Said (once) that this session lists files without times: LIST and no MDTM.
    pub(crate) warned_no_times: bool,
    /// The control connection is plain TCP (no TLS): commands may be written to its socket
    /// directly, several at once ([`Session::send_raw`]).
    pub(crate) plain: bool,
    /// The login directory, to make relative paths absolute (listings `CWD` around).
    pub(crate) home: String,
    pub(crate) last_used: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mlsd", &self.mlsd)
            .field("mdtm", &self.mdtm)
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens and logs in a session; the caller puts a timeout around it.
    pub(crate) async fn connect(shared: &Shared) -> Result<Session, FsError> {
        let s = &shared.settings;
        let conn_err = |cause: String| FsError::Connection {
            operation: "connect",
            server: shared.server.clone(),
            cause,
        };
        if s.tls.is_tls() && s.insecure_skip_verify {
            tracing::warn!(
                server = %shared.server,
                "insecure_skip_verify is set: the server certificate is not verified"
            );
        }
        if let (TlsMode::Implicit, Some(config)) = (s.tls, &shared.tls) {
            return Self::connect_implicit(shared, config).await;
        }
        let tcp = tokio::net::TcpStream::connect((s.host.as_str(), s.port()))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut ftp = Ftp::connect_with_stream(tcp)
            .await
            .map_err(|e| conn_err(format!("greeting: {e}")))?;
        if let (TlsMode::Explicit, Some(config)) = (s.tls, &shared.tls) {
            let connector = AsyncRustlsConnector::from(TlsConnector::from(config.clone()));
            ftp = ftp
                .into_secure(connector, &s.host)
                .await
                .map_err(|e| match e {
                    FtpError::SecureError(cause) => FsError::Trust {
                        server: shared.server.clone(),
                        cause,
                    },
                    FtpError::UnexpectedResponse(r) => {
                        conn_err(format!("server refused AUTH TLS: {}", reply_text(&r)))
                    }
                    other => conn_err(format!("tls: {other}")),
                })?;
        }
        Self::log_in(shared, ftp).await
    }

    /// Implicit FTPS: TLS from the first byte, then the greeting, then `PBSZ 0` / `PROT P`
    /// (suppaftp's implicit connect sends neither; its data connections are TLS already).
    async fn connect_implicit(
        shared: &Shared,
        config: &Arc<ClientConfig>,
    ) -> Result<Session, FsError> {
        let s = &shared.settings;
        let conn_err = |cause: String| FsError::Connection {
            operation: "connect",
            server: shared.server.clone(),
            cause,
        };
        let connector = AsyncRustlsConnector::from(TlsConnector::from(config.clone()));
        let mut ftp = Ftp::connect_secure_implicit((s.host.as_str(), s.port()), connector, &s.host)
            .await
            .map_err(|e| match e {
                FtpError::SecureError(cause) if cause.contains("certificate") => FsError::Trust {
                    server: shared.server.clone(),
                    cause,
                },
                FtpError::SecureError(cause) => conn_err(format!(
                    "tls handshake: {cause} (`tls = \"implicit\"` expects TLS from the first \
                     byte; a server that greets in plain text needs `tls = \"explicit\"` or \
                     \"none\")"
                )),
                FtpError::ConnectionError(e) => conn_err(e.to_string()),
                other => conn_err(format!("greeting: {other}")),
            })?;
        for (command, what) in [("PBSZ 0", "PBSZ"), ("PROT P", "PROT")] {
            ftp.custom_command(command, &[Status::CommandOk])
                .await
                .map_err(|e| conn_err(format!("{what}: {e}")))?;
        }
        Self::log_in(shared, ftp).await
    }

    /// Login, `TYPE I`, `FEAT`, `PWD` on a connected (and, with TLS, secured) stream.
    async fn log_in(shared: &Shared, mut ftp: Ftp) -> Result<Session, FsError> {
        let s = &shared.settings;
        let conn_err = |cause: String| FsError::Connection {
            operation: "connect",
            server: shared.server.clone(),
            cause,
        };
        ftp.set_mode(match s.passive_mode {
            PassiveMode::Pasv => Mode::Passive,
            PassiveMode::Epsv => Mode::ExtendedPassive,
        });
        // Connect data channels to the control peer, whatever address a 227 reply names.
        ftp.set_passive_nat_workaround(true);
        warn_if_pass_is_logged();
        ftp.login(s.user.as_str(), shared.password.expose())
            .await
            .map_err(|e| match e {
                FtpError::UnexpectedResponse(r) => FsError::Auth {
                    server: shared.server.clone(),
                    cause: format!("user `{}`: {}", s.user, reply_text(&r)),
                },
                other => conn_err(format!("login: {other}")),
            })?;
        ftp.transfer_type(FileType::Binary)
            .await
            .map_err(|e| conn_err(format!("TYPE I: {e}")))?;
        // A server without FEAT (500) simply offers neither MLSD nor MDTM.
        let (mlsd, mdtm) = match ftp.feat().await {
            Ok(features) => {
                let has = |f: &str| features.keys().any(|k| k.trim().eq_ignore_ascii_case(f));
                (has("MLST"), has("MDTM"))
            }
            Err(FtpError::UnexpectedResponse(_)) => (false, false),
            Err(e) => return Err(conn_err(format!("FEAT: {e}"))),
        };
        let home = ftp.pwd().await.map_err(|e| conn_err(format!("PWD: {e}")))?;
        tracing::info!(
            server = %shared.server,
            tls = ?s.tls,
            mlsd,
            mdtm,
            "ftp session opened"
        );
        Ok(Session {
            ftp,
            mlsd,
            mdtm,
            warned_no_times: false,
            plain: !s.tls.is_tls(),
            home,
            last_used: Instant::now(),
        })
    }

    /// Writes `lines` (complete command lines, each ending in CRLF) to a plain control
    /// connection at once, without reading any reply: the caller reads one reply per line, in
    /// order, with [`Ftp::read_response_in`] (pipelining; RFC 959 servers read the control
    /// connection as a stream of lines). suppaftp sends one command and waits for its reply, so
    /// this writes to its socket directly, under its control-channel lock; it must not be used
    /// on a TLS session (`plain` is false there), whose bytes go through the TLS stream.
    pub(crate) async fn send_raw(&mut self, lines: &[u8]) -> std::io::Result<()> {
        debug_assert!(self.plain, "raw writes on a TLS control connection");
        let socket = self.ftp.get_ref().await;
        let mut rest = lines;
        while !rest.is_empty() {
            socket.writable().await?;
            match socket.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `path` made absolute against the login directory; refuses line breaks and NUL (they
    /// would end the command line).
    pub(crate) fn abs(&self, operation: &'static str, path: &str) -> Result<String, FsError> {
        absolute(&self.home, operation, path)
    }

    /// What exists at `abs`: probes with `SIZE` (a file) then `CWD` (a directory). Used to
    /// tell "not found" from "permission denied" after an ambiguous `550`, and for
    /// no-overwrite renames.
    pub(crate) async fn probe(&mut self, abs: &str) -> Result<Probe, FtpError> {
        match self.ftp.size(abs).await {
            Ok(_) => return Ok(Probe::File),
            Err(FtpError::UnexpectedResponse(_)) => {}
            Err(e) => return Err(e),
        }
        match self.ftp.cwd(abs).await {
            Ok(()) => Ok(Probe::Dir),
            Err(FtpError::UnexpectedResponse(r)) if is_permission_text(&reply_text(&r)) => {
                // A directory we may not enter still exists.
                Ok(Probe::Dir)
            }
            Err(FtpError::UnexpectedResponse(_)) => Ok(Probe::Missing),
            Err(e) => Err(e),
        }
    }
}

/// suppaftp logs every control command, `PASS` and its argument included, at `log`'s TRACE
/// level; we cannot redact it, so we say so (once) when that level is on.
fn warn_if_pass_is_logged() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if log::log_enabled!(target: "suppaftp::async_ftp::tokio_ftp::control", log::Level::Trace) {
        WARNED.call_once(|| {
            tracing::warn!(
                "TRACE logging is on for suppaftp, which writes the FTP password to the log; \
                 cap it (for example `suppaftp=debug`)"
            );
        });
    }
}

/// `path` made absolute against `home`.
pub(crate) fn absolute(home: &str, operation: &'static str, path: &str) -> Result<String, FsError> {
    if path.contains(['\r', '\n', '\0']) {
        return Err(FsError::UnsafePath {
            operation,
            path: coord_core::escape_for_log(path.as_bytes()),
            reason: "contains a line break or NUL".into(),
        });
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if path.starts_with('/') {
        if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        }
    } else if trimmed.is_empty() || trimmed == "." {
        home.to_string()
    } else {
        coord_core::join_remote(home, trimmed)
    })
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    File,
    Dir,
    Missing,
}

/// The reply's text, one line, without the code.
pub(crate) fn reply_text(r: &suppaftp::types::Response) -> String {
    let text = String::from_utf8_lossy(&r.body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        r.status.code().to_string()
    } else {
        line.to_string()
    }
}

fn is_permission_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("permission denied") || t.contains("access denied") || t.contains("not allowed")
}

fn is_not_found_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("no such file")
        || t.contains("not found")
        || t.contains("does not exist")
        || t.contains("can't find")
        || t.contains("cannot find")
}

/// The classification of an error reply, before any probe.
#[derive(Debug)]
pub(crate) enum Refusal {
    NotFound,
    PermissionDenied,
    /// A 550 that does not say why (vsftpd: "Failed to open file."): probe to tell.
    Ambiguous(String),
    Other(String),
}

pub(crate) fn classify(r: &suppaftp::types::Response) -> Refusal {
    let text = reply_text(r);
    if is_not_found_text(&text) {
        Refusal::NotFound
    } else if is_permission_text(&text) {
        Refusal::PermissionDenied
    } else if r.status == Status::FileUnavailable || r.status.code() == 553 {
        Refusal::Ambiguous(text)
    } else {
        Refusal::Other(text)
    }
}

/// Maps a suppaftp error that is not a server refusal (or is one, without a probe).
pub(crate) fn map_ftp_error(
    operation: &'static str,
    path: &str,
    server: &str,
    e: FtpError,
) -> FsError {
    match e {
        FtpError::UnexpectedResponse(r) if r.status.code() == 421 => FsError::Connection {
            operation,
            server: server.to_string(),
            cause: format!("server closing: {}", reply_text(&r)),
        },
        FtpError::UnexpectedResponse(r) if r.status.code() == 530 => FsError::Auth {
            server: server.to_string(),
            cause: reply_text(&r),
        },
        FtpError::UnexpectedResponse(r) => match classify(&r) {
            Refusal::NotFound => FsError::NotFound {
                operation,
                path: path.to_string(),
            },
            Refusal::PermissionDenied => FsError::PermissionDenied {
                operation,
                path: path.to_string(),
            },
            Refusal::Ambiguous(cause) | Refusal::Other(cause) => FsError::Other {
                operation,
                path: path.to_string(),
                cause,
            },
        },
        FtpError::ConnectionError(io) => FsError::Connection {
            operation,
            server: server.to_string(),
            cause: io.to_string(),
        },
        FtpError::SecureError(cause) => FsError::Connection {
            operation,
            server: server.to_string(),
            cause: format!("tls: {cause}"),
        },
        FtpError::BadResponse => FsError::Connection {
            operation,
            server: server.to_string(),
            cause: "malformed reply".into(),
        },
        other => FsError::Other {
            operation,
            path: path.to_string(),
            cause: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute() {
        let abs = |home: &str, p: &str| absolute(home, "t", p).unwrap();
        assert_eq!(abs("/home/u", "/"), "/");
        assert_eq!(abs("/home/u", "//"), "/");
        assert_eq!(abs("/home/u", "/in/"), "/in");
        assert_eq!(abs("/home/u", ""), "/home/u");
        assert_eq!(abs("/home/u", "."), "/home/u");
        assert_eq!(abs("/home/u", "in/a b"), "/home/u/in/a b");
        assert_eq!(abs("/", "in"), "/in");
        assert_eq!(abs("/", "-dash"), "/-dash");
        for bad in ["a\nDELE x", "a\rb", "a\0"] {
            assert!(matches!(
                absolute("/", "t", bad),
                Err(FsError::UnsafePath { .. })
            ));
        }
    }
}
