//! The ledger under stress on the real MariaDB: a leader stopped in the middle of a claim
//! must not block a standby's takeover (no lock is held across client round trips), and
//! claims and loads of any size work with the server's default settings.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, HeartbeatRequest, Incarnation,
    LedgerState, LedgerUpdate, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use coord_mysql::MySqlStore;
use testkit::TcpProxy;

const FRESH: ClaimOutcome = ClaimOutcome::Claimed {
    attempt: 1,
    redelivery: false,
};

fn take(group: &GroupId, name: &str, inc: Incarnation, term: Term) -> TakeoverRequest {
    TakeoverRequest {
        group: group.clone(),
        member: member(name),
        incarnation: inc,
        observed_term: term,
        // Zero: the lease counts as stale at once, so only the term (and locks) decide.
        liveness_timeout: Duration::ZERO,
        observed_renewal: None,
    }
}

fn fence_of(group: &GroupId, name: &str, inc: Incarnation, term: Term) -> Fence {
    Fence {
        group: group.clone(),
        member: member(name),
        incarnation: inc,
        term,
    }
}

/// A realistic path: 50,000 of them in one statement are far over the default 16 MiB
/// `max_allowed_packet`.
fn version(i: u64) -> FileVersion {
    FileVersion {
        path: format!("/srv/ftp/inbound/partner-acme/2024-12-01/invoice-{i:06}.csv"),
        size: i,
        mtime_ms: 1_700_000_000_000 + i as i64,
    }
}

/// A leader whose process stops right after its claim reached the server (the proxy holds
/// the server's answer and forwards nothing more, as for a SIGSTOPped client) must not keep
/// a lock on the token row: the standby's takeover, on its own connection, succeeds at once.
/// With a claim of two round trips (fence check under a shared lock, then write and commit)
/// the takeover waits for the lock until the server drops the stopped session (hours), here
/// until the standby's 1 s lock wait timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_mid_claim_does_not_block_the_takeover() {
    drop(store().await); // migrated
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], PORT)))
        .await
        .unwrap();
    let mut through_proxy = settings();
    through_proxy.port = proxy.addr().port();
    through_proxy.statement_timeout = Duration::from_secs(10);
    through_proxy.pool_size = 1;
    let leader = MySqlStore::connect(through_proxy).await.unwrap();
    let mut direct = settings();
    // Also the standby's lock wait timeout: a blocked takeover fails after 1 s.
    direct.statement_timeout = Duration::from_secs(1);
    let standby = MySqlStore::connect(direct).await.unwrap();

    let group = group();
    let (a, b) = (incarnation(), incarnation());
    let won = leader
        .take_over(&take(&group, "a", a, Term(0)))
        .await
        .unwrap();
    assert_eq!(won, TakeoverOutcome::Won(Term(1)));
    let fence = fence_of(&group, "a", a, Term(1));
    // Warm: the pooled connection exists, so the claim's query is the next thing sent.
    assert_eq!(leader.claim(&fence, &[version(0)]).await.unwrap(), [FRESH]);

    proxy.freeze_on_reply();
    let versions = vec![version(1), version(2)];
    let claim = tokio::spawn({
        let (leader, fence, versions) = (leader.clone(), fence.clone(), versions.clone());
        async move { leader.claim(&fence, &versions).await }
    });
    let waited = Instant::now();
    while !proxy.is_frozen() {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the claim never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The leader is "stopped" with its claim on the server; let the server do its part.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let takeover = standby.take_over(&take(&group, "b", b, Term(1))).await;
    let latency = started.elapsed();
    eprintln!("takeover while the leader is stopped mid-claim: {takeover:?} in {latency:?}");
    assert_eq!(
        takeover,
        Ok(TakeoverOutcome::Won(Term(2))),
        "after {latency:?}"
    );
    assert!(latency < Duration::from_secs(1), "{latency:?}");

    // The stopped leader's claim was applied whole, under term 1, before the takeover: the
    // new leader redelivers it. When the old leader resumes it gets its answer, and is fenced
    // from then on.
    let new = fence_of(&group, "b", b, Term(2));
    let redelivered = ClaimOutcome::Claimed {
        attempt: 2,
        redelivery: true,
    };
    assert_eq!(
        standby.claim(&new, &versions).await.unwrap(),
        [redelivered.clone(), redelivered]
    );
    proxy.thaw();
    assert_eq!(claim.await.unwrap(), Ok(vec![FRESH, FRESH]));
    let late = leader.claim(&fence, &[version(3)]).await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    let late = leader
        .record(&fence, &[LedgerUpdate::Forget(version(1))])
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    let loaded = standby.load_ledger(&group).await.unwrap();
    assert_eq!(loaded.len(), 3, "{loaded:?}");
    assert!(loaded.iter().all(|r| r.state == LedgerState::Claimed));
}

