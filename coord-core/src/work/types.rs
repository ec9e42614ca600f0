//! The work machine's public vocabulary: settings, actions, results, events.

use std::time::Duration;

#[cfg(doc)]
use super::Worker;
use crate::ids::Fence;
use crate::ledger::{Dispatch, FileVersion, LedgerPolicy, LedgerUpdate};
use crate::store::{StaleRow, StoreError};

/// What happens to a file after its handler succeeded (`move`, `delete`, `leave` in
/// configuration files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostProcessing {
    /// Move it into the done folder (a unique name on a collision).
    #[default]
    Move,
    /// Delete it.
    Delete,
    /// Leave it where it is; the ledger remembers it was done.
    Leave,
}

/// The settings of the work machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkConfig {
    /// Stability, retries, retention.
    pub policy: LedgerPolicy,
    /// After a handled file: move, delete or leave.
    pub post_processing: PostProcessing,
    /// Where handled files go (`move`).
    pub done_dir: String,
    /// Where files go after the retry budget is spent.
    pub error_dir: String,
    /// Time between the starts of two listings.
    pub poll_interval: Duration,
    /// Handlers running at once (at least 1; 1 keeps the listing's order).
    pub max_in_flight: usize,
    /// Ledger updates written in one store call, at most.
    pub record_batch: usize,
    /// Group commit: a ledger update that unlocks post-processing (handled, error) waits up
    /// to this long for others to share its store call, the others (done, failed, forget)
    /// up to ten times this long; at once when `record_batch / 4` updates wait or the term
    /// is draining. Zero writes at once.
    pub record_delay: Duration,
    /// Post-processing operations (moves, deletes) in flight at once (at least 1), beside
    /// the listing too; never two moves that could take the same target name.
    pub max_file_ops: usize,
    /// Wait after a store call failed transiently before the next one.
    pub store_retry: Duration,
    /// Versions claimed ahead of a free handler slot, at most (0 claims only for free
    /// slots). Claims then go in batches and a freed slot starts its next file without a
    /// store round trip; the price: a term that ends (crash, lost lease, stop) leaves up to
    /// this many versions claimed and never started, which the next term redelivers with
    /// their attempt counted.
    pub claim_ahead: usize,
    /// Time between the first and the second listing of a term, when shorter than
    /// `poll_interval`: a new leader sees every file for the first time, so a file that was
    /// stable before the takeover waits for this, not a whole poll interval. The stability
    /// rule "unchanged across two listings" then spans this much right after a takeover.
    pub takeover_relist: Duration,
    /// Versions per store lookup, at most: listed versions the mirror does not hold (new
    /// ones, and settled ones that came back) are looked up in batches of this many; also
    /// the page size of the retention walk over settled rows.
    pub lookup_batch: usize,
    /// Time between two walks over the settled rows older than the retention (each walk
    /// goes page after page to its end, then waits this long).
    pub retention_walk: Duration,
}

impl WorkConfig {
    /// Settings with the defaults for everything but the folders: move, 4 handlers, polls
    /// every 5 s.
    pub fn new(done_dir: impl Into<String>, error_dir: impl Into<String>) -> WorkConfig {
        WorkConfig {
            policy: LedgerPolicy::default(),
            post_processing: PostProcessing::Move,
            done_dir: done_dir.into(),
            error_dir: error_dir.into(),
            poll_interval: Duration::from_secs(5),
            max_in_flight: 4,
            record_batch: 256,
            record_delay: Duration::from_millis(20),
            max_file_ops: 4,
            store_retry: Duration::from_secs(1),
            claim_ahead: 16,
            takeover_relist: Duration::from_secs(1),
            lookup_batch: 1000,
            retention_walk: Duration::from_secs(600),
        }
    }
}

/// Identifies a store call or file operation in flight; its result is reported with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Identifies a running handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub u64);

/// A file operation on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Create these folders and their parents (`mkdir -p`).
    PrepareDirs(Vec<String>),
    /// Move the handled `version` into `dir` without overwriting (a unique name on a
    /// collision). The machine asks only while the listing just taken shows this exact
    /// version at its path; report [`FileOpResult::SourceGone`] when the source is not found.
    MoveToDone {
        /// The handled version.
        version: FileVersion,
        /// The done folder.
        dir: String,
    },
    /// Delete the handled `version` (same verification as the move).
    Delete(FileVersion),
    /// Move the given-up `version` into the error folder `dir`.
    MoveToError {
        /// The version in error.
        version: FileVersion,
        /// The error folder.
        dir: String,
    },
    /// Delete the done-marker file at this path (its file was moved or deleted).
    DeleteMarker(String),
}

