//! Shared fixtures: the OpenSSH server started by `scripts/setup/40-sftp.sh`.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use coord_core::{FileReader, FileWriter, RemoteFs};
use transfer_sftp::{AuthSettings, Secret, SecretSource, SftpFs, SftpSettings};

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 2222;
pub const USER: &str = "sftptest";
pub const PASSWORD: &str = "sftp-test-password";
pub const PASSPHRASE: &str = "sftp-test-passphrase";

/// `$TEST_ROOT/sftp`, where the setup script keeps keys, config and the user's home.
pub fn root() -> PathBuf {
    let base = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    let root = PathBuf::from(base).join("sftp");
    assert!(
        root.join("sshd_config").exists() && std::net::TcpStream::connect((HOST, PORT)).is_ok(),
        "the test sftp server is not running: run `bash scripts/setup/40-sftp.sh` first"
    );
    root
}

pub fn home() -> PathBuf {
    root().join("home")
}

pub fn settings(auth: AuthSettings) -> SftpSettings {
    let mut s = SftpSettings::new(HOST, PORT, USER, auth, root().join("known_hosts"));
    s.operation_timeout = Duration::from_secs(20);
    s.connect_timeout = Duration::from_secs(5);
    s.reconnect_initial = Duration::from_millis(50);
    s.reconnect_max = Duration::from_millis(500);
    s
}

pub fn password_auth(password: &str) -> AuthSettings {
    AuthSettings::Password {
        password: SecretSource::Value(Secret::new(password)),
    }
}

pub fn key_auth(key_type: &str, with_passphrase: bool) -> AuthSettings {
    let name = if with_passphrase {
        format!("id_{key_type}_pass")
    } else {
        format!("id_{key_type}")
    };
    AuthSettings::Key {
        key_file: root().join("client").join(name),
        passphrase: with_passphrase.then(|| SecretSource::Value(Secret::new(PASSPHRASE))),
    }
}

pub fn password_fs() -> SftpFs {
    SftpFs::new(settings(password_auth(PASSWORD))).unwrap()
}

/// A fresh directory in the test user's home (removed first if a previous run left it),
/// owned by the test user. Returns its path relative to the home (the SFTP path).
pub fn fresh_dir(name: &str) -> String {
    let home = home();
    let rel = format!("t-{name}");
    let local = home.join(&rel);
    if local.exists() {
        std::fs::remove_dir_all(&local).unwrap();
    }
    std::fs::create_dir_all(&local).unwrap();
    chown_to_user(&local);
    rel
}

/// Gives a local path to the test user (tests run as root and write fixtures directly).
pub fn chown_to_user(path: &std::path::Path) {
    let meta = std::fs::metadata(home()).unwrap();
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).unwrap();
}

pub async fn upload(fs: &SftpFs, path: &str, data: &[u8]) {
    let mut w = fs.open_write(path).await.unwrap();
    w.write_all(data).await.unwrap();
    w.finish().await.unwrap();
}

pub async fn read_all(fs: &SftpFs, path: &str) -> Result<Vec<u8>, coord_core::FsError> {
    let mut r = fs.open_read(path).await?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 7919]; // odd size: exercises partial copies out of the chunk
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    r.finish().await?;
    Ok(out)
}
