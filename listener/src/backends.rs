//! The built-in stores and sources (cargo features `sqlite`, `postgres`, `mysql`, `ftp`,
//! `sftp`; `local` always), registered in [`Registry::builtin`] exactly as a user's own
//! backend is, and the two calls that turn a configuration into a store and a source through
//! a registry.

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use std::sync::Arc;

use async_trait::async_trait;
use coord_core::{SharedSource, SharedStore, StoreError};

use crate::config::Config;
#[cfg(feature = "sqlite")]
use crate::config::SqliteConfig;
use crate::local::LocalFs;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use crate::registry::StoreBackend;
use crate::registry::{Registry, Settings, SettingsError, SourceBackend};

/// Why a backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The configuration names a backend this build does not contain.
    #[error("`{field}`: {message}")]
    Unknown {
        /// The configuration key.
        field: &'static str,
        /// What is missing (the cargo feature to enable, or the known names).
        message: String,
    },
    /// A backend's settings table is missing or wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
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

impl BackendError {
    /// Whether retrying may cure it (a database that is down), as opposed to a refusal
    /// (settings, credentials, schema).
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Store(e) if e.is_transient())
    }
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

/// Connects to the store `config` names (`coordination.backend`) through `registry`; with
/// `migrate` the schema is created or upgraded first. A permanent error (bad credentials,
/// bad settings) is never reported as transient, with or without `migrate`.
pub async fn connect_store(
    config: &Config,
    registry: &Registry,
    migrate: bool,
) -> Result<SharedStore, BackendError> {
    let name = config.coordination.backend.name();
    let backend = registry.store(name).ok_or_else(|| BackendError::Unknown {
        field: "coordination.backend",
        message: registry.unknown_store(name),
    })?;
    let settings = config.settings(&format!("coordination.{name}"));
    let result = backend.connect(&settings, migrate).await;
    if migrate {
        Ok(result?)
    } else {
        result.map_err(|e| BackendError::Store(listener_schema_hint(e)))
    }
}

/// Opens the source `config` names (`source.kind`) through `registry`; returns it with the
/// directory to list in its own terms. A local directory is created if missing.
pub async fn open_source(
    config: &Config,
    registry: &Registry,
) -> Result<(SharedSource, String), BackendError> {
    let name = config.source.kind.name();
    let backend = registry.source(name).ok_or_else(|| BackendError::Unknown {
        field: "source.kind",
        message: registry.unknown_source(name),
    })?;
    let settings = config.settings(&format!("source.{name}"));
    backend.open(&settings, &config.source.path).await
}

pub(crate) fn register_builtin(registry: Registry) -> Registry {
    let registry = registry.with_source("local", Local);
    #[cfg(feature = "sqlite")]
    let registry = registry.with_store("sqlite", Sqlite);
    #[cfg(feature = "postgres")]
    let registry = registry.with_store("postgres", Postgres);
    #[cfg(feature = "mysql")]
    let registry = registry.with_store("mysql", Mysql);
    #[cfg(feature = "ftp")]
    let registry = registry.with_source("ftp", Ftp);
    #[cfg(feature = "sftp")]
    let registry = registry.with_source("sftp", Sftp);
    registry
}

/// A connect that migrates is preceded by one that does not, where the migrator cannot tell a
/// refused login from a server that is down (it reports both as transient): a permanent
/// refusal (wrong password, unknown role or database, bad TLS settings) is returned as it is,
/// so the caller does not retry it. A missing or old schema is what the migration is for.
#[cfg(feature = "postgres")]
fn permanent(result: &Result<(), StoreError>) -> Option<StoreError> {
    match result {
        Err(e @ StoreError::Connect { .. }) if !e.is_transient() => Some(e.clone()),
        Err(e @ StoreError::Rejected { .. }) => Some(e.clone()),
        _ => None,
    }
}

/// A backend crate's own check as a rule on its table.
#[cfg(any(feature = "postgres", feature = "ftp", feature = "sftp"))]
fn rule(settings: &Settings, error: impl std::fmt::Display) -> SettingsError {
    settings.invalid(error)
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn settings_to_store(e: SettingsError) -> StoreError {
    StoreError::Connect {
        target: "settings".to_string(),
        cause: e.to_string(),
        transient: false,
    }
}

/// `coordination.backend = "sqlite"`: one file, one host.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
struct Sqlite;

#[cfg(feature = "sqlite")]
#[async_trait]
impl StoreBackend for Sqlite {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        sqlite_config(settings).map(drop)
    }

    async fn connect(&self, settings: &Settings, migrate: bool) -> Result<SharedStore, StoreError> {
        let config = sqlite_config(settings).map_err(|e| StoreError::Connect {
            target: "settings".to_string(),
            cause: e.to_string(),
            transient: false,
        })?;
        let mut settings = coord_sqlite::SqliteSettings::new(config.path.to_string_lossy());
        settings.migrate = migrate;
        if migrate
            && let Some(parent) = std::path::Path::new(&settings.path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
        {
            let _ = tokio::fs::create_dir_all(parent).await;
        }
        let store = coord_sqlite::SqliteStore::connect(settings).await?;
        Ok(sql_store("sqlite", store))
    }

    fn migrates_by_default(&self) -> bool {
        true
    }
}

/// A SQL store shared: it also keeps the cluster's configuration, the operators' requests
/// and the ledger's history.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn sql_store<S>(name: &str, store: S) -> SharedStore
where
    S: coord_core::CoordinationStore
        + coord_core::ConfigStore
        + coord_core::RequestStore
        + coord_core::LedgerHistory
        + Clone
        + 'static,
{
    SharedStore::new(name, store.clone())
        .with_config_store(Arc::new(store.clone()))
        .with_history(Arc::new(store.clone()))
        .with_request_store(Arc::new(store))
}

#[cfg(feature = "sqlite")]
fn sqlite_config(settings: &Settings) -> Result<SqliteConfig, SettingsError> {
    if settings.is_present() {
        settings.extract()
    } else {
        Ok(SqliteConfig::default())
    }
}

/// `coordination.backend = "postgres"`.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct Postgres;

#[cfg(feature = "postgres")]
#[async_trait]
impl StoreBackend for Postgres {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        let pg: coord_postgres::PgSettings = settings.extract()?;
        pg.validate().map_err(|e| rule(settings, e))
    }

    async fn connect(&self, settings: &Settings, migrate: bool) -> Result<SharedStore, StoreError> {
        let pg: coord_postgres::PgSettings = settings.extract().map_err(settings_to_store)?;
        let store = if migrate {
            let store = coord_postgres::PgStore::open(pg)?;
            if let Some(e) = permanent(&store.check_schema().await) {
                return Err(e);
            }
            store.migrate().await?;
            store
        } else {
            coord_postgres::PgStore::connect(pg).await?
        };
        Ok(sql_store("postgres", store))
    }
}

