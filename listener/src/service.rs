//! Composing a listener in code ([`Listener::builder`]) and running several in one process
//! ([`Service`]): one HTTP port for all, one store (one connection pool) per distinct
//! database, each listener's logs in a `listener` span and its metrics labelled with its name.
//! A listener whose store or source cannot be set up is retried (a database that is down) or
//! stopped (a refusal), and the others go on.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coord_core::{CoordinationStore, RemoteFs, SharedSource, SharedStore};
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::watch;
use tracing::Instrument;

use crate::api::FileHandler;
use crate::app::{RunError, poll_settings};
use crate::backends::{BackendError, connect_store, open_source};
use crate::config::{Config, PostProcessing};
use crate::driver::{ElectionDriver, ElectionStatus};
use crate::handler::Handler;
use crate::http::{self, Endpoints, ListenerEndpoint};
use crate::metrics::Metrics;
use crate::poller::Poller;
use crate::registry::Registry;

mod apply;

/// One listener, composed: its settings, store, source and handler. Run it alone with
/// [`Listener::run`], or with others in a [`Service`].
pub struct Listener {
    config: Config,
    store: SharedStore,
    source: SharedSource,
    dir: String,
    handler: Arc<dyn FileHandler>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.config.name)
            .field("group", &self.config.group)
            .field("store", &self.store)
            .field("source", &self.source)
            .field("dir", &self.dir)
            .field("handler", &self.handler)
            .finish()
    }
}

impl Listener {
    /// A builder for the listener `name` (also its coordination group unless
    /// [`ListenerBuilder::group`] says otherwise), on the defaults of [`Config::default`].
    pub fn builder(name: &str) -> ListenerBuilder {
        // The folders and the renew deadline are derived when the listener is built, from
        // what the builder was told.
        let mut config = Config {
            name: name.to_string(),
            group: name.to_string(),
            done_dir: None,
            error_dir: None,
            ..Config::default()
        };
        config.coordination.renew_deadline = None;
        ListenerBuilder {
            config,
            store: None,
            source: None,
            local_paths: None,
            handler: None,
        }
    }

    /// The listener's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs this listener alone, with its endpoints on `config.http.bind`, until `shutdown`
    /// completes (then drains and releases the token) or the election refuses to run.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        Service::new(self.config.http.bind)
            .listener(self)
            .run(shutdown)
            .await
    }
}

/// Composes a [`Listener`] without TOML: store, source, handler, settings.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let config = listener::Config::default(); // SQLite ./ftp-listener.db
/// let registry = listener::Registry::builtin();
/// let store = listener::connect_store(&config, &registry, true).await?;
/// let listener = listener::Listener::builder("invoices")
///     .shared_store(store)
///     .local_dir("./inbox")
///     .poll_interval(Duration::from_secs(2))
///     .handler(listener::Handler::Log)
///     .build()?;
/// listener.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
pub struct ListenerBuilder {
    config: Config,
    store: Option<SharedStore>,
    source: Option<(SharedSource, String)>,
    local_paths: Option<bool>,
    handler: Option<Arc<dyn FileHandler>>,
}

