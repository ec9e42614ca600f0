//! The `CoordinationStore` trait: what a database must do for the protocol (DESIGN §4, §5).
//!
//! Every method is one atomic step in the store (one statement, or one transaction). Times
//! that decide liveness are the *store's* clock (`CURRENT_TIMESTAMP` in SQL); node clocks are
//! never compared with each other.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{Fence, GroupId, Incarnation, MemberId, Term};
use crate::ledger::{FileVersion, LedgerRecord, LedgerUpdate};

/// A member's tick: write my heartbeat, renew my lease if I hold the token, tell me who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group.
    pub group: GroupId,
    /// The writing member.
    pub member: MemberId,
    /// The writing process start.
    pub incarnation: Incarnation,
    /// A heartbeat row of this member written by *another* incarnation is replaced only when
    /// it is older than this (by the store's clock); otherwise the write is refused and
    /// [`Observation::own_row`] reports the other incarnation.
    pub liveness_timeout: Duration,
}

/// What the heartbeat found about this member's own row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnRow {
    /// The heartbeat was written for this incarnation.
    Written,
    /// Another live process wrote a heartbeat for this member ID within the liveness timeout;
    /// nothing was written.
    HeldByOther(Incarnation),
}

/// The token holder of a group as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderView {
    /// The member that holds the token.
    pub member: MemberId,
    /// Its process start (a holder whose incarnation is unknown, from the seed schema, is
    /// reported with `Incarnation(0)`).
    pub incarnation: Incarnation,
    /// How long ago, by the store's clock, the holder last renewed (its last heartbeat).
    pub lease_age: Duration,
    /// An opaque value that changes with every renewal of the lease (the SQL stores use the
    /// renewal's time stamp in microseconds of the store's clock). Standbys compare it for
    /// equality only, to see renewals happen on their own monotonic clock: a step of the
    /// store's clock inflates [`HolderView::lease_age`] but cannot fake a missing renewal.
    pub renewal: i64,
}

/// The answer to a heartbeat, read in the same atomic step as the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Whether this member's heartbeat was written.
    pub own_row: OwnRow,
    /// The group's current term (`Term(0)` when no takeover ever happened).
    pub term: Term,
    /// The holder of `term`, or `None` when the token was released or never taken.
    pub holder: Option<HolderView>,
}

impl Observation {
    /// True when the store names this process (member *and* incarnation) as the holder, which
    /// means this very heartbeat renewed the lease.
    pub fn holder_is(&self, member: &MemberId, incarnation: Incarnation) -> bool {
        matches!(&self.holder, Some(h) if &h.member == member && h.incarnation == incarnation)
    }
}

/// A standby's attempt to take the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeoverRequest {
    /// The group.
    pub group: GroupId,
    /// The candidate.
    pub member: MemberId,
    /// The candidate's process start.
    pub incarnation: Incarnation,
    /// The term the candidate observed. The takeover succeeds only if the group is still at
    /// this term, so at most one candidate wins each term.
    pub observed_term: Term,
    /// The takeover also re-checks, atomically, that the holder (if any) has not renewed
    /// within this duration by the store's clock; a holder that came back between the
    /// observation and the takeover keeps the token.
    pub liveness_timeout: Duration,
    /// The holder's renewal token ([`HolderView::renewal`]) in the observation the decision
    /// was made on, if it showed a holder: the takeover also requires, atomically, that the
    /// holder's token is still this one. A holder that renewed since keeps the token even
    /// when a step of the store's clock makes that renewal look older than
    /// `liveness_timeout`. `None`: no such check (no holder was seen).
    pub observed_renewal: Option<i64>,
}

/// The result of a takeover attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverOutcome {
    /// The candidate now holds the token under this term (`observed_term + 1`).
    Won(Term),
    /// Another candidate won, or the holder is alive; nothing changed.
    Lost,
}

/// Per-version answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed under the fence's term; dispatch it. `attempt` counts from 1; `redelivery` is
    /// true when an earlier claim (under any term) never recorded an outcome.
    Claimed {
        /// Which attempt this is, from 1.
        attempt: u32,
        /// An earlier attempt was claimed and never recorded an outcome (the worker flags
        /// every attempt after the first to the handler; see `Dispatch::redelivery`).
        redelivery: bool,
    },
    /// The ledger already shows this version handled, done or given up: do not dispatch.
    Settled,
}

