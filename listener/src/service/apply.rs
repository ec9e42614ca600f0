//! A member of a cluster (issue 9): the newest version of the cluster's configuration applied
//! live, listener by listener and never half-applied. A listener whose new definition cannot
//! be applied here (it does not load on this host, its source does not open, or its task ends
//! with an error while on probation) stays on, or goes back to, its previous definition; the
//! others take the new version. The rule for a task that ended is `coord_core::after_task_end`,
//! the member's report `coord_core::ApplyFailures`; this file performs them, and writes the
//! member's row of `cluster_member_status` when what it runs changes.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use coord_core::{AfterEnd, ConfigStore, MemberReport, SharedStore, TaskEnd, after_task_end};

use super::{Engine, Running, Unit, fingerprint};
use crate::app::RunError;
use crate::backends::{BackendError, open_source};
use crate::cluster::LastKnownGood;
use crate::config::Config;
use crate::registry::Registry;

/// The definition a changed listener replaced, kept to go back to while the new one is on
/// probation.
pub(super) struct Previous {
    config: Box<Config>,
    version: u64,
}

/// Each listener of a version as this member loaded it (see [`Config::load_cluster_each`]).
type Loaded = crate::config::EachListener;

impl Running {
    /// Whether its definition is still on probation: not yet set up, or set up for less than
    /// `settle`, and not ended.
    fn on_probation(&self) -> bool {
        self.is_alive()
            && self
                .started
                .get()
                .is_none_or(|at| at.elapsed() < self.settle)
    }
}

impl Engine {
    /// Makes the running set what version `version` (`listeners`) says for `member`:
    /// unchanged listeners are left alone; removed ones drained and stopped; new ones
    /// started; changed ones checked first (their source opens here) and then restarted,
    /// their previous definition kept for [`Engine::reap`]. A listener that does not load
    /// here, or whose source does not open, keeps what it runs.
    pub(super) async fn apply(&mut self, listeners: Loaded, member: &str, version: u64) {
        let mut wanted = Vec::new();
        let mut unloadable = Vec::new();
        for (name, loaded) in listeners {
            match loaded {
                Ok(config) if config.placement.runs_on(member) => wanted.push(config),
                Ok(_) => {}
                Err(e) => unloadable.push((name, e.to_string())),
            }
        }
        let gone: Vec<String> = self
            .running
            .iter()
            .map(|r| r.name.clone())
            .filter(|name| {
                !wanted.iter().any(|c| &c.name == name)
                    && !unloadable.iter().any(|(n, _)| n == name)
            })
            .collect();
        for name in gone {
            tracing::info!(listener = %name, "cluster configuration: listener removed");
            self.stop(&name).await;
            self.failures.clear(&name);
        }
        for (name, cause) in unloadable {
            self.refuse(&name, version, &cause, "does not load on this member");
        }
        for config in wanted {
            let print = fingerprint(&config);
            let current = self.running.iter_mut().find(|r| r.name == config.name);
            let previous = match current {
                Some(r) if r.fingerprint == print && r.is_alive() => {
                    r.version = version;
                    self.failures.clear(&config.name);
                    continue;
                }
                Some(r) => {
                    // Its source must open here before the running definition is stopped.
                    if let Err(e) = open_source(&config, &self.registry).await {
                        let cause = e.to_string();
                        self.refuse(&config.name, version, &cause, "source cannot open here");
                        continue;
                    }
                    let alive = r.is_alive();
                    let version_before = r.version;
                    let previous = r.config.take().filter(|_| alive).map(|config| Previous {
                        config,
                        version: version_before,
                    });
                    tracing::info!(listener = %config.name, version, "cluster configuration: listener changed, restarting it");
                    self.stop(&config.name).await;
                    previous
                }
                None => {
                    tracing::info!(listener = %config.name, version, "cluster configuration: listener added");
                    None
                }
            };
            self.failures.clear(&config.name);
            let name = config.name.clone();
            let back = previous.as_ref().map(|p| (p.config.clone(), p.version));
            if let Err(e) = self.start(Unit::Configured(Box::new(config)), version, previous) {
                self.refuse(&name, version, &e.to_string(), "cannot start");
                if let Some((config, version)) = back
                    && let Err(e) = self.start(Unit::Configured(config), version, None)
                {
                    tracing::error!(listener = %name, error = %e, "cluster configuration: the previous definition cannot start");
                }
            }
        }
        self.publish_failures();
    }

