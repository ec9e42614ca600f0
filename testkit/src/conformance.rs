//! The conformance suite: the same cases run over every [`CoordinationStore`] (the in-memory
//! one here, PostgreSQL, MySQL/MariaDB, SQLite in their crates' tests).
//!
//! Call [`run_all`] with a closure that returns a fresh store connected to the same database
//! (each returned store stands for one process). Each case uses its own group name, unique per
//! run, so runs against a shared database do not collide. Liveness is judged by the store's
//! clock, so the cases that need a lease to age wait for real (a few hundred milliseconds).
//!
//! The SQL stores also run [`run_raw`], with a [`RawRows`] writer of their own that puts rows
//! behind the store's back (as the seeds' processes, an operator or a newer build would):
//! seed-era rows and ledger rows that cannot be decoded get the same answer from every store.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    Incarnation, LedgerState, LedgerUpdate, MemberId, Observation, OwnRow, StaleRow, StoreError,
    StoredLedgerRow, TakeoverOutcome, TakeoverRequest, Term,
};

/// The liveness timeout the cases use.
pub const LIVENESS: Duration = Duration::from_millis(400);

/// Runs every case against stores made by `connect`; panics naming the failing case.
pub async fn run_all<S, F, Fut>(connect: F)
where
    S: CoordinationStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_cases(&connect).await;
    ledger_settled_rows_are_walked_by_age(&connect).await;
}

/// Every case but the retention walk, for a store that keeps no write times (Redis): its
/// walk must answer an empty page.
pub async fn run_all_without_write_times<S, F, Fut>(connect: F)
where
    S: CoordinationStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_cases(&connect).await;
    let store = connect().await;
    let group = unique_group("no-walk");
    assert_eq!(
        store.stale_settled(&group, Duration::ZERO, None, 10).await,
        Ok(vec![]),
        "stale: a store without write times answers an empty page"
    );
}

async fn run_cases<S, F, Fut>(connect: &F)
where
    S: CoordinationStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    first_heartbeat_sees_no_holder(connect).await;
    takeover_then_heartbeat_renews(connect).await;
    takeover_is_conditional_on_term_and_liveness(connect).await;
    takeover_compares_the_renewal_token(connect).await;
    stale_holder_is_taken_over_and_fenced(connect).await;
    release_hands_over_at_once(connect).await;
    release_of_a_token_not_held_changes_nothing_else(connect).await;
    same_member_second_incarnation_is_held_off(connect).await;
    takeover_race_has_one_winner_per_term(connect).await;
    ledger_claims_records_and_loads(connect).await;
    ledger_writes_are_fenced(connect).await;
    ledger_keeps_the_handlers_detail(connect).await;
    groups_are_isolated(connect).await;
    members_and_leave(connect).await;
    observe_reads_without_writing(connect).await;
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A group name unique to this run and case.
pub fn unique_group(case: &str) -> GroupId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    GroupId::new(format!("conf-{case}-{}-{nanos:x}-{n}", std::process::id())).unwrap()
}

fn member(name: &str) -> MemberId {
    MemberId::new(name).unwrap()
}

fn hb(group: &GroupId, member_name: &str, incarnation: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        group: group.clone(),
        member: member(member_name),
        incarnation: Incarnation(incarnation),
        liveness_timeout: LIVENESS,
    }
}

fn takeover(group: &GroupId, member_name: &str, incarnation: u64, term: Term) -> TakeoverRequest {
    TakeoverRequest {
        group: group.clone(),
        member: member(member_name),
        incarnation: Incarnation(incarnation),
        observed_term: term,
        liveness_timeout: LIVENESS,
        observed_renewal: None,
    }
}

fn fence(group: &GroupId, member_name: &str, incarnation: u64, term: Term) -> Fence {
    Fence {
        group: group.clone(),
        member: member(member_name),
        incarnation: Incarnation(incarnation),
        term,
    }
}

fn version(path: &str, size: u64) -> FileVersion {
    FileVersion {
        path: path.to_string(),
        size,
        mtime_ms: 1_700_000_000_123,
    }
}

async fn heartbeat<S: CoordinationStore>(store: &S, request: &HeartbeatRequest) -> Observation {
    store
        .heartbeat(request)
        .await
        .unwrap_or_else(|e| panic!("heartbeat failed: {e}"))
}

async fn wait_past_liveness() {
    tokio::time::sleep(LIVENESS + Duration::from_millis(150)).await;
}

/// A fresh group: written, term 0, no holder.
pub async fn first_heartbeat_sees_no_holder<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("first");
    let obs = heartbeat(&store, &hb(&group, "a", 1)).await;
    assert_eq!(obs.own_row, OwnRow::Written, "first_heartbeat: own row");
    assert_eq!(obs.term, Term(0), "first_heartbeat: term");
    assert_eq!(obs.holder, None, "first_heartbeat: holder");
}