/// The result of a [`FileOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOpResult {
    /// Done (for a move, where the file went).
    Done(Option<String>),
    /// The source path does not exist (any more).
    SourceGone,
    /// The operation failed; it is tried again after the next listing.
    Failed(String),
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkAction {
    /// Stop the handler at once (a command is killed): its member no longer leads. Its result,
    /// if it still arrives, is ignored. Honour this before any other action.
    Cancel(HandlerId),
    /// Call [`crate::CoordinationStore::load_ledger`], then [`Worker::handle_loaded`].
    LoadLedger {
        /// The call.
        op: OpId,
    },
    /// List the watched folder (filtered), then [`Worker::handle_listed`].
    List {
        /// The call.
        op: OpId,
    },
    /// Call [`crate::CoordinationStore::lookup_ledger`], then [`Worker::handle_looked_up`].
    Lookup {
        /// The call.
        op: OpId,
        /// The versions (at most `lookup_batch`).
        versions: Vec<FileVersion>,
    },
    /// Call [`crate::CoordinationStore::stale_settled`], then [`Worker::handle_stale`].
    FindStale {
        /// The call.
        op: OpId,
        /// The retention.
        older_than: Duration,
        /// Where the walk goes on from (`None`: from the oldest).
        after: Option<StaleRow>,
        /// Rows at most.
        limit: usize,
    },
    /// Call [`crate::CoordinationStore::claim`], then [`Worker::handle_claimed`].
    Claim {
        /// The call.
        op: OpId,
        /// The fence to present.
        fence: Fence,
        /// At most as many versions as there are free handler slots.
        versions: Vec<FileVersion>,
    },
    /// Call [`crate::CoordinationStore::record`], then [`Worker::handle_recorded`].
    Record {
        /// The call.
        op: OpId,
        /// The fence to present.
        fence: Fence,
        /// The updates, all or nothing.
        updates: Vec<LedgerUpdate>,
    },
    /// Start a handler on `dispatch`; report with [`Worker::handle_outcome`].
    Dispatch {
        /// The handler's identity.
        handler: HandlerId,
        /// The version, attempt and redelivery flag.
        dispatch: Dispatch,
        /// The fence the handler may pass on downstream as a fencing token.
        fence: Fence,
    },
    /// Perform a file operation, then [`Worker::handle_file_op`].
    File {
        /// The call.
        op: OpId,
        /// What to do.
        file_op: FileOp,
    },
}

/// Something worth a log line or a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkEvent {
    /// The term's ledger was loaded.
    Loaded {
        /// Rows loaded.
        records: usize,
    },
    /// Settled rows older than the retention, of files no longer listed, are being
    /// forgotten (the retention walk over the store).
    Expired {
        /// Rows.
        rows: usize,
    },
    /// A version was handled and post-processed, and that is recorded.
    Done(FileVersion),
    /// A handler failed; it is retried after a backoff.
    Failed {
        /// The version.
        version: FileVersion,
        /// The attempt that failed.
        attempt: u32,
        /// The handler's error.
        error: String,
    },
    /// The retry budget is spent: the version is in error and goes to the error folder.
    GaveUp {
        /// The version.
        version: FileVersion,
        /// The attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// What changed in the folder since the previous listing of this term: versions listed
    /// now and not then (at a term's first listing: those the ledger does not know), and
    /// versions listed then and gone now that this member did not move or delete itself.
    /// Done markers are not reported. Reported once per listing with changes.
    Changes {
        /// New versions.
        added: Vec<FileVersion>,
        /// Versions that left the folder by someone else's hand.
        deleted: Vec<FileVersion>,
    },
    /// A done version showed up again in the source after it was moved or deleted: new work.
    Reappeared(FileVersion),
    /// A done version is still listed (`leave` mode): it is not processed again.
    AlreadyDone(FileVersion),
    /// A handled version's source was gone when it was to be post-processed: recorded done.
    SourceGone(FileVersion),
    /// A file operation failed; tried again after the next listing.
    FileOpFailed {
        /// What was attempted.
        op: FileOp,
        /// Why it failed.
        error: String,
    },
    /// The listing failed; tried again at the next poll.
    ListFailed(String),
    /// A store call failed transiently; retried after `store_retry`.
    StoreTrouble(StoreError),
    /// The store rejected a write of this term: another member leads. The term's work ends.
    Fenced(StoreError),
    /// The term's work ended (lease lost, term changed, or fenced); so many handlers were
    /// cancelled.
    TermEnded {
        /// Handlers cancelled.
        cancelled: usize,
    },
}

/// How far behind a leader is ([`crate::Worker::backlog`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// Files of the last listing not done yet (not counting those in error).
    pub files: usize,
    /// How long ago the oldest of them was first listed.
    pub oldest_age: std::time::Duration,
    /// The ledger mirror's rows by state (`None`: listed, not claimed yet).
    pub rows: [(Option<crate::ledger::LedgerState>, usize); 6],
}