    /// `listener` cannot take its definition of `version`: it keeps what it runs.
    fn refuse(&mut self, listener: &str, version: u64, cause: &str, why: &str) {
        tracing::error!(listener = %listener, version, error = %cause, "cluster configuration: {why}; the listener keeps its previous definition");
        self.failures
            .record(listener, version, own_cause(listener, cause));
    }

    /// Judges every listener whose task ended on its own (`coord_core::after_task_end`): a
    /// new definition that failed on probation goes back to the previous one (a new start
    /// of that listener), or stays stopped when there is none; either way the failure is
    /// recorded against its version.
    pub(super) async fn reap(&mut self) {
        while let Some(i) = self
            .running
            .iter()
            .position(|r| r.task.as_ref().is_some_and(|t| t.is_finished()))
        {
            let r = &mut self.running[i];
            let outcome = match r.task.take() {
                Some(task) => task.await,
                None => continue,
            };
            let cause = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(RunError::Task(e.to_string()).to_string()),
            };
            let end = if cause.is_some() {
                TaskEnd::Failed
            } else {
                TaskEnd::Clean
            };
            let up_for = r.started.get().map(|started| {
                r.ended
                    .get()
                    .map_or_else(|| started.elapsed(), |end| end.duration_since(*started))
            });
            let (name, version) = (r.name.clone(), r.version);
            let cause = cause.unwrap_or_default();
            match after_task_end(end, up_for, r.settle, r.previous.is_some()) {
                AfterEnd::RollBack => {
                    let previous = self.running.remove(i).previous.expect("checked");
                    tracing::error!(listener = %name, version, error = %cause, previous = previous.version, "cluster configuration: the new definition failed after start; going back to the previous one");
                    self.failures
                        .record(&name, version, own_cause(&name, &cause));
                    let restart = Unit::Configured(previous.config);
                    if let Err(e) = self.start(restart, previous.version, None) {
                        tracing::error!(listener = %name, error = %e, "cluster configuration: the previous definition cannot start");
                    }
                }
                AfterEnd::Failed => {
                    tracing::error!(listener = %name, version, error = %cause, "cluster configuration: the listener failed after start and has no previous definition; it stays stopped");
                    self.failures
                        .record(&name, version, own_cause(&name, &cause));
                }
                AfterEnd::Stopped => {}
            }
        }
        // Past probation the previous definition is not needed any more. One that ended
        // meanwhile keeps it: the next look judges it by when it ended.
        for r in &mut self.running {
            let settled = r.started.get().is_some_and(|at| at.elapsed() >= r.settle);
            if settled && r.ended.get().is_none() {
                r.previous = None;
            }
        }
        self.publish_failures();
    }

    fn publish_failures(&self) {
        let failed = u64::from(!self.failures.is_empty());
        self.endpoints.cluster.failed.store(failed, Relaxed);
    }

    /// This member's row of `cluster_member_status`, as things stand.
    fn report(&self, member: &str, applied: Option<u64>) -> MemberReport {
        let running = self
            .running
            .iter()
            .filter(|r| r.is_alive())
            .map(|r| (r.name.as_str(), r.version));
        self.failures.report(member, applied, running)
    }
}

/// `cause` without the words that name the listener again (the report names it).
fn own_cause<'a>(listener: &str, cause: &'a str) -> &'a str {
    let cause = cause
        .strip_prefix("cluster configuration: ")
        .unwrap_or(cause);
    cause
        .strip_prefix(&format!("listener `{listener}`: "))
        .unwrap_or(cause)
}

