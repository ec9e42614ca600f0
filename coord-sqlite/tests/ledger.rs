//! The ledger half of the trait: fenced claims and records, all or nothing, persisted across
//! stores.

mod common;

use common::*;
use coord_core::{
    ClaimOutcome, CoordinationStore, FileVersion, LedgerState, LedgerUpdate, StoreError, Term,
};

fn version(path: &str, size: u64) -> FileVersion {
    FileVersion {
        path: path.to_owned(),
        size,
        mtime_ms: 1_700_000_000_123,
    }
}

fn set(v: &FileVersion, state: LedgerState, error: Option<&str>) -> LedgerUpdate {
    LedgerUpdate::Set {
        version: v.clone(),
        state,
        error: error.map(str::to_owned),
        detail: None,
    }
}

const CLAIMED_FRESH: ClaimOutcome = ClaimOutcome::Claimed {
    attempt: 1,
    redelivery: false,
};

#[tokio::test]
async fn claims_follow_the_ledger_rules() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("claim"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let (new, failed, done, claimed) = (
        version("/in/new.csv", 10),
        version("/in/failed.csv", 20),
        version("/in/done.csv", 30),
        version("/in/claimed.csv", 40),
    );
    let first = store
        .claim(&f, &[failed.clone(), done.clone(), claimed.clone()])
        .await
        .unwrap();
    assert_eq!(first, vec![CLAIMED_FRESH; 3]);
    store
        .record(
            &f,
            &[
                set(&failed, LedgerState::Failed, Some("boom")),
                set(&done, LedgerState::Done, None),
            ],
        )
        .await
        .unwrap();

    let answers = store
        .claim(
            &f,
            &[new.clone(), failed.clone(), done.clone(), claimed.clone()],
        )
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            CLAIMED_FRESH,
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: false
            },
            ClaimOutcome::Settled,
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true
            },
        ]
    );
}