impl fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("name", &self.config.name)
            .field("store", &self.store)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ListenerBuilder {
    /// Takes every setting from `config` (a loaded or hand-made [`Config`]); the name stays
    /// the builder's unless `config` has one of its own.
    pub fn config(mut self, config: Config) -> Self {
        let name = std::mem::take(&mut self.config.name);
        self.config = config;
        if self.config.name.is_empty() {
            self.config.name = name;
        }
        self
    }

    /// The coordination group (default: the listener's name).
    pub fn group(mut self, group: &str) -> Self {
        self.config.group = group.to_string();
        self
    }

    /// This member's ID in the group (default: the host name).
    pub fn member_id(mut self, member: &str) -> Self {
        self.config.member_id = member.to_string();
        self
    }

    /// Time between two listings (default 5s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Glob on the file name (default `*`).
    pub fn filter(mut self, glob: &str) -> Self {
        self.config.filter = glob.to_string();
        self
    }

    /// What happens to a handled file (default move to the done folder).
    pub fn post_processing(mut self, post: PostProcessing) -> Self {
        self.config.post_processing = post;
        self
    }

    /// Handlers running at once on the leader (default 4).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// The heartbeat period and the liveness timeout (defaults 1s and 5s).
    pub fn timing(mut self, heartbeat: Duration, liveness: Duration) -> Self {
        self.config.coordination.heartbeat_interval = Some(heartbeat);
        self.config.coordination.liveness_timeout = Some(liveness);
        self.config.coordination.renew_deadline = None;
        self
    }

    /// Where [`Listener::run`] serves `/healthz`, `/readyz` and `/metrics` (default
    /// `127.0.0.1:9464`; port 0 picks a free one, logged at start).
    pub fn http(mut self, bind: SocketAddr) -> Self {
        self.config.http.bind = bind;
        self
    }

    /// The done and error folders, in the source's terms (defaults `<dir>/.done`,
    /// `<dir>/.error`).
    pub fn folders(mut self, done: &str, error: &str) -> Self {
        self.config.done_dir = Some(done.to_string());
        self.config.error_dir = Some(error.to_string());
        self
    }

    /// The coordination store (any [`CoordinationStore`]).
    pub fn store(self, store: impl CoordinationStore + 'static) -> Self {
        self.shared_store(SharedStore::new("custom", store))
    }

    /// A store shared with other listeners (one pool), e.g. from [`connect_store`].
    pub fn shared_store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The file source (any [`RemoteFs`]) and the directory to watch, in its terms.
    pub fn source<F>(self, source: F, dir: impl Into<String>) -> Self
    where
        F: RemoteFs + 'static,
        F::Reader: 'static,
        F::Writer: 'static,
    {
        self.shared_source(SharedSource::new("custom", source), dir)
    }

    /// A source already shared, e.g. from [`open_source`].
    pub fn shared_source(mut self, source: SharedSource, dir: impl Into<String>) -> Self {
        let dir = dir.into();
        // Folders derived from the previous directory follow the new one.
        let old = self.config.source.path.trim_end_matches('/').to_string();
        for (folder, name) in [
            (&mut self.config.done_dir, ".done"),
            (&mut self.config.error_dir, ".error"),
        ] {
            if folder.as_deref() == Some(coord_core::join_remote(&old, name).as_str()) {
                *folder = None;
            }
        }
        self.config.source.path = dir.clone();
        self.source = Some((source, dir));
        self
    }

    /// A local directory as the source (created if missing when the listener starts).
    pub fn local_dir(self, dir: impl Into<String>) -> Self {
        let dir = dir.into();
        let _ = std::fs::create_dir_all(&dir);
        self.shared_source(SharedSource::new("local", crate::LocalFs::default()), dir)
            .local_paths(true)
    }

    /// Whether the source's paths are local paths (made absolute against the working
    /// directory; default: only for [`ListenerBuilder::local_dir`]).
    pub fn local_paths(mut self, local: bool) -> Self {
        self.local_paths = Some(local);
        self
    }

    /// The handler (default: the configured built-in one, `log`).
    pub fn handler(self, handler: impl FileHandler + 'static) -> Self {
        self.handler_arc(Arc::new(handler))
    }

    /// A handler already behind an `Arc`.
    pub fn handler_arc(mut self, handler: Arc<dyn FileHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Checks every setting (as [`Config::load`] does) and returns the listener.
    pub fn build(self) -> Result<Listener, RunError> {
        let mut config = self.config;
        let name = config.name.clone();
        let (source, dir) = self.source.ok_or(RunError::Incomplete {
            listener: name.clone(),
            what: "no source: call source(), shared_source() or local_dir()",
        })?;
        let store = self.store.ok_or(RunError::Incomplete {
            listener: name.clone(),
            what: "no store: call store() or shared_store()",
        })?;
        config.loaded.source_is_local = self.local_paths.unwrap_or(false);
        config.finish_built();
        config.validate()?;
        poll_settings(&config, dir.clone())?;
        let handler = self
            .handler
            .unwrap_or_else(|| Arc::new(Handler::from_config(&config.handler)));
        Ok(Listener {
            config,
            store,
            source,
            dir,
            handler,
        })
    }
}

/// Several listeners in one process: one HTTP port (`/healthz`, `/readyz` for all,
/// `/metrics` labelled by listener), stores shared between listeners whose settings are
/// equal, each listener isolated from the others' failures.
pub struct Service {
    http: SocketAddr,
    units: Vec<Unit>,
    registry: Registry,
    handlers: Vec<(String, Arc<dyn FileHandler>)>,
}

enum Unit {
    Built(Box<Listener>),
    Configured(Box<Config>),
}

impl Unit {
    fn config(&self) -> &Config {
        match self {
            Unit::Built(l) => &l.config,
            Unit::Configured(c) => c,
        }
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .units
            .iter()
            .map(|u| u.config().name.as_str())
            .collect();
        f.debug_struct("Service")
            .field("http", &self.http)
            .field("listeners", &names)
            .field("registry", &self.registry)
            .finish()
    }
}

impl Service {
    /// No listener yet; endpoints on `http` (port 0 picks a free one, logged at start).
    pub fn new(http: SocketAddr) -> Self {
        Service {
            http,
            units: Vec::new(),
            registry: Registry::builtin(),
            handlers: Vec::new(),
        }
    }

    /// The listeners of a loaded configuration ([`Config::load_all`]), their stores and
    /// sources set up through `registry` when the service runs. The endpoints bind the first
    /// listener's `http.bind` (the key is per process).
    pub fn from_configs(configs: Vec<Config>, registry: Registry) -> Self {
        let http = configs
            .first()
            .map_or_else(|| Config::default().http.bind, |c| c.http.bind);
        Service {
            http,
            units: configs
                .into_iter()
                .map(|c| Unit::Configured(Box::new(c)))
                .collect(),
            registry,
            handlers: Vec::new(),
        }
    }

    /// Adds a composed listener.
    pub fn listener(mut self, listener: Listener) -> Self {
        self.units.push(Unit::Built(Box::new(listener)));
        self
    }

    /// Gives the configured listener `name` a handler written in Rust instead of its
    /// configured `handler`.
    pub fn handler_for(mut self, name: &str, handler: Arc<dyn FileHandler>) -> Self {
        self.handlers.push((name.to_string(), handler));
        self
    }

    /// The names of the listeners, in order.
    pub fn names(&self) -> Vec<String> {
        self.units.iter().map(|u| u.config().name.clone()).collect()
    }

    /// Runs every listener until `shutdown` completes (then each drains and releases its
    /// token, and this returns Ok), or until every listener has stopped on its own (then the
    /// first error is returned: a refusal, a backend that cannot be set up).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        if let Some((name, _)) = self
            .handlers
            .iter()
            .find(|(name, _)| !self.units.iter().any(|u| &u.config().name == name))
        {
            return Err(RunError::Incomplete {
                listener: name.clone(),
                what: "handler_for names no listener of this service",
            });
        }
        let member = self
            .units
            .first()
            .map(|u| u.config().member_id.clone())
            .unwrap_or_default();
        let names = self.names().join(", ");
        let mut engine =
            Engine::bind(self.http, self.registry, self.handlers, &member, &names).await?;
        for unit in self.units {
            engine.start(unit, 0, None)?;
        }
        tokio::pin!(shutdown);
        let result = engine.run_until(&mut shutdown).await;
        engine.stop_all().await;
        result
    }

    /// Runs the listeners of the cluster's configuration for the member whose local file is
    /// `file` (see [`Config::load_cluster`]): the newest version at start, then every new
    /// version as it is pushed (read every `cluster.poll_interval`), applied without a
    /// restart: new listeners start, removed ones drain and stop, changed ones restart,
    /// unchanged ones go on untouched. A listener whose new definition cannot be applied here
    /// (it does not load, its source does not open, it fails on probation after start) stays
    /// on, or goes back to, its previous definition, and the others take the new version
    /// (logged, `ftpl_cluster_config_apply_failed`, and this member's row of
    /// `cluster_member_status`, which `ftp-listener status` shows). The last version applied
    /// in full is kept in `cluster.state_dir`, and used at start while the database is
    /// unreachable.
    pub async fn run_cluster(
        file: Option<&std::path::Path>,
        registry: Registry,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        apply::run_cluster(file, registry, shutdown).await
    }
}

