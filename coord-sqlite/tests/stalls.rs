//! A process stalled between two awaits of a claim or record (its runtime starved, the
//! future not polled, or the process stopped there) must not be holding SQLite's write lock:
//! every other process's heartbeat and takeover needs it, and no server would ever take it
//! back. The claim and record chunks are each one call into the engine (begin, fence, writes,
//! commit in one batch), so at every point where the future waits, the lock is free.
//!
//! "Stopped in the middle of the engine's call" is not something a test can arrange; what is
//! shown here is the property that matters: claim and record never hold the write lock
//! across an await.

mod common;

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::*;
use coord_core::{
    ClaimOutcome, CoordinationStore, FileVersion, LedgerState, LedgerUpdate, TakeoverOutcome,
};

/// Polls `fut` to the end, but after every `Pending` leaves it unpolled for `pause` (this
/// task "stopped" between two awaits) and runs `check` meanwhile. Returns the output and how
/// many pauses there were.
async fn drive_with_pauses<F: Future>(
    fut: F,
    pause: Duration,
    mut check: impl AsyncFnMut(),
) -> (F::Output, usize) {
    let mut fut = std::pin::pin!(fut);
    let mut pauses = 0;
    loop {
        let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        match polled {
            Poll::Ready(out) => return (out, pauses),
            Poll::Pending => {
                pauses += 1;
                tokio::time::sleep(pause).await;
                check().await;
            }
        }
    }
}

fn version(i: u64) -> FileVersion {
    FileVersion {
        path: format!("/in/stall/file-{i:05}.csv"),
        size: i,
        mtime_ms: 1_700_000_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_and_record_hold_no_write_lock_while_waiting() {
    let db = TempDb::migrated().await;
    // The leader and, as another process would have, a standby with its own pool.
    let (leader, standby) = (db.store().await, db.store().await);
    let (g, a, b) = (group("stall"), member("a"), member("b"));
    leader.take_over(&take(&g, &a, 1, 0)).await.unwrap();
    let f = fence(&g, &a, 1, 1);
    // Three chunks.
    let versions: Vec<FileVersion> = (0..1_200).map(version).collect();

    let mut slowest = Duration::ZERO;
    let mut check = async || {
        let started = Instant::now();
        let beat = standby.heartbeat(&beat(&g, &b, 2)).await;
        slowest = slowest.max(started.elapsed());
        assert!(
            beat.is_ok(),
            "the standby cannot write while the leader waits: {beat:?}"
        );
    };
    let (answers, claim_pauses) = drive_with_pauses(
        leader.claim(&f, &versions),
        Duration::from_millis(30),
        &mut check,
    )
    .await;
    let answers = answers.unwrap();
    assert_eq!(answers.len(), versions.len());
    assert!(
        answers
            .iter()
            .all(|o| matches!(o, ClaimOutcome::Claimed { attempt: 1, .. }))
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
    let (recorded, record_pauses) = drive_with_pauses(
        leader.record(&f, &updates),
        Duration::from_millis(30),
        &mut check,
    )
    .await;
    recorded.unwrap();
    eprintln!(
        "claim: {claim_pauses} pauses, record: {record_pauses} pauses; slowest standby \
         heartbeat meanwhile {slowest:?}"
    );
    assert!(
        claim_pauses >= 3 && record_pauses >= 3,
        "every chunk awaited"
    );
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");

    // And a takeover while the leader's claim waits: the standby wins at once; the stalled
    // claim, resumed, is fenced from the chunk that had not started yet.
    // (A call into the engine may also finish before the future is polled again, leaving
    // no pause to act in: then claim again, a few times.)
    let mut took = None;
    let mut late = None;
    for _ in 0..5 {
        let (answers, _) = drive_with_pauses(
            leader.claim(&f, &versions),
            Duration::from_millis(30),
            async || {
                if took.is_none() {
                    let started = Instant::now();
                    let mut request = take(&g, &b, 2, 1);
                    request.liveness_timeout = Duration::ZERO;
                    let won = standby.take_over(&request).await;
                    took = Some((won, started.elapsed()));
                }
            },
        )
        .await;
        late = Some(answers);
        if took.is_some() {
            break;
        }
    }
    let late = late.expect("claimed at least once");
    let (won, latency) = took.expect("the claim paused at least once in five tries");
    eprintln!("takeover while the leader's claim waits: {won:?} in {latency:?}");
    assert_eq!(won.unwrap(), TakeoverOutcome::Won(coord_core::Term(2)));
    assert!(latency < Duration::from_millis(500), "{latency:?}");
    // Every version is settled (recorded done), so the answers say so, or the claim was
    // fenced at its first chunk sent after the takeover.
    match late {
        Ok(answers) => assert!(answers.iter().all(|o| *o == ClaimOutcome::Settled)),
        Err(e) => assert!(matches!(e, coord_core::StoreError::Fenced { .. }), "{e:?}"),
    }
}
