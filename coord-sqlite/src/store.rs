//! The store handle: the pool, connecting, the schema check, and the call discipline
//! (statement timeout, replacing broken connections).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coord_core::StoreError;
use migrations::SQLITE_SCHEMA_VERSION;
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::classify;
use crate::settings::SqliteSettings;

/// What a failed call leaves behind on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// The call was one batch that opens and commits its own transaction: after an error the
    /// transaction may still be open, so the connection is closed, never reused.
    OpenTransaction,
    /// The call was a single statement, or a sqlx transaction that rolls back on drop: keep
    /// the connection unless the error says it is broken.
    Nothing,
}

/// [`coord_core::CoordinationStore`] on a SQLite file shared by the processes of one host.
///
/// Cheap to clone (an `Arc` around the pool). Each clone shares one pool; separate
/// [`SqliteStore::connect`] calls make independent pools, as separate processes would.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    file: PathBuf,
    statement_timeout: Duration,
    round_trips: AtomicU64,
    /// The file's identity at connect. A file deleted or replaced under running processes
    /// would split them (the old ones keep the unlinked inode, new ones create a new file and
    /// elect a second leader), so every call checks it first.
    identity: Option<FileIdentity>,
}

/// Device and inode of the database file.
type FileIdentity = (u64, u64);

#[cfg(unix)]
fn file_identity(file: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(file: &Path) -> Option<FileIdentity> {
    file.exists().then_some((0, 0))
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("file", &self.inner.file)
            .field("statement_timeout", &self.inner.statement_timeout)
            .finish_non_exhaustive()
    }
}

fn connect_error(file: &Path, cause: impl fmt::Display) -> StoreError {
    StoreError::Connect {
        target: target(file),
        cause: cause.to_string(),
        transient: false,
    }
}

/// How messages name the database: `sqlite://<path>`.
fn target(file: &Path) -> String {
    format!("sqlite://{}", file.display())
}

fn migrate_error(error: migrations::MigrateError) -> StoreError {
    match error {
        migrations::MigrateError::Migrate { target, cause } => {
            StoreError::Schema(format!("migrating {target}: {cause}"))
        }
        migrations::MigrateError::Connect { target, cause } => StoreError::Connect {
            target,
            cause: format!("migrations: {cause}"),
            transient: false,
        },
        other => StoreError::Connect {
            target: "sqlite".into(),
            cause: other.to_string(),
            transient: false,
        },
    }
}

