//! The election driver and the poll loop in-process, over `testkit`'s in-memory store (with
//! fault injection) and the local source.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coord_core::{
    ClaimOutcome, CoordinationStore, ElectionConfig, ElectionError, Fence, FileVersion, GroupId,
    GroupView, HeartbeatRequest, Incarnation, LedgerRecord, LedgerUpdate, MemberId, MemberStatus,
    Observation, RemoteFs, Role, StoreError, TakeoverOutcome, TakeoverRequest, Timing,
};
use listener::{
    Config, ElectionDriver, ElectionStatus, Handler, LocalFs, Metrics, Poller, poll_settings,
};
use testkit::MemStore;
use tokio::sync::watch;

const LIMIT: Duration = Duration::from_secs(10);

fn election(member: &str) -> ElectionConfig {
    let timing = Timing::from_liveness(Duration::from_millis(50), Duration::from_millis(300));
    ElectionConfig::new(member, "g", timing).unwrap()
}

fn config_for(inbox: &std::path::Path, depth: u32) -> Config {
    let defaults = Config::default();
    Config {
        poll_interval: Duration::from_millis(20),
        done_dir: Some(format!("{}/.done", inbox.display())),
        error_dir: Some(format!("{}/.error", inbox.display())),
        source: listener::SourceConfig {
            recursive_depth: depth,
            ..defaults.source.clone()
        },
        ..defaults
    }
}

/// The poll loop of `driver`'s member over `fs`, watching `dir` as `config` says.
fn poller_for<S, F>(
    driver: &ElectionDriver<S>,
    store: Arc<S>,
    fs: Arc<F>,
    config: &Config,
    dir: String,
    handler: impl Into<Arc<dyn listener::FileHandler>>,
    metrics: &Arc<Metrics>,
) -> Poller<S, F>
where
    S: CoordinationStore + 'static,
    F: RemoteFs + 'static,
{
    let settings = poll_settings(config, dir).unwrap();
    Poller::new(
        store,
        fs,
        driver.gate(),
        driver.subscribe(),
        settings,
        handler,
        metrics.clone(),
    )
}

