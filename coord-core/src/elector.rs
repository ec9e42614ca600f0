//! The election state machine (DESIGN §4): standby, leader, stopped.
//!
//! Safety argument, in short. A leader dispatches only while
//! `now < start of its last acknowledged heartbeat + renew_deadline` (its own monotonic
//! clock). That heartbeat renewed the lease at a store time no earlier than its start. A
//! standby takes over only when the lease is older than `liveness_timeout` by the store's
//! clock, re-checked atomically by the takeover itself. Since `renew_deadline <
//! liveness_timeout` (with margin for clock-rate drift), the old leader has stopped before
//! anyone may take over, even when it was paused, partitioned or its store calls hang. A
//! leader that comes back from a pause sees the new term on its next heartbeat, and every
//! ledger write it still attempts is fenced by its old term and rejected by the store.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::ElectionConfig;
use crate::ids::{Fence, GroupId, Incarnation, MemberId, Term};
use crate::store::{
    HeartbeatRequest, HolderView, Observation, OwnRow, StoreError, TakeoverOutcome, TakeoverRequest,
};

/// A member's role, recomputed on every tick for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Not holding the token (or not able to prove it): never touches the file source.
    Standby,
    /// Holds the token and has a recent acknowledged heartbeat: dispatches.
    Leader,
    /// Stopped: released the token, or refused.
    Stopped,
}

/// A store operation the driver must perform, then report with the matching `handle_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Call [`crate::CoordinationStore::heartbeat`], then [`Elector::handle_heartbeat`].
    Heartbeat(HeartbeatRequest),
    /// Call [`crate::CoordinationStore::take_over`], then [`Elector::handle_takeover`].
    TakeOver(TakeoverRequest),
    /// Call [`crate::CoordinationStore::release`], then [`Elector::handle_stopped`].
    Release(Fence),
    /// Call [`crate::CoordinationStore::leave`], then [`Elector::handle_stopped`].
    Leave {
        /// The group.
        group: GroupId,
        /// This member.
        member: MemberId,
        /// This process start.
        incarnation: Incarnation,
    },
}

/// Why leadership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// No heartbeat was acknowledged within `renew_deadline`.
    RenewDeadline,
    /// The store shows another holder or term.
    Superseded,
    /// This member is stopping.
    Stopping,
}

/// Why the elector refuses to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// Another live process uses this member ID in this group.
    #[error(
        "member `{member}` of group `{group}` is already in use by another live process \
         (incarnation {other}); give each instance its own member ID"
    )]
    DuplicateMember {
        /// The member ID.
        member: MemberId,
        /// The group.
        group: GroupId,
        /// The other process's incarnation.
        other: Incarnation,
    },
}

/// Something the driver should know (log at info, update metrics, load the ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This member leads under `fence.term`: load the group's ledger, then dispatch while
    /// [`Elector::may_dispatch`] says so.
    BecameLeader(Fence),
    /// Leadership of `term` ended: stop dispatching now.
    LostLeadership {
        /// The term that ended.
        term: Term,
        /// Why.
        reason: LossReason,
    },
    /// The elector refused to run; it is stopped.
    Refused(ElectionError),
    /// The elector stopped (after [`Elector::stop`]).
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Heartbeat,
    TakeOver,
    Stop,
}

#[derive(Debug, Clone, Copy)]
struct Leadership {
    term: Term,
    /// Start of the last acknowledged write that renewed the lease (local monotonic time).
    confirmed_at: Instant,
}

/// The election state machine of one member. No I/O, no clock reads: every method that
/// depends on time takes `now`.
///
/// Driving contract (see the crate documentation for a loop):
/// - outputs: [`Elector::poll_action`] (at most one store operation in flight at a time),
///   [`Elector::poll_event`], [`Elector::next_deadline`];
/// - inputs: [`Elector::handle_heartbeat`], [`Elector::handle_takeover`],
///   [`Elector::handle_stopped`], each with the result of the action;
/// - commands: [`Elector::stop`];
/// - getters: [`Elector::may_dispatch`], [`Elector::role`], [`Elector::term`].
///
/// The driver must put a timeout on every store call and report an expired one as an error:
/// while an action is in flight, no other is issued.
#[derive(Debug)]
pub struct Elector {
    config: ElectionConfig,
    incarnation: Incarnation,
    phase: Phase,
    in_flight: Option<(Pending, Instant)>,
    next_heartbeat: Instant,
    takeover_due: Option<(Term, Option<i64>)>,
    leadership: Option<Leadership>,
    observed_term: Term,
    conflict_since: Option<Instant>,
    holds_token: bool,
    watch: Option<HolderWatch>,
    events: VecDeque<Event>,
    /// Spreads heartbeats: `None` keeps the exact cadence.
    jitter: Option<Jitter>,
}

