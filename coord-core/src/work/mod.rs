//! The leader's work machine (DESIGN §3, §5): every step of a term, decided here and only
//! here: load the ledger, list, plan, claim in bounded batches just before dispatch, dispatch
//! up to `max_in_flight` handlers, record outcomes in batches, post-process the exact version
//! that was handled, record it done, retry with backoff, give up into the error folder, prune.
//!
//! Sans-I/O in the style of [`crate::Elector`]: the driver (the `listener`'s poll loop in
//! production, `testkit`'s simulator in tests) performs the [`WorkAction`]s it is handed and
//! reports each result with the matching `handle_*` method; time is a parameter.
//!
//! # Driving contract
//!
//! - Before every call, tell the machine whether this member may dispatch:
//!   [`Worker::set_lease`] with the elector's [`crate::Elector::may_dispatch`] at `now`. A
//!   lease that ends (or changes term) ends the term's work at once: every running handler is
//!   cancelled ([`WorkAction::Cancel`], which the driver must honour before anything else),
//!   and the results of calls still in flight are ignored when they arrive.
//! - Drain [`Worker::poll_action`] until it returns `None`; start each action (store calls
//!   and file operations may run concurrently with the handlers; the machine issues at most
//!   one claim and one record at once (after the load, alone), and on the file source at
//!   most one listing and up to `max_file_ops` post-processing operations beside it, or
//!   folder preparation alone: a move's round trips to the server would otherwise bound the
//!   files handled per second at any parallelism, and a listing that waited for the moves
//!   would keep a busy leader from seeing new files).
//! - Drain [`Worker::poll_event`] for logs and metrics.
//! - Wait until [`Worker::next_deadline`], a result, or a change of the lease; repeat.
//!
//! # What survives the end of a term
//!
//! Nothing in memory: the next term (on this member or another) re-derives its work from the
//! store. A claim never answered is redelivered (its attempt counted), an outcome never
//! recorded is redelivered, a handled version whose post-processing or done record was lost
//! is post-processed again if that exact version is still listed, and recorded done if it is
//! not (its source is gone: it was moved or deleted).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::ids::Fence;
use crate::ledger::{
    AfterFailure, Dispatch, FileVersion, Ledger, LedgerRecord, LedgerState, LedgerUpdate,
    ListedFile, Outcome,
};
use crate::store::{ClaimOutcome, StaleRow, StoreError};

mod types;

pub use types::{
    Backlog, FileOp, FileOpResult, HandlerId, OpId, PostProcessing, WorkAction, WorkConfig,
    WorkEvent,
};

/// What a recorded write unlocks once the store acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    Nothing,
    /// The version was recorded handled: post-process it.
    PostProcess(FileVersion),
    /// The version was recorded in error: move it to the error folder.
    MoveToError(FileVersion),
    /// The version was recorded done; the file left the folder before listing number `gen`.
    Done(FileVersion, u64),
}

#[derive(Debug, Clone)]
struct Write {
    update: LedgerUpdate,
    then: Then,
}

/// The store calls of a term: the load first and alone; then at most one claim and one
/// record at once (they concern different versions: a version with an unwritten update is
/// not claimed, and nothing writes a version while its claim is in flight), so a claim never
/// waits for a batch of outcomes to be written, nor outcomes for a claim.
///
/// Lookups and the retention walk are reads beside them: a lookup concerns versions the
/// mirror does not hold (nothing claims or writes those), the walk rows no one lists.
#[derive(Debug, Default)]
struct StoreCalls {
    load: Option<OpId>,
    claim: Option<(OpId, Vec<FileVersion>)>,
    record: Option<(OpId, Vec<Write>)>,
    lookup: Option<(OpId, Vec<FileVersion>)>,
    stale: Option<OpId>,
}

impl StoreCalls {
    fn is_empty(&self) -> bool {
        self.load.is_none()
            && self.claim.is_none()
            && self.record.is_none()
            && self.lookup.is_none()
            && self.stale.is_none()
    }
}

#[derive(Debug)]
enum FsCall {
    List(u64),
    File(FileOp),
}

/// The work of one term.
#[derive(Debug)]
struct TermWork {
    fence: Fence,
    /// Fenced by the store: nothing more is done in this term.
    dead: bool,
    ledger: Option<Ledger>,
    store_calls: StoreCalls,
    store_idle_at: Instant,
    /// The listing or folder preparation in flight.
    fs_call: Option<(OpId, FsCall)>,
    /// Post-processing in flight (beside a listing, never beside folder preparation).
    file_calls: BTreeMap<OpId, FileOp>,
    dirs_ready: bool,
    next_list: Instant,
    /// Listings issued in this term (the number of the latest).
    list_gen: u64,
    /// The latest listing: path to version.
    listed: HashMap<String, FileVersion>,
    /// Whether a listing was applied in this term yet.
    listed_once: bool,
    /// Versions this term moved or deleted (or found gone), each with the number of the first
    /// listing issued after that (the first that cannot show it): not reported as deleted by
    /// others until that listing is applied. A listing issued before the move finished may
    /// show the file still, or not.
    removed_here: BTreeMap<FileVersion, u64>,
    /// Done versions and the listing number before which they left the folder.
    done_gen: HashMap<FileVersion, u64>,
    /// Done versions already reported as still listed (`leave`), once per term.
    reported_done: BTreeSet<FileVersion>,
    /// Stable versions to claim as handler slots free up, in listing order.
    ready: VecDeque<FileVersion>,
    /// Claimed versions waiting for a free handler slot (`claim_ahead`).
    claimed: VecDeque<Dispatch>,
    running: BTreeMap<HandlerId, FileVersion>,
    writes: VecDeque<Write>,
    /// Since when `writes` holds updates not yet in a store call (group commit).
    writes_since: Option<Instant>,
    /// File operations to perform, and the versions they concern (never queued twice).
    file_ops: VecDeque<FileOp>,
    queued_files: BTreeSet<FileVersion>,
    /// Calls of an earlier term under this same fence still in flight: the ledger is loaded
    /// once they are answered.
    wait_ops: BTreeSet<OpId>,
    /// Listed versions the mirror did not hold, to look up in the store.
    lookups: VecDeque<FileVersion>,
    /// The first listing's new versions, reported once their lookups are answered (a
    /// version with a row is not new).
    first_added: Option<Vec<FileVersion>>,
    /// The retention walk over the store's settled rows: where it goes on, and when.
    stale_after: Option<StaleRow>,
    stale_at: Instant,
}

