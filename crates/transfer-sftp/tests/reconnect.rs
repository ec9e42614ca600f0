//! The server restarted mid-session: calls fail with a connection error while it is down,
//! then the next call reconnects. Uses a private sshd (same config, port 2223) so that the
//! shared one on 2222 stays up for the other tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use coord_core::{FileReader, FsError, ListOptions, RemoteFs};
use transfer_sftp::SftpFs;

const PRIVATE_PORT: u16 = 2223;

struct PrivateSshd {
    child: Child,
}

impl PrivateSshd {
    fn start(root: &Path) -> PrivateSshd {
        let pid_file = root.join("sshd-restart.pid");
        // A previous run that died may have left its server behind.
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            kill_tree(pid.trim().parse().unwrap_or(0));
        }
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(root.join("sshd_config"))
            .arg("-p")
            .arg(PRIVATE_PORT.to_string())
            .arg("-o")
            .arg(format!("PidFile={}", pid_file.display()))
            .arg("-E")
            .arg(root.join("sshd-restart.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/sshd");
        wait_for_port(PRIVATE_PORT);
        PrivateSshd { child }
    }

    /// Kills the listening sshd and every session process it forked (a crash, not a
    /// graceful stop).
    fn kill(mut self) {
        kill_tree(self.child.id());
        let _ = self.child.wait();
        assert!(
            std::net::TcpStream::connect((HOST, PRIVATE_PORT)).is_err(),
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
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect((HOST, port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not open port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pid` and all its descendants (found through /proc), killed with SIGKILL.
fn kill_tree(pid: u32) {
    if pid == 0 {
        return;
    }
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
    let _ = Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

fn private_known_hosts(root: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root.join("known_hosts")).unwrap();
    let path = root.join("known_hosts_2223");
    std::fs::write(
        &path,
        text.replace("]:2222 ", &format!("]:{PRIVATE_PORT} ")),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn server_restart_mid_session_then_reconnect() {
    let root = root();
    let sshd = PrivateSshd::start(&root);
    let mut s = settings(password_auth(PASSWORD));
    s.port = PRIVATE_PORT;
    s.known_hosts = private_known_hosts(&root);
    s.max_sessions = 2;
    let fs = SftpFs::new(s).unwrap();

    let dir = fresh_dir("reconnect");
    upload(&fs, &format!("{dir}/big"), &vec![7u8; 4 * 1024 * 1024]).await;
    upload(&fs, &format!("{dir}/small"), b"small").await;
    assert_eq!(
        fs.list(&dir, &ListOptions::default())
            .await
            .unwrap()
            .entries
            .len(),
        2
    );

    // A read in progress when the server dies.
    let mut reader = fs.open_read(&format!("{dir}/big")).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    assert_eq!(reader.read(&mut buf).await.unwrap(), buf.len());

    sshd.kill();

    let err = loop {
        match reader.read(&mut buf).await {
            Ok(0) => panic!("read reached the end although the server died"),
            Ok(_) => continue, // bytes already buffered before the kill
            Err(e) => break e,
        }
    };
    assert!(err.is_transient(), "{err:?}");
    drop(reader);

    // The idle session is broken too; while the server is down, connects are refused.
    let err = fs.list(&dir, &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    let err = fs.list(&dir, &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:2223"), "{err}");

    let _sshd = PrivateSshd::start(&root);
    let listing = fs.list(&dir, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 2);
    assert_eq!(
        read_all(&fs, &format!("{dir}/small")).await.unwrap(),
        b"small"
    );
}
