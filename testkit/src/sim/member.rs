//! One simulated member: the production [`Elector`] and [`Worker`], driven by simulated
//! events. This file is glue only, as the listener's driver and poll loop are: it performs the
//! actions the machines return against the simulated store, directory and handlers, and
//! reports their results. No decision about files is made here.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use coord_core::{
    Action, ElectionConfig, Elector, Event, FileOp, FileOpResult, FileVersion, HandlerId,
    Incarnation, LedgerState, ListedFile, MemberId, OpId, Outcome, StoreError, WorkAction,
    WorkConfig, Worker,
};

use super::world::{Ev, FsRes, Rep, Req, World};
use crate::rng::SimRng;

pub(super) struct Member {
    pub(super) id: MemberId,
    /// Clock-rate drift of this member's monotonic clock, in parts per million.
    drift_ppm: i64,
    /// Bumped by every crash and restart: events of an older generation are dropped.
    pub(super) gen_: u64,
    pub(super) elector: Option<Elector>,
    pub(super) worker: Option<Worker>,
    pub(super) paused: bool,
    pub(super) paused_until: Duration,
    pub(super) partitioned_until: Duration,
    pub(super) down_until: Duration,
    pub(super) buffer: Vec<Ev>,
    election_op: Option<(u64, ElectionCall)>,
    /// Store calls of the worker in flight: simulated call to the worker's.
    work_ops: HashMap<u64, (OpId, WorkCall)>,
    /// Handlers running in this process.
    pub(super) handlers: BTreeMap<HandlerId, FileVersion>,
    next_wake: Option<Duration>,
}

#[derive(Clone, Copy)]
enum ElectionCall {
    Heartbeat,
    TakeOver,
    Stop,
}

#[derive(Clone, Copy)]
enum WorkCall {
    Load,
    Claim,
    Record,
    Lookup,
    Stale,
}

impl Member {
    pub(super) fn new(index: usize, rng: &mut SimRng, max_drift_ppm: u64) -> Member {
        let drift = rng.range(0, 2 * max_drift_ppm + 1) as i64 - max_drift_ppm as i64;
        Member {
            id: MemberId::new(format!("m{index}")).unwrap(),
            drift_ppm: drift,
            gen_: 0,
            elector: None,
            worker: None,
            paused: false,
            paused_until: Duration::ZERO,
            partitioned_until: Duration::ZERO,
            down_until: Duration::ZERO,
            buffer: Vec::new(),
            election_op: None,
            work_ops: HashMap::new(),
            handlers: BTreeMap::new(),
            next_wake: None,
        }
    }

    /// This member's monotonic clock at simulated time `t` (it runs at its own rate).
    pub(super) fn local(&self, base: Instant, t: Duration) -> Instant {
        let nanos = t.as_nanos() as i128 * (1_000_000 + self.drift_ppm as i128) / 1_000_000;
        base + Duration::from_nanos(nanos as u64)
    }

    /// The simulated time at which this member's clock shows `local` (rounded up).
    fn sim_time(&self, base: Instant, local: Instant) -> Duration {
        let nanos = local.saturating_duration_since(base).as_nanos() as i128;
        let rate = 1_000_000 + self.drift_ppm as i128;
        Duration::from_nanos(((nanos * 1_000_000 + rate - 1) / rate) as u64)
    }

    /// Process death: all in-memory state is gone, handlers die with the process.
    pub(super) fn crash(&mut self) {
        self.gen_ += 1;
        self.elector = None;
        self.worker = None;
        self.paused = false;
        self.buffer.clear();
        self.election_op = None;
        self.work_ops.clear();
        self.handlers.clear();
        self.next_wake = None;
    }
}

impl World {
    pub(super) fn start_member(&mut self, m: usize) {
        let incarnation = Incarnation(self.rng.next_u64());
        let local = self.members[m].local(self.base, self.now);
        let config = ElectionConfig {
            member: self.members[m].id.clone(),
            group: self.group.clone(),
            timing: self.cfg.timing.clone(),
        };
        let work = self.work_config();
        self.stop_handlers(m);
        let member = &mut self.members[m];
        member.crash();
        member.elector = Some(Elector::new(config, incarnation, local));
        member.worker = Some(Worker::new(work));
        self.trace(|| format!("m{m} starts, incarnation {incarnation}"));
        self.wake_now(m);
    }

    fn work_config(&self) -> WorkConfig {
        let mut work = WorkConfig::new("/done", "/error");
        work.policy.retry = self.cfg.retry.clone();
        work.post_processing = self.cfg.post_processing;
        work.poll_interval = self.cfg.poll_interval;
        work.max_in_flight = self.cfg.max_in_flight;
        work.store_retry = self.cfg.poll_interval;
        work
    }