/// The leader's work machine. See the module documentation for the driving contract.
#[derive(Debug)]
pub struct Worker {
    config: WorkConfig,
    term: Option<TermWork>,
    next_op: u64,
    next_handler: u64,
    draining: bool,
    /// The writes (and claims) in flight when the last term ended, and its fence.
    settling: Option<(Fence, BTreeSet<OpId>)>,
    actions: VecDeque<WorkAction>,
    events: VecDeque<WorkEvent>,
}

impl Worker {
    /// A machine that waits for a lease.
    pub fn new(mut config: WorkConfig) -> Worker {
        config.max_in_flight = config.max_in_flight.max(1);
        config.record_batch = config.record_batch.max(1);
        Worker {
            config,
            term: None,
            next_op: 0,
            next_handler: 0,
            draining: false,
            settling: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &WorkConfig {
        &self.config
    }

    /// Whether this member may dispatch at `now`, and under which fence (the elector's
    /// [`crate::Elector::may_dispatch`]). A different fence, or none, ends the current term's
    /// work: its handlers are cancelled.
    pub fn set_lease(&mut self, now: Instant, lease: Option<&Fence>) {
        let same = matches!((&self.term, lease), (Some(t), Some(f)) if &t.fence == f);
        if same {
            return;
        }
        self.end_term();
        if let Some(fence) = lease
            && !self.draining
        {
            let wait_ops = match self.settling.take() {
                Some((earlier, ops)) if &earlier == fence => ops,
                _ => BTreeSet::new(),
            };
            self.term = Some(TermWork {
                wait_ops,
                fence: fence.clone(),
                dead: false,
                ledger: None,
                store_calls: StoreCalls::default(),
                store_idle_at: now,
                fs_call: None,
                file_calls: BTreeMap::new(),
                dirs_ready: false,
                next_list: now,
                list_gen: 0,
                listed: HashMap::new(),
                listed_once: false,
                removed_here: BTreeMap::new(),
                done_gen: HashMap::new(),
                reported_done: BTreeSet::new(),
                ready: VecDeque::new(),
                claimed: VecDeque::new(),
                running: BTreeMap::new(),
                writes: VecDeque::new(),
                writes_since: None,
                file_ops: VecDeque::new(),
                queued_files: BTreeSet::new(),
                lookups: VecDeque::new(),
                first_added: None,
                stale_after: None,
                // In `leave` mode the walk waits for the term to have listed the folder for a
                // whole retention period: only then has every row it finds stale been absent
                // from this leader's listings for that long (a listing that comes back empty
                // for a while, a server glitch, does not make files left in place new work).
                stale_at: if self.config.post_processing == PostProcessing::Leave {
                    now + self.config.policy.retention
                } else {
                    now
                },
            });
        }
    }

    /// How far behind this leader is: the files of the last listing that are not done yet
    /// (new, claimed, handled, failed; not those in error), and how long ago the oldest of
    /// them was first listed. `None` without a term or before the ledger is loaded.
    pub fn backlog(&self, now: Instant) -> Option<Backlog> {
        let term = self.term.as_ref()?;
        let ledger = term.ledger.as_ref()?;
        let mut files = 0;
        let mut oldest: Option<Instant> = None;
        for version in term.listed.values() {
            if matches!(
                ledger.state(version),
                Some(LedgerState::Done | LedgerState::Error)
            ) {
                continue;
            }
            files += 1;
            if let Some(seen) = ledger.first_seen(version) {
                oldest = Some(oldest.map_or(seen, |o| o.min(seen)));
            }
        }
        Some(Backlog {
            files,
            oldest_age: oldest.map_or(std::time::Duration::ZERO, |o| {
                now.saturating_duration_since(o)
            }),
            rows: ledger.counts(),
        })
    }

    /// An operator's request (`ftp-listener ledger retry|forget`, taken from the store by the
    /// driver): the version's row is forgotten, fenced like every write, and its mirror entry
    /// starts afresh, so that the version is new work when it is listed again. Refused (false)
    /// while the version is in flight, before the ledger is loaded, or without a term.
    pub fn redrive(&mut self, now: Instant, version: &FileVersion) -> bool {
        let Some(term) = self.term.as_mut() else {
            return false;
        };
        let Some(ledger) = term.ledger.as_mut() else {
            return false;
        };
        if ledger.is_in_flight(version) || term.queued_files.contains(version) {
            return false;
        }
        ledger.reopen(now, version);
        term.done_gen.remove(version);
        term.reported_done.remove(version);
        term.writes.push_back(Write {
            update: LedgerUpdate::Forget(version.clone()),
            then: Then::Nothing,
        });
        true
    }

    /// Graceful stop: no new listing, claim or dispatch; running handlers finish, and their
    /// outcomes, post-processing and done records are written. [`Worker::is_drained`] tells
    /// when nothing is left.
    pub fn drain(&mut self) {
        self.draining = true;
        if let Some(term) = &mut self.term {
            term.ready.clear();
            Self::drop_claimed(term);
        }
    }

    /// True when draining and nothing is running or waiting to be written.
    pub fn is_drained(&self) -> bool {
        self.draining
            && self.term.as_ref().is_none_or(|t| {
                t.dead
                    || (t.running.is_empty()
                        && t.store_calls.is_empty()
                        && t.fs_call.is_none()
                        && t.file_calls.is_empty()
                        && t.writes.is_empty()
                        && t.file_ops.is_empty())
            })
    }

    /// Handlers running now.
    pub fn running(&self) -> usize {
        self.term.as_ref().map_or(0, |t| t.running.len())
    }

    /// The ledger mirror of the current term, once loaded.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.term.as_ref().and_then(|t| t.ledger.as_ref())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<WorkEvent> {
        self.events.pop_front()
    }

    /// When the driver must call [`Worker::poll_action`] again at the latest, if nothing else
    /// happens first (the next listing, the end of a store backoff).
    pub fn next_deadline(&self) -> Option<Instant> {
        let term = self.term.as_ref().filter(|t| !t.dead)?;
        let mut next: Option<Instant> = None;
        let mut at = |i: Instant| next = Some(next.map_or(i, |n| n.min(i)));
        let calls = &term.store_calls;
        let store_work = if term.ledger.is_none() {
            !self.draining && calls.load.is_none() && term.wait_ops.is_empty()
        } else {
            calls.claim.is_none()
                && !self.draining
                && !term.ready.is_empty()
                && Self::claim_room(&self.config, term) > 0
        };
        if store_work {
            at(term.store_idle_at);
        }
        if term.ledger.is_some() && !self.draining {
            if calls.lookup.is_none() && !term.lookups.is_empty() {
                at(term.store_idle_at);
            }
            if calls.stale.is_none() && Self::wants_stale_walk(&self.config, term) {
                at(term.stale_at.max(term.store_idle_at));
            }
        }
        if calls.record.is_none() && !term.writes.is_empty() {
            let due = Self::record_due(&self.config, self.draining, term);
            at(due.max(term.store_idle_at));
        }
        if term.fs_call.is_none() && !self.draining && term.ledger.is_some() {
            at(term.next_list);
        }
        next
    }

    /// The next action to perform, if any.
    pub fn poll_action(&mut self, now: Instant) -> Option<WorkAction> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if let Some(action) = self.next_dispatch() {
            return Some(action);
        }
        let op = OpId(self.next_op + 1);
        let draining = self.draining;
        let config = &self.config;
        let term = self.term.as_mut().filter(|t| !t.dead)?;
        if term.writes.is_empty() {
            term.writes_since = None;
        } else if term.writes_since.is_none() {
            term.writes_since = Some(now);
        }
        let action = Self::next_store_call(config, draining, term, now, op)
            .or_else(|| Self::next_fs_call(config, draining, term, now, op))?;
        self.next_op += 1;
        Some(action)
    }