/// Heartbeat jitter (members started together never march in lockstep): the first interval
/// is drawn from 10–100 % of `heartbeat_interval`, each later one from 90–110 %. Every
/// interval stays within 110 % of `heartbeat_interval`, which the safety argument allows for
/// (see [`Elector::holder_dead`]: a live holder still renews well within two intervals of a
/// standby's clock, and the gap between two looks stays within the renew margin).
#[derive(Debug, Clone)]
struct Jitter {
    /// SplitMix64 state, seeded by the incarnation (deterministic under simulation).
    state: u64,
    first: bool,
}

impl Jitter {
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn interval(&mut self, base: Duration) -> Duration {
        let unit = self.next_unit();
        let factor = if std::mem::take(&mut self.first) {
            0.1 + 0.9 * unit
        } else {
            0.9 + 0.2 * unit
        };
        base.mul_f64(factor)
    }
}

/// What a standby has seen of the holder's renewals on its own monotonic clock.
#[derive(Debug, Clone)]
struct HolderWatch {
    member: MemberId,
    incarnation: Incarnation,
    /// The holder's renewal token at the last observation.
    renewal: i64,
    /// When the first observation's answer came back, and when the last one was sent
    /// (local): a look reports the store as it was somewhere in between.
    first_seen: Instant,
    seen_at: Instant,
    /// The holder's last renewal as a local instant (`None`: older than this process can
    /// represent).
    renewed: Option<Instant>,
}

impl Elector {
    /// A standby that sends its first heartbeat at `now`. Later heartbeats carry jitter:
    /// the first interval is 10–100 % of `heartbeat_interval`, each later one 90–110 %,
    /// drawn from a generator seeded by `incarnation`, so members started together spread
    /// out at once and stay apart.
    pub fn new(config: ElectionConfig, incarnation: Incarnation, now: Instant) -> Elector {
        Elector {
            config,
            incarnation,
            phase: Phase::Running,
            in_flight: None,
            next_heartbeat: now,
            takeover_due: None,
            leadership: None,
            observed_term: Term(0),
            conflict_since: None,
            holds_token: false,
            watch: None,
            events: VecDeque::new(),
            jitter: Some(Jitter {
                state: incarnation.0,
                first: true,
            }),
        }
    }