/// The listeners running in one process: started, stopped and replaced by name, each with
/// its own stop signal; the endpoints follow the set.
struct Engine {
    endpoints: Endpoints,
    pool: Arc<StorePool>,
    registry: Registry,
    handlers: Vec<(String, Arc<dyn FileHandler>)>,
    running: Vec<Running>,
    http_task: tokio::task::JoinHandle<()>,
    /// Every listener task counts itself here when it ends, then notifies `ended`.
    finished: Arc<std::sync::atomic::AtomicUsize>,
    ended: Arc<tokio::sync::Notify>,
    /// The listeners that do not run the definition of the cluster version they should.
    failures: coord_core::ApplyFailures,
}

struct Running {
    name: String,
    fingerprint: String,
    /// The cluster version whose definition it runs (0 outside a cluster).
    version: u64,
    /// Its definition, to go back to if the next one fails (a configured listener's).
    config: Option<Box<Config>>,
    /// The definition it replaced, kept while this one is on probation.
    previous: Option<apply::Previous>,
    /// When it was set up and its election started (see `Slot::started`).
    started: Arc<std::sync::OnceLock<std::time::Instant>>,
    /// When its task ended (set by the task itself, so a late look judges the right time).
    ended: Arc<std::sync::OnceLock<std::time::Instant>>,
    /// How long a new definition is on probation after it started.
    settle: Duration,
    stop: watch::Sender<bool>,
    /// `None` once its end has been judged (`apply::reap`).
    task: Option<tokio::task::JoinHandle<Result<(), RunError>>>,
}

