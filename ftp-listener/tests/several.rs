//! Several listeners in one `ftp-listener` process (`[[listeners]]`): each its own source,
//! group and post-processing, one HTTP port with per-listener metrics, and one listener that
//! cannot start (its source is not a directory) leaving the others running.

mod common;

use std::time::Duration;

use common::{Proc, Site, http_get, wait_for};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn listeners_in_one_process_work_apart_and_a_broken_one_stops_alone() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("orders")).unwrap();
    // A file where the third listener's directory should be: it cannot be created.
    std::fs::write(site.path("not-a-dir"), b"x").unwrap();
    let config = site.path("multi.toml");
    std::fs::write(
        &config,
        r#"
member_id = "solo"
poll_interval = "100ms"
http.bind = "127.0.0.1:0"
[coordination]
heartbeat_interval = "100ms"
liveness_timeout = "500ms"
[coordination.sqlite]
path = "ftp-listener.db"

[[listeners]]
name = "invoices"
source.path = "inbox"
filter = "*.csv"

[[listeners]]
name = "orders"
source.path = "orders"
post_processing = "delete"

[[listeners]]
name = "broken"
source.path = "not-a-dir/inbox"
"#,
    )
    .unwrap();
    let proc = Proc::spawn(site.dir.path(), &["--config", "multi.toml", "run"]);
    assert!(
        wait_for(LIMIT, || (proc.count_lines("became leader") >= 2)
            .then_some(()))
        .is_some(),
        "{}",
        proc.output()
    );
    let addr = proc.http_addr();
    site.drop_file("a.csv", b"1");
    site.drop_file("skip.txt", b"1");
    std::fs::write(site.path("orders/o1"), b"1").unwrap();
    let moved = wait_for(LIMIT, || {
        (site.path("inbox/.done/a.csv").exists() && !site.path("orders/o1").exists()).then_some(())
    });
    let out = proc.output();
    assert!(moved.is_some(), "{out}");
    assert!(
        site.path("inbox/skip.txt").exists(),
        "the filter is per listener"
    );
    assert!(
        !site.path("orders/.done").exists(),
        "orders deletes, invoices moves"
    );
    // The broken listener stopped, named, and the process runs on.
    assert!(
        out.lines()
            .any(|l| l.contains("listener stopped") && l.contains("broken")),
        "{out}"
    );
    // A file counts as done once its done record is written, which may follow its move by
    // up to the group commit's wait: both counters are waited for.
    let metrics = wait_for(LIMIT, || {
        let (code, text) = http_get(&addr, "/metrics");
        (code == 200
            && text.contains("ftpl_files_done_total{listener=\"orders\"} 1")
            && text.contains("ftpl_files_done_total{listener=\"invoices\"} 1"))
        .then_some(text)
    })
    .expect("per-listener counters");
    assert!(
        metrics.contains("ftpl_role{listener=\"broken\"} 0"),
        "{metrics}"
    );
    assert_eq!(
        metrics
            .matches("# TYPE ftpl_files_done_total counter")
            .count(),
        1,
        "one family, three samples"
    );
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "{ready}");
    assert!(ready.contains("invoices: ready"), "{ready}");
    assert!(ready.contains("broken: not ready"), "{ready}");

    // One store for the two listeners on one database file, two groups in it.
    let mut status = Proc::spawn(site.dir.path(), &["--config", "multi.toml", "status"]);
    assert!(
        status.wait_exit(LIMIT).expect("exits").success(),
        "{}",
        status.output()
    );
    let table = status.output();
    assert!(table.contains("listener invoices"), "{table}");
    assert!(table.contains("group invoices  term 1"), "{table}");
    assert!(table.contains("group orders  term 1"), "{table}");

    // What happened to a.csv: one command, read-only, safe beside the running leader.
    let mut show = Proc::spawn(
        site.dir.path(),
        &["--config", "multi.toml", "ledger", "show", "a.csv"],
    );
    assert!(
        show.wait_exit(LIMIT).expect("exits").success(),
        "{}",
        show.output()
    );
    let shown = show.output();
    let row = shown
        .lines()
        .find(|l| l.starts_with("invoices ") && l.ends_with("a.csv"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(row.contains(" done "), "{row}");
    let mut list = Proc::spawn(
        site.dir.path(),
        &[
            "--config",
            "multi.toml",
            "ledger",
            "list",
            "--listener",
            "orders",
            "--json",
        ],
    );
    assert!(
        list.wait_exit(LIMIT).expect("exits").success(),
        "{}",
        list.output()
    );
    let rows: Vec<String> = list
        .output()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_string)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("\"listener\":\"orders\"") && rows[0].contains("\"state\":\"done\""),
        "{rows:?}"
    );
    let mut bad = Proc::spawn(
        site.dir.path(),
        &[
            "--config",
            "multi.toml",
            "ledger",
            "list",
            "--state",
            "finished",
        ],
    );
    assert!(!bad.wait_exit(LIMIT).expect("exits").success());
    assert!(
        bad.output().contains("--state `finished`"),
        "{}",
        bad.output()
    );
    let mut json = Proc::spawn(
        site.dir.path(),
        &["--config", "multi.toml", "status", "--json"],
    );
    assert!(
        json.wait_exit(LIMIT).expect("exits").success(),
        "{}",
        json.output()
    );
    let text = json.output();
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("\"name\":\"invoices\"") && line.contains("\"role\":\"leader\""),
        "{line}"
    );

    proc.signal("TERM");
    let mut proc = proc;
    let exit = proc.wait_exit(LIMIT).expect("a clean stop");
    assert!(exit.success(), "{}", proc.output());
}