/// Takeover of an empty group wins term 1; the holder's heartbeat renews its lease.
pub async fn takeover_then_heartbeat_renews<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("renew");
    heartbeat(&store, &hb(&group, "a", 1)).await;
    let won = store.take_over(&takeover(&group, "a", 1, Term(0))).await;
    assert_eq!(won, Ok(TakeoverOutcome::Won(Term(1))), "renew: takeover");
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Another member sees the lease age grow by the store's clock ...
    let other = heartbeat(&store, &hb(&group, "b", 2)).await;
    let holder = other.holder.clone().expect("renew: holder visible");
    assert_eq!(holder.member, member("a"));
    assert_eq!(holder.incarnation, Incarnation(1));
    assert!(
        holder.lease_age >= Duration::from_millis(60),
        "renew: lease age {:?} should reflect the 120ms wait",
        holder.lease_age
    );
    // ... and the holder's heartbeat renews it.
    let own = heartbeat(&store, &hb(&group, "a", 1)).await;
    assert!(
        own.holder_is(&member("a"), Incarnation(1)),
        "renew: {own:?}"
    );
    assert_eq!(own.term, Term(1));
    let after = heartbeat(&store, &hb(&group, "b", 2)).await;
    let age = after.holder.expect("renew: holder").lease_age;
    assert!(
        age < Duration::from_millis(100),
        "renew: lease age {age:?} after renewal"
    );
}

/// A takeover with a stale term, or against a live holder, changes nothing.
pub async fn takeover_is_conditional_on_term_and_liveness<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("cond");
    assert_eq!(
        store.take_over(&takeover(&group, "a", 1, Term(0))).await,
        Ok(TakeoverOutcome::Won(Term(1)))
    );
    assert_eq!(
        store.take_over(&takeover(&group, "b", 2, Term(0))).await,
        Ok(TakeoverOutcome::Lost),
        "cond: stale observed term must lose"
    );
    assert_eq!(
        store.take_over(&takeover(&group, "b", 2, Term(1))).await,
        Ok(TakeoverOutcome::Lost),
        "cond: a live holder keeps the token"
    );
    let obs = heartbeat(&store, &hb(&group, "b", 2)).await;
    assert_eq!(obs.term, Term(1));
    assert_eq!(obs.holder.map(|h| h.member), Some(member("a")));
}

/// A holder that renewed after the candidate's observation keeps the token even when the
/// takeover's own age check passes (as it does after the store's clock stepped forward): the
/// takeover compares the renewal token the candidate saw. Here the age check is made to pass
/// with a zero liveness timeout.
pub async fn takeover_compares_the_renewal_token<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("renewal");
    heartbeat(&store, &hb(&group, "a", 1)).await;
    assert_eq!(
        store.take_over(&takeover(&group, "a", 1, Term(0))).await,
        Ok(TakeoverOutcome::Won(Term(1)))
    );
    let renewal = |obs: Observation| obs.holder.expect("renewal: a holder").renewal;
    let seen = renewal(heartbeat(&store, &hb(&group, "b", 2)).await);
    // Past the millisecond: the stores that keep the lease's time in milliseconds see a
    // new token too.
    tokio::time::sleep(Duration::from_millis(5)).await;
    heartbeat(&store, &hb(&group, "a", 1)).await;
    let now_seen = renewal(heartbeat(&store, &hb(&group, "b", 2)).await);
    assert_ne!(seen, now_seen, "renewal: a renewal changes the token");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut request = takeover(&group, "b", 2, Term(1));
    request.liveness_timeout = Duration::ZERO;
    request.observed_renewal = Some(seen);
    assert_eq!(
        store.take_over(&request).await,
        Ok(TakeoverOutcome::Lost),
        "renewal: the holder renewed since the observation"
    );
    request.observed_renewal = Some(now_seen);
    assert_eq!(
        store.take_over(&request).await,
        Ok(TakeoverOutcome::Won(Term(2))),
        "renewal: the token seen is still the holder's"
    );
}

/// A holder silent past the liveness timeout is taken over; its writes are then fenced.
pub async fn stale_holder_is_taken_over_and_fenced<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let a = connect().await;
    let b = connect().await;
    let group = unique_group("stale");
    heartbeat(&a, &hb(&group, "a", 1)).await;
    assert_eq!(
        a.take_over(&takeover(&group, "a", 1, Term(0))).await,
        Ok(TakeoverOutcome::Won(Term(1)))
    );
    let old = fence(&group, "a", 1, Term(1));
    let v = version("/in/a.csv", 10);
    assert_eq!(
        a.claim(&old, std::slice::from_ref(&v)).await,
        Ok(vec![ClaimOutcome::Claimed {
            attempt: 1,
            redelivery: false
        }])
    );
    wait_past_liveness().await;
    let obs = heartbeat(&b, &hb(&group, "b", 2)).await;
    let lease_age = obs.holder.as_ref().expect("stale: holder").lease_age;
    assert!(lease_age > LIVENESS, "stale: lease age {lease_age:?}");
    assert_eq!(
        b.take_over(&takeover(&group, "b", 2, obs.term)).await,
        Ok(TakeoverOutcome::Won(Term(2))),
        "stale: takeover of a silent holder"
    );
    // The old holder learns it on its next heartbeat ...
    let seen = heartbeat(&a, &hb(&group, "a", 1)).await;
    assert_eq!(seen.term, Term(2));
    assert!(!seen.holder_is(&member("a"), Incarnation(1)));
    assert!(seen.holder_is(&member("b"), Incarnation(2)));
    // ... and whatever it still writes under its old term is rejected.
    let claim = a.claim(&old, &[version("/in/b.csv", 1)]).await;
    assert!(matches!(claim, Err(StoreError::Fenced { .. })), "{claim:?}");
    let record = a
        .record(
            &old,
            &[LedgerUpdate::Set {
                version: v.clone(),
                state: LedgerState::Done,
                error: None,
                detail: None,
            }],
        )
        .await;
    assert!(
        matches!(record, Err(StoreError::Fenced { .. })),
        "{record:?}"
    );
    // The new holder sees the unfinished claim and redelivers it.
    let new = fence(&group, "b", 2, Term(2));
    let ledger = b.load_ledger(&group).await.unwrap();
    assert_eq!(ledger.len(), 1, "stale: fenced writes must not land");
    assert_eq!(ledger[0].state, LedgerState::Claimed);
    assert_eq!(
        b.claim(&new, &[v]).await,
        Ok(vec![ClaimOutcome::Claimed {
            attempt: 2,
            redelivery: true
        }])
    );
}

