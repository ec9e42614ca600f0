//! What the binary logs is what `RUST_LOG` asks for (issue 12): no DEBUG line at the default
//! level nor with `RUST_LOG=warn`, suppaftp included; suppaftp's TRACE (which logs `PASS`)
//! only when `RUST_LOG` names suppaftp. Against vsftpd (`scripts/setup/30-ftp.sh`).

#![cfg(feature = "ftp")]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_ftp-listener");

fn ftp_root() -> PathBuf {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    PathBuf::from(root).join("ftp")
}

/// Runs the listener on vsftpd for a few listings with `rust_log`; returns its stderr.
fn logs_with(rust_log: Option<&str>) -> String {
    let root = ftp_root();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("logs-{}-{nanos}", std::process::id());
    let local = root.join("vsftpd").join(&name);
    std::fs::create_dir_all(&local).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "hatest:hatest", local.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::write(local.join("f.txt"), b"x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "member_id = \"m\"\ngroup = \"logs-{nanos}\"\npoll_interval = \"200ms\"\n\
         [coordination.sqlite]\npath = \"c.db\"\n[http]\nbind = \"127.0.0.1:0\"\n\
         [source]\nkind = \"ftp\"\npath = \"/{name}\"\n[source.ftp]\nhost = \"127.0.0.1\"\n\
         port = 2121\nuser = \"hatest\"\npassword_file = \"{}\"\n",
        root.join("password").display()
    );
    std::fs::write(dir.path().join("l.toml"), config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .args(["--config", "l.toml", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    if let Some(level) = rust_log {
        cmd.env("RUST_LOG", level);
    }
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn count(logs: &str, level: &str) -> usize {
    logs.lines().filter(|l| l.contains(level)).count()
}

#[test]
fn rust_log_is_obeyed_and_the_default_shows_no_debug() {
    // The control: at debug, suppaftp's lines are there to be counted.
    let debug = logs_with(Some("debug"));
    assert!(
        debug
            .lines()
            .any(|l| l.contains(" DEBUG") && l.contains("suppaftp")),
        "{debug}"
    );
    assert!(debug.contains("f.txt"), "the file was listed: {debug}");
    for rust_log in [None, Some("warn"), Some("info")] {
        let logs = logs_with(rust_log);
        assert_eq!(count(&logs, " DEBUG"), 0, "RUST_LOG={rust_log:?}: {logs}");
        assert_eq!(count(&logs, " TRACE"), 0, "RUST_LOG={rust_log:?}: {logs}");
        if rust_log == Some("warn") {
            assert_eq!(count(&logs, " INFO"), 0, "RUST_LOG=warn: {logs}");
        } else {
            assert!(logs.contains("ftp-listener started"), "{logs}");
        }
    }
    // A global trace does not turn on suppaftp's password-bearing TRACE.
    let trace = logs_with(Some("trace"));
    assert!(
        !trace
            .lines()
            .any(|l| l.contains(" TRACE") && l.contains("suppaftp")),
        "{trace}"
    );
    assert!(!trace.contains("PASS "), "{trace}");
    // Asking for it by name works, with a warning.
    let asked = logs_with(Some("info,suppaftp=trace"));
    assert!(asked.contains("logs FTP passwords"), "{asked}");
}
