//! The in-memory `CoordinationStore`: the reference semantics of the trait, with its own clock
//! (standing in for the database clock) and fault injection.
//!
//! [`StoreState`] is the synchronous heart, driven with explicit store times by the simulator;
//! [`MemStore`] wraps it for async callers (the conformance suite, listener tests), reading the
//! time from a [`Clock`].
//!
//! It keeps no ledger history (`ledger_event` in the SQL stores; it implements no
//! `coord_core::LedgerHistory`): the simulator checks the ledger's rows, and the history is
//! tested on the real databases.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    HolderView, Incarnation, LedgerRecord, LedgerState, LedgerUpdate, MemberId, MemberStatus,
    Observation, OwnRow, StaleRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};

use crate::clock::Clock;

#[derive(Debug, Clone)]
struct Holder {
    member: MemberId,
    incarnation: Incarnation,
    renewed_at: Instant,
    /// Bumped by every renewal (the renewal token).
    renewals: i64,
}

#[derive(Debug, Default)]
struct Group {
    term: Term,
    holder: Option<Holder>,
    members: BTreeMap<MemberId, (Incarnation, Instant)>,
    ledger: BTreeMap<FileVersion, LedgerRecord>,
    /// When each row was last written, by the store's clock.
    written: BTreeMap<FileVersion, Instant>,
}

/// The state of a coordination database, every operation atomic at an explicit store time.
#[derive(Debug, Default)]
pub struct StoreState {
    groups: HashMap<GroupId, Group>,
    /// The store clock's epoch: write times are reported as milliseconds since the first
    /// one.
    origin: Option<Instant>,
}

impl StoreState {
    /// An empty store.
    pub fn new() -> StoreState {
        StoreState::default()
    }

    fn group(&mut self, group: &GroupId) -> &mut Group {
        self.groups.entry(group.clone()).or_default()
    }

    /// [`CoordinationStore::heartbeat`] at store time `now`.
    pub fn heartbeat(&mut self, now: Instant, request: &HeartbeatRequest) -> Observation {
        let group = self.group(&request.group);
        let own_row = match group.members.get(&request.member) {
            Some((incarnation, at))
                if *incarnation != request.incarnation
                    && now.saturating_duration_since(*at) <= request.liveness_timeout =>
            {
                OwnRow::HeldByOther(*incarnation)
            }
            _ => {
                group
                    .members
                    .insert(request.member.clone(), (request.incarnation, now));
                if let Some(holder) = &mut group.holder
                    && holder.member == request.member
                    && holder.incarnation == request.incarnation
                {
                    holder.renewed_at = now;
                    holder.renewals += 1;
                }
                OwnRow::Written
            }
        };
        Observation {
            own_row,
            term: group.term,
            holder: group.holder.as_ref().map(|h| HolderView {
                member: h.member.clone(),
                incarnation: h.incarnation,
                lease_age: now.saturating_duration_since(h.renewed_at),
                renewal: h.renewals,
            }),
        }
    }

    /// [`CoordinationStore::take_over`] at store time `now`.
    pub fn take_over(&mut self, now: Instant, request: &TakeoverRequest) -> TakeoverOutcome {
        let group = self.group(&request.group);
        if group.term != request.observed_term {
            return TakeoverOutcome::Lost;
        }
        if let Some(holder) = &group.holder
            && (now.saturating_duration_since(holder.renewed_at) <= request.liveness_timeout
                || request
                    .observed_renewal
                    .is_some_and(|seen| seen != holder.renewals))
        {
            return TakeoverOutcome::Lost;
        }
        group.term = group.term.next();
        group.holder = Some(Holder {
            member: request.member.clone(),
            incarnation: request.incarnation,
            renewed_at: now,
            renewals: 0,
        });
        TakeoverOutcome::Won(group.term)
    }

    fn fence_holds(group: &Group, fence: &Fence) -> bool {
        group.term == fence.term
            && group
                .holder
                .as_ref()
                .is_some_and(|h| h.member == fence.member && h.incarnation == fence.incarnation)
    }

    /// [`CoordinationStore::release`].
    pub fn release(&mut self, fence: &Fence) {
        let group = self.group(&fence.group);
        if Self::fence_holds(group, fence) {
            group.holder = None;
        }
        Self::remove_member(group, &fence.member, fence.incarnation);
    }

    /// [`CoordinationStore::leave`].
    pub fn leave(&mut self, group: &GroupId, member: &MemberId, incarnation: Incarnation) {
        let group = self.group(group);
        Self::remove_member(group, member, incarnation);
    }

    fn remove_member(group: &mut Group, member: &MemberId, incarnation: Incarnation) {
        if group
            .members
            .get(member)
            .is_some_and(|(i, _)| *i == incarnation)
        {
            group.members.remove(member);
        }
    }

