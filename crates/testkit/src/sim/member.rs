//! One simulated member: the real elector and ledger rules, driven by simulated events.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coord_core::{
    Action, AfterFailure, Dispatch, ElectionConfig, Elector, Event, Fence, FileVersion,
    Incarnation, Ledger, LedgerPolicy, LedgerState, ListedFile, MemberId, Outcome, Stability,
    StoreError,
};

use super::world::{Ev, Rep, Req, World};
use crate::rng::SimRng;

pub(super) struct Member {
    pub(super) id: MemberId,
    /// Clock-rate drift of this member's monotonic clock, in parts per million.
    drift_ppm: i64,
    /// Bumped by every crash and restart: events of an older generation are dropped.
    pub(super) gen_: u64,
    pub(super) elector: Option<Elector>,
    pub(super) paused: bool,
    pub(super) paused_until: Duration,
    pub(super) partitioned_until: Duration,
    pub(super) down_until: Duration,
    pub(super) buffer: Vec<Ev>,
    election_op: Option<(u64, ElectionCall)>,
    work: Option<Work>,
    work_counter: u64,
    next_wake: Option<Duration>,
}

#[derive(Clone, Copy)]
enum ElectionCall {
    Heartbeat,
    TakeOver,
    Stop,
}

enum Task {
    Handle(Dispatch),
    PostProcess(FileVersion),
    MoveToError(FileVersion),
}

enum Pending {
    Load,
    Claim(Vec<FileVersion>),
    Outcome {
        version: FileVersion,
        handled: bool,
        give_up: bool,
    },
    PostProcessed,
}

/// The leader's work for one term.
struct Work {
    id: u64,
    fence: Fence,
    ledger: Option<Ledger>,
    op: Option<(u64, Pending)>,
    handling: Option<FileVersion>,
    queue: VecDeque<Task>,
    next_poll: Duration,
    backoff_until: Duration,
}

