//! The leader's poll loop (DESIGN §5): list, filter, plan, claim (fenced), dispatch, record
//! (fenced), post-process, record done; retry with backoff, then the error folder.
//!
//! Every fenced write is preceded by [`Gate::holds`]: a leader that cannot prove its lease
//! stops at once, and a [`StoreError::Fenced`] answer ends the term's loop immediately. A
//! version claimed and never finished stays `claimed` in the store, and the next leader
//! redelivers it with `redelivery = true`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use coord_core::{
    AfterFailure, CoordinationStore, EntryKind, Fence, FileVersion, FsError, Ledger, LedgerPolicy,
    LedgerState, LedgerUpdate, ListOptions, ListedFile, Outcome, RemoteFs, RenameMode, StoreError,
    join_remote,
};
use tokio::sync::watch;

use crate::config::PostProcessing;
use crate::driver::{ElectionStatus, Gate};
use crate::handler::{Delivery, Handler};
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
    /// Timeout of one ledger call.
    pub store_timeout: Duration,
}

/// Why a term's loop ended.
#[derive(Debug)]
enum Stop {
    /// The gate no longer gives this fence, or the store said Fenced.
    Lost,
    /// Shutting down.
    Draining,
}

/// The poll loop of one member; it works only while this member leads.
#[derive(Debug)]
pub struct Poller<S, F> {
    store: Arc<S>,
    fs: Arc<F>,
    gate: Gate,
    status: watch::Receiver<ElectionStatus>,
    settings: PollSettings,
    handler: Handler,
    metrics: Arc<Metrics>,
    drain: watch::Receiver<bool>,
}

impl<S: CoordinationStore + 'static, F: RemoteFs + 'static> Poller<S, F> {
    /// A poll loop over `fs`, writing its ledger to `store`.
    pub fn new(
        store: Arc<S>,
        fs: Arc<F>,
        gate: Gate,
        status: watch::Receiver<ElectionStatus>,
        settings: PollSettings,
        handler: Handler,
        metrics: Arc<Metrics>,
    ) -> Self {
        Poller {
            store,
            fs,
            gate,
            status,
            settings,
            handler,
            metrics,
            // A sender that never sends: no draining unless `with_drain` is used.
            drain: watch::channel(false).1,
        }
    }

    /// Stops the loop gracefully when `drain` turns true: the handler in flight finishes and
    /// its outcome and post-processing are recorded, nothing new is claimed, then
    /// [`Poller::run`] returns.
    pub fn with_drain(mut self, drain: watch::Receiver<bool>) -> Self {
        self.drain = drain;
        self
    }

    fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Runs for ever: waits for leadership, works while it lasts, waits again. Cancel the
    /// task to stop it (an in-flight command is killed; its version is redelivered later).
    pub async fn run(mut self) {
        loop {
            let fence = loop {
                if self.draining() {
                    return;
                }
                if let Some(fence) = self.gate.may_dispatch() {
                    break fence;
                }
                tokio::select! {
                    changed = self.status.changed() => if changed.is_err() { return },
                    _ = drain_changed(&mut self.drain) => {}
                }
            };
            let span = tracing::info_span!(
                "leader",
                member = %fence.member,
                group = %fence.group,
                term = fence.term.0,
            );
            let _ = tracing::Instrument::instrument(self.run_term(&fence), span).await;
            // Wait for the next change of the election before looking again.
            while self.gate.holds(&fence) && !self.draining() {
                tokio::select! {
                    changed = self.status.changed() => if changed.is_err() { return },
                    _ = drain_changed(&mut self.drain) => {}
                }
            }
        }
    }

