//! The protocol's semantics on the real server, case by case (the shared conformance suite
//! runs in `conformance.rs`); each test uses its own group in a shared migrated schema.

mod common;

use std::time::Duration;

use common::{admin, group, incarnation, member, settings, shared_store};
use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, HeartbeatRequest, Incarnation,
    LedgerState, LedgerUpdate, MemberId, Observation, OwnRow, StoreError, TakeoverOutcome,
    TakeoverRequest, Term,
};
use coord_postgres::{PgSettings, PgStore};

const LIVENESS: Duration = Duration::from_secs(5);

async fn beat(store: &PgStore, g: &GroupId, m: &MemberId, i: Incarnation) -> Observation {
    store
        .heartbeat(&HeartbeatRequest {
            group: g.clone(),
            member: m.clone(),
            incarnation: i,
            liveness_timeout: LIVENESS,
        })
        .await
        .unwrap()
}

async fn take(
    store: &PgStore,
    g: &GroupId,
    m: &MemberId,
    i: Incarnation,
    term: Term,
) -> TakeoverOutcome {
    store
        .take_over(&TakeoverRequest {
            group: g.clone(),
            member: m.clone(),
            incarnation: i,
            observed_term: term,
            liveness_timeout: LIVENESS,
            observed_renewal: None,
        })
        .await
        .unwrap()
}

/// Makes the group's lease (or a member's heartbeat) an hour old, as if its owner had died.
async fn age_lease(g: &GroupId) {
    admin()
        .await
        .execute(
            "UPDATE coord_pg_shared.token_holder SET renewed_at = renewed_at - interval '1 hour'
             WHERE group_id = $1",
            &[&g.as_str()],
        )
        .await
        .unwrap();
}

async fn age_heartbeat(g: &GroupId, m: &MemberId) {
    admin()
        .await
        .execute(
            "UPDATE coord_pg_shared.health_check SET last_heartbeat = last_heartbeat - interval '1 hour'
             WHERE group_id = $1 AND task_id = $2",
            &[&g.as_str(), &m.as_str()],
        )
        .await
        .unwrap();
}

fn version(path: &str) -> FileVersion {
    FileVersion {
        path: path.to_owned(),
        size: 42,
        mtime_ms: 1_700_000_000_123,
    }
}

#[tokio::test]
async fn election_lifecycle() {
    let store = shared_store().await;
    let g = group("life");
    let (a, ia) = (member("a"), incarnation());
    let (b, ib) = (member("b"), Incarnation(ia.0.wrapping_add(1)));

    let first = beat(&store, &g, &a, ia).await;
    assert_eq!(
        (first.own_row, first.term, first.holder.clone()),
        (OwnRow::Written, Term(0), None)
    );
    assert_eq!(
        take(&store, &g, &a, ia, Term(0)).await,
        TakeoverOutcome::Won(Term(1))
    );
    // A second first-takeover loses: the row exists.
    assert_eq!(
        take(&store, &g, &b, ib, Term(0)).await,
        TakeoverOutcome::Lost
    );
    let renewed = beat(&store, &g, &a, ia).await;
    assert!(renewed.holder_is(&a, ia), "{renewed:?}");
    assert!(renewed.holder.as_ref().unwrap().lease_age < Duration::from_secs(1));
    // B sees A as a live holder and cannot take over.
    let seen = beat(&store, &g, &b, ib).await;
    assert_eq!(seen.term, Term(1));
    assert!(seen.holder_is(&a, ia) && !seen.holder_is(&b, ib));
    assert_eq!(
        take(&store, &g, &b, ib, Term(1)).await,
        TakeoverOutcome::Lost
    );

    // A dies (its lease ages): B takes over, A's fence no longer holds.
    age_lease(&g).await;
    let stale = beat(&store, &g, &b, ib).await;
    assert!(stale.holder.as_ref().unwrap().lease_age > LIVENESS);
    assert_eq!(
        take(&store, &g, &b, ib, Term(1)).await,
        TakeoverOutcome::Won(Term(2))
    );
    let old_fence = Fence {
        group: g.clone(),
        member: a.clone(),
        incarnation: ia,
        term: Term(1),
    };
    let err = store
        .claim(&old_fence, &[version("/in/x")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    // A comes back: its heartbeat is written but renews nothing; it sees B.
    let back = beat(&store, &g, &a, ia).await;
    assert_eq!(back.term, Term(2));
    assert!(back.holder_is(&b, ib));

    // B stops gracefully: the token is free at once, B's heartbeat row is gone.
    let fence_b = Fence {
        group: g.clone(),
        member: b.clone(),
        incarnation: ib,
        term: Term(2),
    };
    store.release(&fence_b).await.unwrap();
    store.release(&fence_b).await.unwrap(); // releasing again is not an error
    let free = beat(&store, &g, &a, ia).await;
    assert_eq!((free.term, free.holder), (Term(2), None));
    let members = store.members(&g).await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.member.clone()).collect::<Vec<_>>(),
        vec![a.clone()]
    );
    assert_eq!(
        take(&store, &g, &a, ia, Term(2)).await,
        TakeoverOutcome::Won(Term(3))
    );
    // A released token is not revived by the old holder's heartbeat.
    let err = store
        .claim(&fence_b, &[version("/in/y")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }));

    // leave removes only the member's own incarnation's row.
    store.leave(&g, &a, Incarnation(1)).await.unwrap();
    assert_eq!(store.members(&g).await.unwrap().len(), 1);
    store.leave(&g, &a, ia).await.unwrap();
    assert!(store.members(&g).await.unwrap().is_empty());
}

