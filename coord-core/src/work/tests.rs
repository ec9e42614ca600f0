use super::*;
use crate::ids::{GroupId, Incarnation, MemberId, Term};
use std::time::Duration;

use crate::ledger::{Dispatch, RetryPolicy, Stability};

fn fence(term: u64) -> Fence {
    Fence {
        group: GroupId::new("g").unwrap(),
        member: MemberId::new("m").unwrap(),
        incarnation: Incarnation(1),
        term: Term(term),
    }
}

fn v(path: &str, size: u64) -> FileVersion {
    FileVersion {
        path: path.into(),
        size,
        mtime_ms: 1000,
    }
}

fn listed(versions: &[FileVersion]) -> Vec<ListedFile> {
    versions
        .iter()
        .map(|v| ListedFile {
            version: v.clone(),
            name: v.path.rsplit('/').next().unwrap().into(),
        })
        .collect()
}

fn config() -> WorkConfig {
    let mut config = WorkConfig::new("/done", "/error");
    config.poll_interval = Duration::from_secs(1);
    // Claims for free slots only: the exact sequences below (claiming ahead has tests of
    // its own).
    config.claim_ahead = 0;
    // Every update written at once (group commit has a test of its own).
    config.record_delay = Duration::ZERO;
    config.policy.stability = Stability {
        unchanged_across_listings: false,
        ..Stability::default()
    };
    config
}

/// A worker that leads under term 1, has loaded `records` and prepared its folders.
fn leading(config: WorkConfig, records: Vec<LedgerRecord>) -> (Worker, Instant) {
    let t0 = Instant::now();
    let mut w = Worker::new(config);
    w.set_lease(t0, Some(&fence(1)));
    let Some(WorkAction::LoadLedger { op }) = w.poll_action(t0) else {
        panic!("load first")
    };
    w.handle_loaded(t0, op, Ok(records));
    let Some(WorkAction::File {
        op,
        file_op: FileOp::PrepareDirs(_),
    }) = w.poll_action(t0)
    else {
        panic!("folders next")
    };
    w.handle_file_op(t0, op, FileOpResult::Done(None));
    (w, t0)
}

/// Reports a listing, then answers its lookups (the store has no rows of the versions the
/// mirror did not hold) through the machine's own path.
fn handle_listed(w: &mut Worker, now: Instant, op: OpId, result: Result<Vec<ListedFile>, String>) {
    w.handle_listed(now, op, result);
    answer_lookups(w, now, Vec::new());
}

/// Answers the queued lookups with `rows`, as if one lookup had asked them all.
fn answer_lookups(w: &mut Worker, now: Instant, rows: Vec<LedgerRecord>) {
    let Some(term) = w.term.as_mut() else {
        return;
    };
    let asked: Vec<FileVersion> = term.lookups.drain(..).collect();
    if asked.is_empty() && term.store_calls.lookup.is_none() {
        return;
    }
    let op = OpId(u64::MAX);
    term.store_calls.lookup = Some((op, asked));
    w.handle_looked_up(now, op, Ok(rows));
}

fn expect_list(w: &mut Worker, now: Instant) -> OpId {
    match w.poll_action(now) {
        Some(WorkAction::List { op }) => op,
        other => panic!("expected a listing, got {other:?}"),
    }
}

fn expect_claim(w: &mut Worker, now: Instant) -> (OpId, Vec<FileVersion>) {
    match w.poll_action(now) {
        Some(WorkAction::Claim { op, versions, .. }) => (op, versions),
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn expect_record(w: &mut Worker, now: Instant) -> (OpId, Vec<LedgerUpdate>) {
    match w.poll_action(now) {
        Some(WorkAction::Record { op, updates, .. }) => (op, updates),
        other => panic!("expected a record, got {other:?}"),
    }
}

fn dispatches(w: &mut Worker, now: Instant) -> Vec<(HandlerId, Dispatch)> {
    let mut out = Vec::new();
    while let Some(action) = w.poll_action(now) {
        match action {
            WorkAction::Dispatch {
                handler, dispatch, ..
            } => out.push((handler, dispatch)),
            other => panic!("expected dispatches, got {other:?}"),
        }
    }
    out
}

fn events(w: &mut Worker) -> Vec<WorkEvent> {
    std::iter::from_fn(|| w.poll_event()).collect()
}

fn claimed(n: usize, attempt: u32) -> Vec<ClaimOutcome> {
    vec![
        ClaimOutcome::Claimed {
            attempt,
            redelivery: attempt > 1,
        };
        n
    ]
}

fn state(update: &LedgerUpdate) -> Option<LedgerState> {
    match update {
        LedgerUpdate::Set { state, .. } => Some(*state),
        LedgerUpdate::Forget(_) => None,
    }
}

fn record(version: FileVersion, state: LedgerState, attempts: u32) -> LedgerRecord {
    LedgerRecord {
        version,
        state,
        term: Term(1),
        attempts,
        last_error: None,
        detail: None,
    }
}

#[test]
fn one_file_goes_through_every_step_in_order() {
    let (mut w, t0) = leading(config(), vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![a.clone()]);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    assert_eq!(d.len(), 1);
    assert!(!d[0].1.redelivery);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(state(&updates[0]), Some(LedgerState::Handled));
    // Nothing is moved before the handled record is acknowledged.
    assert_eq!(w.poll_action(t0), None);
    w.handle_recorded(t0, op, Ok(()));
    let Some(WorkAction::File {
        op,
        file_op: FileOp::MoveToDone { version, dir },
    }) = w.poll_action(t0)
    else {
        panic!("move next")
    };
    assert_eq!((version, dir.as_str()), (a.clone(), "/done"));
    w.handle_file_op(t0, op, FileOpResult::Done(Some("/done/a".into())));
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(state(&updates[0]), Some(LedgerState::Done));
    w.handle_recorded(t0, op, Ok(()));
    let events: Vec<_> = std::iter::from_fn(|| w.poll_event()).collect();
    assert!(events.contains(&WorkEvent::Done(a)), "{events:?}");
    assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(1)));
}

