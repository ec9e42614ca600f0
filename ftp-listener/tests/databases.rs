//! Two `ftp-listener` processes coordinating through PostgreSQL, then MariaDB (the servers
//! that `scripts/setup/` starts on loopback): one leader, each file once, SIGTERM handover.
//! Each test uses its own group, so runs do not disturb each other.

#![cfg(any(feature = "postgres", feature = "mysql"))]

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Proc, Site, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn unique_group(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn two_members_hand_over(backend: &str, url: &str) {
    let site = Site::new();
    let group = unique_group(backend);
    let handler = format!(
        "{}\n[coordination.{backend}]\nurl = \"{url}\"\n",
        site.probe_handler("")
    );
    let backend_key = format!("backend = \"{backend}\"");
    let write =
        |name: &str, member: &str| site.config_full(name, member, &group, &backend_key, &handler);
    let a_config = write("a", "node-a");
    let b_config = write("b", "node-b");

    let mut migrate = Proc::spawn(site.dir.path(), &["--config", "a.toml", "migrate"]);
    let status = migrate.wait_exit(LIMIT).expect("migrate exits");
    assert!(status.success(), "{}", migrate.output());

    let mut a = site.spawn(&a_config);
    assert!(
        a.wait_line("became leader", LIMIT).is_some(),
        "{}",
        a.output()
    );
    let b = site.spawn(&b_config);
    assert!(
        b.wait_line("ftp-listener started", LIMIT).is_some(),
        "{}",
        b.output()
    );
    for i in 0..3 {
        site.drop_file(&format!("f{i}.txt"), b"data");
    }
    let all_done = wait_for(LIMIT, || {
        (site.names_in("inbox/.done").len() == 3).then_some(())
    });
    assert!(all_done.is_some(), "a: {}\nb: {}", a.output(), b.output());
    let handled = site.handled();
    assert_eq!(handled.len(), 3, "{handled:?}");
    assert!(
        handled.iter().all(|l| l.contains("member=node-a")),
        "{handled:?}"
    );

    let sent = Instant::now();
    a.signal("TERM");
    let took_over = b.wait_line("became leader", LIMIT).expect("b takes over");
    eprintln!(
        "{backend}: handover after SIGTERM {:?}",
        took_over.saturating_duration_since(sent)
    );
    assert!(
        a.wait_exit(LIMIT).expect("a exits").success(),
        "{}",
        a.output()
    );
    site.drop_file("after.txt", b"x");
    let handled_by_b = wait_for(LIMIT, || {
        site.handled()
            .iter()
            .any(|l| l.starts_with("after.txt") && l.contains("member=node-b"))
            .then_some(())
    });
    assert!(handled_by_b.is_some(), "{}", b.output());
    assert_eq!(site.handled().len(), 4);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_two_members_hand_over() {
    two_members_hand_over("postgres", "postgres://postgres@127.0.0.1:5432/test");
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_two_members_hand_over() {
    two_members_hand_over("mysql", "mysql://root@127.0.0.1:3306/test");
}

#[cfg(feature = "postgres")]
#[test]
fn a_database_down_at_start_is_waited_for_and_sigterm_still_exits_cleanly() {
    let site = Site::new();
    // Nothing listens on port 1: connecting fails at once, as with a database that is down.
    let config = site.config_full(
        "down",
        "node-a",
        &unique_group("down"),
        "backend = \"postgres\"",
        "[coordination.postgres]\nurl = \"postgres://postgres@127.0.0.1:1/test\"\n",
    );
    let mut proc = site.spawn(&config);
    let waited = proc.wait_line("coordination store unavailable", LIMIT);
    assert!(waited.is_some(), "{}", proc.output());
    assert!(proc.child.try_wait().unwrap().is_none(), "still running");
    proc.signal("TERM");
    let status = proc.wait_exit(LIMIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", proc.output());
}
