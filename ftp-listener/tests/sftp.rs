//! The listener over a real SFTP server (OpenSSH on 127.0.0.1:2222, started by
//! `scripts/setup/40-sftp.sh`): a file dropped in the remote directory is handled once and
//! moved to the remote done folder.

#![cfg(feature = "sftp")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{Site, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn sftp_root() -> PathBuf {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    PathBuf::from(root).join("sftp")
}

#[test]
fn sftp_files_are_handled_and_moved_on_the_server() {
    let root = sftp_root();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // A fresh directory in the test user's home, owned by that user so it can move files.
    let remote = root.join(format!("home/listener-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&remote).unwrap();
    let chown = Command::new("chown")
        .args(["sftptest:sftptest", remote.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());

    let site = Site::new();
    let extra = format!(
        r#"{handler}
[source]
kind = "sftp"
path = "{remote}"
[source.sftp]
host = "127.0.0.1"
port = 2222
user = "sftptest"
known_hosts = "{known_hosts}"
[source.sftp.auth]
method = "password"
password = "sftp-test-password"
"#,
        handler = site.probe_handler(""),
        remote = remote.display(),
        known_hosts = root.join("known_hosts").display(),
    );
    let config = site.config_remote_source("a", "solo", &extra);

    let proc = site.spawn_leader(&config, LIMIT);
    std::fs::write(remote.join("remote.csv"), b"over sftp").unwrap();
    let moved = wait_for(LIMIT, || {
        (remote.join(".done/remote.csv").exists() && !remote.join("remote.csv").exists())
            .then_some(())
    });
    assert!(moved.is_some(), "{}", proc.output());
    let handled = site.handled();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(handled[0].starts_with("remote.csv attempt=1") && handled[0].ends_with("size=9"));
    assert!(
        !proc.output().contains("sftp-test-password"),
        "{}",
        proc.output()
    );
    let _ = std::fs::remove_dir_all(&remote);
}
