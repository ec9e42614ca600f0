//! The processed-file ledger and its rules (DESIGN §5).
//!
//! The store persists [`LedgerRecord`]s; [`Ledger`] is the leader's in-memory mirror of its
//! group's records, loaded once when it becomes leader, and the rule book that decides, listing
//! after listing, which file versions to claim and dispatch, when a file is stable, when to
//! retry and when to give up. It reads no clock: `now` is a parameter.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ids::Term;
use crate::store::ClaimOutcome;

/// What [`Ledger::plan`] found in a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planned {
    /// The versions to claim now, in path order.
    pub ready: Vec<FileVersion>,
    /// Listed versions the mirror did not hold: look their rows up in the store.
    pub unknown: Vec<FileVersion>,
    /// Versions dropped from the mirror (settled or never claimed, and no longer listed).
    pub evicted: usize,
    /// Of those, the done ones (their file left the directory).
    pub left_done: Vec<FileVersion>,
}

/// One version of one remote file: `(path, size, mtime)`. A file replaced by a new version
/// (other size or mtime) is a new version and is processed again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileVersion {
    /// Full remote path, as listed.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in milliseconds since the Unix epoch, as the server reports it (0
    /// when the server reports none).
    pub mtime_ms: i64,
}

/// Where a version stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LedgerState {
    /// Dispatched under `term`; no outcome recorded yet. Found at takeover, it is redelivered.
    Claimed,
    /// The handler succeeded; post-processing (move, delete) is pending. Never dispatched again.
    Handled,
    /// Handled and post-processed. Never dispatched again.
    Done,
    /// The handler failed; it will be retried after a backoff while attempts remain.
    Failed,
    /// The retry budget is spent; the file went (or goes) to the error folder.
    Error,
}

impl LedgerState {
    /// The word stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Claimed => "claimed",
            LedgerState::Handled => "handled",
            LedgerState::Done => "done",
            LedgerState::Failed => "failed",
            LedgerState::Error => "error",
        }
    }

    /// Parses the word stored in the `state` column.
    pub fn parse(value: &str) -> Option<LedgerState> {
        Some(match value {
            "claimed" => LedgerState::Claimed,
            "handled" => LedgerState::Handled,
            "done" => LedgerState::Done,
            "failed" => LedgerState::Failed,
            "error" => LedgerState::Error,
            _ => return None,
        })
    }

    /// True when the handler must never run again for this version.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            LedgerState::Handled | LedgerState::Done | LedgerState::Error
        )
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The version.
    pub version: FileVersion,
    /// Where it stands.
    pub state: LedgerState,
    /// The term of the last write.
    pub term: Term,
    /// How many times it was claimed for dispatch.
    pub attempts: u32,
    /// The last error, for failed and error rows.
    pub last_error: Option<String>,
    /// What the handler said about its success (the `forward` handler: which destination got
    /// the file), kept through the done record.
    #[serde(default)]
    pub detail: Option<String>,
}

/// A write to the ledger, applied fenced by [`crate::CoordinationStore::record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerUpdate {
    /// Set the state (and error) of a version, keeping its attempt count.
    Set {
        /// The version.
        version: FileVersion,
        /// The new state.
        state: LedgerState,
        /// The error to keep, for failed and error states.
        error: Option<String>,
        /// What the handler said about its success, written to the row's `detail`; `None`
        /// keeps what the row has (a done record keeps the handled record's detail).
        #[serde(default)]
        detail: Option<String>,
    },
    /// Delete the row (pruning after the retention period).
    Forget(FileVersion),
}

impl LedgerUpdate {
    /// The version the update is about.
    pub fn version(&self) -> &FileVersion {
        match self {
            LedgerUpdate::Set { version, .. } | LedgerUpdate::Forget(version) => version,
        }
    }
}

