//! One `ftp-listener` process, the local source and SQLite, end to end.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Proc, Site, http_get, wait_for};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn dropped_files_are_handled_once_and_moved() {
    let site = Site::new();
    let config = site.config("a", "solo", &site.probe_handler(""));
    let proc = site.spawn(&config);
    assert!(
        proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    for name in ["one.csv", "two.csv", "three.csv"] {
        site.drop_file(name, name.as_bytes());
    }
    let done = wait_for(LIMIT, || {
        let done = site.names_in("inbox/.done");
        (done.len() == 3).then_some(done)
    });
    assert_eq!(
        done,
        Some(vec!["one.csv".into(), "three.csv".into(), "two.csv".into()]),
        "{}",
        proc.output()
    );
    // A file dropped afterwards is handled too, which proves at least one more full poll
    // ran over the ledger after the first three were done.
    site.drop_file("four.csv", b"4");
    assert!(
        wait_for(LIMIT, || site
            .names_in("inbox/.done")
            .contains(&"four.csv".to_string())
            .then_some(()))
        .is_some()
    );
    let mut handled = site.handled();
    handled.sort();
    assert_eq!(handled.len(), 4, "{handled:?}");
    for (line, name) in handled
        .iter()
        .zip(["four.csv", "one.csv", "three.csv", "two.csv"])
    {
        assert!(
            line.starts_with(&format!("{name} attempt=1 redelivery=false member=solo")),
            "{line}"
        );
    }
    assert_eq!(
        site.names_in("inbox"),
        vec![".done".to_string(), ".error".to_string()]
    );
}

#[test]
fn a_file_still_being_written_waits_until_stable() {
    let site = Site::new();
    let extra = format!(
        "{}\n[stability]\nmin_age = \"1s\"\n",
        site.probe_handler("")
    );
    let config = site.config("a", "solo", &extra);
    let proc = site.spawn(&config);
    assert!(
        proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    // Grow the file every 40 ms for about 2 s: each listing sees a new version, and none is
    // ever a second old (a margin for a loaded machine that stalls this thread).
    let path = site.path("inbox/growing.dat");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut size = 0;
    for _ in 0..50 {
        file.write_all(&[b'x'; 100]).unwrap();
        file.flush().unwrap();
        size += 100;
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            site.handled().is_empty(),
            "dispatched while growing: {:?}",
            site.handled()
        );
    }
    drop(file);
    let handled = wait_for(LIMIT, || {
        let h = site.handled();
        (!h.is_empty()).then_some(h)
    })
    .unwrap();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(handled[0].ends_with(&format!("size={size}")), "{handled:?}");
    assert!(
        wait_for(LIMIT, || site
            .path("inbox/.done/growing.dat")
            .exists()
            .then_some(()))
        .is_some()
    );
}

#[test]
fn a_failing_command_is_retried_with_backoff_then_goes_to_the_error_folder() {
    let site = Site::new();
    let extra = format!(
        "{}\n[retry]\nmax_attempts = 3\ninitial_backoff = \"300ms\"\nmax_backoff = \"1s\"\n",
        site.probe_handler("echo 'disk full' >&2; exit 3")
    );
    let config = site.config("a", "solo", &extra);
    let proc = site.spawn(&config);
    site.drop_file("bad.csv", b"x");
    // The move is a hard link then an unlink: wait for both.
    let moved = wait_for(LIMIT, || {
        (site.path("inbox/.error/bad.csv").exists() && !site.path("inbox/bad.csv").exists())
            .then_some(())
    });
    assert!(moved.is_some(), "{}", proc.output());
    let handled = site.handled();
    let attempts: Vec<&str> = handled
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        attempts,
        ["attempt=1", "attempt=2", "attempt=3"],
        "{handled:?}"
    );
    // The handler's message reached the log; the backoff doubled (300 ms, then 600 ms).
    assert!(proc.output().contains("disk full"), "{}", proc.output());
    assert_eq!(proc.count_lines("handler failed"), 3, "{}", proc.output());
    let times = dispatch_times(&proc);
    assert_eq!(times.len(), 3, "{}", proc.output());
    assert!(
        times[1] - times[0] >= Duration::from_millis(300),
        "{times:?}"
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(600),
        "{times:?}"
    );
}

fn dispatch_times(proc: &Proc) -> Vec<Duration> {
    // The time stamps the listener wrote on its "dispatching" lines (not when this test read
    // them: a loaded machine delays the reader), relative to the first.
    let out = proc.output();
    let stamps: Vec<f64> = (1..=3)
        .filter_map(|n| {
            let needle = format!("attempt={n} ");
            let line = out
                .lines()
                .find(|l| l.contains("dispatching") && l.contains(&needle))?;
            seconds_of_day(line)
        })
        .collect();
    stamps
        .iter()
        .map(|t| Duration::from_secs_f64((t - stamps[0]).max(0.0)))
        .collect()
}

/// `2026-11-27T12:38:02.808466Z ...` -> seconds since midnight (UTC).
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line
        .split_whitespace()
        .next()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