    /// A claimed version for a free handler slot, if one waits and is still listed as this
    /// very version (one that left is not started: the next claim after it is listed again
    /// counts another attempt).
    fn next_dispatch(&mut self) -> Option<WorkAction> {
        let term = self.term.as_mut().filter(|t| !t.dead)?;
        if self.draining {
            Self::drop_claimed(term);
            return None;
        }
        while term.running.len() < self.config.max_in_flight {
            let dispatch = term.claimed.pop_front()?;
            if term.listed.get(&dispatch.version.path) != Some(&dispatch.version) {
                if let Some(ledger) = term.ledger.as_mut() {
                    ledger.on_claim_failed(&dispatch.version);
                }
                continue;
            }
            self.next_handler += 1;
            let handler = HandlerId(self.next_handler);
            term.running.insert(handler, dispatch.version.clone());
            return Some(WorkAction::Dispatch {
                handler,
                dispatch,
                fence: term.fence.clone(),
            });
        }
        None
    }

    /// How many versions a claim may take now: the handler slots and `claim_ahead` not yet
    /// covered by running or claimed versions, once at least `claim_ahead` of them are free
    /// (claims go in batches), or as soon as one slot would otherwise stay idle.
    fn claim_room(config: &WorkConfig, term: &TermWork) -> usize {
        let have = term.running.len() + term.claimed.len();
        let capacity = config.max_in_flight + config.claim_ahead;
        let room = capacity.saturating_sub(have);
        if have < config.max_in_flight || room >= config.claim_ahead.max(1) {
            room
        } else {
            0
        }
    }

    /// The retention walk runs with a retention, after the term's first listing (it skips
    /// what is listed), and while the forgets of its last page are mostly written.
    fn wants_stale_walk(config: &WorkConfig, term: &TermWork) -> bool {
        !config.policy.retention.is_zero()
            && term.listed_once
            && term.writes.len() < config.record_batch.max(1)
    }

    /// When the waiting updates are to be written (group commit): `record_delay` after the
    /// oldest of them was queued when one of them unlocks post-processing (a handled or an
    /// error record), ten times that when none does (done records, failures, forgets: they
    /// ride along with the next handled record); at once when a quarter of a batch waits,
    /// when no handler runs and none is about to start, or when draining.
    fn record_due(config: &WorkConfig, draining: bool, term: &TermWork) -> Instant {
        let since = term.writes_since.unwrap_or(term.store_idle_at);
        // Nothing running nor about to: no outcome can join the batch before a claim and a
        // handler have come and gone, so waiting would only delay the file (a lone large
        // file was done 100 ms after its handler returned).
        let idle = term.running.is_empty() && term.claimed.is_empty();
        if draining || idle || term.writes.len() >= (config.record_batch / 4).max(1) {
            return since;
        }
        let unlocks = term
            .writes
            .iter()
            .any(|w| matches!(w.then, Then::PostProcess(_) | Then::MoveToError(_)));
        if unlocks {
            since + config.record_delay
        } else {
            since + config.record_delay * 10
        }
    }

    /// Claimed versions not started are given up (end of the term's dispatching): their
    /// rows stay claimed, so the next term redelivers them.
    fn drop_claimed(term: &mut TermWork) {
        let claimed = std::mem::take(&mut term.claimed);
        if let Some(ledger) = term.ledger.as_mut() {
            for dispatch in &claimed {
                ledger.on_claim_failed(&dispatch.version);
            }
        }
    }

