//! `log.format = "json"` (issue 10, item 3): the binary, run as a child process, writes one
//! JSON object a line with stable field names (`member`, `group`, `term`, `path`), text by
//! default, refuses a bad format naming the key, and logs no secret in either format.

mod common;

use std::time::Duration;

use common::{Proc, Site};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);
const SECRET: &str = "s3cr3t-never-logged-7f1c";

/// The `[log]` table and a secret the logs must never show.
fn extra(format: Option<&str>) -> String {
    let log = format.map_or(String::new(), |f| format!("[log]\nformat = \"{f}\"\n"));
    format!("{log}[coordination.postgres]\npassword = \"{SECRET}\"\n")
}

/// Runs a member until it handled `x.csv`, then stops it with SIGTERM; its stderr lines.
fn run_until_handled(site: &Site, config: &std::path::Path) -> Vec<String> {
    let mut proc = site.spawn(config);
    assert!(
        proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    site.drop_file("x.csv", b"hello");
    assert!(
        proc.wait_line("file received", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    proc.signal("TERM");
    let status = proc.wait_exit(LIMIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}: {}", proc.output());
    // The last line, once the reader has it (the exit may come first).
    assert!(
        proc.wait_line("stopped", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    proc.output().lines().map(str::to_string).collect()
}

/// The first object whose `message` is `message`.
fn find<'a>(objects: &'a [Value], message: &str, all: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["message"] == message)
        .unwrap_or_else(|| panic!("no `{message}` line in:\n{all}"))
}

/// The `listener` of the `became leader` line: a non-empty string.
fn leader_listener(objects: &[Value], all: &str) -> String {
    let name = find(objects, "became leader", all)["listener"]
        .as_str()
        .unwrap_or_else(|| panic!("no `listener` on `became leader`:\n{all}"))
        .to_string();
    assert!(!name.is_empty(), "{all}");
    name
}

#[test]
fn json_lines_are_objects_with_stable_field_names() {
    let site = Site::new();
    let config = site.config("json", "member-j", &extra(Some("json")));
    let lines = run_until_handled(&site, &config);
    let all = lines.join("\n");
    assert!(lines.len() >= 5, "{all}");
    let objects: Vec<Value> = lines
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nin:\n{all}"));
            assert!(value.is_object(), "{line}");
            for key in ["timestamp", "level", "target", "message"] {
                assert!(value[key].is_string(), "`{key}` missing: {line}");
            }
            value
        })
        .collect();

    let started = find(&objects, "ftp-listener started", &all);
    assert_eq!(started["member"], "member-j", "{started}");
    assert_eq!(started["listeners"], "e2e", "{started}");
    assert_eq!(started["level"], "INFO", "{started}");

    // The listener's name (one listener here: named after the group unless `name` is set).
    let listener = leader_listener(&objects, &all);
    let leader = find(&objects, "became leader", &all);
    assert_eq!(leader["member"], "member-j", "{leader}");
    assert_eq!(leader["group"], "e2e", "{leader}");
    let term = leader["term"].as_u64().expect("term is a number");
    assert!(term >= 1, "{leader}");

    // The leader's span (member, group, term) flattened beside the event's own fields.
    let path = site.path("inbox/x.csv").display().to_string();
    for message in ["dispatching", "file received"] {
        let line = find(&objects, message, &all);
        assert_eq!(line["member"], "member-j", "{line}");
        assert_eq!(line["group"], "e2e", "{line}");
        assert_eq!(line["listener"].as_str(), Some(listener.as_str()), "{line}");
        assert_eq!(line["term"].as_u64(), Some(term), "{line}");
        assert_eq!(line["path"].as_str(), Some(path.as_str()), "{line}");
        assert_eq!(line["redelivery"], false, "{line}");
    }
    assert!(!all.contains(SECRET), "a secret reached the log:\n{all}");
}

#[test]
fn text_is_the_default_and_holds_no_secret() {
    let site = Site::new();
    let config = site.config("text", "member-t", &extra(None));
    let lines = run_until_handled(&site, &config);
    let all = lines.join("\n");
    let received = lines
        .iter()
        .find(|l| l.contains("file received"))
        .expect("the log handler's line");
    let path = site.path("inbox/x.csv").display().to_string();
    assert!(
        received.contains("member=member-t") && received.contains(&format!("path={path}")),
        "{received}"
    );
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "a JSON line in the default format: {line}"
        );
    }
    assert!(!all.contains(SECRET), "a secret reached the log:\n{all}");
}

#[test]
fn a_bad_format_is_refused_naming_the_key_and_the_environment_sets_it() {
    let site = Site::new();
    std::fs::write(site.path("bad.toml"), "[log]\nformat = \"xml\"\n").unwrap();
    let mut proc = Proc::spawn(site.dir.path(), &["--config", "bad.toml", "run"]);
    let status = proc.wait_exit(LIMIT).expect("exits");
    assert_eq!(status.code(), Some(1), "{}", proc.output());
    assert!(
        proc.wait_line("log.format", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    let out = proc.output();
    assert!(
        out.contains("`log.format`") && out.contains("xml") && out.contains("bad.toml"),
        "{out}"
    );

    let mut proc = Proc::spawn_env(
        site.dir.path(),
        &["check-config"],
        &[("FTPL_LOG__FORMAT", "json")],
    );
    let status = proc.wait_exit(LIMIT).expect("exits");
    assert!(status.success(), "{}", proc.output());
    assert!(
        proc.wait_line("format = \"json\"", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    assert!(
        proc.output().contains("[log]\nformat = \"json\""),
        "{}",
        proc.output()
    );
}