    /// Heartbeats exactly every `heartbeat_interval` (tests that count on the cadence); by
    /// default the intervals carry jitter (see [`Elector::new`]).
    pub fn without_jitter(mut self) -> Elector {
        self.jitter = None;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// This process start's incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The fence to hand to ledger writes and handlers, when this member may dispatch at
    /// `now`: it leads, and its last acknowledged heartbeat started less than
    /// `renew_deadline` ago.
    pub fn may_dispatch(&self, now: Instant) -> Option<Fence> {
        let leadership = self.leadership?;
        if self.phase != Phase::Running
            || now >= leadership.confirmed_at + self.config.timing.renew_deadline
        {
            return None;
        }
        Some(self.fence(leadership.term))
    }

    /// The role at `now`.
    pub fn role(&self, now: Instant) -> Role {
        if self.phase == Phase::Stopped {
            Role::Stopped
        } else if self.may_dispatch(now).is_some() {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// The latest term this member has seen.
    pub fn term(&self) -> Term {
        self.observed_term
    }

    /// When the driver must call [`Elector::poll_action`] again at the latest (the next
    /// heartbeat, or the renew deadline of a leader). `None` once stopped.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.phase == Phase::Stopped {
            return None;
        }
        let renew = self
            .leadership
            .map(|l| l.confirmed_at + self.config.timing.renew_deadline);
        let next_action = if self.in_flight.is_some() {
            None
        } else if self.phase == Phase::Stopping || self.takeover_due.is_some() {
            // Due at once; `Instant` has no minimum, so report the heartbeat time or earlier.
            Some(
                self.next_heartbeat
                    .min(renew.unwrap_or(self.next_heartbeat)),
            )
        } else {
            Some(self.next_heartbeat)
        };
        match (next_action, renew) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The store operation to perform now, if any. Also applies the renew deadline.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        self.check_renew_deadline(now);
        if self.in_flight.is_some() || self.phase == Phase::Stopped {
            return None;
        }
        if self.phase == Phase::Stopping {
            self.in_flight = Some((Pending::Stop, now));
            return Some(if self.holds_token {
                Action::Release(self.fence(self.observed_term))
            } else {
                Action::Leave {
                    group: self.config.group.clone(),
                    member: self.config.member.clone(),
                    incarnation: self.incarnation,
                }
            });
        }
        if let Some((observed_term, observed_renewal)) = self.takeover_due.take() {
            self.in_flight = Some((Pending::TakeOver, now));
            return Some(Action::TakeOver(TakeoverRequest {
                group: self.config.group.clone(),
                member: self.config.member.clone(),
                incarnation: self.incarnation,
                observed_term,
                liveness_timeout: self.config.timing.liveness_timeout,
                observed_renewal,
            }));
        }
        if now >= self.next_heartbeat {
            self.in_flight = Some((Pending::Heartbeat, now));
            // Cadence from the planned time, not from when the driver got round to it, but
            // never a burst of catch-up heartbeats after a pause.
            let base = self.config.timing.heartbeat_interval;
            let interval = self.jitter.as_mut().map_or(base, |j| j.interval(base));
            self.next_heartbeat += interval;
            if self.next_heartbeat <= now {
                self.next_heartbeat = now + interval;
            }
            return Some(Action::Heartbeat(HeartbeatRequest {
                group: self.config.group.clone(),
                member: self.config.member.clone(),
                incarnation: self.incarnation,
                liveness_timeout: self.config.timing.liveness_timeout,
            }));
        }
        None
    }

    /// Reports the result of an [`Action::Heartbeat`].
    pub fn handle_heartbeat(&mut self, now: Instant, result: Result<Observation, StoreError>) {
        let Some(sent_at) = self.finish(Pending::Heartbeat) else {
            return;
        };
        let observation = match result {
            Ok(observation) => observation,
            Err(_) => {
                // Nothing learned; the renew deadline decides when a leader stops.
                self.check_renew_deadline(now);
                return;
            }
        };
        if let OwnRow::HeldByOther(other) = observation.own_row {
            // Keep watching the holder's renewals meanwhile: once our row is ours again,
            // the local count of its silence has already begun.
            let _ = self.holder_dead(sent_at, now, observation.holder.as_ref());
            self.on_conflict(now, sent_at, other);
            return;
        }
        self.conflict_since = None;
        self.observed_term = self.observed_term.max(observation.term);
        if observation.holder_is(&self.config.member, self.incarnation) {
            self.holds_token = true;
            self.confirm(observation.term, sent_at);
        } else {
            self.holds_token = false;
            self.lose(LossReason::Superseded);
            let holder_dead = self.holder_dead(sent_at, now, observation.holder.as_ref());
            if holder_dead && self.phase == Phase::Running {
                self.takeover_due = Some((
                    observation.term,
                    observation.holder.as_ref().map(|h| h.renewal),
                ));
            }
        }
        self.check_renew_deadline(now);
    }

    /// Reports the result of an [`Action::TakeOver`].
    pub fn handle_takeover(&mut self, now: Instant, result: Result<TakeoverOutcome, StoreError>) {
        let Some(sent_at) = self.finish(Pending::TakeOver) else {
            return;
        };
        if let Ok(TakeoverOutcome::Won(term)) = result {
            self.observed_term = self.observed_term.max(term);
            self.holds_token = true;
            // The takeover wrote a fresh lease at a store time no earlier than `sent_at`.
            self.confirm(term, sent_at);
        }
        // Lost or failed: the next heartbeat observes the new holder (or the same stale one).
        self.check_renew_deadline(now);
    }

    /// Reports the result of an [`Action::Release`] or [`Action::Leave`]. The elector is
    /// stopped whatever the result: a failed release expires after the liveness timeout.
    pub fn handle_stopped(&mut self, _now: Instant, _result: Result<(), StoreError>) {
        if self.finish(Pending::Stop).is_some() {
            self.phase = Phase::Stopped;
            self.holds_token = false;
            self.events.push_back(Event::Stopped);
        }
    }

    /// Begins a graceful stop: dispatching ends at once, then the token is released (or the
    /// heartbeat row removed) by the next action.
    pub fn stop(&mut self, _now: Instant) {
        if self.phase == Phase::Running {
            self.lose(LossReason::Stopping);
            self.takeover_due = None;
            self.phase = Phase::Stopping;
        }
    }

    /// May a standby take over from `holder`? Only when the store's clock says its lease is
    /// older than `liveness_timeout` *and* this member has itself seen the holder's renewal
    /// token ([`HolderView::renewal`]) stand still for `liveness_timeout` on its own monotonic
    /// clock (as Kubernetes' leader election watches the lease record). A forward step of the
    /// store's clock (an NTP correction) inflates the lease age the store reports, but a
    /// renewing holder's token keeps changing, so the step cannot open a second dispatch
    /// window. The first observation of a holder has nothing to compare with: it trusts the
    /// store's age, but no takeover happens before the token has stood still for two
    /// heartbeat intervals of this member's clock (a live holder would have renewed), so a
    /// member that starts while a dead holder's stale lease is in the store takes over two
    /// heartbeats after its first look. The bound that remains: a step smaller than the gap
    /// between two observations can move the estimated renewal earlier by at most that gap,
    /// so the estimate is trusted only when the gap is within the renew margin
    /// (`liveness_timeout - renew_deadline`; the defaults: 1.67 s, against a heartbeat
    /// interval of 1 s); after a longer gap (this member could not look for a while) the
    /// renewal counts from now. Two more rules for a slow store, whose answer can describe
    /// the store as it was long after the look was sent: the token's standing still is
    /// counted from the first look's answer, not its sending; and a renewal seen is never
    /// counted from earlier than `answer - (liveness_timeout - renew_deadline)`, the earliest
    /// moment from which counting `liveness_timeout` still ends after the holder's renew
    /// deadline. Both found by the simulator (a slow store, then a clock step).
    fn holder_dead(
        &mut self,
        sent_at: Instant,
        received_at: Instant,
        holder: Option<&HolderView>,
    ) -> bool {
        let Some(holder) = holder else {
            // Released or never taken: nobody to wait for.
            self.watch = None;
            return true;
        };
        // No later than the real renewal, unless the store's clock stepped.
        let estimate = sent_at.checked_sub(holder.lease_age);
        let same = self
            .watch
            .as_ref()
            .is_some_and(|w| w.member == holder.member && w.incarnation == holder.incarnation);
        match self.watch.as_mut() {
            Some(watch) if same => {
                if watch.renewal != holder.renewal {
                    // It renewed after our last look and no later than this one. An estimate
                    // before our last look contradicts that: the store's clock stepped; then
                    // count from now. So does a last look too long ago: a step can then move
                    // the estimate earlier by up to that whole gap (a standby that was
                    // partitioned for a while, then sees a fresh renewal through a stepped
                    // clock), more than the renew margin absorbs.
                    let timing = &self.config.timing;
                    let margin = timing
                        .liveness_timeout
                        .saturating_sub(timing.renew_deadline);
                    let consistent = estimate.is_some_and(|e| e > watch.seen_at)
                        && sent_at.saturating_duration_since(watch.seen_at) <= margin;
                    let candidate = if consistent {
                        estimate.expect("checked")
                    } else {
                        sent_at
                    };
                    // Whatever the ages say, the renewal happened before this answer came
                    // back: counting from `received_at - margin` can never start the count
                    // earlier than the holder's own renew deadline allows (a slow store's
                    // latency and a stepped clock together could otherwise).
                    let floor = received_at.checked_sub(margin);
                    watch.renewed = Some(floor.map_or(candidate, |f| candidate.max(f)));
                    watch.renewal = holder.renewal;
                }
                watch.seen_at = sent_at;
            }
            _ => {
                self.watch = Some(HolderWatch {
                    member: holder.member.clone(),
                    incarnation: holder.incarnation,
                    renewal: holder.renewal,
                    // What a look reports held somewhere between its send and its answer:
                    // the token's standing still is counted from the answer.
                    first_seen: received_at,
                    seen_at: sent_at,
                    renewed: estimate,
                });
            }
        }
        let watch = self.watch.as_ref().expect("just set");
        let liveness = self.config.timing.liveness_timeout;
        let quiet_here = watch
            .renewed
            .is_none_or(|r| sent_at.saturating_duration_since(r) >= liveness);
        // A live holder renews every heartbeat interval: its token standing still for two of
        // them, on our clock, proves the store's age is not a clock step's artefact.
        let watched = sent_at.saturating_duration_since(watch.first_seen)
            >= self.config.timing.heartbeat_interval * 2;
        holder.lease_age > liveness && quiet_here && watched
    }

    fn fence(&self, term: Term) -> Fence {
        Fence {
            group: self.config.group.clone(),
            member: self.config.member.clone(),
            incarnation: self.incarnation,
            term,
        }
    }

    fn finish(&mut self, expected: Pending) -> Option<Instant> {
        match self.in_flight {
            Some((pending, sent_at)) if pending == expected => {
                self.in_flight = None;
                Some(sent_at)
            }
            _ => None,
        }
    }

    fn confirm(&mut self, term: Term, confirmed_at: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        match &mut self.leadership {
            Some(l) if l.term == term => l.confirmed_at = l.confirmed_at.max(confirmed_at),
            _ => {
                self.lose(LossReason::Superseded);
                self.leadership = Some(Leadership { term, confirmed_at });
                self.events.push_back(Event::BecameLeader(self.fence(term)));
            }
        }
    }

    fn lose(&mut self, reason: LossReason) {
        if let Some(l) = self.leadership.take() {
            self.events.push_back(Event::LostLeadership {
                term: l.term,
                reason,
            });
        }
    }

    fn check_renew_deadline(&mut self, now: Instant) {
        if let Some(l) = self.leadership
            && now >= l.confirmed_at + self.config.timing.renew_deadline
        {
            self.lose(LossReason::RenewDeadline);
        }
    }

    fn on_conflict(&mut self, now: Instant, sent_at: Instant, other: Incarnation) {
        // Our own row carries another incarnation: either a previous process with our ID
        // that died (its row goes stale within the liveness timeout and our write then
        // succeeds) or a live duplicate (it keeps writing). Wait long enough to tell.
        self.holds_token = false;
        self.lose(LossReason::Superseded);
        let since = *self.conflict_since.get_or_insert(sent_at);
        let timing = &self.config.timing;
        let patience = timing.liveness_timeout + timing.heartbeat_interval * 3;
        if sent_at.saturating_duration_since(since) > patience {
            self.phase = Phase::Stopped;
            self.events
                .push_back(Event::Refused(ElectionError::DuplicateMember {
                    member: self.config.member.clone(),
                    group: self.config.group.clone(),
                    other,
                }));
            self.events.push_back(Event::Stopped);
        }
        let _ = now;
    }

    /// How long the store has to answer before the driver should report a timeout: the
    /// renew deadline. A heartbeat that takes longer is worthless to a leader anyway, and a
    /// store that answers slower than the heartbeat interval but within the deadline (a
    /// database answering in 1.2 s with a 1 s heartbeat) must not step every member down.
    pub fn store_call_timeout(&self) -> Duration {
        self.config
            .timing
            .renew_deadline
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Timing;
    use crate::store::HolderView;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn elector(t0: Instant) -> Elector {
        let config = ElectionConfig::new("me", "g", Timing::default()).unwrap();
        Elector::new(config, Incarnation(1), t0).without_jitter()
    }

    fn holder(member: &str, incarnation: u64, age: u64) -> Option<HolderView> {
        Some(HolderView {
            member: MemberId::new(member).unwrap(),
            incarnation: Incarnation(incarnation),
            lease_age: ms(age),
            renewal: 0,
        })
    }

    /// A holder whose renewal token is `renewal` (it changes with every renewal).
    fn renewing(member: &str, age: u64, renewal: i64) -> Option<HolderView> {
        holder(member, 9, age).map(|h| HolderView { renewal, ..h })
    }

    fn observed(term: u64, holder: Option<HolderView>) -> Observation {
        Observation {
            own_row: OwnRow::Written,
            term: Term(term),
            holder,
        }
    }

    /// Heartbeat at `now` answered with `obs`.
    fn tick(e: &mut Elector, now: Instant, obs: Result<Observation, StoreError>) {
        assert!(matches!(e.poll_action(now), Some(Action::Heartbeat(_))));
        e.handle_heartbeat(now, obs);
    }

    fn lead(e: &mut Elector, now: Instant) {
        tick(e, now, Ok(observed(0, None)));
        assert!(matches!(e.poll_action(now), Some(Action::TakeOver(_))));
        e.handle_takeover(now, Ok(TakeoverOutcome::Won(Term(1))));
        assert!(matches!(e.poll_event(), Some(Event::BecameLeader(_))));
    }

    fn unavailable() -> StoreError {
        StoreError::Unavailable {
            operation: "heartbeat",
            group: "g".into(),
            cause: "down".into(),
        }
    }

    #[test]
    fn a_fresh_holder_keeps_us_standby() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        tick(&mut e, t0, Ok(observed(3, holder("other", 9, 4000))));
        assert_eq!(
            e.poll_action(t0),
            None,
            "no takeover while the holder is fresh"
        );
        assert_eq!(e.role(t0), Role::Standby);
        assert_eq!(e.term(), Term(3));
        // Stale by the store's clock, but watched for one heartbeat only: not yet.
        let t1 = t0 + ms(1000);
        tick(&mut e, t1, Ok(observed(3, holder("other", 9, 5001))));
        assert_eq!(e.poll_action(t1), None);
        // A stale holder whose renewal token stood still for two heartbeats: take over.
        let t1 = t0 + ms(2000);
        tick(&mut e, t1, Ok(observed(3, holder("other", 9, 6001))));
        match e.poll_action(t1) {
            Some(Action::TakeOver(r)) => {
                assert_eq!(r.observed_term, Term(3));
                // The token it watched stand still: the store compares it atomically.
                assert_eq!(r.observed_renewal, Some(0));
            }
            other => panic!("expected takeover, got {other:?}"),
        }
        e.handle_takeover(t1, Ok(TakeoverOutcome::Lost));
        assert_eq!(e.role(t1), Role::Standby);
    }

    #[test]
    fn a_forward_step_of_the_store_clock_does_not_open_a_second_window() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        // The holder renews every second: ages stay small.
        tick(&mut e, t0, Ok(observed(3, renewing("other", 100, 1))));
        let t1 = t0 + ms(1000);
        tick(&mut e, t1, Ok(observed(3, renewing("other", 100, 2))));
        // NTP steps the store's clock 7 s forward just after the holder's next renewal.
        let t2 = t0 + ms(2000);
        tick(&mut e, t2, Ok(observed(3, renewing("other", 7100, 3))));
        assert_eq!(e.poll_action(t2), None, "it renewed since our last look");
        // We miss a few looks (a partition), the step is still in the ages.
        let t6 = t0 + ms(6000);
        tick(&mut e, t6, Ok(observed(3, renewing("other", 7050, 7))));
        assert_eq!(e.poll_action(t6), None, "renewed while we could not look");
        let t7 = t0 + ms(7000);
        tick(&mut e, t7, Ok(observed(3, renewing("other", 150, 8))));
        assert_eq!(e.poll_action(t7), None);
        // When it really stops renewing, the standby takes over after the liveness timeout
        // of its own clock, as before.
        let t12 = t7 + ms(5000);
        tick(&mut e, t12, Ok(observed(3, renewing("other", 5150, 8))));
        assert!(matches!(e.poll_action(t12), Some(Action::TakeOver(_))));
    }

