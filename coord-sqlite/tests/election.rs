//! The election half of the trait on real SQLite files: heartbeat, takeover, release, leave,
//! members; several stores (separate pools) on one file, as separate processes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use coord_core::{CoordinationStore, Incarnation, OwnRow, TakeoverOutcome, Term};

#[tokio::test]
async fn first_member_takes_the_token_and_renews_it() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("first"), member("a"));

    let obs = store.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    assert_eq!(obs.own_row, OwnRow::Written);
    assert_eq!(obs.term, Term(0));
    assert_eq!(obs.holder, None);

    assert_eq!(
        store.take_over(&take(&g, &a, 1, 0)).await.unwrap(),
        TakeoverOutcome::Won(Term(1))
    );
    age_lease(&db, &g, 3_000).await;
    let obs = store.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    assert!(obs.holder_is(&a, Incarnation(1)));
    assert_eq!(obs.term, Term(1));
    // The heartbeat renewed the lease: its age is back near zero, not 3 s.
    let age = obs.holder.unwrap().lease_age;
    assert!(age < Duration::from_secs(1), "lease age {age:?}");
}

#[tokio::test]
async fn a_fresh_holder_keeps_the_token_and_a_stale_one_loses_it() {
    let db = TempDb::migrated().await;
    let (leader, standby) = (db.store().await, db.store().await);
    let (g, a, b) = (group("stale"), member("a"), member("b"));
    leader.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    leader.take_over(&take(&g, &a, 1, 0)).await.unwrap();

    let obs = standby.heartbeat(&beat(&g, &b, 2)).await.unwrap();
    assert_eq!(obs.own_row, OwnRow::Written);
    assert_eq!(obs.holder.as_ref().unwrap().member, a);
    assert_eq!(
        standby.take_over(&take(&g, &b, 2, 1)).await.unwrap(),
        TakeoverOutcome::Lost,
        "the holder renewed within the liveness timeout"
    );

    age_lease(&db, &g, 6_000).await;
    let obs = standby.heartbeat(&beat(&g, &b, 2)).await.unwrap();
    assert!(obs.holder.as_ref().unwrap().lease_age > LIVENESS);
    // A wrong observed term loses even against a stale holder.
    assert_eq!(
        standby.take_over(&take(&g, &b, 2, 7)).await.unwrap(),
        TakeoverOutcome::Lost
    );
    assert_eq!(
        standby.take_over(&take(&g, &b, 2, 1)).await.unwrap(),
        TakeoverOutcome::Won(Term(2))
    );
    // The old leader's next heartbeat shows it lost: no renewal of someone else's lease.
    let obs = leader.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    assert_eq!(obs.term, Term(2));
    assert!(obs.holder_is(&b, Incarnation(2)));
}

#[tokio::test]
async fn a_second_live_process_with_the_same_member_id_is_refused() {
    let db = TempDb::migrated().await;
    let (first, second) = (db.store().await, db.store().await);
    let (g, a) = (group("dup"), member("a"));
    first.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    first.take_over(&take(&g, &a, 1, 0)).await.unwrap();

    let obs = second.heartbeat(&beat(&g, &a, 2)).await.unwrap();
    assert_eq!(obs.own_row, OwnRow::HeldByOther(Incarnation(1)));
    // A refused heartbeat renews nothing and the holder stays the first process.
    assert!(obs.holder_is(&a, Incarnation(1)));

    // Once the first process has been silent past the liveness timeout, the row is replaced.
    age_heartbeat(&db, &g, &a, 6_000).await;
    let obs = second.heartbeat(&beat(&g, &a, 2)).await.unwrap();
    assert_eq!(obs.own_row, OwnRow::Written);
    let members = second.members(&g).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].incarnation, Incarnation(2));
}

#[tokio::test]
async fn incarnations_use_all_64_bits() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("bits"), member("a"));
    let big = u64::MAX - 5;
    store.heartbeat(&beat(&g, &a, big)).await.unwrap();
    store.take_over(&take(&g, &a, big, 0)).await.unwrap();
    let obs = store.heartbeat(&beat(&g, &a, big)).await.unwrap();
    assert_eq!(obs.own_row, OwnRow::Written);
    assert!(obs.holder_is(&a, Incarnation(big)));
}

#[tokio::test]
async fn release_hands_over_without_waiting_and_keeps_the_term() {
    let db = TempDb::migrated().await;
    let (leader, standby) = (db.store().await, db.store().await);
    let (g, a, b) = (group("release"), member("a"), member("b"));
    leader.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    leader.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    standby.heartbeat(&beat(&g, &b, 2)).await.unwrap();

    leader.release(&fence(&g, &a, 1, 1)).await.unwrap();
    let obs = standby.heartbeat(&beat(&g, &b, 2)).await.unwrap();
    assert_eq!(obs.term, Term(1));
    assert_eq!(obs.holder, None);
    let members: Vec<_> = standby
        .members(&g)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.member)
        .collect();
    assert_eq!(
        members,
        vec![b.clone()],
        "the leader's heartbeat row is gone"
    );

    assert_eq!(
        standby.take_over(&take(&g, &b, 2, 1)).await.unwrap(),
        TakeoverOutcome::Won(Term(2))
    );
    // Releasing a token one no longer holds is not an error and changes nothing.
    leader.release(&fence(&g, &a, 1, 1)).await.unwrap();
    let obs = standby.heartbeat(&beat(&g, &b, 2)).await.unwrap();
    assert!(obs.holder_is(&b, Incarnation(2)));
}

#[tokio::test]
async fn leave_deletes_only_the_own_incarnation() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("leave"), member("a"));
    store.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    store.leave(&g, &a, Incarnation(99)).await.unwrap();
    assert_eq!(store.members(&g).await.unwrap().len(), 1);
    store.leave(&g, &a, Incarnation(1)).await.unwrap();
    assert!(store.members(&g).await.unwrap().is_empty());
}

/// Many candidates, each with its own pool, observe the same term and race: exactly one wins
/// each round, and the winners' terms go up by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takeovers_have_one_winner_per_term() {
    let db = TempDb::migrated().await;
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(db.store().await);
    }
    let g = group("race");
    for round in 0..10u64 {
        if round > 0 {
            age_lease(&db, &g, 60_000).await;
        }
        let tasks: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let store = store.clone();
                let request = take(&g, &member(&format!("m{i}")), i as u64 + 1, round);
                tokio::spawn(async move { store.take_over(&request).await })
            })
            .collect();
        let mut winners = HashSet::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if let TakeoverOutcome::Won(term) = task.await.unwrap().unwrap() {
                assert_eq!(term, Term(round + 1));
                winners.insert(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
    }
}
