//! The leader's poll loop: I/O glue around [`coord_core::Worker`] (DESIGN §3, §5). Every
//! decision (what to list, claim, dispatch, record, move, retry, give up, prune) is the
//! machine's; this loop performs the actions it returns and reports their results, exactly as
//! `testkit`'s simulator does with the same machine.
//!
//! Before every result is reported and every action taken, the loop hands the machine the
//! elector's current lease ([`Gate::may_dispatch`]): a lease that ended cancels the running
//! handlers at once (a command is killed), before any standby may take over. Every store
//! call is bounded by the renew deadline. The loop reads time only through [`crate::clock`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use coord_core::{
    CoordinationStore, EntryKind, Fence, FileOp, FileOpResult, FileVersion, FsError, GroupId,
    HandlerId, LedgerPolicy, LedgerRecord, ListOptions, ListedFile, OpId, Outcome, PostProcessing,
    Redrive, RemoteFs, RenameMode, RequestStore, StoreError, WorkAction, WorkConfig, WorkEvent,
    Worker, join_remote,
};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::api::{Cancellation, ChangeEvent, FileHandler, HandlerContext, IncomingFile, SourceOf};
use crate::clock;
use crate::driver::{ElectionStatus, Gate};
use crate::handler::Handler;
use crate::metrics::Metrics;

/// What the poll loop needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// The watched directory, as the source names it.
    pub dir: String,
    /// Recursion.
    pub list: ListOptions,
    /// Glob on the file name.
    pub filter: glob::Pattern,
    /// Ledger rules.
    pub policy: LedgerPolicy,
    /// Delete, move or leave.
    pub post_processing: PostProcessing,
    /// Where handled files go (`move`).
    pub done_dir: String,
    /// Where files go after the retry budget.
    pub error_dir: String,
    /// Time between listings.
    pub poll_interval: Duration,
    /// Handlers running at once.
    pub max_in_flight: usize,
    /// Post-processing operations (moves, deletes) at once.
    pub max_file_ops: usize,
    /// Files claimed ahead of a free handler slot.
    pub claim_ahead: usize,
    /// Group commit: how long a ledger write may wait for others.
    pub commit_delay: Duration,
    /// The second listing of a term, this soon after the first.
    pub takeover_relist: Duration,
    /// Timeout of one ledger call (the renew deadline).
    pub store_timeout: Duration,
}

/// The result of one piece of I/O the loop started.
#[derive(Debug)]
enum Done {
    Loaded(OpId, Result<Vec<LedgerRecord>, StoreError>),
    Claimed(OpId, Result<Vec<coord_core::ClaimOutcome>, StoreError>),
    Recorded(OpId, Result<(), StoreError>),
    LookedUp(OpId, Result<Vec<LedgerRecord>, StoreError>),
    Stale(OpId, Result<Vec<coord_core::StaleRow>, StoreError>),
    Listed(
        OpId,
        Result<Vec<ListedFile>, String>,
        Vec<(FileVersion, Redrive)>,
    ),
    File(OpId, FileOpResult),
    Handler(HandlerId, Outcome),
}

/// The poll loop of one member; it works only while this member leads.
#[derive(Debug)]
pub struct Poller<S, F> {
    store: Arc<S>,
    fs: Arc<F>,
    gate: Gate,
    status: watch::Receiver<ElectionStatus>,
    settings: PollSettings,
    handler: Arc<dyn FileHandler>,
    metrics: Arc<Metrics>,
    drain: watch::Receiver<bool>,
    requests: Option<Requests>,
}

/// Where the operators' requests for this group wait.
#[derive(Clone)]
struct Requests(Arc<dyn RequestStore>, GroupId);

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Requests").field(&self.1).finish()
    }
}

/// A running handler: its task and its cancellation signal.
#[derive(Debug)]
struct Running {
    task: AbortHandle,
    cancel: watch::Sender<bool>,
}

impl From<Handler> for Arc<dyn FileHandler> {
    fn from(handler: Handler) -> Self {
        Arc::new(handler)
    }
}

impl<S: CoordinationStore + 'static, F: RemoteFs + 'static> Poller<S, F> {
    /// A poll loop over `fs`, writing its ledger to `store`.
    pub fn new(
        store: Arc<S>,
        fs: Arc<F>,
        gate: Gate,
        status: watch::Receiver<ElectionStatus>,
        settings: PollSettings,
        handler: impl Into<Arc<dyn FileHandler>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Poller {
            store,
            fs,
            gate,
            status,
            settings,
            handler: handler.into(),
            metrics,
            // A sender that never sends: no draining unless `with_drain` is used.
            drain: watch::channel(false).1,
            requests: None,
        }
    }

