//! The stores and sources compiled into this build (cargo features `sqlite`, `postgres`,
//! `mysql`, `ftp`, `sftp`), as one enum each that implements the trait by delegation.
//!
//! A backend whose crate is not yet wired here is refused with a clear error naming the
//! feature; the enums grow an arm per backend without any change to the core.

use std::path::Path;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileReader, FileVersion, FileWriter, FsError, GroupId,
    GroupView, HeartbeatRequest, Incarnation, LedgerRecord, LedgerUpdate, ListOptions, Listing,
    MemberId, MemberStatus, Observation, RemoteFs, RenameMode, StoreError, TakeoverOutcome,
    TakeoverRequest,
};

use crate::config::{Backend, Config, SourceKind};
use crate::local::{LocalFs, LocalReader, LocalWriter};

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
    /// PostgreSQL (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(coord_postgres::PgStore),
    /// MySQL/MariaDB (feature `mysql`).
    #[cfg(feature = "mysql")]
    Mysql(coord_mysql::MySqlStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match *$self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(ref $s) => $call,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(ref $s) => $call,
            #[cfg(feature = "mysql")]
            AnyStore::Mysql(ref $s) => $call,
        }
    };
}

/// The store crates' schema errors name their own settings (`migrate_on_connect` on MySQL,
/// `migrate = true` on SQLite, nothing on PostgreSQL); a listener user sets
/// `coordination.migrate_on_start`. Only for a connect without migrations: with them, a
/// schema error is not cured by enabling them.
fn listener_schema_hint(error: StoreError) -> StoreError {
    match error {
        StoreError::Schema(message) => {
            let message = message
                .replace(", or enable migrate_on_connect", "")
                .replace(" (or set migrate = true)", "");
            StoreError::Schema(format!(
                "{message}; or set `coordination.migrate_on_start = true`"
            ))
        }
        other => other,
    }
}

/// A connect that migrates is preceded by one that does not, where the migrator cannot tell a
/// refused login from a server that is down (it reports both as transient): a permanent
/// refusal (wrong password, unknown role or database, bad TLS settings) is returned as it is,
/// so the caller does not retry it. A missing or old schema is what the migration is for.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn permanent(result: &Result<(), StoreError>) -> Option<StoreError> {
    match result {
        Err(e @ StoreError::Connect { .. }) if !e.is_transient() => Some(e.clone()),
        Err(e @ StoreError::Rejected { .. }) => Some(e.clone()),
        _ => None,
    }
}

impl AnyStore {
    /// Connects to the configured store; with `migrate` the schema is created or upgraded
    /// first. A permanent error (bad credentials, bad settings) is never reported as
    /// transient, with or without `migrate`.
    pub async fn connect(config: &Config, migrate: bool) -> Result<AnyStore, BackendError> {
        let result = Self::connect_inner(config, migrate).await;
        if migrate {
            result
        } else {
            result.map_err(|e| match e {
                BackendError::Store(e) => BackendError::Store(listener_schema_hint(e)),
                other => other,
            })
        }
    }

    async fn connect_inner(config: &Config, migrate: bool) -> Result<AnyStore, BackendError> {
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
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let settings = config
                    .backends
                    .postgres
                    .clone()
                    .ok_or_else(|| not_built("postgres"))?;
                if migrate {
                    let store = coord_postgres::PgStore::open(settings)?;
                    if let Some(e) = permanent(&store.check_schema().await) {
                        return Err(e.into());
                    }
                    store.migrate().await?;
                    Ok(AnyStore::Postgres(store))
                } else {
                    Ok(AnyStore::Postgres(
                        coord_postgres::PgStore::connect(settings).await?,
                    ))
                }
            }
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres => Err(not_built("postgres")),
            #[cfg(feature = "mysql")]
            Backend::Mysql => {
                let mut settings = config
                    .backends
                    .mysql
                    .clone()
                    .ok_or_else(|| not_built("mysql"))?;
                settings.migrate_on_connect = false;
                let first = coord_mysql::MySqlStore::connect(settings.clone()).await;
                match first {
                    Ok(store) => return Ok(AnyStore::Mysql(store)),
                    Err(StoreError::Schema(_)) if migrate => {}
                    Err(e) => return Err(e.into()),
                }
                settings.migrate_on_connect = true;
                Ok(AnyStore::Mysql(
                    coord_mysql::MySqlStore::connect(settings).await?,
                ))
            }
            #[cfg(not(feature = "mysql"))]
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

    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        delegate!(self, s => s.observe(group).await)
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        delegate!(self, s => s.members(group).await)
    }
}

