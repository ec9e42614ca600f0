//! Opening one SSH session: TCP connect with a timeout, handshake, host key verification
//! against known_hosts, authentication, SFTP subsystem. Blocking: run it in `spawn_blocking`.

use std::fmt;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;

use coord_core::FsError;
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, HostKeyType, KnownHostFileKind, Session, Sftp};

use crate::settings::{Credentials, HostKeyPolicy, SftpSettings};

/// One authenticated session with its SFTP channel.
pub(crate) struct Conn {
    /// The SFTP channel; it keeps its session (and the TCP stream) alive.
    pub(crate) sftp: Sftp,
    /// The pool generation this session belongs to (older ones are discarded).
    pub(crate) generation: u64,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Opens and authenticates a session. Every step is bounded: the TCP connect by
/// `connect_timeout`, every libssh2 call after it by `operation_timeout`.
pub(crate) fn connect(
    settings: &SftpSettings,
    credentials: &Credentials,
    generation: u64,
) -> Result<Conn, FsError> {
    let server = settings.server();
    let connection = |cause: String| FsError::Connection {
        operation: "connect",
        server: server.clone(),
        cause,
    };
    let tcp = tcp_connect(settings).map_err(&connection)?;
    let _ = tcp.set_nodelay(true);

    let mut session = Session::new().map_err(|e| connection(e.message().to_string()))?;
    // Bounded by the settings' check (at most u32::MAX ms).
    session.set_timeout(u32::try_from(settings.operation_timeout.as_millis()).unwrap_or(u32::MAX));
    session.set_tcp_stream(tcp);
    session.handshake().map_err(|e| {
        if e.code() == ssh2::ErrorCode::Session(crate::error::ERROR_TIMEOUT) {
            FsError::Timeout {
                operation: "ssh handshake",
                path: server.clone(),
                after: settings.operation_timeout,
            }
        } else {
            connection(format!("ssh handshake: {}", e.message()))
        }
    })?;

    verify_host_key(&session, settings)?;
    authenticate(&session, settings, credentials)?;

    let sftp = session
        .sftp()
        .map_err(|e| connection(format!("sftp subsystem: {}", e.message())))?;
    tracing::debug!(server = %server, user = %settings.user, "sftp session opened");
    Ok(Conn { sftp, generation })
}

fn tcp_connect(settings: &SftpSettings) -> Result<TcpStream, String> {
    let addrs = (settings.host.as_str(), settings.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve `{}`: {e}", settings.host))?;
    let mut last = format!("`{}` resolves to no address", settings.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.connect_timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = format!("tcp connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// The OpenSSH name of a host key type.
fn key_type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The OpenSSH fingerprint: `SHA256:` and unpadded base64 of the key's SHA-256.
pub(crate) fn fingerprint(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    format!("SHA256:{}", base64(&digest, false))
}

/// Standard base64 (RFC 4648 §4); `pad` adds the `=` padding.
pub(crate) fn base64(bytes: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The known_hosts pattern for a host and port, as OpenSSH writes it.
fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks the server's key against the known_hosts file (strict host key checking). Unknown
/// keys are appended only under [`HostKeyPolicy::AcceptNew`]; a mismatch is always refused.
fn verify_host_key(session: &Session, settings: &SftpSettings) -> Result<(), FsError> {
    let server = settings.server();
    let trust = |cause: String| FsError::Trust {
        server: server.clone(),
        cause,
    };
    let (key, kind) = session
        .host_key()
        .ok_or_else(|| trust("server sent no host key".to_string()))?;
    let type_name = key_type_name(kind);
    let fp = fingerprint(key);
    let path = settings.known_hosts.as_path();

    let mut known = session
        .known_hosts()
        .map_err(|e| trust(format!("known_hosts: {}", e.message())))?;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(trust(format!("cannot read {}: {e}", path.display()))),
    };
    // Line by line, so that one entry libssh2 cannot parse (a key type it does not know, a
    // marker line) does not hide the others.
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Err(e) = known.read_str(line, KnownHostFileKind::OpenSSH) {
            tracing::debug!(file = %path.display(), line = number + 1, cause = %e.message(),
                "known_hosts line not understood, skipped");
        }
    }

    match known.check_port(&settings.host, settings.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(trust(format!(
            "host key mismatch: server offered {type_name} {fp}, which differs from the key \
             recorded in {} (possible man-in-the-middle; refusing)",
            path.display()
        ))),
        CheckResult::NotFound => match settings.host_key_policy {
            HostKeyPolicy::Strict => Err(trust(format!(
                "unknown host key {type_name} {fp}: not in {} (add it, or set \
                 host_key_policy = \"accept_new\")",
                path.display()
            ))),
            HostKeyPolicy::AcceptNew => {
                append_known_host(
                    path,
                    &host_pattern(&settings.host, settings.port),
                    type_name,
                    key,
                )
                .map_err(|e| trust(format!("cannot append to {}: {e}", path.display())))?;
                tracing::warn!(server = %server, key_type = type_name, fingerprint = %fp,
                    file = %path.display(), "accepted new host key (accept_new)");
                Ok(())
            }
        },
        CheckResult::Failure => Err(trust(format!(
            "known_hosts check failed for {type_name} {fp} against {}",
            path.display()
        ))),
    }
}

fn append_known_host(
    path: &Path,
    pattern: &str,
    type_name: &str,
    key: &[u8],
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // A file whose last line has no newline would glue our entry to it.
    let needs_newline = std::fs::read(path)
        .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
        .unwrap_or(false);
    let line = format!(
        "{}{pattern} {type_name} {}\n",
        if needs_newline { "\n" } else { "" },
        base64(key, true)
    );
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

fn authenticate(
    session: &Session,
    settings: &SftpSettings,
    credentials: &Credentials,
) -> Result<(), FsError> {
    let auth = |cause: String| FsError::Auth {
        server: settings.server(),
        cause,
    };
    let result = match credentials {
        Credentials::Password(password) => session
            .userauth_password(&settings.user, password.expose())
            .map_err(|e| {
                auth(format!(
                    "password for user `{}`: {}",
                    settings.user,
                    e.message()
                ))
            }),
        Credentials::Key {
            key_file,
            passphrase,
        } => session
            .userauth_pubkey_file(
                &settings.user,
                None,
                key_file,
                passphrase.as_ref().map(|p| p.expose()),
            )
            .map_err(|e| {
                auth(format!(
                    "key `{}` for user `{}`: {}",
                    key_file.display(),
                    settings.user,
                    e.message()
                ))
            }),
    };
    result?;
    if session.authenticated() {
        Ok(())
    } else {
        Err(auth(format!("user `{}`: not authenticated", settings.user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            ("foob", "Zm9vYg==", "Zm9vYg"),
            ("fooba", "Zm9vYmE=", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ];
        for (input, padded, bare) in cases {
            assert_eq!(base64(input.as_bytes(), true), padded);
            assert_eq!(base64(input.as_bytes(), false), bare);
        }
    }

    #[test]
    fn host_patterns_follow_openssh() {
        assert_eq!(host_pattern("example.org", 22), "example.org");
        assert_eq!(host_pattern("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }
}