/// The same with a record: the stopped leader's record does not hold the token row either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_mid_record_does_not_block_the_takeover() {
    drop(store().await);
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], PORT)))
        .await
        .unwrap();
    let mut through_proxy = settings();
    through_proxy.port = proxy.addr().port();
    through_proxy.statement_timeout = Duration::from_secs(10);
    through_proxy.pool_size = 1;
    let leader = MySqlStore::connect(through_proxy).await.unwrap();
    let mut direct = settings();
    direct.statement_timeout = Duration::from_secs(1);
    let standby = MySqlStore::connect(direct).await.unwrap();

    let group = group();
    let (a, b) = (incarnation(), incarnation());
    leader
        .take_over(&take(&group, "a", a, Term(0)))
        .await
        .unwrap();
    let fence = fence_of(&group, "a", a, Term(1));
    assert_eq!(leader.claim(&fence, &[version(0)]).await.unwrap(), [FRESH]);

    proxy.freeze_on_reply();
    let done = LedgerUpdate::Set {
        version: version(0),
        state: LedgerState::Done,
        error: None,
        detail: None,
    };
    let record = tokio::spawn({
        let (leader, fence) = (leader.clone(), fence.clone());
        async move { leader.record(&fence, &[done]).await }
    });
    let waited = Instant::now();
    while !proxy.is_frozen() {
        assert!(waited.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let takeover = standby.take_over(&take(&group, "b", b, Term(1))).await;
    let latency = started.elapsed();
    eprintln!("takeover while the leader is stopped mid-record: {takeover:?} in {latency:?}");
    assert_eq!(
        takeover,
        Ok(TakeoverOutcome::Won(Term(2))),
        "after {latency:?}"
    );
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    let new = fence_of(&group, "b", b, Term(2));
    assert_eq!(
        standby.claim(&new, &[version(0)]).await.unwrap(),
        [ClaimOutcome::Settled]
    );
    proxy.thaw();
    assert_eq!(record.await.unwrap(), Ok(()));
}

/// 50,000 new versions in one claim (cut into bounded batches inside the store; one
/// statement of them all exceeds `max_allowed_packet`), then loaded back in pages, with the
/// server's default settings and the store's default 2 s statement timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_versions_are_claimed_in_one_call_and_loaded() {
    const N: u64 = 50_000;
    let store = store().await;
    let group = group();
    let a = incarnation();
    store
        .heartbeat(&HeartbeatRequest {
            group: group.clone(),
            member: member("a"),
            incarnation: a,
            liveness_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    store
        .take_over(&take(&group, "a", a, Term(0)))
        .await
        .unwrap();
    let fence = fence_of(&group, "a", a, Term(1));
    let versions: Vec<FileVersion> = (0..N).map(version).collect();

    let started = Instant::now();
    let answers = store.claim(&fence, &versions).await.unwrap();
    let claimed = started.elapsed();
    assert_eq!(answers.len() as u64, N);
    assert!(answers.iter().all(|o| *o == FRESH));

    // A few outcomes, then the whole ledger back.
    let updates = vec![
        LedgerUpdate::Set {
            version: version(7),
            state: LedgerState::Done,
            error: None,
            detail: None,
        },
        LedgerUpdate::Set {
            version: version(42),
            state: LedgerState::Failed,
            error: Some("boom".into()),
            detail: None,
        },
        LedgerUpdate::Forget(version(N - 1)),
    ];
    store.record(&fence, &updates).await.unwrap();
    let started = Instant::now();
    let loaded = store.load_ledger(&group).await.unwrap();
    let load = started.elapsed();
    eprintln!(
        "mariadb: claim of {N} new versions {claimed:?}, load of {} rows {load:?}",
        loaded.len()
    );
    // The load takes the rows with work left: all but the done one (and the forgotten).
    assert_eq!(loaded.len() as u64, N - 2);
    let mut paths: Vec<&str> = loaded.iter().map(|r| r.version.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len() as u64, N - 2, "every row exactly once");
    let find = |v: &FileVersion| loaded.iter().find(|r| &r.version == v);
    assert!(find(&version(7)).is_none(), "a done row is not loaded");
    let done = store
        .lookup_ledger(&group, &[version(7), version(N - 1)])
        .await
        .unwrap();
    assert_eq!(
        done.iter()
            .map(|r| (r.version.clone(), r.state))
            .collect::<Vec<_>>(),
        [(version(7), LedgerState::Done)],
        "looked up: the done row, and nothing of the forgotten one"
    );
    let failed = find(&version(42)).unwrap();
    assert_eq!(
        (failed.state, failed.attempts, failed.last_error.as_deref()),
        (LedgerState::Failed, 1, Some("boom"))
    );
    let claimed_row = find(&version(12_345)).unwrap();
    assert_eq!(
        (claimed_row.state, claimed_row.term, claimed_row.attempts),
        (LedgerState::Claimed, Term(1), 1)
    );
    assert!(find(&version(N - 1)).is_none());

    // Claimed again across chunk boundaries: answers stay in request order.
    let again = store
        .claim(
            &fence,
            &[version(42), version(7), version(N - 1), version(30_000)],
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        [
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: false
            },
            ClaimOutcome::Settled,
            FRESH,
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true
            },
        ]
    );
}
