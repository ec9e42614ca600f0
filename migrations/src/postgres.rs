//! PostgreSQL: the migrations in `postgres/`, the migrator, and the printable DDL.

use std::fmt::Write as _;
use std::str::FromStr;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::MigrateError;

static MIGRATOR: Migrator = sqlx::migrate!("./postgres");

/// The version of the latest PostgreSQL migration. A store refuses a database whose
/// `_sqlx_migrations` shows an older one.
pub const POSTGRES_SCHEMA_VERSION: i64 = 6;

/// Applies the pending PostgreSQL migrations to the database `url` names
/// (`postgres://user:password@host:port/database`, libpq-style query parameters such as
/// `sslmode` and `options=-c search_path=...` accepted).
///
/// sqlx's migrator takes an advisory lock first, so concurrent starts apply each migration
/// once and all succeed; an applied migration whose file changed is refused (checksum).
///
/// The future is boxed here, where its types are concrete: sqlx's migrator future is `Send`,
/// but the compiler cannot prove it inside a generic or `async_trait` caller ("implementation
/// of `Send` is not general enough").
pub fn migrate_postgres(
    url: &str,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), MigrateError>> + Send + '_>> {
    Box::pin(migrate_postgres_inner(url))
}

async fn migrate_postgres_inner(url: &str) -> Result<(), MigrateError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| MigrateError::Connect {
        target: "postgres://<unparsable url>".to_owned(),
        cause: e.to_string(),
    })?;
    let target = format!(
        "postgres://{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    );
    let mut conn =
        PgConnection::connect_with(&options)
            .await
            .map_err(|e| MigrateError::Connect {
                target: target.clone(),
                cause: e.to_string(),
            })?;
    let result = MIGRATOR
        // `run_direct`: `run` is generic over `Acquire`, and its future cannot be proven
        // `Send` (sqlx issue 2016).
        .run_direct(&mut conn)
        .await
        .map_err(|e| MigrateError::Migrate {
            target: target.clone(),
            cause: e.to_string(),
        });
    // Closing politely is best effort: the migrations' outcome is what counts.
    let _ = conn.close().await;
    result
}

/// All PostgreSQL migrations' SQL in order, for teams that apply DDL themselves.
///
/// It ends by recording each migration in `_sqlx_migrations` exactly as the migrator would
/// (same version and checksum), so a store accepts the schema and a later `migrate` finds
/// nothing to do. Run it in one transaction (`psql -1 -f`).
pub fn postgres_ddl() -> String {
    let mut out = String::from("-- ftp-listener coordination schema for PostgreSQL\n");
    for migration in MIGRATOR.iter() {
        let _ = writeln!(
            out,
            "\n-- migration {} {}\n{}",
            migration.version,
            migration.description,
            migration.sql.trim_end()
        );
    }
    out.push_str(
        "\n-- the migrator's bookkeeping, so `ftp-listener migrate` and the store's version check \
         agree\n\
         CREATE TABLE IF NOT EXISTS _sqlx_migrations (\n    version BIGINT PRIMARY KEY,\n    \
         description TEXT NOT NULL,\n    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),\n    \
         success BOOLEAN NOT NULL,\n    checksum BYTEA NOT NULL,\n    execution_time BIGINT NOT NULL\n);\n",
    );
    for migration in MIGRATOR.iter() {
        let checksum: String = migration
            .checksum
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(
            out,
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES ({}, '{}', TRUE, '\\x{}'::bytea, 0) ON CONFLICT (version) DO NOTHING;",
            migration.version,
            migration.description.replace('\'', "''"),
            checksum
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_the_latest_migration() {
        let latest = MIGRATOR.iter().map(|m| m.version).max();
        assert_eq!(latest, Some(POSTGRES_SCHEMA_VERSION));
    }

    #[test]
    fn ddl_creates_seed_tables_first_and_records_every_version() {
        let ddl = postgres_ddl();
        let seed = ddl.find("CREATE TABLE IF NOT EXISTS token_holder").unwrap();
        let ledger = ddl
            .find("CREATE TABLE IF NOT EXISTS processed_file")
            .unwrap();
        assert!(seed < ledger);
        for migration in MIGRATOR.iter() {
            assert!(ddl.contains(&format!("VALUES ({}, ", migration.version)));
        }
    }
}