impl Member {
    pub(super) fn new(index: usize, rng: &mut SimRng, max_drift_ppm: u64) -> Member {
        let drift = rng.range(0, 2 * max_drift_ppm + 1) as i64 - max_drift_ppm as i64;
        Member {
            id: MemberId::new(format!("m{index}")).unwrap(),
            drift_ppm: drift,
            gen_: 0,
            elector: None,
            paused: false,
            paused_until: Duration::ZERO,
            partitioned_until: Duration::ZERO,
            down_until: Duration::ZERO,
            buffer: Vec::new(),
            election_op: None,
            work: None,
            work_counter: 0,
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

    /// Process death: all in-memory state is gone.
    pub(super) fn crash(&mut self) {
        self.gen_ += 1;
        self.elector = None;
        self.paused = false;
        self.buffer.clear();
        self.election_op = None;
        self.work = None;
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
        let member = &mut self.members[m];
        member.crash();
        member.elector = Some(Elector::new(config, incarnation, local));
        self.trace(|| format!("m{m} starts, incarnation {incarnation}"));
        self.wake_now(m);
    }

    /// Graceful stop (SIGTERM): stop dispatching, release, then stay down until restarted.
    pub(super) fn stop_member(&mut self, m: usize) {
        if self.members[m].paused {
            return;
        }
        let local = self.members[m].local(self.base, self.now);
        if let Some(elector) = &mut self.members[m].elector {
            elector.stop(local);
            self.members[m].work = None;
            self.wake_now(m);
        }
    }

    pub(super) fn member_event(&mut self, m: usize, ev: Ev) {
        let local = self.members[m].local(self.base, self.now);
        match ev {
            Ev::Wake(..) => {
                if self.members[m].next_wake.is_some_and(|w| w <= self.now) {
                    self.members[m].next_wake = None;
                }
            }
            Ev::Reply { op, rep, .. } => self.on_reply(m, op, Some(rep), local),
            Ev::Timeout { op, .. } => self.on_reply(m, op, None, local),
            Ev::HandlerDone {
                work, version, ok, ..
            } => self.on_handler_done(m, work, version, ok, local),
            _ => unreachable!("not a member event"),
        }
        self.step(m);
    }

    /// A store reply, or a timeout (`None`) of the call `op`.
    fn on_reply(&mut self, m: usize, op: u64, rep: Option<Rep>, local: Instant) {
        let member = &mut self.members[m];
        if let Some((pending, call)) = member.election_op
            && pending == op
        {
            member.election_op = None;
            let elector = member.elector.as_mut().expect("running member");
            let timeout = |operation| StoreError::Timeout {
                operation,
                group: "sim-group".into(),
                after: Duration::ZERO,
            };
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
        let Some(work) = member.work.as_mut() else {
            return;
        };
        if work.op.as_ref().is_none_or(|(pending, _)| *pending != op) {
            return;
        }
        let (_, pending) = work.op.take().expect("checked");
        let later = self.now + self.cfg.poll_interval;
        match (pending, rep) {
            (Pending::Load, Some(Rep::Load(Ok(records)))) => {
                let policy = LedgerPolicy {
                    stability: Stability::default(),
                    retry: self.cfg.retry.clone(),
                    retention: Duration::ZERO,
                };
                work.ledger = Some(Ledger::new(policy, records, local));
            }
            (Pending::Claim(versions), Some(Rep::Claim(Ok(outcomes)))) => {
                let ledger = work.ledger.as_mut().expect("claims need a ledger");
                for (version, outcome) in versions.iter().zip(&outcomes) {
                    if let Some(dispatch) = ledger.on_claim(version, outcome) {
                        work.queue.push_back(Task::Handle(dispatch));
                    }
                }
            }
            (
                Pending::Outcome {
                    version,
                    handled,
                    give_up,
                },
                Some(Rep::Record(Ok(()))),
            ) => {
                if handled {
                    work.queue.push_front(Task::PostProcess(version));
                } else if give_up {
                    work.queue.push_front(Task::MoveToError(version));
                }
            }
            (Pending::PostProcessed, Some(Rep::Record(Ok(())))) => {}
            (_, Some(Rep::Load(Err(e))))
            | (_, Some(Rep::Claim(Err(e))))
            | (_, Some(Rep::Record(Err(e))))
                if matches!(e, StoreError::Fenced { .. }) =>
            {
                // Another member leads: this term's work ends here.
                member.work = None;
                self.trace(|| format!("m{m} fenced: {e}"));
            }
            (pending, _) => {
                // Store trouble (or a timeout, which may have been applied): start again from
                // the store's ledger after a pause; unfinished claims are redelivered.
                if let Pending::Claim(versions) = &pending
                    && let Some(ledger) = work.ledger.as_mut()
                {
                    for version in versions {
                        ledger.on_claim_failed(version);
                    }
                }
                work.ledger = None;
                work.queue.clear();
                work.handling = None;
                work.backoff_until = later;
            }
        }
    }

    fn on_handler_done(
        &mut self,
        m: usize,
        work_id: u64,
        version: FileVersion,
        ok: bool,
        local: Instant,
    ) {
        let Some(work) = self.members[m].work.as_mut() else {
            return;
        };
        if work.id != work_id || work.handling.as_ref() != Some(&version) {
            return;
        }
        work.handling = None;
        let Some(ledger) = work.ledger.as_mut() else {
            return;
        };
        if ok {
            *self.handled_ok.entry(version.clone()).or_default() += 1;
        }
        let outcome = if ok {
            Outcome::Handled
        } else {
            Outcome::Failed("simulated handler failure".into())
        };
        let (update, after) = ledger.on_outcome(local, &version, outcome);
        let fence = work.fence.clone();
        let pending = Pending::Outcome {
            version,
            handled: ok,
            give_up: after == Some(AfterFailure::GiveUp),
        };
        let op = self.send(m, Req::Record(fence, vec![update]));
        if let Some(work) = self.members[m].work.as_mut() {
            work.op = Some((op, pending));
        }
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
        self.drive_work(m, local);
        self.schedule_wake(m);
    }

    fn on_election_event(&mut self, m: usize, event: Event) {
        match event {
            Event::BecameLeader(fence) => {
                self.trace(|| format!("m{m} leads term {}", fence.term));
                let member = &mut self.members[m];
                member.work_counter += 1;
                member.work = Some(Work {
                    id: member.work_counter,
                    fence,
                    ledger: None,
                    op: None,
                    handling: None,
                    queue: VecDeque::new(),
                    next_poll: self.now,
                    backoff_until: Duration::ZERO,
                });
            }
            Event::LostLeadership { term, reason } => {
                self.trace(|| format!("m{m} loses term {term}: {reason:?}"));
                self.members[m].work = None;
            }
            Event::Refused(e) => {
                self.violate("no false refusal", format!("m{m} refused: {e}"));
            }
            Event::Stopped => {
                self.trace(|| format!("m{m} stopped"));
                let down_until = self.members[m].down_until;
                self.members[m].crash();
                self.members[m].down_until = down_until.max(self.now);
                self.schedule(self.members[m].down_until, Ev::Heal);
            }
        }
    }

    fn drive_work(&mut self, m: usize, local: Instant) {
        let Some(fence) = self.members[m]
            .elector
            .as_ref()
            .and_then(|e| e.may_dispatch(local))
        else {
            return;
        };
        loop {
            let now = self.now;
            let Some(work) = self.members[m].work.as_mut() else {
                return;
            };
            if work.fence != fence || work.op.is_some() || work.handling.is_some() {
                return;
            }
            if now < work.backoff_until {
                return;
            }
            let Some(ledger) = work.ledger.as_mut() else {
                let op = self.send(m, Req::Load);
                self.set_op(m, op, Pending::Load);
                return;
            };
            if let Some(task) = work.queue.pop_front() {
                match task {
                    Task::Handle(dispatch) => {
                        self.start_handler(m, dispatch);
                        return;
                    }
                    Task::PostProcess(version) => {
                        let update = ledger.on_post_processed(&version);
                        if self
                            .dir
                            .get(&version.path)
                            .is_some_and(|f| f.version == version)
                        {
                            self.dir.remove(&version.path);
                        }
                        let op = self.send(m, Req::Record(fence.clone(), vec![update]));
                        self.set_op(m, op, Pending::PostProcessed);
                        return;
                    }
                    Task::MoveToError(version) => {
                        if self
                            .dir
                            .get(&version.path)
                            .is_some_and(|f| f.version == version)
                        {
                            self.dir.remove(&version.path);
                            self.error_dir.insert(version.path.clone());
                        }
                        continue;
                    }
                }
            }
            if now < work.next_poll {
                return;
            }
            work.next_poll = now + self.cfg.poll_interval;
            let listing: Vec<ListedFile> = self
                .dir
                .iter()
                .map(|(path, file)| ListedFile {
                    version: file.version.clone(),
                    name: path.rsplit('/').next().unwrap_or(path).to_string(),
                })
                .collect();
            for file in &listing {
                if ledger.state(&file.version) == Some(LedgerState::Error) {
                    work.queue
                        .push_back(Task::MoveToError(file.version.clone()));
                }
            }
            for version in ledger.pending_post_processing() {
                work.queue.push_back(Task::PostProcess(version));
            }
            let planned = ledger.plan(local, &listing);
            if !planned.is_empty() {
                let op = self.send(m, Req::Claim(fence.clone(), planned.clone()));
                self.set_op(m, op, Pending::Claim(planned));
                return;
            }
        }
    }

    fn set_op(&mut self, m: usize, op: u64, pending: Pending) {
        if let Some(work) = self.members[m].work.as_mut() {
            work.op = Some((op, pending));
        }
    }

    fn start_handler(&mut self, m: usize, dispatch: Dispatch) {
        self.check_dispatch(m, &dispatch.version);
        self.report.dispatches += 1;
        if dispatch.redelivery {
            self.report.redeliveries += 1;
        }
        let ok = !self.rng.chance(self.cfg.handler_failure_per_mille);
        let took = self.rng.millis(1, 300);
        let gen_ = self.members[m].gen_;
        let work = self.members[m].work.as_mut().expect("leading");
        work.handling = Some(dispatch.version.clone());
        let work_id = work.id;
        self.trace(|| {
            format!(
                "m{m} handles {} attempt {} redelivery={} ok={ok}",
                dispatch.version.path, dispatch.attempt, dispatch.redelivery
            )
        });
        self.schedule(
            self.now + took,
            Ev::HandlerDone {
                m,
                gen_,
                work: work_id,
                version: dispatch.version,
                ok,
            },
        );
    }

    /// Wakes the member at its next deadline (election, renew deadline, next poll).
    fn schedule_wake(&mut self, m: usize) {
        let member = &self.members[m];
        let Some(elector) = &member.elector else {
            return;
        };
        let mut next = elector
            .next_deadline()
            .map(|local| member.sim_time(self.base, local).max(self.now));
        let local = member.local(self.base, self.now);
        if let Some(work) = &member.work
            && work.op.is_none()
            && work.handling.is_none()
            && elector.may_dispatch(local).is_some()
        {
            let due = work.next_poll.max(work.backoff_until).max(self.now);
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