    fn next_store_call(
        config: &WorkConfig,
        draining: bool,
        term: &mut TermWork,
        now: Instant,
        op: OpId,
    ) -> Option<WorkAction> {
        if now < term.store_idle_at || term.store_calls.load.is_some() {
            return None;
        }
        if term.ledger.is_none() {
            if draining || !term.wait_ops.is_empty() {
                return None;
            }
            term.store_calls.load = Some(op);
            return Some(WorkAction::LoadLedger { op });
        }
        // Writes: they unlock post-processing and nothing may build on an unwritten one.
        if term.store_calls.record.is_none()
            && !term.writes.is_empty()
            && Self::record_due(config, draining, term) <= now
        {
            let n = term.writes.len().min(config.record_batch);
            let batch: Vec<Write> = term.writes.drain(..n).collect();
            term.writes_since = (!term.writes.is_empty()).then_some(now);
            let updates = batch.iter().map(|w| w.update.clone()).collect();
            term.store_calls.record = Some((op, batch));
            return Some(WorkAction::Record {
                op,
                fence: term.fence.clone(),
                updates,
            });
        }
        if draining {
            return None;
        }
        if term.store_calls.lookup.is_none() && !term.lookups.is_empty() {
            // A version with an update still unwritten is not looked up (the answer could
            // be older than the write): it is forgotten here and looked up when next listed.
            let unwritten = unwritten(term);
            let mut versions = Vec::new();
            let mut deferred = Vec::new();
            while versions.len() < config.lookup_batch.max(1) {
                let Some(version) = term.lookups.pop_front() else {
                    break;
                };
                if term.listed.get(&version.path) != Some(&version) || unwritten.contains(&version)
                {
                    deferred.push(version);
                } else {
                    versions.push(version);
                }
            }
            if let Some(ledger) = term.ledger.as_mut() {
                ledger.on_lookup_failed(&deferred);
            }
            if !versions.is_empty() {
                term.store_calls.lookup = Some((op, versions.clone()));
                return Some(WorkAction::Lookup { op, versions });
            }
        }
        if term.store_calls.stale.is_none()
            && now >= term.stale_at
            && Self::wants_stale_walk(config, term)
        {
            term.store_calls.stale = Some(op);
            return Some(WorkAction::FindStale {
                op,
                older_than: config.policy.retention,
                after: term.stale_after.clone(),
                limit: config.lookup_batch.max(1),
            });
        }
        if term.store_calls.claim.is_some() {
            return None;
        }
        let room = Self::claim_room(config, term);
        if room == 0 {
            return None;
        }
        // Versions whose latest update is not written yet are not claimed (their claim would
        // race the write); the next listing plans them again.
        let unwritten = unwritten(term);
        let ledger = term.ledger.as_mut()?;
        let mut versions = Vec::new();
        while versions.len() < room {
            let Some(version) = term.ready.pop_front() else {
                break;
            };
            // Still eligible: listed as this very version, not settled, not in flight.
            let listed = term.listed.get(&version.path) == Some(&version);
            let settled = ledger.state(&version).is_some_and(LedgerState::is_settled);
            if listed && !settled && !ledger.is_in_flight(&version) && !unwritten.contains(&version)
            {
                ledger.begin_claim(&version);
                versions.push(version);
            }
        }
        if versions.is_empty() {
            return None;
        }
        term.store_calls.claim = Some((op, versions.clone()));
        Some(WorkAction::Claim {
            op,
            fence: term.fence.clone(),
            versions,
        })
    }

    fn next_fs_call(
        config: &WorkConfig,
        draining: bool,
        term: &mut TermWork,
        now: Instant,
        op: OpId,
    ) -> Option<WorkAction> {
        let listing = matches!(term.fs_call, Some((_, FsCall::List(_))));
        if (term.fs_call.is_some() && !listing) || term.ledger.is_none() {
            return None;
        }
        // Post-processing first, as many at once as allowed, beside a listing too, in queue
        // order but skipping an operation whose target name one in flight could take (FTP's
        // no-overwrite rename is a check then a rename: two at once to one name could both
        // see it free). A listing issued before a move ends may show its file or not: see
        // `removed_here` and `done_gen`.
        if term.file_calls.len() < config.max_file_ops.max(1) {
            let startable = term.file_ops.iter().position(|candidate| {
                term.file_calls
                    .values()
                    .all(|running| !may_collide(candidate, running))
            });
            if let Some(file_op) = startable.and_then(|i| term.file_ops.remove(i)) {
                term.file_calls.insert(op, file_op.clone());
                return Some(WorkAction::File { op, file_op });
            }
        }
        if listing || draining {
            return None;
        }
        if !term.dirs_ready {
            // Before any post-processing of the term (the folders it moves into).
            if !term.file_calls.is_empty() {
                return None;
            }
            let mut dirs = vec![config.error_dir.clone()];
            if config.post_processing == PostProcessing::Move {
                dirs.push(config.done_dir.clone());
            }
            let file_op = FileOp::PrepareDirs(dirs);
            term.fs_call = Some((op, FsCall::File(file_op.clone())));
            return Some(WorkAction::File { op, file_op });
        }
        if now < term.next_list {
            return None;
        }
        term.list_gen += 1;
        // The second listing of a term comes early: a new leader sees every file for the
        // first time, and a file that was already stable before the takeover is dispatched
        // after two listings `takeover_relist` apart instead of a whole poll interval.
        let interval = if term.list_gen == 1 {
            config.poll_interval.min(config.takeover_relist)
        } else {
            config.poll_interval
        };
        term.next_list = now + interval;
        term.fs_call = Some((op, FsCall::List(term.list_gen)));
        Some(WorkAction::List { op })
    }

