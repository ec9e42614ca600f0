//! The contract points the shared suite does not pin down, over the real Redis: done is
//! final, updates apply in order, an empty claim is still fenced, and the renewal value
//! changes with every renewal.

mod common;

use std::time::Duration;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, HeartbeatRequest, Incarnation,
    LedgerState, LedgerUpdate, MemberId, StoreError, TakeoverRequest, Term,
};
use coord_redis::RedisStore;

async fn leader(store: &RedisStore, group: &str) -> Fence {
    let fence = Fence {
        group: GroupId::new(group).unwrap(),
        member: MemberId::new("a").unwrap(),
        incarnation: Incarnation(1),
        term: Term(1),
    };
    store
        .take_over(&TakeoverRequest {
            group: fence.group.clone(),
            member: fence.member.clone(),
            incarnation: fence.incarnation,
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .unwrap();
    fence
}

fn set(version: &FileVersion, state: LedgerState, error: Option<&str>) -> LedgerUpdate {
    LedgerUpdate::Set {
        version: version.clone(),
        state,
        error: error.map(str::to_owned),
        detail: None,
    }
}

#[tokio::test]
async fn done_is_final_and_updates_apply_in_order() {
    let prefix = common::unique_prefix("ledger");
    let store = common::store(&prefix).await;
    let fence = leader(&store, "g").await;
    let v = FileVersion {
        path: "/in/a:b.csv".into(),
        size: 3,
        mtime_ms: 9,
    };
    // One version named twice in one claim is claimed twice, in order.
    assert_eq!(
        store.claim(&fence, &[v.clone(), v.clone()]).await,
        Ok(vec![
            ClaimOutcome::Claimed {
                attempt: 1,
                redelivery: false
            },
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true
            },
        ])
    );
    store
        .record(&fence, &[set(&v, LedgerState::Done, None)])
        .await
        .unwrap();
    // A late write of an earlier state does not take done back.
    store
        .record(&fence, &[set(&v, LedgerState::Failed, Some("late"))])
        .await
        .unwrap();
    assert!(store.load_ledger(&fence.group).await.unwrap().is_empty());
    let ledger = store
        .lookup_ledger(&fence.group, std::slice::from_ref(&v))
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (
            ledger[0].state,
            ledger[0].attempts,
            ledger[0].last_error.clone()
        ),
        (LedgerState::Done, 2, None)
    );
    // Forget removes it; a set after a forget in the same batch writes a fresh row.
    store
        .record(
            &fence,
            &[
                LedgerUpdate::Forget(v.clone()),
                set(&v, LedgerState::Failed, Some("")),
            ],
        )
        .await
        .unwrap();
    let ledger = store.load_ledger(&fence.group).await.unwrap();
    assert_eq!(
        (
            ledger[0].state,
            ledger[0].attempts,
            ledger[0].last_error.as_deref()
        ),
        (LedgerState::Failed, 0, Some(""))
    );
    assert_eq!(ledger[0].version, v);
    // An empty claim or record still checks the fence.
    assert_eq!(store.claim(&fence, &[]).await, Ok(vec![]));
    let stale = Fence {
        term: Term(2),
        ..fence.clone()
    };
    assert!(matches!(
        store.claim(&stale, &[]).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store.record(&stale, &[]).await,
        Err(StoreError::Fenced { .. })
    ));
    common::clean_up(&prefix).await;
}

#[tokio::test]
async fn renewal_changes_with_every_renewal() {
    let prefix = common::unique_prefix("renewal");
    let store = common::store(&prefix).await;
    let fence = leader(&store, "g").await;
    let request = HeartbeatRequest {
        group: fence.group.clone(),
        member: fence.member.clone(),
        incarnation: fence.incarnation,
        liveness_timeout: Duration::from_secs(5),
    };
    let mut seen = Vec::new();
    for _ in 0..20 {
        let obs = store.heartbeat(&request).await.unwrap();
        seen.push(obs.holder.unwrap().renewal);
    }
    let mut distinct = seen.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), seen.len(), "{seen:?}");
    // Observing, or another member's heartbeat, renews nothing.
    let view = store.observe(&fence.group).await.unwrap();
    assert_eq!(view.holder.unwrap().renewal, *seen.last().unwrap());
    common::clean_up(&prefix).await;
}
