//! The demo's verdict: what the handler saw (one line per completed call) against what the
//! feeder dropped and what ended in the done folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One completed handler call, as the demo's command handler logs it:
/// `<file> <member> <term> <attempt> <redelivery> <size of the copy it got>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) file: String,
    pub(crate) member: String,
    pub(crate) term: u64,
    pub(crate) attempt: u32,
    pub(crate) redelivery: bool,
    pub(crate) size: u64,
}

/// The calls of `text`, in order, and the number of lines that did not parse.
pub(crate) fn parse_calls(text: &str) -> (Vec<Call>, usize) {
    let mut calls = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let call = match parts.as_slice() {
            [file, member, term, attempt, redelivery, size] => (|| {
                Some(Call {
                    file: (*file).to_string(),
                    member: (*member).to_string(),
                    term: term.parse().ok()?,
                    attempt: attempt.parse().ok()?,
                    redelivery: match *redelivery {
                        "true" => true,
                        "false" => false,
                        _ => return None,
                    },
                    size: size.parse().ok()?,
                })
            })(),
            _ => None,
        };
        match call {
            Some(call) => calls.push(call),
            None => bad += 1,
        }
    }
    (calls, bad)
}

/// The original name of a done-folder entry: `demo-0007.csv`, or with the collision suffix
/// the listener adds (`demo-0007.1732700000000-1.csv`).
fn original_name(entry: &str) -> String {
    match (entry.split_once('.'), entry.rsplit_once('.')) {
        (Some((stem, _)), Some((_, ext))) => format!("{stem}.{ext}"),
        _ => entry.to_string(),
    }
}

/// The outcome.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Files the feeder dropped.
    pub(crate) files: usize,
    /// Files whose full copy the handler got at least once.
    pub(crate) handled: usize,
    /// Handler calls in all.
    pub(crate) calls: usize,
    /// Calls flagged `redelivery = true` (an earlier attempt may have had its effect).
    pub(crate) redeliveries: usize,
    /// Dropped files never handled, or not in the done folder.
    pub(crate) lost: Vec<String>,
    /// Files handed to the handler again without the redelivery flag, or moved to the done
    /// folder more than once.
    pub(crate) twice: Vec<String>,
    /// Calls whose copy had another size than the file dropped (a partial file dispatched).
    pub(crate) short: Vec<String>,
    /// Entries of the done folder, or handler calls, for files nobody dropped.
    pub(crate) unknown: Vec<String>,
}

impl Verdict {
    /// True when nothing was lost, handled twice, cut short or made up.
    pub(crate) fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.twice.is_empty()
            && self.short.is_empty()
            && self.unknown.is_empty()
    }
}

/// Judges the run: `dropped` maps each file to its size, `calls` are the handler's lines, `done`
/// the entries of the done folder.
pub(crate) fn judge(dropped: &BTreeMap<String, u64>, calls: &[Call], done: &[String]) -> Verdict {
    let mut verdict = Verdict {
        files: dropped.len(),
        calls: calls.len(),
        redeliveries: calls.iter().filter(|c| c.redelivery).count(),
        ..Verdict::default()
    };
    let mut by_file: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in calls {
        by_file.entry(call.file.as_str()).or_default().push(call);
    }
    let mut done_count: BTreeMap<String, usize> = BTreeMap::new();
    for entry in done {
        *done_count.entry(original_name(entry)).or_default() += 1;
    }
    for (name, size) in dropped {
        let file_calls = by_file.get(name.as_str()).map_or(&[][..], Vec::as_slice);
        for call in file_calls.iter().filter(|c| c.size != *size) {
            verdict.short.push(format!(
                "{name}: {} of {size} bytes (member {}, term {})",
                call.size, call.member, call.term
            ));
        }
        let handled = file_calls.iter().any(|c| c.size == *size);
        if handled {
            verdict.handled += 1;
        }
        let moved = done_count.get(name).copied().unwrap_or(0);
        if !handled || moved == 0 {
            verdict.lost.push(format!(
                "{name}: {} handler calls, {moved} in the done folder",
                file_calls.len()
            ));
        }
        let unflagged_again = file_calls.iter().skip(1).any(|c| !c.redelivery);
        if moved > 1 || unflagged_again {
            verdict.twice.push(format!(
                "{name}: {} handler calls ({} flagged redelivery), {moved} in the done folder",
                file_calls.len(),
                file_calls.iter().filter(|c| c.redelivery).count()
            ));
        }
    }
    for name in done_count.keys().filter(|n| !dropped.contains_key(*n)) {
        verdict.unknown.push(format!("{name} in the done folder"));
    }
    for name in by_file.keys().filter(|n| !dropped.contains_key(**n)) {
        verdict.unknown.push(format!("{name} handled"));
    }
    verdict
}