/// A settled ledger row and the time of its last write, for the retention walk
/// ([`CoordinationStore::stale_settled`]): rows are ordered by `(updated_at_ms, version)` in
/// each store's key order, and a row is also the cursor that continues the walk after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRow {
    /// The version.
    pub version: FileVersion,
    /// When its row was last written, by the store's clock: milliseconds since the epoch.
    pub updated_at_ms: i64,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or the connection broke (retry on a later tick).
    #[error("{operation} on group `{group}`: store unavailable: {cause}")]
    Unavailable {
        /// What was being done (`heartbeat`, `takeover`, `claim`, ...).
        operation: &'static str,
        /// The group.
        group: String,
        /// The underlying cause, without secrets.
        cause: String,
    },
    /// The statement did not finish within its timeout.
    #[error("{operation} on group `{group}`: timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The group.
        group: String,
        /// The statement timeout that expired.
        after: Duration,
    },
    /// The fence no longer holds: another member took over (term moved on) or the token was
    /// released. The write was not applied.
    #[error("{operation} on group `{group}`: fenced, term {term} is no longer held by `{member}`")]
    Fenced {
        /// What was being done.
        operation: &'static str,
        /// The group.
        group: String,
        /// The member whose fence failed.
        member: String,
        /// The term it presented.
        term: Term,
    },
    /// The store could not be opened, before any group is involved: invalid settings, unknown
    /// host, refused connection, wrong password, not a database file, a connect timeout.
    /// `transient` says whether a later attempt may succeed (a refused or timed-out connection
    /// may; bad credentials or settings will not); [`StoreError::is_transient`] reports it.
    /// A missing or old schema found at connect is [`StoreError::Schema`], not this.
    #[error("cannot connect to {target}: {cause}")]
    Connect {
        /// Where: `dialect://host:port/database` or the database file, never credentials
        /// (just the dialect when the settings themselves are invalid).
        target: String,
        /// The underlying cause, without secrets.
        cause: String,
        /// A later attempt may succeed (the server is down or unreachable).
        transient: bool,
    },
    /// The schema is missing or older than this build expects (run the migrations).
    #[error("schema: {0}")]
    Schema(String),
    /// Anything else the store refused (bad credentials, permissions, constraint, ...).
    #[error("{operation} on group `{group}`: {cause}")]
    Rejected {
        /// What was being done.
        operation: &'static str,
        /// The group.
        group: String,
        /// The underlying cause, without secrets.
        cause: String,
    },
}

impl StoreError {
    /// A fenced error for `fence`.
    pub fn fenced(operation: &'static str, fence: &Fence) -> Self {
        StoreError::Fenced {
            operation,
            group: fence.group.to_string(),
            member: fence.member.to_string(),
            term: fence.term,
        }
    }

    /// Re-labels an error met while opening the store as [`StoreError::Connect`] at `target`:
    /// unavailable and timed out become transient, rejected does not; schema and fenced
    /// errors (and a `Connect` already) are returned unchanged.
    pub fn at_connect(self, target: &str) -> Self {
        let connect = |cause: String, transient| StoreError::Connect {
            target: target.to_owned(),
            cause,
            transient,
        };
        match self {
            StoreError::Unavailable { cause, .. } => connect(cause, true),
            StoreError::Timeout { after, .. } => {
                connect(format!("timed out after {after:?}"), true)
            }
            StoreError::Rejected { cause, .. } => connect(cause, false),
            other => other,
        }
    }

    /// True for errors a later tick may not see again (unavailable, timeout, and a connect
    /// failure marked transient).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } | StoreError::Timeout { .. } => true,
            StoreError::Connect { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Summary of a group for the `status` command and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member.
    pub member: MemberId,
    /// Its process start.
    pub incarnation: Incarnation,
    /// Age of its last heartbeat by the store's clock.
    pub heartbeat_age: Duration,
}

/// A read-only look at a group, read in one atomic step (for the `status` command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group's current term (`Term(0)` when no takeover ever happened).
    pub term: Term,
    /// The holder of `term` with its lease's age by the store's clock, or `None` when the
    /// token was released or never taken.
    pub holder: Option<HolderView>,
    /// The members that have a heartbeat row, with its age by the store's clock.
    pub members: Vec<MemberStatus>,
}

/// The storage a group coordinates through. Implemented by `coord-postgres`, `coord-mysql`,
/// `coord-sqlite` and `testkit`'s in-memory store; all pass `testkit::conformance`.
///
/// Contract, for every method: one atomic step; a statement timeout (an operation never
/// hangs); on a broken connection, return [`StoreError::Unavailable`] and replace the
/// connection on the next call instead of retrying inside this one.
pub trait CoordinationStore: Send + Sync {
    /// The steady-state tick, one round trip:
    /// 1. upsert this member's heartbeat row with the store's current time and
    ///    `incarnation`, unless a row for the member carries another incarnation and is
    ///    younger than `liveness_timeout` ([`OwnRow::HeldByOther`], nothing written);
    /// 2. if the write happened and the group's token is held by this member *and*
    ///    incarnation, renew its lease (the holder's liveness is this heartbeat);
    /// 3. return the group's term and holder with the lease's age by the store's clock.
    fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> impl Future<Output = Result<Observation, StoreError>> + Send;