/// When a listed file counts as finished (not still being written). All enabled rules must
/// hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stability {
    /// The same size and mtime in two consecutive listings.
    pub unchanged_across_listings: bool,
    /// Seen unchanged for at least this long (by the leader's monotonic clock, so the server's
    /// clock is never compared with ours). Zero disables.
    pub min_age: Duration,
    /// A marker file `<name><suffix>` next to the file must exist (for example `.done`). Files
    /// that end with the suffix are markers and are never dispatched themselves.
    pub done_marker_suffix: Option<String>,
}

impl Default for Stability {
    fn default() -> Self {
        Stability {
            unchanged_across_listings: true,
            min_age: Duration::ZERO,
            done_marker_suffix: None,
        }
    }
}

/// Retry with exponential backoff up to a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last failure the version goes to the
    /// error state.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (from 1): doubling from the initial
    /// backoff, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// The ledger rules a leader applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerPolicy {
    /// When a file is finished.
    pub stability: Stability,
    /// Retries and the budget.
    pub retry: RetryPolicy,
    /// How long settled rows of files that left the directory are kept (zero: forever).
    pub retention: Duration,
}

/// A listed regular file, as the ledger rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// The version listed.
    pub version: FileVersion,
    /// The file name (last path segment), for the done-marker rule.
    pub name: String,
}

/// A version to hand to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// The version.
    pub version: FileVersion,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// An earlier attempt of this version was dispatched (it never finished, or it failed):
    /// the handler may have seen the file before, and any side effect of that attempt may
    /// have happened. True for every attempt after the first.
    pub redelivery: bool,
}

/// What the handler (or post-processing) reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded.
    Handled,
    /// The handler succeeded and said something about it (where the file went), kept in
    /// the ledger row's `detail`.
    HandledWith(String),
    /// The handler failed with this error.
    Failed(String),
}

/// What the leader must do after a handler failure was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retry no earlier than this instant.
    RetryAt(Instant),
    /// The budget is spent: move the file to the error folder.
    GiveUp,
}

#[derive(Debug, Clone)]
struct Tracked {
    state: Option<LedgerState>,
    attempts: u32,
    /// Local instant the version was first listed (stability clock).
    first_seen: Option<Instant>,
    /// Number of consecutive listings that showed this version.
    listings: u32,
    /// Failed versions wait until this instant.
    retry_at: Option<Instant>,
    /// Last local instant the version was listed, or the load instant; for retention.
    last_seen: Instant,
    /// A claim is in flight or the handler runs: never plan it twice.
    in_flight: bool,
    /// Listed, and not known to the mirror when it was: its row (if any) is being looked up
    /// in the store, and it is not planned until the answer is in.
    looking_up: bool,
}

impl Tracked {
    fn new(state: Option<LedgerState>, attempts: u32, now: Instant) -> Tracked {
        Tracked {
            state,
            attempts,
            first_seen: None,
            listings: 0,
            retry_at: None,
            last_seen: now,
            in_flight: false,
            looking_up: false,
        }
    }

    /// Rows the mirror keeps whether listed or not: the work left (a claim to redeliver, a
    /// retry, a post-processing), and what runs.
    fn has_work(&self) -> bool {
        self.in_flight
            || matches!(
                self.state,
                Some(LedgerState::Claimed | LedgerState::Failed | LedgerState::Handled)
            )
    }
}

/// The leader's mirror of its group's ledger, and the rules (DESIGN §5).
///
/// Driving order, per poll: [`Ledger::plan`] with the listing gives the versions to claim;
/// claim them in the store (one batch, fenced); [`Ledger::on_claim`] with each answer gives the
/// dispatches; after each handler returns, [`Ledger::on_outcome`] gives the fenced update to
/// record and what to do next; [`Ledger::prune`] gives rows to forget.
#[derive(Debug)]
pub struct Ledger {
    policy: LedgerPolicy,
    versions: HashMap<FileVersion, Tracked>,
}

impl Ledger {
    /// Mirrors `records` (as loaded from the store at takeover). Failed versions become
    /// retryable at once; claimed ones will be redelivered.
    pub fn new(policy: LedgerPolicy, records: Vec<LedgerRecord>, now: Instant) -> Ledger {
        let versions = records
            .into_iter()
            .map(|r| (r.version, Tracked::new(Some(r.state), r.attempts, now)))
            .collect();
        Ledger { policy, versions }
    }