#[tokio::test]
async fn a_stale_fence_writes_nothing() {
    let db = TempDb::migrated().await;
    let (old, new) = (db.store().await, db.store().await);
    let (g, a, b) = (group("fenced"), member("a"), member("b"));
    old.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let stale = fence(&g, &a, 1, 1);
    let v = version("/in/x", 1);
    old.claim(&stale, std::slice::from_ref(&v)).await.unwrap();

    age_lease(&db, &g, 60_000).await;
    new.take_over(&take(&g, &b, 2, 1)).await.unwrap();

    let err = old
        .record(&stale, &[set(&v, LedgerState::Done, None)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { term: Term(1), .. }),
        "{err}"
    );
    let err = old.claim(&stale, &[version("/in/y", 2)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    // The same member under a wrong incarnation is fenced too.
    let err = new
        .claim(&fence(&g, &b, 3, 2), &[version("/in/y", 2)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");

    let records = new.load_ledger(&g).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, LedgerState::Claimed);
    // The new leader redelivers what the old one never finished.
    let answers = new
        .claim(&fence(&g, &b, 2, 2), std::slice::from_ref(&v))
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![ClaimOutcome::Claimed {
            attempt: 2,
            redelivery: true
        }]
    );
}

#[tokio::test]
async fn a_released_token_fences_its_old_holder() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("released"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    store.release(&f).await.unwrap();
    let err = store.claim(&f, &[version("/x", 1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
}

#[tokio::test]
async fn records_round_trip_through_another_store() {
    let db = TempDb::migrated().await;
    let (writer, reader) = (db.store().await, db.store().await);
    let (g, a) = (group("roundtrip"), member("a"));
    writer.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let odd = version(
        "/in/ünï cødé\nline two/'quoted'; DROP TABLE x;--.csv",
        u64::MAX >> 1,
    );
    let long = version(&format!("/in/{}", "d/".repeat(2000)), 5);
    let unknown = version("/in/never-claimed", 7);
    writer
        .claim(&f, &[odd.clone(), long.clone()])
        .await
        .unwrap();
    writer
        .record(
            &f,
            &[
                set(&odd, LedgerState::Error, Some("gave up: 'x'")),
                set(&long, LedgerState::Handled, None),
                set(&unknown, LedgerState::Done, None),
            ],
        )
        .await
        .unwrap();

    let all = [odd.clone(), long.clone(), unknown.clone()];
    let mut records = reader.lookup_ledger(&g, &all).await.unwrap();
    records.sort_by(|x, y| x.version.cmp(&y.version));
    assert_eq!(records.len(), 3);
    let open = reader.load_ledger(&g).await.unwrap();
    assert_eq!(
        open.iter().map(|r| &r.version).collect::<Vec<_>>(),
        [&long],
        "the load takes the rows with work left"
    );
    let by_path = |p: &str| records.iter().find(|r| r.version.path == p).unwrap();
    let r = by_path(&odd.path);
    assert_eq!(r.version, odd);
    assert_eq!(r.state, LedgerState::Error);
    assert_eq!(r.last_error.as_deref(), Some("gave up: 'x'"));
    assert_eq!((r.term, r.attempts), (Term(1), 1));
    assert_eq!(by_path(&long.path).state, LedgerState::Handled);
    assert_eq!(by_path(&unknown.path).attempts, 0);

    // Another version of the same path is a different row.
    let newer = FileVersion {
        size: 8,
        ..odd.clone()
    };
    assert_eq!(
        writer
            .claim(&f, std::slice::from_ref(&newer))
            .await
            .unwrap(),
        vec![CLAIMED_FRESH]
    );

    // Forget deletes; other groups are untouched.
    writer
        .record(&f, &[LedgerUpdate::Forget(long.clone())])
        .await
        .unwrap();
    let all = [odd.clone(), long.clone(), unknown.clone(), newer];
    assert_eq!(reader.lookup_ledger(&g, &all).await.unwrap().len(), 3);
    assert!(
        reader
            .lookup_ledger(&group("other"), &all)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_bad_update_in_a_batch_applies_nothing() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("atomic"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let ok = version("/in/ok", 1);
    let too_long = version(&"p".repeat(5000), 1);
    let err = store
        .record(
            &f,
            &[
                set(&ok, LedgerState::Done, None),
                set(&too_long, LedgerState::Done, None),
            ],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("5000 bytes"), "{err}");
    assert!(store.lookup_ledger(&g, &[ok]).await.unwrap().is_empty());
}

#[tokio::test]
#[tracing_test::traced_test]
async fn an_unknown_state_in_the_database_is_skipped_counted_and_logged() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("corrupt"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    store
        .claim(&f, &[version("/in/x", 1), version("/in/y", 1)])
        .await
        .unwrap();
    let mut conn = db.raw().await;
    exec(
        &mut conn,
        "UPDATE processed_file SET state = 'weird' WHERE path = '/in/x'",
    )
    .await;
    let loaded = store
        .lookup_ledger(&g, &[version("/in/x", 1), version("/in/y", 1)])
        .await
        .unwrap();
    let paths: Vec<&str> = loaded.iter().map(|r| r.version.path.as_str()).collect();
    assert_eq!(paths, ["/in/y"]);
    assert!(logs_contain(
        "skipped 1 undecodable processed_file row (left in place"
    ));
    assert!(logs_contain("unknown state \"weird\""));
    // The row is still there, and the claim statement settles its version.
    assert_eq!(
        store.claim(&f, &[version("/in/x", 1)]).await.unwrap(),
        [ClaimOutcome::Settled]
    );
}

#[tokio::test]
async fn a_statement_failing_mid_batch_rolls_back_the_whole_batch() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("rollback"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let mut conn = db.raw().await;
    exec(
        &mut conn,
        "CREATE TRIGGER refuse BEFORE INSERT ON processed_file WHEN NEW.path = '/in/bad' \
         BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END;",
    )
    .await;
    let err = store
        .claim(&f, &[version("/in/ok", 1), version("/in/bad", 1)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused by trigger"), "{err}");
    let err = store
        .record(
            &f,
            &[
                set(&version("/in/ok", 1), LedgerState::Done, None),
                set(&version("/in/bad", 1), LedgerState::Done, None),
            ],
        )
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let both = [version("/in/ok", 1), version("/in/bad", 1)];
    assert!(store.lookup_ledger(&g, &both).await.unwrap().is_empty());
    // The store is still usable afterwards (no transaction left open on a pooled connection).
    exec(&mut conn, "DROP TRIGGER refuse").await;
    assert_eq!(
        store.claim(&f, &[version("/in/ok", 1)]).await.unwrap(),
        vec![CLAIMED_FRESH]
    );
}

#[tokio::test]
async fn batches_keep_order_and_duplicates_are_claimed_once() {
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("order"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let (x, y) = (version("/in/x", 1), version("/in/y", 1));
    let answers = store
        .claim(&f, &[x.clone(), y.clone(), x.clone()])
        .await
        .unwrap();
    assert_eq!(answers, vec![CLAIMED_FRESH; 3]);
    let records = store.load_ledger(&g).await.unwrap();
    assert!(records.iter().all(|r| r.attempts == 1), "{records:?}");

    // Forget then set: the row exists; set then forget: it does not; the last set wins.
    store
        .record(
            &f,
            &[
                LedgerUpdate::Forget(x.clone()),
                set(&x, LedgerState::Failed, Some("first")),
                set(&x, LedgerState::Done, None),
                set(&y, LedgerState::Done, None),
                LedgerUpdate::Forget(y.clone()),
            ],
        )
        .await
        .unwrap();
    let records = store
        .lookup_ledger(&g, &[x.clone(), y.clone()])
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].version, x);
    assert_eq!(records[0].state, LedgerState::Done);
    assert_eq!(records[0].last_error, None);
}

/// A first listing of a big directory is claimed in one call within the statement timeout.
#[tokio::test]
async fn a_large_batch_is_claimed_and_recorded_whole() {
    const N: u64 = 20_000;
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("large"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let versions: Vec<_> = (0..N)
        .map(|i| version(&format!("/in/batch/file-{i:06}.csv"), i))
        .collect();
    let started = std::time::Instant::now();
    let answers = store.claim(&f, &versions).await.unwrap();
    let claimed = started.elapsed();
    assert_eq!(answers.len() as u64, N);
    assert!(answers.iter().all(|o| *o == CLAIMED_FRESH));
    let updates: Vec<_> = versions
        .iter()
        .map(|v| set(v, LedgerState::Done, None))
        .collect();
    let started = std::time::Instant::now();
    store.record(&f, &updates).await.unwrap();
    let recorded = started.elapsed();
    eprintln!("claim of {N}: {claimed:?}; record of {N}: {recorded:?}");
    let again = store.claim(&f, &versions).await.unwrap();
    assert!(again.iter().all(|o| *o == ClaimOutcome::Settled));
    assert_eq!(
        store.lookup_ledger(&g, &versions).await.unwrap().len() as u64,
        N
    );
    assert!(
        store.load_ledger(&g).await.unwrap().is_empty(),
        "nothing left to do"
    );
}

/// 50,000 new versions in one claim (chunks of 500 inside the store, each one call under its
/// own statement timeout), then loaded back in pages, with the default settings.
#[tokio::test]
async fn fifty_thousand_versions_are_claimed_in_one_call_and_loaded() {
    const N: u64 = 50_000;
    let db = TempDb::migrated().await;
    let store = db.store().await;
    let (g, a) = (group("fifty"), member("a"));
    store.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    let v = |i: u64| {
        version(
            &format!("/srv/ftp/inbound/partner-acme/invoice-{i:06}.csv"),
            i,
        )
    };
    let versions: Vec<_> = (0..N).map(v).collect();
    let started = std::time::Instant::now();
    let answers = store.claim(&f, &versions).await.unwrap();
    let claimed = started.elapsed();
    assert_eq!(answers.len() as u64, N);
    assert!(answers.iter().all(|o| *o == CLAIMED_FRESH));
    store
        .record(
            &f,
            &[
                set(&v(7), LedgerState::Done, None),
                set(&v(42), LedgerState::Failed, Some("boom")),
                LedgerUpdate::Forget(v(N - 1)),
            ],
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let loaded = store.load_ledger(&g).await.unwrap();
    let load = started.elapsed();
    eprintln!(
        "sqlite: claim of {N} new versions {claimed:?}, load of {} rows {load:?}",
        loaded.len()
    );
    // The load takes the rows with work left: all but the done one (and the forgotten).
    assert_eq!(loaded.len() as u64, N - 2);
    let mut paths: Vec<&str> = loaded.iter().map(|r| r.version.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len() as u64, N - 2, "every row exactly once");
    let find = |x: &FileVersion| loaded.iter().find(|r| &r.version == x);
    assert!(find(&v(7)).is_none(), "a done row is not loaded");
    let done = store.lookup_ledger(&g, &[v(7), v(N - 1)]).await.unwrap();
    assert_eq!(
        done.iter()
            .map(|r| (r.version.clone(), r.state))
            .collect::<Vec<_>>(),
        [(v(7), LedgerState::Done)],
        "looked up: the done row, and nothing of the forgotten one"
    );
    let failed = find(&v(42)).unwrap();
    assert_eq!(
        (failed.state, failed.attempts, failed.last_error.as_deref()),
        (LedgerState::Failed, 1, Some("boom"))
    );
    let row = find(&v(12_345)).unwrap();
    assert_eq!(
        (row.state, row.term, row.attempts),
        (LedgerState::Claimed, Term(1), 1)
    );
    assert!(find(&v(N - 1)).is_none());
    assert_eq!(
        store
            .claim(&f, &[v(42), v(7), v(N - 1), v(30_000)])
            .await
            .unwrap(),
        vec![
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: false
            },
            ClaimOutcome::Settled,
            CLAIMED_FRESH,
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true
            },
        ]
    );
}