    /// Reports the result of [`WorkAction::LoadLedger`].
    pub fn handle_loaded(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<Vec<LedgerRecord>, StoreError>,
    ) {
        match self.live_term() {
            Some(term) if term.store_calls.load == Some(op) => term.store_calls.load = None,
            _ => return,
        }
        match result {
            Ok(records) => {
                self.events.push_back(WorkEvent::Loaded {
                    records: records.len(),
                });
                let policy = self.config.policy.clone();
                if let Some(term) = &mut self.term {
                    term.ledger = Some(Ledger::new(policy, records, now));
                }
            }
            Err(error) => self.store_failed(now, error),
        }
    }

    /// Reports the result of [`WorkAction::List`]: the regular files of the watched folder
    /// that pass the filter (done markers included), or why the listing failed.
    pub fn handle_listed(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<Vec<ListedFile>, String>,
    ) {
        let Some(term) = self.live_term() else {
            return;
        };
        let gen_ = match &term.fs_call {
            Some((pending, FsCall::List(gen_))) if *pending == op => *gen_,
            _ => return,
        };
        term.fs_call = None;
        let listing = match result {
            Ok(listing) => listing,
            Err(error) => {
                self.events.push_back(WorkEvent::ListFailed(error));
                return;
            }
        };
        self.apply_listing(now, gen_, &listing);
    }

    /// Settled versions listed by listing number `gen_` (at a listing, or when a lookup
    /// found their rows): a done one is new work in move and delete modes when it left the
    /// folder before that listing (the done record proves the earlier copy left), and
    /// already done otherwise; one in error is still in the folder (its move failed, or the
    /// leader that recorded the error stopped before moving it): moved to the error folder.
    fn revisit_settled(&mut self, now: Instant, gen_: u64, versions: &[FileVersion]) {
        let mode = self.config.post_processing;
        let error_dir = self.config.error_dir.clone();
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let unwritten = unwritten(term);
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        for version in versions {
            match ledger.state(version) {
                Some(LedgerState::Done) => {}
                Some(LedgerState::Error) => {
                    // Listed by a listing issued before its move to the error folder ended.
                    let moved = term.removed_here.get(version).is_some_and(|g| *g > gen_);
                    if !moved
                        && !term.queued_files.contains(version)
                        && !unwritten.contains(version)
                    {
                        term.queued_files.insert(version.clone());
                        term.file_ops.push_back(FileOp::MoveToError {
                            version: version.clone(),
                            dir: error_dir.clone(),
                        });
                    }
                    continue;
                }
                _ => continue,
            }
            // The first listing that cannot show the moved file: from the acknowledged done
            // record, or from the move itself while that record is still being written.
            let moved_before = term
                .done_gen
                .get(version)
                .into_iter()
                .chain(term.removed_here.get(version))
                .max();
            let left_before = moved_before.is_none_or(|g| *g <= gen_);
            if mode == PostProcessing::Leave || !left_before {
                if term.reported_done.insert(version.clone()) {
                    self.events
                        .push_back(WorkEvent::AlreadyDone(version.clone()));
                }
                continue;
            }
            ledger.reopen(now, version);
            term.done_gen.remove(version);
            term.writes.push_back(Write {
                update: LedgerUpdate::Forget(version.clone()),
                then: Then::Nothing,
            });
            self.events
                .push_back(WorkEvent::Reappeared(version.clone()));
        }
    }

    fn apply_listing(&mut self, now: Instant, gen_: u64, listing: &[ListedFile]) {
        let mode = self.config.post_processing;
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        let listed: HashMap<String, FileVersion> = listing
            .iter()
            .map(|f| (f.version.path.clone(), f.version.clone()))
            .collect();
        // What changed since the previous listing of this term (the batch change event).
        let marker = self.config.policy.stability.done_marker_suffix.as_deref();
        let is_marker = |v: &FileVersion| marker.is_some_and(|m| v.path.ends_with(m));
        let mut added: Vec<FileVersion> = listed
            .values()
            .filter(|v| !is_marker(v))
            .filter(|v| {
                if term.listed_once {
                    term.listed.get(&v.path) != Some(*v)
                } else {
                    ledger.state(v).is_none()
                }
            })
            .cloned()
            .collect();
        let mut deleted: Vec<FileVersion> = term
            .listed
            .values()
            .filter(|v| !is_marker(v))
            .filter(|v| {
                listed.get(&v.path) != Some(*v)
                    && !term.removed_here.contains_key(*v)
                    && !term
                        .file_calls
                        .values()
                        .any(|op| op_version(op) == Some(*v))
            })
            .cloned()
            .collect();
        added.sort();
        deleted.sort();
        if !term.listed_once {
            // Whether they are new is known once their rows are looked up.
            term.first_added = Some(std::mem::take(&mut added));
        }
        if !added.is_empty() || !deleted.is_empty() {
            self.events.push_back(WorkEvent::Changes { added, deleted });
        }
        term.listed = listed;
        term.listed_once = true;
        term.removed_here.retain(|_, first| *first > gen_);
        let versions: Vec<FileVersion> = listing.iter().map(|f| f.version.clone()).collect();
        self.revisit_settled(now, gen_, &versions);
        let Some(term) = self.term.as_mut() else {
            return;
        };
        // Versions whose latest state is not acknowledged yet: nothing may build on it (a file
        // is moved only after its handled record is durable).
        let unwritten = unwritten(term);
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        // Handled versions: post-process them if listed as this very version, else their
        // source is gone and they are done.
        for version in ledger.pending_post_processing() {
            if term.queued_files.contains(&version)
                || ledger.is_in_flight(&version)
                || unwritten.contains(&version)
            {
                continue;
            }
            term.queued_files.insert(version.clone());
            match post_op(&self.config, &term.listed, &version) {
                Some(op) => term.file_ops.push_back(op),
                None => {
                    if mode != PostProcessing::Leave {
                        self.events
                            .push_back(WorkEvent::SourceGone(version.clone()));
                    }
                    term.writes.push_back(done_write(ledger, &version, gen_));
                }
            }
        }
        let planned = ledger.plan(now, listing);
        term.ready = planned
            .ready
            .into_iter()
            .filter(|v| !ledger.is_in_flight(v))
            .collect();
        // Versions new to the mirror are looked up (a settled one that came back, or any
        // listed at a term's first listing); those queued earlier and no longer listed are
        // dropped when their turn comes.
        term.lookups.extend(planned.unknown);
        if planned.evicted > 0 {
            term.done_gen.retain(|v, _| ledger.tracks(v));
            term.reported_done.retain(|v| ledger.tracks(v));
        }
        // In `leave` mode a done row is what keeps a file left in place from being handled
        // again: one whose file left the directory is written again, so that its age (what
        // the retention walk goes by) counts from when it left, not from when it was done.
        if mode == PostProcessing::Leave {
            for version in planned.left_done {
                term.writes.push_back(Write {
                    update: LedgerUpdate::Set {
                        version,
                        state: LedgerState::Done,
                        error: None,
                        detail: None,
                    },
                    then: Then::Nothing,
                });
            }
        }
        for forget in ledger.prune(now) {
            term.done_gen.remove(forget.version());
            term.writes.push_back(Write {
                update: forget,
                then: Then::Nothing,
            });
        }
    }

