//! The MySQL dialect (MySQL 8 and MariaDB 10.11): `migrations/mysql/NNNN_name.sql`.
//!
//! Every migration uses only syntax both servers accept. MySQL 8 has no
//! `ADD COLUMN IF NOT EXISTS`, so the upgrades are plain `ALTER TABLE`s that run exactly once
//! (sqlx records each applied version), one `ALTER TABLE` per migration: DDL commits
//! implicitly on both servers, and a single `ALTER TABLE` is atomic, so a migration is never
//! left half-applied. Table creations are `CREATE TABLE IF NOT EXISTS`, so a database made
//! with the seeds' DDL is upgraded in place.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};

use crate::MigrateError;

static MYSQL_MIGRATOR: Migrator = sqlx::migrate!("./mysql");

/// The version of the latest MySQL migration; a store refuses a database whose applied
/// version is older.
pub const MYSQL_SCHEMA_VERSION: i64 = 9;

/// Applies the pending MySQL migrations to the database at `url`
/// (`mysql://user:password@host:port/database`). Checksummed (an edited, already applied
/// migration is refused) and serialised by sqlx's `GET_LOCK`, so concurrent starts are safe:
/// the second waits for the first, then finds nothing to do.
///
/// The future is boxed here, where its types are concrete: sqlx's migrator future is `Send`,
/// but the compiler cannot prove it inside a generic or `async_trait` caller ("implementation
/// of `Send` is not general enough").
pub fn migrate_mysql(
    url: &str,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), MigrateError>> + Send + '_>> {
    Box::pin(migrate_mysql_inner(url))
}

async fn migrate_mysql_inner(url: &str) -> Result<(), MigrateError> {
    let target = mysql_target(url);
    let options = MySqlConnectOptions::from_str(url).map_err(|e| MigrateError::Connect {
        target: target.clone(),
        cause: redact(&e.to_string(), url),
    })?;
    let mut conn =
        MySqlConnection::connect_with(&options)
            .await
            .map_err(|e| MigrateError::Connect {
                target: target.clone(),
                cause: redact(&e.to_string(), url),
            })?;
    let result = run_locked(&mut conn, &target, url).await;
    // Closing politely is best effort: the migrations' outcome is already known (and
    // closing the session frees the lock if the release did not happen).
    let _ = conn.close().await;
    result
}

/// How long a migrator waits for another one to finish.
const LOCK_WAIT_SECS: u32 = 300;

/// Runs the migrator under our own `GET_LOCK`. sqlx takes `GET_LOCK(name, -1)`, which MySQL
/// reads as "wait forever" but MariaDB answers with NULL at once, without locking: on
/// MariaDB two concurrent migrators would both apply migration 1 and one would find it
/// "partially applied". A positive timeout means the same on both servers.
async fn run_locked(
    conn: &mut MySqlConnection,
    target: &str,
    url: &str,
) -> Result<(), MigrateError> {
    let failed = |cause: String| MigrateError::Migrate {
        target: target.to_string(),
        cause: redact(&cause, url),
    };
    let lock_name = "ftp-listener-migrate:".to_string();
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(CONCAT(?, DATABASE()), ?)")
        .bind(&lock_name)
        .bind(LOCK_WAIT_SECS)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| failed(format!("cannot take the migration lock: {e}")))?;
    if locked != Some(1) {
        return Err(failed(format!(
            "another migration held the lock for {LOCK_WAIT_SECS}s"
        )));
    }
    let result = MYSQL_MIGRATOR
        .run_direct(&mut *conn)
        .await
        .map_err(|e| failed(e.to_string()));
    let released = sqlx::query("SELECT RELEASE_LOCK(CONCAT(?, DATABASE()))")
        .bind(&lock_name)
        .execute(&mut *conn)
        .await;
    result?;
    released
        .map(|_| ())
        .map_err(|e| failed(format!("cannot release the migration lock: {e}")))
}

/// Every MySQL migration's SQL, in order, each under a comment with its version and name: for
/// teams that apply DDL themselves. Applies as-is to an empty database (or one made with the
/// seeds' DDL). It also records each version in `_sqlx_migrations` (the table and checksums
/// sqlx uses), so a store accepts the schema and a later `migrate` finds nothing to do.
pub fn mysql_ddl() -> String {
    let mut out = String::from(
        "-- sqlx's migration ledger, so that stores accept the schema and `migrate` skips it\n\
         CREATE TABLE IF NOT EXISTS _sqlx_migrations (\n    version BIGINT PRIMARY KEY,\n    \
         description TEXT NOT NULL,\n    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    \
         success BOOLEAN NOT NULL,\n    checksum BLOB NOT NULL,\n    execution_time BIGINT NOT NULL\n);\n\n",
    );
    for migration in MYSQL_MIGRATOR.iter() {
        out.push_str(&format!(
            "-- migration {:04} {}\n",
            migration.version, migration.description
        ));
        out.push_str(migration.sql.trim_end());
        let checksum: String = migration
            .checksum
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push_str(&format!(
            "\nINSERT IGNORE INTO _sqlx_migrations \
             (version, description, success, checksum, execution_time) \
             VALUES ({}, '{}', TRUE, X'{checksum}', 0);\n\n",
            migration.version,
            migration.description.replace('\'', "''")
        ));
    }
    out
}

/// `mysql://host:port/database` for messages, never with credentials.
fn mysql_target(url: &str) -> String {
    match MySqlConnectOptions::from_str(url) {
        Ok(o) => format!(
            "mysql://{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "mysql://(unparsable url)".to_string(),
    }
}

/// Removes the URL's password from a driver message, in case one quotes it.
fn redact(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "***"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_latest_migration() {
        let latest = MYSQL_MIGRATOR.iter().map(|m| m.version).max();
        assert_eq!(latest, Some(MYSQL_SCHEMA_VERSION));
    }

    #[test]
    fn ddl_lists_every_migration_in_order() {
        let ddl = mysql_ddl();
        let first = ddl.find("CREATE TABLE IF NOT EXISTS token_holder").unwrap();
        let alter = ddl.find("ALTER TABLE token_holder").unwrap();
        let ledger = ddl
            .find("CREATE TABLE IF NOT EXISTS processed_file")
            .unwrap();
        assert!(first < alter && alter < ledger);
        assert!(!ddl.contains("IF NOT EXISTS incarnation"));
    }

    #[test]
    fn target_and_messages_hide_the_password() {
        let url = "mysql://app:s3cr%21t@db.example:3307/coord";
        assert_eq!(mysql_target(url), "mysql://db.example:3307/coord");
        assert_eq!(redact("login s3cr%21t failed", url), "login *** failed");
    }
}
