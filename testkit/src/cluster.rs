//! A deterministic cluster for handler authors: N members of one group, each running the
//! production [`Elector`] and [`Worker`] (glue only, as the listener's driver is), over one
//! [`MemStore`] and one [`MemFs`], on simulated time that jumps from event to event. Nothing
//! sleeps: a minute of cluster time runs in milliseconds, and the same seed gives the same run.
//!
//! The handler is a closure called when a member dispatches a file; its result reaches the
//! member's worker [`ClusterConfig::handler_time`] later. A crash, a pause past the lease or a
//! partition in between loses that result, exactly as a real process would, and the file is
//! redelivered (with `redelivery = true`) by the next leader.
//!
//! Faults: [`Cluster::crash`] (process death, until [`Cluster::restart`]), [`Cluster::pause`]
//! (frozen, e.g. a GC or SIGSTOP: events wait until it resumes), [`Cluster::partition`] (its
//! store calls fail), [`Cluster::heal`] (ends pauses and partitions, restarts crashed members).
//!
//! Unlike [`crate::sim`], which draws random schedules and checks the protocol's invariants,
//! the schedule here is the test's own.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use coord_core::{
    Action, CoordinationStore, Dispatch, ElectionConfig, Elector, Event, FileOp, FileOpResult,
    FileVersion, FsError, GroupId, HandlerId, Incarnation, LedgerRecord, LedgerState, ListOptions,
    ListedFile, MemberId, OpId, Outcome, PostProcessing, RemoteFs, RenameMode, RetryPolicy,
    StoreError, Timing, WorkAction, WorkConfig, Worker, join_remote,
};

use crate::{Clock, MemFs, MemStore, SimRng};

/// The settings of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Members, `m0` to `m{n-1}`.
    pub members: usize,
    /// Seeds the incarnations (every other choice is the test's).
    pub seed: u64,
    /// Heartbeat, renew deadline, liveness timeout.
    pub timing: Timing,
    /// Time between two listings of the leader.
    pub poll_interval: Duration,
    /// How long every handler runs before its result is reported.
    pub handler_time: Duration,
    /// Round trip of every store call and file operation.
    pub latency: Duration,
    /// The watched folder on the [`MemFs`].
    pub watch_dir: String,
    /// After success: move to `{watch_dir}/done`, delete, or leave.
    pub post_processing: PostProcessing,
    /// Attempts and backoff.
    pub retry: RetryPolicy,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            members: 3,
            seed: 1,
            timing: Timing::from_liveness(Duration::from_millis(500), Duration::from_secs(3)),
            poll_interval: Duration::from_millis(500),
            handler_time: Duration::from_millis(200),
            latency: Duration::from_millis(2),
            watch_dir: "/in".into(),
            post_processing: PostProcessing::Move,
            retry: RetryPolicy::default(),
        }
    }
}

/// One dispatch of a file to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The member that dispatched.
    pub member: usize,
    /// The version, attempt and redelivery flag, as the handler saw them.
    pub dispatch: Dispatch,
    /// Cluster time of the dispatch.
    pub at: Duration,
    /// The handler's result once the worker received it; `None` while running or when the
    /// result was lost (crash, cancelled after the lease ended).
    pub reported: Option<Result<(), String>>,
}

#[derive(Debug)]
enum Ev {
    Wake,
    Election(ElectionCall, Result<Reply, StoreError>),
    Work(OpId, WorkCall, Result<Reply, StoreError>),
    Fs(OpId, FsReply),
    HandlerDone(HandlerId, usize, Result<(), String>),
}

#[derive(Debug)]
enum Reply {
    Heartbeat(coord_core::Observation),
    TakeOver(coord_core::TakeoverOutcome),
    Stopped,
    Loaded(Vec<LedgerRecord>),
    Claimed(Vec<coord_core::ClaimOutcome>),
    Recorded,
    LookedUp(Vec<LedgerRecord>),
    Stale(Vec<coord_core::StaleRow>),
}

#[derive(Debug, Clone, Copy)]
enum ElectionCall {
    Heartbeat,
    TakeOver,
    Stop,
}

#[derive(Debug, Clone, Copy)]
enum WorkCall {
    Load,
    Claim,
    Record,
    Lookup,
    Stale,
}

#[derive(Debug)]
enum FsReply {
    Listed(Result<Vec<ListedFile>, String>),
    File(FileOpResult),
}

#[derive(Debug, Default)]
struct Member {
    generation: u64,
    elector: Option<Elector>,
    worker: Option<Worker>,
    crashed: bool,
    paused_until: Duration,
    partitioned_until: Duration,
    /// Running handlers: handler → index in the deliveries.
    handlers: BTreeMap<HandlerId, usize>,
}

