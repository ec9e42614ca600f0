//! Applying a version of the cluster's configuration on one member, listener by listener
//! (issue 9: never half-applied). Two decisions live here and only here: what happens when a
//! listener's task ends on its own ([`after_task_end`]: back to its previous definition, or
//! not), and what the member says of itself ([`ApplyFailures::report`], the row of
//! `cluster_member_status`). The `listener` crate performs them; it reads the clock and hands
//! the durations in.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::MemberReport;

/// How a listener's task ended on its own (not because it was told to stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    /// Without an error.
    Clean,
    /// With an error: the store refused, the source or a setting failed, the election
    /// refused to run.
    Failed,
}

/// What to do when a listener's task ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEnd {
    /// Its new definition failed on probation: start the previous definition again (a new
    /// start of that listener) and record the failure against the new version.
    RollBack,
    /// Its new definition failed on probation and there is none to go back to (a listener
    /// this version added, or one already rolled back): it stays stopped; record the failure.
    Failed,
    /// Not an apply failure (it had settled, or ended cleanly): it stays stopped, and the
    /// error was logged where it ended.
    Stopped,
}

/// The rule for a listener's task that ended on its own. `up_for` is how long it had been
/// running (store connected, source open, election started) when it ended, `None` when it
/// never got that far; a definition is on probation until it has run for `settle`. A
/// listener still waiting for a database that is down has not ended, so it is never judged
/// here: only an error ends a task. `previous` says whether the listener's previous
/// definition is kept to go back to.
pub fn after_task_end(
    end: TaskEnd,
    up_for: Option<Duration>,
    settle: Duration,
    previous: bool,
) -> AfterEnd {
    let on_probation = up_for.is_none_or(|up| up < settle);
    match (end, on_probation, previous) {
        (TaskEnd::Failed, true, true) => AfterEnd::RollBack,
        (TaskEnd::Failed, true, false) => AfterEnd::Failed,
        _ => AfterEnd::Stopped,
    }
}

/// The longest `error` a report carries (the causes are cut at a character boundary).
const MAX_ERROR: usize = 2000;

/// The listeners of this member that do not run the definition of the version they should:
/// for each, the version that could not be applied and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyFailures {
    by_listener: BTreeMap<String, (u64, String)>,
    /// A version whose document does not load here at all (every listener kept).
    document: Option<(u64, String)>,
}

impl ApplyFailures {
    /// `listener` could not take its definition of `version` (it stays on, or went back to,
    /// its previous one, or is stopped when it had none) because of `cause`.
    pub fn record(&mut self, listener: &str, version: u64, cause: &str) {
        self.by_listener
            .insert(listener.to_owned(), (version, cause.to_owned()));
    }

    /// `listener` now runs the definition it should, or is no longer in the configuration.
    pub fn clear(&mut self, listener: &str) {
        self.by_listener.remove(listener);
    }

    /// The document of `version` does not load on this member at all: every listener keeps
    /// what it runs.
    pub fn record_document(&mut self, version: u64, cause: &str) {
        self.document = Some((version, cause.to_owned()));
    }

    /// A newer document loads here.
    pub fn clear_document(&mut self) {
        self.document = None;
    }

    /// The version whose document does not load here, if any.
    pub fn document(&self) -> Option<u64> {
        self.document.as_ref().map(|(v, _)| *v)
    }

    /// Whether every listener runs the definition it should.
    pub fn is_empty(&self) -> bool {
        self.by_listener.is_empty() && self.document.is_none()
    }

    /// The newest version that could not be applied fully.
    pub fn newest(&self) -> Option<u64> {
        self.by_listener
            .values()
            .map(|(v, _)| *v)
            .chain(self.document())
            .max()
    }

    /// The row `member` writes: `applied` is the newest version it took, `running` what its
    /// listeners run (name and version of the definition), in any order.
    pub fn report<'a>(
        &self,
        member: &str,
        applied: Option<u64>,
        running: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> MemberReport {
        let mut running: Vec<(&str, u64)> = running.into_iter().collect();
        running.sort_unstable();
        let listeners = running
            .iter()
            .map(|(name, version)| format!("{name}@{version}"))
            .collect::<Vec<_>>()
            .join(",");
        let error = (!self.is_empty()).then(|| {
            let document = self
                .document
                .iter()
                .map(|(version, cause)| format!("version {version}: {cause}"));
            let text = document
                .chain(self.by_listener.iter().map(|(name, (version, cause))| {
                    format!("listener `{name}` (version {version}): {cause}")
                }))
                .collect::<Vec<_>>()
                .join("; ");
            cut(text, MAX_ERROR)
        });
        MemberReport {
            member: member.to_owned(),
            applied_version: applied,
            failed_version: self.newest(),
            error,
            listeners,
        }
    }
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(10);

    #[test]
    fn a_new_definition_that_fails_on_probation_goes_back_to_the_previous_one() {
        let failed = |up, previous| after_task_end(TaskEnd::Failed, up, SETTLE, previous);
        // Failed setting up (store refused, source, settings): never ran.
        assert_eq!(failed(None, true), AfterEnd::RollBack);
        // Failed shortly after start (the election refused).
        assert_eq!(
            failed(Some(Duration::from_secs(1)), true),
            AfterEnd::RollBack
        );
        // Nothing to go back to: stopped, and counted as a failure of the version.
        assert_eq!(failed(None, false), AfterEnd::Failed);
        // Settled: an error later is not an apply failure.
        assert_eq!(failed(Some(SETTLE), true), AfterEnd::Stopped);
        assert_eq!(failed(Some(SETTLE * 3), false), AfterEnd::Stopped);
        // A clean end is never rolled back.
        assert_eq!(
            after_task_end(TaskEnd::Clean, None, SETTLE, true),
            AfterEnd::Stopped
        );
    }

    #[test]
    fn the_report_names_every_listener_left_behind_and_clears_when_fixed() {
        let mut failures = ApplyFailures::default();
        let ok = failures.report("b", Some(1), [("keep", 1), ("change", 1)]);
        assert_eq!(ok.listeners, "change@1,keep@1");
        assert_eq!((ok.failed_version, ok.error), (None, None));

        failures.record("change", 2, "state/every-change.db: is a directory");
        failures.record("ftp", 3, "password_file `s`: not found");
        let bad = failures.report("b", Some(3), [("keep", 3), ("change", 1)]);
        assert_eq!(bad.applied_version, Some(3));
        assert_eq!(bad.failed_version, Some(3));
        let error = bad.error.unwrap();
        assert!(
            error.contains("listener `change` (version 2): state/every-change.db"),
            "{error}"
        );
        assert!(error.contains("listener `ftp` (version 3)"), "{error}");

        failures.clear("change");
        failures.clear("ftp");
        assert!(failures.is_empty());
        failures.record_document(4, "cluster configuration: not TOML");
        let whole = failures.report("b", Some(3), [("keep", 3)]);
        assert_eq!(whole.failed_version, Some(4));
        assert_eq!(
            whole.error.as_deref(),
            Some("version 4: cluster configuration: not TOML")
        );
        failures.clear_document();
        let fixed = failures.report("b", Some(4), [("keep", 4)]);
        assert_eq!((fixed.failed_version, fixed.error), (None, None));
    }

    #[test]
    fn a_long_error_is_cut_at_a_character_boundary() {
        let mut failures = ApplyFailures::default();
        failures.record("x", 1, &"é".repeat(3000));
        let error = failures.report("m", Some(1), []).error.unwrap();
        assert!(error.len() <= MAX_ERROR + '…'.len_utf8(), "{}", error.len());
        assert!(error.ends_with('…'));
    }
}