#[test]
fn a_file_in_error_is_sent_through_again_with_one_command() {
    let site = Site::new();
    std::fs::write(site.path("fail-flag"), b"").unwrap();
    let config = site.config(
        "a",
        "solo",
        r#"
[retry]
max_attempts = 1
[handler]
kind = "command"
command = ["sh", "-c", "test ! -e fail-flag"]
"#,
    );
    let proc = site.spawn(&config);
    site.drop_file("x.csv", b"1,2");
    let parked = wait_for(LIMIT, || {
        site.path("inbox/.error/x.csv").exists().then_some(())
    });
    assert!(parked.is_some(), "{}", proc.output());
    let mut show = Proc::spawn(
        site.dir.path(),
        &["--config", "a.toml", "ledger", "show", "x.csv"],
    );
    assert!(show.wait_exit(LIMIT).expect("exits").success());
    assert!(show.output().contains(" error "), "{}", show.output());

    // The partner's problem is fixed; one command sends the file through again.
    std::fs::remove_file(site.path("fail-flag")).unwrap();
    let mut retry = Proc::spawn(
        site.dir.path(),
        &["--config", "a.toml", "ledger", "retry", "x.csv"],
    );
    let ok = retry.wait_exit(LIMIT).expect("exits").success();
    let said = retry.output();
    assert!(ok, "{said}\n{}", proc.output());
    assert!(said.contains("asked the leader to retry"), "{said}");
    assert!(said.contains("moved") && said.contains("back to"), "{said}");
    let done = wait_for(LIMIT, || {
        site.path("inbox/.done/x.csv").exists().then_some(())
    });
    assert!(done.is_some(), "{said}\n{}", proc.output());
    assert!(!site.path("inbox/.error/x.csv").exists());
    // The done record follows the move: wait for it.
    let shown = wait_for(LIMIT, || {
        let mut show = Proc::spawn(
            site.dir.path(),
            &["--config", "a.toml", "ledger", "show", "x.csv"],
        );
        let ok = show.wait_exit(LIMIT).expect("exits").success();
        (ok && show.output().contains(" done ")).then_some(())
    });
    assert!(shown.is_some(), "{}", proc.output());

    // Nothing matches: a clear refusal.
    let mut none = Proc::spawn(
        site.dir.path(),
        &["--config", "a.toml", "ledger", "forget", "nope.csv"],
    );
    assert!(!none.wait_exit(LIMIT).expect("exits").success());
    assert!(
        none.output().contains("no ledger row matches"),
        "{}",
        none.output()
    );
}
