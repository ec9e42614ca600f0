//! Helpers for the integration tests: the servers started by `scripts/setup/30-ftp.sh`.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord_core::{FileReader, FileWriter, FsError, RemoteFs};
use transfer_ftp::{FtpFs, FtpSettings, PassiveMode, TlsMode};

/// `$TEST_ROOT/ftp`, as the setup script lays it out.
pub fn ftp_root() -> PathBuf {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    PathBuf::from(root).join("ftp")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// LIST only.
    Vsftpd,
    /// MLSD.
    Proftpd,
}

impl Server {
    pub fn port(self) -> u16 {
        match self {
            Server::Vsftpd => 2121,
            Server::Proftpd => 2122,
        }
    }

    /// The served root on local disk (the test user's `/`).
    pub fn local_root(self) -> PathBuf {
        ftp_root().join(match self {
            Server::Vsftpd => "vsftpd",
            Server::Proftpd => "proftpd",
        })
    }
}

/// One server in one mode. Passive modes alternate so both are exercised on both servers.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub server: Server,
    pub tls: bool,
}

impl Target {
    pub fn settings(self) -> FtpSettings {
        let mut s = FtpSettings::new("127.0.0.1", self.server.port(), "hatest");
        s.password_file = Some(ftp_root().join("password"));
        s.connect_timeout = Duration::from_secs(10);
        s.op_timeout = Duration::from_secs(20);
        s.passive_mode = match (self.server, self.tls) {
            (Server::Vsftpd, false) | (Server::Proftpd, true) => PassiveMode::Pasv,
            _ => PassiveMode::Epsv,
        };
        if self.tls {
            s.tls = TlsMode::Explicit;
            s.ca_file = Some(ftp_root().join("tls/ca.pem"));
        }
        s
    }

    pub fn fs(self) -> FtpFs {
        FtpFs::new(self.settings()).expect("valid settings")
    }

    /// A new directory on the server's disk, writable by the test user; returns the local
    /// path and the remote one.
    pub fn fresh_dir(self, name: &str) -> (PathBuf, String) {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = format!(
            "t-{name}-{}-{}-{nanos}-{}",
            if self.tls { "tls" } else { "plain" },
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let local = self.server.local_root().join(&dir);
        std::fs::create_dir_all(&local).unwrap();
        open_up(&local);
        (local, format!("/{dir}"))
    }
}

/// Makes a directory writable by the FTP user (the tests run as root).
pub fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

pub fn write(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
}

pub async fn read_all(fs: &FtpFs, path: &str) -> Result<Vec<u8>, FsError> {
    let mut reader = fs.open_read(path).await?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    reader.finish().await?;
    Ok(out)
}

pub async fn upload(fs: &FtpFs, path: &str, content: &[u8]) -> Result<(), FsError> {
    let mut writer = fs.open_write(path).await?;
    for chunk in content.chunks(1000) {
        writer.write_all(chunk).await?;
    }
    writer.finish().await
}

/// Waits until something accepts connections on `port` (the daemon is up).
pub fn wait_port(port: u16, open: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let is_open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if is_open == open {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} did not become {}",
            if open { "open" } else { "closed" }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One test body per server and mode.
#[macro_export]
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {
        mod vsftpd_plain {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Target { server: $crate::common::Server::Vsftpd, tls: false }).await })*
        }
        mod vsftpd_tls {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Target { server: $crate::common::Server::Vsftpd, tls: true }).await })*
        }
        mod proftpd_plain {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Target { server: $crate::common::Server::Proftpd, tls: false }).await })*
        }
        mod proftpd_tls {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Target { server: $crate::common::Server::Proftpd, tls: true }).await })*
        }
    };
}
