//! The HA FTP/SFTP listener's facade: it drives the sans-I/O core (`coord-core`) with real
//! time and real sockets. It holds the election driver, the leader's poll loop, the handlers,
//! the configuration (figment: TOML + `FTPL_` environment), a local-directory source, the
//! Prometheus and health endpoints. The `ftp-listener` binary is a crate of its own
//! (`ftp-listener/`), so this library carries no CLI dependencies.
//!
//! This crate is the only place that reads a clock or opens a socket for the core. It must
//! never make a decision the core makes (who leads, what to dispatch, when to give up): it
//! asks `coord_core::Elector` and `coord_core::Worker`, and performs what they say. It never
//! logs a secret (passwords and URLs are redacted in `Debug` and in `check-config`).
//!
//! # Guide
//!
//! - Write what happens to each file as a [`FileHandler`] (object-safe, `#[async_trait]`):
//!   [`FileHandler::on_file`] gets an [`IncomingFile`] (version, relative path, a streaming
//!   reader, `read_text`, `download_to`) with its [`HandlerContext`] (the fence as fencing
//!   token, the attempt, the redelivery flag, a [`Cancellation`] that fires when the member
//!   loses leadership, `still_leading()`); [`FileHandler::on_change`] gets the files added and
//!   deleted since the last poll. An error or a panic is a failed attempt.
//! - [`Config::load`] reads a TOML file and `FTPL_*` variables (`FTPL_RETRY__MAX_ATTEMPTS=3`);
//!   errors name the field and the file. The seeds' record is accepted as written.
//! - [`Listener::builder`] composes a listener without TOML (store, source, handler,
//!   settings); stores and sources are trait objects ([`SharedStore`], [`SharedSource`] wrap
//!   any `CoordinationStore` / `RemoteFs`). [`Service`] runs several in one process (one HTTP
//!   port, one store per distinct database, metrics labelled and logs spanned by listener,
//!   each listener isolated from the others' failures); [`Config::load_all`] reads
//!   `[[listeners]]`.
//! - A [`Registry`] names the backends a configuration may use: [`Registry::builtin`] has
//!   those of the cargo features; a binary of your own adds a [`StoreBackend`] or a
//!   [`SourceBackend`] with [`Registry::with_store`] / [`Registry::with_source`], and
//!   `coordination.backend = "<name>"` with `[coordination.<name>]` selects it.
//! - [`run_with_handler`] runs one member with your handler (and [`run`] with the configured
//!   built-in one) until a shutdown future completes; then it drains (no new claims, the
//!   handlers in flight get `shutdown_grace`), and only then releases the token, so a standby
//!   takes over within about one heartbeat.
//! - Underneath: [`ElectionDriver`] runs the election against any `CoordinationStore` (one
//!   store call at a time, each bounded by the renew deadline); the [`Gate`] answers
//!   `may_dispatch(now)`; [`Poller`] drives `coord_core::Worker` (list, claim just before
//!   dispatch, up to `max_in_flight` handlers, record, post-process the exact version).
//!
//! # Example: a handler in Rust
//!
//! ```no_run
//! use listener::{
//!     Config, FileHandler, HandlerError, IncomingFile, Listener, Registry, connect_store,
//!     open_source,
//! };
//!
//! #[derive(Debug)]
//! struct Ingest;
//!
//! #[listener::async_trait]
//! impl FileHandler for Ingest {
//!     async fn on_file(&self, file: &IncomingFile<'_>) -> Result<(), HandlerError> {
//!         let text = file.read_text(16 << 20).await?;
//!         if !file.context.still_leading() {
//!             return Err("no longer leading; the next leader redelivers it".into());
//!         }
//!         // Pass file.context.fence.term downstream as a fencing token; when
//!         // file.context.redelivery is true an earlier attempt may have had its effect.
//!         println!("{}: {} lines", file.relative, text.lines().count());
//!         Ok(())
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::builtin();
//! let config = Config::load(None)?; // defaults: SQLite ./ftp-listener.db, ./inbox
//! let store = connect_store(&config, &registry, config.migrate_on_start()).await?;
//! let (source, dir) = open_source(&config, &registry).await?;
//! Listener::builder("ingest")
//!     .config(config)
//!     .shared_store(store)
//!     .shared_source(source, dir)
//!     .local_paths(true)
//!     .handler(Ingest)
//!     .build()?
//!     .run(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod api;
mod app;
mod backend_settings;
mod backends;
mod clock;
mod cluster;
mod config;
mod driver;
mod duration;
mod forward;
mod forward_config;
mod handler;
mod http;
mod local;
mod log_config;
mod metrics;
mod poller;
mod registry;
mod seed_config;
mod service;

pub use api::{
    Cancellation, ChangeEvent, FileHandler, FileSource, FileStream, HandlerContext, HandlerError,
    IncomingFile, SourceOf,
};
pub use app::{RunError, poll_settings, run, run_with_handler};
/// Re-exported so that a handler's crate needs no dependency of its own for the attribute.
pub use async_trait::async_trait;
pub use backend_settings::{BackendSettings, RawSettings, RawTable};
pub use backends::{BackendError, connect_store, open_source};
pub use cluster::{
    ClusterError, LastKnownGood, diff as cluster_diff, get as cluster_get, push as cluster_push,
    rollback as cluster_rollback,
};
pub use config::{
    Backend, ClusterConfig, Config, ConfigError, CoordinationConfig, EachListener, HandlerConfig,
    HttpConfig, Loaded, Placement, PostProcessing, RetryConfig, SourceConfig, SourceKind,
    SqliteConfig, StabilityConfig,
};
pub use coord_core::{SharedSource, SharedStore};
pub use driver::{ElectionDriver, ElectionStatus, Gate, StopHandle};
pub use duration::parse as parse_duration;
pub use forward::Forward;
pub use forward_config::{DestinationConfig, ForwardConfig, ForwardMode};
pub use handler::{Delivery, Handler};
pub use http::{ClusterGauges, Endpoints, ListenerEndpoint, bind as bind_endpoints};
pub use local::{LocalFs, LocalReader, LocalWriter};
pub use log_config::{LogConfig, LogFormat, LogRotation};
pub use metrics::{
    Counter, FILE_SIZE_BUCKETS, Format as MetricsFormat, Gauge, HANDLER_BUCKETS, HEARTBEAT_BUCKETS,
    LEDGER_STATES, LISTING_BUCKETS, Metrics, MetricsRegistry, SecondsGauge, Timer,
};
pub use poller::{PollSettings, Poller};
pub use registry::{Registry, Settings, SettingsError, SourceBackend, StoreBackend};
pub use service::{Listener, ListenerBuilder, Service};