#[test]
fn claims_are_bounded_by_free_handler_slots() {
    let mut c = config();
    c.max_in_flight = 3;
    let (mut w, t0) = leading(c, vec![]);
    let files: Vec<_> = (0..10).map(|i| v(&format!("/in/{i:02}"), 1)).collect();
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, versions) = expect_claim(&mut w, t0);
    assert_eq!(
        versions,
        files[..3].to_vec(),
        "in listing order, three at most"
    );
    w.handle_claimed(t0, op, Ok(claimed(3, 1)));
    let d = dispatches(&mut w, t0);
    assert_eq!(d.len(), 3);
    assert_eq!(w.running(), 3);
    // One finishes: its outcome is written, then exactly one more is claimed.
    w.handle_outcome(t0, d[0].0, Outcome::Failed("no".into()));
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Ok(()));
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![files[3].clone()]);
}

#[test]
fn losing_the_lease_cancels_every_running_handler_and_ignores_late_results() {
    let (mut w, t0) = leading(config(), vec![]);
    let files = [v("/in/a", 1), v("/in/b", 1)];
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(2, 1)));
    let d = dispatches(&mut w, t0);
    w.set_lease(t0, None);
    let mut cancelled = vec![w.poll_action(t0), w.poll_action(t0)];
    cancelled.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(
        cancelled,
        vec![
            Some(WorkAction::Cancel(d[0].0)),
            Some(WorkAction::Cancel(d[1].0))
        ]
    );
    assert_eq!(w.poll_action(t0), None);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    assert_eq!(w.poll_action(t0), None, "a late result writes nothing");
    // A new term starts from the store again.
    w.set_lease(t0, Some(&fence(2)));
    assert!(matches!(
        w.poll_action(t0),
        Some(WorkAction::LoadLedger { .. })
    ));
}

#[test]
fn a_fenced_write_ends_the_term() {
    let (mut w, t0) = leading(config(), vec![]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&[v("/in/a", 1), v("/in/b", 1)])));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(2, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Err(StoreError::fenced("record", &fence(1))));
    assert_eq!(w.poll_action(t0), Some(WorkAction::Cancel(d[1].0)));
    assert_eq!(w.poll_action(t0 + Duration::from_secs(9)), None);
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn a_handled_version_whose_source_is_gone_is_done_without_touching_the_new_file() {
    // The move of `a` v1 happened, its done record was lost with the term; a new `a` arrived.
    let a1 = v("/in/a", 1);
    let a2 = v("/in/a", 2);
    let (mut w, t0) = leading(config(), vec![record(a1.clone(), LedgerState::Handled, 1)]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a2))));
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(
        updates,
        vec![LedgerUpdate::Set {
            version: a1.clone(),
            state: LedgerState::Done,
            error: None,
            detail: None,
        }]
    );
    w.handle_recorded(t0, op, Ok(()));
    // The new version is claimed as new work, never moved as if it were v1.
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![a2]);
    let events: Vec<_> = std::iter::from_fn(|| w.poll_event()).collect();
    assert!(events.contains(&WorkEvent::SourceGone(a1)), "{events:?}");
}

#[test]
fn a_handled_version_still_listed_is_moved_again() {
    let a = v("/in/a", 1);
    let (mut w, t0) = leading(config(), vec![record(a.clone(), LedgerState::Handled, 1)]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let Some(WorkAction::File {
        op,
        file_op: FileOp::MoveToDone { version, .. },
    }) = w.poll_action(t0)
    else {
        panic!("the move is retried")
    };
    assert_eq!(version, a);
    // Not found any more: somebody (the old leader's late rename) moved it. Done.
    w.handle_file_op(t0, op, FileOpResult::SourceGone);
    let (_, updates) = expect_record(&mut w, t0);
    assert_eq!(state(&updates[0]), Some(LedgerState::Done));
}

#[test]
fn the_retry_budget_counts_redeliveries() {
    let mut c = config();
    c.policy.retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let a = v("/in/a", 1);
    // Two attempts were dispatched and never finished (the handler killed the process).
    let (mut w, t0) = leading(c, vec![record(a.clone(), LedgerState::Claimed, 2)]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(1, 3)));
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(
        state(&updates[0]),
        Some(LedgerState::Error),
        "not dispatched"
    );
    w.handle_recorded(t0, op, Ok(()));
    let Some(WorkAction::File {
        file_op: FileOp::MoveToError { version, .. },
        ..
    }) = w.poll_action(t0)
    else {
        panic!("to the error folder")
    };
    assert_eq!(version, a);
}