    /// Reports the result of [`WorkAction::Lookup`]: the rows found of the versions asked.
    pub fn handle_looked_up(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<Vec<LedgerRecord>, StoreError>,
    ) {
        let asked = match self.live_term() {
            Some(term) if term.store_calls.lookup.as_ref().is_some_and(|c| c.0 == op) => term
                .store_calls
                .lookup
                .take()
                .map(|c| c.1)
                .unwrap_or_default(),
            _ => return,
        };
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        match result {
            Ok(found) => {
                let settled: Vec<FileVersion> = found
                    .iter()
                    .filter(|r| r.state.is_settled())
                    .filter(|r| term.listed.get(&r.version.path) == Some(&r.version))
                    .map(|r| r.version.clone())
                    .collect();
                let names: HashSet<&str> = term.listed.keys().map(String::as_str).collect();
                // Never already queued: a version is not planned while it is looked up (and a
                // second copy in the queue would be skipped as in flight or settled anyway).
                term.ready
                    .extend(ledger.on_lookup(now, &asked, found, &names));
                let gen_ = term.list_gen;
                self.revisit_settled(now, gen_, &settled);
            }
            Err(error) => {
                ledger.on_lookup_failed(&asked);
                self.store_failed(now, error);
            }
        }
        self.report_first_added();
    }

    /// The first listing's new versions, once none of them waits for its lookup.
    fn report_first_added(&mut self) {
        let Some(term) = self.term.as_mut() else {
            return;
        };
        if term.store_calls.lookup.is_some() || !term.lookups.is_empty() {
            return;
        }
        let (Some(added), Some(ledger)) = (term.first_added.take(), term.ledger.as_ref()) else {
            return;
        };
        let added: Vec<FileVersion> = added
            .into_iter()
            .filter(|v| ledger.tracks(v) && ledger.state(v).is_none())
            .collect();
        if !added.is_empty() {
            self.events.push_back(WorkEvent::Changes {
                added,
                deleted: Vec::new(),
            });
        }
    }

    /// Reports the result of [`WorkAction::FindStale`]: a page of settled rows older than
    /// the retention. Those of versions not listed and not held by the mirror are forgotten
    /// (fenced, like every write).
    pub fn handle_stale(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<Vec<StaleRow>, StoreError>,
    ) {
        let limit = self.config.lookup_batch.max(1);
        let walk = self.config.retention_walk;
        match self.live_term() {
            Some(term) if term.store_calls.stale == Some(op) => term.store_calls.stale = None,
            _ => return,
        }
        let rows = match result {
            Ok(rows) => rows,
            Err(error) => {
                if let Some(term) = self.term.as_mut() {
                    term.stale_at = now + walk.min(self.config.store_retry.max(walk / 10));
                }
                self.store_failed(now, error);
                return;
            }
        };
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let Some(ledger) = term.ledger.as_ref() else {
            return;
        };
        let unwritten = unwritten(term);
        let full = rows.len() >= limit;
        let mut expired = 0;
        for row in &rows {
            let version = &row.version;
            if term.listed.get(&version.path) == Some(version)
                || ledger.tracks(version)
                || unwritten.contains(version)
                || term.queued_files.contains(version)
            {
                continue;
            }
            expired += 1;
            term.writes.push_back(Write {
                update: LedgerUpdate::Forget(version.clone()),
                then: Then::Nothing,
            });
        }
        if full {
            term.stale_after = rows.last().cloned();
            term.stale_at = now;
        } else {
            term.stale_after = None;
            term.stale_at = now + walk;
        }
        if expired > 0 {
            self.events.push_back(WorkEvent::Expired { rows: expired });
        }
    }

