//! The seeds' listener record, written in TOML with the seeds' field names, end to end:
//! `check-config` on `examples/seed-listener.toml`, the record against the real FTP server
//! (`scripts/setup/30-ftp.sh`, vsftpd on 127.0.0.1:2121) with PostgreSQL (5432) and MariaDB
//! (3306) as the coordination database, and the record without `coordination` (one member,
//! its ledger in the local SQLite file, surviving a restart).

#![cfg(feature = "ftp")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, Site, unique, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("examples/seed-listener.toml"))
        .find(|p| p.exists())
        .expect("examples/seed-listener.toml")
}

#[cfg(feature = "mysql")]
#[test]
fn the_seed_example_passes_check_config() {
    let site = Site::new();
    let example = example();
    let mut proc = Proc::spawn(
        site.dir.path(),
        &["--config", example.to_str().unwrap(), "check-config"],
    );
    let status = proc.wait_exit(LIMIT).expect("check-config exits");
    let out = proc.output();
    assert!(status.success(), "{out}");
    for mapped in [
        "member_id = \"member-1\"",
        "group = \"incoming-files-group\"",
        "backend = \"mysql\"",
        "mysql.example.com",
        "ftp.example.com",
        "path = \"/incoming\"",
        "poll_interval = \"30s\"",
        "liveness_timeout = \"30s\"",
        "fileNamePattern",
    ] {
        assert!(out.contains(mapped), "{mapped}: {out}");
    }
    assert!(
        !out.contains("secret") && !out.contains("\"pass\""),
        "{out}"
    );
}

/// A remote folder of the test user on vsftpd: (as the user sees it, as this test sees it).
fn remote_dir() -> (String, PathBuf) {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    let root = PathBuf::from(root).join("ftp");
    let name = unique("seed");
    let local = root.join("vsftpd").join(&name);
    std::fs::create_dir_all(&local).unwrap();
    let chown = Command::new("chown")
        .args(["hatest:hatest", local.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    (format!("/{name}"), local)
}

fn ftp_password() -> String {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    std::fs::read_to_string(PathBuf::from(root).join("ftp/password"))
        .unwrap()
        .trim()
        .to_string()
}

/// The seeds' record, with `coordination` as given (empty: none). Our own keys only where
/// the seeds have no field: the handler and the endpoints' address.
fn seed_toml(site: &Site, remote: &str, coordination: &str, extra: &str) -> PathBuf {
    let body = format!(
        r#"protocol = "ftp"
host = "127.0.0.1"
port = 2121
path = "{remote}"
pollingInterval = 1
fileNamePattern = '.*\.csv'
{extra}
[auth.credentials]
username = "hatest"
password = "{password}"
{coordination}
[http]
bind = "127.0.0.1:0"
{handler}
"#,
        password = ftp_password(),
        handler = site.probe_handler(""),
    );
    let path = site.path("seed.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn with_database(port: u16, user: &str) {
    let (remote, local) = remote_dir();
    let site = Site::new();
    let coordination = format!(
        r#"
[coordination]
memberId = "member-1"
coordinationGroup = "{group}"
heartbeatFrequency = 1
livenessCheckInterval = 3
[coordination.databaseConfig]
host = "127.0.0.1"
port = {port}
user = "{user}"
password = ""
database = "test"
"#,
        group = unique("seed-group"),
    );
    let config = seed_toml(&site, &remote, &coordination, "");
    // The seeds' runtime does not create its tables; our `migrate` does.
    let mut migrate = Proc::spawn(site.dir.path(), &["--config", "seed.toml", "migrate"]);
    let status = migrate.wait_exit(LIMIT).expect("migrate exits");
    assert!(status.success(), "{}", migrate.output());
    let proc = site.spawn(&config);
    assert!(
        proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    std::fs::write(local.join("skipped.txt"), b"not a csv").unwrap();
    std::fs::write(local.join("remote.csv"), b"over ftp").unwrap();
    let moved = wait_for(LIMIT, || {
        local.join(".done/remote.csv").exists().then_some(())
    });
    assert!(moved.is_some(), "{}", proc.output());
    let handled = site.handled();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(
        handled[0].starts_with("remote.csv attempt=1") && handled[0].contains("member=member-1"),
        "{handled:?}"
    );
    assert!(
        local.join("skipped.txt").exists(),
        "fileNamePattern skips it"
    );
    let _ = std::fs::remove_dir_all(&local);
}

#[cfg(feature = "postgres")]
#[test]
fn the_seed_record_runs_against_ftp_and_postgres() {
    with_database(5432, "postgres");
}

#[cfg(feature = "mysql")]
#[test]
fn the_seed_record_runs_against_ftp_and_mariadb() {
    with_database(3306, "root");
}

#[test]
fn without_coordination_one_member_runs_and_a_restart_does_not_handle_a_done_file_again() {
    let (remote, local) = remote_dir();
    let site = Site::new();
    // `leave`: the file stays where it was, so only the ledger keeps it from a second run.
    let config = seed_toml(&site, &remote, "", "post_processing = \"leave\"");
    std::fs::write(local.join("once.csv"), b"only once").unwrap();
    let mut first = site.spawn(&config);
    assert!(
        first.wait_line("became leader", LIMIT).is_some(),
        "{}",
        first.output()
    );
    let handled = wait_for(LIMIT, || (site.handled().len() == 1).then_some(()));
    assert!(handled.is_some(), "{}", first.output());
    first.signal("TERM");
    assert!(first.wait_exit(LIMIT).expect("exits").success());
    assert!(site.path("ftp-listener.db").exists(), "the local ledger");

    let second = site.spawn(&config);
    assert!(
        second.wait_line("became leader", LIMIT).is_some(),
        "{}",
        second.output()
    );
    std::fs::write(local.join("later.csv"), b"new").unwrap();
    let later = wait_for(LIMIT, || (site.handled().len() == 2).then_some(()));
    assert!(later.is_some(), "{}", second.output());
    let handled = site.handled();
    assert!(handled[1].starts_with("later.csv"), "{handled:?}");
    assert!(local.join("once.csv").exists());
    let _ = std::fs::remove_dir_all(&local);
}
