//! [`MySqlStore`]: the pool, connecting, the schema check, the migrator, and the one way every
//! operation runs (statement timeout, failed connections closed). The operations themselves
//! are in `coordination.rs` (election) and `ledger.rs` (ledger).

use std::sync::Arc;
use std::time::Duration;

use coord_core::{Fence, StoreError};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, SslOpts};
use tokio::time::{Instant, timeout_at};

use crate::error::{Failure, store_error};
use crate::settings::MySqlSettings;
use crate::sql;
use coord_core::{Secret, TlsMode};

/// The group field of errors that concern no group (connect, schema, migrate); they are
/// turned into [`StoreError::Connect`] (see [`StoreError::at_connect`]) before they leave.
const NO_GROUP: &str = "-";

/// A [`CoordinationStore`] on MySQL 8 or MariaDB 10.11. Cheap to clone (the pool is shared).
///
/// Ledger batches are bounded: `claim` and `record` cut their input into chunks of at most
/// 500 versions (and about 1 MiB of paths), each chunk one multi-statement batch in one round
/// trip, fenced on its own and under its own statement timeout, so no lock outlives the
/// batch. A chunk is all or nothing; when a later chunk fails (fenced, timed out, store
/// unavailable), the call returns that error and the earlier chunks stay applied.
/// `load_ledger` reads pages of 5,000 rows by keyset on the primary key, each page its own
/// statement (one consistent read per page, not for the whole ledger).
#[derive(Clone)]
pub struct MySqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    settings: MySqlSettings,
    /// The password read at connect (from `password`, `password_env` or `password_file`),
    /// for the migrator's connection.
    password: Option<Secret>,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Marks one client-server round trip, for the instrumentation that counts them per tick
/// (target `coord_mysql::round_trip`, level TRACE).
pub(crate) fn round_trip(operation: &'static str) {
    tracing::trace!(target: "coord_mysql::round_trip", operation, "round trip");
}

impl MySqlStore {
    /// Connects, checks the schema version (a missing or older schema is
    /// [`StoreError::Schema`] saying to run the migrations; with
    /// [`MySqlSettings::migrate_on_connect`] they are applied first) and opens the pool.
    /// One connection attempt, bounded by `connect_timeout`: no retry loop.
    pub async fn connect(settings: MySqlSettings) -> Result<Self, StoreError> {
        settings.validate()?;
        let target = settings.target();
        Self::open(settings)
            .await
            .map_err(|e| e.at_connect(&target))
    }

    async fn open(settings: MySqlSettings) -> Result<Self, StoreError> {
        let password = settings.resolve_password()?;
        if settings.migrate_on_connect {
            migrate_with(&settings, password.as_ref()).await?;
        }
        let base = base_opts(&settings, password.as_ref())?;
        let deadline = Instant::now() + settings.connect_timeout;
        let mut probe = match timeout_at(deadline, Conn::new(base.clone())).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connect_error(&settings, e)),
            Err(_) => {
                return Err(StoreError::Timeout {
                    operation: "connect",
                    group: NO_GROUP.to_string(),
                    after: settings.connect_timeout,
                });
            }
        };
        let checked = timeout_at(deadline, probe_server(&mut probe, &settings)).await;
        // The probe's outcome is known; closing it is best effort.
        let _ = timeout_at(deadline, probe.disconnect()).await;
        let flavour = match checked {
            Ok(result) => result?,
            Err(_) => {
                return Err(StoreError::Timeout {
                    operation: "schema check",
                    group: NO_GROUP.to_string(),
                    after: settings.connect_timeout,
                });
            }
        };
        let pool = Pool::new(pool_opts(&settings, base, flavour));
        tracing::info!(target_db = %settings.target(), ?flavour, "mysql coordination store connected");
        Ok(MySqlStore {
            inner: Arc::new(Inner {
                pool,
                settings,
                password,
            }),
        })
    }

    /// Applies the pending migrations (the `migrations` crate: checksummed, serialised by a
    /// server lock, so concurrent calls are safe), then checks the schema version again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate_with(&self.inner.settings, self.inner.password.as_ref()).await?;
        self.run("schema check", NO_GROUP, None, async |conn: &mut Conn| {
            check_schema(conn).await
        })
        .await
        .map_err(|e| e.at_connect(&self.inner.settings.target()))
    }

    /// The settings this store was built with.
    pub fn settings(&self) -> &MySqlSettings {
        &self.inner.settings
    }

    /// Runs `f` on a pooled connection within the statement timeout. A connection that
    /// failed or timed out may be mid-transaction or broken: it is closed (in the
    /// background) instead of returning to the pool, and the next call gets a fresh one.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        group: &str,
        fence: Option<&Fence>,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let after = self.inner.settings.statement_timeout;
        let deadline = Instant::now() + after;
        let timed_out = || StoreError::Timeout {
            operation,
            group: group.to_string(),
            after,
        };
        let mut conn = match timeout_at(deadline, self.inner.pool.get_conn()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(store_error(operation, group, after, Failure::Db(e))),
            Err(_) => return Err(timed_out()),
        };
        match timeout_at(deadline, f(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => {
                if failure.taints_connection() {
                    discard(conn);
                }
                Err(match (failure, fence) {
                    (Failure::Fenced, Some(fence)) => StoreError::fenced(operation, fence),
                    (failure, _) => store_error(operation, group, after, failure),
                })
            }
            Err(_) => {
                discard(conn);
                Err(timed_out())
            }
        }
    }
}