    /// Reports the result of [`WorkAction::Claim`].
    pub fn handle_claimed(
        &mut self,
        now: Instant,
        op: OpId,
        result: Result<Vec<ClaimOutcome>, StoreError>,
    ) {
        let versions = match self.live_term() {
            Some(term) if term.store_calls.claim.as_ref().is_some_and(|c| c.0 == op) => term
                .store_calls
                .claim
                .take()
                .map(|c| c.1)
                .unwrap_or_default(),
            _ => return self.settled_earlier(op),
        };
        let max_attempts = self.config.policy.retry.max_attempts;
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(error) => {
                if let Some(ledger) = self.term.as_mut().and_then(|t| t.ledger.as_mut()) {
                    for version in &versions {
                        ledger.on_claim_failed(version);
                    }
                }
                self.store_failed(now, error);
                return;
            }
        };
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        for (i, version) in versions.iter().enumerate() {
            let Some(outcome) = outcomes.get(i) else {
                ledger.on_claim_failed(version);
                continue;
            };
            let Some(dispatch) = ledger.on_claim(version, outcome) else {
                continue;
            };
            if dispatch.attempt > max_attempts {
                // Earlier attempts were dispatched and never finished (the process died with
                // the handler, say): the budget counts them too.
                let error = format!(
                    "retry budget spent: attempt {} of at most {max_attempts}, the earlier \
                     ones never finished (did the handler stop the process?)",
                    dispatch.attempt
                );
                let (update, _) = ledger.on_outcome(now, version, Outcome::Failed(error.clone()));
                self.events.push_back(WorkEvent::GaveUp {
                    version: version.clone(),
                    attempts: dispatch.attempt - 1,
                    error,
                });
                term.writes.push_back(Write {
                    update,
                    then: Then::MoveToError(version.clone()),
                });
                continue;
            }
            term.claimed.push_back(dispatch);
        }
    }

    /// Reports what a handler returned (a panic is a failure). Results of cancelled handlers
    /// and of earlier terms are ignored.
    pub fn handle_outcome(&mut self, now: Instant, handler: HandlerId, outcome: Outcome) {
        let Some(term) = self.term.as_mut().filter(|t| !t.dead) else {
            return;
        };
        let Some(version) = term.running.remove(&handler) else {
            return;
        };
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        let attempt = ledger.attempts(&version);
        let error = match &outcome {
            Outcome::Failed(e) => Some(e.clone()),
            Outcome::Handled | Outcome::HandledWith(_) => None,
        };
        let (update, after) = ledger.on_outcome(now, &version, outcome);
        let then = match after {
            None => Then::PostProcess(version.clone()),
            Some(AfterFailure::RetryAt(_)) => {
                self.events.push_back(WorkEvent::Failed {
                    version: version.clone(),
                    attempt,
                    error: error.unwrap_or_default(),
                });
                Then::Nothing
            }
            Some(AfterFailure::GiveUp) => {
                self.events.push_back(WorkEvent::GaveUp {
                    version: version.clone(),
                    attempts: attempt,
                    error: error.unwrap_or_default(),
                });
                Then::MoveToError(version.clone())
            }
        };
        term.writes.push_back(Write { update, then });
    }

    /// Reports the result of [`WorkAction::Record`].
    pub fn handle_recorded(&mut self, now: Instant, op: OpId, result: Result<(), StoreError>) {
        let batch = match self.live_term() {
            Some(term) if term.store_calls.record.as_ref().is_some_and(|c| c.0 == op) => term
                .store_calls
                .record
                .take()
                .map(|c| c.1)
                .unwrap_or_default(),
            _ => return self.settled_earlier(op),
        };
        if let Err(error) = result {
            if let Some(term) = &mut self.term {
                // Back to the front, in order: nothing builds on an unwritten update.
                for write in batch.into_iter().rev() {
                    term.writes.push_front(write);
                }
            }
            self.store_failed(now, error);
            return;
        }
        for write in batch {
            self.after_write(write.then);
        }
    }

    fn after_write(&mut self, then: Then) {
        let mode = self.config.post_processing;
        let error_dir = self.config.error_dir.clone();
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let Some(ledger) = term.ledger.as_mut() else {
            return;
        };
        match then {
            Then::Nothing => {}
            Then::PostProcess(version) => {
                term.queued_files.insert(version.clone());
                match post_op(&self.config, &term.listed, &version) {
                    Some(op) => term.file_ops.push_back(op),
                    None => {
                        if mode != PostProcessing::Leave {
                            self.events
                                .push_back(WorkEvent::SourceGone(version.clone()));
                        }
                        let gen_ = term.list_gen + 1;
                        term.writes.push_back(done_write(ledger, &version, gen_));
                    }
                }
            }
            Then::MoveToError(version) => {
                if term.listed.get(&version.path) == Some(&version)
                    && term.queued_files.insert(version.clone())
                {
                    term.file_ops.push_back(FileOp::MoveToError {
                        version,
                        dir: error_dir,
                    });
                }
            }
            Then::Done(version, gen_) => {
                term.queued_files.remove(&version);
                if ledger.tracks(&version) {
                    term.done_gen.insert(version.clone(), gen_);
                }
                self.events.push_back(WorkEvent::Done(version));
            }
        }
    }

    /// Reports the result of [`WorkAction::File`].
    pub fn handle_file_op(&mut self, _now: Instant, op: OpId, result: FileOpResult) {
        let marker = self.config.policy.stability.done_marker_suffix.clone();
        let Some(term) = self.term.as_mut().filter(|t| !t.dead) else {
            return;
        };
        let file_op = match (&term.fs_call, term.file_calls.remove(&op)) {
            (_, Some(file_op)) => file_op,
            (Some((pending, FsCall::File(file_op))), None) if *pending == op => {
                let file_op = file_op.clone();
                term.fs_call = None;
                file_op
            }
            _ => return,
        };
        // The file left the folder before the next listing is issued.
        let gen_ = term.list_gen + 1;
        let failed = |events: &mut VecDeque<WorkEvent>, error: String| {
            events.push_back(WorkEvent::FileOpFailed {
                op: file_op.clone(),
                error,
            });
        };
        match (&file_op, result) {
            (FileOp::PrepareDirs(_), FileOpResult::Failed(error)) => {
                failed(&mut self.events, error);
                // Listing goes on; the folders are tried again with the next term.
                term.dirs_ready = true;
            }
            (FileOp::PrepareDirs(_), _) => term.dirs_ready = true,
            (FileOp::MoveToDone { version, .. } | FileOp::Delete(version), result) => {
                match result {
                    FileOpResult::Failed(error) => {
                        term.queued_files.remove(version);
                        failed(&mut self.events, error);
                    }
                    gone_or_done => {
                        term.removed_here.insert(version.clone(), gen_);
                        if gone_or_done == FileOpResult::SourceGone {
                            self.events
                                .push_back(WorkEvent::SourceGone(version.clone()));
                        }
                        term.file_ops
                            .extend(marker_op(marker.as_deref(), &term.listed, version));
                        let ledger = term.ledger.as_mut().expect("file ops need a ledger");
                        term.writes.push_back(done_write(ledger, version, gen_));
                    }
                }
            }
            (FileOp::MoveToError { version, .. }, result) => {
                term.queued_files.remove(version);
                if !matches!(result, FileOpResult::Failed(_)) {
                    term.removed_here.insert(version.clone(), gen_);
                }
                if let FileOpResult::Failed(error) = result {
                    failed(&mut self.events, error);
                } else {
                    term.file_ops
                        .extend(marker_op(marker.as_deref(), &term.listed, version));
                }
            }
            (FileOp::DeleteMarker(_), FileOpResult::Failed(error)) => {
                failed(&mut self.events, error);
            }
            (FileOp::DeleteMarker(_), _) => {}
        }
    }

    fn live_term(&mut self) -> Option<&mut TermWork> {
        self.term.as_mut().filter(|t| !t.dead)
    }

    fn store_failed(&mut self, now: Instant, error: StoreError) {
        let retry = self.config.store_retry;
        if matches!(error, StoreError::Fenced { .. }) {
            self.events.push_back(WorkEvent::Fenced(error));
            self.cancel_all();
            if let Some(term) = &mut self.term {
                term.dead = true;
            }
            return;
        }
        self.events.push_back(WorkEvent::StoreTrouble(error));
        if let Some(term) = &mut self.term {
            term.store_idle_at = now + retry;
        }
    }

    fn cancel_all(&mut self) -> usize {
        let Some(term) = &mut self.term else {
            return 0;
        };
        Self::drop_claimed(term);
        let running = std::mem::take(&mut term.running);
        let n = running.len();
        // Nothing else of this term is to be started; cancels go first.
        self.actions.retain(|a| matches!(a, WorkAction::Cancel(_)));
        for handler in running.into_keys().rev() {
            self.actions.push_front(WorkAction::Cancel(handler));
        }
        self.events.push_back(WorkEvent::TermEnded { cancelled: n });
        n
    }

    fn end_term(&mut self) {
        if let Some(term) = &self.term {
            // Writes still in flight stay valid in the store for as long as this fence holds
            // there: a new term's work under the same fence (the lease lost here, then renewed
            // before anyone took over) waits for their results before it loads the ledger,
            // or a write landing after its load would go unseen.
            let mut in_flight: BTreeSet<OpId> = term.wait_ops.clone();
            in_flight.extend(term.store_calls.record.as_ref().map(|c| c.0));
            in_flight.extend(term.store_calls.claim.as_ref().map(|c| c.0));
            if !in_flight.is_empty() {
                self.settling = Some((term.fence.clone(), in_flight));
            }
            if term.dead {
                self.term = None;
                return;
            }
            self.cancel_all();
        }
        self.term = None;
    }

    /// A result of an earlier term's call that a term under the same fence waits for.
    fn settled_earlier(&mut self, op: OpId) {
        if let Some(term) = self.term.as_mut() {
            term.wait_ops.remove(&op);
        }
        if let Some((_, ops)) = self.settling.as_mut() {
            ops.remove(&op);
        }
    }
}