/// A released token is taken at once by the next candidate, without waiting for liveness.
pub async fn release_hands_over_at_once<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("release");
    heartbeat(&store, &hb(&group, "a", 1)).await;
    store
        .take_over(&takeover(&group, "a", 1, Term(0)))
        .await
        .unwrap();
    store
        .release(&fence(&group, "a", 1, Term(1)))
        .await
        .unwrap();
    let obs = heartbeat(&store, &hb(&group, "b", 2)).await;
    assert_eq!(obs.holder, None, "release: holder cleared");
    assert_eq!(obs.term, Term(1), "release: term kept");
    assert_eq!(
        store.take_over(&takeover(&group, "b", 2, Term(1))).await,
        Ok(TakeoverOutcome::Won(Term(2)))
    );
    // Releasing a token one no longer holds is harmless and changes nothing.
    store
        .release(&fence(&group, "a", 1, Term(1)))
        .await
        .unwrap();
    let obs = heartbeat(&store, &hb(&group, "b", 2)).await;
    assert!(obs.holder_is(&member("b"), Incarnation(2)));
    let members = store.members(&group).await.unwrap();
    assert!(
        members.iter().all(|m| m.member != member("a")),
        "release: the stopped member's heartbeat row is gone: {members:?}"
    );
}

/// A release with a fence that does not hold (another member's, another incarnation's, an old
/// term's, or one already released) is not an error and leaves the token where it is; it
/// still deletes the releasing incarnation's own heartbeat row, and only that one.
pub async fn release_of_a_token_not_held_changes_nothing_else<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("release-not-held");
    heartbeat(&store, &hb(&group, "a", 1)).await;
    heartbeat(&store, &hb(&group, "b", 2)).await;
    assert_eq!(
        store.take_over(&takeover(&group, "a", 1, Term(0))).await,
        Ok(TakeoverOutcome::Won(Term(1)))
    );
    for (who, not_held) in [
        ("a standby", fence(&group, "b", 2, Term(1))),
        ("another incarnation", fence(&group, "a", 9, Term(1))),
        ("a later term", fence(&group, "a", 1, Term(2))),
        ("an earlier term", fence(&group, "a", 1, Term(0))),
    ] {
        store
            .release(&not_held)
            .await
            .unwrap_or_else(|e| panic!("release-not-held: {who}: {e}"));
        let obs = heartbeat(&store, &hb(&group, "a", 1)).await;
        assert!(
            obs.holder_is(&member("a"), Incarnation(1)) && obs.term == Term(1),
            "release-not-held: {who} took the token away: {obs:?}"
        );
    }
    let members = store.members(&group).await.unwrap();
    let names: Vec<&str> = members.iter().map(|m| m.member.as_str()).collect();
    assert_eq!(
        names,
        ["a"],
        "release-not-held: b's row goes with its release, a's stays: {members:?}"
    );
    assert_eq!(members[0].incarnation, Incarnation(1));
    // The holder's own release works, once; a second one changes nothing.
    store
        .release(&fence(&group, "a", 1, Term(1)))
        .await
        .unwrap();
    store
        .release(&fence(&group, "a", 1, Term(1)))
        .await
        .unwrap();
    let view = observe(&store, &group).await;
    assert_eq!(
        (view.term, view.holder, view.members.len()),
        (Term(1), None, 0),
        "release-not-held: after the holder's release"
    );
    // Its heartbeat does not revive the lease.
    let obs = heartbeat(&store, &hb(&group, "a", 1)).await;
    assert_eq!((obs.term, obs.holder), (Term(1), None));
}

/// A second live process with the same member ID is held off; once the first is silent past
/// the liveness timeout, the second may write.
pub async fn same_member_second_incarnation_is_held_off<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let first = connect().await;
    let second = connect().await;
    let group = unique_group("dup");
    heartbeat(&first, &hb(&group, "a", 1)).await;
    let obs = heartbeat(&second, &hb(&group, "a", 2)).await;
    assert_eq!(
        obs.own_row,
        OwnRow::HeldByOther(Incarnation(1)),
        "dup: the second incarnation must be refused"
    );
    // The first keeps its row.
    let obs = heartbeat(&first, &hb(&group, "a", 1)).await;
    assert_eq!(obs.own_row, OwnRow::Written);
    wait_past_liveness().await;
    let obs = heartbeat(&second, &hb(&group, "a", 2)).await;
    assert_eq!(
        obs.own_row,
        OwnRow::Written,
        "dup: a dead first may be replaced"
    );
    let obs = heartbeat(&first, &hb(&group, "a", 1)).await;
    assert_eq!(obs.own_row, OwnRow::HeldByOther(Incarnation(2)));
}