#[test]
fn a_done_version_that_comes_back_is_new_work_in_move_mode_only() {
    let a = v("/in/a", 1);
    let (mut w, t0) = leading(config(), vec![record(a.clone(), LedgerState::Done, 1)]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(updates, vec![LedgerUpdate::Forget(a.clone())]);
    w.handle_recorded(t0, op, Ok(()));
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![a.clone()]);

    let mut c = config();
    c.post_processing = PostProcessing::Leave;
    let (mut w, t0) = leading(c, vec![record(a.clone(), LedgerState::Done, 1)]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    assert_eq!(w.poll_action(t0), None);
    assert_eq!(w.poll_event(), Some(WorkEvent::Loaded { records: 1 }));
    assert_eq!(w.poll_event(), Some(WorkEvent::AlreadyDone(a)));
}

#[test]
fn a_listing_taken_before_the_move_does_not_reopen_the_version() {
    // Stability over two listings; the second listing is in flight while nothing else is.
    let a = v("/in/a", 1);
    let (mut w, t0) = leading(config(), vec![]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Ok(()));
    let Some(WorkAction::File { op, .. }) = w.poll_action(t0) else {
        panic!("move")
    };
    w.handle_file_op(t0, op, FileOpResult::Done(None));
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Ok(()));
    // The next listing no longer shows it; one after that does: it came back.
    let t1 = t0 + Duration::from_secs(1);
    let op = expect_list(&mut w, t1);
    handle_listed(&mut w, t1, op, Ok(vec![]));
    // The mirror no longer holds it (it left): its row is looked up when it comes back.
    assert!(!w.ledger().unwrap().tracks(&a));
    let t2 = t1 + Duration::from_secs(1);
    let op = expect_list(&mut w, t2);
    w.handle_listed(t2, op, Ok(listed(std::slice::from_ref(&a))));
    let Some(WorkAction::Lookup { op, versions }) = w.poll_action(t2) else {
        panic!("a version the mirror does not hold is looked up")
    };
    assert_eq!(versions, vec![a.clone()]);
    assert_eq!(w.poll_action(t2), None, "not claimed before the answer");
    w.handle_looked_up(t2, op, Ok(vec![record(a.clone(), LedgerState::Done, 1)]));
    let (_, updates) = expect_record(&mut w, t2);
    assert_eq!(updates, vec![LedgerUpdate::Forget(a)]);
}

#[test]
fn draining_finishes_running_work_and_starts_nothing_new() {
    let (mut w, t0) = leading(config(), vec![]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&[v("/in/a", 1), v("/in/b", 1)])));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(2, 1)));
    let d = dispatches(&mut w, t0);
    w.drain();
    assert!(!w.is_drained());
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    w.handle_outcome(t0, d[1].0, Outcome::Failed("x".into()));
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(updates.len(), 2, "outcomes are written in one batch");
    w.handle_recorded(t0, op, Ok(()));
    let Some(WorkAction::File { op, .. }) = w.poll_action(t0) else {
        panic!("the handled file is still moved")
    };
    w.handle_file_op(t0, op, FileOpResult::Done(None));
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Ok(()));
    assert_eq!(w.poll_action(t0 + Duration::from_secs(60)), None);
    assert!(w.is_drained());
}

#[test]
fn transient_store_failures_back_off_and_keep_the_writes() {
    let (mut w, t0) = leading(config(), vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (op, first) = expect_record(&mut w, t0);
    let down = StoreError::Unavailable {
        operation: "record",
        group: "g".into(),
        cause: "down".into(),
    };
    w.handle_recorded(t0, op, Err(down));
    assert_eq!(w.poll_action(t0), None, "backing off, and no move yet");
    assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(1)));
    let (_, again) = expect_record(&mut w, t0 + Duration::from_secs(1));
    assert_eq!(again, first);
}

#[test]
fn done_markers_are_removed_with_their_file() {
    let mut c = config();
    c.policy.stability.done_marker_suffix = Some(".done".into());
    let (mut w, t0) = leading(c, vec![]);
    let a = v("/in/a", 1);
    let marker = v("/in/a.done", 0);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&[a.clone(), marker])));
    let (op, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![a]);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Ok(()));
    let Some(WorkAction::File { op, .. }) = w.poll_action(t0) else {
        panic!("move")
    };
    w.handle_file_op(t0, op, FileOpResult::Done(None));
    // The done record and the marker's deletion follow.
    let mut saw_marker = false;
    while let Some(action) = w.poll_action(t0) {
        match action {
            WorkAction::File {
                op,
                file_op: FileOp::DeleteMarker(path),
            } => {
                assert_eq!(path, "/in/a.done");
                saw_marker = true;
                w.handle_file_op(t0, op, FileOpResult::Done(None));
            }
            WorkAction::Record { op, .. } => w.handle_recorded(t0, op, Ok(())),
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_marker);
}

#[test]
fn rows_of_files_that_left_are_pruned_whatever_their_state() {
    let mut c = config();
    c.policy.retention = Duration::from_secs(10);
    let records = vec![
        record(v("/in/claimed", 1), LedgerState::Claimed, 1),
        record(v("/in/failed", 1), LedgerState::Failed, 1),
        record(v("/in/handled", 1), LedgerState::Done, 1),
    ];
    let (mut w, t0) = leading(c, records);
    let t = t0 + Duration::from_secs(10);
    let op = expect_list(&mut w, t);
    handle_listed(&mut w, t, op, Ok(vec![]));
    // Rows with work left are forgotten by the mirror; the settled one left the mirror at
    // once (its file is not listed) and is forgotten by the walk over the store.
    let (op, updates) = expect_record(&mut w, t);
    assert_eq!(
        updates,
        vec![
            LedgerUpdate::Forget(v("/in/claimed", 1)),
            LedgerUpdate::Forget(v("/in/failed", 1))
        ]
    );
    w.handle_recorded(t, op, Ok(()));
    assert!(!w.ledger().unwrap().tracks(&v("/in/handled", 1)));
    assert_eq!(w.ledger().unwrap().len(), 0);
    let Some(WorkAction::FindStale {
        op,
        older_than,
        after: None,
        ..
    }) = w.poll_action(t)
    else {
        panic!("the retention walk starts after the first listing")
    };
    assert_eq!(older_than, Duration::from_secs(10));
    let stale = |path: &str| StaleRow {
        version: v(path, 1),
        updated_at_ms: 5,
    };
    // A stale row whose file is listed (a file left in place, say) is kept.
    w.term
        .as_mut()
        .unwrap()
        .listed
        .insert("/in/kept".into(), v("/in/kept", 1));
    w.handle_stale(t, op, Ok(vec![stale("/in/handled"), stale("/in/kept")]));
    let (_, updates) = expect_record(&mut w, t + Duration::from_secs(1));
    assert_eq!(updates, vec![LedgerUpdate::Forget(v("/in/handled", 1))]);
    // A short page ends the walk until the next one.
    assert_eq!(
        w.next_deadline().map(|d| d >= t + Duration::from_secs(600)),
        Some(false),
        "the listing comes first"
    );
}