    /// Graceful stop (SIGTERM): stop dispatching, release, then stay down until restarted.
    pub(super) fn stop_member(&mut self, m: usize) {
        if self.members[m].paused {
            return;
        }
        let local = self.members[m].local(self.base, self.now);
        if let Some(elector) = &mut self.members[m].elector {
            elector.stop(local);
            self.wake_now(m);
        }
    }

    pub(super) fn member_event(&mut self, m: usize, ev: Ev) {
        let local = self.members[m].local(self.base, self.now);
        // The lease first: a result that arrives after the lease ended must find the term
        // over (the listener's loop does the same).
        self.sync_lease(m, local);
        match ev {
            Ev::Wake(..) => {
                if self.members[m].next_wake.is_some_and(|w| w <= self.now) {
                    self.members[m].next_wake = None;
                }
            }
            Ev::Reply { op, rep, .. } => self.on_reply(m, op, Some(rep), local),
            Ev::Timeout { op, .. } => self.on_reply(m, op, None, local),
            Ev::HandlerDone { handler, ok, .. } => self.on_handler_done(m, handler, ok, local),
            Ev::FsDone { op, res, .. } => {
                if let Some(worker) = self.members[m].worker.as_mut() {
                    match res {
                        FsRes::Listed(listing) => worker.handle_listed(local, op, Ok(listing)),
                        FsRes::File(result) => worker.handle_file_op(local, op, result),
                    }
                }
            }
            _ => unreachable!("not a member event"),
        }
        self.step(m);
    }

    /// A store reply, or a timeout (`None`) of the call `op`.
    fn on_reply(&mut self, m: usize, op: u64, rep: Option<Rep>, local: Instant) {
        let timeout = |operation| StoreError::Timeout {
            operation,
            group: "sim-group".into(),
            after: Duration::ZERO,
        };
        let member = &mut self.members[m];
        if let Some((pending, call)) = member.election_op
            && pending == op
        {
            member.election_op = None;
            let elector = member.elector.as_mut().expect("running member");
            match (call, rep) {
                (ElectionCall::Heartbeat, Some(Rep::Heartbeat(r))) => {
                    elector.handle_heartbeat(local, r)
                }
                (ElectionCall::Heartbeat, _) => {
                    elector.handle_heartbeat(local, Err(timeout("heartbeat")))
                }
                (ElectionCall::TakeOver, Some(Rep::TakeOver(r))) => {
                    elector.handle_takeover(local, r)
                }
                (ElectionCall::TakeOver, _) => {
                    elector.handle_takeover(local, Err(timeout("takeover")))
                }
                (ElectionCall::Stop, Some(Rep::Stopped(r))) => elector.handle_stopped(local, r),
                (ElectionCall::Stop, _) => elector.handle_stopped(local, Err(timeout("release"))),
            }
            return;
        }
        let Some((work_op, call)) = member.work_ops.remove(&op) else {
            return;
        };
        let Some(worker) = member.worker.as_mut() else {
            return;
        };
        match (call, rep) {
            (WorkCall::Load, Some(Rep::Load(r))) => worker.handle_loaded(local, work_op, r),
            (WorkCall::Load, _) => {
                worker.handle_loaded(local, work_op, Err(timeout("load_ledger")))
            }
            (WorkCall::Claim, Some(Rep::Claim(r))) => worker.handle_claimed(local, work_op, r),
            (WorkCall::Claim, _) => worker.handle_claimed(local, work_op, Err(timeout("claim"))),
            (WorkCall::Record, Some(Rep::Record(r))) => worker.handle_recorded(local, work_op, r),
            (WorkCall::Record, _) => worker.handle_recorded(local, work_op, Err(timeout("record"))),
            (WorkCall::Lookup, Some(Rep::Lookup(r))) => worker.handle_looked_up(local, work_op, r),
            (WorkCall::Lookup, _) => {
                worker.handle_looked_up(local, work_op, Err(timeout("lookup_ledger")))
            }
            (WorkCall::Stale, Some(Rep::Stale(r))) => worker.handle_stale(local, work_op, r),
            (WorkCall::Stale, _) => {
                worker.handle_stale(local, work_op, Err(timeout("stale_settled")))
            }
        }
    }

    fn on_handler_done(&mut self, m: usize, handler: HandlerId, ok: bool, local: Instant) {
        // A cancelled handler stopped before its end: it has no outcome.
        let Some(version) = self.members[m].handlers.remove(&handler) else {
            return;
        };
        self.handler_stopped(m, handler, &version);
        if ok {
            *self.handled_ok.entry(version.clone()).or_default() += 1;
        }
        let outcome = if ok {
            Outcome::Handled
        } else {
            Outcome::Failed("simulated handler failure".into())
        };
        if let Some(worker) = self.members[m].worker.as_mut() {
            worker.handle_outcome(local, handler, outcome);
        }
    }