/// The copy of the last version fully applied, in the state directory (what a restart with
/// the database unreachable starts from), and the one before it: a version kept when it was
/// applied is given back if one of its listeners then fails after start, so a restart does
/// not start that listener on the definition that failed.
struct Kept {
    saved: LastKnownGood,
    current: Option<(u64, String)>,
    before: Option<(u64, String)>,
}

impl Kept {
    fn new(saved: LastKnownGood) -> Self {
        Kept {
            saved,
            current: None,
            before: None,
        }
    }

    fn keep(&mut self, version: u64, body: String) {
        if let Err(e) = self.saved.write(version, &body) {
            tracing::error!(error = %e, "cannot keep the last known good cluster configuration");
        }
        self.before = self.current.replace((version, body));
    }

    /// `failed` is a version some listener could not take after all.
    fn give_back(&mut self, failed: u64) {
        if self.current.as_ref().is_none_or(|(v, _)| *v != failed) {
            return;
        }
        let Some((version, body)) = self.before.take() else {
            return;
        };
        tracing::warn!(
            version,
            failed,
            "keeping the previous cluster configuration as the last known good"
        );
        if let Err(e) = self.saved.write(version, &body) {
            tracing::error!(error = %e, "cannot keep the last known good cluster configuration");
        }
        self.current = Some((version, body));
    }
}

/// The member's row, written when it differs from the last one the database took; while
/// the database is unreachable it is kept and tried again at the next poll, not sooner.
#[derive(Default)]
struct Reporter {
    written: Option<MemberReport>,
    retry_at: Option<tokio::time::Instant>,
}

impl Reporter {
    async fn write(
        &mut self,
        store: &dyn ConfigStore,
        cluster: &str,
        report: MemberReport,
        next_poll: tokio::time::Instant,
    ) {
        let now = tokio::time::Instant::now();
        if self.written.as_ref() == Some(&report) || self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        match store.report_member(cluster, &report).await {
            Ok(()) => {
                self.written = Some(report);
                self.retry_at = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster configuration: cannot report this member's status yet; kept for the next poll");
                self.retry_at = Some(next_poll);
            }
        }
    }
}

