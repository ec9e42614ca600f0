//! The `forward` handler end to end (issue 9, item 6), one `ftp-listener` process per test
//! over the real servers of `scripts/setup/30-ftp.sh` and `40-sftp.sh`: vsftpd (2121, and
//! implicit FTPS on 2125), proftpd with explicit FTPS (2122), OpenSSH (2222), and local
//! folders. A destination that is down is a loopback port nobody listens on.

#![cfg(all(feature = "ftp", feature = "sftp"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{BIN, Proc, Site, names, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn test_root() -> PathBuf {
    PathBuf::from(std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into()))
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t-fwd-{name}-{}-{nanos}", std::process::id())
}

/// A folder on a server's disk that `user` owns: (its local path, its remote path).
fn remote_dir(root: &Path, remote_base: &str, user: &str, name: &str) -> (PathBuf, String) {
    let name = unique(name);
    let local = root.join(&name);
    std::fs::create_dir_all(&local).unwrap();
    let chown = Command::new("chown")
        .args([&format!("{user}:{user}"), local.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    (local, format!("{remote_base}{name}"))
}

/// vsftpd's served root (2121 and the implicit instance on 2125 share it) or proftpd's.
fn ftp_dir(server: &str, name: &str) -> (PathBuf, String) {
    remote_dir(&test_root().join("ftp").join(server), "/", "hatest", name)
}

fn sftp_dir(name: &str) -> (PathBuf, String) {
    let home = test_root().join("sftp/home");
    let (local, _) = remote_dir(&home, "", "sftptest", name);
    let remote = local.display().to_string();
    (local, remote)
}

fn ftp_table(port: u16, tls: &str) -> String {
    let ftp = test_root().join("ftp");
    let ca = if tls == "none" {
        String::new()
    } else {
        format!(", ca_file = \"{}\"", ftp.join("tls/ca.pem").display())
    };
    format!(
        "{{ host = \"127.0.0.1\", port = {port}, user = \"hatest\", password_file = \"{}\", \
         tls = \"{tls}\", connect_timeout = \"2s\", reconnect_backoff_min = \"50ms\", \
         reconnect_backoff_max = \"200ms\"{ca} }}",
        ftp.join("password").display()
    )
}

fn sftp_table(port: u16) -> String {
    format!(
        "{{ host = \"127.0.0.1\", port = {port}, user = \"sftptest\", known_hosts = \"{}\", \
         connect_timeout = \"2s\", reconnect_initial = \"50ms\", reconnect_max = \"200ms\", \
         auth = {{ method = \"password\", password = \"sftp-test-password\" }} }}",
        test_root().join("sftp/known_hosts").display()
    )
}

/// A loopback port nobody listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `[[handler.destinations]]` entry.
fn destination(name: &str, kind: &str, path: &str, table: Option<&str>) -> String {
    let table = table.map(|t| format!("{kind} = {t}\n")).unwrap_or_default();
    format!(
        "[[handler.destinations]]\nname = \"{name}\"\nkind = \"{kind}\"\npath = \"{path}\"\n{table}"
    )
}

/// A site whose local inbox is forwarded: `handler_extra` goes into `[handler]`.
fn start(
    site: &Site,
    handler_extra: &str,
    destinations: &[String],
    retry: &str,
) -> (PathBuf, Proc) {
    let extra = format!(
        "{retry}\n[handler]\nkind = \"forward\"\n{handler_extra}\n{}",
        destinations.join("\n")
    );
    let config = site.config("a", "solo", &extra);
    // One file at a time: the session counts below are then exact.
    let body = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("max_in_flight = 1\n{body}")).unwrap();
    let proc = site.spawn_leader(&config, LIMIT);
    (config, proc)
}

/// The ledger rows of `name`, as `ledger show --json` prints them.
fn ledger(site: &Site, config: &Path, name: &str) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .current_dir(site.dir.path())
        .args([
            "--config",
            config.to_str().unwrap(),
            "ledger",
            "show",
            name,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `name`'s one row is in `state`, and returns it.
fn row_in_state(
    site: &Site,
    config: &Path,
    name: &str,
    state: &str,
    proc: &Proc,
) -> serde_json::Value {
    wait_for(LIMIT, || {
        ledger(site, config, name)
            .into_iter()
            .find(|r| r["state"] == state)
    })
    .unwrap_or_else(|| {
        panic!(
            "{name} never {state}: {:?}\n{}",
            ledger(site, config, name),
            proc.output()
        )
    })
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn fanout_to_ftp_ftps_sftp_and_local_lands_every_file_under_its_final_name() {
    let site = Site::new();
    let (vs_local, vs_remote) = ftp_dir("vsftpd", "fan-vs");
    let (pro_local, pro_remote) = ftp_dir("proftpd", "fan-pro");
    let (sftp_local, sftp_remote) = sftp_dir("fan-sftp");
    let local_out = site.path("out");
    // Folders below the configured paths are made by the handler.
    let destinations = [
        destination(
            "vsftpd",
            "ftp",
            &format!("{vs_remote}/in"),
            Some(&ftp_table(2121, "none")),
        ),
        destination(
            "proftpd-ftps",
            "ftp",
            &pro_remote,
            Some(&ftp_table(2122, "explicit")),
        ),
        destination(
            "sftp",
            "sftp",
            &format!("{sftp_remote}/a/b"),
            Some(&sftp_table(2222)),
        ),
        destination("local", "local", local_out.to_str().unwrap(), None),
    ];
    let (config, proc) = start(&site, "mode = \"fanout\"", &destinations, "");
    let big = content(300_000);
    site.drop_file("big.bin", &big);
    site.drop_file("small.csv", b"a,b\n1,2\n");
    for name in ["big.bin", "small.csv"] {
        let row = row_in_state(&site, &config, name, "done", &proc);
        let detail = row["detail"].as_str().unwrap_or_default().to_string();
        for d in [
            "`vsftpd` at ftp://127.0.0.1:2121/",
            "`proftpd-ftps` at ftp://127.0.0.1:2122/",
            "`sftp` at sftp://127.0.0.1:2222/",
            "`local` at /",
        ] {
            assert!(detail.contains(d), "{name}: {d} missing from {detail}");
        }
        assert!(detail.ends_with(name), "{detail}");
    }
    let expect = ["big.bin", "small.csv"];
    for dir in [
        vs_local.join("in"),
        pro_local.clone(),
        sftp_local.join("a/b"),
        local_out.clone(),
    ] {
        assert_eq!(
            names(&dir),
            expect,
            "{}: no temporary file left",
            dir.display()
        );
        assert_eq!(
            std::fs::read(dir.join("big.bin")).unwrap(),
            big,
            "{}",
            dir.display()
        );
        assert_eq!(std::fs::read(dir.join("small.csv")).unwrap(), b"a,b\n1,2\n");
    }
    assert_eq!(site.names_in("inbox/.done"), expect);
    // One session per destination served both files (no login per file).
    assert_eq!(
        proc.count_lines("ftp session opened"),
        2,
        "{}",
        proc.output()
    );
    for dir in [vs_local, pro_local, sftp_local] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn failover_lands_the_file_on_the_second_destination_and_the_ledger_says_so() {
    let site = Site::new();
    let (sftp_local, sftp_remote) = sftp_dir("failover");
    let destinations = [
        destination(
            "primary",
            "ftp",
            "/in",
            Some(&ftp_table(closed_port(), "none")),
        ),
        destination("backup", "sftp", &sftp_remote, Some(&sftp_table(2222))),
    ];
    let (config, proc) = start(&site, "", &destinations, "");
    site.drop_file("one.csv", b"first");
    let row = row_in_state(&site, &config, "one.csv", "done", &proc);
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("`backup` at sftp://127.0.0.1:2222/") && detail.contains("one.csv"),
        "{detail}"
    );
    assert!(detail.contains("after `primary` failed"), "{detail}");
    assert_eq!(row["attempts"], 1, "{row}");
    site.drop_file("two.csv", b"second");
    row_in_state(&site, &config, "two.csv", "done", &proc);
    assert_eq!(names(&sftp_local), ["one.csv", "two.csv"]);
    assert_eq!(
        std::fs::read(sftp_local.join("two.csv")).unwrap(),
        b"second"
    );
    // `ledger list` shows the detail too.
    let out = Command::new(BIN)
        .current_dir(site.dir.path())
        .args(["--config", config.to_str().unwrap(), "ledger", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[`backup` at sftp://"), "{text}");
    let _ = std::fs::remove_dir_all(sftp_local);
}

#[test]
fn every_destination_down_is_retried_then_moved_to_the_error_folder() {
    let site = Site::new();
    let destinations = [
        destination(
            "primary",
            "ftp",
            "/in",
            Some(&ftp_table(closed_port(), "none")),
        ),
        destination("backup", "sftp", "/in", Some(&sftp_table(closed_port()))),
    ];
    let retry = "[retry]\nmax_attempts = 3\ninitial_backoff = \"100ms\"\nmax_backoff = \"200ms\"";
    let (config, proc) = start(&site, "", &destinations, retry);
    site.drop_file("lost.csv", b"nowhere to go");
    let row = row_in_state(&site, &config, "lost.csv", "error", &proc);
    assert_eq!(row["attempts"], 3, "{row}");
    let error = row["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("every destination failed: `primary` failed:")
            && error.contains("`backup` failed:"),
        "{error}"
    );
    assert_eq!(row["detail"], serde_json::Value::Null);
    assert!(
        wait_for(LIMIT, || site
            .path("inbox/.error/lost.csv")
            .exists()
            .then_some(()))
        .is_some(),
        "{}",
        proc.output()
    );
}

#[test]
fn a_partial_fanout_is_retried_and_skips_the_destination_that_has_the_file() {
    let site = Site::new();
    let first = site.path("first");
    // The second destination's folder cannot be made while a file stands in its way.
    let blocker = site.path("blocker");
    std::fs::write(&blocker, b"in the way").unwrap();
    let destinations = [
        destination("first", "local", first.to_str().unwrap(), None),
        destination(
            "second",
            "local",
            blocker.join("out").to_str().unwrap(),
            None,
        ),
    ];
    let retry = "[retry]\ninitial_backoff = \"300ms\"\nmax_backoff = \"300ms\"";
    let (config, proc) = start(&site, "mode = \"fanout\"", &destinations, retry);
    site.drop_file("x.csv", b"payload");
    let failed = row_in_state(&site, &config, "x.csv", "failed", &proc);
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("fan-out incomplete: `second` failed:")
            && error.contains("delivered `first`"),
        "{error}"
    );
    std::fs::remove_file(&blocker).unwrap();
    let row = row_in_state(&site, &config, "x.csv", "done", &proc);
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("`first` at ")
            && detail.contains("x.csv (already there)")
            && detail.contains("`second` at "),
        "{detail}"
    );
    assert!(
        detail.ends_with("blocker/out/x.csv"),
        "uploaded on the retry: {detail}"
    );
    assert_eq!(
        std::fs::read(blocker.join("out/x.csv")).unwrap(),
        b"payload"
    );
    assert_eq!(names(&first), ["x.csv"]);
}

#[test]
fn implicit_ftps_source_and_destination() {
    let site = Site::new();
    let (src_local, src_remote) = ftp_dir("vsftpd", "implicit-src");
    let (dst_local, dst_remote) = ftp_dir("vsftpd", "implicit-dst");
    let extra = format!(
        "[source]\nkind = \"ftp\"\npath = \"{src_remote}\"\nftp = {}\n\
         [handler]\nkind = \"forward\"\n{}",
        ftp_table(2125, "implicit"),
        destination(
            "partner",
            "ftp",
            &dst_remote,
            Some(&ftp_table(2125, "implicit"))
        )
    );
    let config = site.config_remote_source("a", "solo", &extra);
    let proc = site.spawn_leader(&config, LIMIT);
    std::fs::write(src_local.join("secret.csv"), b"over implicit tls").unwrap();
    let row = row_in_state(&site, &config, "secret.csv", "done", &proc);
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .starts_with("`partner` at ftp://127.0.0.1:2125/"),
        "{row}"
    );
    assert_eq!(names(&dst_local), ["secret.csv"]);
    assert_eq!(
        std::fs::read(dst_local.join("secret.csv")).unwrap(),
        b"over implicit tls"
    );
    assert!(src_local.join(".done/secret.csv").exists());
    assert!(proc.output().contains("tls=Implicit"), "{}", proc.output());
    for dir in [src_local, dst_local] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn check_config_refuses_bad_destinations_naming_the_key() {
    let site = Site::new();
    let cases = [
        ("empty", String::new(), "`handler.destinations`"),
        (
            "kind",
            destination("x", "s3", "/in", None),
            "`handler.destinations[0].kind`",
        ),
        (
            "tls",
            destination("x", "ftp", "/in", Some(&ftp_table(2121, "implict"))),
            "`handler.destinations[0].ftp.tls`",
        ),
    ];
    for (name, destinations, expected) in cases {
        let config = site.config(
            name,
            "solo",
            &format!("[handler]\nkind = \"forward\"\n{destinations}"),
        );
        let out = Command::new(BIN)
            .current_dir(site.dir.path())
            .args(["--config", config.to_str().unwrap(), "check-config"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}.toml")), "{name}: {stderr}");
    }
}

#[test]
fn a_destination_that_goes_down_fails_over_and_takes_files_again_once_back() {
    let site = Site::new();
    let (sftp_local, sftp_remote) = sftp_dir("proxy");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sshd: std::net::SocketAddr = "127.0.0.1:2222".parse().unwrap();
    let proxy = rt.block_on(testkit::TcpProxy::start(sshd)).expect("proxy");
    // The proxy's port is not in the shared known_hosts: learn the key on first use.
    let known_hosts = site.path("known_hosts");
    std::fs::write(&known_hosts, b"").unwrap();
    let primary = sftp_table(proxy.addr().port()).replacen(
        &format!(
            "known_hosts = \"{}\"",
            test_root().join("sftp/known_hosts").display()
        ),
        &format!(
            "known_hosts = \"{}\", host_key_policy = \"accept_new\"",
            known_hosts.display()
        ),
        1,
    );
    let backup = site.path("backup");
    let destinations = [
        destination("primary", "sftp", &sftp_remote, Some(&primary)),
        destination("backup", "local", backup.to_str().unwrap(), None),
    ];
    let (config, proc) = start(&site, "", &destinations, "");
    let landed = |name: &str| {
        site.drop_file(name, name.as_bytes());
        let row = row_in_state(&site, &config, name, "done", &proc);
        row["detail"].as_str().unwrap().to_string()
    };
    assert!(landed("a.csv").starts_with("`primary` at sftp://"));
    rt.block_on(proxy.cut());
    let detail = landed("b.csv");
    assert!(
        detail.starts_with("`backup` at ") && detail.contains("after `primary` failed"),
        "{detail}"
    );
    rt.block_on(proxy.restore()).unwrap();
    let detail = landed("c.csv");
    assert!(detail.starts_with("`primary` at sftp://"), "{detail}");
    assert_eq!(names(&sftp_local), ["a.csv", "c.csv"]);
    assert_eq!(names(&backup), ["b.csv"]);
    assert_eq!(std::fs::read(sftp_local.join("c.csv")).unwrap(), b"c.csv");
    let _ = std::fs::remove_dir_all(sftp_local);
}