#[test]
fn a_bad_config_names_the_field_and_the_file() {
    let site = Site::new();
    let config = site.path("broken.toml");
    std::fs::write(&config, "[retry]\nmax_attempts = \"lots\"\n").unwrap();
    let mut proc = Proc::spawn(site.dir.path(), &["--config", "broken.toml", "run"]);
    let status = proc.wait_exit(LIMIT).expect("exits");
    assert!(!status.success());
    let out = proc.output();
    assert!(
        out.contains("max_attempts") && out.contains("broken.toml"),
        "{out}"
    );

    std::fs::write(
        &config,
        "[coordination]\nheartbeat_interval = \"2s\"\nliveness_timeout = \"1s\"\n",
    )
    .unwrap();
    let mut proc = Proc::spawn(
        site.dir.path(),
        &["--config", "broken.toml", "check-config"],
    );
    assert!(!proc.wait_exit(LIMIT).expect("exits").success());
    let out = proc.output();
    assert!(
        out.contains("coordination.heartbeat_interval") && out.contains("broken.toml"),
        "{out}"
    );
}

#[test]
fn endpoints_and_the_status_command() {
    let site = Site::new();
    let config = site.config("a", "solo", "");
    let proc = site.spawn(&config);
    assert!(
        proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    let out = proc.output();
    let addr = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .expect("the bound address is logged")
        .to_string();

    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(http_get(&addr, "/nope").0, 404);
    site.drop_file("m.txt", b"x");
    assert!(
        wait_for(LIMIT, || site
            .path("inbox/.done/m.txt")
            .exists()
            .then_some(()))
        .is_some()
    );
    // The file is moved before its `done` is recorded: wait for the counter.
    let metrics = wait_for(LIMIT, || {
        let (code, text) = http_get(&addr, "/metrics");
        (code == 200
            && text
                .lines()
                .any(|l| l == "ftpl_files_done_total{listener=\"e2e\"} 1"))
        .then_some(text)
    })
    .expect("files_done reaches 1");
    // Every sample carries the listener's name (here the group's, as none is set).
    for (name, value) in [
        ("ftpl_role", 1),
        ("ftpl_term", 1),
        ("ftpl_takeovers_total", 1),
        ("ftpl_files_dispatched_total", 1),
        ("ftpl_files_done_total", 1),
    ] {
        let line = format!("{name}{{listener=\"e2e\"}} {value}");
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    assert!(metrics.contains("ftpl_heartbeats_ok_total{"), "{metrics}");
    // How far behind: nothing left, a listing just now. The done file left the folder, so the
    // leader's mirror no longer holds it (its row stays in the database).
    let metrics = wait_for(LIMIT, || {
        let (_, text) = http_get(&addr, "/metrics");
        // The gauges are set at each listing: wait for one after the file was done.
        (text.contains("ftpl_ledger_rows{listener=\"e2e\",state=\"done\"} 0")
            && text.contains("ftpl_ledger_rows{listener=\"e2e\",state=\"new\"} 0")
            && text.contains("ftpl_files_done_total{listener=\"e2e\"} 1"))
        .then_some(text)
    })
    .expect("the done file is counted, and left the mirror");
    assert!(
        metrics.contains("ftpl_backlog_files{listener=\"e2e\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ftpl_handlers_in_flight{listener=\"e2e\"} 0\n"),
        "{metrics}"
    );
    let listed_at: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ftpl_last_listing_timestamp_seconds{listener=\"e2e\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the last listing's time");
    assert!(listed_at > 1.7e9, "{listed_at}");

    let mut status = Proc::spawn(site.dir.path(), &["--config", "a.toml", "status"]);
    assert!(
        status.wait_exit(LIMIT).expect("status exits").success(),
        "{}",
        status.output()
    );
    let table = status.output();
    assert!(table.contains("group e2e  term 1"), "{table}");
    assert!(table.contains("holder solo"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("solo ") && l.ends_with("leader")),
        "{table}"
    );
    // `status` only reads: no observer row of its own, one member line (the solo member).
    assert!(!table.contains("ftp-listener-status"), "{table}");
    let roles = ["leader", "standby", "stale"];
    assert_eq!(
        table
            .lines()
            .filter(|l| roles.iter().any(|r| l.ends_with(r)))
            .count(),
        1,
        "{table}"
    );
}

#[test]
fn print_ddl_and_check_config() {
    let site = Site::new();
    let mut ddl = Proc::spawn(site.dir.path(), &["print-ddl", "--dialect", "sqlite"]);
    assert!(ddl.wait_exit(LIMIT).unwrap().success());
    assert!(ddl.output().contains("token_holder"), "{}", ddl.output());

    let mut check = Proc::spawn(site.dir.path(), &["check-config"]);
    assert!(check.wait_exit(LIMIT).unwrap().success());
    let out = check.output();
    assert!(
        out.contains("backend = \"sqlite\"") && out.contains("renew_deadline = \"3s 333ms\""),
        "{out}"
    );

    // Secrets in backend tables, from the file and from the environment, are never printed.
    std::fs::write(
        site.path("secret.toml"),
        "[coordination.postgres]\nurl = \"postgres://app:hunter2@db/x\"\n\
         [source.sftp]\nhost = \"h\"\n[source.sftp.auth]\nmethod = \"password\"\n\
         password = \"pw-in-file\"\n",
    )
    .unwrap();
    let mut check = Proc::spawn_env(
        site.dir.path(),
        &["--config", "secret.toml", "check-config"],
        &[("FTPL_COORDINATION__POSTGRES__PASSWORD", "pw-in-env")],
    );
    assert!(
        check.wait_exit(LIMIT).unwrap().success(),
        "{}",
        check.output()
    );
    let out = check.output();
    for secret in ["hunter2", "pw-in-file", "pw-in-env"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(out.contains("postgres://app:***@db/x"), "{out}");
}

#[test]
fn a_name_collision_in_the_done_folder_gets_a_unique_name() {
    let site = Site::new();
    let config = site.config("a", "solo", &site.probe_handler(""));
    let proc = site.spawn(&config);
    site.drop_file("same.txt", b"first");
    assert!(
        wait_for(LIMIT, || site
            .path("inbox/.done/same.txt")
            .exists()
            .then_some(()))
        .is_some()
    );
    site.drop_file("same.txt", b"second version");
    let done = wait_for(LIMIT, || {
        let names = site.names_in("inbox/.done");
        (names.len() == 2).then_some(names)
    })
    .unwrap_or_else(|| panic!("{}", proc.output()));
    let other = done
        .iter()
        .find(|n| *n != "same.txt")
        .expect("a second name");
    assert!(done.contains(&"same.txt".to_string()), "{done:?}");
    assert!(
        other.starts_with("same.") && other.ends_with(".txt"),
        "{done:?}"
    );
    let first = std::fs::read(site.path("inbox/.done/same.txt")).unwrap();
    assert_eq!(first, b"first");
    let renamed = std::fs::read(site.path(&format!("inbox/.done/{other}"))).unwrap();
    assert_eq!(renamed, b"second version");
    assert_eq!(site.handled().len(), 2, "a new version is a new file");
}

#[test]
fn delete_post_processing_removes_the_file() {
    let site = Site::new();
    let config = site.config("a", "solo", &site.probe_handler(""));
    // From the environment, which overrides the file.
    let proc = Proc::spawn_env(
        site.dir.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[("FTPL_POST_PROCESSING", "delete")],
    );
    site.drop_file("gone.txt", b"x");
    let handled = wait_for(LIMIT, || {
        (site.handled().len() == 1 && !site.path("inbox/gone.txt").exists()).then_some(())
    });
    assert!(handled.is_some(), "{}", proc.output());
    assert!(!site.path("inbox/.done/gone.txt").exists());
}

#[test]
fn a_recursive_listing_never_picks_up_the_done_folder() {
    let site = Site::new();
    let config = site.config("a", "solo", &site.probe_handler(""));
    // The source is relative (`inbox`), the done folder absolute: both name one place.
    let done_dir = site.path("inbox/.done");
    let proc = Proc::spawn_env(
        site.dir.path(),
        &["--config", config.to_str().unwrap(), "run"],
        &[
            ("FTPL_SOURCE__RECURSIVE_DEPTH", "2"),
            ("FTPL_DONE_DIR", done_dir.to_str().unwrap()),
        ],
    );
    std::fs::create_dir_all(site.path("inbox/sub")).unwrap();
    site.drop_file("sub/deep.txt", b"d");
    assert!(
        wait_for(LIMIT, || done_dir.join("deep.txt").exists().then_some(())).is_some(),
        "{}",
        proc.output()
    );
    // One more full round: a file dropped now is handled, and nothing from .done came back.
    site.drop_file("later.txt", b"l");
    assert!(wait_for(LIMIT, || done_dir.join("later.txt").exists().then_some(())).is_some());
    let handled = site.handled();
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert_eq!(
        site.names_in("inbox/.done"),
        vec!["deep.txt".to_string(), "later.txt".to_string()]
    );
}

#[test]
fn log_file_with_the_member_in_its_name_rotates_daily() {
    let site = Site::new();
    let config = site.config(
        "a",
        "solo",
        "[log]\nfile = \"logs/ftpl-{member}.log\"\nrotation = \"daily\"\nmax_files = 3\n",
    );
    let mut proc = site.spawn(&config);
    // Today's file: `ftpl-solo.log.YYYY-MM-DD`, in the folder it made.
    let written = wait_for(LIMIT, || {
        let dir = std::fs::read_dir(site.path("logs")).ok()?;
        dir.filter_map(Result::ok)
            .find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("ftpl-solo.log.") && name.len() == "ftpl-solo.log.".len() + 10
            })
            .and_then(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                text.contains("became leader").then_some(text)
            })
    });
    proc.signal("TERM");
    let _ = proc.wait_exit(LIMIT);
    let text = written.expect("the log file has the member's lines");
    assert!(text.contains("ftp-listener started"), "{text}");
    assert!(
        !proc.output().contains("became leader"),
        "the lines go to the file, not to stderr"
    );
}
