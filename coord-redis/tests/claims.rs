//! Large ledger batches over the real Redis: cut into bounded script calls, answered in
//! order, loaded back whole.

mod common;

use std::time::Instant;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, Incarnation, LedgerState,
    LedgerUpdate, MemberId, TakeoverOutcome, TakeoverRequest, Term,
};

const VERSIONS: usize = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_50k_versions_works() {
    let prefix = common::unique_prefix("claims");
    let store = common::store(&prefix).await;
    let group = GroupId::new("big").unwrap();
    let member = MemberId::new("a").unwrap();
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: member.clone(),
            incarnation: Incarnation(u64::MAX),
            observed_term: Term(0),
            liveness_timeout: std::time::Duration::from_secs(5),
            observed_renewal: None,
        })
        .await;
    assert_eq!(won, Ok(TakeoverOutcome::Won(Term(1))));
    let fence = Fence {
        group: group.clone(),
        member,
        incarnation: Incarnation(u64::MAX),
        term: Term(1),
    };
    let versions: Vec<FileVersion> = (0..VERSIONS)
        .map(|i| FileVersion {
            path: format!("/in/batch/{i:06}:x.csv"),
            size: i as u64,
            mtime_ms: 1_700_000_000_000 + i as i64,
        })
        .collect();

    let started = Instant::now();
    let first = store.claim(&fence, &versions).await.unwrap();
    let claim_took = started.elapsed();
    assert_eq!(first.len(), VERSIONS);
    assert!(first.iter().all(|o| *o
        == ClaimOutcome::Claimed {
            attempt: 1,
            redelivery: false
        }));

    // Settle every other version; the rest are redelivered, in order.
    let updates: Vec<LedgerUpdate> = versions
        .iter()
        .step_by(2)
        .map(|v| LedgerUpdate::Set {
            version: v.clone(),
            state: LedgerState::Done,
            error: None,
            detail: None,
        })
        .collect();
    let started = Instant::now();
    store.record(&fence, &updates).await.unwrap();
    let record_took = started.elapsed();
    let started = Instant::now();
    let second = store.claim(&fence, &versions).await.unwrap();
    let reclaim_took = started.elapsed();
    for (i, outcome) in second.iter().enumerate() {
        let expected = if i % 2 == 0 {
            ClaimOutcome::Settled
        } else {
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true,
            }
        };
        assert_eq!(outcome, &expected, "version {i}");
    }
    let started = Instant::now();
    let ledger = store.lookup_ledger(&group, &versions).await.unwrap();
    let load_took = started.elapsed();
    assert_eq!(ledger.len(), VERSIONS);
    assert_eq!(
        ledger
            .iter()
            .filter(|r| r.state == LedgerState::Done)
            .count(),
        VERSIONS / 2
    );
    assert_eq!(
        store.load_ledger(&group).await.unwrap().len(),
        VERSIONS / 2,
        "the load takes the rows with work left"
    );
    eprintln!(
        "{VERSIONS} versions: claim {claim_took:?}, record {} done {record_took:?}, \
         re-claim {reclaim_took:?}, load {load_took:?}",
        updates.len()
    );
    common::clean_up(&prefix).await;
}
