//! Two `ftp-listener` processes on one SQLite file and one inbox: one leader, handover on
//! SIGTERM and on kill -9, redelivery, and refusal of a duplicate member ID.

mod common;

use std::time::{Duration, Instant};

use common::{Site, wait_for};

const LIMIT: Duration = Duration::from_secs(20);

fn done(site: &Site, name: &str) -> bool {
    site.path(&format!("inbox/.done/{name}")).exists()
}

#[test]
fn one_leader_handles_each_file_and_sigterm_hands_over() {
    let site = Site::new();
    let handler = site.probe_handler("");
    let a_config = site.config("a", "node-a", &handler);
    let b_config = site.config("b", "node-b", &handler);
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

    for i in 0..5 {
        site.drop_file(&format!("f{i}.txt"), b"data");
    }
    assert!(
        wait_for(LIMIT, || (0..5)
            .all(|i| done(&site, &format!("f{i}.txt")))
            .then_some(()))
        .is_some(),
        "a: {}\nb: {}",
        a.output(),
        b.output()
    );
    let handled = site.handled();
    assert_eq!(handled.len(), 5, "each file exactly once: {handled:?}");
    let mut names: Vec<_> = handled
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5, "{handled:?}");
    // Only the leader touches the files. (On a machine so loaded that a's heartbeats time
    // out, b may legitimately have taken over meanwhile: then both may appear.)
    if b.count_lines("became leader") == 0 {
        assert!(
            handled.iter().all(|l| l.contains("member=node-a")),
            "{handled:?}"
        );
    }

    let sent = Instant::now();
    a.signal("TERM");
    let took_over = b.wait_line("became leader", LIMIT).expect("b takes over");
    let handover = took_over.saturating_duration_since(sent);
    eprintln!("handover after SIGTERM: {handover:?}");
    // About two heartbeats (100 ms each) plus scheduling; generous for a loaded machine.
    assert!(handover < Duration::from_millis(1500), "{handover:?}");
    let status = a.wait_exit(LIMIT).expect("a exits");
    assert!(status.success(), "{status:?}\n{}", a.output());

    site.drop_file("after.txt", b"x");
    assert!(
        wait_for(LIMIT, || done(&site, "after.txt").then_some(())).is_some(),
        "{}",
        b.output()
    );
    let handled = site.handled();
    assert_eq!(handled.len(), 6, "{handled:?}");
    assert!(
        handled[5].starts_with("after.txt") && handled[5].contains("member=node-b"),
        "{handled:?}"
    );
}

#[test]
fn kill_9_of_the_leader_redelivers_its_unfinished_file() {
    let site = Site::new();
    // A file named slow*: the first delivery records its pid and hangs; a redelivery returns.
    let handler = site.probe_handler(&format!(
        r#"case "$FTPL_PATH" in *slow*) if [ "$FTPL_REDELIVERY" = false ]; then echo $$ > "{}"; sleep 30; fi;; esac"#,
        site.path("hanging.pid").display()
    ));
    let mut a = site.spawn(&site.config("a", "node-a", &handler));
    assert!(
        a.wait_line("became leader", LIMIT).is_some(),
        "{}",
        a.output()
    );
    let b = site.spawn(&site.config("b", "node-b", &handler));
    assert!(
        b.wait_line("ftp-listener started", LIMIT).is_some(),
        "{}",
        b.output()
    );

    site.drop_file("slow.txt", b"payload");
    let pid = wait_for(LIMIT, || {
        std::fs::read_to_string(site.path("hanging.pid")).ok()
    })
    .expect("the handler started on the leader");
    let killed = Instant::now();
    a.signal("KILL");
    a.wait_exit(LIMIT).expect("a dies");
    let took_over = b.wait_line("became leader", LIMIT).expect("b takes over");
    let failover = took_over.saturating_duration_since(killed);
    eprintln!("failover after kill -9: {failover:?}");
    // liveness (500 ms) + a tick (100 ms), with room for a loaded machine.
    assert!(failover < Duration::from_millis(2500), "{failover:?}");

    assert!(
        wait_for(LIMIT, || done(&site, "slow.txt").then_some(())).is_some(),
        "{}",
        b.output()
    );
    let handled = site.handled();
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert!(
        handled[0].contains("attempt=1 redelivery=false member=node-a"),
        "{handled:?}"
    );
    assert!(
        handled[1].contains("attempt=2 redelivery=true member=node-b"),
        "{handled:?}"
    );
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}

