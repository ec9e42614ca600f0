//! Issue 12 item 1, on the listener's side: the bytes downloaded are checked against the
//! listed size, and a handled file that is gone before its move ends done, not in a retry
//! loop. In-process, over `testkit`'s in-memory store and the local source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coord_core::{
    ElectionConfig, Fence, FileVersion, GroupId, Incarnation, LedgerState, MemberId, Role, Term,
    Timing,
};
use listener::{
    Config, Delivery, ElectionDriver, Handler, LocalFs, Metrics, Poller, poll_settings,
};
use testkit::MemStore;

const LIMIT: Duration = Duration::from_secs(10);

fn delivery(path: &std::path::Path, size: u64) -> Delivery {
    Delivery {
        version: FileVersion {
            path: path.display().to_string(),
            size,
            mtime_ms: 1,
        },
        relative: path.file_name().unwrap().to_string_lossy().into_owned(),
        fence: Fence {
            group: GroupId::new("g").unwrap(),
            member: MemberId::new("m1").unwrap(),
            incarnation: Incarnation(1),
            term: Term(1),
        },
        attempt: 1,
        redelivery: false,
    }
}

#[tokio::test]
async fn a_download_shorter_or_longer_than_listed_fails_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    // Listed with 5 bytes, rewritten with 3 (or 8) before the read.
    std::fs::write(&file, b"abc").unwrap();
    let out = dir.path().join("out");
    let handler = Handler::Download { dir: out.clone() };
    let fs = LocalFs::default();
    let err = handler.handle(&fs, &delivery(&file, 5)).await.unwrap_err();
    assert!(
        err.contains("downloaded 3 bytes, the listing said 5"),
        "{err}"
    );
    std::fs::write(&file, b"abcdefgh").unwrap();
    let err = handler.handle(&fs, &delivery(&file, 5)).await.unwrap_err();
    assert!(
        err.contains("downloaded 8 bytes, the listing said 5"),
        "{err}"
    );
    // Nothing delivered, no part file left.
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The listed size: delivered.
    std::fs::write(&file, b"abcde").unwrap();
    handler.handle(&fs, &delivery(&file, 5)).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"abcde");
    // The command handler downloads the same way, and is not run on a mismatch.
    let ran = dir.path().join("ran");
    let command = Handler::Command {
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("touch '{}'", ran.display()),
        ],
        dir: dir.path().join("staging"),
        timeout: LIMIT,
    };
    let err = command.handle(&fs, &delivery(&file, 6)).await.unwrap_err();
    assert!(
        err.contains("downloaded 5 bytes, the listing said 6"),
        "{err}"
    );
    assert!(!ran.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_file_gone_before_its_move_is_done_after_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.txt"), b"a").unwrap();

    let store = MemStore::default();
    let metrics = Arc::new(Metrics::default());
    let timing = Timing::from_liveness(Duration::from_millis(50), Duration::from_millis(300));
    let election = ElectionConfig::new("m1", "g", timing).unwrap();
    let driver = ElectionDriver::new(election, Arc::new(store.clone()), metrics.clone());
    let mut status = driver.subscribe();
    let config = Config {
        poll_interval: Duration::from_millis(20),
        done_dir: Some(format!("{}/.done", inbox.display())),
        error_dir: Some(format!("{}/.error", inbox.display())),
        ..Config::default()
    };
    let settings = poll_settings(&config, inbox.display().to_string()).unwrap();
    // The handler removes the source (someone else took the file meanwhile).
    let handler = Handler::Command {
        command: vec!["sh".into(), "-c".into(), "rm -f \"$FTPL_PATH\"".into()],
        dir: dir.path().join("staging"),
        timeout: LIMIT,
    };
    let poller = Poller::new(
        Arc::new(store.clone()),
        Arc::new(LocalFs::default()),
        driver.gate(),
        driver.subscribe(),
        settings,
        handler,
        metrics.clone(),
    );
    let election_task = tokio::spawn(driver.run());
    tokio::time::timeout(LIMIT, status.wait_for(|s| s.role == Role::Leader))
        .await
        .unwrap()
        .unwrap();
    let poll_task = tokio::spawn(poller.run());

    let group = GroupId::new("g").unwrap();
    let deadline = Instant::now() + LIMIT;
    let record = loop {
        let ledger = store.inspect(|s| s.ledger_rows(&group));
        if let Some(r) = ledger.iter().find(|r| r.state == LedgerState::Done) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "never done: {ledger:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(record.version.path.ends_with("/a.txt"), "{record:?}");
    assert_eq!(record.attempts, 1, "{record:?}");
    // Some more polls: it stays done, with no failed move and no second dispatch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ledger = store.inspect(|s| s.ledger_rows(&group));
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].state, LedgerState::Done, "{ledger:?}");
    assert_eq!(metrics.post_processing_failed.get(), 0);
    assert_eq!(metrics.files_dispatched.get(), 1);
    assert_eq!(metrics.files_failed.get(), 0);
    assert!(!inbox.join(".done/a.txt").exists());
    poll_task.abort();
    election_task.abort();
}