    /// The policy in force.
    pub fn policy(&self) -> &LedgerPolicy {
        &self.policy
    }

    /// The recorded state of a version, if any.
    pub fn state(&self, version: &FileVersion) -> Option<LedgerState> {
        self.versions.get(version).and_then(|t| t.state)
    }

    /// Whether the mirror holds `version` (listed, or with work left).
    pub fn tracks(&self, version: &FileVersion) -> bool {
        self.versions.contains_key(version)
    }

    /// Takes a listing of regular files and returns the versions to claim now, in path order:
    /// stable, not settled, not in flight, not waiting for a retry, and not being looked up.
    ///
    /// Versions the mirror did not hold are returned apart, for the caller to look up in the
    /// store ([`crate::CoordinationStore::lookup_ledger`], then [`Ledger::on_lookup`]): they
    /// count this listing for their stability, but are not planned before the answer. The
    /// mirror keeps only what the directory needs: listed versions and rows with work left;
    /// settled rows of files that left the directory stay in the store alone.
    pub fn plan(&mut self, now: Instant, listing: &[ListedFile]) -> Planned {
        let listed: HashSet<&FileVersion> = listing.iter().map(|f| &f.version).collect();
        // Versions without work left that left the directory are dropped (never claimed, or
        // settled: a settled one that comes back is looked up again); the others start their
        // stability count again if they return.
        let before = self.versions.len();
        let mut left_done = Vec::new();
        self.versions.retain(|v, t| {
            let keep = t.has_work() || listed.contains(v);
            if !keep && t.state == Some(LedgerState::Done) {
                left_done.push(v.clone());
            }
            keep
        });
        let evicted = before - self.versions.len();
        left_done.sort();
        for (version, tracked) in self.versions.iter_mut() {
            if !listed.contains(version) {
                tracked.listings = 0;
                tracked.first_seen = None;
            }
        }
        let names: HashSet<&str> = listing.iter().map(|f| f.version.path.as_str()).collect();
        let mut ready = Vec::new();
        let mut unknown = Vec::new();
        for file in listing {
            if self.is_marker(&file.name) {
                continue;
            }
            let tracked = self
                .versions
                .entry(file.version.clone())
                .or_insert_with(|| {
                    unknown.push(file.version.clone());
                    Tracked {
                        looking_up: true,
                        ..Tracked::new(None, 0, now)
                    }
                });
            tracked.last_seen = now;
            tracked.listings = tracked.listings.saturating_add(1);
            tracked.first_seen.get_or_insert(now);
            if self.is_ready(now, &file.version, &names) {
                ready.push(file.version.clone());
            }
        }
        ready.sort();
        unknown.sort();
        Planned {
            ready,
            unknown,
            evicted,
            left_done,
        }
    }

    fn is_marker(&self, name: &str) -> bool {
        let marker = self.policy.stability.done_marker_suffix.as_deref();
        marker.is_some_and(|suffix| name.ends_with(suffix))
    }

    /// Whether a listed version may be claimed now (`names`: the paths listed).
    fn is_ready(&self, now: Instant, version: &FileVersion, names: &HashSet<&str>) -> bool {
        let Some(tracked) = self.versions.get(version) else {
            return false;
        };
        if tracked.looking_up
            || tracked.in_flight
            || tracked.state.is_some_and(LedgerState::is_settled)
        {
            return false;
        }
        if tracked.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        // A version the ledger already knows (claimed or failed) was stable once.
        if tracked.state.is_some() {
            return true;
        }
        let stability = &self.policy.stability;
        if stability.unchanged_across_listings && tracked.listings < 2 {
            return false;
        }
        let first_seen = tracked.first_seen.unwrap_or(now);
        if now.saturating_duration_since(first_seen) < stability.min_age {
            return false;
        }
        if let Some(suffix) = &stability.done_marker_suffix {
            let marker_path = format!("{}{}", version.path, suffix);
            if !names.contains(marker_path.as_str()) {
                return false;
            }
        }
        true
    }