/// The file source chosen by `source.kind`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnySource {
    /// A local or mounted directory.
    Local(LocalFs),
    /// FTP or FTPS (feature `ftp`).
    #[cfg(feature = "ftp")]
    Ftp(transfer_ftp::FtpFs),
    /// SFTP (feature `sftp`).
    #[cfg(feature = "sftp")]
    Sftp(transfer_sftp::SftpFs),
}

/// A streaming read from [`AnySource`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyReader {
    /// Local.
    Local(LocalReader),
    /// FTP.
    #[cfg(feature = "ftp")]
    Ftp(transfer_ftp::FtpReader),
    /// SFTP.
    #[cfg(feature = "sftp")]
    Sftp(transfer_sftp::SftpReader),
}

/// A streaming write to [`AnySource`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyWriter {
    /// Local.
    Local(LocalWriter),
    /// FTP.
    #[cfg(feature = "ftp")]
    Ftp(transfer_ftp::FtpWriter),
    /// SFTP.
    #[cfg(feature = "sftp")]
    Sftp(transfer_sftp::SftpWriter),
}

macro_rules! each {
    ($enum:ident, $value:expr, $x:ident => $call:expr) => {
        match $value {
            $enum::Local($x) => $call,
            #[cfg(feature = "ftp")]
            $enum::Ftp($x) => $call,
            #[cfg(feature = "sftp")]
            $enum::Sftp($x) => $call,
        }
    };
}

impl FileReader for AnyReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        each!(AnyReader, self, r => r.read(buf).await)
    }

    async fn finish(self) -> Result<(), FsError> {
        each!(AnyReader, self, r => r.finish().await)
    }
}

impl FileWriter for AnyWriter {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError> {
        each!(AnyWriter, self, w => w.write_all(buf).await)
    }

    async fn finish(self) -> Result<(), FsError> {
        each!(AnyWriter, self, w => w.finish().await)
    }
}

impl RemoteFs for AnySource {
    type Reader = AnyReader;
    type Writer = AnyWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        each!(AnySource, self, fs => fs.list(dir, options).await)
    }

    async fn open_read(&self, path: &str) -> Result<AnyReader, FsError> {
        match self {
            AnySource::Local(fs) => fs.open_read(path).await.map(AnyReader::Local),
            #[cfg(feature = "ftp")]
            AnySource::Ftp(fs) => fs.open_read(path).await.map(AnyReader::Ftp),
            #[cfg(feature = "sftp")]
            AnySource::Sftp(fs) => fs.open_read(path).await.map(AnyReader::Sftp),
        }
    }

    async fn open_write(&self, path: &str) -> Result<AnyWriter, FsError> {
        match self {
            AnySource::Local(fs) => fs.open_write(path).await.map(AnyWriter::Local),
            #[cfg(feature = "ftp")]
            AnySource::Ftp(fs) => fs.open_write(path).await.map(AnyWriter::Ftp),
            #[cfg(feature = "sftp")]
            AnySource::Sftp(fs) => fs.open_write(path).await.map(AnyWriter::Sftp),
        }
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        each!(AnySource, self, fs => fs.rename(from, to, mode).await)
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        each!(AnySource, self, fs => fs.delete(path).await)
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        each!(AnySource, self, fs => fs.create_dir_all(path).await)
    }
}

/// Opens the configured source; returns it with the directory to list in its own terms. A
/// local directory is created if missing.
pub fn open_source(config: &Config) -> Result<(AnySource, String), BackendError> {
    let path = config.source.path.clone();
    let failed = |cause: String| BackendError::Source {
        path: path.clone(),
        cause,
    };
    let source = match config.source.kind {
        SourceKind::Local => {
            std::fs::create_dir_all(&path).map_err(|e| failed(e.to_string()))?;
            AnySource::Local(LocalFs::default())
        }
        #[cfg(feature = "ftp")]
        SourceKind::Ftp => {
            let settings = config
                .backends
                .ftp
                .clone()
                .ok_or_else(|| failed("no [source.ftp] settings".into()))?;
            AnySource::Ftp(transfer_ftp::FtpFs::new(settings).map_err(|e| failed(e.to_string()))?)
        }
        #[cfg(feature = "sftp")]
        SourceKind::Sftp => {
            let settings = config
                .backends
                .sftp
                .clone()
                .ok_or_else(|| failed("no [source.sftp] settings".into()))?;
            AnySource::Sftp(
                transfer_sftp::SftpFs::new(settings).map_err(|e| failed(e.to_string()))?,
            )
        }
        #[allow(unreachable_patterns)]
        _ => {
            return Err(BackendError::NotBuilt {
                field: "source.kind",
                value: if config.source.kind == SourceKind::Ftp {
                    "ftp"
                } else {
                    "sftp"
                },
                feature: if config.source.kind == SourceKind::Ftp {
                    "ftp"
                } else {
                    "sftp"
                },
            });
        }
    };
    Ok((source, path))
}