#[tokio::test]
async fn second_incarnation_of_a_member_is_held_off_while_the_first_lives() {
    let store = shared_store().await;
    let g = group("dup");
    let m = member("twin");
    let (first, second) = (Incarnation(11), Incarnation(u64::MAX - 3));
    assert_eq!(beat(&store, &g, &m, first).await.own_row, OwnRow::Written);
    let refused = beat(&store, &g, &m, second).await;
    assert_eq!(refused.own_row, OwnRow::HeldByOther(first));
    let listed = store.members(&g).await.unwrap();
    assert_eq!(listed[0].incarnation, first);
    // The first process dies: the second one takes the row over.
    age_heartbeat(&g, &m).await;
    assert_eq!(beat(&store, &g, &m, second).await.own_row, OwnRow::Written);
    assert_eq!(
        beat(&store, &g, &m, first).await.own_row,
        OwnRow::HeldByOther(second)
    );
}

#[tokio::test]
async fn ledger_claims_records_and_fences() {
    let store = shared_store().await;
    let g = group("ledger");
    let (m, i) = (member("leader"), incarnation());
    beat(&store, &g, &m, i).await;
    assert_eq!(
        take(&store, &g, &m, i, Term(0)).await,
        TakeoverOutcome::Won(Term(1))
    );
    let fence = Fence {
        group: g.clone(),
        member: m.clone(),
        incarnation: i,
        term: Term(1),
    };
    let long = format!("/in/{}", "é".repeat(2000)); // 4004 bytes
    let (a, b, c) = (version("/in/a"), version(&long), version("/in/new\nline"));

    let first = store
        .claim(&fence, &[a.clone(), b.clone(), a.clone()])
        .await
        .unwrap();
    let claimed_once = ClaimOutcome::Claimed {
        attempt: 1,
        redelivery: false,
    };
    assert_eq!(first, vec![claimed_once.clone(); 3]);
    // Claimed and never finished: redelivered with the next attempt.
    let again = store.claim(&fence, std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(
        again,
        vec![ClaimOutcome::Claimed {
            attempt: 2,
            redelivery: true
        }]
    );
    store
        .record(
            &fence,
            &[
                LedgerUpdate::Set {
                    version: a.clone(),
                    state: LedgerState::Handled,
                    error: None,
                    detail: None,
                },
                LedgerUpdate::Set {
                    version: b.clone(),
                    state: LedgerState::Failed,
                    error: Some("boom".into()),
                    detail: None,
                },
                LedgerUpdate::Set {
                    version: c.clone(),
                    state: LedgerState::Done,
                    error: None,
                    detail: None,
                },
            ],
        )
        .await
        .unwrap();
    let after = store
        .claim(&fence, &[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    assert_eq!(
        after,
        vec![
            ClaimOutcome::Settled,
            ClaimOutcome::Claimed {
                attempt: 3,
                redelivery: false
            },
            ClaimOutcome::Settled,
        ]
    );
    let all = [a.clone(), b.clone(), c.clone()];
    let mut ledger = store.lookup_ledger(&g, &all).await.unwrap();
    ledger.sort_by(|x, y| x.version.path.cmp(&y.version.path));
    assert_eq!(ledger.len(), 3);
    let open = store.load_ledger(&g).await.unwrap();
    assert_eq!(
        open.len(),
        2,
        "the load takes the rows with work left: {open:?}"
    );
    let by_path = |p: &str| ledger.iter().find(|r| r.version.path == p).unwrap().clone();
    assert_eq!(by_path("/in/a").state, LedgerState::Handled);
    assert_eq!(by_path(&long).state, LedgerState::Claimed);
    assert_eq!(by_path(&long).attempts, 3);
    assert_eq!(by_path(&long).last_error.as_deref(), Some("boom"));
    assert_eq!(by_path("/in/new\nline").version, c);
    assert_eq!(by_path("/in/new\nline").attempts, 0);

    // A stale fence writes nothing.
    let stale = Fence {
        term: Term(7),
        ..fence.clone()
    };
    let err = store
        .record(&stale, &[LedgerUpdate::Forget(a.clone())])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Fenced {
                operation: "record",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.lookup_ledger(&g, &all).await.unwrap().len(), 3);
    // Forget deletes.
    store
        .record(&fence, &[LedgerUpdate::Forget(a.clone())])
        .await
        .unwrap();
    assert!(
        store
            .lookup_ledger(&g, &all)
            .await
            .unwrap()
            .iter()
            .all(|r| r.version != a)
    );
    // Another group's ledger is separate.
    assert!(
        store
            .lookup_ledger(&group("other"), &all)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takeovers_have_one_winner_per_term() {
    // Separate stores (separate pools and connections), as separate processes would be.
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(shared_store().await);
    }
    let g = group("race");
    let mut term = Term(0);
    for round in 0..5 {
        let attempts = stores.iter().enumerate().map(|(n, store)| {
            let g = g.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let m = member(&format!("c{n}"));
                take(&store, &g, &m, Incarnation(n as u64 + 1), term).await
            })
        });
        let mut winners = Vec::new();
        for handle in attempts.collect::<Vec<_>>() {
            if let TakeoverOutcome::Won(t) = handle.await.unwrap() {
                winners.push(t);
            }
        }
        assert_eq!(winners, vec![term.next()], "round {round}");
        term = term.next();
        age_lease(&g).await;
    }
}

/// Statements per steady-state tick, counted by the store (prepares included).
#[tokio::test]
async fn a_steady_state_tick_is_one_round_trip() {
    shared_store().await;
    let one_connection = |_: ()| PgSettings {
        pool_size: 1,
        ..settings("coord_pg_shared")
    };
    let leader = PgStore::connect(one_connection(())).await.unwrap();
    let standby = PgStore::connect(one_connection(())).await.unwrap();
    let g = group("ticks");
    let (l, il) = (member("leader"), incarnation());
    let (s, is) = (member("standby"), Incarnation(il.0 ^ 1));
    beat(&leader, &g, &l, il).await;
    take(&leader, &g, &l, il, Term(0)).await;
    beat(&standby, &g, &s, is).await;
    for (name, store, m, i) in [("leader", &leader, &l, il), ("standby", &standby, &s, is)] {
        let before = store.round_trips();
        for _ in 0..10 {
            beat(store, &g, m, i).await;
        }
        let per_tick = (store.round_trips() - before) as f64 / 10.0;
        println!("{name}: {per_tick} round trips per steady-state tick");
        assert_eq!(per_tick, 1.0, "{name}");
    }
    // A takeover is one more.
    age_lease(&g).await;
    let before = standby.round_trips();
    assert_eq!(
        take(&standby, &g, &s, is, Term(1)).await,
        TakeoverOutcome::Won(Term(2))
    );
    let takeover = standby.round_trips() - before;
    println!("takeover: {takeover} round trips (first use prepares the statement)");
    assert!(takeover <= 2);
}

/// A takeover commits while the holder's heartbeat waits on the token row: the heartbeat's
/// snapshot still shows the old holder, but the renewal matched nothing, so the observation
/// must not name the old holder (it would be taken for an acknowledged renewal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_loses_to_a_concurrent_takeover_is_not_reported_as_held() {
    let store = shared_store().await;
    let g = group("renew-race");
    let (a, ia) = (member("a"), incarnation());
    beat(&store, &g, &a, ia).await;
    assert_eq!(
        take(&store, &g, &a, ia, Term(0)).await,
        TakeoverOutcome::Won(Term(1))
    );

    let mut admin = admin().await;
    let tx = admin.transaction().await.unwrap();
    let admin_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tx.execute(
        "UPDATE coord_pg_shared.token_holder
         SET task_id = 'z', incarnation = 99, term = 2,
             renewed_at = clock_timestamp() AT TIME ZONE 'UTC'
         WHERE group_id = $1",
        &[&g.as_str()],
    )
    .await
    .unwrap();
    let heartbeat = tokio::spawn({
        let (store, g, a) = (store.clone(), g.clone(), a.clone());
        async move { beat(&store, &g, &a, ia).await }
    });
    wait_until_blocked_by(&tx, admin_pid, &heartbeat).await;
    tx.commit().await.unwrap();
    let raced = heartbeat.await.unwrap();
    assert_eq!(raced.own_row, OwnRow::Written);
    assert!(!raced.holder_is(&a, ia), "{raced:?}");
    let after = beat(&store, &g, &a, ia).await;
    assert_eq!(after.term, Term(2));
    assert_eq!(after.holder.unwrap().member, member("z"));
}

/// Waits (on the server's own lock table, not a timer) until some backend waits on `pid`, or
/// until `task` finished without waiting (the assertions after it then fail).
async fn wait_until_blocked_by<T>(
    tx: &tokio_postgres::Transaction<'_>,
    pid: i32,
    task: &tokio::task::JoinHandle<T>,
) {
    while !task.is_finished() {
        let blocked: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if blocked > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A ledger write racing a takeover: the fence's row lock orders them, and the write that
/// comes second sees the new term and is fenced (nothing written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_racing_a_takeover_is_fenced() {
    let store = shared_store().await;
    let g = group("fence-race");
    let (a, ia) = (member("a"), incarnation());
    beat(&store, &g, &a, ia).await;
    assert_eq!(
        take(&store, &g, &a, ia, Term(0)).await,
        TakeoverOutcome::Won(Term(1))
    );
    let fence = Fence {
        group: g.clone(),
        member: a.clone(),
        incarnation: ia,
        term: Term(1),
    };

    let mut admin = admin().await;
    let tx = admin.transaction().await.unwrap();
    let admin_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tx.execute(
        "UPDATE coord_pg_shared.token_holder SET task_id = 'z', incarnation = 99, term = 2
         WHERE group_id = $1",
        &[&g.as_str()],
    )
    .await
    .unwrap();
    let claim = tokio::spawn({
        let (store, fence) = (store.clone(), fence.clone());
        async move { store.claim(&fence, &[version("/in/raced")]).await }
    });
    wait_until_blocked_by(&tx, admin_pid, &claim).await;
    tx.commit().await.unwrap();
    let err = claim.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Fenced {
                operation: "claim",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.load_ledger(&g).await.unwrap().is_empty());
}

#[tokio::test]
async fn unstorable_versions_are_refused_up_front_and_errors_are_kept() {
    let store = shared_store().await;
    let g = group("unstorable");
    let (m, i) = (member("leader"), incarnation());
    beat(&store, &g, &m, i).await;
    take(&store, &g, &m, i, Term(0)).await;
    let fence = Fence {
        group: g.clone(),
        member: m,
        incarnation: i,
        term: Term(1),
    };
    for (bad, needle) in [
        (version(&format!("/{}", "x".repeat(4096))), "4097 bytes"),
        (version("/in/nul\0byte"), "NUL"),
        (
            FileVersion {
                size: u64::MAX,
                ..version("/in/huge")
            },
            "BIGINT",
        ),
    ] {
        let err = store
            .claim(&fence, &[version("/in/fine"), bad])
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Rejected {
                    operation: "claim",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(store.load_ledger(&g).await.unwrap().is_empty());
    // A handler error with a NUL byte is kept, readable.
    store
        .record(
            &fence,
            &[LedgerUpdate::Set {
                version: version("/in/fine"),
                state: LedgerState::Failed,
                error: Some("bad\0byte".into()),
                detail: None,
            }],
        )
        .await
        .unwrap();
    let ledger = store.load_ledger(&g).await.unwrap();
    assert_eq!(ledger[0].last_error.as_deref(), Some("bad\u{fffd}byte"));
}

/// A first poll of a large directory claims every version at once: it must fit in the
/// default statement timeout (2 s) on this small machine, or the leader could never start.
#[tokio::test]
async fn ten_thousand_versions_claim_and_record_within_the_default_timeout() {
    let store = shared_store().await;
    let g = group("bulk");
    let (m, i) = (member("leader"), incarnation());
    beat(&store, &g, &m, i).await;
    take(&store, &g, &m, i, Term(0)).await;
    let fence = Fence {
        group: g.clone(),
        member: m,
        incarnation: i,
        term: Term(1),
    };
    let versions: Vec<FileVersion> = (0..10_000)
        .map(|n| version(&format!("/in/bulk/file-{n:05}.csv")))
        .collect();
    let start = std::time::Instant::now();
    let claimed = store.claim(&fence, &versions).await.unwrap();
    let claim_took = start.elapsed();
    assert!(
        claimed
            .iter()
            .all(|c| matches!(c, ClaimOutcome::Claimed { attempt: 1, .. }))
    );
    let updates: Vec<LedgerUpdate> = versions
        .iter()
        .map(|v| LedgerUpdate::Set {
            version: v.clone(),
            state: LedgerState::Done,
            error: None,
            detail: None,
        })
        .collect();
    let start = std::time::Instant::now();
    store.record(&fence, &updates).await.unwrap();
    let record_took = start.elapsed();
    println!("10k claim: {claim_took:?}, 10k record: {record_took:?}");
    assert_eq!(
        store.lookup_ledger(&g, &versions).await.unwrap().len(),
        10_000
    );
    assert!(
        store.load_ledger(&g).await.unwrap().is_empty(),
        "nothing left to do"
    );
}