    /// Applies the store's answer to a lookup of `asked` (the rows found; a version without
    /// one is new) and returns those of them that may be claimed now, in path order
    /// (`listed`: the paths of the latest listing, for the done-marker rule).
    pub fn on_lookup(
        &mut self,
        now: Instant,
        asked: &[FileVersion],
        found: Vec<LedgerRecord>,
        listed: &HashSet<&str>,
    ) -> Vec<FileVersion> {
        for record in found {
            let tracked = self
                .versions
                .entry(record.version)
                .or_insert_with(|| Tracked::new(None, 0, now));
            if !tracked.in_flight {
                tracked.state = Some(record.state);
                tracked.attempts = record.attempts;
            }
            tracked.looking_up = false;
        }
        let mut ready = Vec::new();
        for version in asked {
            if let Some(tracked) = self.versions.get_mut(version) {
                tracked.looking_up = false;
            }
            if self.is_ready(now, version, listed) {
                ready.push(version.clone());
            }
        }
        ready.sort();
        ready
    }

    /// A lookup that failed: the versions are looked up again when next listed.
    pub fn on_lookup_failed(&mut self, asked: &[FileVersion]) {
        for version in asked {
            if self.versions.get(version).is_some_and(|t| t.looking_up) {
                self.versions.remove(version);
            }
        }
    }

    /// Marks `version` as being claimed: it is not planned again until its claim fails
    /// ([`Ledger::on_claim_failed`]) or its outcome is known ([`Ledger::on_outcome`]).
    pub fn begin_claim(&mut self, version: &FileVersion) {
        if let Some(tracked) = self.versions.get_mut(version) {
            tracked.in_flight = true;
        }
    }

    /// How many times `version` was claimed for dispatch (0 when unknown).
    pub fn attempts(&self, version: &FileVersion) -> u32 {
        self.versions.get(version).map_or(0, |t| t.attempts)
    }

    /// True while a claim of `version` is in flight or its handler runs.
    pub fn is_in_flight(&self, version: &FileVersion) -> bool {
        self.versions.get(version).is_some_and(|t| t.in_flight)
    }

    /// Forgets what the mirror knows of `version` and starts it again as a new, unrecorded
    /// version listed once at `now` (a done version that came back into the directory after
    /// it was moved or deleted: new work, subject to the stability rules again).
    pub fn reopen(&mut self, now: Instant, version: &FileVersion) {
        self.versions.insert(
            version.clone(),
            Tracked {
                first_seen: Some(now),
                listings: 1,
                ..Tracked::new(None, 0, now)
            },
        );
    }

    /// Applies the store's answer to a claim; returns the dispatch when the version was
    /// claimed.
    pub fn on_claim(&mut self, version: &FileVersion, outcome: &ClaimOutcome) -> Option<Dispatch> {
        let tracked = self.versions.get_mut(version)?;
        match outcome {
            ClaimOutcome::Claimed {
                attempt,
                redelivery,
            } => {
                tracked.state = Some(LedgerState::Claimed);
                tracked.attempts = *attempt;
                Some(Dispatch {
                    version: version.clone(),
                    attempt: *attempt,
                    // Sticky: after a redelivery that then failed, the retry is one too.
                    redelivery: *redelivery || *attempt > 1,
                })
            }
            ClaimOutcome::Settled => {
                // Another leader settled it and our mirror was stale: adopt the store's view.
                tracked.state = Some(LedgerState::Done);
                tracked.in_flight = false;
                None
            }
        }
    }

    /// A claim that could not be written (store down, fenced): the version is planned again
    /// on a later poll.
    pub fn on_claim_failed(&mut self, version: &FileVersion) {
        if let Some(tracked) = self.versions.get_mut(version) {
            tracked.in_flight = false;
        }
    }