/// Closes a connection that must not be reused, without blocking the caller. `disconnect`
/// marks it disconnected first, so even if the close is cut short the pool drops it.
fn discard(conn: Conn) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
    });
}

/// Server flavour: the statement-timeout variable differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    MariaDb,
    MySql,
}

fn base_opts(settings: &MySqlSettings, password: Option<&Secret>) -> Result<Opts, StoreError> {
    let mut builder = OptsBuilder::default()
        .ip_or_hostname(settings.host.clone())
        .tcp_port(settings.port)
        .user(Some(settings.user.clone()))
        .pass(password.map(|p| p.expose().to_owned()))
        .db_name(Some(settings.database.clone()))
        .prefer_socket(false);
    if settings.tls != TlsMode::Disable {
        // mysql_async builds its rustls config with the process-wide provider; install ring
        // unless the process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A CA file that is given is used with `require` too; `verify-full` has one
        // (validated).
        let ssl = match &settings.tls_ca_file {
            Some(ca) => SslOpts::default().with_root_certs(vec![ca.clone().into()]),
            None => SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        };
        builder = builder.ssl_opts(Some(ssl));
    }
    Ok(builder.into())
}

fn pool_opts(settings: &MySqlSettings, base: Opts, flavour: Flavour) -> Opts {
    let timeout = settings.statement_timeout;
    let lock_wait_secs = timeout.as_secs().max(1);
    let statement_timeout = match flavour {
        Flavour::MariaDb => format!(
            "SET SESSION max_statement_time = {:.3}",
            timeout.as_secs_f64()
        ),
        Flavour::MySql => format!("SET SESSION max_execution_time = {}", timeout.as_millis()),
    };
    // Keep one connection warm (the tick's), up to `pool_size` under load; extra idle ones
    // close after a minute.
    let constraints = PoolConstraints::new(1, settings.pool_size.max(1))
        .unwrap_or(mysql_async::DEFAULT_POOL_CONSTRAINTS);
    OptsBuilder::from_opts(base)
        .init(vec![
            "SET time_zone = '+00:00'".to_string(),
            // Strict: a value that does not fit is an error, never a silent truncation.
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
             ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
                .to_string(),
            format!("SET SESSION innodb_lock_wait_timeout = {lock_wait_secs}"),
            statement_timeout,
        ])
        .pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(Duration::from_secs(60))
                // A reset costs a round trip per checkout and would drop the session's
                // time zone and timeouts; connections are never returned mid-transaction.
                .with_reset_connection(false),
        )
        .into()
}

