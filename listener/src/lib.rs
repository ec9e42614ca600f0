//! The HA FTP/SFTP listener's facade: it drives the sans-I/O core (`coord-core`) with real
//! time and real sockets. It holds the election driver, the leader's poll loop, the handlers,
//! the configuration (figment: TOML + `FTPL_` environment), a local-directory source, the
//! Prometheus and health endpoints. The `ftp-listener` binary is a crate of its own
//! (`ftp-listener/`), so this library carries no CLI dependencies.
//!
//! This crate is the only place that reads a clock or opens a socket for the core. It must
//! never make a decision the core makes (who leads, what to dispatch, when to give up): it
//! asks `coord_core::Elector` and `coord_core::Ledger`, and performs what they say. It never
//! logs a secret (passwords and URLs are redacted in `Debug` and in `check-config`).
//!
//! # Guide
//!
//! - [`Config::load`] reads a TOML file and `FTPL_*` variables (`FTPL_RETRY__MAX_ATTEMPTS=3`);
//!   errors name the field and the file.
//! - [`ElectionDriver`] runs the election against any `CoordinationStore`: one store call at
//!   a time, each with a timeout; [`ElectionStatus`] is published through a `watch`; the
//!   [`Gate`] answers `may_dispatch(now)` for the poll loop.
//! - [`Poller`] is the leader's loop: list, filter, plan, claim (fenced), handle, record
//!   (fenced), post-process, record done.
//! - [`run`] wires both with the endpoints until a shutdown future completes; then it drains
//!   (no new claims, the handler in flight gets `shutdown_grace`), and only then releases the
//!   token, so a standby takes over within about one heartbeat.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use listener::{AnyStore, Config, open_source, run};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(None)?; // defaults: SQLite ./ftp-listener.db, ./inbox, log handler
//! let store = Arc::new(AnyStore::connect(&config, config.migrate_on_start()).await?);
//! let (fs, dir) = open_source(&config)?;
//! run(&config, store, Arc::new(fs), dir, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

mod api;
mod app;
mod backend_settings;
mod backends;
mod clock;
mod config;
mod driver;
mod duration;
mod handler;
mod http;
mod local;
mod metrics;
mod poller;
mod seed_config;

pub use api::{
    Cancellation, ChangeEvent, FileHandler, FileSource, FileStream, HandlerContext, HandlerError,
    IncomingFile, SourceOf,
};
pub use app::{RunError, poll_settings, run, run_with_handler};
/// Re-exported so that a handler's crate needs no dependency of its own for the attribute.
pub use async_trait::async_trait;
pub use backend_settings::{BackendSettings, RawSettings};
pub use backends::{AnyReader, AnySource, AnyStore, AnyWriter, BackendError, open_source};
pub use config::{
    Backend, Config, ConfigError, CoordinationConfig, HandlerConfig, HttpConfig, PostProcessing,
    RetryConfig, SourceConfig, SourceKind, SqliteConfig, StabilityConfig,
};
pub use driver::{ElectionDriver, ElectionStatus, Gate, StopHandle};
pub use handler::{Delivery, Handler};
pub use http::{Endpoints, bind as bind_endpoints};
pub use local::{LocalFs, LocalReader, LocalWriter};
pub use metrics::{Counter, Metrics, Timer};
pub use poller::{PollSettings, Poller};
