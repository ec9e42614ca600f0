//! The stores and sources compiled into this build (cargo features `sqlite`, `postgres`,
//! `mysql`, `ftp`, `sftp`), as one enum each that implements the trait by delegation.
//!
//! A backend whose crate is not yet wired here is refused with a clear error naming the
//! feature; the enums grow an arm per backend without any change to the core.

use std::path::Path;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, HeartbeatRequest, Incarnation,
    LedgerRecord, LedgerUpdate, MemberId, MemberStatus, Observation, StoreError, TakeoverOutcome,
    TakeoverRequest,
};

use crate::config::{Backend, Config, SourceKind};
use crate::local::LocalFs;

/// Why a backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The configuration asks for a backend this build does not contain.
    #[error("`{field} = \"{value}\"` needs a build with the `{feature}` cargo feature")]
    NotBuilt {
        /// The configuration key.
        field: &'static str,
        /// Its value.
        value: &'static str,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// The store refused to connect or migrate.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source could not be prepared.
    #[error("source `{path}`: {cause}")]
    Source {
        /// The configured path.
        path: String,
        /// The cause.
        cause: String,
    },
}

/// The coordination store chosen by `coordination.backend`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// SQLite (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite(coord_sqlite::SqliteStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match *$self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(ref $s) => $call,
        }
    };
}

impl AnyStore {
    /// Connects to the configured store; with `migrate` the schema is created or upgraded
    /// first.
    pub async fn connect(config: &Config, migrate: bool) -> Result<AnyStore, BackendError> {
        let _ = migrate;
        match config.coordination.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let path = config
                    .coordination
                    .sqlite
                    .path
                    .to_string_lossy()
                    .into_owned();
                let mut settings = coord_sqlite::SqliteSettings::new(path);
                settings.migrate = migrate;
                if migrate
                    && let Some(parent) = Path::new(&settings.path)
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                {
                    let _ = tokio::fs::create_dir_all(parent).await;
                }
                Ok(AnyStore::Sqlite(
                    coord_sqlite::SqliteStore::connect(settings).await?,
                ))
            }
            #[cfg(not(feature = "sqlite"))]
            Backend::Sqlite => Err(not_built("sqlite")),
            Backend::Postgres => Err(not_built("postgres")),
            Backend::Mysql => Err(not_built("mysql")),
        }
    }
}

#[allow(dead_code)]
fn not_built(value: &'static str) -> BackendError {
    BackendError::NotBuilt {
        field: "coordination.backend",
        value,
        feature: value,
    }
}

impl CoordinationStore for AnyStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        delegate!(self, s => s.heartbeat(request).await)
    }

    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        delegate!(self, s => s.take_over(request).await)
    }

    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        delegate!(self, s => s.release(fence).await)
    }

    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.leave(group, member, incarnation).await)
    }

    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        delegate!(self, s => s.load_ledger(group).await)
    }

    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        delegate!(self, s => s.claim(fence, versions).await)
    }

    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        delegate!(self, s => s.record(fence, updates).await)
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        delegate!(self, s => s.members(group).await)
    }
}

/// The file source chosen by `source.kind`, and the directory to list in its terms.
pub fn open_source(config: &Config) -> Result<(LocalFs, String), BackendError> {
    match config.source.kind {
        SourceKind::Local => {
            let path = config.source.path.clone();
            std::fs::create_dir_all(&path).map_err(|e| BackendError::Source {
                path: path.clone(),
                cause: e.to_string(),
            })?;
            Ok((LocalFs::default(), path))
        }
        SourceKind::Ftp => Err(BackendError::NotBuilt {
            field: "source.kind",
            value: "ftp",
            feature: "ftp",
        }),
        SourceKind::Sftp => Err(BackendError::NotBuilt {
            field: "source.kind",
            value: "sftp",
            feature: "sftp",
        }),
    }
}