/// Many candidates race for each term: exactly one wins each.
pub async fn takeover_race_has_one_winner_per_term<S, F, Fut>(connect: &F)
where
    S: CoordinationStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    const CANDIDATES: u64 = 12;
    const ROUNDS: u64 = 5;
    let group = unique_group("race");
    let mut stores = Vec::new();
    for _ in 0..CANDIDATES {
        stores.push(std::sync::Arc::new(connect().await));
    }
    let mut term = Term(0);
    for round in 0..ROUNDS {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, store) in stores.iter().enumerate() {
            let store = store.clone();
            let request = takeover(&group, &format!("m{i}"), 100 + i as u64, term);
            tasks.spawn(async move { (i, store.take_over(&request).await) });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (i, outcome) = joined.expect("race: task panicked");
            match outcome {
                Ok(TakeoverOutcome::Won(t)) => winners.push((i, t)),
                Ok(TakeoverOutcome::Lost) => {}
                Err(e) => panic!("race: takeover failed: {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "race round {round}: exactly one winner expected, got {winners:?}"
        );
        let (winner, won) = winners[0];
        assert_eq!(won, term.next(), "race round {round}: term + 1");
        term = won;
        // The winner releases, so the next round races at once.
        stores[winner]
            .release(&fence(
                &group,
                &format!("m{winner}"),
                100 + winner as u64,
                term,
            ))
            .await
            .unwrap();
    }
}

/// Claims, outcomes, redelivery, retries, give-up, forget, and loading.
pub async fn ledger_claims_records_and_loads<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("ledger");
    store
        .take_over(&takeover(&group, "a", 1, Term(0)))
        .await
        .unwrap();
    let f = fence(&group, "a", 1, Term(1));
    let long_path = format!("/in/{}/ünïcödé 名前.csv", "d".repeat(900));
    let v1 = version("/in/one.csv", 5);
    let v2 = version(&long_path, 0);
    let v1_new = FileVersion {
        mtime_ms: v1.mtime_ms + 1,
        ..v1.clone()
    };
    let fresh = ClaimOutcome::Claimed {
        attempt: 1,
        redelivery: false,
    };
    assert_eq!(
        store.claim(&f, &[v1.clone(), v2.clone()]).await,
        Ok(vec![fresh.clone(), fresh.clone()])
    );
    store
        .record(
            &f,
            &[LedgerUpdate::Set {
                version: v1.clone(),
                state: LedgerState::Handled,
                error: None,
                detail: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&f, &[v1.clone(), v2.clone(), v1_new.clone()])
            .await,
        Ok(vec![
            ClaimOutcome::Settled,
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true
            },
            fresh.clone(),
        ]),
        "ledger: settled, redelivered, and a new version of the same path"
    );
    store
        .record(
            &f,
            &[LedgerUpdate::Set {
                version: v2.clone(),
                state: LedgerState::Failed,
                error: Some("handler said no".into()),
                detail: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim(&f, std::slice::from_ref(&v2)).await,
        Ok(vec![ClaimOutcome::Claimed {
            attempt: 3,
            redelivery: false
        }]),
        "ledger: a failed version is retried, not redelivered"
    );
    store
        .record(
            &f,
            &[
                LedgerUpdate::Set {
                    version: v2.clone(),
                    state: LedgerState::Error,
                    error: Some("gave up".into()),
                    detail: None,
                },
                LedgerUpdate::Set {
                    version: v1.clone(),
                    state: LedgerState::Done,
                    error: None,
                    detail: None,
                },
            ],
        )
        .await
        .unwrap();
    // The load takes the rows with work left; a lookup any row, whatever its state.
    let loaded = store.load_ledger(&group).await.unwrap();
    assert_eq!(
        loaded.iter().map(|r| &r.version).collect::<Vec<_>>(),
        vec![&v1_new],
        "ledger: the load takes the rows with work left"
    );
    let unknown = version("/in/never.csv", 1);
    let mut ledger = store
        .lookup_ledger(
            &group,
            &[
                v1.clone(),
                v2.clone(),
                v1_new.clone(),
                unknown.clone(),
                v1.clone(),
            ],
        )
        .await
        .unwrap();
    ledger.sort_by(|a, b| a.version.cmp(&b.version));
    assert_eq!(
        ledger.len(),
        3,
        "ledger: a row per version found: {ledger:?}"
    );
    let find = |v: &FileVersion| {
        ledger
            .iter()
            .find(|r| &r.version == v)
            .unwrap_or_else(|| panic!("ledger: {v:?} missing"))
            .clone()
    };
    let r2 = find(&v2);
    assert_eq!(r2.state, LedgerState::Error);
    assert_eq!(r2.attempts, 3);
    assert_eq!(r2.last_error.as_deref(), Some("gave up"));
    assert_eq!(r2.version.path, long_path, "ledger: long unicode path kept");
    assert_eq!(find(&v1).state, LedgerState::Done);
    assert_eq!(find(&v1_new).state, LedgerState::Claimed);
    assert_eq!(
        store.claim(&f, std::slice::from_ref(&v2)).await,
        Ok(vec![ClaimOutcome::Settled]),
        "ledger: an error version is never dispatched again"
    );
    store
        .record(&f, &[LedgerUpdate::Forget(v1.clone())])
        .await
        .unwrap();
    let ledger = store
        .lookup_ledger(&group, &[v1.clone(), v2.clone(), v1_new.clone()])
        .await
        .unwrap();
    assert!(ledger.iter().all(|r| r.version != v1), "ledger: forgotten");
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        store.lookup_ledger(&group, &[]).await,
        Ok(vec![]),
        "ledger: an empty lookup"
    );
}

