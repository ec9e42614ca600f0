//! The SQLite dialect: `migrations/sqlite/NNNN_name.sql`.
//!
//! sqlx's SQLite migrator takes no lock of its own (its `lock()` is a no-op), so two processes
//! starting at once could both try to apply the same migration. [`migrate_sqlite`] therefore
//! runs the whole migrator inside one `BEGIN IMMEDIATE` transaction: the second process waits
//! on the busy timeout for the first to commit, then finds every migration applied.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::MigrateError;

static MIGRATOR: Migrator = sqlx::migrate!("./sqlite");

/// The version of the latest SQLite migration; a store refuses a database below it.
pub const SQLITE_SCHEMA_VERSION: i64 = 6;

/// How long a migrating process waits for another one that holds the write lock.
const MIGRATE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies every pending SQLite migration to the database at `url` (a `sqlite://` URL or a
/// plain file path), creating the file if it does not exist. Applying twice is a no-op;
/// concurrent callers serialise on SQLite's write lock.
///
/// The future is boxed here, where its types are concrete: sqlx's migrator future is `Send`,
/// but the compiler cannot prove it inside a generic or `async_trait` caller ("implementation
/// of `Send` is not general enough").
pub fn migrate_sqlite(
    url: &str,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), MigrateError>> + Send + '_>> {
    Box::pin(migrate_sqlite_inner(url))
}

async fn migrate_sqlite_inner(url: &str) -> Result<(), MigrateError> {
    let (options, target) = sqlite_options(url)?;
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(MIGRATE_BUSY_TIMEOUT);
    // Opening runs `PRAGMA journal_mode = WAL`, which SQLite may refuse with SQLITE_BUSY at
    // once, without waiting on the busy handler, while another process creates or converts
    // the same new file. Retry that case, within the same patience as the write lock.
    let deadline = std::time::Instant::now() + MIGRATE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    let mut conn = loop {
        match options.connect().await {
            Ok(conn) => break conn,
            Err(e) if is_busy(&e) && std::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(MigrateError::Connect {
                    target: target.clone(),
                    cause: open_cause(&e),
                });
            }
        }
    };
    let failed = |e: &dyn std::fmt::Display| MigrateError::Migrate {
        target: target.clone(),
        cause: e.to_string(),
    };
    // One write transaction around the whole run: the migrator's own per-migration
    // transactions become savepoints inside it.
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| failed(&e))?;
    MIGRATOR
        .run_direct(&mut *tx)
        .await
        .map_err(|e| failed(&e))?;
    tx.commit().await.map_err(|e| failed(&e))?;
    conn.close().await.map_err(|e| failed(&e))?;
    Ok(())
}

/// SQLITE_BUSY or SQLITE_LOCKED (any extended code), as sqlx reports them.
fn is_busy(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<u32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Every SQLite migration's SQL in order, for teams that apply DDL themselves. It also creates
/// sqlx's `_sqlx_migrations` table and records each migration with its checksum, so a store
/// accepts the result and a later [`migrate_sqlite`] finds nothing to do.
pub fn sqlite_ddl() -> String {
    let mut out = String::from(
        "-- SQLite schema for the HA FTP/SFTP listener (apply in one transaction).\n\
         CREATE TABLE IF NOT EXISTS _sqlx_migrations (\n    \
         version BIGINT PRIMARY KEY,\n    \
         description TEXT NOT NULL,\n    \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
         success BOOLEAN NOT NULL,\n    \
         checksum BLOB NOT NULL,\n    \
         execution_time BIGINT NOT NULL\n);\n",
    );
    for migration in MIGRATOR.iter() {
        out.push_str(&format!(
            "\n-- migration {} {}\n",
            migration.version, migration.description
        ));
        out.push_str(migration.sql.trim_end());
        out.push('\n');
        out.push_str(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({}, '{}', TRUE, X'{}', -1);\n",
            migration.version,
            migration.description.replace('\'', "''"),
            hex(&migration.checksum),
        ));
    }
    out
}

/// SQLite's "unable to open database file" does not say why; add what usually causes it.
fn open_cause(error: &sqlx::Error) -> String {
    let text = match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    if text.contains("unable to open") {
        format!(
            "{text} (is the directory writable? WAL mode also creates -wal and -shm files there)"
        )
    } else {
        text
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Connect options and a printable target (`sqlite://path`) for `url`.
fn sqlite_options(url: &str) -> Result<(SqliteConnectOptions, String), MigrateError> {
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| MigrateError::Connect {
            target: url.to_owned(),
            cause: e.to_string(),
        })?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    let target = format!("sqlite://{}", options.get_filename().display());
    check_parent(options.get_filename(), &target)?;
    Ok((options, target))
}

/// SQLite's own message for a missing directory is "unable to open database file"; name the
/// directory instead.
fn check_parent(file: &Path, target: &str) -> Result<(), MigrateError> {
    let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !parent.is_dir() {
        return Err(MigrateError::Connect {
            target: target.to_owned(),
            cause: format!("directory {} does not exist", parent.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_latest_migration() {
        let latest = MIGRATOR.iter().map(|m| m.version).max();
        assert_eq!(latest, Some(SQLITE_SCHEMA_VERSION));
    }

    #[test]
    fn ddl_lists_every_migration_in_order() {
        let ddl = sqlite_ddl();
        let first = ddl.find("-- migration 1 ").unwrap();
        let second = ddl.find("-- migration 2 ").unwrap();
        assert!(first < second);
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS token_holder"));
        assert!(ddl.contains("CREATE TABLE processed_file"));
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = sqlite_options("/no/such/dir/x.db").unwrap_err();
        assert!(
            err.to_string().contains("/no/such/dir does not exist"),
            "{err}"
        );
    }
}
