//! Wiring: the election driver, the poll loop and the endpoints of one member, until a
//! shutdown signal or a refusal.

use std::sync::Arc;

use coord_core::{CoordinationStore, ElectionError, ListOptions, RemoteFs};

use crate::api::FileHandler;
use crate::config::{Config, SourceKind};
use crate::driver::ElectionDriver;
use crate::handler::Handler;
use crate::http::{self, Endpoints};
use crate::metrics::Metrics;
use crate::poller::{PollSettings, Poller};

/// Why a member stopped other than by a shutdown request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration broke a rule.
    #[error("configuration: {0}")]
    Config(#[from] coord_core::ConfigError),
    /// The election refused to run (duplicate member ID).
    #[error(transparent)]
    Refused(#[from] ElectionError),
    /// The endpoints could not bind their address.
    #[error("http.bind {addr}: {cause}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The cause.
        cause: std::io::Error,
    },
    /// The election task panicked.
    #[error("election task failed: {0}")]
    Task(String),
}

/// The poll loop's settings from the configuration; `dir` is the source directory in the
/// source's own terms.
pub fn poll_settings(
    config: &Config,
    dir: String,
) -> Result<PollSettings, coord_core::ConfigError> {
    let election = config.election()?;
    let filter = glob::Pattern::new(&config.filter)
        .map_err(|e| coord_core::ConfigError::new("filter", e.to_string()))?;
    let mut done_dir = config.done_dir.clone().unwrap_or_default();
    let mut error_dir = config.error_dir.clone().unwrap_or_default();
    let mut dir = dir;
    if config.source.kind == SourceKind::Local {
        // One spelling for all three (`./inbox` and `/srv/inbox/.done` alike), so the done and
        // error folders are recognised, and skipped, inside a recursive listing.
        dir = local_absolute("source.path", &dir)?;
        done_dir = local_absolute("done_dir", &done_dir)?;
        error_dir = local_absolute("error_dir", &error_dir)?;
    }
    Ok(PollSettings {
        dir,
        list: ListOptions {
            max_depth: config.source.recursive_depth,
        },
        filter,
        policy: config.ledger_policy(),
        post_processing: config.post_processing,
        done_dir,
        error_dir,
        poll_interval: config.poll_interval,
        max_in_flight: config.max_in_flight,
        // A ledger write may take longer than a heartbeat, never longer than the lease.
        store_timeout: election.timing.renew_deadline,
    })
}

/// `path` made absolute (against the working directory) with `.` segments removed.
fn local_absolute(field: &'static str, path: &str) -> Result<String, coord_core::ConfigError> {
    let absolute = std::path::absolute(path)
        .map_err(|e| coord_core::ConfigError::new(field, format!("`{path}`: {e}")))?;
    let normal: std::path::PathBuf = absolute.components().collect();
    normal
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| coord_core::ConfigError::new(field, "must be valid UTF-8"))
}

/// Runs one member until `shutdown` completes (then stops the poll loop, releases the token
/// and returns Ok) or the election refuses to run.
pub async fn run<S, F>(
    config: &Config,
    store: Arc<S>,
    fs: Arc<F>,
    dir: String,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError>
where
    S: CoordinationStore + 'static,
    F: RemoteFs + 'static,
{
    let handler: Arc<dyn FileHandler> = Arc::new(Handler::from_config(&config.handler));
    run_with_handler(config, store, fs, dir, handler, shutdown).await
}

/// [`run`] with a handler of the caller's own instead of the configured `handler` (a
/// [`FileHandler`] written in Rust, in the caller's crate).
pub async fn run_with_handler<S, F>(
    config: &Config,
    store: Arc<S>,
    fs: Arc<F>,
    dir: String,
    handler: Arc<dyn FileHandler>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError>
where
    S: CoordinationStore + 'static,
    F: RemoteFs + 'static,
{
    let election = config.election()?;
    let settings = poll_settings(config, dir)?;
    let metrics = Arc::new(Metrics::default());
    let driver = ElectionDriver::new(election.clone(), store.clone(), metrics.clone());
    let gate = driver.gate();
    let status = driver.subscribe();
    let stop = driver.stop_handle();

    let endpoints = Endpoints {
        status: status.clone(),
        metrics: metrics.clone(),
        renew_deadline: election.timing.renew_deadline,
    };
    let (bound, serve) = http::bind(config.http.bind, endpoints)
        .await
        .map_err(|cause| RunError::Bind {
            addr: config.http.bind,
            cause,
        })?;
    tracing::info!(
        member = %election.member,
        group = %election.group,
        http = %bound,
        "ftp-listener started"
    );
    let http_task = tokio::spawn(serve);

    // The seeds' `fileNamePattern` (a regex) filters the listing before the poll loop's glob.
    let pattern = config
        .file_name_pattern
        .as_deref()
        .map(crate::seed_config::compile_pattern)
        .transpose()?;
    let marker = config.stability.done_marker_suffix.clone();
    let fs = Arc::new(crate::seed_config::NamePatternFs::new(fs, pattern, marker));
    let poller = Poller::new(store, fs, gate, status, settings, handler, metrics);
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let mut poll_task = tokio::spawn(poller.with_drain(drain_rx).run());
    let mut election_task = tokio::spawn(driver.run());

    let result = tokio::select! {
        joined = &mut election_task => Some(joined),
        () = shutdown => None,
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
            stop.stop();
            election_task.await
        }
    };
    http_task.abort();
    match joined {
        Ok(outcome) => outcome.map_err(RunError::from),
        Err(e) => Err(RunError::Task(e.to_string())),
    }
}