/// Settled rows (done, error) are walked by the age of their last write, oldest first, page
/// after page; rows with work left never are, and a row younger than the age is not.
pub async fn ledger_settled_rows_are_walked_by_age<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("stale");
    store
        .take_over(&takeover(&group, "a", 1, Term(0)))
        .await
        .unwrap();
    let f = fence(&group, "a", 1, Term(1));
    let versions: Vec<FileVersion> = (0..6)
        .map(|i| version(&format!("/in/{i}.csv"), i))
        .collect();
    store.claim(&f, &versions).await.unwrap();
    let set = |v: &FileVersion, state| LedgerUpdate::Set {
        version: v.clone(),
        state,
        error: None,
        detail: None,
    };
    // Written one after the other: 0 and 1 first, then 2, 3 (error); 4 handled, 5 claimed.
    store
        .record(
            &f,
            &[
                set(&versions[0], LedgerState::Done),
                set(&versions[1], LedgerState::Done),
            ],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .record(
            &f,
            &[
                set(&versions[2], LedgerState::Done),
                set(&versions[3], LedgerState::Error),
                set(&versions[4], LedgerState::Handled),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .stale_settled(&group, Duration::from_secs(3600), None, 10)
            .await,
        Ok(vec![]),
        "stale: nothing is an hour old"
    );
    // The store's clock moves on by a few milliseconds (polled, not assumed).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let all = loop {
        let rows = store
            .stale_settled(&group, Duration::ZERO, None, 10)
            .await
            .unwrap();
        if rows.len() == 4 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut paths: Vec<&str> = all.iter().map(|r| r.version.path.as_str()).collect();
    assert_eq!(paths.len(), 4, "stale: the settled rows only: {all:?}");
    assert!(
        all.windows(2)
            .all(|w| w[0].updated_at_ms <= w[1].updated_at_ms),
        "stale: oldest first: {all:?}"
    );
    assert!(
        all[0].updated_at_ms < all[3].updated_at_ms,
        "stale: write times tell the batches apart: {all:?}"
    );
    paths.sort();
    assert_eq!(paths, ["/in/0.csv", "/in/1.csv", "/in/2.csv", "/in/3.csv"]);
    // Page by page, each after the last row of the one before: the same rows, once each.
    let mut walked = Vec::new();
    let mut after: Option<StaleRow> = None;
    loop {
        let page = store
            .stale_settled(&group, Duration::ZERO, after.as_ref(), 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        walked.extend(page.iter().cloned());
        if page.len() < 3 {
            break;
        }
        after = page.last().cloned();
    }
    assert_eq!(walked, all, "stale: pages walk the same order");
    // A forgotten row is gone from the walk.
    store
        .record(&f, &[LedgerUpdate::Forget(versions[0].clone())])
        .await
        .unwrap();
    let rows = store
        .stale_settled(&group, Duration::ZERO, None, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "stale: forgotten: {rows:?}");
}

/// A handled record's detail (where the `forward` handler put the file) is stored, kept by
/// the done record that follows (which carries none), also within one batch, and dropped with
/// a forget.
pub async fn ledger_keeps_the_handlers_detail<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("detail");
    store
        .take_over(&takeover(&group, "a", 1, Term(0)))
        .await
        .unwrap();
    let f = fence(&group, "a", 1, Term(1));
    let (a, b) = (version("/in/a.csv", 3), version("/in/b.csv", 4));
    store.claim(&f, &[a.clone(), b.clone()]).await.unwrap();
    let set = |v: &FileVersion, state, detail: Option<&str>| LedgerUpdate::Set {
        version: v.clone(),
        state,
        error: None,
        detail: detail.map(str::to_owned),
    };
    let detail = "to `second` (sftp: /in/a.csv): 3 bytes, checked: ünï";
    store
        .record(&f, &[set(&a, LedgerState::Handled, Some(detail))])
        .await
        .unwrap();
    store
        .record(
            &f,
            &[
                set(&a, LedgerState::Done, None),
                set(&b, LedgerState::Handled, Some("to `first`")),
                set(&b, LedgerState::Done, None),
            ],
        )
        .await
        .unwrap();
    let ledger = store
        .lookup_ledger(&group, &[a.clone(), b.clone()])
        .await
        .unwrap();
    let detail_of = |v: &FileVersion| {
        let r = ledger.iter().find(|r| &r.version == v).unwrap();
        (r.state, r.detail.clone())
    };
    assert_eq!(
        detail_of(&a),
        (LedgerState::Done, Some(detail.to_owned())),
        "detail: kept by the done record"
    );
    assert_eq!(
        detail_of(&b),
        (LedgerState::Done, Some("to `first`".to_owned())),
        "detail: kept within one batch"
    );
    store
        .record(
            &f,
            &[
                LedgerUpdate::Forget(a.clone()),
                set(&a, LedgerState::Handled, None),
            ],
        )
        .await
        .unwrap();
    let ledger = store.load_ledger(&group).await.unwrap();
    let r = ledger.iter().find(|r| r.version == a).unwrap();
    assert_eq!(r.detail, None, "detail: forgotten with its row");
}

/// Writes under a term that is not the holder's are rejected and write nothing.
pub async fn ledger_writes_are_fenced<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("fenced");
    store
        .take_over(&takeover(&group, "a", 1, Term(0)))
        .await
        .unwrap();
    let v = version("/in/x", 1);
    for wrong in [
        fence(&group, "a", 1, Term(2)),
        fence(&group, "b", 1, Term(1)),
        fence(&group, "a", 9, Term(1)),
    ] {
        let claim = store.claim(&wrong, std::slice::from_ref(&v)).await;
        assert!(
            matches!(claim, Err(StoreError::Fenced { .. })),
            "fenced: {wrong:?} -> {claim:?}"
        );
        let record = store
            .record(
                &wrong,
                &[LedgerUpdate::Set {
                    version: v.clone(),
                    state: LedgerState::Done,
                    error: None,
                    detail: None,
                }],
            )
            .await;
        assert!(
            matches!(record, Err(StoreError::Fenced { .. })),
            "fenced: {record:?}"
        );
    }
    assert!(store.load_ledger(&group).await.unwrap().is_empty());
    // After a release, even the right term is fenced.
    store
        .release(&fence(&group, "a", 1, Term(1)))
        .await
        .unwrap();
    let claim = store.claim(&fence(&group, "a", 1, Term(1)), &[v]).await;
    assert!(matches!(claim, Err(StoreError::Fenced { .. })), "{claim:?}");
}

