//! The ledger history's conformance case, for the stores that keep one (the SQL stores):
//! every claim and every recorded state is one event, in order, with the term, the attempt
//! count and the error; a fenced write adds none; a batch of several versions gives each its
//! event; `updated_within` finds the rows just written; forgetting a version deletes its
//! events.

use std::time::Duration;

use coord_core::{
    CoordinationStore, Fence, FileVersion, Incarnation, LedgerHistory, LedgerState, LedgerUpdate,
    MemberId, StoreError, TakeoverRequest, Term,
};

use crate::conformance::unique_group;

fn set(version: &FileVersion, state: LedgerState, error: Option<&str>) -> LedgerUpdate {
    LedgerUpdate::Set {
        version: version.clone(),
        state,
        error: error.map(str::to_string),
        detail: None,
    }
}

/// Runs the case on a store from `connect`.
pub async fn run<S, F, Fut>(connect: F)
where
    S: CoordinationStore + LedgerHistory,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let store = connect().await;
    let group = unique_group("history");
    let member = MemberId::new("a").unwrap();
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: member.clone(),
            incarnation: Incarnation(1),
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .unwrap();
    assert_eq!(won, coord_core::TakeoverOutcome::Won(Term(1)));
    let fence = Fence {
        group: group.clone(),
        member,
        incarnation: Incarnation(1),
        term: Term(1),
    };
    let v = FileVersion {
        path: "/in/x.csv".into(),
        size: 4,
        mtime_ms: 1_700_000_000_123,
    };
    let w = FileVersion {
        path: "/in/y.csv".into(),
        ..v.clone()
    };

    store.claim(&fence, &[v.clone(), w.clone()]).await.unwrap();
    store
        .record(&fence, &[set(&v, LedgerState::Failed, Some("boom"))])
        .await
        .unwrap();
    store.claim(&fence, std::slice::from_ref(&v)).await.unwrap();
    store
        .record(&fence, &[set(&v, LedgerState::Handled, None)])
        .await
        .unwrap();
    store
        .record(
            &fence,
            &[
                set(&v, LedgerState::Done, None),
                set(&w, LedgerState::Error, Some("given up")),
            ],
        )
        .await
        .unwrap();
    // A fenced write adds no event.
    let stale = Fence {
        term: Term(7),
        ..fence.clone()
    };
    let refused = store
        .record(&stale, &[set(&v, LedgerState::Failed, Some("late"))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );

    let history = store.history(&group, &v).await.unwrap();
    let steps: Vec<(&str, u32, u64, Option<&str>)> = history
        .iter()
        .map(|e| (e.state.as_str(), e.attempts, e.term.0, e.detail.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [
            ("claimed", 1, 1, None),
            ("failed", 1, 1, Some("boom")),
            ("claimed", 2, 1, None),
            ("handled", 2, 1, None),
            ("done", 2, 1, None),
        ]
    );
    assert!(
        history
            .windows(2)
            .all(|p| p[0].at_unix_ms <= p[1].at_unix_ms),
        "{history:?}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The database's clock and the test's are the same host's (loopback servers).
    assert!(
        (history[0].at_unix_ms - now_ms).abs() < 60_000,
        "{history:?} at {now_ms}"
    );
    let other = store.history(&group, &w).await.unwrap();
    let steps: Vec<(&str, u32, Option<&str>)> = other
        .iter()
        .map(|e| (e.state.as_str(), e.attempts, e.detail.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [("claimed", 1, None), ("error", 1, Some("given up"))]
    );

    let recent = store
        .updated_within(&group, Duration::from_secs(3600))
        .await
        .unwrap();
    let mut paths: Vec<&str> = recent.iter().map(|(v, _)| v.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/in/x.csv", "/in/y.csv"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let none = store
        .updated_within(&group, Duration::from_millis(10))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Forgetting a version deletes its history with its row; the other keeps its own.
    store
        .record(&fence, &[LedgerUpdate::Forget(v.clone())])
        .await
        .unwrap();
    assert!(store.history(&group, &v).await.unwrap().is_empty());
    assert_eq!(store.history(&group, &w).await.unwrap().len(), 2);
}