    /// Takes the operators' requests for `group` (`ftp-listener ledger retry|forget`) from
    /// `requests` with every listing.
    pub fn with_requests(mut self, requests: Arc<dyn RequestStore>, group: GroupId) -> Self {
        self.requests = Some(Requests(requests, group));
        self
    }

    /// Stops the loop gracefully when `drain` turns true: the handlers in flight finish and
    /// their outcomes and post-processing are recorded, nothing new is claimed, then
    /// [`Poller::run`] returns.
    pub fn with_drain(mut self, drain: watch::Receiver<bool>) -> Self {
        self.drain = drain;
        self
    }

    fn work_config(&self) -> WorkConfig {
        let s = &self.settings;
        let mut config = WorkConfig::new(s.done_dir.clone(), s.error_dir.clone());
        config.policy = s.policy.clone();
        config.post_processing = s.post_processing;
        config.poll_interval = s.poll_interval;
        config.max_in_flight = s.max_in_flight;
        config.max_file_ops = s.max_file_ops;
        config.claim_ahead = s.claim_ahead;
        config.record_delay = s.commit_delay;
        config.takeover_relist = s.takeover_relist;
        config.store_retry = s.poll_interval.min(Duration::from_secs(1));
        config
    }

    /// Runs until drained (or for ever). Dropping the task cancels the handlers in flight (a
    /// command is killed); their versions are redelivered later.
    pub async fn run(mut self) {
        let mut worker = Worker::new(self.work_config());
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut handlers: std::collections::HashMap<HandlerId, Running> =
            std::collections::HashMap::new();
        // The batch change events handed to the handler (notifications, not fenced work).
        let mut notifications: JoinSet<()> = JoinSet::new();
        let mut fence: Option<Fence> = None;
        let mut span = tracing::Span::none();
        loop {
            if *self.drain.borrow() {
                worker.drain();
            }
            let now = clock::now();
            let lease = self.gate.may_dispatch_at(now);
            if lease != fence {
                if fence.is_some() && lease.is_none() {
                    tracing::info!(parent: &span, "not leading any more: dispatching stops");
                    self.metrics.leadership_stops.inc();
                }
                if let Some(f) = &lease {
                    span = tracing::info_span!(
                        "leader",
                        member = %f.member,
                        group = %f.group,
                        term = f.term.0,
                    );
                }
                fence = lease.clone();
                // A change event of an ended term is not delivered any further.
                notifications.abort_all();
            }
            worker.set_lease(now, lease.as_ref());
            while let Some(action) = worker.poll_action(now) {
                let _entered = span.enter();
                self.start(action, lease.as_ref(), &mut tasks, &mut handlers);
            }
            while let Some(event) = worker.poll_event() {
                let _entered = span.enter();
                if let WorkEvent::Changes { added, deleted } = event {
                    tracing::debug!(
                        added = added.len(),
                        deleted = deleted.len(),
                        "changes since the last poll"
                    );
                    // Moved, not copied: a first listing of a large backlog is all "added".
                    let change = ChangeEvent {
                        added,
                        deleted,
                        fence: fence.clone(),
                    };
                    let handler = self.handler.clone();
                    let span = span.clone();
                    notifications.spawn(tracing::Instrument::instrument(
                        async move {
                            if let Err(error) = handler.on_change(&change).await {
                                tracing::warn!(%error, "the handler's change event failed");
                            }
                        },
                        span,
                    ));
                    continue;
                }
                self.log_event(event);
            }
            if worker.is_drained() {
                return;
            }
            let wait = worker
                .next_deadline()
                .map(|d| d.saturating_duration_since(clock::now()));
            tokio::select! {
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    let done = match joined {
                        Ok(done) => done,
                        Err(e) if e.is_cancelled() => continue,
                        Err(e) => {
                            // Only handler tasks can panic (the others are plain I/O).
                            let id = handlers
                                .iter()
                                .find(|(_, h)| h.task.id() == e.id())
                                .map(|(id, _)| *id);
                            match id {
                                Some(id) => Done::Handler(id, Outcome::Failed(format!("handler panicked: {e}"))),
                                None => continue,
                            }
                        }
                    };
                    // The lease first: a result that arrives after it ended finds the term over.
                    let now = clock::now();
                    worker.set_lease(now, self.gate.may_dispatch_at(now).as_ref());
                    self.report(&mut worker, now, done, &mut handlers);
                }
                Some(_) = notifications.join_next(), if !notifications.is_empty() => {}
                changed = self.status.changed() => if changed.is_err() { return },
                _ = drain_changed(&mut self.drain) => {}
                _ = sleep_opt(wait) => {}
            }
        }
    }

    fn report(
        &self,
        worker: &mut Worker,
        now: Instant,
        done: Done,
        handlers: &mut std::collections::HashMap<HandlerId, Running>,
    ) {
        match done {
            Done::Loaded(op, r) => worker.handle_loaded(now, op, r),
            Done::Claimed(op, r) => worker.handle_claimed(now, op, r),
            Done::Recorded(op, r) => worker.handle_recorded(now, op, r),
            Done::LookedUp(op, r) => worker.handle_looked_up(now, op, r),
            Done::Stale(op, r) => worker.handle_stale(now, op, r),
            Done::Listed(op, r, requests) => {
                // Operators' requests first: a version redriven here is new work in this
                // very listing.
                for (version, action) in requests {
                    let taken = worker.redrive(now, &version);
                    tracing::info!(
                        path = %coord_core::escape_for_log(version.path.as_bytes()),
                        action = action.as_str(),
                        applied = taken,
                        "operator request"
                    );
                }
                worker.handle_listed(now, op, r);
                self.metrics.set_backlog(worker.backlog(now).as_ref());
            }
            Done::File(op, r) => worker.handle_file_op(now, op, r),
            Done::Handler(id, outcome) => {
                handlers.remove(&id);
                self.metrics.handlers_in_flight.set(handlers.len() as u64);
                worker.handle_outcome(now, id, outcome);
            }
        }
    }

    fn start(
        &self,
        action: WorkAction,
        lease: Option<&Fence>,
        tasks: &mut JoinSet<Done>,
        handlers: &mut std::collections::HashMap<HandlerId, Running>,
    ) {
        let timeout = self.settings.store_timeout;
        match action {
            WorkAction::Cancel(id) => {
                if let Some(running) = handlers.remove(&id) {
                    tracing::warn!("cancelling a handler: this member no longer leads");
                    // Told first (a handler between two awaits can see it), then stopped at
                    // its next await (a command's process group is killed on drop).
                    running.cancel.send_replace(true);
                    running.task.abort();
                }
            }
            WorkAction::LoadLedger { op } => {
                // Only issued while leading: the lease names the group.
                let Some(fence) = lease.cloned() else {
                    return;
                };
                let store = self.store.clone();
                spawn_in_span(tasks, async move {
                    let load = store.load_ledger(&fence.group);
                    Done::Loaded(op, bounded("load ledger", &fence, timeout, load).await)
                });
            }
            WorkAction::Claim {
                op,
                fence,
                versions,
            } => {
                self.metrics.ledger_claims.inc();
                let store = self.store.clone();
                spawn_in_span(tasks, async move {
                    Done::Claimed(
                        op,
                        bounded("claim", &fence, timeout, store.claim(&fence, &versions)).await,
                    )
                });
            }
            WorkAction::Lookup { op, versions } => {
                let Some(fence) = lease.cloned() else {
                    return;
                };
                self.metrics.ledger_lookups.inc();
                let store = self.store.clone();
                spawn_in_span(tasks, async move {
                    let lookup = store.lookup_ledger(&fence.group, &versions);
                    Done::LookedUp(op, bounded("lookup ledger", &fence, timeout, lookup).await)
                });
            }
            WorkAction::FindStale {
                op,
                older_than,
                after,
                limit,
            } => {
                let Some(fence) = lease.cloned() else {
                    return;
                };
                let store = self.store.clone();
                spawn_in_span(tasks, async move {
                    let stale =
                        store.stale_settled(&fence.group, older_than, after.as_ref(), limit);
                    Done::Stale(op, bounded("stale rows", &fence, timeout, stale).await)
                });
            }
            WorkAction::Record { op, fence, updates } => {
                self.metrics.ledger_records.inc();
                let store = self.store.clone();
                spawn_in_span(tasks, async move {
                    Done::Recorded(
                        op,
                        bounded("record", &fence, timeout, store.record(&fence, &updates)).await,
                    )
                });
            }
            WorkAction::List { op } => {
                let fs = self.fs.clone();
                let settings = self.settings.clone();
                let metrics = self.metrics.clone();
                let requests = self.requests.clone();
                spawn_in_span(tasks, async move {
                    // The operators' requests waiting for this group, taken with the listing
                    // (a failure to read them is retried at the next listing).
                    let taken = match &requests {
                        Some(Requests(store, group)) => {
                            store.take(group, 100).await.unwrap_or_else(|e| {
                                tracing::warn!(error = %e, "operator requests: read failed");
                                Vec::new()
                            })
                        }
                        None => Vec::new(),
                    };
                    Done::Listed(op, list(&*fs, &settings, &metrics).await, taken)
                });
            }
            WorkAction::File { op, file_op } => {
                let fs = self.fs.clone();
                spawn_in_span(tasks, async move {
                    Done::File(op, file_op_io(&*fs, &file_op).await)
                });
            }
            WorkAction::Dispatch {
                handler: id,
                dispatch,
                fence,
            } => {
                self.metrics.files_dispatched.inc();
                self.metrics.file_size.observe(dispatch.version.size as f64);
                if dispatch.redelivery {
                    self.metrics.redeliveries.inc();
                }
                tracing::info!(
                    path = %dispatch.version.path,
                    attempt = dispatch.attempt,
                    redelivery = dispatch.redelivery,
                    "dispatching"
                );
                let relative = relative(&self.settings.dir, &dispatch.version.path);
                let (cancel, cancellation) = Cancellation::new();
                let gate = self.gate.clone();
                let context = HandlerContext::new(
                    fence,
                    dispatch.attempt,
                    dispatch.redelivery,
                    cancellation,
                    Arc::new(move |fence: &Fence| gate.holds(fence)),
                );
                let version = dispatch.version;
                let fs = self.fs.clone();
                let handler = self.handler.clone();
                let metrics = self.metrics.clone();
                let task = spawn_in_span(tasks, async move {
                    let source = SourceOf(&*fs);
                    let file = IncomingFile::new(version, relative, context, &source);
                    let started = clock::now();
                    let outcome = match handler.on_file(&file).await {
                        Ok(()) => match file.context.detail() {
                            Some(detail) => Outcome::HandledWith(detail),
                            None => Outcome::Handled,
                        },
                        Err(error) => Outcome::Failed(error.0),
                    };
                    metrics
                        .handler_duration
                        .observe(clock::now().saturating_duration_since(started));
                    Done::Handler(id, outcome)
                });
                handlers.insert(id, Running { task, cancel });
                self.metrics.handlers_in_flight.set(handlers.len() as u64);
            }
        }
    }

    fn log_event(&self, event: WorkEvent) {
        match event {
            WorkEvent::Loaded { records } => {
                tracing::info!(records, "ledger loaded (the versions with work left)")
            }
            WorkEvent::Expired { rows } => {
                tracing::info!(
                    rows,
                    "ledger: settled versions past the retention forgotten"
                )
            }
            WorkEvent::Done(version) => {
                self.metrics.files_done.inc();
                self.metrics.note(&version.path, "done");
                tracing::debug!(path = %version.path, "done");
            }
            WorkEvent::Failed {
                version,
                attempt,
                error,
            } => {
                self.metrics.files_failed.inc();
                self.metrics.note(
                    &version.path,
                    format!("failed (attempt {attempt}): {error}"),
                );
                tracing::warn!(path = %version.path, attempt, %error, "handler failed; will retry");
            }
            WorkEvent::GaveUp {
                version,
                attempts,
                error,
            } => {
                self.metrics.files_error.inc();
                self.metrics.note(&version.path, format!("error: {error}"));
                if error.starts_with("retry budget spent") {
                    // Given up at claim time: the earlier attempts never finished.
                    tracing::warn!(path = %version.path, attempts, %error, "moving to the error folder");
                } else {
                    self.metrics.files_failed.inc();
                    tracing::warn!(path = %version.path, attempts, %error, "handler failed; retry budget spent: moving to the error folder");
                }
            }
            WorkEvent::Reappeared(version) => tracing::info!(
                path = %version.path,
                "a done version is back in the folder after it was moved or deleted: new work"
            ),
            // Once per file and term: at debug, a large folder in `leave` mode would flood.
            WorkEvent::AlreadyDone(version) => tracing::debug!(
                path = %version.path,
                "already done (post_processing = leave): not processed again"
            ),
            WorkEvent::SourceGone(version) => tracing::info!(
                path = %version.path,
                "handled, and its source is gone (moved or deleted already): recorded done"
            ),
            WorkEvent::FileOpFailed { op, error } => {
                if !matches!(op, FileOp::PrepareDirs(_) | FileOp::DeleteMarker(_)) {
                    self.metrics.post_processing_failed.inc();
                }
                tracing::warn!(?op, %error, "file operation failed; will retry after the next listing");
            }
            WorkEvent::ListFailed(error) => {
                self.metrics.listings_failed.inc();
                tracing::warn!(dir = %self.settings.dir, %error, "listing failed");
            }
            WorkEvent::StoreTrouble(error) => {
                tracing::warn!(%error, "ledger call failed; will retry")
            }
            WorkEvent::Fenced(error) => {
                self.metrics.fenced_writes.inc();
                tracing::warn!(%error, "fenced: another member leads");
            }
            // Handed to the handler by the loop, which logs them.
            WorkEvent::Changes { .. } => {}
            WorkEvent::TermEnded { cancelled } => {
                self.metrics.set_backlog(None);
                if cancelled > 0 {
                    tracing::warn!(cancelled, "term ended: running handlers cancelled");
                }
            }
        }
    }
}

