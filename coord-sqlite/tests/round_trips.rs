//! Calls into the engine per tick (DESIGN §2: one round trip per member per tick in the
//! steady state; takeover one more). Prints the figures; asserts the budget.

mod common;

use common::*;
use coord_core::{CoordinationStore, FileVersion, LedgerState, LedgerUpdate, TakeoverOutcome};

async fn calls<F: std::future::Future>(store: &coord_sqlite::SqliteStore, f: F) -> u64 {
    let before = store.round_trips();
    f.await;
    store.round_trips() - before
}

#[tokio::test]
async fn a_tick_is_one_call_for_leader_and_standby() {
    let db = TempDb::migrated().await;
    let (leader, standby) = (db.store().await, db.store().await);
    let (g, a, b) = (group("trips"), member("a"), member("b"));

    let first = calls(&leader, async {
        leader.heartbeat(&beat(&g, &a, 1)).await.unwrap();
    })
    .await;
    let takeover = calls(&leader, async {
        let won = leader.take_over(&take(&g, &a, 1, 0)).await.unwrap();
        assert!(matches!(won, TakeoverOutcome::Won(_)));
    })
    .await;
    let leader_tick = calls(&leader, async {
        for _ in 0..10 {
            let obs = leader.heartbeat(&beat(&g, &a, 1)).await.unwrap();
            assert!(obs.holder_is(&a, coord_core::Incarnation(1)));
        }
    })
    .await;
    let standby_tick = calls(&standby, async {
        for _ in 0..10 {
            standby.heartbeat(&beat(&g, &b, 2)).await.unwrap();
        }
    })
    .await;
    let f = fence(&g, &a, 1, 1);
    let versions: Vec<_> = (0..10)
        .map(|i| FileVersion {
            path: format!("/in/{i}"),
            size: i,
            mtime_ms: 0,
        })
        .collect();
    let claim = calls(&leader, async {
        leader.claim(&f, &versions).await.unwrap();
    })
    .await;
    let updates: Vec<_> = versions
        .iter()
        .map(|v| LedgerUpdate::Set {
            version: v.clone(),
            state: LedgerState::Done,
            error: None,
            detail: None,
        })
        .collect();
    let record = calls(&leader, async {
        leader.record(&f, &updates).await.unwrap();
    })
    .await;

    eprintln!("| operation                  | calls into SQLite |");
    eprintln!("|----------------------------|-------------------|");
    eprintln!("| first heartbeat            | {first:>17} |");
    eprintln!("| takeover                   | {takeover:>17} |");
    eprintln!("| leader tick (heartbeat)    | {:>17} |", leader_tick / 10);
    eprintln!("| standby tick (heartbeat)   | {:>17} |", standby_tick / 10);
    eprintln!("| claim of 10 versions       | {claim:>17} |");
    eprintln!("| record of 10 updates       | {record:>17} |");

    assert_eq!(first, 1);
    assert_eq!(takeover, 1);
    assert_eq!(leader_tick, 10, "one call per leader tick");
    assert_eq!(standby_tick, 10, "one call per standby tick");
    // A ledger chunk (up to 500 versions) is one batch: begin, fence and prior states, the
    // writes, commit, in one call, so no await happens while the write lock is held.
    assert_eq!(claim, 1);
    assert_eq!(record, 1);
}