impl SqliteStore {
    /// Opens the pool and checks the schema version. With `settings.migrate` the file is
    /// created and migrated first; without it, a missing file, missing tables or an older
    /// schema is [`StoreError::Schema`] saying to run `ftp-listener migrate`.
    pub async fn connect(settings: SqliteSettings) -> Result<Self, StoreError> {
        settings.validate()?;
        let file = settings.file()?;
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(connect_error(
                &file,
                format!("directory {} does not exist", parent.display()),
            ));
        }
        if file.is_dir() {
            return Err(connect_error(&file, "is a directory, not a database file"));
        }
        if settings.migrate {
            migrations::migrate_sqlite(&file.to_string_lossy())
                .await
                .map_err(migrate_error)?;
        } else if !file.exists() {
            return Err(StoreError::Schema(format!(
                "database file {} does not exist: run `ftp-listener migrate` (or set migrate = \
                 true) to create schema version {SQLITE_SCHEMA_VERSION}",
                file.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(settings.effective_busy_timeout());
        let pool = SqlitePoolOptions::new()
            .max_connections(u32::try_from(settings.pool_size).unwrap_or(u32::MAX))
            .min_connections(0)
            .acquire_timeout(settings.statement_timeout)
            .test_before_acquire(false)
            .connect_with(options);
        let pool = match tokio::time::timeout(settings.statement_timeout, pool).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(connect_error(&file, open_cause(e))),
            Err(_) => {
                return Err(connect_error(
                    &file,
                    format!("timed out after {:?}", settings.statement_timeout),
                ));
            }
        };
        let identity = file_identity(&file);
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                file,
                statement_timeout: settings.statement_timeout,
                round_trips: AtomicU64::new(0),
                identity,
            }),
        };
        store.check_schema().await?;
        tracing::info!(file = %store.inner.file.display(), "sqlite coordination store connected");
        Ok(store)
    }

    /// Applies pending migrations (through the `migrations` crate), then re-checks the
    /// schema version.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::migrate_sqlite(&self.inner.file.to_string_lossy())
            .await
            .map_err(migrate_error)?;
        self.check_schema().await
    }

    /// Calls into the SQLite engine since connect, over every clone of this store (each
    /// statement batch counts one). A diagnostic for metrics and for checking that a tick
    /// costs one call.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        self.read_schema_version()
            .await
            .map_err(|e| e.at_connect(&target(&self.inner.file)))
    }

    async fn read_schema_version(&self) -> Result<(), StoreError> {
        let file = self.inner.file.display();
        let found: Option<i64> = match self
            .call("schema check", "-", Leftover::Nothing, async |conn| {
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut **conn)
                    .await
            })
            .await
        {
            Ok(found) => found,
            Err(StoreError::Schema(_)) => {
                return Err(StoreError::Schema(format!(
                    "database {file} has no migrations table (_sqlx_migrations), schema \
                     version {SQLITE_SCHEMA_VERSION} is required: run `ftp-listener migrate`"
                )));
            }
            Err(e) => return Err(e),
        };
        let found = found.unwrap_or(0);
        if found < SQLITE_SCHEMA_VERSION {
            return Err(StoreError::Schema(format!(
                "database {file} is at schema version {found}, version \
                 {SQLITE_SCHEMA_VERSION} is required: run `ftp-listener migrate`"
            )));
        }
        if found > SQLITE_SCHEMA_VERSION {
            tracing::warn!(
                found,
                expected = SQLITE_SCHEMA_VERSION,
                "sqlite schema is newer than this build; continuing"
            );
        }
        Ok(())
    }

    /// Runs `work` on a pooled connection under the statement timeout. On a timeout, or an
    /// error that leaves the connection unusable (see [`Leftover`]), the connection is closed
    /// instead of returned to the pool, so the next call gets a fresh one. Never retries.
    pub(crate) async fn call<T, F>(
        &self,
        operation: &'static str,
        group: &str,
        leftover: Leftover,
        work: F,
    ) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut PoolConnection<Sqlite>) -> Result<T, sqlx::Error>,
    {
        let timeout = self.inner.statement_timeout;
        if file_identity(&self.inner.file) != self.inner.identity {
            return Err(StoreError::Unavailable {
                operation,
                group: group.to_owned(),
                cause: format!(
                    "database file {} was removed or replaced since this process opened it; \
                     restart the process",
                    self.inner.file.display()
                ),
            });
        }
        // One deadline for waiting on the pool and running the work.
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || StoreError::Timeout {
            operation,
            group: group.to_owned(),
            after: timeout,
        };
        let conn = tokio::time::timeout_at(deadline, self.inner.pool.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| classify(operation, group, e).error)?;
        // Closes the connection unless disarmed: if the caller drops this future mid-call,
        // the engine may still run (part of) a batch whose results nobody reads, and sqlx
        // stops at the first unread result, possibly after BEGIN and before COMMIT. Closing
        // the connection rolls that transaction back instead of returning it to the pool
        // holding the write lock every other process needs.
        let mut guard = CloseUnlessKept { conn, keep: false };
        match tokio::time::timeout_at(deadline, work(&mut guard.conn)).await {
            Ok(Ok(value)) => {
                guard.keep = true;
                Ok(value)
            }
            Ok(Err(e)) => {
                let failure = classify(operation, group, e);
                if !failure.broken && leftover == Leftover::Nothing {
                    guard.keep = true;
                }
                tracing::debug!(operation, group, error = %failure.error, "sqlite call failed");
                Err(failure.error)
            }
            Err(_) => Err(timed_out()),
        }
    }

    /// Counts one call into the engine.
    pub(crate) fn trip(&self) {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pooled connection that is closed on drop, not returned to the pool, unless the call
/// finished cleanly and set `keep`.
struct CloseUnlessKept {
    conn: PoolConnection<Sqlite>,
    keep: bool,
}

impl Drop for CloseUnlessKept {
    fn drop(&mut self) {
        if !self.keep {
            self.conn.close_on_drop();
        }
    }
}

/// SQLite's "unable to open database file" does not say why; add what usually causes it.
fn open_cause(error: sqlx::Error) -> String {
    let text = match &error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    if text.contains("unable to open") {
        format!("{text} (is the directory writable? WAL mode creates -wal and -shm files there)")
    } else {
        text
    }
}
