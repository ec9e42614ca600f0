//! Ledger batches of any size on the real PostgreSQL with the default 2 s statement timeout:
//! claims and records are cut into bounded statements, loads read bounded pages.

mod common;

use std::time::{Duration, Instant};

use common::*;
use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, LedgerState, LedgerUpdate,
    TakeoverOutcome, TakeoverRequest, Term,
};

const FRESH: ClaimOutcome = ClaimOutcome::Claimed {
    attempt: 1,
    redelivery: false,
};

fn version(i: u64) -> FileVersion {
    FileVersion {
        path: format!("/srv/ftp/inbound/partner-acme/2024-12-01/invoice-{i:06}.csv"),
        size: i,
        mtime_ms: 1_700_000_000_000 + i as i64,
    }
}

async fn leader(store: &coord_postgres::PgStore, prefix: &str) -> Fence {
    let group = group(prefix);
    let inc = incarnation();
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: member("a"),
            incarnation: inc,
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .unwrap();
    assert_eq!(won, TakeoverOutcome::Won(Term(1)));
    Fence {
        group,
        member: member("a"),
        incarnation: inc,
        term: Term(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_versions_are_claimed_in_one_call_and_loaded() {
    const N: u64 = 50_000;
    let store = shared_store().await;
    let f = leader(&store, "fifty").await;
    let versions: Vec<FileVersion> = (0..N).map(version).collect();
    let started = Instant::now();
    let answers = store.claim(&f, &versions).await.unwrap();
    let claimed = started.elapsed();
    assert_eq!(answers.len() as u64, N);
    assert!(answers.iter().all(|o| *o == FRESH));
    store
        .record(
            &f,
            &[
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
            ],
        )
        .await
        .unwrap();
    let started = Instant::now();
    let loaded = store.load_ledger(&f.group).await.unwrap();
    let load = started.elapsed();
    eprintln!(
        "postgres: claim of {N} new versions {claimed:?}, load of {} rows {load:?}",
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
        .lookup_ledger(&f.group, &[version(7), version(N - 1)])
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
    let row = find(&version(12_345)).unwrap();
    assert_eq!(
        (row.state, row.term, row.attempts),
        (LedgerState::Claimed, Term(1), 1)
    );
    assert!(find(&version(N - 1)).is_none());
    assert_eq!(
        store
            .claim(
                &f,
                &[version(42), version(7), version(N - 1), version(30_000)]
            )
            .await
            .unwrap(),
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

/// A record applies its updates as if in order: the last one of a version wins, and a set
/// after a forget writes a fresh row (attempts 0), as the other stores do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_has_the_net_effect_of_its_updates_in_order() {
    let store = shared_store().await;
    let f = leader(&store, "net").await;
    let (x, y) = (version(1), version(2));
    let claimed = store.claim(&f, &[x.clone(), x.clone(), y.clone()]).await;
    assert_eq!(claimed.unwrap(), [FRESH, FRESH, FRESH]);
    store.claim(&f, &[x.clone(), y.clone()]).await.unwrap();
    let set = |v: &FileVersion, state| LedgerUpdate::Set {
        version: v.clone(),
        state,
        error: None,
        detail: None,
    };
    store
        .record(
            &f,
            &[
                LedgerUpdate::Forget(x.clone()),
                set(&x, LedgerState::Failed),
                set(&y, LedgerState::Failed),
                set(&x, LedgerState::Done),
            ],
        )
        .await
        .unwrap();
    let loaded = store
        .lookup_ledger(&f.group, &[x.clone(), y.clone()])
        .await
        .unwrap();
    let find = |v: &FileVersion| loaded.iter().find(|r| &r.version == v).unwrap();
    assert_eq!((find(&x).state, find(&x).attempts), (LedgerState::Done, 0));
    assert_eq!(
        (find(&y).state, find(&y).attempts),
        (LedgerState::Failed, 2)
    );
}
