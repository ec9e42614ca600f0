//! The example binary, run as a user runs it: files dropped into its inbox come out as
//! `.lines` reports written by its own handler, the files are moved to `.done`, the change
//! events are logged, and SIGTERM stops it cleanly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

#[test]
fn a_handler_of_its_own_composed_by_the_builder_handles_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let outbox = dir.path().join("out");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_custom-handler"))
        .args([&inbox, &outbox, &dir.path().join("coord.db")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for (name, lines) in [("a.txt", 1), ("b.txt", 3), ("c.txt", 5)] {
        std::fs::write(inbox.join(name), "line\n".repeat(lines)).unwrap();
    }
    let handled = |name: &str| outbox.join(format!("{name}.lines"));
    let all = wait_for(Duration::from_secs(30), || {
        ["a.txt", "b.txt", "c.txt"]
            .iter()
            .all(|n| handled(n).exists() && inbox.join(".done").join(n).exists())
    });
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(all, "every file handled and moved");
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let report = std::fs::read_to_string(handled("b.txt")).unwrap();
    assert!(report.starts_with("3 lines, attempt 1, term 1"), "{report}");
    let changes = std::fs::read_to_string(outbox.join("changes.log")).unwrap();
    let added: usize = changes
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .sum();
    assert_eq!(added, 3, "each file reported added once: {changes}");
    assert!(!Path::new(&inbox.join("a.txt")).exists());
}