/// Two groups share nothing: holders, terms and ledgers are per group.
pub async fn groups_are_isolated<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let g1 = unique_group("iso1");
    let g2 = unique_group("iso2");
    store
        .take_over(&takeover(&g1, "a", 1, Term(0)))
        .await
        .unwrap();
    assert_eq!(
        store.take_over(&takeover(&g2, "b", 2, Term(0))).await,
        Ok(TakeoverOutcome::Won(Term(1)))
    );
    store
        .claim(&fence(&g1, "a", 1, Term(1)), &[version("/x", 1)])
        .await
        .unwrap();
    assert!(store.load_ledger(&g2).await.unwrap().is_empty());
    assert_eq!(store.load_ledger(&g1).await.unwrap().len(), 1);
}

/// `members` lists heartbeats with their ages; `leave` removes only the own incarnation's row.
pub async fn members_and_leave<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("members");
    heartbeat(&store, &hb(&group, "a", 1)).await;
    heartbeat(&store, &hb(&group, "b", 2)).await;
    let mut members = store.members(&group).await.unwrap();
    members.sort_by(|x, y| x.member.cmp(&y.member));
    assert_eq!(members.len(), 2, "members: {members:?}");
    assert_eq!(members[0].member, member("a"));
    assert_eq!(members[0].incarnation, Incarnation(1));
    assert!(members[0].heartbeat_age < Duration::from_secs(5));
    store
        .leave(&group, &member("a"), Incarnation(99))
        .await
        .unwrap();
    assert_eq!(
        store.members(&group).await.unwrap().len(),
        2,
        "leave: wrong incarnation"
    );
    store
        .leave(&group, &member("a"), Incarnation(1))
        .await
        .unwrap();
    let members = store.members(&group).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member, member("b"));
}

async fn observe<S: CoordinationStore>(store: &S, group: &GroupId) -> GroupView {
    let mut view = store
        .observe(group)
        .await
        .unwrap_or_else(|e| panic!("observe: {e}"));
    view.members.sort_by(|x, y| x.member.cmp(&y.member));
    view
}

