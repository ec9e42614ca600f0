//! Shared fixtures: the OpenSSH server started by `scripts/setup/40-sftp.sh`.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use std::time::Instant;

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

/// A private sshd (the shared config, its own port) that a test may kill or freeze without
/// disturbing the shared server on 2222.
pub struct PrivateSshd {
    child: Child,
    port: u16,
}

impl PrivateSshd {
    /// Every process of this server: the listener and its sessions.
    pub fn processes(&self) -> Vec<u32> {
        descendants(self.child.id())
    }

    /// Starts sshd on `port` and waits until it accepts connections.
    pub fn start(root: &Path, port: u16) -> PrivateSshd {
        let pid_file = root.join(format!("sshd-{port}.pid"));
        // A previous run that died may have left its server behind.
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            kill_tree(pid.trim().parse().unwrap_or(0));
        }
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(root.join("sshd_config"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-o")
            .arg(format!("PidFile={}", pid_file.display()))
            .arg("-E")
            .arg(root.join(format!("sshd-{port}.log")))
            .stdin(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/sshd");
        wait_for_port(port);
        PrivateSshd { child, port }
    }

    /// Kills the listening sshd and every session process it forked (a crash, not a
    /// graceful stop).
    pub fn kill(mut self) {
        kill_tree(self.child.id());
        let _ = self.child.wait();
        assert!(
            std::net::TcpStream::connect((HOST, self.port)).is_err(),
            "port still open"
        );
    }
}

impl Drop for PrivateSshd {
    fn drop(&mut self) {
        kill_tree(self.child.id());
        let _ = self.child.wait();
    }
}

/// Polls until the port accepts connections: sshd gives no readiness event to wait on.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect((HOST, port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not open port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pid` and all its descendants (found through /proc), killed with SIGKILL.
pub fn kill_tree(pid: u32) {
    if pid == 0 {
        return;
    }
    signal(&descendants(pid), "-9");
}

/// `pid` and all its descendants, found through /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state, ppid, ...
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let ppid = after
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok());
            if ppid == Some(parent) && !pids.contains(&child) {
                pids.push(child);
            }
        }
        i += 1;
    }
    pids
}

/// Sends a signal (`-9`, `-STOP`, `-CONT`) to processes; processes already gone are ignored.
pub fn signal(pids: &[u32], sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// A known_hosts file for a private server's port (same host keys).
pub fn private_known_hosts(root: &Path, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(root.join("known_hosts")).unwrap();
    let path = root.join(format!("known_hosts_{port}"));
    std::fs::write(&path, text.replace("]:2222 ", &format!("]:{port} "))).unwrap();
    path
}