    #[test]
    fn a_renewal_seen_after_a_long_gap_counts_from_now_whatever_the_stepped_age() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        tick(&mut e, t0, Ok(observed(3, renewing("other", 100, 1))));
        let t1 = t0 + ms(1000);
        tick(&mut e, t1, Ok(observed(3, renewing("other", 100, 2))));
        // Partitioned for 7 s. Back, we see a renewal 100 ms old, but the store's clock has
        // stepped 5.3 s forward meanwhile: the age reads 5.4 s, and `now - age` falls after
        // our last look, as a real renewal would. The gap is longer than the renew margin,
        // so the estimate proves nothing: the holder renewed no later than now.
        let t8 = t0 + ms(8000);
        tick(&mut e, t8, Ok(observed(3, renewing("other", 5400, 9))));
        assert_eq!(e.poll_action(t8), None, "the holder renewed 100 ms ago");
        let t9 = t8 + ms(1000);
        tick(&mut e, t9, Ok(observed(3, renewing("other", 5400, 10))));
        assert_eq!(e.poll_action(t9), None);
        // It stops renewing: taken over a liveness timeout after the last renewal we saw.
        let t14 = t9 + ms(5000);
        tick(&mut e, t14, Ok(observed(3, renewing("other", 10400, 10))));
        assert!(matches!(e.poll_action(t14), Some(Action::TakeOver(_))));
    }

    #[test]
    fn heartbeats_of_members_started_together_spread_and_stay_within_the_bounds() {
        let t0 = Instant::now();
        let hb = Timing::default().heartbeat_interval;
        let mut schedules = Vec::new();
        for incarnation in 1..=50u64 {
            let config = ElectionConfig::new("me", "g", Timing::default()).unwrap();
            let mut e = Elector::new(config, Incarnation(incarnation * 7919), t0);
            let mut now = t0;
            let mut times = Vec::new();
            for i in 0..20 {
                assert!(matches!(e.poll_action(now), Some(Action::Heartbeat(_))));
                e.handle_heartbeat(now, Err(unavailable()));
                let next = e.next_deadline().expect("a next heartbeat");
                let gap = next - now;
                let (low, high) = if i == 0 { (0.1, 1.0) } else { (0.9, 1.1) };
                assert!(
                    gap >= hb.mul_f64(low) && gap <= hb.mul_f64(high),
                    "interval {i} of {gap:?} outside {low}..{high} of {hb:?}"
                );
                times.push(next - t0);
                now = next;
            }
            schedules.push(times);
        }
        // Started at the same instant, no two members send their second heartbeat within a
        // millisecond of each other more than a few times, and the phases cover the interval.
        let mut seconds: Vec<Duration> = schedules.iter().map(|s| s[0]).collect();
        seconds.sort();
        let close = seconds
            .windows(2)
            .filter(|w| w[1] - w[0] < Duration::from_millis(1))
            .count();
        assert!(close <= 3, "{close} pairs in lockstep: {seconds:?}");
        assert!(
            seconds[seconds.len() - 1] - seconds[0] > hb / 2,
            "{seconds:?}"
        );
    }

    #[test]
    fn a_slow_first_look_counts_the_holders_silence_from_its_answer() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        // The first look is slow: sent at t0, answered 1.5 s later. Its clock-stepped age
        // (6 s) says stale, but the store answered it just before the answer came back.
        assert!(matches!(e.poll_action(t0), Some(Action::Heartbeat(_))));
        e.handle_heartbeat(t0 + ms(1500), Ok(observed(3, renewing("other", 6000, 5))));
        // Two looks later, 2 s after the first was sent, the token still reads 5: that is
        // only 0.5 s of silence since the first answer, not two heartbeat intervals.
        let t2 = t0 + ms(2000);
        tick(&mut e, t2, Ok(observed(3, renewing("other", 6400, 5))));
        assert_eq!(e.poll_action(t2), None, "no takeover on 0.5 s of watching");
        // Watched long enough from the first answer, and still silent: taken over.
        let t4 = t0 + ms(3600);
        tick(&mut e, t4, Ok(observed(3, renewing("other", 8000, 5))));
        assert!(matches!(e.poll_action(t4), Some(Action::TakeOver(_))));
    }

    #[test]
    fn a_leader_demotes_itself_at_the_renew_deadline() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        lead(&mut e, t0);
        assert_eq!(e.role(t0), Role::Leader);
        // Heartbeats fail from now on; dispatching ends renew_deadline after t0 exactly.
        let renew = Timing::default().renew_deadline;
        let t1 = t0 + ms(1000);
        tick(&mut e, t1, Err(unavailable()));
        assert!(e.may_dispatch(t0 + renew - ms(1)).is_some());
        assert!(e.may_dispatch(t0 + renew).is_none());
        assert_eq!(e.next_deadline(), Some(t0 + ms(2000)));
        let t2 = t0 + ms(2000);
        tick(&mut e, t2, Err(unavailable()));
        assert_eq!(e.next_deadline(), Some(t0 + ms(3000)));
        tick(&mut e, t0 + ms(3000), Err(unavailable()));
        assert_eq!(
            e.next_deadline(),
            Some(t0 + renew),
            "the renew deadline comes first"
        );
        // At the deadline poll_action reports the loss.
        assert_eq!(e.poll_action(t0 + renew), None);
        assert_eq!(
            e.poll_event(),
            Some(Event::LostLeadership {
                term: Term(1),
                reason: LossReason::RenewDeadline
            })
        );
        // The store comes back and still names us: leadership resumes under the same term.
        let t3 = t0 + ms(4000);
        tick(&mut e, t3, Ok(observed(1, holder("me", 1, 0))));
        assert!(matches!(e.poll_event(), Some(Event::BecameLeader(f)) if f.term == Term(1)));
        assert_eq!(e.may_dispatch(t3).map(|f| f.term), Some(Term(1)));
    }

    #[test]
    fn renew_deadline_counts_from_the_start_of_the_write() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        lead(&mut e, t0);
        // A heartbeat sent at t1 but answered much later confirms from t1, not its answer.
        let t1 = t0 + ms(1000);
        assert!(matches!(e.poll_action(t1), Some(Action::Heartbeat(_))));
        let answered = t1 + ms(3000);
        e.handle_heartbeat(answered, Ok(observed(1, holder("me", 1, 0))));
        let renew = Timing::default().renew_deadline;
        assert!(e.may_dispatch(t1 + renew - ms(1)).is_some());
        assert!(e.may_dispatch(t1 + renew).is_none());
    }

    #[test]
    fn a_new_term_elsewhere_ends_leadership_at_once() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        lead(&mut e, t0);
        let t1 = t0 + ms(1000);
        tick(&mut e, t1, Ok(observed(2, holder("other", 5, 10))));
        assert_eq!(
            e.poll_event(),
            Some(Event::LostLeadership {
                term: Term(1),
                reason: LossReason::Superseded
            })
        );
        assert!(e.may_dispatch(t1).is_none());
        assert_eq!(e.role(t1), Role::Standby);
        // Role is recomputed for life: when the other goes stale, we compete again.
        let t2 = t0 + ms(8000);
        tick(&mut e, t2, Ok(observed(2, holder("other", 5, 6000))));
        assert!(
            matches!(e.poll_action(t2), Some(Action::TakeOver(r)) if r.observed_term == Term(2))
        );
    }

    #[test]
    fn a_previous_incarnation_of_ourselves_is_not_us() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        // The store names "me" but with another incarnation (a crashed earlier process).
        tick(&mut e, t0, Ok(observed(4, holder("me", 77, 6000))));
        assert_eq!(e.role(t0), Role::Standby);
        // Two heartbeats of watching prove it is not renewing; then take over.
        assert_eq!(e.poll_action(t0), None);
        let t2 = t0 + ms(2000);
        tick(&mut e, t2, Ok(observed(4, holder("me", 77, 8000))));
        assert!(
            matches!(e.poll_action(t2), Some(Action::TakeOver(r)) if r.observed_term == Term(4))
        );
    }

    #[test]
    fn stop_releases_the_token_and_stops() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        lead(&mut e, t0);
        e.stop(t0);
        assert!(e.may_dispatch(t0).is_none(), "dispatching ends at once");
        assert!(matches!(
            e.poll_event(),
            Some(Event::LostLeadership {
                reason: LossReason::Stopping,
                ..
            })
        ));
        match e.poll_action(t0) {
            Some(Action::Release(f)) => assert_eq!(f.term, Term(1)),
            other => panic!("expected release, got {other:?}"),
        }
        e.handle_stopped(t0, Ok(()));
        assert_eq!(e.poll_event(), Some(Event::Stopped));
        assert_eq!(e.role(t0), Role::Stopped);
        assert_eq!(e.poll_action(t0 + ms(5000)), None);
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn a_standby_leaves_on_stop() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        tick(&mut e, t0, Ok(observed(1, holder("other", 2, 0))));
        e.stop(t0);
        assert!(matches!(e.poll_action(t0), Some(Action::Leave { .. })));
    }

    #[test]
    fn a_live_duplicate_member_is_refused_after_patience() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        let conflict = || {
            Ok(Observation {
                own_row: OwnRow::HeldByOther(Incarnation(42)),
                term: Term(1),
                holder: holder("me", 42, 100),
            })
        };
        // A crashed predecessor's row would go stale within liveness: keep trying until then.
        let mut now = t0;
        for _ in 0..9 {
            tick(&mut e, now, conflict());
            assert_eq!(e.poll_event(), None, "still patient at {:?}", now - t0);
            now += ms(1000);
        }
        // Still held by a live process after liveness + 3 heartbeats: refused.
        tick(&mut e, now, conflict());
        match e.poll_event() {
            Some(Event::Refused(err)) => {
                let text = err.to_string();
                assert!(text.contains("`me`") && text.contains("`g`"), "{text}");
            }
            other => panic!("expected refusal, got {other:?}"),
        }
        assert_eq!(e.poll_event(), Some(Event::Stopped));
        assert_eq!(e.role(now), Role::Stopped);
    }

    #[test]
    fn a_dead_predecessor_is_waited_out() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        let conflict = Observation {
            own_row: OwnRow::HeldByOther(Incarnation(42)),
            term: Term(1),
            holder: None,
        };
        tick(&mut e, t0, Ok(conflict.clone()));
        tick(&mut e, t0 + ms(1000), Ok(conflict));
        // The old row went stale: our write lands, and the election goes on normally.
        tick(&mut e, t0 + ms(2000), Ok(observed(1, None)));
        assert!(matches!(
            e.poll_action(t0 + ms(2000)),
            Some(Action::TakeOver(_))
        ));
        assert_eq!(e.poll_event(), None);
    }

    #[test]
    fn one_action_at_a_time_and_heartbeats_keep_cadence() {
        let t0 = Instant::now();
        let mut e = elector(t0);
        assert!(matches!(e.poll_action(t0), Some(Action::Heartbeat(_))));
        assert_eq!(
            e.poll_action(t0 + ms(5000)),
            None,
            "nothing while a call is in flight"
        );
        e.handle_heartbeat(t0 + ms(10), Ok(observed(1, holder("x", 1, 0))));
        assert_eq!(e.next_deadline(), Some(t0 + ms(1000)));
        // After a long gap (a pause) there is no burst of catch-up heartbeats.
        let late = t0 + ms(9500);
        assert!(matches!(e.poll_action(late), Some(Action::Heartbeat(_))));
        e.handle_heartbeat(late, Ok(observed(1, holder("x", 1, 0))));
        assert_eq!(e.next_deadline(), Some(late + ms(1000)));
    }
}
