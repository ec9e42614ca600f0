//! The simulated world: the event queue, the store, the directory, faults and invariants.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use coord_core::{
    ClaimOutcome, Dispatch, Fence, FileOpResult, FileVersion, GroupId, HandlerId, HeartbeatRequest,
    Incarnation, LedgerRecord, LedgerState, LedgerUpdate, ListedFile, MemberId, Observation, OpId,
    PostProcessing, RetryPolicy, StaleRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
    Timing,
};

use super::member::Member;
use crate::rng::SimRng;
use crate::store::StoreState;

/// A schedule that needs more events than this is stuck in a loop.
const MAX_EVENTS: u64 = 1_000_000;
const TRACE_FACTOR: usize = 2;

/// The shape of one schedule, drawn from its seed by [`SimConfig::random`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Members in the group (2 to 5).
    pub members: usize,
    /// The election timing.
    pub timing: Timing,
    /// How often the leader lists the directory.
    pub poll_interval: Duration,
    /// How long faults are injected.
    pub fault_phase: Duration,
    /// How long the healed cluster runs afterwards.
    pub quiet_phase: Duration,
    /// Fault events in the fault phase.
    pub faults: usize,
    /// Files that arrive during the fault phase.
    pub files: usize,
    /// Chance in 1000 that a handler call fails.
    pub handler_failure_per_mille: u64,
    /// Retry policy of the ledger.
    pub retry: RetryPolicy,
    /// Largest clock-rate drift of a member, in parts per million.
    pub max_drift_ppm: u64,
    /// Largest one-way latency to the store in normal operation.
    pub max_latency: Duration,
    /// What happens to handled files.
    pub post_processing: PostProcessing,
    /// Handlers running at once on the leader.
    pub max_in_flight: usize,
    /// Chance in 1000 that a handler runs longer than the liveness timeout.
    pub long_handler_per_mille: u64,
}

impl SimConfig {
    /// A random configuration.
    pub fn random(rng: &mut SimRng) -> SimConfig {
        let (hb, liveness) = match rng.range(0, 3) {
            0 => (1000, 5000),
            1 => (500, 2000),
            _ => (100, 600),
        };
        let timing =
            Timing::from_liveness(Duration::from_millis(hb), Duration::from_millis(liveness));
        let poll_interval = Duration::from_millis(hb * rng.range(1, 3));
        SimConfig {
            members: rng.range(2, 6) as usize,
            fault_phase: timing.liveness_timeout * 8,
            // Long enough for every attempt of a file whose handlers outlive the liveness
            // timeout (up to 3x), one after the other.
            quiet_phase: timing.liveness_timeout * 20 + poll_interval * 20,
            timing,
            poll_interval,
            faults: rng.range(0, 9) as usize,
            files: rng.range(1, 13) as usize,
            handler_failure_per_mille: rng.range(0, 300),
            retry: RetryPolicy {
                max_attempts: rng.range(1, 5) as u32,
                initial_backoff: poll_interval / 2,
                max_backoff: poll_interval * 4,
            },
            max_drift_ppm: 50_000,
            max_latency: Duration::from_millis(rng.range(1, 25)),
            post_processing: match rng.range(0, 10) {
                0..7 => PostProcessing::Move,
                7 => PostProcessing::Delete,
                _ => PostProcessing::Leave,
            },
            max_in_flight: rng.range(1, 5) as usize,
            long_handler_per_mille: rng.range(0, 150),
        }
    }
}

/// What one schedule did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Members in the group.
    pub members: usize,
    /// Events processed.
    pub events: u64,
    /// Successful takeovers.
    pub takeovers: u64,
    /// Handler calls.
    pub dispatches: u64,
    /// Handler calls flagged as redelivery.
    pub redeliveries: u64,
    /// Faults injected.
    pub faults: u64,
    /// Files that arrived.
    pub files: usize,
    /// Files done.
    pub done: usize,
    /// Files in the error state.
    pub errored: usize,
    /// Time from the end of faults to the first dispatching leader.
    pub recovery: Option<Duration>,
}