    /// [`CoordinationStore::load_ledger`]: the rows with work left.
    pub fn load_ledger(&self, group: &GroupId) -> Vec<LedgerRecord> {
        self.groups
            .get(group)
            .map(|g| {
                g.ledger
                    .values()
                    .filter(|r| !matches!(r.state, LedgerState::Done | LedgerState::Error))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every row of the group, whatever its state (for assertions).
    pub fn ledger_rows(&self, group: &GroupId) -> Vec<LedgerRecord> {
        self.groups
            .get(group)
            .map(|g| g.ledger.values().cloned().collect())
            .unwrap_or_default()
    }

    /// [`CoordinationStore::lookup_ledger`].
    pub fn lookup_ledger(&self, group: &GroupId, versions: &[FileVersion]) -> Vec<LedgerRecord> {
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        versions
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|v| g.ledger.get(v).cloned())
            .collect()
    }

    /// [`CoordinationStore::stale_settled`] at store time `now`.
    pub fn stale_settled(
        &self,
        now: Instant,
        group: &GroupId,
        older_than: Duration,
        after: Option<&StaleRow>,
        limit: usize,
    ) -> Vec<StaleRow> {
        let (Some(g), Some(origin)) = (self.groups.get(group), self.origin) else {
            return Vec::new();
        };
        let mut rows: Vec<StaleRow> = g
            .ledger
            .values()
            .filter(|r| matches!(r.state, LedgerState::Done | LedgerState::Error))
            .filter_map(|r| {
                let at = *g.written.get(&r.version)?;
                (now.saturating_duration_since(at) > older_than).then(|| StaleRow {
                    version: r.version.clone(),
                    updated_at_ms: at.saturating_duration_since(origin).as_millis() as i64,
                })
            })
            .collect();
        let key = |r: &StaleRow| (r.updated_at_ms, r.version.clone());
        rows.sort_by_key(key);
        rows.into_iter()
            .filter(|r| after.is_none_or(|a| key(r) > key(a)))
            .take(limit)
            .collect()
    }

    fn stamp(&mut self, now: Instant) {
        self.origin.get_or_insert(now);
    }

    /// [`CoordinationStore::claim`] at store time `now`.
    pub fn claim(
        &mut self,
        now: Instant,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        self.stamp(now);
        let group = self.group(&fence.group);
        if !Self::fence_holds(group, fence) {
            return Err(StoreError::fenced("claim", fence));
        }
        let mut outcomes = Vec::with_capacity(versions.len());
        for version in versions {
            let record = group
                .ledger
                .entry(version.clone())
                .or_insert_with(|| LedgerRecord {
                    version: version.clone(),
                    state: LedgerState::Failed,
                    term: fence.term,
                    attempts: 0,
                    last_error: None,
                    detail: None,
                });
            if record.state.is_settled() {
                outcomes.push(ClaimOutcome::Settled);
                continue;
            }
            let redelivery = record.state == LedgerState::Claimed;
            group.written.insert(version.clone(), now);
            record.state = LedgerState::Claimed;
            record.term = fence.term;
            record.attempts += 1;
            outcomes.push(ClaimOutcome::Claimed {
                attempt: record.attempts,
                redelivery,
            });
        }
        Ok(outcomes)
    }

    /// [`CoordinationStore::record`] at store time `now`.
    pub fn record(
        &mut self,
        now: Instant,
        fence: &Fence,
        updates: &[LedgerUpdate],
    ) -> Result<(), StoreError> {
        self.stamp(now);
        let group = self.group(&fence.group);
        if !Self::fence_holds(group, fence) {
            return Err(StoreError::fenced("record", fence));
        }
        for update in updates {
            match update {
                LedgerUpdate::Set {
                    version,
                    state,
                    error,
                    detail,
                } => {
                    let record =
                        group
                            .ledger
                            .entry(version.clone())
                            .or_insert_with(|| LedgerRecord {
                                version: version.clone(),
                                state: *state,
                                term: fence.term,
                                attempts: 0,
                                last_error: None,
                                detail: None,
                            });
                    // Done is final: a late write of an earlier state (a statement that
                    // outlived its lease) never takes it back; only Forget removes it.
                    if record.state == LedgerState::Done && *state != LedgerState::Done {
                        continue;
                    }
                    record.state = *state;
                    record.term = fence.term;
                    group.written.insert(version.clone(), now);
                    record.last_error = error.clone();
                    if detail.is_some() {
                        record.detail = detail.clone();
                    }
                }
                LedgerUpdate::Forget(version) => {
                    group.ledger.remove(version);
                    group.written.remove(version);
                }
            }
        }
        Ok(())
    }

    /// [`CoordinationStore::members`].
    pub fn members(&self, now: Instant, group: &GroupId) -> Vec<MemberStatus> {
        self.groups
            .get(group)
            .map(|g| {
                g.members
                    .iter()
                    .map(|(member, (incarnation, at))| MemberStatus {
                        member: member.clone(),
                        incarnation: *incarnation,
                        heartbeat_age: now.saturating_duration_since(*at),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// [`CoordinationStore::observe`] at store time `now`: reads only (a group never seen is
    /// not created).
    pub fn observe(&self, now: Instant, group: &GroupId) -> GroupView {
        let Some(g) = self.groups.get(group) else {
            return GroupView {
                term: Term(0),
                holder: None,
                members: Vec::new(),
            };
        };
        GroupView {
            term: g.term,
            holder: g.holder.as_ref().map(|h| HolderView {
                member: h.member.clone(),
                incarnation: h.incarnation,
                lease_age: now.saturating_duration_since(h.renewed_at),
                renewal: h.renewals,
            }),
            members: self.members(now, group),
        }
    }

    /// The current term and holder of a group (for assertions).
    pub fn holder(&self, group: &GroupId) -> (Term, Option<(MemberId, Incarnation)>) {
        self.groups.get(group).map_or((Term(0), None), |g| {
            (
                g.term,
                g.holder.as_ref().map(|h| (h.member.clone(), h.incarnation)),
            )
        })
    }

    /// The ledger state of one version (for assertions).
    pub fn ledger_state(&self, group: &GroupId, version: &FileVersion) -> Option<LedgerState> {
        self.groups
            .get(group)
            .and_then(|g| g.ledger.get(version))
            .map(|r| r.state)
    }
}

#[derive(Debug, Default)]
struct Faults {
    unavailable: AtomicBool,
    latency_ms: AtomicU64,
}

/// An in-memory [`CoordinationStore`]. Clones share one state, like connections to one
/// database; faults set on any clone apply to all.
#[derive(Debug, Clone)]
pub struct MemStore {
    state: Arc<Mutex<StoreState>>,
    clock: Clock,
    faults: Arc<Faults>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new(Clock::real())
    }
}

impl MemStore {
    /// An empty store whose clock is `clock`.
    pub fn new(clock: Clock) -> MemStore {
        MemStore {
            state: Arc::new(Mutex::new(StoreState::new())),
            clock,
            faults: Arc::new(Faults::default()),
        }
    }

    /// Every call fails with [`StoreError::Unavailable`] while set.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.faults.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Every call waits this long (tokio time) before it is applied.
    pub fn set_latency(&self, latency: Duration) {
        self.faults
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Runs `f` on the state (for assertions).
    pub fn inspect<T>(&self, f: impl FnOnce(&StoreState) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    async fn apply<T>(
        &self,
        operation: &'static str,
        group: &GroupId,
        f: impl FnOnce(&mut StoreState, Instant) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let latency = self.faults.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if self.faults.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                operation,
                group: group.to_string(),
                cause: "in-memory store set unavailable".into(),
            });
        }
        let now = self.clock.now();
        f(&mut self.state.lock().unwrap(), now)
    }
}

impl CoordinationStore for MemStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        self.apply("heartbeat", &request.group, |s, now| {
            Ok(s.heartbeat(now, request))
        })
        .await
    }

    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        self.apply("takeover", &request.group, |s, now| {
            Ok(s.take_over(now, request))
        })
        .await
    }

    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        self.apply("release", &fence.group, |s, _| {
            s.release(fence);
            Ok(())
        })
        .await
    }

    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        self.apply("leave", group, |s, _| {
            s.leave(group, member, incarnation);
            Ok(())
        })
        .await
    }

    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        self.apply("load_ledger", group, |s, _| Ok(s.load_ledger(group)))
            .await
    }

    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        self.apply("claim", &fence.group, |s, now| {
            s.claim(now, fence, versions)
        })
        .await
    }

    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        self.apply("record", &fence.group, |s, now| {
            s.record(now, fence, updates)
        })
        .await
    }

    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        self.apply("lookup_ledger", group, |s, _| {
            Ok(s.lookup_ledger(group, versions))
        })
        .await
    }

    async fn stale_settled(
        &self,
        group: &GroupId,
        older_than: Duration,
        after: Option<&StaleRow>,
        limit: usize,
    ) -> Result<Vec<StaleRow>, StoreError> {
        self.apply("stale_settled", group, |s, now| {
            Ok(s.stale_settled(now, group, older_than, after, limit))
        })
        .await
    }

    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        self.apply("observe", group, |s, now| Ok(s.observe(now, group)))
            .await
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        self.apply("members", group, |s, now| Ok(s.members(now, group)))
            .await
    }
}