/// `observe` reports term, holder, lease age and members by the store's clock, and writes
/// nothing: a fresh group stays empty, the member list is unchanged, and observing never
/// renews a lease (a silent holder expires and is taken over while only `observe` runs).
pub async fn observe_reads_without_writing<S, F, Fut>(connect: &F)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("observe");
    let empty = GroupView {
        term: Term(0),
        holder: None,
        members: Vec::new(),
    };
    assert_eq!(observe(&store, &group).await, empty, "observe: fresh group");
    assert_eq!(
        observe(&store, &group).await,
        empty,
        "observe: a fresh group stays empty"
    );
    assert!(store.members(&group).await.unwrap().is_empty());

    heartbeat(&store, &hb(&group, "a", 1)).await;
    heartbeat(&store, &hb(&group, "b", 2)).await;
    assert_eq!(
        store.take_over(&takeover(&group, "a", 1, Term(0))).await,
        Ok(TakeoverOutcome::Won(Term(1)))
    );
    let aged = Duration::from_millis(150);
    tokio::time::sleep(aged).await;
    let first = observe(&store, &group).await;
    assert_eq!(first.term, Term(1), "observe: term");
    let holder = first.holder.clone().expect("observe: holder");
    assert_eq!(
        (holder.member.clone(), holder.incarnation),
        (member("a"), Incarnation(1)),
        "observe: holder"
    );
    // Store clocks may tick in coarse steps: allow a little slack below the wait.
    let slack = Duration::from_millis(30);
    assert!(
        holder.lease_age + slack >= aged && holder.lease_age < Duration::from_secs(5),
        "observe: lease age by the store's clock: {:?}",
        holder.lease_age
    );
    let listed: Vec<_> = first
        .members
        .iter()
        .map(|m| (m.member.clone(), m.incarnation))
        .collect();
    assert_eq!(
        listed,
        vec![(member("a"), Incarnation(1)), (member("b"), Incarnation(2))],
        "observe: members"
    );
    for m in &first.members {
        assert!(
            m.heartbeat_age + slack >= aged && m.heartbeat_age < Duration::from_secs(5),
            "observe: heartbeat age of {}: {:?}",
            m.member,
            m.heartbeat_age
        );
    }
    let mut members = store.members(&group).await.unwrap();
    members.sort_by(|x, y| x.member.cmp(&y.member));
    assert_eq!(
        members.iter().map(|m| &m.member).collect::<Vec<_>>(),
        first.members.iter().map(|m| &m.member).collect::<Vec<_>>(),
        "observe agrees with members"
    );

    // Observing again renews nothing: ages only grow.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = observe(&store, &group).await;
    let again = second.holder.clone().expect("observe: holder again");
    assert!(
        again.lease_age >= holder.lease_age,
        "observe renewed the lease: {:?} then {:?}",
        holder.lease_age,
        again.lease_age
    );
    assert_eq!(second.members.len(), 2, "observe: {second:?}");
    for (before, after) in first.members.iter().zip(&second.members) {
        assert_eq!(before.member, after.member);
        assert!(
            after.heartbeat_age >= before.heartbeat_age,
            "observe wrote a heartbeat: {before:?} then {after:?}"
        );
    }

    // With only observations meanwhile, the holder's lease expires and it can be taken over.
    wait_past_liveness().await;
    let expired = observe(&store, &group).await;
    assert!(
        expired
            .holder
            .as_ref()
            .is_some_and(|h| h.lease_age > LIVENESS),
        "observe: expired lease: {expired:?}"
    );
    assert_eq!(
        store.take_over(&takeover(&group, "c", 3, Term(1))).await,
        Ok(TakeoverOutcome::Won(Term(2))),
        "observe must not renew the lease"
    );
    let taken = observe(&store, &group).await;
    assert_eq!(taken.term, Term(2));
    assert!(
        taken
            .holder
            .as_ref()
            .is_some_and(|h| h.member == member("c") && h.incarnation == Incarnation(3)),
        "observe: new holder: {taken:?}"
    );
    // A released token: no holder, the term stays.
    store
        .release(&fence(&group, "c", 3, Term(2)))
        .await
        .unwrap();
    let released = observe(&store, &group).await;
    assert_eq!((released.term, released.holder), (Term(2), None));
    assert_eq!(released.members.len(), 2, "observe: {:?}", released.members);
}

/// Writes rows behind a store's back, as the seeds' processes, an operator or a newer build
/// would. Each SQL store's tests implement it with a connection of their own.
pub trait RawRows {
    /// A `token_holder` row as the seeds write it: `group_id`, `task_id`, `term`, nothing
    /// else (no incarnation, no lease).
    fn seed_holder(&self, group: &GroupId, task_id: &str, term: i64) -> impl Future<Output = ()>;

    /// A `health_check` row as the seeds write it: no incarnation, `last_heartbeat` now by
    /// the database's clock.
    fn seed_heartbeat(&self, group: &GroupId, task_id: &str) -> impl Future<Output = ()>;

    /// A `processed_file` row with these values as they are (`path_hash` the lowercase hex
    /// SHA-256 of the path's bytes, `updated_at` now). Returns false, writing nothing, when
    /// the database cannot hold such a row at all (PostgreSQL and MySQL text never holds a
    /// path that is not UTF-8).
    fn ledger_row(&self, group: &GroupId, row: &StoredLedgerRow) -> impl Future<Output = bool>;
}

/// Runs the cases that need rows written behind the store's back; panics naming the case.
pub async fn run_raw<S, F, Fut, R>(connect: F, raw: &R)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    R: RawRows,
{
    seed_era_rows_are_released_and_never_live(&connect, raw).await;
    undecodable_ledger_rows_are_skipped(&connect, raw).await;
}