#[test]
fn each_listing_reports_what_was_added_and_what_others_deleted() {
    let a = v("/in/a", 1);
    let b = v("/in/b", 1);
    let c = v("/in/c", 1);
    let (mut w, t0) = leading(config(), vec![record(c.clone(), LedgerState::Done, 1)]);
    let op = expect_list(&mut w, t0);
    handle_listed(
        &mut w,
        t0,
        op,
        Ok(listed(&[a.clone(), b.clone(), c.clone()])),
    );
    // The first listing of a term: what the ledger does not know (c is done already).
    assert!(events(&mut w).contains(&WorkEvent::Changes {
        added: vec![a.clone(), b.clone()],
        deleted: vec![]
    }));
    // Handle and move `a` (this member removes it); `b` is deleted by someone else.
    while let Some(action) = w.poll_action(t0) {
        match action {
            WorkAction::Claim { op, versions, .. } => {
                w.handle_claimed(t0, op, Ok(claimed(versions.len(), 1)))
            }
            WorkAction::Dispatch {
                handler, dispatch, ..
            } => {
                let outcome = if dispatch.version == a {
                    Outcome::Handled
                } else {
                    Outcome::Failed("later".into())
                };
                w.handle_outcome(t0, handler, outcome)
            }
            WorkAction::Record { op, .. } => w.handle_recorded(t0, op, Ok(())),
            WorkAction::File { op, .. } => w.handle_file_op(t0, op, FileOpResult::Done(None)),
            other => panic!("{other:?}"),
        }
    }
    let _ = events(&mut w);
    let t1 = t0 + Duration::from_secs(1);
    let op = expect_list(&mut w, t1);
    let a2 = v("/in/a", 2);
    handle_listed(&mut w, t1, op, Ok(listed(&[a2.clone(), c.clone()])));
    assert!(events(&mut w).contains(&WorkEvent::Changes {
        added: vec![a2],
        deleted: vec![b]
    }));
}

#[test]
fn an_operators_redrive_forgets_the_row_fenced_and_the_version_is_new_work() {
    let a = v("/in/a", 1);
    let (mut w, t0) = leading(config(), vec![record(a.clone(), LedgerState::Error, 5)]);
    assert!(w.redrive(t0, &a));
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(updates, vec![LedgerUpdate::Forget(a.clone())]);
    w.handle_recorded(t0, op, Ok(()));
    // Listed again (the operator moved it back): claimed as new work, attempt counting anew.
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![a.clone()]);
    // Without a term there is nothing to redrive.
    let mut idle = Worker::new(config());
    assert!(!idle.redrive(t0, &a));
}

#[test]
fn the_backlog_counts_listed_files_not_done_and_the_oldest_age() {
    let (a, b) = (v("/in/a", 1), v("/in/b", 2));
    // Leave mode: a done file stays listed and stays done (in move mode it would be new work).
    let mut c = config();
    c.post_processing = PostProcessing::Leave;
    let (mut w, t0) = leading(c, vec![record(a.clone(), LedgerState::Done, 1)]);
    assert_eq!(
        w.backlog(t0).map(|b| b.files),
        Some(0),
        "nothing listed yet"
    );
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&[a.clone(), b.clone()])));
    let later = t0 + Duration::from_secs(7);
    let backlog = w.backlog(later).unwrap();
    assert_eq!(backlog.files, 1, "a is done, b waits");
    assert_eq!(backlog.oldest_age, Duration::from_secs(7));
    let done = backlog
        .rows
        .iter()
        .find(|(s, _)| *s == Some(LedgerState::Done))
        .unwrap();
    assert_eq!(done.1, 1);
    assert!(
        Worker::new(config()).backlog(t0).is_none(),
        "no term, no backlog"
    );
}

