//! The listener over real FTP servers (`scripts/setup/30-ftp.sh`: proftpd with MLSD on
//! 127.0.0.1:2122, vsftpd without MLSD on 127.0.0.1:2121; both chroot the test user): a file
//! dropped in the remote directory is handled once and moved to the remote done folder.

#![cfg(feature = "ftp")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{Site, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn ftp_root() -> PathBuf {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    PathBuf::from(root).join("ftp")
}

fn handled_and_moved(server: &str, port: u16) {
    handled_and_moved_with(server, port, "size");
}

/// `move_check`: `size` (a `SIZE` probe before each move) or `listing` (the done folder's
/// names). A file of the same name already in the done folder is kept either way: the new
/// one gets a unique name.
fn handled_and_moved_with(server: &str, port: u16, move_check: &str) {
    let root = ftp_root();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("listener-{}-{nanos}", std::process::id());
    // The directory as the chrooted user sees it, and as this test (root) sees it.
    let remote = format!("/{name}");
    let local = root.join(server).join(&name);
    std::fs::create_dir_all(&local).unwrap();
    let chown = Command::new("chown")
        .args(["hatest:hatest", local.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    // An earlier file of the same name, already in the done folder.
    std::fs::create_dir_all(local.join(".done")).unwrap();
    std::fs::write(local.join(".done/remote.csv"), b"earlier").unwrap();
    let chown = Command::new("chown")
        .args(["-R", "hatest:hatest", local.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());

    let site = Site::new();
    let extra = format!(
        r#"{handler}
[source]
kind = "ftp"
path = "{remote}"
[source.ftp]
host = "127.0.0.1"
port = {port}
user = "hatest"
password_file = "{password}"
move_check = "{move_check}"
"#,
        handler = site.probe_handler(""),
        password = root.join("password").display(),
    );
    let config = site.config_remote_source("a", "solo", &extra);

    let proc = site.spawn_leader(&config, LIMIT);
    std::fs::write(local.join("remote.csv"), b"over ftp").unwrap();
    let moved = wait_for(LIMIT, || {
        let done: Vec<String> = std::fs::read_dir(local.join(".done"))
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        (done.len() == 2 && !local.join("remote.csv").exists()).then_some(done)
    });
    let done = moved.unwrap_or_else(|| panic!("{}", proc.output()));
    let renamed = done
        .iter()
        .find(|n| *n != "remote.csv")
        .expect("a unique name");
    assert!(
        renamed.starts_with("remote.") && renamed.ends_with(".csv"),
        "{done:?}"
    );
    assert_eq!(
        std::fs::read(local.join(".done/remote.csv")).unwrap(),
        b"earlier",
        "the earlier file is not overwritten"
    );
    assert_eq!(
        std::fs::read(local.join(".done").join(renamed)).unwrap(),
        b"over ftp"
    );
    let handled = site.handled();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(
        handled[0].starts_with("remote.csv attempt=1") && handled[0].ends_with("size=8"),
        "{handled:?}"
    );
    let _ = std::fs::remove_dir_all(&local);
}

#[test]
fn proftpd_with_mlsd() {
    handled_and_moved("proftpd", 2122);
}

#[test]
fn vsftpd_without_mlsd() {
    handled_and_moved("vsftpd", 2121);
}

#[test]
fn proftpd_with_the_listing_check() {
    handled_and_moved_with("proftpd", 2122, "listing");
}

#[test]
fn vsftpd_with_the_listing_check() {
    handled_and_moved_with("vsftpd", 2121, "listing");
}