/// Rows written by the seeds' processes (a database taken over in place): their holder
/// counts as released (a member takes over at once, the term carries on), and a heartbeat row
/// without incarnation is never live, not even with a fresh timestamp: the seeds wrote it with
/// a clock and time zone this build cannot judge, and with no incarnation it cannot be told
/// from a process of ours that died. Such rows are listed by `members` and `observe` with
/// `Incarnation(0)`.
pub async fn seed_era_rows_are_released_and_never_live<S, F, Fut, R>(connect: &F, raw: &R)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    R: RawRows,
{
    let store = connect().await;
    let group = unique_group("seed");
    raw.seed_holder(&group, "old-node", 1).await;
    raw.seed_heartbeat(&group, "old-node").await;
    raw.seed_heartbeat(&group, "a").await;
    let view = observe(&store, &group).await;
    assert_eq!(
        (view.term, view.holder.clone()),
        (Term(1), None),
        "seed: {view:?}"
    );
    let seeds: Vec<(&str, Incarnation)> = view
        .members
        .iter()
        .map(|m| (m.member.as_str(), m.incarnation))
        .collect();
    assert_eq!(
        seeds,
        [("a", Incarnation(0)), ("old-node", Incarnation(0))],
        "seed: members"
    );
    let obs = heartbeat(&store, &hb(&group, "a", 7)).await;
    assert_eq!(
        obs.own_row,
        OwnRow::Written,
        "seed: a fresh heartbeat row without incarnation is not a live process"
    );
    assert_eq!((obs.term, obs.holder), (Term(1), None), "seed: holder");
    assert_eq!(
        store.take_over(&takeover(&group, "a", 7, Term(1))).await,
        Ok(TakeoverOutcome::Won(Term(2))),
        "seed: the seeds' holder counts as released"
    );
    let obs = heartbeat(&store, &hb(&group, "a", 7)).await;
    assert!(obs.holder_is(&member("a"), Incarnation(7)), "seed: {obs:?}");
    let members = store.members(&group).await.unwrap();
    let rows: Vec<(&str, Incarnation)> = members
        .iter()
        .map(|m| (m.member.as_str(), m.incarnation))
        .collect();
    assert_eq!(
        rows,
        [("a", Incarnation(7)), ("old-node", Incarnation(0))],
        "seed: members after the first tick"
    );
}

/// Ledger rows that cannot be decoded (a state word this build does not know, a negative
/// size, term or attempt count, a path that is not UTF-8) are skipped by `load_ledger` and
/// `lookup_ledger`, which still return every good row, never an error and never a panic;
/// they stay in the table,
/// and a claim of the version a skipped row stands for is `Settled`, so it is not dispatched.
pub async fn undecodable_ledger_rows_are_skipped<S, F, Fut, R>(connect: &F, raw: &R)
where
    S: CoordinationStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    R: RawRows,
{
    let store = connect().await;
    let group = unique_group("undecodable");
    store
        .take_over(&takeover(&group, "a", 1, Term(0)))
        .await
        .unwrap();
    let f = fence(&group, "a", 1, Term(1));
    let good = version("/in/good.csv", 3);
    store
        .record(
            &f,
            &[LedgerUpdate::Set {
                version: good.clone(),
                state: LedgerState::Failed,
                error: None,
                detail: None,
            }],
        )
        .await
        .unwrap();
    let row = |path: &[u8], size: i64, state: &str, term: i64, attempts: i64| StoredLedgerRow {
        path: path.to_vec(),
        size,
        mtime_ms: good.mtime_ms,
        state: state.as_bytes().to_vec(),
        term,
        attempts,
        last_error: None,
        detail: None,
    };
    let future_state = row(b"/in/future.csv", 4, "archived", 1, 1);
    let mut written = Vec::new();
    for (what, bad) in [
        ("unknown state", future_state.clone()),
        ("negative size", row(b"/in/minus.csv", -1, "failed", 1, 1)),
        ("negative term", row(b"/in/term.csv", 1, "claimed", -3, 1)),
        (
            "negative attempts",
            row(b"/in/attempts.csv", 1, "failed", 1, -2),
        ),
        (
            "non-UTF-8 path",
            row(b"/in/\xff\xfe.csv", 1, "handled", 1, 1),
        ),
    ] {
        if raw.ledger_row(&group, &bad).await {
            written.push(what);
        }
    }
    assert!(
        written.len() >= 3,
        "undecodable: the database took only {written:?}"
    );
    let loaded = store
        .load_ledger(&group)
        .await
        .unwrap_or_else(|e| panic!("undecodable: load failed on {written:?}: {e}"));
    let paths: Vec<&str> = loaded.iter().map(|r| r.version.path.as_str()).collect();
    assert_eq!(paths, ["/in/good.csv"], "undecodable: skipped {written:?}");
    let asked: Vec<FileVersion> = [
        ("/in/good.csv", 3),
        ("/in/future.csv", 4),
        ("/in/term.csv", 1),
        ("/in/attempts.csv", 1),
    ]
    .iter()
    .map(|(p, size)| FileVersion {
        path: (*p).into(),
        size: *size,
        mtime_ms: good.mtime_ms,
    })
    .collect();
    let looked_up = store
        .lookup_ledger(&group, &asked)
        .await
        .unwrap_or_else(|e| panic!("undecodable: lookup failed on {written:?}: {e}"));
    let paths: Vec<&str> = looked_up.iter().map(|r| r.version.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/in/good.csv"],
        "undecodable: lookup skipped {written:?}"
    );
    // The skipped rows stay, and the claim statement still settles the version a row
    // in an unknown state stands for.
    let future = FileVersion {
        path: "/in/future.csv".into(),
        size: 4,
        mtime_ms: good.mtime_ms,
    };
    assert_eq!(
        store.claim(&f, &[future]).await.unwrap(),
        [ClaimOutcome::Settled],
        "undecodable: a row this build cannot read is never dispatched"
    );
    assert_eq!(store.load_ledger(&group).await.unwrap().len(), 1);
}