    fn sync_lease(&mut self, m: usize, local: Instant) {
        let member = &mut self.members[m];
        let (Some(elector), Some(worker)) = (&member.elector, &mut member.worker) else {
            return;
        };
        let lease = elector.may_dispatch(local);
        worker.set_lease(local, lease.as_ref());
    }

    /// Runs the member until it waits for something: election actions, events, work.
    fn step(&mut self, m: usize) {
        if self.members[m].paused || self.members[m].elector.is_none() {
            return;
        }
        let local = self.members[m].local(self.base, self.now);
        loop {
            let member = &mut self.members[m];
            let elector = member.elector.as_mut().expect("running");
            // Also applies the renew deadline while a call is in flight.
            if let Some(action) = elector.poll_action(local) {
                assert!(member.election_op.is_none(), "one election call at a time");
                let (call, req) = match action {
                    Action::Heartbeat(r) => (ElectionCall::Heartbeat, Req::Heartbeat(r)),
                    Action::TakeOver(r) => (ElectionCall::TakeOver, Req::TakeOver(r)),
                    Action::Release(f) => (ElectionCall::Stop, Req::Release(f)),
                    Action::Leave { incarnation, .. } => {
                        (ElectionCall::Stop, Req::Leave(incarnation))
                    }
                };
                let op = self.send(m, req);
                self.members[m].election_op = Some((op, call));
                continue;
            }
            let Some(event) = elector.poll_event() else {
                break;
            };
            self.on_election_event(m, event);
            if self.members[m].elector.is_none() {
                return;
            }
        }
        self.sync_lease(m, local);
        self.drive_work(m, local);
        self.schedule_wake(m);
    }

    fn on_election_event(&mut self, m: usize, event: Event) {
        match event {
            Event::BecameLeader(fence) => {
                self.trace(|| format!("m{m} leads term {}", fence.term));
            }
            Event::LostLeadership { term, reason } => {
                self.trace(|| format!("m{m} loses term {term}: {reason:?}"));
            }
            Event::Refused(e) => {
                self.violate("no false refusal", format!("m{m} refused: {e}"));
            }
            Event::Stopped => {
                self.trace(|| format!("m{m} stopped"));
                self.stop_handlers(m);
                let down_until = self.members[m].down_until;
                self.members[m].crash();
                self.members[m].down_until = down_until.max(self.now);
                self.schedule(self.members[m].down_until, Ev::Heal);
            }
        }
    }

    /// Performs every action the worker has for now.
    fn drive_work(&mut self, m: usize, local: Instant) {
        loop {
            let Some(worker) = self.members[m].worker.as_mut() else {
                return;
            };
            let Some(action) = worker.poll_action(local) else {
                break;
            };
            if matches!(
                action,
                WorkAction::Record { .. } | WorkAction::Claim { .. } | WorkAction::Lookup { .. }
            ) {
                self.trace(|| format!("m{m} action {action:?}"));
            }
            match action {
                WorkAction::Cancel(handler) => {
                    if let Some(version) = self.members[m].handlers.remove(&handler) {
                        self.trace(|| format!("m{m} cancels its handler of {}", version.path));
                        self.handler_stopped(m, handler, &version);
                    }
                }
                WorkAction::LoadLedger { op } => self.work_call(m, op, WorkCall::Load, Req::Load),
                WorkAction::Claim {
                    op,
                    fence,
                    versions,
                } => self.work_call(m, op, WorkCall::Claim, Req::Claim(fence, versions)),
                WorkAction::Record { op, fence, updates } => {
                    self.work_call(m, op, WorkCall::Record, Req::Record(fence, updates))
                }
                WorkAction::Lookup { op, versions } => {
                    self.work_call(m, op, WorkCall::Lookup, Req::Lookup(versions))
                }
                WorkAction::FindStale {
                    op,
                    older_than,
                    after,
                    limit,
                } => self.work_call(m, op, WorkCall::Stale, Req::Stale(older_than, after, limit)),
                WorkAction::Dispatch {
                    handler, dispatch, ..
                } => self.start_handler(m, handler, dispatch),
                WorkAction::List { op } => {
                    let listing: Vec<ListedFile> = self
                        .dir
                        .iter()
                        .map(|(path, file)| ListedFile {
                            version: file.version.clone(),
                            name: path.rsplit('/').next().unwrap_or(path).to_string(),
                        })
                        .collect();
                    self.fs_reply(m, op, FsRes::Listed(listing));
                }
                WorkAction::File { op, file_op } => {
                    let result = self.apply_file_op(m, &file_op);
                    self.fs_reply(m, op, FsRes::File(result));
                }
            }
        }
        while let Some(event) = self.members[m].worker.as_mut().and_then(|w| w.poll_event()) {
            self.trace(|| format!("m{m} work: {event:?}"));
        }
    }