/// A broken invariant, with the seed that replays it and the last events before it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// Simulated time of the violation.
    pub at: Duration,
    /// Which invariant.
    pub invariant: &'static str,
    /// What happened.
    pub detail: String,
    /// The last events, oldest first.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: invariant {} violated at {:?}: {}",
            self.seed, self.invariant, self.at, self.detail
        )?;
        writeln!(
            f,
            "replay: SIM_SEED={} cargo test -p testkit --test simulation replay -- --nocapture",
            self.seed
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// A store request in flight.
#[derive(Debug, Clone)]
pub(super) enum Req {
    Heartbeat(HeartbeatRequest),
    TakeOver(TakeoverRequest),
    Release(Fence),
    Leave(Incarnation),
    Load,
    Claim(Fence, Vec<FileVersion>),
    Record(Fence, Vec<LedgerUpdate>),
    Lookup(Vec<FileVersion>),
    Stale(Duration, Option<StaleRow>, usize),
}

/// A store reply.
#[derive(Debug, Clone)]
pub(super) enum Rep {
    Heartbeat(Result<Observation, StoreError>),
    TakeOver(Result<TakeoverOutcome, StoreError>),
    Stopped(Result<(), StoreError>),
    Load(Result<Vec<LedgerRecord>, StoreError>),
    Claim(Result<Vec<ClaimOutcome>, StoreError>),
    Record(Result<(), StoreError>),
    Lookup(Result<Vec<LedgerRecord>, StoreError>),
    Stale(Result<Vec<StaleRow>, StoreError>),
}

#[derive(Debug, Clone)]
pub(super) enum Fault {
    Crash(usize, Duration),
    Stop(usize, Duration),
    Pause(usize, Duration),
    Partition(usize, Duration),
    StoreDown(Duration),
    StoreSlow(Duration, Duration),
    /// The store's clock steps forward (an NTP correction), for good.
    StoreClockStep(Duration),
}

#[derive(Debug, Clone)]
pub(super) enum Ev {
    Wake(usize, u64),
    Apply {
        m: usize,
        op: u64,
        req: Req,
    },
    Reply {
        m: usize,
        gen_: u64,
        op: u64,
        rep: Rep,
    },
    Timeout {
        m: usize,
        gen_: u64,
        op: u64,
    },
    HandlerDone {
        m: usize,
        gen_: u64,
        handler: HandlerId,
        ok: bool,
    },
    FsDone {
        m: usize,
        gen_: u64,
        op: OpId,
        res: FsRes,
    },
    Fault(Fault),
    Heal,
    FileWrite {
        path: String,
        size: u64,
        last: bool,
    },
    Quiet,
}

/// The answer of a file-source call.
#[derive(Debug, Clone)]
pub(super) enum FsRes {
    Listed(Vec<ListedFile>),
    File(FileOpResult),
}

#[derive(Debug, Clone)]
pub(super) struct SimFile {
    pub(super) version: FileVersion,
    pub(super) last: bool,
}

pub(super) struct World {
    pub(super) seed: u64,
    pub(super) cfg: SimConfig,
    pub(super) rng: SimRng,
    pub(super) base: Instant,
    pub(super) now: Duration,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    pending: HashMap<u64, Ev>,
    seq: u64,
    pub(super) next_op: u64,
    pub(super) store: StoreState,
    store_down_until: Duration,
    store_slow: Option<(Duration, Duration)>,
    /// How far the store's clock is ahead of simulated time (forward steps add up).
    store_clock_ahead: Duration,
    pub(super) group: GroupId,
    pub(super) members: Vec<Member>,
    pub(super) dir: BTreeMap<String, SimFile>,
    pub(super) error_dir: BTreeSet<String>,
    pub(super) done_dir: BTreeSet<String>,
    pub(super) handled_ok: BTreeMap<FileVersion, u32>,
    /// Handlers running now, per version: (member, handler).
    running: BTreeMap<FileVersion, Vec<(usize, HandlerId)>>,
    /// Handler calls per version.
    deliveries: BTreeMap<FileVersion, u32>,
    finals: BTreeMap<String, FileVersion>,
    terms: BTreeMap<Term, (MemberId, Incarnation)>,
    pub(super) quiet_at: Option<Duration>,
    pub(super) report: SimReport,
    trace: VecDeque<(Duration, String)>,
    pub(super) violation: Option<Violation>,
}

/// Runs the schedule of `seed` with its random configuration.
pub fn run_seed(seed: u64) -> Result<SimReport, Violation> {
    let mut rng = SimRng::new(seed);
    let cfg = SimConfig::random(&mut rng);
    run_with(seed, cfg)
}

/// Runs the schedule of `seed` with a given configuration.
pub fn run_with(seed: u64, cfg: SimConfig) -> Result<SimReport, Violation> {
    let mut world = World::new(seed, cfg);
    world.run()
}

impl World {
    fn new(seed: u64, cfg: SimConfig) -> World {
        let rng = SimRng::new(seed.wrapping_mul(31).wrapping_add(7));
        World {
            seed,
            report: SimReport {
                seed,
                members: cfg.members,
                files: cfg.files,
                ..SimReport::default()
            },
            cfg,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            next_op: 0,
            store: StoreState::new(),
            store_down_until: Duration::ZERO,
            store_slow: None,
            store_clock_ahead: Duration::ZERO,
            group: GroupId::new("sim-group").unwrap(),
            members: Vec::new(),
            dir: BTreeMap::new(),
            error_dir: BTreeSet::new(),
            done_dir: BTreeSet::new(),
            handled_ok: BTreeMap::new(),
            running: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            finals: BTreeMap::new(),
            terms: BTreeMap::new(),
            quiet_at: None,
            trace: VecDeque::new(),
            violation: None,
        }
    }

    pub(super) fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.pending.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq)));
    }

    pub(super) fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.trace.len() == 60 * TRACE_FACTOR {
            self.trace.pop_front();
        }
        self.trace.push_back((self.now, line()));
    }

    pub(super) fn violate(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                seed: self.seed,
                at: self.now,
                invariant,
                detail,
                trace: self
                    .trace
                    .iter()
                    .map(|(t, l)| format!("{:>10.3}s {l}", t.as_secs_f64()))
                    .collect(),
            });
        }
    }

    fn run(&mut self) -> Result<SimReport, Violation> {
        for m in 0..self.cfg.members {
            let start = self
                .rng
                .millis(0, self.cfg.timing.heartbeat_interval.as_millis() as u64);
            let mut member = Member::new(m, &mut self.rng, self.cfg.max_drift_ppm);
            member.down_until = start;
            self.members.push(member);
            self.schedule(start, Ev::Heal);
        }
        self.plan_files();
        self.plan_faults();
        let quiet_at = self.cfg.fault_phase;
        self.schedule(quiet_at, Ev::Quiet);
        let end = quiet_at + self.cfg.quiet_phase;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            let ev = self.pending.remove(&seq).expect("scheduled event");
            self.report.events += 1;
            if self.report.events > MAX_EVENTS {
                self.violate("bounded schedule", format!("more than {MAX_EVENTS} events"));
                return Err(self.violation.take().expect("just set"));
            }
            self.handle(ev);
            self.check_single_dispatcher();
            self.check_single_handler();
            if let Some(v) = self.violation.take() {
                return Err(v);
            }
        }
        self.now = end;
        self.check_end();
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(self.report.clone()),
        }
    }

    fn plan_files(&mut self) {
        for i in 0..self.cfg.files {
            let path = format!("/in/file-{i:03}.csv");
            let mut at = self.rng.millis(0, self.cfg.fault_phase.as_millis() as u64);
            let steps = self.rng.range(1, 4);
            let mut size = 0;
            for step in 0..steps {
                size += self.rng.range(1, 10_000);
                let last = step + 1 == steps;
                self.schedule(
                    at,
                    Ev::FileWrite {
                        path: path.clone(),
                        size,
                        last,
                    },
                );
                // Writes follow each other faster than two listings, as a steady upload does.
                at += self
                    .rng
                    .millis(1, (self.cfg.poll_interval.as_millis() as u64 / 3).max(2));
            }
        }
    }

    fn plan_faults(&mut self) {
        let liveness = self.cfg.timing.liveness_timeout.as_millis() as u64;
        let hb = self.cfg.timing.heartbeat_interval.as_millis() as u64;
        for _ in 0..self.cfg.faults {
            let at = self.rng.millis(0, self.cfg.fault_phase.as_millis() as u64);
            let m = self.rng.range(0, self.cfg.members as u64) as usize;
            let fault = match self.rng.range(0, 100) {
                0..25 => Fault::Crash(m, self.rng.millis(0, liveness * 3)),
                25..40 => Fault::Stop(m, self.rng.millis(0, liveness * 2)),
                40..60 => Fault::Pause(m, self.rng.millis(liveness / 5, liveness * 3)),
                60..75 => Fault::Partition(m, self.rng.millis(liveness / 2, liveness * 3)),
                75..90 => Fault::StoreDown(self.rng.millis(liveness / 2, liveness * 3)),
                90..95 => Fault::StoreClockStep(self.rng.millis(liveness / 2, liveness * 4)),
                _ => Fault::StoreSlow(
                    self.rng.millis(hb / 4, hb * 2),
                    self.rng.millis(liveness, liveness * 3),
                ),
            };
            self.schedule(at, Ev::Fault(fault));
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Wake(m, gen_) => {
                if self.members[m].gen_ == gen_ {
                    self.deliver_or_buffer(m, Ev::Wake(m, gen_));
                }
            }
            Ev::Apply { m, op, req } => self.apply(m, op, req),
            Ev::Reply { m, gen_, .. }
            | Ev::Timeout { m, gen_, .. }
            | Ev::HandlerDone { m, gen_, .. }
            | Ev::FsDone { m, gen_, .. } => {
                if self.members[m].gen_ == gen_ {
                    self.deliver_or_buffer(m, ev);
                }
            }
            Ev::Fault(fault) => self.inject(fault),
            Ev::Heal => self.heal_expired(),
            Ev::FileWrite { path, size, last } => {
                let version = FileVersion {
                    path: path.clone(),
                    size,
                    mtime_ms: self.now.as_millis() as i64,
                };
                self.trace(|| format!("file {path} size {size} last={last}"));
                if last {
                    self.finals.insert(path.clone(), version.clone());
                }
                self.dir.insert(path, SimFile { version, last });
            }
            Ev::Quiet => {
                self.quiet_at = Some(self.now);
                self.store_down_until = Duration::ZERO;
                self.store_slow = None;
                self.trace(|| "quiet: all faults healed".into());
                for m in 0..self.members.len() {
                    self.members[m].partitioned_until = Duration::ZERO;
                    self.members[m].paused_until = Duration::ZERO;
                    self.members[m].down_until = Duration::ZERO;
                }
                self.heal_expired();
            }
        }
    }

    fn deliver_or_buffer(&mut self, m: usize, ev: Ev) {
        if self.members[m].paused {
            self.members[m].buffer.push(ev);
            return;
        }
        if self.members[m].elector.is_none() {
            return;
        }
        self.member_event(m, ev);
    }

    fn inject(&mut self, fault: Fault) {
        if self.quiet_at.is_some() {
            return;
        }
        self.report.faults += 1;
        self.trace(|| format!("fault {fault:?}"));
        match fault {
            Fault::Crash(m, down) => {
                self.stop_handlers(m);
                self.members[m].crash();
                self.members[m].down_until = self.members[m].down_until.max(self.now + down);
                self.schedule(self.now + down, Ev::Heal);
            }
            Fault::Stop(m, down) => {
                self.members[m].down_until = self.members[m].down_until.max(self.now + down);
                self.stop_member(m);
                self.schedule(self.now + down, Ev::Heal);
            }
            Fault::Pause(m, d) => {
                self.members[m].paused = true;
                self.members[m].paused_until = self.members[m].paused_until.max(self.now + d);
                self.schedule(self.now + d, Ev::Heal);
            }
            Fault::Partition(m, d) => {
                let until = self.members[m].partitioned_until.max(self.now + d);
                self.members[m].partitioned_until = until;
                self.schedule(until, Ev::Heal);
            }
            Fault::StoreDown(d) => {
                self.store_down_until = self.store_down_until.max(self.now + d);
                self.schedule(self.store_down_until, Ev::Heal);
            }
            Fault::StoreClockStep(ahead) => self.store_clock_ahead += ahead,
            Fault::StoreSlow(extra, d) => {
                self.store_slow = Some((extra, self.now + d));
                self.schedule(self.now + d, Ev::Heal);
            }
        }
    }

    /// Ends every fault whose time is up: resumes, restarts.
    fn heal_expired(&mut self) {
        if self.store_slow.is_some_and(|(_, until)| until <= self.now) {
            self.store_slow = None;
        }
        for m in 0..self.members.len() {
            if self.members[m].paused && self.members[m].paused_until <= self.now {
                self.members[m].paused = false;
                self.trace(|| format!("m{m} resumed"));
                let buffered = std::mem::take(&mut self.members[m].buffer);
                for ev in buffered {
                    self.deliver_or_buffer(m, ev);
                }
                // The process runs again: it looks at its lease at once.
                if self.members[m].elector.is_some() {
                    let gen_ = self.members[m].gen_;
                    self.member_event(m, Ev::Wake(m, gen_));
                }
            }
            if self.members[m].elector.is_none() && self.members[m].down_until <= self.now {
                self.start_member(m);
            }
        }
    }

    pub(super) fn store_up(&self) -> bool {
        self.now >= self.store_down_until
    }

    /// Sends a request from member `m`; returns the operation ID.
    pub(super) fn send(&mut self, m: usize, req: Req) -> u64 {
        self.next_op += 1;
        let op = self.next_op;
        let gen_ = self.members[m].gen_;
        // The production drivers bound every store call by the elector's call timeout.
        let timeout = self.cfg.timing.renew_deadline;
        self.schedule(self.now + timeout, Ev::Timeout { m, gen_, op });
        if self.members[m].partitioned_until > self.now || !self.store_up() {
            // Connection refused or reset: a fast failure.
            let at = self.now + self.rng.millis(1, 20);
            let rep = failure(&req, "connection refused");
            self.schedule(at, Ev::Reply { m, gen_, op, rep });
            return op;
        }
        let at = self.now + self.latency();
        self.schedule(at, Ev::Apply { m, op, req });
        op
    }

    fn latency(&mut self) -> Duration {
        let mut latency = self
            .rng
            .millis(0, self.cfg.max_latency.as_millis() as u64 + 1);
        if let Some((extra, until)) = self.store_slow
            && self.now < until
        {
            latency += extra;
        }
        latency
    }

    fn apply(&mut self, m: usize, op: u64, req: Req) {
        let gen_ = self.members[m].gen_;
        let rep =
            if !self.store_up() {
                failure(&req, "connection reset")
            } else {
                let now = self.base + self.now + self.store_clock_ahead;
                match req {
                    Req::Heartbeat(r) => Rep::Heartbeat(Ok(self.store.heartbeat(now, &r))),
                    Req::TakeOver(r) => {
                        let outcome = self.store.take_over(now, &r);
                        if let TakeoverOutcome::Won(term) = outcome {
                            self.on_takeover(term, &r);
                        }
                        Rep::TakeOver(Ok(outcome))
                    }
                    Req::Release(f) => {
                        self.store.release(&f);
                        Rep::Stopped(Ok(()))
                    }
                    Req::Leave(incarnation) => {
                        let member = self.members[m].id.clone();
                        self.store.leave(&self.group, &member, incarnation);
                        Rep::Stopped(Ok(()))
                    }
                    Req::Load => Rep::Load(Ok(self.store.load_ledger(&self.group))),
                    Req::Claim(f, versions) => Rep::Claim(self.store.claim(now, &f, &versions)),
                    Req::Record(f, updates) => Rep::Record(self.store.record(now, &f, &updates)),
                    Req::Lookup(versions) => {
                        Rep::Lookup(Ok(self.store.lookup_ledger(&self.group, &versions)))
                    }
                    Req::Stale(older_than, after, limit) => Rep::Stale(Ok(self
                        .store
                        .stale_settled(now, &self.group, older_than, after.as_ref(), limit))),
                }
            };
        let at = self.now + self.latency();
        self.schedule(at, Ev::Reply { m, gen_, op, rep });
    }

    /// (b): terms only grow, one holder each.
    fn on_takeover(&mut self, term: Term, r: &TakeoverRequest) {
        self.report.takeovers += 1;
        self.trace(|| format!("store: {} takes term {term}", r.member));
        let previous = self.terms.keys().next_back().copied().unwrap_or(Term(0));
        if term <= previous {
            self.violate(
                "(b) terms only grow",
                format!("term {term} granted after {previous}"),
            );
        }
        if let Some(holder) = self.terms.insert(term, (r.member.clone(), r.incarnation)) {
            self.violate(
                "(b) one holder per term",
                format!("term {term} held by {holder:?} and {}", r.member),
            );
        }
    }

    /// (a): at most one running member may dispatch at this instant. Also measures (c).
    fn check_single_dispatcher(&mut self) {
        let mut dispatching = Vec::new();
        for m in 0..self.members.len() {
            if self.members[m].paused {
                continue;
            }
            let local = self.members[m].local(self.base, self.now);
            if let Some(elector) = &self.members[m].elector
                && let Some(fence) = elector.may_dispatch(local)
            {
                dispatching.push((m, fence.term));
            }
        }
        if dispatching.len() > 1 {
            self.violate(
                "(a) single dispatcher",
                format!("members dispatching at once: {dispatching:?}"),
            );
        }
        if let Some(quiet_at) = self.quiet_at
            && !dispatching.is_empty()
            && self.report.recovery.is_none()
        {
            let recovery = self.now - quiet_at;
            self.report.recovery = Some(recovery);
            let t = &self.cfg.timing;
            let bound = t.liveness_timeout + t.heartbeat_interval * 2;
            if recovery > bound {
                self.violate(
                    "(c) leader after faults",
                    format!("first leader {recovery:?} after faults stopped, bound {bound:?}"),
                );
            }
        }
    }

    /// (c) when nobody led at all, and (e): every file done or in error.
    fn check_end(&mut self) {
        if self.report.recovery.is_none() {
            self.violate(
                "(c) leader after faults",
                "no leader during the whole quiet phase".into(),
            );
            return;
        }
        let finals = std::mem::take(&mut self.finals);
        for (path, version) in &finals {
            match self.store.ledger_state(&self.group, version) {
                Some(LedgerState::Done) => {
                    self.report.done += 1;
                    let leaves = self.cfg.post_processing != PostProcessing::Leave;
                    if leaves && self.dir.contains_key(path) {
                        self.violate(
                            "(e) done files leave",
                            format!("{path} done but still listed"),
                        );
                    }
                    if self.cfg.post_processing == PostProcessing::Move
                        && !self.done_dir.contains(path)
                    {
                        self.violate(
                            "(e) done files are moved",
                            format!("{path} done, not in the done folder"),
                        );
                    }
                    if self.handled_ok.get(version).copied().unwrap_or(0) == 0 {
                        self.violate(
                            "(e) done means handled",
                            format!("{path} done, never handled"),
                        );
                    }
                }
                Some(LedgerState::Error) => {
                    self.report.errored += 1;
                    if !self.error_dir.contains(path) {
                        self.violate(
                            "(e) errors are moved",
                            format!("{path} not in the error folder"),
                        );
                    }
                }
                other => self.violate(
                    "(e) every file done or in error",
                    format!("{path} ends in state {other:?}"),
                ),
            }
        }
    }

    /// A handler starts on `version` in member `m`.
    pub(super) fn handler_started(&mut self, m: usize, handler: HandlerId, version: &FileVersion) {
        self.running
            .entry(version.clone())
            .or_default()
            .push((m, handler));
    }

    /// A handler ended (returned, cancelled, or died with its process).
    pub(super) fn handler_stopped(&mut self, m: usize, handler: HandlerId, version: &FileVersion) {
        if let Some(list) = self.running.get_mut(version) {
            list.retain(|h| *h != (m, handler));
            if list.is_empty() {
                self.running.remove(version);
            }
        }
    }

    /// Never two handlers running on one file version at the same instant, across members
    /// (a paused process runs nothing until it resumes).
    fn check_single_handler(&mut self) {
        let mut overlap = None;
        for (version, handlers) in &self.running {
            let live: Vec<_> = handlers
                .iter()
                .filter(|(m, _)| !self.members[*m].paused)
                .collect();
            if live.len() > 1 {
                overlap = Some(format!("{} handled at once by {live:?}", version.path));
                break;
            }
        }
        if let Some(detail) = overlap {
            self.violate("never two handlers on one version at once", detail);
        }
    }

    /// (d), finished-versions-only and the delivery budget, at the moment a handler is called.
    pub(super) fn check_dispatch(&mut self, m: usize, dispatch: &Dispatch) {
        let version = &dispatch.version;
        let deliveries = self.deliveries.entry(version.clone()).or_default();
        *deliveries += 1;
        let deliveries = *deliveries;
        if deliveries > self.cfg.retry.max_attempts {
            self.violate(
                "nothing delivered more than max_attempts times",
                format!(
                    "m{m} delivers {} for the {deliveries}th time, max_attempts {}",
                    version.path, self.cfg.retry.max_attempts
                ),
            );
        }
        if let Some(state) = self.store.ledger_state(&self.group, version)
            && state.is_settled()
        {
            self.violate(
                "(d) settled never dispatched",
                format!("m{m} dispatches {version:?} in state {state:?}"),
            );
        }
        match self.dir.get(&version.path) {
            Some(file) if file.last && &file.version == version => {}
            other => self.violate(
                "only finished versions are dispatched",
                format!("m{m} dispatches {version:?}, directory has {other:?}"),
            ),
        }
    }

    pub(super) fn wake_now(&mut self, m: usize) {
        let gen_ = self.members[m].gen_;
        self.schedule(self.now, Ev::Wake(m, gen_));
    }
}

fn failure(req: &Req, cause: &str) -> Rep {
    let err = |operation: &'static str| StoreError::Unavailable {
        operation,
        group: "sim-group".into(),
        cause: cause.into(),
    };
    match req {
        Req::Heartbeat(_) => Rep::Heartbeat(Err(err("heartbeat"))),
        Req::TakeOver(_) => Rep::TakeOver(Err(err("takeover"))),
        Req::Release(_) | Req::Leave(_) => Rep::Stopped(Err(err("release"))),
        Req::Load => Rep::Load(Err(err("load_ledger"))),
        Req::Claim(..) => Rep::Claim(Err(err("claim"))),
        Req::Record(..) => Rep::Record(Err(err("record"))),
        Req::Lookup(_) => Rep::Lookup(Err(err("lookup_ledger"))),
        Req::Stale(..) => Rep::Stale(Err(err("stale_settled"))),
    }
}