async fn wait_status(
    rx: &mut watch::Receiver<ElectionStatus>,
    what: impl Fn(&ElectionStatus) -> bool,
) -> ElectionStatus {
    tokio::time::timeout(LIMIT, rx.wait_for(|s| what(s)))
        .await
        .expect("status in time")
        .expect("driver alive")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_member_leads_stops_on_outage_and_releases_on_stop() {
    let store = MemStore::default();
    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(election("m1"), Arc::new(store.clone()), metrics.clone());
    let gate = driver.gate();
    let stop = driver.stop_handle();
    let mut status = driver.subscribe();
    let task = tokio::spawn(driver.run());

    let led = wait_status(&mut status, |s| s.role == Role::Leader).await;
    assert_eq!(led.fence.as_ref().unwrap().term.0, 1);
    assert!(led.is_ready(Instant::now(), Duration::from_millis(200)));
    assert!(gate.may_dispatch().is_some());

    // Store outage: the leader steps down by itself within the renew deadline (200 ms).
    store.set_unavailable(true);
    let down = Instant::now();
    wait_status(&mut status, |s| s.role == Role::Standby).await;
    assert!(
        down.elapsed() < Duration::from_secs(2),
        "{:?}",
        down.elapsed()
    );
    assert!(gate.may_dispatch().is_none());
    assert!(metrics.heartbeats_failed.get() > 0);
    // Recovery: it leads again (nobody else could take over).
    store.set_unavailable(false);
    wait_status(&mut status, |s| s.role == Role::Leader).await;

    stop.stop();
    let outcome = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    let (_, holder) = store.inspect(|s| s.holder(&GroupId::new("g").unwrap()));
    assert!(holder.is_none(), "the token was released");
    assert_eq!(status.borrow().role, Role::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_member_id_is_refused() {
    let store = Arc::new(MemStore::default());
    let metrics = Arc::new(Metrics::default());
    let first = ElectionDriver::new(election("twin"), store.clone(), metrics.clone());
    let mut first_status = first.subscribe();
    let first_task = tokio::spawn(first.run());
    wait_status(&mut first_status, |s| s.role == Role::Leader).await;

    let second = ElectionDriver::new(election("twin"), store.clone(), metrics);
    let outcome = tokio::time::timeout(LIMIT, second.run()).await.unwrap();
    match outcome {
        Err(ElectionError::DuplicateMember { member, .. }) => assert_eq!(member.as_str(), "twin"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(first_status.borrow().role, Role::Leader);
    first_task.abort();
}

/// testkit's store as one member sees it, with two faults: cut off from the database while
/// `cut` is set (every call fails as unavailable), and with `fence_claims` every claim fenced,
/// as if another member had taken over behind its back (claims are counted either way).
#[derive(Debug, Clone)]
struct Faulty {
    inner: MemStore,
    cut: Arc<std::sync::atomic::AtomicBool>,
    fence_claims: bool,
    claims: Arc<AtomicUsize>,
}

impl Faulty {
    fn new(inner: MemStore) -> Faulty {
        Faulty {
            inner,
            cut: Arc::default(),
            fence_claims: false,
            claims: Arc::default(),
        }
    }

    fn check(&self, operation: &'static str) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                operation,
                group: "g".into(),
                cause: "cut".into(),
            });
        }
        Ok(())
    }
}

impl CoordinationStore for Faulty {
    async fn heartbeat(&self, r: &HeartbeatRequest) -> Result<Observation, StoreError> {
        self.check("heartbeat")?;
        self.inner.heartbeat(r).await
    }
    async fn take_over(&self, r: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        self.check("takeover")?;
        self.inner.take_over(r).await
    }
    async fn release(&self, f: &Fence) -> Result<(), StoreError> {
        self.check("release")?;
        self.inner.release(f).await
    }
    async fn leave(&self, g: &GroupId, m: &MemberId, i: Incarnation) -> Result<(), StoreError> {
        self.check("leave")?;
        self.inner.leave(g, m, i).await
    }
    async fn load_ledger(&self, g: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        self.check("load_ledger")?;
        self.inner.load_ledger(g).await
    }
    async fn lookup_ledger(
        &self,
        g: &GroupId,
        v: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        self.check("lookup_ledger")?;
        self.inner.lookup_ledger(g, v).await
    }
    async fn stale_settled(
        &self,
        g: &GroupId,
        older_than: std::time::Duration,
        after: Option<&coord_core::StaleRow>,
        limit: usize,
    ) -> Result<Vec<coord_core::StaleRow>, StoreError> {
        self.check("stale_settled")?;
        self.inner.stale_settled(g, older_than, after, limit).await
    }
    async fn claim(&self, f: &Fence, v: &[FileVersion]) -> Result<Vec<ClaimOutcome>, StoreError> {
        self.check("claim")?;
        self.claims.fetch_add(1, Ordering::SeqCst);
        if self.fence_claims {
            return Err(StoreError::fenced("claim", f));
        }
        self.inner.claim(f, v).await
    }
    async fn record(&self, f: &Fence, u: &[LedgerUpdate]) -> Result<(), StoreError> {
        self.check("record")?;
        self.inner.record(f, u).await
    }
    async fn observe(&self, g: &GroupId) -> Result<GroupView, StoreError> {
        self.check("observe")?;
        self.inner.observe(g).await
    }
    async fn members(&self, g: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        self.check("members")?;
        self.inner.members(g).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_claim_stops_the_poll_loop_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.txt"), b"a").unwrap();
    let out = dir.path().join("out");

    let store = Arc::new(Faulty {
        fence_claims: true,
        ..Faulty::new(MemStore::default())
    });
    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(election("m1"), store.clone(), metrics.clone());
    let mut status = driver.subscribe();
    let config = config_for(&inbox, 0);
    let poller = poller_for(
        &driver,
        store.clone(),
        Arc::new(LocalFs::default()),
        &config,
        inbox.display().to_string(),
        Handler::Download { dir: out.clone() },
        &metrics,
    );
    let election_task = tokio::spawn(driver.run());
    wait_status(&mut status, |s| s.role == Role::Leader).await;
    let poll_task = tokio::spawn(poller.run());

    // The file is stable after two listings, then claimed once; the fenced answer stops the
    // loop for this term: no second claim while the (stale) leadership lasts, no dispatch.
    let claimed = tokio::time::timeout(LIMIT, async {
        while store.claims.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(claimed.is_ok());
    let after_first = Instant::now();
    while after_first.elapsed() < Duration::from_millis(200) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.claims.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.files_dispatched.get(), 0);
    assert!(!out.exists(), "nothing was downloaded");
    assert!(inbox.join("a.txt").exists(), "nothing was moved");
    poll_task.abort();
    election_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_handler_keeps_relative_paths_and_skips_hostile_names() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(inbox.join("sub")).unwrap();
    std::fs::write(inbox.join("sub/b.txt"), b"bee").unwrap();
    std::fs::write(inbox.join("top.txt"), b"top").unwrap();
    std::fs::write(inbox.join("evil\nname.txt"), b"x").unwrap();
    let out = dir.path().join("out");

    let store = Arc::new(MemStore::default());
    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(election("m1"), store.clone(), metrics.clone());
    let config = config_for(&inbox, 1);
    let poller = poller_for(
        &driver,
        store.clone(),
        Arc::new(LocalFs::default()),
        &config,
        inbox.display().to_string(),
        Handler::Download { dir: out.clone() },
        &metrics,
    );
    let election_task = tokio::spawn(driver.run());
    let poll_task = tokio::spawn(poller.run());

    let done = tokio::time::timeout(LIMIT, async {
        while metrics.files_done.get() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "done: {}", metrics.files_done.get());
    assert_eq!(std::fs::read(out.join("sub/b.txt")).unwrap(), b"bee");
    assert_eq!(std::fs::read(out.join("top.txt")).unwrap(), b"top");
    assert!(inbox.join(".done/b.txt").exists() && inbox.join(".done/top.txt").exists());
    assert!(
        inbox.join("evil\nname.txt").exists(),
        "a hostile name is left alone"
    );
    assert!(metrics.skipped_names.get() >= 1);
    assert_eq!(metrics.files_dispatched.get(), 2);
    // The loop paces itself by poll_interval (20 ms): about 10 listings in 200 ms, not a
    // busy loop.
    let before = metrics.listing_duration.count();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listings = metrics.listing_duration.count() - before;
    assert!(
        (3..=20).contains(&listings),
        "{listings} listings in 200 ms"
    );
    poll_task.abort();
    election_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_left_in_error_by_a_previous_leader_is_moved_without_running_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("poison.csv"), b"bad").unwrap();
    let out = dir.path().join("out");
    let store = Arc::new(MemStore::default());

    // A previous leader recorded the error, then died before moving the file.
    let listed = LocalFs::default()
        .list(&inbox.display().to_string(), &Default::default())
        .await
        .unwrap();
    let version = listed.entries[0].version();
    let group = GroupId::new("g").unwrap();
    let old = MemberId::new("old").unwrap();
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: old.clone(),
            incarnation: Incarnation(1),
            observed_term: coord_core::Term(0),
            liveness_timeout: Duration::from_millis(300),
            observed_renewal: None,
        })
        .await
        .unwrap();
    let TakeoverOutcome::Won(term) = won else {
        panic!("{won:?}")
    };
    let fence = Fence {
        group,
        member: old,
        incarnation: Incarnation(1),
        term,
    };
    store
        .claim(&fence, std::slice::from_ref(&version))
        .await
        .unwrap();
    store
        .record(
            &fence,
            &[LedgerUpdate::Set {
                version,
                state: coord_core::LedgerState::Error,
                error: Some("exit 3".into()),
                detail: None,
            }],
        )
        .await
        .unwrap();
    store.release(&fence).await.unwrap();

    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(election("m1"), store.clone(), metrics.clone());
    let poller = poller_for(
        &driver,
        store.clone(),
        Arc::new(LocalFs::default()),
        &config_for(&inbox, 0),
        inbox.display().to_string(),
        Handler::Download { dir: out.clone() },
        &metrics,
    );
    let election_task = tokio::spawn(driver.run());
    let poll_task = tokio::spawn(poller.run());
    let moved = tokio::time::timeout(LIMIT, async {
        while !inbox.join(".error/poison.csv").exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(moved.is_ok());
    assert_eq!(metrics.files_dispatched.get(), 0);
    assert!(!out.exists());
    poll_task.abort();
    election_task.abort();
}

fn process_alive(pid: u32) -> bool {
    // A killed child is gone, or a zombie until reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The leader is cut off from the database while its command runs: the command is killed
/// when the lease ends (the renew deadline), before the standby may take over and redeliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_killed_before_a_standby_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("slow.txt"), b"x").unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!(
        "echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 30",
        pidfile.display()
    );

    let shared = MemStore::default();
    let first_store = Arc::new(Faulty::new(shared.clone()));
    let cut = first_store.cut.clone();
    let metrics = Arc::new(Metrics::default());
    let first = ElectionDriver::new(election("m1"), first_store.clone(), metrics.clone());
    let mut first_status = first.subscribe();
    let config = config_for(&inbox, 0);
    let poller = poller_for(
        &first,
        first_store.clone(),
        Arc::new(LocalFs::default()),
        &config,
        inbox.display().to_string(),
        Handler::Command {
            command: vec!["sh".into(), "-c".into(), script],
            dir: dir.path().join("staging"),
            timeout: Duration::from_secs(60),
        },
        &metrics,
    );
    let first_task = tokio::spawn(first.run());
    wait_status(&mut first_status, |s| s.role == Role::Leader).await;
    let poll_task = tokio::spawn(poller.run());
    let second = ElectionDriver::new(election("m2"), Arc::new(shared.clone()), metrics.clone());
    let mut second_status = second.subscribe();
    let second_task = tokio::spawn(second.run());
    wait_status(&mut second_status, |s| s.last_ack.is_some()).await;

    let pid = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&pidfile) {
                return text.trim().parse::<u32>().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the command started");
    assert!(process_alive(pid));

    cut.store(true, Ordering::SeqCst);
    wait_status(&mut second_status, |s| s.role == Role::Leader).await;
    // The moment the standby leads, the old leader's command must already be dead.
    assert!(
        !process_alive(pid),
        "the old leader's command still runs beside the new leader"
    );
    assert_eq!(first_status.borrow().role, Role::Standby);
    poll_task.abort();
    first_task.abort();
    second_task.abort();
}

/// The election driver and the poll loop read time only through tokio, so they run on paused
/// (simulated) time: a member over the in-memory store and file system takes over, lists
/// twice (the second listing of a term `stability.takeover_relist`, 1 s, after the first;
/// then every 5 s), handles and moves a file, in virtual seconds and real milliseconds.
#[tokio::test(start_paused = true)]
async fn the_loops_run_on_simulated_time() {
    let store = Arc::new(MemStore::new(testkit::Clock::tokio()));
    let fs = Arc::new(testkit::MemFs::new());
    fs.put("/in/a.csv", b"abc", std::time::SystemTime::UNIX_EPOCH);
    let metrics = Arc::new(Metrics::default());
    let timing = Timing::default();
    let driver = ElectionDriver::new(
        ElectionConfig::new("m1", "g", timing).unwrap(),
        store.clone(),
        metrics.clone(),
    );
    let config = Config {
        done_dir: Some("/in/.done".into()),
        error_dir: Some("/in/.error".into()),
        ..Config::default()
    };
    let settings = poll_settings(&config, "/in".into()).unwrap();
    assert_eq!(settings.poll_interval, Duration::from_secs(5));
    let poller = Poller::new(
        store.clone(),
        fs.clone(),
        driver.gate(),
        driver.subscribe(),
        settings,
        Handler::Log,
        metrics.clone(),
    );
    let real = Instant::now();
    let virtual_start = tokio::time::Instant::now();
    let election_task = tokio::spawn(driver.run());
    let poll_task = tokio::spawn(poller.run());
    while metrics.files_done.get() < 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            virtual_start.elapsed() < Duration::from_secs(60),
            "never done"
        );
    }
    let took = virtual_start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "two listings 1 s apart, not a whole poll interval: {took:?}"
    );
    assert_eq!(fs.paths(), vec!["/in/.done/a.csv".to_string()]);
    assert!(
        real.elapsed() < Duration::from_secs(5),
        "simulated, not slept"
    );
    poll_task.abort();
    election_task.abort();
}