/// [`super::Service::run_cluster`].
pub(super) async fn run_cluster(
    file: Option<&Path>,
    registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let local = Config::load_with(file, &registry)?;
    let cluster = local.cluster.clone().ok_or(RunError::Incomplete {
        listener: local.name.clone(),
        what: "no [cluster] table in the local configuration",
    })?;
    let member = local.member_id.clone();
    let mut engine = Engine::bind(
        local.http.bind,
        registry.clone(),
        Vec::new(),
        &member,
        &format!("cluster `{}`", cluster.name),
    )
    .await?;
    engine.endpoints.cluster.enabled.store(true, Relaxed);
    let mut kept = Kept::new(LastKnownGood::new(&cluster));
    let mut applied: Option<u64> = None;
    match kept.saved.read() {
        Ok(Some((version, body))) => match Config::load_cluster_each(file, &body, &registry) {
            Ok(listeners) => {
                tracing::info!(
                    version,
                    "starting from the last known good cluster configuration"
                );
                engine.apply(listeners, &member, version).await;
                applied = Some(version);
                engine.endpoints.cluster.applied.store(version, Relaxed);
                kept.current = Some((version, body));
            }
            Err(e) => {
                tracing::error!(error = %e, "the last known good cluster configuration does not load; waiting for the database")
            }
        },
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "the last known good cluster configuration cannot be read; waiting for the database")
        }
    }
    tokio::pin!(shutdown);
    let mut store: Option<SharedStore> = None;
    let mut reporter = Reporter::default();
    let mut backoff = Duration::from_millis(500);
    let mut next_poll = tokio::time::Instant::now();
    let result = loop {
        if tokio::time::Instant::now() >= next_poll {
            // The store that keeps the configuration: the local file's database.
            if store.is_none() {
                match engine.pool.get(&local, &registry).await {
                    Ok(s) if s.config_store().is_some() => store = Some(s),
                    Ok(s) => {
                        break Err(RunError::Backend {
                            listener: local.name.clone(),
                            error: BackendError::Store(coord_core::config_unsupported(s.name())),
                        });
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cluster configuration: database unavailable");
                    }
                    Err(e) => {
                        break Err(RunError::Backend {
                            listener: local.name.clone(),
                            error: e,
                        });
                    }
                }
            }
            if let Some(s) = &store {
                let configs = s.config_store().expect("checked");
                if let Some(taken) =
                    poll(&mut engine, &**configs, &cluster.name, file, applied).await
                {
                    let (version, body, listeners) = taken;
                    engine.apply(listeners, &member, version).await;
                    applied = Some(version);
                    engine.endpoints.cluster.applied.store(version, Relaxed);
                    if engine.failures.is_empty() {
                        tracing::info!(version, "cluster configuration applied");
                        kept.keep(version, body);
                    } else {
                        tracing::error!(
                            version,
                            "cluster configuration applied except the listeners named above, which keep their previous definition"
                        );
                    }
                }
                backoff = Duration::from_millis(500);
            }
            let wait = if store.is_some() {
                cluster.poll_interval
            } else {
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
            };
            next_poll = tokio::time::Instant::now() + wait;
        }
        engine.reap().await;
        if let Some(failed) = engine.failures.newest() {
            kept.give_back(failed);
        }
        if let Some(s) = &store {
            let report = engine.report(&member, applied);
            let configs = s.config_store().expect("checked");
            reporter
                .write(&**configs, &cluster.name, report, next_poll)
                .await;
        }
        // Woken early when a listener's task ends, to judge it at once; a listener on
        // probation is looked at again within its settle time.
        let probation = Duration::from_millis(200);
        let until = if engine.running.iter().any(Running::on_probation) {
            next_poll.min(tokio::time::Instant::now() + probation)
        } else {
            next_poll
        };
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = engine.ended.notified() => {}
            () = &mut shutdown => break Ok(()),
        }
    };
    engine.stop_all().await;
    result
}

/// One poll of the newest version: `Some` with the version, its document and its listeners
/// as this member loads them when a version other than `applied` is there and loads as a
/// document; a document that does not load here at all is recorded as a failure of that
/// version (logged once).
async fn poll(
    engine: &mut Engine,
    configs: &dyn ConfigStore,
    cluster: &str,
    file: Option<&Path>,
    applied: Option<u64>,
) -> Option<(u64, String, Loaded)> {
    let newest = match configs.latest_config_version(cluster).await {
        Ok(Some(newest)) => newest,
        Ok(None) => {
            if applied.is_none() {
                tracing::warn!(cluster = %cluster, "no cluster configuration pushed yet (ftp-listener cluster push FILE)");
            }
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cluster configuration: read failed");
            return None;
        }
    };
    engine.endpoints.cluster.newest.store(newest, Relaxed);
    if Some(newest) == applied || engine.failures.document() == Some(newest) {
        return None;
    }
    let version = match configs.config_version(cluster, newest).await {
        Ok(Some(version)) => version,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cluster configuration: read failed");
            return None;
        }
    };
    match Config::load_cluster_each(file, &version.body, &engine.registry) {
        Ok(listeners) => {
            tracing::info!(version = newest, by = %version.pushed_by, "cluster configuration: new version");
            engine.failures.clear_document();
            Some((newest, version.body, listeners))
        }
        Err(e) => {
            tracing::error!(version = newest, error = %e, "cluster configuration cannot be applied on this member; keeping the previous one");
            engine.failures.record_document(newest, &e.to_string());
            engine.publish_failures();
            None
        }
    }
}