    fn work_call(&mut self, m: usize, op: OpId, call: WorkCall, req: Req) {
        let sim_op = self.send(m, req);
        self.members[m].work_ops.insert(sim_op, (op, call));
    }

    fn fs_reply(&mut self, m: usize, op: OpId, res: FsRes) {
        let at = self.now + self.rng.millis(0, 5);
        let gen_ = self.members[m].gen_;
        self.schedule(at, Ev::FsDone { m, gen_, op, res });
    }

    /// A file operation on the directory, by path, as a real server performs it (the rename
    /// takes whatever version is at the path): the invariants check what it touched.
    fn apply_file_op(&mut self, m: usize, file_op: &FileOp) -> FileOpResult {
        match file_op {
            FileOp::PrepareDirs(_) | FileOp::DeleteMarker(_) => FileOpResult::Done(None),
            FileOp::MoveToDone { version, .. } | FileOp::Delete(version) => {
                let Some(file) = self.dir.remove(&version.path) else {
                    return FileOpResult::SourceGone;
                };
                self.trace(|| format!("m{m} post-processes {}", version.path));
                if self.handled_ok.get(&file.version).copied().unwrap_or(0) == 0 {
                    self.violate(
                        "no file moved or deleted unless that exact version was handled",
                        format!("m{m} moves {:?}, asked for {version:?}", file.version),
                    );
                }
                if self.cfg.post_processing == coord_core::PostProcessing::Move {
                    self.done_dir.insert(version.path.clone());
                }
                FileOpResult::Done(None)
            }
            FileOp::MoveToError { version, .. } => {
                let Some(file) = self.dir.remove(&version.path) else {
                    return FileOpResult::SourceGone;
                };
                let state = self.store.ledger_state(&self.group, &file.version);
                if state != Some(LedgerState::Error) {
                    self.violate(
                        "only versions in error go to the error folder",
                        format!("m{m} moves {:?} in state {state:?}", file.version),
                    );
                }
                self.error_dir.insert(version.path.clone());
                FileOpResult::Done(None)
            }
        }
    }

    fn start_handler(&mut self, m: usize, handler: HandlerId, dispatch: coord_core::Dispatch) {
        self.check_dispatch(m, &dispatch);
        self.report.dispatches += 1;
        if dispatch.redelivery {
            self.report.redeliveries += 1;
        }
        let ok = !self.rng.chance(self.cfg.handler_failure_per_mille);
        // Some handlers outlive the liveness timeout, as a long command does.
        let took = if self.rng.chance(self.cfg.long_handler_per_mille) {
            let liveness = self.cfg.timing.liveness_timeout.as_millis() as u64;
            self.rng.millis(liveness, liveness * 3)
        } else {
            self.rng.millis(1, 300)
        };
        let gen_ = self.members[m].gen_;
        self.members[m]
            .handlers
            .insert(handler, dispatch.version.clone());
        self.handler_started(m, handler, &dispatch.version);
        self.trace(|| {
            format!(
                "m{m} handles {} attempt {} redelivery={} ok={ok} for {took:?}",
                dispatch.version.path, dispatch.attempt, dispatch.redelivery
            )
        });
        self.schedule(
            self.now + took,
            Ev::HandlerDone {
                m,
                gen_,
                handler,
                ok,
            },
        );
    }

    /// The process ends: its handlers stop with it.
    pub(super) fn stop_handlers(&mut self, m: usize) {
        let handlers = std::mem::take(&mut self.members[m].handlers);
        for (handler, version) in handlers {
            self.handler_stopped(m, handler, &version);
        }
    }

    /// Wakes the member at its next deadline (election, renew deadline, work).
    fn schedule_wake(&mut self, m: usize) {
        let member = &self.members[m];
        let Some(elector) = &member.elector else {
            return;
        };
        let mut next = elector
            .next_deadline()
            .map(|local| member.sim_time(self.base, local).max(self.now));
        if let Some(due) = member.worker.as_ref().and_then(Worker::next_deadline) {
            let due = member.sim_time(self.base, due).max(self.now);
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        let Some(at) = next else {
            return;
        };
        if member.next_wake.is_some_and(|w| w <= at && w >= self.now) {
            return;
        }
        let gen_ = member.gen_;
        self.members[m].next_wake = Some(at);
        self.schedule(at, Ev::Wake(m, gen_));
    }
}