    /// Applies a handler's outcome. Returns the update to record (fenced) and, for a failure,
    /// when to retry or that the budget is spent.
    pub fn on_outcome(
        &mut self,
        now: Instant,
        version: &FileVersion,
        outcome: Outcome,
    ) -> (LedgerUpdate, Option<AfterFailure>) {
        let policy = &self.policy.retry;
        let tracked = self
            .versions
            .entry(version.clone())
            .or_insert_with(|| Tracked::new(None, 1, now));
        tracked.in_flight = false;
        match outcome {
            Outcome::Handled | Outcome::HandledWith(_) => {
                tracked.state = Some(LedgerState::Handled);
                let detail = match outcome {
                    Outcome::HandledWith(detail) => Some(detail),
                    _ => None,
                };
                (
                    LedgerUpdate::Set {
                        version: version.clone(),
                        state: LedgerState::Handled,
                        error: None,
                        detail,
                    },
                    None,
                )
            }
            Outcome::Failed(error) => {
                if tracked.attempts >= policy.max_attempts {
                    tracked.state = Some(LedgerState::Error);
                    (
                        LedgerUpdate::Set {
                            version: version.clone(),
                            state: LedgerState::Error,
                            error: Some(error),
                            detail: None,
                        },
                        Some(AfterFailure::GiveUp),
                    )
                } else {
                    let at = now + policy.backoff(tracked.attempts);
                    tracked.state = Some(LedgerState::Failed);
                    tracked.retry_at = Some(at);
                    (
                        LedgerUpdate::Set {
                            version: version.clone(),
                            state: LedgerState::Failed,
                            error: Some(error),
                            detail: None,
                        },
                        Some(AfterFailure::RetryAt(at)),
                    )
                }
            }
        }
    }

    /// Post-processing of a handled version finished: the update that marks it done.
    pub fn on_post_processed(&mut self, version: &FileVersion) -> LedgerUpdate {
        if let Some(tracked) = self.versions.get_mut(version) {
            tracked.state = Some(LedgerState::Done);
        }
        LedgerUpdate::Set {
            version: version.clone(),
            state: LedgerState::Done,
            error: None,
            detail: None,
        }
    }