    /// Take the token, atomically: only if the group's term is still `observed_term` and the
    /// holder (if any) has not renewed within `liveness_timeout` by the store's clock (a
    /// released token has no holder). On success the term is `observed_term + 1`, the holder
    /// is this member and incarnation, and the lease is fresh. At most one of any number of
    /// concurrent candidates observing the same term wins.
    fn take_over(
        &self,
        request: &TakeoverRequest,
    ) -> impl Future<Output = Result<TakeoverOutcome, StoreError>> + Send;

    /// Graceful stop: clear the holder if `fence` still holds (a standby takes over on its
    /// next tick, without waiting for the liveness timeout), and delete this member's
    /// heartbeat row if it carries `fence.incarnation`. Releasing a token one no longer holds
    /// is not an error.
    fn release(&self, fence: &Fence) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stop as a standby: delete this member's heartbeat row if it carries `incarnation`.
    fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The ledger records of the group that have work left: claimed, failed and handled
    /// (the leader loads them once when it takes over). Settled rows (done, error) are not
    /// loaded: the leader looks up those of the versions it lists
    /// ([`CoordinationStore::lookup_ledger`]), so its memory follows its directory, not the
    /// ledger's history.
    fn load_ledger(
        &self,
        group: &GroupId,
    ) -> impl Future<Output = Result<Vec<LedgerRecord>, StoreError>> + Send;

    /// The records of these versions that exist, in any state and in no particular order
    /// (a version without a row is simply absent). A read: nothing is written, nothing fenced.
    fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> impl Future<Output = Result<Vec<LedgerRecord>, StoreError>> + Send;

    /// Settled rows (done, error) whose last write is older than `older_than` by the store's
    /// clock, oldest first, at most `limit`, after `after` in that order (a walk of pages:
    /// pass the last row of the previous page). The leader forgets those it does not list
    /// (retention). A store that keeps no write times answers an empty page, and keeps its
    /// settled rows until an operator forgets them.
    fn stale_settled(
        &self,
        group: &GroupId,
        older_than: Duration,
        after: Option<&StaleRow>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StaleRow>, StoreError>> + Send;

    /// Claim versions for dispatch, fenced, in one atomic step. For each version: a new
    /// version is inserted as claimed (attempt 1); one that is claimed or failed becomes
    /// claimed under this term with its attempt count plus one (`redelivery` if it was
    /// claimed); one that is handled, done or in error is [`ClaimOutcome::Settled`] and left
    /// alone. The answers come in the order of `versions`. If the fence does not hold,
    /// nothing is written and the error is [`StoreError::Fenced`].
    fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> impl Future<Output = Result<Vec<ClaimOutcome>, StoreError>> + Send;

    /// Record outcomes (handled, done, failed, error, forgotten), fenced, in one atomic step:
    /// all or nothing. Unknown versions are inserted; [`LedgerUpdate::Forget`] deletes.
    /// Done is final: a `Set` of any other state on a done row is ignored (a write that
    /// outlived its lease and reaches the store after the same term recorded the version
    /// done must not take it back); only `Forget` removes a done row.
    fn record(
        &self,
        fence: &Fence,
        updates: &[LedgerUpdate],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Observe the group without writing anything (no heartbeat row, no lease renewal), in
    /// one atomic step: its term, its holder and the lease's age, and its members with the
    /// ages of their heartbeats, all by the store's clock. A group never seen reads as
    /// `Term(0)`, no holder, no members.
    fn observe(
        &self,
        group: &GroupId,
    ) -> impl Future<Output = Result<GroupView, StoreError>> + Send;

    /// The group's members and the ages of their heartbeats.
    fn members(
        &self,
        group: &GroupId,
    ) -> impl Future<Output = Result<Vec<MemberStatus>, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_name_the_target_and_keep_transience() {
        let refused = StoreError::Unavailable {
            operation: "connect",
            group: "-".into(),
            cause: "connection refused".into(),
        }
        .at_connect("postgres://db:5432/test");
        assert_eq!(
            refused.to_string(),
            "cannot connect to postgres://db:5432/test: connection refused"
        );
        assert!(refused.is_transient());
        let denied = StoreError::Rejected {
            operation: "connect",
            group: "-".into(),
            cause: "password authentication failed".into(),
        }
        .at_connect("postgres://db:5432/test");
        assert!(!denied.is_transient());
        assert!(!denied.to_string().contains("group"), "{denied}");
        let slow = StoreError::Timeout {
            operation: "connect",
            group: "-".into(),
            after: Duration::from_secs(2),
        }
        .at_connect("x");
        assert!(slow.is_transient() && slow.to_string().contains("timed out after 2s"));
        let schema = StoreError::Schema("old".into()).at_connect("x");
        assert_eq!(schema, StoreError::Schema("old".into()));
    }
}
