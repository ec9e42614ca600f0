//! Real separate processes on one file: this test binary re-runs itself as children that
//! race for the token, write under their term and release, over and over. SQLite's file
//! locks (not just one process's pools) must serialise them: one winner per term, terms
//! without gaps, every ledger row written under the term that won it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use coord_core::{
    CoordinationStore, FileVersion, GroupId, Incarnation, LedgerState, LedgerUpdate,
    TakeoverOutcome, Term,
};
use coord_sqlite::{SqliteSettings, SqliteStore};

const CHILD_DB: &str = "COORD_SQLITE_CHILD_DB";
const CHILD_NAME: &str = "COORD_SQLITE_CHILD_NAME";
const CHILDREN: usize = 4;
const ROUNDS: usize = 40;
const GROUP: &str = "processes";

fn round_version(term: Term) -> FileVersion {
    FileVersion {
        path: format!("/term/{}", term.0),
        size: term.0,
        mtime_ms: 0,
    }
}

/// The child's side; run only by the parent below (it sets the environment).
#[tokio::test]
#[ignore = "child process of separate_processes_elect_one_leader_per_term"]
async fn child_worker() {
    let (Ok(path), Ok(name)) = (std::env::var(CHILD_DB), std::env::var(CHILD_NAME)) else {
        // Run on its own (`--run-ignored all`): nothing to do, the parent test drives it.
        eprintln!(
            "child_worker: no {CHILD_DB}; only separate_processes_elect_one_leader_per_term runs it"
        );
        return;
    };
    let mut settings = SqliteSettings::new(path);
    // Generous waits: the children hammer one write lock on a shared, busy machine.
    settings.busy_timeout = Duration::from_secs(10);
    settings.statement_timeout = Duration::from_secs(10);
    let store = SqliteStore::connect(settings).await.unwrap();
    let g = GroupId::new(GROUP).unwrap();
    let me = member(&name);
    let incarnation = u64::from(std::process::id());
    for _ in 0..ROUNDS {
        let obs = store.heartbeat(&beat(&g, &me, incarnation)).await.unwrap();
        if obs.holder.is_some() {
            tokio::task::yield_now().await;
            continue;
        }
        let request = take(&g, &me, incarnation, obs.term.0);
        if let TakeoverOutcome::Won(term) = store.take_over(&request).await.unwrap() {
            let f = fence(&g, &me, incarnation, term.0);
            let v = round_version(term);
            store.claim(&f, std::slice::from_ref(&v)).await.unwrap();
            let done = LedgerUpdate::Set {
                version: v,
                state: LedgerState::Done,
                error: None,
                detail: None,
            };
            store.record(&f, &[done]).await.unwrap();
            println!("WON {}", term.0);
            store.release(&f).await.unwrap();
        }
    }
    store
        .leave(&g, &me, Incarnation(incarnation))
        .await
        .unwrap();
}

#[tokio::test]
async fn separate_processes_elect_one_leader_per_term() {
    let db = TempDb::migrated().await;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            tokio::process::Command::new(&exe)
                .args(["child_worker", "--exact", "--ignored", "--nocapture"])
                .env(CHILD_DB, &db.file)
                .env(CHILD_NAME, format!("proc-{i}"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut won = Vec::new();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        won.extend(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("WON "))
                .map(|t| t.parse::<u64>().unwrap()),
        );
    }
    let distinct: BTreeSet<u64> = won.iter().copied().collect();
    assert_eq!(distinct.len(), won.len(), "a term won twice: {won:?}");
    let n = won.len() as u64;
    assert!(n >= ROUNDS as u64 / 2, "too few takeovers: {n}");
    assert_eq!(distinct, (1..=n).collect(), "terms must have no gaps");
    eprintln!("{CHILDREN} processes, {n} takeovers, one winner each");

    let store = db.store().await;
    let g = GroupId::new(GROUP).unwrap();
    let rounds: Vec<_> = (1..=n).map(|t| round_version(Term(t))).collect();
    let ledger = store.lookup_ledger(&g, &rounds).await.unwrap();
    assert_eq!(ledger.len() as u64, n);
    for record in &ledger {
        assert_eq!(record.version, round_version(record.term));
        assert_eq!(record.state, LedgerState::Done);
        assert_eq!(record.attempts, 1);
    }
    let obs = store
        .heartbeat(&beat(&g, &member("observer"), 1))
        .await
        .unwrap();
    assert_eq!(obs.term, Term(n));
    assert_eq!(obs.holder, None);
}
