//! [`PgStore`]: the pool, the schema check, the migrator, and the one way every statement
//! is sent (timeout, error mapping, broken connections dropped).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coord_core::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{self, Connection, RUN_MIGRATE};
use crate::settings::{PgSettings, encode};
use crate::tls;
use coord_core::TlsMode;

/// How much longer than the server's `statement_timeout` the client waits for an answer
/// before it gives the connection up (a server that is gone never sends the cancel).
const CLIENT_MARGIN: Duration = Duration::from_millis(500);

/// The longest a `migrate` call may take, lock wait included.
const MIGRATE_LIMIT: Duration = Duration::from_secs(120);

/// The coordination store on PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The password read at open (from `password`, `password_env` or `password_file`), for
    /// the migrator's connection.
    password: Option<coord_core::Secret>,
    settings: PgSettings,
    /// `postgres://host:port/database`, for messages (no credentials).
    target: String,
    round_trips: AtomicU64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Opens the pool and checks that the schema is at
    /// [`migrations::POSTGRES_SCHEMA_VERSION`] or newer: a missing or older schema is
    /// [`StoreError::Schema`] naming the versions and saying to run `ftp-listener migrate`.
    pub async fn connect(settings: PgSettings) -> Result<Self, StoreError> {
        let store = Self::open(settings)?;
        store.check_schema().await?;
        Ok(store)
    }

    /// Builds the pool without touching the server (connections open on first use) and
    /// without the schema check: for [`PgStore::migrate`] before the first
    /// [`PgStore::check_schema`].
    pub fn open(settings: PgSettings) -> Result<Self, StoreError> {
        let settings = settings.resolved()?;
        let target = format!(
            "postgres://{}:{}/{}",
            settings.host, settings.port, settings.database
        );
        let mut config = tokio_postgres::Config::new();
        config
            .host(&settings.host)
            .port(settings.port)
            .user(&settings.user)
            .dbname(&settings.database)
            .application_name("ftp-listener")
            .connect_timeout(settings.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .options(session_options(&settings));
        let password = settings.resolve_password()?;
        if let Some(password) = &password {
            config.password(password.expose());
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = tls::client_config(settings.tls, settings.tls_ca_file.as_deref()).map_err(
            |e| match e {
                StoreError::Connect {
                    cause, transient, ..
                } => StoreError::Connect {
                    target: target.clone(),
                    cause,
                    transient,
                },
                other => other,
            },
        )?;
        let manager = match tls {
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(config, NoTls, manager_config)
            }
            Some(client) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(config, MakeRustlsConnect::new(client), manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                cause: format!("connection pool: {e}"),
                transient: false,
            })?;
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                password,
                settings,
                target,
                round_trips: AtomicU64::new(0),
            }),
        })
    }

    /// Checks that the migrations were applied up to this build's version. Failing to reach
    /// the server is [`StoreError::Connect`].
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        self.read_schema_version()
            .await
            .map_err(|e| self.connect_failure(e))
    }

    /// An error met while opening or migrating, as [`StoreError::Connect`] at this server
    /// (the pool's errors already name it: not twice).
    fn connect_failure(&self, error: StoreError) -> StoreError {
        let target = &self.inner.target;
        match error.at_connect(target) {
            StoreError::Connect {
                target,
                cause,
                transient,
            } => StoreError::Connect {
                cause: cause
                    .strip_prefix(&format!("{target}: "))
                    .map_or_else(|| cause.clone(), str::to_owned),
                target,
                transient,
            },
            other => other,
        }
    }

    async fn read_schema_version(&self) -> Result<(), StoreError> {
        let required = migrations::POSTGRES_SCHEMA_VERSION;
        let where_ = self.schema_label();
        let rows = match self
            .query(
                "connect",
                "*",
                "SELECT max(version) FROM _sqlx_migrations WHERE success",
                &[],
            )
            .await
        {
            Ok(rows) => rows,
            Err(StoreError::Schema(_)) => {
                return Err(StoreError::Schema(format!(
                    "{} {where_}: no migrations applied (table _sqlx_migrations missing), \
                     found version none, required {required}; {RUN_MIGRATE}",
                    self.inner.target
                )));
            }
            Err(other) => return Err(other),
        };
        let found: Option<i64> = rows.first().and_then(|r| r.get(0));
        match found {
            Some(v) if v >= required => {
                if v > required {
                    tracing::warn!(
                        found = v,
                        required,
                        "postgres schema is newer than this build; continuing"
                    );
                }
                Ok(())
            }
            found => Err(StoreError::Schema(format!(
                "{} {where_}: found schema version {}, required {required}; {RUN_MIGRATE}",
                self.inner.target,
                found.map_or_else(|| "none".to_owned(), |v| v.to_string()),
            ))),
        }
    }

    fn schema_label(&self) -> String {
        match &self.inner.settings.schema {
            Some(schema) => format!("schema `{schema}`"),
            None => "default schema".to_owned(),
        }
    }

    /// Applies the pending migrations (sqlx's migrator: checksummed, locked against concurrent
    /// starts), creating the configured schema first if needed, then checks the version.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let settings = &self.inner.settings;
        if let Some(schema) = &settings.schema {
            // The name was checked to be a plain lowercase identifier. Concurrent
            // `CREATE SCHEMA IF NOT EXISTS` can still collide on the catalog's unique index,
            // so an advisory lock serialises the creators; and an existing schema is left
            // alone, so a role without CREATE on the database can migrate a schema it owns.
            let sql = format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('ftp-listener create schema')); \
                 DO $$ BEGIN \
                   IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = '{schema}') THEN \
                     CREATE SCHEMA \"{schema}\"; \
                   END IF; \
                 END $$; COMMIT;"
            );
            self.query_unprepared("migrate", &sql)
                .await
                .map_err(|e| self.connect_failure(e))?;
        }
        let url = self.migrator_url();
        let outcome = tokio::time::timeout(MIGRATE_LIMIT, migrations::migrate_postgres(&url))
            .await
            .map_err(|_| StoreError::Connect {
                target: self.inner.target.clone(),
                cause: format!("migrations did not finish within {MIGRATE_LIMIT:?}"),
                transient: true,
            })?;
        outcome.map_err(|e| match e {
            migrations::MigrateError::Connect { target, cause } => StoreError::Connect {
                target,
                cause: format!("migrations: {cause}"),
                transient: true,
            },
            _ => StoreError::Schema(e.to_string()),
        })?;
        tracing::info!(database = %self.inner.target, schema = ?settings.schema, "postgres migrations applied");
        self.check_schema().await
    }

    fn migrator_url(&self) -> String {
        let s = &self.inner.settings;
        let credentials = match &self.inner.password {
            Some(p) => format!("{}:{}", encode(&s.user), encode(p.expose())),
            None => encode(&s.user),
        };
        let host = if s.host.contains(':') {
            format!("[{}]", s.host)
        } else {
            s.host.clone()
        };
        // A CA file that is given is used, with `require` too (see `tls.rs`).
        let mode = match (s.tls, &s.tls_ca_file) {
            (TlsMode::Require, Some(_)) => TlsMode::VerifyFull,
            (mode, _) => mode,
        };
        let mut url = format!(
            "postgres://{credentials}@{host}:{}/{}?sslmode={}",
            s.port,
            encode(&s.database),
            mode.as_str()
        );
        if mode == TlsMode::VerifyFull
            && let Some(ca) = &s.tls_ca_file
        {
            url.push_str(&format!("&sslrootcert={}", encode(&ca.to_string_lossy())));
        }
        if let Some(schema) = &s.schema {
            url.push_str(&format!(
                "&options={}",
                encode(&format!("-c search_path={schema}"))
            ));
        }
        url
    }

    /// Statements sent to the server since the store was opened, prepares included: the
    /// number of round trips (for metrics and the per-tick budget of DESIGN §2).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    fn pg_error(
        &self,
        e: &tokio_postgres::Error,
        operation: &'static str,
        group: &str,
    ) -> (StoreError, Connection) {
        error::from_pg(e, operation, group, self.inner.settings.statement_timeout)
    }

    async fn client(&self, operation: &'static str, group: &str) -> Result<Object, StoreError> {
        let s = &self.inner.settings;
        self.inner.pool.get().await.map_err(|e| {
            let mapped = error::from_pool(
                &e,
                operation,
                group,
                &self.inner.target,
                s.statement_timeout,
                s.connect_timeout,
            );
            tracing::debug!(error = %mapped, "postgres connection failed");
            mapped
        })
    }

    /// Sends one statement (prepared once per connection) and returns its rows. The call is
    /// bounded by the statement timeout; a connection that broke or timed out is dropped, so
    /// the next call opens a new one. Never retries.
    pub(crate) async fn query(
        &self,
        operation: &'static str,
        group: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut in_flight = InFlight(Some(self.client(operation, group).await?));
        let limit = self.inner.settings.statement_timeout + CLIENT_MARGIN;
        let result = {
            let client = in_flight.client();
            tokio::time::timeout(limit, async {
                let cached = client.statement_cache.size();
                let statement = client.prepare_cached(sql).await?;
                if client.statement_cache.size() > cached {
                    self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                }
                self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                client.query(&statement, params).await
            })
            .await
        };
        match result {
            Ok(Ok(rows)) => {
                in_flight.done();
                Ok(rows)
            }
            Ok(Err(e)) => {
                let (mapped, connection) = self.pg_error(&e, operation, group);
                if connection == Connection::Keep {
                    in_flight.done();
                }
                Err(mapped)
            }
            // Dropping `in_flight` armed discards the connection.
            Err(_) => Err(StoreError::Timeout {
                operation,
                group: group.to_owned(),
                after: self.inner.settings.statement_timeout,
            }),
        }
    }

    /// A batch of statements without parameters, not prepared (DDL).
    async fn query_unprepared(&self, operation: &'static str, sql: &str) -> Result<(), StoreError> {
        let client = self.client(operation, "*").await?;
        let limit = self.inner.settings.statement_timeout + CLIENT_MARGIN;
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(limit, client.batch_execute(sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // A failed batch may leave a transaction open: never reuse that connection.
                drop(Object::take(client));
                Err(self.pg_error(&e, operation, "*").0)
            }
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Timeout {
                    operation,
                    group: "*".to_owned(),
                    after: self.inner.settings.statement_timeout,
                })
            }
        }
    }
}

/// A pooled connection with a statement in flight. Unless [`InFlight::done`] is called, dropping
/// it (a failure, a timeout, or the caller dropping our future) discards the connection
/// instead of returning it to the pool, so no later call queues behind a lost answer.
struct InFlight(Option<Object>);

impl InFlight {
    fn client(&self) -> &Object {
        self.0.as_ref().expect("client present until done")
    }

    /// The statement finished cleanly: the connection goes back to the pool.
    fn done(&mut self) {
        self.0.take();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

/// Server-side settings of every session: the statement timeout, and the schema if any.
fn session_options(settings: &PgSettings) -> String {
    let mut options = format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        settings.statement_timeout.as_millis(),
        settings.statement_timeout.as_millis() * 5
    );
    if let Some(schema) = &settings.schema {
        options.push_str(&format!(" -c search_path={schema}"));
    }
    options
}