fn connect_error(settings: &MySqlSettings, e: mysql_async::Error) -> StoreError {
    match e {
        mysql_async::Error::Server(s) => StoreError::Rejected {
            operation: "connect",
            group: NO_GROUP.to_string(),
            cause: format!("as `{}`: {} ({})", settings.user, s.message, s.code),
        },
        // Settings the server cannot meet: retrying will not help.
        mysql_async::Error::Driver(
            d @ (mysql_async::DriverError::NoClientSslFlagFromServer
            | mysql_async::DriverError::UnknownAuthPlugin { .. }
            | mysql_async::DriverError::CleartextPluginDisabled
            | mysql_async::DriverError::MysqlOldPasswordDisabled),
        ) => StoreError::Rejected {
            operation: "connect",
            group: NO_GROUP.to_string(),
            cause: d.to_string(),
        },
        other => StoreError::Unavailable {
            operation: "connect",
            group: NO_GROUP.to_string(),
            cause: other.to_string(),
        },
    }
}

async fn probe_server(conn: &mut Conn, settings: &MySqlSettings) -> Result<Flavour, StoreError> {
    let timeout = settings.connect_timeout;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| store_error("connect", NO_GROUP, timeout, Failure::Db(e)))?;
    let flavour = if version.unwrap_or_default().contains("MariaDB") {
        Flavour::MariaDb
    } else {
        Flavour::MySql
    };
    check_schema(conn)
        .await
        .map_err(|f| store_error("schema check", NO_GROUP, timeout, f))?;
    Ok(flavour)
}

/// Refuses a database without migrations, with a half-applied one, or older than this
/// build; a newer one is accepted with a warning (migrations only add).
async fn check_schema(conn: &mut Conn) -> Result<(), Failure> {
    round_trip("schema check");
    let row: Option<(Option<i64>, Option<i64>)> = match conn.query_first(sql::SCHEMA_VERSION).await
    {
        Ok(row) => row,
        Err(mysql_async::Error::Server(s)) if s.code == 1146 => {
            return Err(Failure::Schema(format!(
                "no migrations table (_sqlx_migrations): schema version 0, this build needs {}",
                migrations::MYSQL_SCHEMA_VERSION
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let (found, failed) = row.unwrap_or((None, None));
    let found = found.unwrap_or(0);
    let required = migrations::MYSQL_SCHEMA_VERSION;
    if failed.unwrap_or(0) > 0 {
        return Err(Failure::Schema(format!(
            "a migration failed half-way (_sqlx_migrations has success = false); fix it by hand \
             and delete its row, schema version {found}, this build needs {required}"
        )));
    }
    if found < required {
        return Err(Failure::Schema(format!(
            "schema version {found} is older than {required}, which this build needs"
        )));
    }
    if found > required {
        tracing::warn!(
            found,
            required,
            "schema is newer than this build; continuing"
        );
    }
    Ok(())
}

async fn migrate_with(
    settings: &MySqlSettings,
    password: Option<&Secret>,
) -> Result<(), StoreError> {
    migrations::migrate_mysql(&settings.migration_url(password))
        .await
        .map_err(|e| match e {
            // Could not reach or log in to the server: nothing about the schema is known.
            migrations::MigrateError::Connect { target, cause } => StoreError::Connect {
                target,
                cause: format!("migrations: {cause}"),
                transient: true,
            },
            other => StoreError::Schema(other.to_string()),
        })
}

/// Sends a batch (one round trip) and reads every result set: `(has_columns, rows)` per
/// statement. An error of any statement of the batch is returned: mysql_async parks the error
/// of a later statement as the pending result, where `is_empty` does not see it, so the final
/// `drop_result` is what surfaces it. Never skip it: a failed INSERT inside a batch would
/// otherwise look like success.
pub(crate) async fn batch(
    conn: &mut Conn,
    query: String,
) -> Result<Vec<(bool, Vec<Row>)>, mysql_async::Error> {
    let mut result = conn.query_iter(query).await?;
    let mut sets = Vec::new();
    while !result.is_empty() {
        let has_columns = !result.columns_ref().is_empty();
        let rows: Vec<Row> = result.collect().await?;
        sets.push((has_columns, rows));
    }
    result.drop_result().await?;
    Ok(sets)
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_migrate_hint_names_the_command() {
        assert!(crate::error::RUN_MIGRATE.contains("ftp-listener migrate"));
    }
}