#[test]
fn a_second_process_with_the_same_member_id_is_refused() {
    let site = Site::new();
    let mut a = site.spawn(&site.config("a", "twin", ""));
    assert!(
        a.wait_line("became leader", LIMIT).is_some(),
        "{}",
        a.output()
    );
    let mut b = site.spawn(&site.config("b", "twin", ""));
    let status = b.wait_exit(LIMIT).expect("the duplicate exits");
    assert!(!status.success(), "{status:?}");
    let out = b.output();
    assert!(
        out.contains("member `twin` of group `e2e` is already in use"),
        "{out}"
    );
    // The first one is untouched: still leading, never lost the token.
    assert_eq!(a.count_lines("lost leadership"), 0, "{}", a.output());
    assert!(a.child.try_wait().unwrap().is_none());
}

#[test]
fn sigterm_lets_the_handler_in_flight_finish_before_the_handover() {
    let site = Site::new();
    // slow*: marks that it started, then takes a second.
    let handler = site.probe_handler(&format!(
        r#"case "$FTPL_PATH" in *slow*) touch "{}"; sleep 1;; esac"#,
        site.path("started").display()
    ));
    let mut a = site.spawn(&site.config("a", "node-a", &handler));
    assert!(
        a.wait_line("became leader", LIMIT).is_some(),
        "{}",
        a.output()
    );
    let b = site.spawn(&site.config("b", "node-b", &handler));
    assert!(
        b.wait_line("ftp-listener started", LIMIT).is_some(),
        "{}",
        b.output()
    );

    site.drop_file("slow.txt", b"s");
    assert!(wait_for(LIMIT, || site.path("started").exists().then_some(())).is_some());
    a.signal("TERM");
    let status = a.wait_exit(LIMIT).expect("a exits");
    assert!(status.success(), "{status:?}\n{}", a.output());
    // a finished the file (moved and recorded) before it let go: b never redelivers it.
    assert!(done(&site, "slow.txt"), "{}", a.output());
    assert!(
        b.wait_line("became leader", LIMIT).is_some(),
        "{}",
        b.output()
    );
    site.drop_file("next.txt", b"n");
    assert!(
        wait_for(LIMIT, || done(&site, "next.txt").then_some(())).is_some(),
        "{}",
        b.output()
    );
    let handled = site.handled();
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert!(
        handled[0].starts_with("slow.txt attempt=1 redelivery=false member=node-a"),
        "{handled:?}"
    );
    assert!(
        handled[1].starts_with("next.txt") && handled[1].contains("member=node-b"),
        "{handled:?}"
    );
}

#[test]
fn a_handler_that_outlives_shutdown_grace_is_stopped_and_redelivered() {
    let site = Site::new();
    let handler = site.probe_handler(&format!(
        r#"case "$FTPL_PATH" in *slow*) if [ "$FTPL_REDELIVERY" = false ]; then echo $$ > "{}"; sleep 30; fi;; esac"#,
        site.path("hanging.pid").display()
    ));
    let a_config = site.config("a", "node-a", &handler);
    let mut a = common::Proc::spawn_env(
        site.dir.path(),
        &["--config", a_config.to_str().unwrap(), "run"],
        &[("FTPL_SHUTDOWN_GRACE", "200ms")],
    );
    assert!(
        a.wait_line("became leader", LIMIT).is_some(),
        "{}",
        a.output()
    );
    let b = site.spawn(&site.config("b", "node-b", &handler));
    assert!(
        b.wait_line("ftp-listener started", LIMIT).is_some(),
        "{}",
        b.output()
    );

    site.drop_file("slow.txt", b"s");
    let pid = wait_for(LIMIT, || {
        std::fs::read_to_string(site.path("hanging.pid")).ok()
    })
    .expect("the handler started");
    let sent = Instant::now();
    a.signal("TERM");
    let status = a.wait_exit(LIMIT).expect("a exits");
    assert!(status.success(), "{status:?}\n{}", a.output());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        a.output().contains("did not finish within shutdown_grace"),
        "{}",
        a.output()
    );
    assert!(
        wait_for(LIMIT, || done(&site, "slow.txt").then_some(())).is_some(),
        "{}",
        b.output()
    );
    let handled = site.handled();
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert!(
        handled[1].contains("attempt=2 redelivery=true member=node-b"),
        "{handled:?}"
    );
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}