#[test]
fn moves_run_side_by_side_and_beside_a_listing_but_never_two_to_one_name() {
    let mut c = config();
    c.max_in_flight = 6;
    c.max_file_ops = 3;
    let (mut w, t0) = leading(c, vec![]);
    // `/in/x/a` and `/in/y/a` would both go to `/done/a`.
    let files = [
        v("/in/x/a", 1),
        v("/in/y/a", 1),
        v("/in/b", 1),
        v("/in/c", 1),
        v("/in/d", 1),
        v("/in/e", 1),
    ];
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(files.len(), 1)));
    let d = dispatches(&mut w, t0);
    assert_eq!(d.len(), files.len());
    for (handler, _) in &d {
        w.handle_outcome(t0, *handler, Outcome::Handled);
    }
    let (op, updates) = expect_record(&mut w, t0);
    assert_eq!(updates.len(), files.len(), "outcomes written in one batch");
    w.handle_recorded(t0, op, Ok(()));

    // Past the next listing's time: the moves start, and the listing beside them (a busy
    // leader still sees new files).
    let later = t0 + Duration::from_secs(5);
    let mut moving = BTreeMap::new();
    let mut listing = None;
    while let Some(action) = w.poll_action(later) {
        match action {
            WorkAction::File {
                op,
                file_op: FileOp::MoveToDone { version, .. },
            } => {
                moving.insert(op, version);
            }
            WorkAction::List { op } => listing = Some(op),
            other => panic!("expected moves and a listing, got {other:?}"),
        }
    }
    let first: Vec<_> = moving.values().cloned().collect();
    assert_eq!(first.len(), 3, "three at once: {first:?}");
    let listing = listing.expect("a listing beside the moves");
    let mut done = Vec::new();
    let mut all_started = first.clone();
    let mut together_a = 0;
    while !moving.is_empty() {
        // Finish the oldest; its slot goes to the next that cannot collide.
        let (op, version) = moving.pop_first().unwrap();
        w.handle_file_op(later, op, FileOpResult::Done(None));
        done.push(version);
        while let Some(action) = w.poll_action(later) {
            match action {
                WorkAction::File {
                    op,
                    file_op: FileOp::MoveToDone { version, .. },
                } => {
                    if version.path.ends_with("/a")
                        && moving.values().any(|m| m.path.ends_with("/a"))
                    {
                        together_a += 1;
                    }
                    all_started.push(version.clone());
                    moving.insert(op, version);
                }
                WorkAction::Record { op, .. } => w.handle_recorded(later, op, Ok(())),
                other => panic!("expected moves and done records, got {other:?}"),
            }
            assert!(moving.len() <= 3);
        }
    }
    assert_eq!(together_a, 0, "two moves to /done/a at once");
    assert!(
        first.iter().filter(|f| f.path.ends_with("/a")).count() <= 1,
        "{first:?}"
    );
    let mut sorted = all_started.clone();
    sorted.sort();
    let mut expected = files.to_vec();
    expected.sort();
    assert_eq!(sorted, expected, "every file moved once");
    // The listing issued before the moves ended still shows every file: none of them is
    // work again, and none is reported deleted by others.
    let _ = events(&mut w);
    handle_listed(&mut w, later, listing, Ok(listed(&files)));
    while let Some(action) = w.poll_action(later) {
        match action {
            WorkAction::Record { op, .. } => w.handle_recorded(later, op, Ok(())),
            other => panic!("nothing to do after a stale listing, got {other:?}"),
        }
    }
    let seen = events(&mut w);
    assert!(
        !seen.iter().any(|e| matches!(e, WorkEvent::Reappeared(_))),
        "{seen:?}"
    );
    for f in &files {
        assert_eq!(
            w.ledger().unwrap().state(f),
            Some(LedgerState::Done),
            "{f:?}"
        );
    }
    // The next listing (the files are gone): still no deletion by others reported.
    let next = later + Duration::from_secs(5);
    let op = expect_list(&mut w, next);
    handle_listed(&mut w, next, op, Ok(vec![]));
    let seen = events(&mut w);
    assert!(
        !seen.iter().any(|e| matches!(e, WorkEvent::Changes { .. })),
        "{seen:?}"
    );
}

/// One file handled and recorded; past the next listing's time its move and that listing
/// are both started: (worker, file, that time, the move, the listing).
fn moving_beside_a_listing() -> (Worker, FileVersion, Instant, OpId, OpId) {
    let (mut w, t0) = leading(config(), vec![]);
    let f = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&f))));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (op, _) = expect_record(&mut w, t0);
    w.handle_recorded(t0, op, Ok(()));
    let later = t0 + Duration::from_secs(5);
    let (mut moving, mut listing) = (None, None);
    while let Some(action) = w.poll_action(later) {
        match action {
            WorkAction::File { op, .. } => moving = Some(op),
            WorkAction::List { op } => listing = Some(op),
            other => panic!("{other:?}"),
        }
    }
    (
        w,
        f,
        later,
        moving.expect("the move"),
        listing.expect("the listing beside it"),
    )
}

/// A listing issued before a move ended, answered after it but before the done record is
/// acknowledged, still shows the file: it is not work again (no reopening, no `Forget`).
#[test]
fn a_listing_older_than_a_move_does_not_reopen_it_while_its_done_record_is_written() {
    let (mut w, f, later, moving, listing) = moving_beside_a_listing();
    w.handle_file_op(later, moving, FileOpResult::Done(None));
    let (record_op, updates) = expect_record(&mut w, later);
    assert_eq!(updates.len(), 1, "{updates:?}");
    let _ = events(&mut w);
    // The done record is in flight; the older listing comes back with the file.
    handle_listed(&mut w, later, listing, Ok(listed(std::slice::from_ref(&f))));
    let seen = events(&mut w);
    assert!(
        !seen.iter().any(|e| matches!(e, WorkEvent::Reappeared(_))),
        "{seen:?}"
    );
    w.handle_recorded(later, record_op, Ok(()));
    assert_eq!(w.poll_action(later), None, "no Forget, no claim");
    assert_eq!(w.ledger().unwrap().state(&f), Some(LedgerState::Done));
}

/// A listing issued while a move runs may miss its file (the move got there first): that is
/// not a deletion by others, and the file, once moved, is done.
#[test]
fn a_listing_that_misses_a_file_being_moved_reports_no_deletion() {
    let (mut w, f, later, moving, listing) = moving_beside_a_listing();
    let _ = events(&mut w);
    handle_listed(&mut w, later, listing, Ok(vec![]));
    let seen = events(&mut w);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, WorkEvent::Changes { .. } | WorkEvent::SourceGone(_))),
        "{seen:?}"
    );
    w.handle_file_op(later, moving, FileOpResult::Done(None));
    let (op, updates) = expect_record(&mut w, later);
    assert!(
        matches!(
            &updates[..],
            [LedgerUpdate::Set {
                state: LedgerState::Done,
                ..
            }]
        ),
        "{updates:?}"
    );
    w.handle_recorded(later, op, Ok(()));
    assert_eq!(w.ledger().unwrap().state(&f), Some(LedgerState::Done));
}