    async fn run_term(&mut self, fence: &Fence) -> Result<(), Stop> {
        let mut term = loop {
            self.check_new_work(fence)?;
            match self
                .timed("load ledger", self.store.load_ledger(&fence.group))
                .await
            {
                Ok(records) => {
                    tracing::info!(records = records.len(), "ledger loaded");
                    break TermState {
                        ledger: Ledger::new(self.settings.policy.clone(), records, Instant::now()),
                        unrecorded: Vec::new(),
                        error_moves: BTreeSet::new(),
                        dirs_ready: false,
                    };
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot load the ledger; retrying");
                    self.pause(fence).await?;
                }
            }
        };
        loop {
            self.poll_once(fence, &mut term).await?;
            self.pause(fence).await?;
        }
    }

    /// Sleeps one poll interval, or less if the election changes.
    async fn pause(&mut self, fence: &Fence) -> Result<(), Stop> {
        let sleep = tokio::time::sleep(self.settings.poll_interval);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return self.check_new_work(fence),
                changed = self.status.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Lost);
                    }
                    self.check_new_work(fence)?;
                }
                _ = drain_changed(&mut self.drain) => self.check_new_work(fence)?,
            }
        }
    }

    /// Before new work (listing, claiming, dispatching): not draining, and still leading.
    fn check_new_work(&self, fence: &Fence) -> Result<(), Stop> {
        if self.draining() {
            return Err(Stop::Draining);
        }
        self.check(fence)
    }

    /// Before a fenced write or post-processing of work already done: still leading.
    fn check(&self, fence: &Fence) -> Result<(), Stop> {
        if self.gate.holds(fence) {
            Ok(())
        } else {
            tracing::info!("not leading any more: dispatching stops");
            self.metrics.leadership_stops.inc();
            Err(Stop::Lost)
        }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let after = self.settings.store_timeout;
        tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
            Err(StoreError::Timeout {
                operation,
                group: String::new(),
                after,
            })
        })
    }

    /// A fenced ledger write. `Ok(false)`: transient failure, keep the updates for later.
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<bool, Stop> {
        if updates.is_empty() {
            return Ok(true);
        }
        self.check(fence)?;
        match self
            .timed("record", self.store.record(fence, updates))
            .await
        {
            Ok(()) => Ok(true),
            Err(error @ StoreError::Fenced { .. }) => {
                tracing::warn!(%error, "fenced: another member leads");
                self.metrics.fenced_writes.inc();
                Err(Stop::Lost)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record the outcome; will retry");
                Ok(false)
            }
        }
    }

    async fn poll_once(&self, fence: &Fence, term: &mut TermState) -> Result<(), Stop> {
        // Writes that failed last time go first, in order, before anything builds on them.
        if !term.unrecorded.is_empty() {
            let pending = std::mem::take(&mut term.unrecorded);
            if !self.record(fence, &pending).await? {
                term.unrecorded = pending;
                return Ok(());
            }
        }
        if !term.dirs_ready {
            term.dirs_ready = self.prepare_dirs().await;
        }
        // Handled earlier, post-processing failed: retry the move or delete only.
        for version in term.ledger.pending_post_processing() {
            self.check_new_work(fence)?;
            self.finish_handled(fence, term, &version).await?;
        }
        for version in std::mem::take(&mut term.error_moves) {
            self.check_new_work(fence)?;
            if self
                .move_unique(&version.path, &self.settings.error_dir)
                .await
                .is_err()
            {
                term.error_moves.insert(version);
            }
        }

        let Some(listed) = self.list().await else {
            return Ok(());
        };
        let now = Instant::now();
        let planned = term.ledger.plan(now, &listed);
        // A version in error still in the folder: its move failed, or the leader that
        // recorded the error stopped before moving it. Move it now (the handler never runs).
        for file in &listed {
            if term.ledger.state(&file.version) == Some(LedgerState::Error) {
                term.error_moves.insert(file.version.clone());
            }
        }
        if !planned.is_empty() {
            self.check_new_work(fence)?;
            match self.timed("claim", self.store.claim(fence, &planned)).await {
                Ok(outcomes) => {
                    let dispatches: Vec<_> = planned
                        .iter()
                        .zip(outcomes.iter())
                        .filter_map(|(v, o)| term.ledger.on_claim(v, o))
                        .collect();
                    for version in planned.iter().skip(outcomes.len()) {
                        term.ledger.on_claim_failed(version);
                    }
                    for dispatch in dispatches {
                        let delivery = Delivery {
                            relative: self.relative(&dispatch.version.path),
                            version: dispatch.version,
                            fence: fence.clone(),
                            attempt: dispatch.attempt,
                            redelivery: dispatch.redelivery,
                        };
                        self.dispatch(fence, term, delivery).await?;
                    }
                }
                Err(error) => {
                    for version in &planned {
                        term.ledger.on_claim_failed(version);
                    }
                    if matches!(error, StoreError::Fenced { .. }) {
                        tracing::warn!(%error, "fenced: another member leads");
                        self.metrics.fenced_writes.inc();
                        return Err(Stop::Lost);
                    }
                    tracing::warn!(%error, "claim failed; will retry");
                    return Ok(());
                }
            }
        }
        let forget = term.ledger.prune(Instant::now());
        if !self.record(fence, &forget).await? {
            term.unrecorded.extend(forget);
        }
        Ok(())
    }

    async fn dispatch(
        &self,
        fence: &Fence,
        term: &mut TermState,
        delivery: Delivery,
    ) -> Result<(), Stop> {
        if let Err(stop) = self.check_new_work(fence) {
            // Claimed, never handed over: the next leader redelivers it.
            term.ledger.on_claim_failed(&delivery.version);
            return Err(stop);
        }
        self.metrics.files_dispatched.inc();
        if delivery.redelivery {
            self.metrics.redeliveries.inc();
        }
        tracing::info!(
            path = %delivery.version.path,
            attempt = delivery.attempt,
            redelivery = delivery.redelivery,
            "dispatching"
        );
        let outcome = match self.handler.handle(self.fs.as_ref(), &delivery).await {
            Ok(()) => Outcome::Handled,
            Err(error) => {
                self.metrics.files_failed.inc();
                tracing::warn!(path = %delivery.version.path, attempt = delivery.attempt, %error, "handler failed");
                Outcome::Failed(error)
            }
        };
        let version = delivery.version;
        let (update, after) = term.ledger.on_outcome(Instant::now(), &version, outcome);
        if !self.record(fence, std::slice::from_ref(&update)).await? {
            term.unrecorded.push(update);
            return Ok(());
        }
        match after {
            None => self.finish_handled(fence, term, &version).await?,
            Some(AfterFailure::RetryAt(_)) => {}
            Some(AfterFailure::GiveUp) => {
                self.metrics.files_error.inc();
                tracing::warn!(path = %version.path, "retry budget spent: moving to the error folder");
                self.check(fence)?;
                if self
                    .move_unique(&version.path, &self.settings.error_dir)
                    .await
                    .is_err()
                {
                    term.error_moves.insert(version);
                }
            }
        }
        Ok(())
    }

    /// Post-processes a handled version and records it done.
    async fn finish_handled(
        &self,
        fence: &Fence,
        term: &mut TermState,
        version: &FileVersion,
    ) -> Result<(), Stop> {
        self.check(fence)?;
        let result = match self.settings.post_processing {
            PostProcessing::Leave => Ok(()),
            PostProcessing::Move => self
                .move_unique(&version.path, &self.settings.done_dir)
                .await
                .map(|_| ()),
            PostProcessing::Delete => match self.fs.delete(&version.path).await {
                Ok(()) | Err(FsError::NotFound { .. }) => Ok(()),
                Err(e) => {
                    self.metrics.post_processing_failed.inc();
                    tracing::warn!(path = %version.path, error = %e, "delete failed; will retry");
                    Err(())
                }
            },
        };
        if result.is_err() {
            return Ok(());
        }
        let update = term.ledger.on_post_processed(version);
        if self.record(fence, std::slice::from_ref(&update)).await? {
            self.metrics.files_done.inc();
        } else {
            term.unrecorded.push(update);
        }
        Ok(())
    }

    /// Moves `path` into `dir` without overwriting: the same name, or on a collision the
    /// name with a time stamp (`a.1732700000000.csv`, then `-1`, `-2`, ...).
    async fn move_unique(&self, path: &str, dir: &str) -> Result<String, ()> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let candidates = std::iter::once(name.to_string())
            .chain(std::iter::once(format!("{stem}.{stamp}{ext}")))
            .chain((1..=20).map(|k| format!("{stem}.{stamp}-{k}{ext}")));
        for candidate in candidates {
            let target = join_remote(dir, &candidate);
            match self.fs.rename(path, &target, RenameMode::NoOverwrite).await {
                Ok(()) => return Ok(target),
                Err(FsError::AlreadyExists { .. }) => continue,
                Err(e) => {
                    self.metrics.post_processing_failed.inc();
                    tracing::warn!(%path, error = %e, "move failed; will retry");
                    return Err(());
                }
            }
        }
        self.metrics.post_processing_failed.inc();
        tracing::warn!(%path, %dir, "no free name in the target folder; will retry");
        Err(())
    }

    async fn prepare_dirs(&self) -> bool {
        let mut dirs = vec![&self.settings.error_dir];
        if self.settings.post_processing == PostProcessing::Move {
            dirs.push(&self.settings.done_dir);
        }
        let mut ok = true;
        for dir in dirs {
            if let Err(error) = self.fs.create_dir_all(dir).await {
                tracing::warn!(%dir, %error, "cannot create folder; will retry");
                ok = false;
            }
        }
        ok
    }

    /// Lists and filters; `None` when the listing failed (logged, retried next poll).
    async fn list(&self) -> Option<Vec<ListedFile>> {
        let started = Instant::now();
        let listing = self.fs.list(&self.settings.dir, &self.settings.list).await;
        self.metrics.listing_duration.observe(started.elapsed());
        let listing = match listing {
            Ok(listing) => listing,
            Err(error) => {
                self.metrics.listings_failed.inc();
                tracing::warn!(dir = %self.settings.dir, %error, "listing failed");
                return None;
            }
        };
        self.metrics.skipped_names.add(listing.skipped);
        let marker = self.settings.policy.stability.done_marker_suffix.as_deref();
        let excluded = [
            format!("{}/", self.settings.done_dir.trim_end_matches('/')),
            format!("{}/", self.settings.error_dir.trim_end_matches('/')),
        ];
        let files = listing
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter(|e| !excluded.iter().any(|x| e.path.starts_with(x.as_str())))
            .filter(|e| {
                let base = marker
                    .and_then(|m| e.name.strip_suffix(m))
                    .unwrap_or(&e.name);
                self.settings.filter.matches(base)
            })
            .map(|e| ListedFile {
                version: e.version(),
                name: e.name.clone(),
            })
            .collect();
        Some(files)
    }

    fn relative(&self, path: &str) -> String {
        let dir = self.settings.dir.trim_end_matches('/');
        path.strip_prefix(dir)
            .map(|r| r.trim_start_matches('/'))
            .filter(|r| !r.is_empty())
            .unwrap_or(path)
            .to_string()
    }
}

/// Resolves when the drain flag changes; never, once its sender is gone (a closed channel
/// must not turn the selects that wait on it into a busy loop).
async fn drain_changed(drain: &mut watch::Receiver<bool>) {
    if drain.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[derive(Debug)]
struct TermState {
    ledger: Ledger,
    /// Fenced writes that failed transiently, retried first on the next poll.
    unrecorded: Vec<LedgerUpdate>,
    /// Versions in error whose move to the error folder failed.
    error_moves: BTreeSet<FileVersion>,
    /// The done and error folders exist.
    dirs_ready: bool,
}