/// N members over a [`MemStore`] and a [`MemFs`] on simulated time, with a handler closure.
pub struct Cluster<H> {
    cfg: ClusterConfig,
    handler: H,
    group: GroupId,
    store: MemStore,
    clock: Clock,
    fs: MemFs,
    rng: SimRng,
    base: Instant,
    wall_base: SystemTime,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, (usize, u64, Ev)>,
    members: Vec<Member>,
    deliveries: Vec<Delivery>,
}

impl<H> std::fmt::Debug for Cluster<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("now", &self.now)
            .field("members", &self.members.len())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

/// The in-memory store and file system never wait: their futures are ready at once.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("in-memory call pending (latency set on the MemStore?)"),
    }
}

impl<H> Cluster<H>
where
    H: FnMut(&Dispatch) -> Result<(), String>,
{
    /// Starts every member at time zero (nobody leads yet: run a little first).
    pub fn new(cfg: ClusterConfig, handler: H) -> Cluster<H> {
        let clock = Clock::simulated();
        let fs = MemFs::new();
        let mut cluster = Cluster {
            handler,
            group: GroupId::new("cluster").unwrap(),
            store: MemStore::new(clock.clone()),
            base: clock.now(),
            clock,
            fs,
            rng: SimRng::new(cfg.seed),
            wall_base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            members: (0..cfg.members).map(|_| Member::default()).collect(),
            deliveries: Vec::new(),
            cfg,
        };
        ready(cluster.fs.create_dir_all(&cluster.cfg.watch_dir.clone())).unwrap();
        for m in 0..cluster.members.len() {
            cluster.start(m);
        }
        cluster
    }

    // ---- accessors ----

    /// Cluster time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The member that may dispatch now (holds an unexpired lease by its own clock).
    pub fn leader(&self) -> Option<usize> {
        let local = self.local();
        self.members.iter().position(|m| {
            m.elector
                .as_ref()
                .is_some_and(|e| e.may_dispatch(local).is_some())
        })
    }

    /// Every dispatch so far, in order.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// The dispatches of the file at `path`.
    pub fn deliveries_of(&self, path: &str) -> Vec<&Delivery> {
        self.deliveries
            .iter()
            .filter(|d| d.dispatch.version.path == path)
            .collect()
    }

    /// Handlers running now, across members.
    pub fn running(&self) -> usize {
        self.members.iter().map(|m| m.handlers.len()).sum()
    }

    /// The group's ledger in the store.
    pub fn ledger(&self) -> Vec<LedgerRecord> {
        self.store.inspect(|s| s.ledger_rows(&self.group))
    }

    /// The ledger state of the latest version recorded at `path`.
    pub fn ledger_state(&self, path: &str) -> Option<LedgerState> {
        self.ledger()
            .into_iter()
            .filter(|r| r.version.path == path)
            .max_by_key(|r| r.version.mtime_ms)
            .map(|r| r.state)
    }

    /// The shared file system (to inspect the done and error folders).
    pub fn fs(&self) -> &MemFs {
        &self.fs
    }

    /// The shared store.
    pub fn store(&self) -> &MemStore {
        &self.store
    }

    // ---- inputs ----

    /// A file arrives in the watched folder (`path` relative to it), stamped with the cluster
    /// time; returns its full path.
    pub fn put_file(&mut self, name: &str, bytes: &[u8]) -> String {
        let path = join_remote(&self.cfg.watch_dir, name);
        self.fs.put(&path, bytes, self.wall_base + self.now);
        path
    }

    /// Process death of member `i`: its handlers die with it, its results are lost. It stays
    /// down until [`Cluster::restart`] or [`Cluster::heal`].
    pub fn crash(&mut self, i: usize) {
        let member = &mut self.members[i];
        member.generation += 1;
        member.elector = None;
        member.worker = None;
        member.handlers.clear();
        member.crashed = true;
    }

    /// Starts a crashed member again, with a new incarnation.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].crashed {
            self.start(i);
        }
    }

    /// Freezes member `i` for `d` (no event reaches it; its clock keeps running).
    pub fn pause(&mut self, i: usize, d: Duration) {
        self.members[i].paused_until = self.now + d;
        self.schedule(i, self.now + d, Ev::Wake);
    }

    /// Cuts member `i` from the store for `d`: its store calls fail.
    pub fn partition(&mut self, i: usize, d: Duration) {
        self.members[i].partitioned_until = self.now + d;
    }

    /// Ends every pause and partition and restarts crashed members.
    pub fn heal(&mut self) {
        for i in 0..self.members.len() {
            self.members[i].paused_until = self.now;
            self.members[i].partitioned_until = self.now;
            if self.members[i].crashed {
                self.start(i);
            } else {
                self.schedule(i, self.now, Ev::Wake);
            }
        }
    }

    /// Runs for `d` of cluster time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step_before(end) {}
        self.set_now(end);
    }

    /// Runs until `pred` holds (checked after every event) or `limit` of cluster time passed;
    /// returns whether `pred` held.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step_before(end) {
                self.set_now(end);
                return pred(self);
            }
        }
    }

    // ---- the event loop ----

    fn local(&self) -> Instant {
        self.base + self.now
    }

    fn set_now(&mut self, t: Duration) {
        if t > self.now {
            self.clock.advance(t - self.now);
            self.now = t;
        }
    }

    fn schedule(&mut self, m: usize, at: Duration, ev: Ev) {
        self.seq += 1;
        let generation = self.members[m].generation;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, (m, generation, ev));
    }

    /// Handles the next event due before `end`; false when there is none.
    fn step_before(&mut self, end: Duration) -> bool {
        let Some(&Reverse((at, seq))) = self.queue.peek() else {
            return false;
        };
        if at > end {
            return false;
        }
        self.queue.pop();
        self.set_now(at);
        let (m, generation, ev) = self.events.remove(&seq).expect("scheduled event");
        let member = &self.members[m];
        if member.generation != generation || member.crashed {
            return true;
        }
        if member.paused_until > self.now {
            // Frozen: the event waits for the member to resume, in order.
            let until = member.paused_until;
            self.seq += 1;
            self.queue.push(Reverse((until, self.seq)));
            self.events.insert(self.seq, (m, generation, ev));
            return true;
        }
        self.on_event(m, ev);
        self.drive(m);
        true
    }

    fn start(&mut self, m: usize) {
        let incarnation = Incarnation(self.rng.next_u64());
        let config = ElectionConfig {
            member: MemberId::new(format!("m{m}")).unwrap(),
            group: self.group.clone(),
            timing: self.cfg.timing.clone(),
        };
        let mut work = WorkConfig::new(
            join_remote(&self.cfg.watch_dir, "done"),
            join_remote(&self.cfg.watch_dir, "error"),
        );
        work.policy.retry = self.cfg.retry.clone();
        work.post_processing = self.cfg.post_processing;
        work.poll_interval = self.cfg.poll_interval;
        work.store_retry = self.cfg.poll_interval;
        let local = self.local();
        let member = &mut self.members[m];
        member.generation += 1;
        member.crashed = false;
        member.handlers.clear();
        member.elector = Some(Elector::new(config, incarnation, local));
        member.worker = Some(Worker::new(work));
        self.schedule(m, self.now, Ev::Wake);
    }

    fn on_event(&mut self, m: usize, ev: Ev) {
        let local = self.local();
        self.sync_lease(m);
        let member = &mut self.members[m];
        match ev {
            Ev::Wake => {}
            Ev::Election(call, result) => {
                let Some(elector) = member.elector.as_mut() else {
                    return;
                };
                match (call, result) {
                    (ElectionCall::Heartbeat, Ok(Reply::Heartbeat(obs))) => {
                        elector.handle_heartbeat(local, Ok(obs))
                    }
                    (ElectionCall::Heartbeat, Err(e)) => elector.handle_heartbeat(local, Err(e)),
                    (ElectionCall::TakeOver, Ok(Reply::TakeOver(out))) => {
                        elector.handle_takeover(local, Ok(out))
                    }
                    (ElectionCall::TakeOver, Err(e)) => elector.handle_takeover(local, Err(e)),
                    (ElectionCall::Stop, result) => {
                        elector.handle_stopped(local, result.map(|_| ()))
                    }
                    (call, result) => unreachable!("{call:?} answered with {result:?}"),
                }
            }
            Ev::Work(op, call, result) => {
                let Some(worker) = member.worker.as_mut() else {
                    return;
                };
                match (call, result) {
                    (WorkCall::Load, Ok(Reply::Loaded(r))) => {
                        worker.handle_loaded(local, op, Ok(r))
                    }
                    (WorkCall::Load, Err(e)) => worker.handle_loaded(local, op, Err(e)),
                    (WorkCall::Claim, Ok(Reply::Claimed(r))) => {
                        worker.handle_claimed(local, op, Ok(r))
                    }
                    (WorkCall::Claim, Err(e)) => worker.handle_claimed(local, op, Err(e)),
                    (WorkCall::Record, Ok(_)) => worker.handle_recorded(local, op, Ok(())),
                    (WorkCall::Record, Err(e)) => worker.handle_recorded(local, op, Err(e)),
                    (WorkCall::Lookup, Ok(Reply::LookedUp(r))) => {
                        worker.handle_looked_up(local, op, Ok(r))
                    }
                    (WorkCall::Lookup, Err(e)) => worker.handle_looked_up(local, op, Err(e)),
                    (WorkCall::Stale, Ok(Reply::Stale(r))) => worker.handle_stale(local, op, Ok(r)),
                    (WorkCall::Stale, Err(e)) => worker.handle_stale(local, op, Err(e)),
                    (call, result) => unreachable!("{call:?} answered with {result:?}"),
                }
            }
            Ev::Fs(op, reply) => {
                let Some(worker) = member.worker.as_mut() else {
                    return;
                };
                match reply {
                    FsReply::Listed(listing) => worker.handle_listed(local, op, listing),
                    FsReply::File(result) => worker.handle_file_op(local, op, result),
                }
            }
            Ev::HandlerDone(handler, index, result) => {
                // Cancelled (lease lost): the result is ignored, as the listener ignores it.
                if member.handlers.remove(&handler).is_none() {
                    return;
                }
                let outcome = match &result {
                    Ok(()) => Outcome::Handled,
                    Err(e) => Outcome::Failed(e.clone()),
                };
                self.deliveries[index].reported = Some(result);
                if let Some(worker) = self.members[m].worker.as_mut() {
                    worker.handle_outcome(local, handler, outcome);
                }
            }
        }
    }

    fn sync_lease(&mut self, m: usize) {
        let local = self.local();
        let member = &mut self.members[m];
        if let (Some(elector), Some(worker)) = (&member.elector, &mut member.worker) {
            let lease = elector.may_dispatch(local);
            worker.set_lease(local, lease.as_ref());
        }
    }

    /// A store call of member `m`, answered after the latency (an error while partitioned).
    fn store_call<T>(
        &mut self,
        m: usize,
        operation: &'static str,
        call: impl FnOnce(&MemStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.members[m].partitioned_until > self.now {
            return Err(StoreError::Unavailable {
                operation,
                group: self.group.to_string(),
                cause: "partitioned from the store".into(),
            });
        }
        call(&self.store)
    }

    /// Performs every action the member's machines have for now.
    fn drive(&mut self, m: usize) {
        let local = self.local();
        let at = self.now + self.cfg.latency;
        loop {
            let Some(elector) = self.members[m].elector.as_mut() else {
                return;
            };
            if let Some(action) = elector.poll_action(local) {
                let (call, reply) = match action {
                    Action::Heartbeat(r) => (
                        ElectionCall::Heartbeat,
                        self.store_call(m, "heartbeat", |s| ready(s.heartbeat(&r)))
                            .map(Reply::Heartbeat),
                    ),
                    Action::TakeOver(r) => (
                        ElectionCall::TakeOver,
                        self.store_call(m, "takeover", |s| ready(s.take_over(&r)))
                            .map(Reply::TakeOver),
                    ),
                    Action::Release(f) => (
                        ElectionCall::Stop,
                        self.store_call(m, "release", |s| ready(s.release(&f)))
                            .map(|()| Reply::Stopped),
                    ),
                    Action::Leave {
                        group,
                        member,
                        incarnation,
                    } => (
                        ElectionCall::Stop,
                        self.store_call(m, "leave", |s| {
                            ready(s.leave(&group, &member, incarnation))
                        })
                        .map(|()| Reply::Stopped),
                    ),
                };
                self.schedule(m, at, Ev::Election(call, reply));
                continue;
            }
            let Some(event) = elector.poll_event() else {
                break;
            };
            if matches!(event, Event::Stopped) {
                self.crash(m);
                return;
            }
        }
        self.sync_lease(m);
        loop {
            let Some(worker) = self.members[m].worker.as_mut() else {
                return;
            };
            let Some(action) = worker.poll_action(local) else {
                break;
            };
            match action {
                WorkAction::Cancel(handler) => {
                    self.members[m].handlers.remove(&handler);
                }
                WorkAction::LoadLedger { op } => {
                    let group = self.group.clone();
                    let r = self
                        .store_call(m, "load_ledger", |s| ready(s.load_ledger(&group)))
                        .map(Reply::Loaded);
                    self.schedule(m, at, Ev::Work(op, WorkCall::Load, r));
                }
                WorkAction::Claim {
                    op,
                    fence,
                    versions,
                } => {
                    let r = self
                        .store_call(m, "claim", |s| ready(s.claim(&fence, &versions)))
                        .map(Reply::Claimed);
                    self.schedule(m, at, Ev::Work(op, WorkCall::Claim, r));
                }
                WorkAction::Record { op, fence, updates } => {
                    let r = self
                        .store_call(m, "record", |s| ready(s.record(&fence, &updates)))
                        .map(|()| Reply::Recorded);
                    self.schedule(m, at, Ev::Work(op, WorkCall::Record, r));
                }
                WorkAction::Lookup { op, versions } => {
                    let group = self.group.clone();
                    let r = self
                        .store_call(m, "lookup_ledger", |s| {
                            ready(s.lookup_ledger(&group, &versions))
                        })
                        .map(Reply::LookedUp);
                    self.schedule(m, at, Ev::Work(op, WorkCall::Lookup, r));
                }
                WorkAction::FindStale {
                    op,
                    older_than,
                    after,
                    limit,
                } => {
                    let group = self.group.clone();
                    let r = self
                        .store_call(m, "stale_settled", |s| {
                            ready(s.stale_settled(&group, older_than, after.as_ref(), limit))
                        })
                        .map(Reply::Stale);
                    self.schedule(m, at, Ev::Work(op, WorkCall::Stale, r));
                }
                WorkAction::List { op } => {
                    let listed = self.list();
                    self.schedule(m, at, Ev::Fs(op, FsReply::Listed(listed)));
                }
                WorkAction::File { op, file_op } => {
                    let result = self.file_op(&file_op);
                    self.schedule(m, at, Ev::Fs(op, FsReply::File(result)));
                }
                WorkAction::Dispatch {
                    handler, dispatch, ..
                } => {
                    let result = (self.handler)(&dispatch);
                    let index = self.deliveries.len();
                    self.deliveries.push(Delivery {
                        member: m,
                        dispatch,
                        at: self.now,
                        reported: None,
                    });
                    self.members[m].handlers.insert(handler, index);
                    let done = self.now + self.cfg.handler_time;
                    self.schedule(m, done, Ev::HandlerDone(handler, index, result));
                }
            }
        }
        while self.members[m]
            .worker
            .as_mut()
            .and_then(Worker::poll_event)
            .is_some()
        {}
        self.schedule_wake(m);
    }

    fn schedule_wake(&mut self, m: usize) {
        let member = &self.members[m];
        let deadlines = [
            member.elector.as_ref().and_then(Elector::next_deadline),
            member.worker.as_ref().and_then(Worker::next_deadline),
        ];
        if let Some(next) = deadlines.into_iter().flatten().min() {
            let at = next.saturating_duration_since(self.base).max(self.now);
            self.schedule(m, at, Ev::Wake);
        }
    }

    fn list(&self) -> Result<Vec<ListedFile>, String> {
        let listing = ready(self.fs.list(&self.cfg.watch_dir, &ListOptions::default()))
            .map_err(|e| e.to_string())?;
        Ok(listing
            .entries
            .iter()
            .filter(|e| e.kind == coord_core::EntryKind::File)
            .map(|e| ListedFile {
                version: e.version(),
                name: e.name.clone(),
            })
            .collect())
    }

    fn file_op(&self, op: &FileOp) -> FileOpResult {
        let result = match op {
            FileOp::PrepareDirs(dirs) => dirs
                .iter()
                .try_for_each(|d| ready(self.fs.create_dir_all(d)))
                .map(|()| None),
            FileOp::MoveToDone { version, dir } | FileOp::MoveToError { version, dir } => {
                self.move_into(version, dir).map(Some)
            }
            FileOp::Delete(version) => ready(self.fs.delete(&version.path)).map(|()| None),
            FileOp::DeleteMarker(path) => match ready(self.fs.delete(path)) {
                Err(FsError::NotFound { .. }) | Ok(()) => Ok(None),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(to) => FileOpResult::Done(to),
            Err(FsError::NotFound { .. }) => FileOpResult::SourceGone,
            Err(e) => FileOpResult::Failed(e.to_string()),
        }
    }

    /// No-overwrite move into `dir`, a unique name on a collision.
    fn move_into(&self, version: &FileVersion, dir: &str) -> Result<String, FsError> {
        let name = version.path.rsplit('/').next().unwrap_or(&version.path);
        for n in 0.. {
            let to = match n {
                0 => join_remote(dir, name),
                n => join_remote(dir, &format!("{name}.{n}")),
            };
            match ready(self.fs.rename(&version.path, &to, RenameMode::NoOverwrite)) {
                Err(FsError::AlreadyExists { .. }) => continue,
                other => return other.map(|()| to),
            }
        }
        unreachable!("an unbounded loop")
    }
}