#[test]
fn a_claim_goes_out_while_outcomes_are_being_written() {
    let mut c = config();
    c.max_in_flight = 2;
    let (mut w, t0) = leading(c, vec![]);
    let files: Vec<_> = (0..4).map(|i| v(&format!("/in/{i:02}"), 1)).collect();
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(2, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    // The record of the outcome and the claim for the freed slot, both at once.
    let (record_op, _) = expect_record(&mut w, t0);
    let (claim_op, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![files[2].clone()]);
    // The claim answers first: its file starts while the record is still in flight.
    w.handle_claimed(t0, claim_op, Ok(claimed(1, 1)));
    let d2 = dispatches(&mut w, t0);
    assert_eq!(d2.len(), 1);
    assert_eq!(d2[0].1.version, files[2]);
    // A second outcome waits for the record in flight (one record at a time); its slot's
    // claim does not.
    w.handle_outcome(t0, d[1].0, Outcome::Handled);
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![files[3].clone()]);
    assert_eq!(w.poll_action(t0), None);
    w.handle_recorded(t0, record_op, Ok(()));
    let mut next = Vec::new();
    while let Some(action) = w.poll_action(t0) {
        next.push(action);
    }
    assert!(
        next.iter()
            .any(|a| matches!(a, WorkAction::Record { updates, .. } if updates.len() == 1)),
        "{next:?}"
    );
    assert!(
        next.iter().any(|a| matches!(
            a,
            WorkAction::File { file_op: FileOp::MoveToDone { version, .. }, .. } if *version == files[0]
        )),
        "{next:?}"
    );
}

#[test]
fn claiming_ahead_starts_a_freed_slot_without_a_store_round_trip() {
    let mut c = config();
    c.max_in_flight = 2;
    c.claim_ahead = 2;
    let (mut w, t0) = leading(c, vec![]);
    let files: Vec<_> = (0..9).map(|i| v(&format!("/in/{i:02}"), 1)).collect();
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    // Two slots and two ahead: one claim of four.
    let (op, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, files[..4].to_vec());
    w.handle_claimed(t0, op, Ok(claimed(4, 1)));
    let d = dispatches(&mut w, t0);
    assert_eq!(d.len(), 2, "only as many handlers as slots");
    // A slot frees: the next claimed file starts at once, before any store call.
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let Some(WorkAction::Dispatch { dispatch, .. }) = w.poll_action(t0) else {
        panic!("the claimed file first")
    };
    assert_eq!(dispatch.version, files[2]);
    // Then the record; no claim yet: one slot of room is less than a batch of two.
    let (record_op, _) = expect_record(&mut w, t0);
    assert_eq!(w.poll_action(t0), None);
    w.handle_outcome(t0, d[1].0, Outcome::Handled);
    let Some(WorkAction::Dispatch { dispatch, .. }) = w.poll_action(t0) else {
        panic!("the last claimed file")
    };
    assert_eq!(dispatch.version, files[3]);
    // Two slots of room now: the next batch.
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, files[4..6].to_vec());
    w.handle_recorded(t0, record_op, Ok(()));
}

#[test]
fn claimed_files_not_started_are_given_up_when_the_term_ends_and_redelivered_after() {
    let mut c = config();
    c.max_in_flight = 1;
    c.claim_ahead = 2;
    let (mut w, t0) = leading(c.clone(), vec![]);
    let files: Vec<_> = (0..3).map(|i| v(&format!("/in/{i:02}"), 1)).collect();
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions.len(), 3);
    w.handle_claimed(t0, op, Ok(claimed(3, 1)));
    let d = dispatches(&mut w, t0);
    assert_eq!(d.len(), 1);
    // The lease ends: the running handler is cancelled, the two waiting are never started.
    w.set_lease(t0, None);
    assert!(matches!(w.poll_action(t0), Some(WorkAction::Cancel(_))));
    assert_eq!(w.poll_action(t0), None);
    // The next term finds all three claimed and redelivers them, attempts counted.
    let records = files
        .iter()
        .map(|f| record(f.clone(), LedgerState::Claimed, 1))
        .collect();
    let (mut w, t1) = leading(c, records);
    let op = expect_list(&mut w, t1);
    handle_listed(&mut w, t1, op, Ok(listed(&files)));
    let (op, versions) = expect_claim(&mut w, t1);
    assert_eq!(versions, files);
    w.handle_claimed(t1, op, Ok(claimed(3, 2)));
    let d = dispatches(&mut w, t1);
    assert!(d.iter().all(|(_, d)| d.redelivery && d.attempt == 2));
}

#[test]
fn a_claimed_file_that_left_the_folder_is_not_started() {
    let mut c = config();
    c.max_in_flight = 1;
    c.claim_ahead = 1;
    let (mut w, t0) = leading(c, vec![]);
    let files = [v("/in/a", 1), v("/in/b", 1)];
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(2, 1)));
    let d = dispatches(&mut w, t0);
    assert_eq!(d.len(), 1);
    // The next listing no longer shows b.
    let t1 = t0 + Duration::from_secs(1);
    let op = expect_list(&mut w, t1);
    handle_listed(&mut w, t1, op, Ok(listed(&files[..1])));
    w.handle_outcome(t1, d[0].0, Outcome::Handled);
    let mut actions = Vec::new();
    while let Some(action) = w.poll_action(t1) {
        actions.push(action);
    }
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, WorkAction::Dispatch { .. })),
        "{actions:?}"
    );
}

#[test]
fn a_new_leader_lists_again_soon_so_a_stable_file_waits_no_whole_poll_interval() {
    let mut c = config();
    c.poll_interval = Duration::from_secs(5);
    c.takeover_relist = Duration::from_secs(1);
    c.policy.stability.unchanged_across_listings = true;
    let (mut w, t0) = leading(c, vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    assert_eq!(w.poll_action(t0), None, "seen once: not stable yet");
    assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(1)));
    let t1 = t0 + Duration::from_secs(1);
    let op = expect_list(&mut w, t1);
    handle_listed(&mut w, t1, op, Ok(listed(std::slice::from_ref(&a))));
    let (_, versions) = expect_claim(&mut w, t1);
    assert_eq!(versions, vec![a]);
    // From then on, the poll interval.
    assert_eq!(w.next_deadline(), Some(t1 + Duration::from_secs(5)));
}