/// A handler written in Rust by a user of the library: it reads each file as text, checks it
/// still leads before its side effect, and receives the batch change events.
#[derive(Debug, Default)]
struct Recorder {
    texts: std::sync::Mutex<Vec<(String, String, u32, bool)>>,
    changes: std::sync::Mutex<Vec<listener::ChangeEvent>>,
}

#[listener::async_trait]
impl listener::FileHandler for Recorder {
    async fn on_file(
        &self,
        file: &listener::IncomingFile<'_>,
    ) -> Result<(), listener::HandlerError> {
        if file.relative == "big.txt" {
            // Past the limit: a clear error, and the retry policy takes over.
            return file.read_text(4).await.map(|_| ());
        }
        if file.relative == "panics.txt" {
            panic!("a bug in the user's handler");
        }
        let text = file.read_text(1024).await?;
        assert!(file.context.still_leading());
        // Kept on the version's ledger row.
        file.context
            .set_detail(format!("{} chars", text.chars().count()));
        self.texts.lock().unwrap().push((
            file.relative.clone(),
            text,
            file.context.attempt,
            file.context.redelivery,
        ));
        Ok(())
    }

    async fn on_change(
        &self,
        change: &listener::ChangeEvent,
    ) -> Result<(), listener::HandlerError> {
        self.changes.lock().unwrap().push(change.clone());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_handler_written_in_rust_gets_text_context_and_change_events() {
    let store = Arc::new(MemStore::new(testkit::Clock::tokio()));
    let fs = Arc::new(testkit::MemFs::new());
    let t = std::time::SystemTime::UNIX_EPOCH;
    fs.put("/in/a.txt", b"alpha", t);
    fs.put("/in/big.txt", b"0123456789", t);
    fs.put("/in/panics.txt", b"x", t);
    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(
        ElectionConfig::new("m1", "g", Timing::default()).unwrap(),
        store.clone(),
        metrics.clone(),
    );
    let mut config = Config {
        done_dir: Some("/in/.done".into()),
        error_dir: Some("/in/.error".into()),
        ..Config::default()
    };
    config.retry.max_attempts = 2;
    config.retry.initial_backoff = Duration::from_millis(100);
    let recorder = Arc::new(Recorder::default());
    let handler: Arc<dyn listener::FileHandler> = recorder.clone();
    let poller = poller_for(
        &driver,
        store.clone(),
        fs.clone(),
        &config,
        "/in".into(),
        handler,
        &metrics,
    );
    let election_task = tokio::spawn(driver.run());
    let poll_task = tokio::spawn(poller.run());
    let start = tokio::time::Instant::now();
    while metrics.files_done.get() < 1 || metrics.files_error.get() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(120), "stuck");
    }
    // A new file is reported added and handled; one removed by someone else between two
    // listings (before it was stable) is reported deleted.
    fs.put("/in/b.txt", b"beta", t);
    fs.put("/in/c.txt", b"gamma", t);
    let seen = metrics.listing_duration.count();
    while metrics.listing_duration.count() == seen {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    coord_core::RemoteFs::delete(fs.as_ref(), "/in/c.txt")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    while metrics.files_done.get() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(60), "stuck");
    }
    let texts = recorder.texts.lock().unwrap().clone();
    assert_eq!(
        texts,
        vec![
            ("a.txt".to_string(), "alpha".to_string(), 1, false),
            ("b.txt".to_string(), "beta".to_string(), 1, false)
        ]
    );
    // Past the text limit and the panic: failed attempts, then the error folder; the process
    // lives on.
    let mut paths = fs.paths();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "/in/.done/a.txt",
            "/in/.done/b.txt",
            "/in/.error/big.txt",
            "/in/.error/panics.txt"
        ]
    );
    let changes = recorder.changes.lock().unwrap().clone();
    let added: Vec<String> = changes
        .iter()
        .flat_map(|c| c.added.iter().map(|v| v.path.clone()))
        .collect();
    assert_eq!(
        added,
        vec![
            "/in/a.txt",
            "/in/big.txt",
            "/in/panics.txt",
            "/in/b.txt",
            "/in/c.txt"
        ]
    );
    let deleted: Vec<String> = changes
        .iter()
        .flat_map(|c| c.deleted.iter().map(|v| v.path.clone()))
        .collect();
    // Our own moves to the done and error folders are not "deleted by someone else".
    assert_eq!(deleted, vec!["/in/c.txt"]);
    assert!(changes.iter().all(|c| c.fence.is_some()));
    // The detail a handler set reached the ledger and outlived the done record.
    let group = coord_core::GroupId::new("g").unwrap();
    let rows = store.inspect(|s| s.ledger_rows(&group));
    let detail = |name: &str| {
        rows.iter()
            .find(|r| r.version.path.ends_with(name))
            .map(|r| (r.state, r.detail.clone()))
    };
    assert_eq!(
        detail("/a.txt"),
        Some((coord_core::LedgerState::Done, Some("5 chars".into())))
    );
    assert_eq!(
        detail("/big.txt"),
        Some((coord_core::LedgerState::Error, None))
    );
    poll_task.abort();
    election_task.abort();
}