/// The closing line: `verdict: PASS files 60, lost 0, handled twice 0, ...`.
pub(crate) fn line(verdict: &Verdict, failovers: &[(&str, Option<Duration>)]) -> String {
    let mut out = format!(
        "verdict: {} files {}, lost {}, handled twice {}, handler calls {}, redeliveries {}",
        if verdict.passed() { "PASS" } else { "FAIL" },
        verdict.files,
        verdict.lost.len(),
        verdict.twice.len(),
        verdict.calls,
        verdict.redeliveries,
    );
    if !verdict.short.is_empty() {
        let _ = write!(out, ", short copies {}", verdict.short.len());
    }
    if !verdict.unknown.is_empty() {
        let _ = write!(out, ", unknown files {}", verdict.unknown.len());
    }
    out.push_str(", failover");
    for (i, (event, took)) in failovers.iter().enumerate() {
        let took = took.map_or("none".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        let _ = write!(out, "{} {event} {took}", if i == 0 { "" } else { "," });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(file: &str, attempt: u32, redelivery: bool, size: u64) -> Call {
        Call {
            file: file.to_string(),
            member: "node-1".into(),
            term: 1,
            attempt,
            redelivery,
            size,
        }
    }

    fn dropped(names: &[&str]) -> BTreeMap<String, u64> {
        names.iter().map(|n| (n.to_string(), 10)).collect()
    }

    #[test]
    fn calls_parse_and_bad_lines_are_counted() {
        let (calls, bad) =
            parse_calls("demo-0001.csv node-2 3 1 false 10\ngarbage\ndemo-0002.csv n 1 2 yes 1\n");
        assert_eq!(
            calls,
            vec![Call {
                member: "node-2".into(),
                term: 3,
                ..call("demo-0001.csv", 1, false, 10)
            }]
        );
        assert_eq!(bad, 2);
    }

    #[test]
    fn a_clean_run_passes_and_a_flagged_redelivery_is_not_a_duplicate() {
        let files = dropped(&["demo-0001.csv", "demo-0002.csv"]);
        let calls = [
            call("demo-0001.csv", 1, false, 10),
            call("demo-0002.csv", 1, false, 10),
            call("demo-0002.csv", 2, true, 10),
        ];
        let done = ["demo-0001.csv".to_string(), "demo-0002.csv".to_string()];
        let v = judge(&files, &calls, &done);
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.handled, v.calls, v.redeliveries), (2, 3, 1));
        let text = line(
            &v,
            &[
                ("kill -9", Some(Duration::from_millis(1234))),
                ("SIGSTOP", None),
            ],
        );
        assert_eq!(
            text,
            "verdict: PASS files 2, lost 0, handled twice 0, handler calls 3, redeliveries 1, \
             failover kill -9 1.23 s, SIGSTOP none"
        );
    }

    #[test]
    fn lost_twice_short_and_unknown_files_fail() {
        let files = dropped(&[
            "demo-0001.csv",
            "demo-0002.csv",
            "demo-0003.csv",
            "demo-0004.csv",
        ]);
        let calls = [
            call("demo-0001.csv", 1, false, 10),
            call("demo-0001.csv", 2, false, 10), // again, unflagged
            call("demo-0002.csv", 1, false, 10), // handled, never moved
            call("demo-0004.csv", 1, false, 3),  // a partial copy only
            call("other.csv", 1, false, 10),
        ];
        let done = [
            "demo-0001.csv".to_string(),
            "demo-0003.1732700000000-1.csv".to_string(), // moved, never handled
            "demo-0003.csv".to_string(),
            "demo-0004.csv".to_string(),
        ];
        let v = judge(&files, &calls, &done);
        assert!(!v.passed());
        assert_eq!(v.lost.len(), 3, "{v:?}"); // 0002 not moved, 0003 not handled, 0004 short
        assert_eq!(v.twice.len(), 2, "{v:?}"); // 0001 unflagged, 0003 moved twice
        assert_eq!(v.short.len(), 1, "{v:?}");
        assert_eq!(v.unknown, vec!["other.csv handled".to_string()]);
        assert!(line(&v, &[]).starts_with("verdict: FAIL files 4, lost 3, handled twice 2"));
    }
}
