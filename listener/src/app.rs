//! Wiring: the election driver, the poll loop and the endpoints of one member, until a
//! shutdown signal or a refusal.

use std::sync::Arc;

use coord_core::{
    CoordinationStore, ElectionError, ListOptions, RemoteFs, SharedSource, SharedStore,
};

use crate::api::FileHandler;
use crate::config::Config;
use crate::poller::PollSettings;
use crate::service::{Listener, Service};

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
    /// A store or source could not be set up (settings, credentials, a missing feature).
    #[error("listener `{listener}`: {error}")]
    Backend {
        /// The listener's name.
        listener: String,
        /// The cause.
        error: crate::backends::BackendError,
    },
    /// The local configuration (or a cluster document) does not load.
    #[error(transparent)]
    Load(#[from] crate::config::ConfigError),
    /// The builder lacks a part.
    #[error("listener `{listener}`: {what}")]
    Incomplete {
        /// The listener's name.
        listener: String,
        /// What is missing.
        what: &'static str,
    },
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
    if config.loaded.source_is_local {
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
        max_file_ops: config.max_file_ops,
        claim_ahead: config.claim_ahead,
        commit_delay: config.commit_delay,
        takeover_relist: config.stability.takeover_relist,
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
/// and returns Ok) or the election refuses to run. The handler is the configured one
/// (`handler`). See [`Listener::builder`] to compose one in code, and [`Service`] for several
/// in one process.
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
    let handler: Arc<dyn FileHandler> =
        Arc::new(crate::handler::Handler::from_config(&config.handler));
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
    let listener = Listener::builder(&config.name)
        .config(config.clone())
        .shared_store(SharedStore::from_arc("custom", store))
        .shared_source(SharedSource::from_arc("custom", fs), dir)
        .local_paths(config.loaded.source_is_local)
        .handler_arc(handler)
        .build()?;
    Service::new(config.http.bind)
        .listener(listener)
        .run(shutdown)
        .await
}