/// `coordination.backend = "mysql"` (MySQL or MariaDB).
#[cfg(feature = "mysql")]
#[derive(Debug)]
struct Mysql;

#[cfg(feature = "mysql")]
#[async_trait]
impl StoreBackend for Mysql {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        // coord-mysql's own switch; the listener's is `coordination.migrate_on_start`, which
        // would silently override it.
        if settings.is_present() {
            let probe: std::collections::BTreeMap<String, figment::value::Value> =
                settings.extract()?;
            if probe.contains_key("migrate_on_connect") {
                return Err(settings.invalid(
                    "`migrate_on_connect` is coord-mysql's own switch, not a listener key: \
                     set coordination.migrate_on_start",
                ));
            }
        }
        settings.extract::<coord_mysql::MySqlSettings>().map(drop)
    }

    async fn connect(&self, settings: &Settings, migrate: bool) -> Result<SharedStore, StoreError> {
        let mut my: coord_mysql::MySqlSettings = settings.extract().map_err(settings_to_store)?;
        my.migrate_on_connect = false;
        match coord_mysql::MySqlStore::connect(my.clone()).await {
            Ok(store) => {
                return Ok(sql_store("mysql", store));
            }
            Err(StoreError::Schema(_)) if migrate => {}
            Err(e) => return Err(e),
        }
        my.migrate_on_connect = true;
        let store = coord_mysql::MySqlStore::connect(my).await?;
        Ok(sql_store("mysql", store))
    }
}

/// `source.kind = "local"`: a local (or mounted) directory.
#[derive(Debug)]
struct Local;

#[async_trait]
impl SourceBackend for Local {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        if settings.is_present() {
            return Err(settings.invalid("unknown key: the local source has no settings table"));
        }
        Ok(())
    }

    async fn open(
        &self,
        _settings: &Settings,
        path: &str,
    ) -> Result<(SharedSource, String), BackendError> {
        tokio::fs::create_dir_all(path)
            .await
            .map_err(|e| BackendError::Source {
                path: path.to_string(),
                cause: e.to_string(),
            })?;
        Ok((
            SharedSource::new("local", LocalFs::default()),
            path.to_string(),
        ))
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// `source.kind = "ftp"` (FTP or FTPS).
#[cfg(feature = "ftp")]
#[derive(Debug)]
struct Ftp;

#[cfg(feature = "ftp")]
#[async_trait]
impl SourceBackend for Ftp {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        let ftp: transfer_ftp::FtpSettings = settings.extract()?;
        // What `open` builds: no connection is made.
        transfer_ftp::FtpFs::new(ftp)
            .map(drop)
            .map_err(|e| rule(settings, e))
    }

    async fn open(
        &self,
        settings: &Settings,
        path: &str,
    ) -> Result<(SharedSource, String), BackendError> {
        let ftp: transfer_ftp::FtpSettings = settings.extract()?;
        let fs = transfer_ftp::FtpFs::new(ftp).map_err(|e| BackendError::Source {
            path: path.to_string(),
            cause: e.to_string(),
        })?;
        Ok((SharedSource::new("ftp", fs), path.to_string()))
    }
}

/// `source.kind = "sftp"`.
#[cfg(feature = "sftp")]
#[derive(Debug)]
struct Sftp;

#[cfg(feature = "sftp")]
#[async_trait]
impl SourceBackend for Sftp {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        let sftp: transfer_sftp::SftpSettings = settings.extract()?;
        transfer_sftp::SftpFs::new(sftp)
            .map(drop)
            .map_err(|e| rule(settings, e))
    }

    async fn open(
        &self,
        settings: &Settings,
        path: &str,
    ) -> Result<(SharedSource, String), BackendError> {
        let sftp: transfer_sftp::SftpSettings = settings.extract()?;
        let fs = transfer_sftp::SftpFs::new(sftp).map_err(|e| BackendError::Source {
            path: path.to_string(),
            cause: e.to_string(),
        })?;
        Ok((SharedSource::new("sftp", fs), path.to_string()))
    }
}
