//! The ledger's history and `ledger list --since`, on SQLite, PostgreSQL and MariaDB (the
//! servers `scripts/setup/` starts on loopback; each test in a schema or database of its own):
//! a file whose handler fails once and then succeeds shows claimed (1), failed, claimed (2),
//! handled, done in `ledger show`, and `--since` keeps only rows written within the duration.

mod common;

use std::time::Duration;

use common::{Proc, Site, mariadb_database, unique, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn cli(site: &Site, args: &[&str]) -> (bool, String) {
    let mut p = Proc::spawn(site.dir.path(), args);
    let ok = p.wait_exit(LIMIT).expect("exits").success();
    (ok, p.output())
}

/// Runs one member on `database` (the `[coordination]` keys and the backend's table), with a
/// handler that fails each file's first attempt, and checks the history of one file.
fn fails_once_then_succeeds(database: &str) {
    let site = Site::new();
    let marker = site.path("failed-once");
    let handler = site.probe_handler(&format!(
        "[ -e \"{m}-$(basename \"$FTPL_PATH\")\" ] || {{ touch \"{m}-$(basename \"$FTPL_PATH\")\"; echo boom >&2; exit 3; }}",
        m = marker.display()
    ));
    let (backend, table) = database.split_once('\n').unwrap_or((database, ""));
    let extra = format!("[retry]\ninitial_backoff = \"100ms\"\n{handler}\n{table}");
    let config = site.config_full("m", "node-1", &unique("hist"), backend, &extra);
    let (ok, out) = cli(&site, &["--config", "m.toml", "migrate"]);
    assert!(ok, "{out}");
    let mut member = site.spawn(&config);
    assert!(
        member.wait_line("became leader", LIMIT).is_some(),
        "{}",
        member.output()
    );
    site.drop_file("x.csv", b"data");
    let done = wait_for(LIMIT, || {
        site.path("inbox/.done/x.csv").exists().then_some(())
    });
    assert!(done.is_some(), "{}", member.output());
    // The done record follows the move.
    let shown = wait_for(LIMIT, || {
        let (ok, out) = cli(
            &site,
            &["--config", "m.toml", "ledger", "show", "x.csv", "--json"],
        );
        (ok && out.contains("\"state\":\"done\"")).then_some(out)
    })
    .unwrap_or_else(|| panic!("{}", member.output()));
    let row: serde_json::Value = serde_json::from_str(
        shown
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("one JSON line"),
    )
    .unwrap();
    let history = row["history"].as_array().expect("a history");
    let steps: Vec<(String, u64, u64)> = history
        .iter()
        .map(|e| {
            (
                e["state"].as_str().unwrap().to_string(),
                e["attempts"].as_u64().unwrap(),
                e["term"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = [
        ("claimed", 1),
        ("failed", 1),
        ("claimed", 2),
        ("handled", 2),
        ("done", 2),
    ]
    .iter()
    .map(|(s, n)| ((*s).to_string(), *n, 1))
    .collect();
    assert_eq!(steps, expected, "{shown}");
    let failed = history[1]["detail"].as_str().unwrap_or_default();
    assert!(failed.contains('3'), "the error is kept: {shown}");
    assert!(history[0]["detail"].is_null(), "{shown}");
    let times: Vec<&str> = history.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first: {shown}");

    // The text form: one line per event under the version.
    let (ok, text) = cli(&site, &["--config", "m.toml", "ledger", "show", "x.csv"]);
    assert!(ok, "{text}");
    let events: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("    ") && l.contains("attempt"))
        .collect();
    assert_eq!(events.len(), 5, "{text}");
    assert!(
        events[1].contains("failed") && events[1].contains("attempt 1"),
        "{text}"
    );

    // --since: by the database's clock; a second file written later is the only recent one.
    std::thread::sleep(Duration::from_millis(1500));
    site.drop_file("y.csv", b"more");
    let y_done = wait_for(LIMIT, || {
        site.path("inbox/.done/y.csv").exists().then_some(())
    });
    assert!(y_done.is_some(), "{}", member.output());
    let recent = wait_for(LIMIT, || {
        let (ok, out) = cli(
            &site,
            &[
                "--config", "m.toml", "ledger", "list", "--since", "1s", "--state", "done",
                "--json",
            ],
        );
        (ok && out.contains("y.csv")).then_some(out)
    })
    .unwrap_or_else(|| panic!("{}", member.output()));
    assert!(
        !recent.contains("x.csv"),
        "x.csv was written earlier: {recent}"
    );
    assert!(recent.contains("\"updated_at\""), "{recent}");
    let (ok, all) = cli(
        &site,
        &[
            "--config", "m.toml", "ledger", "list", "--since", "1h", "--path", "*.csv",
        ],
    );
    assert!(
        ok && all.contains("x.csv") && all.contains("y.csv"),
        "{all}"
    );
    let (ok, none) = cli(
        &site,
        &[
            "--config", "m.toml", "ledger", "list", "--since", "1h", "--state", "error",
        ],
    );
    assert!(ok && none.contains("(no rows)"), "{none}");
    let (ok, refused) = cli(
        &site,
        &["--config", "m.toml", "ledger", "list", "--since", "5"],
    );
    assert!(!ok && refused.contains("--since"), "{refused}");
    member.signal("TERM");
    let _ = member.wait_exit(LIMIT);
}

#[test]
fn sqlite_history_of_a_file_that_failed_once() {
    fails_once_then_succeeds("");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_history_of_a_file_that_failed_once() {
    fails_once_then_succeeds(&format!(
        "backend = \"postgres\"\n[coordination.postgres]\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\nschema = \"{}\"\n",
        unique("ftpl_hist")
    ));
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_history_of_a_file_that_failed_once() {
    let db = mariadb_database("ftpl_hist");
    fails_once_then_succeeds(&format!(
        "backend = \"mysql\"\n[coordination.mysql]\nurl = \"mysql://root@127.0.0.1:3306/{db}\"\n"
    ));
}