#[test]
fn outcomes_arriving_close_together_share_one_record() {
    let mut c = config();
    c.max_in_flight = 3;
    c.record_delay = Duration::from_millis(10);
    let (mut w, t0) = leading(c, vec![]);
    let files: Vec<_> = (0..3).map(|i| v(&format!("/in/{i:02}"), 1)).collect();
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(3, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    assert_eq!(
        w.poll_action(t0),
        None,
        "the first outcome waits for company"
    );
    assert_eq!(w.next_deadline(), Some(t0 + Duration::from_millis(10)));
    let t1 = t0 + Duration::from_millis(4);
    w.handle_outcome(t1, d[1].0, Outcome::Handled);
    assert_eq!(w.poll_action(t1), None, "one handler still runs");
    // The last outcome: nothing runs or is claimed, so nothing else could join: one store
    // call for the three, at once rather than 10 ms after the first.
    w.handle_outcome(t1, d[2].0, Outcome::Failed("no".into()));
    let (_, updates) = expect_record(&mut w, t1);
    assert_eq!(updates.len(), 3);
}

#[test]
fn a_draining_term_writes_at_once() {
    let mut c = config();
    c.record_delay = Duration::from_secs(1);
    let (mut w, t0) = leading(c, vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    w.drain();
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (_, updates) = expect_record(&mut w, t0);
    assert_eq!(updates.len(), 1);
}

#[test]
fn done_records_ride_along_with_the_next_handled_record() {
    let mut c = config();
    c.max_in_flight = 2;
    c.record_delay = Duration::from_millis(10);
    let (mut w, t0) = leading(c, vec![]);
    let files: Vec<_> = (0..2).map(|i| v(&format!("/in/{i:02}"), 1)).collect();
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(&files)));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(2, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    assert_eq!(w.poll_action(t0), None);
    let t1 = t0 + Duration::from_millis(10);
    let (op, _) = expect_record(&mut w, t1);
    w.handle_recorded(t1, op, Ok(()));
    let Some(WorkAction::File { op, .. }) = w.poll_action(t1) else {
        panic!("the move")
    };
    w.handle_file_op(t1, op, FileOpResult::Done(None));
    // The done record alone waits ten times longer ...
    assert_eq!(w.poll_action(t1), None);
    assert_eq!(w.next_deadline(), Some(t1 + Duration::from_millis(100)));
    // ... unless a handled record comes: both go in one call (at once: with that last
    // handler back, nothing runs, so nothing else could join).
    let t2 = t1 + Duration::from_millis(5);
    w.handle_outcome(t2, d[1].0, Outcome::Handled);
    let (op, updates) = expect_record(&mut w, t2);
    assert_eq!(
        updates.iter().map(state).collect::<Vec<_>>(),
        vec![Some(LedgerState::Done), Some(LedgerState::Handled)]
    );
    // Its done record, with nothing running, goes at once too.
    w.handle_recorded(t2, op, Ok(()));
    let Some(WorkAction::File { op, .. }) = w.poll_action(t2) else {
        panic!("the second move")
    };
    w.handle_file_op(t2, op, FileOpResult::Done(None));
    let (_, updates) = expect_record(&mut w, t2);
    assert_eq!(
        updates.iter().map(state).collect::<Vec<_>>(),
        vec![Some(LedgerState::Done)]
    );
}

#[test]
fn a_takeover_looks_up_the_listed_versions_and_plans_none_before_the_answer() {
    // `leave` mode: a done file stays in the folder. The load brings only the rows with work
    // left (none here); the listed versions are looked up, and the done one is not redone.
    let mut c = config();
    c.post_processing = PostProcessing::Leave;
    let (mut w, t0) = leading(c, vec![]);
    let (a, b) = (v("/in/a", 1), v("/in/b", 1));
    let op = expect_list(&mut w, t0);
    w.handle_listed(t0, op, Ok(listed(&[a.clone(), b.clone()])));
    let Some(WorkAction::Lookup { op, versions }) = w.poll_action(t0) else {
        panic!("the versions the mirror does not hold are looked up first")
    };
    assert_eq!(versions, vec![a.clone(), b.clone()]);
    assert_eq!(
        w.poll_action(t0),
        None,
        "nothing is claimed before the answer"
    );
    assert!(
        !events(&mut w)
            .iter()
            .any(|e| matches!(e, WorkEvent::Changes { .. })),
        "what is new is known once the lookup answered"
    );
    w.handle_looked_up(t0, op, Ok(vec![record(a.clone(), LedgerState::Done, 1)]));
    let seen = events(&mut w);
    assert!(
        seen.contains(&WorkEvent::AlreadyDone(a.clone())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&WorkEvent::Changes {
            added: vec![b.clone()],
            deleted: vec![]
        }),
        "{seen:?}"
    );
    let (_, versions) = expect_claim(&mut w, t0);
    assert_eq!(versions, vec![b], "the done version is not claimed");
}

#[test]
fn a_failed_lookup_is_asked_again_at_the_next_listing() {
    let (mut w, t0) = leading(config(), vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    w.handle_listed(t0, op, Ok(listed(std::slice::from_ref(&a))));
    let Some(WorkAction::Lookup { op, .. }) = w.poll_action(t0) else {
        panic!("lookup")
    };
    w.handle_looked_up(
        t0,
        op,
        Err(StoreError::Unavailable {
            operation: "lookup_ledger",
            group: "g".into(),
            cause: "down".into(),
        }),
    );
    assert!(
        !w.ledger().unwrap().tracks(&a),
        "forgotten, to be looked up again"
    );
    let t1 = t0 + Duration::from_secs(1);
    let op = expect_list(&mut w, t1);
    w.handle_listed(t1, op, Ok(listed(std::slice::from_ref(&a))));
    let Some(WorkAction::Lookup { op, versions }) = w.poll_action(t1) else {
        panic!("looked up again")
    };
    assert_eq!(versions, vec![a.clone()]);
    w.handle_looked_up(t1, op, Ok(vec![]));
    let (_, versions) = expect_claim(&mut w, t1);
    assert_eq!(versions, vec![a]);
}

#[test]
fn the_mirror_follows_the_directory_not_the_history() {
    // 500 files pass through the folder, ten at a time: each is handled and moved away. The
    // mirror never holds more than the folder does.
    let mut c = config();
    c.max_in_flight = 10;
    let (mut w, t0) = leading(c, vec![]);
    let mut dir: BTreeMap<String, FileVersion> = BTreeMap::new();
    let mut next = 0;
    let mut largest = 0;
    let mut done = 0;
    let mut now = t0;
    for _round in 0..200 {
        while dir.len() < 10 && next < 500 {
            let version = v(&format!("/in/{next:04}"), 1);
            dir.insert(version.path.clone(), version);
            next += 1;
        }
        while let Some(action) = w.poll_action(now) {
            match action {
                WorkAction::List { op } => {
                    let versions: Vec<FileVersion> = dir.values().cloned().collect();
                    handle_listed(&mut w, now, op, Ok(listed(&versions)));
                }
                WorkAction::Lookup { op, .. } => w.handle_looked_up(now, op, Ok(vec![])),
                WorkAction::Claim { op, versions, .. } => {
                    w.handle_claimed(now, op, Ok(claimed(versions.len(), 1)))
                }
                WorkAction::Dispatch { handler, .. } => {
                    w.handle_outcome(now, handler, Outcome::Handled)
                }
                WorkAction::Record { op, .. } => w.handle_recorded(now, op, Ok(())),
                WorkAction::File {
                    op,
                    file_op: FileOp::MoveToDone { version, .. },
                } => {
                    dir.remove(&version.path);
                    w.handle_file_op(now, op, FileOpResult::Done(None));
                }
                other => panic!("unexpected {other:?}"),
            }
            largest = largest.max(w.ledger().unwrap().len());
        }
        while let Some(event) = w.poll_event() {
            if matches!(event, WorkEvent::Done(_)) {
                done += 1;
            }
        }
        now += Duration::from_secs(1);
    }
    assert_eq!(done, 500, "every file done");
    assert!(largest <= 20, "the mirror held {largest} versions at most");
    assert!(w.ledger().unwrap().len() <= 10);
}

#[test]
fn a_term_under_the_same_fence_loads_only_after_the_last_terms_writes_are_answered() {
    let (mut w, t0) = leading(config(), vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (op, _) = expect_claim(&mut w, t0);
    w.handle_claimed(t0, op, Ok(claimed(1, 1)));
    let d = dispatches(&mut w, t0);
    w.handle_outcome(t0, d[0].0, Outcome::Handled);
    let (written, _) = expect_record(&mut w, t0);
    // The lease is lost here and renewed before anyone took over: the same fence again.
    w.set_lease(t0, None);
    w.set_lease(t0, Some(&fence(1)));
    assert_eq!(
        w.poll_action(t0),
        None,
        "the handled record may still land: no load before its answer"
    );
    assert_eq!(w.next_deadline(), None, "and no busy wait");
    w.handle_recorded(t0, written, Ok(()));
    assert!(matches!(
        w.poll_action(t0),
        Some(WorkAction::LoadLedger { .. })
    ));
    // Under another fence (another term) the store fences the old writes: no wait.
    let (mut w, t0) = leading(config(), vec![]);
    let op = expect_list(&mut w, t0);
    handle_listed(&mut w, t0, op, Ok(listed(std::slice::from_ref(&a))));
    let (_, _) = expect_claim(&mut w, t0);
    w.set_lease(t0, Some(&fence(2)));
    assert!(matches!(
        w.poll_action(t0),
        Some(WorkAction::LoadLedger { .. })
    ));
}

#[test]
fn in_leave_mode_a_done_file_that_leaves_is_written_again_and_the_walk_waits_a_retention() {
    let mut c = config();
    c.post_processing = PostProcessing::Leave;
    c.policy.retention = Duration::from_secs(3600);
    let (mut w, t0) = leading(c, vec![]);
    let a = v("/in/a", 1);
    let op = expect_list(&mut w, t0);
    w.handle_listed(t0, op, Ok(listed(std::slice::from_ref(&a))));
    let Some(WorkAction::Lookup { op, .. }) = w.poll_action(t0) else {
        panic!("lookup")
    };
    w.handle_looked_up(t0, op, Ok(vec![record(a.clone(), LedgerState::Done, 1)]));
    assert_eq!(
        w.poll_action(t0),
        None,
        "done, left in place: nothing to do"
    );
    // The file leaves (or the listing comes back empty): its row is written again, so its
    // age counts from now.
    let t1 = t0 + Duration::from_secs(1);
    let op = expect_list(&mut w, t1);
    w.handle_listed(t1, op, Ok(vec![]));
    let (_, updates) = expect_record(&mut w, t1 + Duration::from_secs(1));
    assert_eq!(
        updates,
        vec![LedgerUpdate::Set {
            version: a.clone(),
            state: LedgerState::Done,
            error: None,
            detail: None
        }]
    );
    assert!(!w.ledger().unwrap().tracks(&a));
    // No retention walk before the term has listed for a whole retention period.
    let actions: Vec<WorkAction> = std::iter::from_fn(|| w.poll_action(t1)).collect();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, WorkAction::FindStale { .. })),
        "{actions:?}"
    );
    let later = t0 + Duration::from_secs(3600);
    let mut found = false;
    while let Some(action) = w.poll_action(later) {
        match action {
            WorkAction::FindStale { .. } => found = true,
            WorkAction::List { op } => w.handle_listed(later, op, Ok(vec![])),
            WorkAction::Record { op, .. } => w.handle_recorded(later, op, Ok(())),
            _ => {}
        }
    }
    assert!(found, "the walk runs once the term is a retention old");
}