impl Running {
    fn is_alive(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Engine {
    async fn bind(
        http: SocketAddr,
        registry: Registry,
        handlers: Vec<(String, Arc<dyn FileHandler>)>,
        member: &str,
        names: &str,
    ) -> Result<Engine, RunError> {
        let endpoints = Endpoints::default();
        let (bound, serve) = http::bind(http, endpoints.clone())
            .await
            .map_err(|cause| RunError::Bind { addr: http, cause })?;
        tracing::info!(member = %member, http = %bound, listeners = %names, "ftp-listener started");
        Ok(Engine {
            endpoints,
            pool: Arc::new(StorePool::default()),
            registry,
            handlers,
            running: Vec::new(),
            http_task: tokio::spawn(serve),
            finished: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            ended: Arc::new(tokio::sync::Notify::new()),
            failures: coord_core::ApplyFailures::default(),
        })
    }

    /// Starts `unit` as the definition of cluster version `version` (0 outside a cluster),
    /// with the definition it replaces, if any, to go back to.
    fn start(
        &mut self,
        unit: Unit,
        version: u64,
        previous: Option<apply::Previous>,
    ) -> Result<(), RunError> {
        let config = unit.config();
        let name = config.name.clone();
        let fingerprint = fingerprint(config);
        let election = config.election()?;
        let kept = match &unit {
            Unit::Configured(c) => Some(c.clone()),
            Unit::Built(_) => None,
        };
        let slot = Slot::new(&name);
        let started = slot.started.clone();
        self.endpoints.add(ListenerEndpoint {
            name: name.clone(),
            status: slot.status.subscribe(),
            metrics: slot.metrics.clone(),
            renew_deadline: election.timing.renew_deadline,
            problem: slot.problem.subscribe(),
            group: slot.group.clone(),
            liveness_timeout: election.timing.liveness_timeout,
            member: election.member.as_str().to_string(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let span = tracing::info_span!("listener", listener = %name);
        let registry = self.registry.clone();
        let pool = self.pool.clone();
        let handler = self
            .handlers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h.clone());
        let (finished, ended) = (self.finished.clone(), self.ended.clone());
        let ended_at = Arc::new(std::sync::OnceLock::new());
        let end_of_task = ended_at.clone();
        let task = tokio::spawn(
            async move {
                let result = run_unit(unit, slot, &registry, &pool, handler, stop_rx).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "listener stopped");
                }
                let _ = end_of_task.set(std::time::Instant::now());
                finished.fetch_add(1, Relaxed);
                ended.notify_one();
                result
            }
            .instrument(span),
        );
        self.running.push(Running {
            name,
            fingerprint,
            version,
            config: kept,
            previous,
            started,
            ended: ended_at,
            settle: election.timing.liveness_timeout * 2,
            stop,
            task: Some(task),
        });
        Ok(())
    }

    async fn stop(&mut self, name: &str) {
        if let Some(i) = self.running.iter().position(|r| r.name == name) {
            let running = self.running.remove(i);
            running.stop.send_replace(true);
            if let Some(task) = running.task {
                let _ = task.await;
            }
            self.endpoints.remove(name);
        }
    }

    async fn stop_all(&mut self) {
        for running in &self.running {
            running.stop.send_replace(true);
        }
        for running in self.running.drain(..) {
            if let Some(task) = running.task {
                let _ = task.await;
            }
        }
        self.http_task.abort();
    }

    /// Until `shutdown`, or until every listener has stopped on its own (then the first
    /// error). For a fixed set of listeners (none stopped by `apply` meanwhile).
    async fn run_until(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), RunError> {
        let mut first_error = None;
        loop {
            if self.finished.load(Relaxed) >= self.running.len() {
                for task in self.running.drain(..).filter_map(|r| r.task) {
                    match task.await {
                        Ok(Err(e)) => {
                            first_error.get_or_insert(e);
                        }
                        Err(e) => {
                            first_error.get_or_insert(RunError::Task(e.to_string()));
                        }
                        Ok(Ok(())) => {}
                    }
                }
                return first_error.map_or(Ok(()), Err);
            }
            tokio::select! {
                () = self.ended.notified() => {}
                () = &mut *shutdown => return Ok(()),
            }
        }
    }
}

/// What identifies a listener's definition: its settings as printed (secrets are
/// references in a cluster configuration) and its backends' tables.
fn fingerprint(config: &Config) -> String {
    let source = config.source.kind.name();
    format!(
        "{}\n{}\n{}",
        config.to_redacted_toml(),
        config.store_identity(),
        config.settings(&format!("source.{source}")).identity()
    )
}

/// What the endpoints see of one listener, written by its task.
struct Slot {
    /// Set when the listener's store and source are set up and its election started.
    started: Arc<std::sync::OnceLock<std::time::Instant>>,
    status: watch::Sender<ElectionStatus>,
    problem: watch::Sender<Option<String>>,
    metrics: Arc<Metrics>,
    group: Arc<std::sync::OnceLock<(SharedStore, coord_core::GroupId)>>,
}

impl Slot {
    fn new(_name: &str) -> Self {
        Slot {
            started: Arc::new(std::sync::OnceLock::new()),
            status: watch::channel(ElectionStatus::initial()).0,
            problem: watch::channel(None).0,
            metrics: Arc::new(Metrics::default()),
            group: Arc::new(std::sync::OnceLock::new()),
        }
    }
}

/// One store per distinct set of settings, shared by the listeners that name it.
#[derive(Default)]
struct StorePool {
    stores: tokio::sync::Mutex<Vec<(String, SharedStore)>>,
}

impl StorePool {
    async fn get(&self, config: &Config, registry: &Registry) -> Result<SharedStore, BackendError> {
        let identity = config.store_identity();
        // Held across the connect, so two listeners on one database make one pool.
        let mut stores = self.stores.lock().await;
        if let Some((_, store)) = stores.iter().find(|(id, _)| *id == identity) {
            return Ok(store.clone());
        }
        let store = connect_store(config, registry, config.migrate_on_start()).await?;
        stores.push((identity, store.clone()));
        Ok(store)
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run_unit(
    unit: Unit,
    slot: Slot,
    registry: &Registry,
    pool: &StorePool,
    handler: Option<Arc<dyn FileHandler>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let listener = match unit {
        Unit::Built(listener) => {
            let mut listener = *listener;
            if let Some(handler) = handler {
                listener.handler = handler;
            }
            listener
        }
        Unit::Configured(config) => {
            let config = *config;
            let name = config.name.clone();
            let failed = |error: BackendError| RunError::Backend {
                listener: name.clone(),
                error,
            };
            // A database that is down at start is waited for (with backoff); a refusal
            // (schema, credentials, settings) stops this listener, not the others.
            let mut backoff = Duration::from_millis(500);
            let store = loop {
                let result = tokio::select! {
                    result = pool.get(&config, registry) => result,
                    () = stopped(&mut stop) => return Ok(()),
                };
                match result {
                    Ok(store) => break store,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "coordination store unavailable");
                        slot.problem.send_replace(Some(e.to_string()));
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = stopped(&mut stop) => return Ok(()),
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        slot.problem.send_replace(Some(e.to_string()));
                        return Err(failed(e));
                    }
                }
            };
            let (source, dir) = match open_source(&config, registry).await {
                Ok(opened) => opened,
                Err(e) => {
                    slot.problem.send_replace(Some(e.to_string()));
                    return Err(failed(e));
                }
            };
            slot.problem.send_replace(None);
            let handler =
                handler.unwrap_or_else(|| Arc::new(Handler::from_config(&config.handler)));
            Listener {
                config,
                store,
                source,
                dir,
                handler,
            }
        }
    };
    run_listener(listener, slot, stop).await
}

/// The election driver, the poll loop and their shutdown order, for one listener.
async fn run_listener(
    listener: Listener,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let Listener {
        config,
        store,
        source,
        dir,
        handler,
    } = listener;
    let election = config.election()?;
    let settings = poll_settings(&config, dir)?;
    let metrics = slot.metrics.clone();
    let _ = slot.group.set((store.clone(), election.group.clone()));
    let store = Arc::new(store);
    let driver = ElectionDriver::new(election.clone(), store.clone(), metrics.clone());
    let gate = driver.gate();
    let status = driver.subscribe();
    let driver_stop = driver.stop_handle();
    tracing::info!(
        member = %election.member,
        group = %election.group,
        store = store.name(),
        source = source.name(),
        "listener started"
    );
    let _ = slot.started.set(std::time::Instant::now());
    // The endpoints read the slot; the driver's status is copied into it.
    let mut copy = status.clone();
    let published = slot.status.clone();
    let copy_task = tokio::spawn(async move {
        loop {
            published.send_replace(copy.borrow_and_update().clone());
            if copy.changed().await.is_err() {
                break;
            }
        }
    });

    // The seeds' `fileNamePattern` (a regex) filters the listing before the poll loop's glob.
    let pattern = config
        .file_name_pattern
        .as_deref()
        .map(crate::seed_config::compile_pattern)
        .transpose()?;
    let marker = config.stability.done_marker_suffix.clone();
    let fs = Arc::new(crate::seed_config::NamePatternFs::new(
        Arc::new(source),
        pattern,
        marker,
    ));
    let requests = store.request_store().cloned();
    let mut poller = Poller::new(store, fs, gate, status, settings, handler, metrics);
    if let Some(requests) = requests {
        poller = poller.with_requests(requests, election.group.clone());
    }
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut poll_task = tokio::spawn(poller.with_drain(drain_rx).run().in_current_span());
    let mut election_task = tokio::spawn(driver.run().in_current_span());

    let result = tokio::select! {
        joined = &mut election_task => Some(joined),
        () = stopped(&mut stop) => None,
    };
    // Stop dispatching first: nothing new is claimed, the handler in flight gets
    // `shutdown_grace` to finish (then it is killed, and the next leader redelivers it).
    // Only then is the token released, so a standby takes over within about one heartbeat
    // and never while this member still works on a file.
    let joined = match result {
        Some(joined) => {
            poll_task.abort();
            let _ = poll_task.await;
            joined
        }
        None => {
            tracing::info!(grace = ?config.shutdown_grace, "shutdown requested: draining");
            drain_tx.send_replace(true);
            if tokio::time::timeout(config.shutdown_grace, &mut poll_task)
                .await
                .is_err()
            {
                tracing::warn!("the handler did not finish within shutdown_grace: stopping it");
                poll_task.abort();
                let _ = poll_task.await;
            }
            driver_stop.stop();
            election_task.await
        }
    };
    // The last status (stopped) reaches the endpoints before the copy ends.
    let _ = tokio::time::timeout(Duration::from_millis(100), copy_task).await;
    match joined {
        Ok(outcome) => outcome.map_err(RunError::from),
        Err(e) => Err(RunError::Task(e.to_string())),
    }
}