async fn sleep_opt(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

async fn bounded<T>(
    operation: &'static str,
    fence: &Fence,
    after: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
        Err(StoreError::Timeout {
            operation,
            group: fence.group.to_string(),
            after,
        })
    })
}

/// Performs one file operation of the machine.
async fn file_op_io<F: RemoteFs>(fs: &F, file_op: &FileOp) -> FileOpResult {
    let result = match file_op {
        FileOp::PrepareDirs(dirs) => {
            for dir in dirs {
                if let Err(error) = fs.create_dir_all(dir).await {
                    return FileOpResult::Failed(format!("create {dir}: {error}"));
                }
            }
            Ok(None)
        }
        FileOp::MoveToDone { version, dir } | FileOp::MoveToError { version, dir } => {
            move_unique(fs, &version.path, dir).await.map(Some)
        }
        FileOp::Delete(version) => fs.delete(&version.path).await.map(|()| None),
        FileOp::DeleteMarker(path) => match fs.delete(path).await {
            Ok(()) | Err(FsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(target) => FileOpResult::Done(target),
        Err(FsError::NotFound { .. }) => FileOpResult::SourceGone,
        Err(e) => FileOpResult::Failed(e.to_string()),
    }
}

/// Moves `path` into `dir` without overwriting: the same name, or on a collision the name
/// with a time stamp (`a.1732700000000.csv`, then `-1`, `-2`, ...).
async fn move_unique<F: RemoteFs>(fs: &F, path: &str, dir: &str) -> Result<String, FsError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    // Only a name: the collision suffix, never a decision.
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let candidates = std::iter::once(name.to_string())
        .chain(std::iter::once(format!("{stem}.{stamp}{ext}")))
        .chain((1..=20).map(|k| format!("{stem}.{stamp}-{k}{ext}")));
    for candidate in candidates {
        let target = join_remote(dir, &candidate);
        match fs.rename(path, &target, RenameMode::NoOverwrite).await {
            Ok(()) => return Ok(target),
            Err(FsError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FsError::Other {
        operation: "move",
        path: path.to_string(),
        cause: format!("no free name in {dir}"),
    })
}

/// Lists and filters (the done and error folders, names that do not match).
async fn list<F: RemoteFs>(
    fs: &F,
    settings: &PollSettings,
    metrics: &Metrics,
) -> Result<Vec<ListedFile>, String> {
    let started = clock::now();
    let listing = fs.list(&settings.dir, &settings.list).await;
    metrics
        .listing_duration
        .observe(clock::now().saturating_duration_since(started));
    let listing = listing.map_err(|e| e.to_string())?;
    metrics.listed_now();
    metrics.skipped_names.inc_by(listing.skipped);
    let marker = settings.policy.stability.done_marker_suffix.as_deref();
    let excluded = [
        format!("{}/", settings.done_dir.trim_end_matches('/')),
        format!("{}/", settings.error_dir.trim_end_matches('/')),
    ];
    Ok(listing
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter(|e| !excluded.iter().any(|x| e.path.starts_with(x.as_str())))
        .filter(|e| {
            let base = marker
                .and_then(|m| e.name.strip_suffix(m))
                .unwrap_or(&e.name);
            settings.filter.matches(base)
        })
        .map(|e| ListedFile {
            version: e.version(),
            name: e.name.clone(),
        })
        .collect())
}

fn relative(dir: &str, path: &str) -> String {
    let dir = dir.trim_end_matches('/');
    path.strip_prefix(dir)
        .map(|r| r.trim_start_matches('/'))
        .filter(|r| !r.is_empty())
        .unwrap_or(path)
        .to_string()
}

/// Resolves when the drain flag changes; never, once its sender is gone (a closed channel
/// must not turn the selects that wait on it into a busy loop).
async fn drain_changed(drain: &mut watch::Receiver<bool>) {
    if drain.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Spawns `work` in the current span (the listener's), so that what it logs names the
/// listener.
fn spawn_in_span(
    tasks: &mut JoinSet<Done>,
    work: impl Future<Output = Done> + Send + 'static,
) -> tokio::task::AbortHandle {
    tasks.spawn(tracing::Instrument::in_current_span(work))
}
