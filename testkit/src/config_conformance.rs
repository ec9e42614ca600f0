//! The conformance case of every [`ConfigStore`] (the SQL stores on their real databases, and
//! [`crate::MemConfigStore`]): versions numbered 1, 2, … per cluster with their audit trail;
//! each member's row written whole (a failure cleared by the next report), read back by
//! member ID with its age by the database's clock; clusters kept apart.

use std::time::Duration;

use coord_core::{ConfigStore, MemberReport};

use crate::conformance::unique_group;

fn report(
    member: &str,
    applied: Option<u64>,
    failed: Option<u64>,
    error: Option<&str>,
) -> MemberReport {
    MemberReport {
        member: member.to_owned(),
        applied_version: applied,
        failed_version: failed,
        error: error.map(str::to_owned),
        listeners: "keep@2,work@1".to_owned(),
    }
}

/// Runs the case on `store` (a fresh cluster name each run, so a shared database is fine).
pub async fn run(store: &dyn ConfigStore) {
    let cluster = unique_group("cluster").as_str().to_owned();
    let other = unique_group("cluster-other").as_str().to_owned();

    // Versions and their audit trail.
    assert_eq!(store.latest_config_version(&cluster).await.unwrap(), None);
    assert_eq!(
        store
            .push_config(&cluster, "one", "u@h", "first")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.push_config(&cluster, "two", "u@h", "").await.unwrap(),
        2
    );
    assert_eq!(
        store.push_config(&other, "x", "u@h", "").await.unwrap(),
        1,
        "numbered per cluster"
    );
    assert_eq!(
        store.latest_config_version(&cluster).await.unwrap(),
        Some(2)
    );
    let v1 = store.config_version(&cluster, 1).await.unwrap().unwrap();
    assert_eq!(
        (v1.body.as_str(), v1.comment.as_str(), v1.pushed_by.as_str()),
        ("one", "first", "u@h")
    );
    assert!(
        v1.pushed_at_ms > 1_600_000_000_000,
        "by the database clock: {}",
        v1.pushed_at_ms
    );
    assert_eq!(store.config_version(&cluster, 9).await.unwrap(), None);
    let history = store.config_history(&cluster).await.unwrap();
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // Member rows: none, then one per member, by member ID.
    assert!(store.member_statuses(&cluster).await.unwrap().is_empty());
    store
        .report_member(
            &cluster,
            &report(
                "b",
                Some(2),
                Some(2),
                Some("listener `work` (version 2): is a directory"),
            ),
        )
        .await
        .unwrap();
    store
        .report_member(&cluster, &report("a", Some(2), None, None))
        .await
        .unwrap();
    store
        .report_member(&other, &report("a", None, None, None))
        .await
        .unwrap();
    let rows = store.member_statuses(&cluster).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.report.member.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(rows[0].report, report("a", Some(2), None, None));
    assert_eq!(rows[1].report.failed_version, Some(2));
    assert_eq!(
        rows[1].report.error.as_deref(),
        Some("listener `work` (version 2): is a directory")
    );
    assert_eq!(rows[1].report.listeners, "keep@2,work@1");
    for r in &rows {
        assert!(
            r.age_ms < 60_000,
            "just written, by the database clock: {r:?}"
        );
        assert!(r.updated_at_ms > 1_600_000_000_000, "{r:?}");
    }

    // The next report replaces the row whole: the failure is cleared, the time moves on.
    let before = rows[1].updated_at_ms;
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .report_member(&cluster, &report("b", Some(3), None, None))
        .await
        .unwrap();
    let rows = store.member_statuses(&cluster).await.unwrap();
    assert_eq!(rows.len(), 2, "an upsert, not a second row: {rows:?}");
    assert_eq!(rows[1].report, report("b", Some(3), None, None));
    assert!(
        rows[1].updated_at_ms > before,
        "{} after {before}",
        rows[1].updated_at_ms
    );

    // The age grows by the database clock.
    let age = rows[0].age_ms;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = store.member_statuses(&cluster).await.unwrap();
    assert!(
        later[0].age_ms >= age + 40,
        "{} then {}",
        age,
        later[0].age_ms
    );

    // Clusters are kept apart.
    let others = store.member_statuses(&other).await.unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].report.applied_version, None);
}