    /// The rows by state (`None`: listed, not claimed yet), for the metrics.
    pub fn counts(&self) -> [(Option<LedgerState>, usize); 6] {
        let mut counts = [
            (None, 0),
            (Some(LedgerState::Claimed), 0),
            (Some(LedgerState::Handled), 0),
            (Some(LedgerState::Done), 0),
            (Some(LedgerState::Failed), 0),
            (Some(LedgerState::Error), 0),
        ];
        for tracked in self.versions.values() {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == tracked.state) {
                slot.1 += 1;
            }
        }
        counts
    }

    /// When `version` was first listed (local monotonic time), if it is tracked.
    pub fn first_seen(&self, version: &FileVersion) -> Option<Instant> {
        self.versions.get(version).and_then(|t| t.first_seen)
    }

    /// Versions handled but not yet post-processed (to retry the move or delete only).
    pub fn pending_post_processing(&self) -> Vec<FileVersion> {
        let mut pending: Vec<FileVersion> = self
            .versions
            .iter()
            .filter(|(_, t)| t.state == Some(LedgerState::Handled))
            .map(|(v, _)| v.clone())
            .collect();
        pending.sort();
        pending
    }

    /// Rows whose file has not been listed for the retention period, whatever their state
    /// (done, error, but also handled, claimed or failed rows of files that left the
    /// directory): forget them (and drop them from the mirror). Versions in flight are kept.
    /// A zero retention keeps everything.
    pub fn prune(&mut self, now: Instant) -> Vec<LedgerUpdate> {
        let retention = self.policy.retention;
        if retention.is_zero() {
            return Vec::new();
        }
        let mut gone: Vec<FileVersion> = self
            .versions
            .iter()
            .filter(|(_, t)| {
                t.state.is_some()
                    && !t.in_flight
                    && now.saturating_duration_since(t.last_seen) >= retention
            })
            .map(|(v, _)| v.clone())
            .collect();
        gone.sort();
        for version in &gone {
            self.versions.remove(version);
        }
        gone.into_iter().map(LedgerUpdate::Forget).collect()
    }

    /// Number of versions in the mirror.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// True when the mirror is empty.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans a listing and answers its lookups with no rows (the versions are new).
    fn plan(ledger: &mut Ledger, now: Instant, listing: &[ListedFile]) -> Vec<FileVersion> {
        let planned = ledger.plan(now, listing);
        let names: HashSet<&str> = listing.iter().map(|f| f.version.path.as_str()).collect();
        let mut ready = planned.ready;
        ready.extend(ledger.on_lookup(now, &planned.unknown, Vec::new(), &names));
        ready.sort();
        ready
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn file(path: &str, size: u64) -> ListedFile {
        ListedFile {
            version: FileVersion {
                path: path.into(),
                size,
                mtime_ms: 1000,
            },
            name: path.rsplit('/').next().unwrap().into(),
        }
    }

    fn claimed(attempt: u32) -> ClaimOutcome {
        ClaimOutcome::Claimed {
            attempt,
            redelivery: false,
        }
    }

    #[test]
    fn a_file_is_dispatched_after_two_identical_listings_only() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(LedgerPolicy::default(), vec![], t0);
        assert!(plan(&mut ledger, t0, &[file("/in/a", 1)]).is_empty());
        // It grew: a new version, counted from one again.
        assert!(plan(&mut ledger, t0 + ms(10), &[file("/in/a", 2)]).is_empty());
        let ready = plan(&mut ledger, t0 + ms(20), &[file("/in/a", 2)]);
        assert_eq!(ready, vec![file("/in/a", 2).version]);
        ledger.begin_claim(&file("/in/a", 2).version);
        // In flight: never planned twice.
        assert!(plan(&mut ledger, t0 + ms(30), &[file("/in/a", 2)]).is_empty());
    }

    #[test]
    fn min_age_and_done_marker() {
        let t0 = Instant::now();
        let policy = LedgerPolicy {
            stability: Stability {
                unchanged_across_listings: false,
                min_age: ms(500),
                done_marker_suffix: Some(".done".into()),
            },
            ..LedgerPolicy::default()
        };
        let mut ledger = Ledger::new(policy, vec![], t0);
        let a = file("/in/a", 1);
        assert!(plan(&mut ledger, t0, std::slice::from_ref(&a)).is_empty());
        assert!(
            plan(&mut ledger, t0 + ms(600), std::slice::from_ref(&a)).is_empty(),
            "no marker yet"
        );
        let marker = file("/in/a.done", 0);
        let ready = plan(&mut ledger, t0 + ms(700), &[a.clone(), marker]);
        assert_eq!(
            ready,
            vec![a.version],
            "the marker itself is never dispatched"
        );
    }

    #[test]
    fn failures_back_off_then_give_up() {
        let t0 = Instant::now();
        let policy = LedgerPolicy {
            stability: Stability {
                unchanged_across_listings: false,
                ..Stability::default()
            },
            retry: RetryPolicy {
                max_attempts: 2,
                initial_backoff: ms(100),
                max_backoff: ms(1000),
            },
            retention: Duration::ZERO,
        };
        let mut ledger = Ledger::new(policy, vec![], t0);
        let a = file("/in/a", 1);
        let v = a.version.clone();
        assert_eq!(
            plan(&mut ledger, t0, std::slice::from_ref(&a)),
            vec![v.clone()]
        );
        assert!(ledger.on_claim(&v, &claimed(1)).is_some());
        let (update, after) = ledger.on_outcome(t0, &v, Outcome::Failed("boom".into()));
        assert_eq!(after, Some(AfterFailure::RetryAt(t0 + ms(100))));
        assert!(matches!(
            update,
            LedgerUpdate::Set {
                state: LedgerState::Failed,
                ..
            }
        ));
        assert!(
            plan(&mut ledger, t0 + ms(99), std::slice::from_ref(&a)).is_empty(),
            "backing off"
        );
        assert_eq!(
            plan(&mut ledger, t0 + ms(100), std::slice::from_ref(&a)),
            vec![v.clone()]
        );
        let dispatch = ledger.on_claim(&v, &claimed(2)).unwrap();
        assert_eq!(dispatch.attempt, 2);
        // The store says the earlier attempt finished (failed); the handler is still told it
        // may have seen the file before.
        assert!(dispatch.redelivery);
        let (update, after) = ledger.on_outcome(t0, &v, Outcome::Failed("boom".into()));
        assert_eq!(after, Some(AfterFailure::GiveUp));
        assert!(
            matches!(update, LedgerUpdate::Set { state: LedgerState::Error, error: Some(ref e), .. } if e == "boom")
        );
        assert!(
            plan(&mut ledger, t0 + ms(5000), &[a]).is_empty(),
            "never again"
        );
    }

    #[test]
    fn loaded_records_decide_redelivery_and_settlement() {
        let t0 = Instant::now();
        let record = |path: &str, state| LedgerRecord {
            version: file(path, 1).version,
            state,
            term: Term(3),
            attempts: 1,
            last_error: None,
            detail: None,
        };
        let records = vec![
            record("/in/claimed", LedgerState::Claimed),
            record("/in/done", LedgerState::Done),
            record("/in/handled", LedgerState::Handled),
        ];
        let mut ledger = Ledger::new(LedgerPolicy::default(), records, t0);
        let listing = [
            file("/in/claimed", 1),
            file("/in/done", 1),
            file("/in/handled", 1),
        ];
        // A version the ledger knows was stable once: no second listing needed.
        assert_eq!(
            plan(&mut ledger, t0, &listing),
            vec![file("/in/claimed", 1).version]
        );
        assert_eq!(
            ledger.pending_post_processing(),
            vec![file("/in/handled", 1).version]
        );
        let update = ledger.on_post_processed(&file("/in/handled", 1).version);
        assert!(matches!(
            update,
            LedgerUpdate::Set {
                state: LedgerState::Done,
                ..
            }
        ));
        assert!(ledger.pending_post_processing().is_empty());
    }

    #[test]
    fn settled_claims_adopt_the_store_view_and_failed_claims_replan() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(
            LedgerPolicy {
                stability: Stability {
                    unchanged_across_listings: false,
                    ..Stability::default()
                },
                ..LedgerPolicy::default()
            },
            vec![],
            t0,
        );
        let a = file("/in/a", 1);
        let b = file("/in/b", 1);
        assert_eq!(plan(&mut ledger, t0, &[a.clone(), b.clone()]).len(), 2);
        assert_eq!(ledger.on_claim(&a.version, &ClaimOutcome::Settled), None);
        ledger.on_claim_failed(&b.version);
        assert_eq!(
            plan(&mut ledger, t0, &[a.clone(), b.clone()]),
            vec![b.version]
        );
        assert!(ledger.state(&a.version).unwrap().is_settled());
    }

    #[test]
    fn settled_rows_of_gone_files_are_pruned_after_retention() {
        let t0 = Instant::now();
        let record = LedgerRecord {
            version: file("/in/gone", 1).version,
            state: LedgerState::Done,
            term: Term(1),
            attempts: 1,
            last_error: None,
            detail: None,
        };
        let policy = LedgerPolicy {
            retention: ms(1000),
            ..LedgerPolicy::default()
        };
        let mut ledger = Ledger::new(policy, vec![record.clone()], t0);
        assert!(ledger.prune(t0 + ms(999)).is_empty());
        assert_eq!(
            ledger.prune(t0 + ms(1000)),
            vec![LedgerUpdate::Forget(record.version)]
        );
        assert!(ledger.is_empty());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: ms(100),
            max_backoff: ms(500),
        };
        assert_eq!(p.backoff(1), ms(100));
        assert_eq!(p.backoff(2), ms(200));
        assert_eq!(p.backoff(3), ms(400));
        assert_eq!(p.backoff(4), ms(500));
        assert_eq!(p.backoff(40), ms(500));
    }
}