/// The move or delete of a handled version, when there is one to do: not in `leave` mode, and
/// only while the latest listing shows this very version at its path (else its source is gone
/// and it is simply done).
fn post_op(
    config: &WorkConfig,
    listed: &HashMap<String, FileVersion>,
    version: &FileVersion,
) -> Option<FileOp> {
    if listed.get(&version.path) != Some(version) {
        return None;
    }
    match config.post_processing {
        PostProcessing::Leave => None,
        PostProcessing::Delete => Some(FileOp::Delete(version.clone())),
        PostProcessing::Move => Some(FileOp::MoveToDone {
            version: version.clone(),
            dir: config.done_dir.clone(),
        }),
    }
}

/// The deletion of `version`'s done marker, if markers are used and it was listed.
/// Whether two post-processing operations could move a file to the same target name (the
/// same base name into the same folder; the collision suffix is derived from the name).
/// The version a post-processing operation moves or deletes.
fn op_version(op: &FileOp) -> Option<&FileVersion> {
    match op {
        FileOp::MoveToDone { version, .. }
        | FileOp::MoveToError { version, .. }
        | FileOp::Delete(version) => Some(version),
        FileOp::PrepareDirs(_) | FileOp::DeleteMarker(_) => None,
    }
}

fn may_collide(a: &FileOp, b: &FileOp) -> bool {
    let target = |op: &FileOp| match op {
        FileOp::MoveToDone { version, dir } | FileOp::MoveToError { version, dir } => {
            let name = version.path.rsplit('/').next().unwrap_or(&version.path);
            Some((dir.clone(), name.to_string()))
        }
        FileOp::PrepareDirs(_) | FileOp::Delete(_) | FileOp::DeleteMarker(_) => None,
    };
    matches!((target(a), target(b)), (Some(x), Some(y)) if x == y)
}

fn marker_op(
    suffix: Option<&str>,
    listed: &HashMap<String, FileVersion>,
    version: &FileVersion,
) -> Option<FileOp> {
    let path = format!("{}{}", version.path, suffix?);
    listed
        .contains_key(&path)
        .then_some(FileOp::DeleteMarker(path))
}

/// Versions whose latest update is queued or being written.
fn unwritten(term: &TermWork) -> BTreeSet<FileVersion> {
    let mut unwritten: BTreeSet<FileVersion> = term
        .writes
        .iter()
        .map(|w| w.update.version().clone())
        .collect();
    if let Some((_, batch)) = &term.store_calls.record {
        unwritten.extend(batch.iter().map(|w| w.update.version().clone()));
    }
    unwritten
}

fn done_write(ledger: &mut Ledger, version: &FileVersion, gen_: u64) -> Write {
    Write {
        update: ledger.on_post_processed(version),
        then: Then::Done(version.clone(), gen_),
    }
}

#[cfg(test)]
mod tests;