/// Two files with the same mtime handled at once by the command handler each get a staging
/// folder of their own (found by the chaos test over FTP: the first command to finish removed
/// the other's downloaded copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_never_share_a_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for name in ["a.txt", "b.txt", "c.txt"] {
        let path = inbox.join(name);
        std::fs::write(&path, b"same size").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(when).unwrap();
    }
    let store = Arc::new(MemStore::default());
    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(election("m1"), store.clone(), metrics.clone());
    let mut config = config_for(&inbox, 0);
    config.max_in_flight = 3;
    let poller = poller_for(
        &driver,
        store.clone(),
        Arc::new(LocalFs::default()),
        &config,
        inbox.display().to_string(),
        Handler::Command {
            // Still there after the others had time to finish: its own copy.
            command: vec![
                "sh".into(),
                "-c".into(),
                r#"sleep 0.3; test -f "$0""#.into(),
            ],
            dir: dir.path().join("staging"),
            timeout: Duration::from_secs(20),
        },
        &metrics,
    );
    let election_task = tokio::spawn(driver.run());
    let poll_task = tokio::spawn(poller.run());
    let done = tokio::time::timeout(LIMIT, async {
        while metrics.files_done.get() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "done: {}", metrics.files_done.get());
    assert_eq!(metrics.files_failed.get(), 0, "a command lost its copy");
    assert_eq!(metrics.files_dispatched.get(), 3);
    poll_task.abort();
    election_task.abort();
}
