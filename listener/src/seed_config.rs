//! The seeds' listener record (seeds 001 and 002: Ballerina's `ftp:Listener` with its
//! `coordination` record), written in TOML with the seeds' field names, folded into our keys
//! at load:
//!
//! | seed field | our key |
//! |---|---|
//! | `protocol` (`ftp`, `ftps`, `sftp`) | `source.kind` (`ftps`: `source.ftp.tls = "explicit"`) |
//! | `host`, `port` | `source.ftp.host` / `port` (or `source.sftp.*`) |
//! | `path` | `source.path` (the seeds' default `/` when the source comes from seed fields) |
//! | `auth.credentials.username` | `source.ftp.user` / `source.sftp.user` |
//! | `auth.credentials.password` | `source.ftp.password` / `source.sftp.auth` (method `password`) |
//! | `pollingInterval` (integer seconds) | `poll_interval` |
//! | `fileNamePattern` (a regex on the whole file name) | none: applied as is; excludes `filter` |
//! | `coordination.memberId` | `member_id` |
//! | `coordination.coordinationGroup` | `group` |
//! | `coordination.heartbeatFrequency` | `coordination.heartbeat_interval` (in `config.rs`) |
//! | `coordination.livenessCheckInterval` | `coordination.liveness_timeout` (in `config.rs`) |
//! | `coordination.databaseConfig.{host,port,user,password,database}` | `coordination.postgres.*` or `coordination.mysql.*` |
//!
//! The database kind: the seeds name it by the record's type (`<task:MysqlConfig>{...}` or
//! `task:PostgresqlConfig`, with the matching driver import), not by a field; the two types
//! differ only in their default port (3306, 5432). So the kind is our `coordination.backend`
//! when written, else the port: 3306 is MySQL, 5432 PostgreSQL, anything else (or no port) is
//! refused with an error that asks for `coordination.backend`.
//!
//! A seed field and our key for the same thing are refused together, with an error naming
//! both; our keys that have no seed field (`source.ftp.ca_file`, `source.sftp.known_hosts`,
//! `coordination.postgres.tls`, ...) complete the seed record.

use std::fmt;

use coord_core::ConfigError;
use figment::Figment;
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use serde::Deserialize;

use crate::config::{Backend, Config, SourceKind};

#[path = "name_pattern.rs"]
mod name_pattern;
pub(crate) use name_pattern::NamePatternFs;

/// The seeds' `protocol` (Ballerina's `ftp:FTP`, `ftp:FTPS`, `ftp:SFTP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SeedProtocol {
    /// Plain FTP.
    #[serde(rename = "ftp", alias = "FTP")]
    Ftp,
    /// Explicit FTPS (`AUTH TLS`).
    #[serde(rename = "ftps", alias = "FTPS")]
    Ftps,
    /// SFTP.
    #[serde(rename = "sftp", alias = "SFTP")]
    Sftp,
}

/// The seeds' `auth` record.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAuth {
    /// `auth.credentials`.
    #[serde(default)]
    pub credentials: Option<SeedCredentials>,
}

/// The seeds' `auth.credentials`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCredentials {
    /// The user name.
    pub username: String,
    /// The password (inline, as in the seeds).
    #[serde(default)]
    pub password: Option<String>,
}

/// The seeds' `coordination.databaseConfig` (`task:MysqlConfig` / `task:PostgresqlConfig`).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDatabase {
    /// Server host.
    #[serde(default)]
    pub host: Option<String>,
    /// Server port: 3306 (MySQL) or 5432 (PostgreSQL) also tells the kind.
    #[serde(default)]
    pub port: Option<u16>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// Database.
    #[serde(default)]
    pub database: Option<String>,
}

fn shown(secret: &Option<String>) -> &'static str {
    if secret.is_some() { "***" } else { "none" }
}

impl fmt::Debug for SeedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedAuth")
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl fmt::Debug for SeedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedCredentials")
            .field("username", &self.username)
            .field("password", &shown(&self.password))
            .finish()
    }
}

impl fmt::Debug for SeedDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedDatabase")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &shown(&self.password))
            .field("database", &self.database)
            .finish()
    }
}

/// `fileNamePattern` compiled: the whole file name must match, as in the listener the seeds
/// extend (Java's `Matcher.matches`).
pub(crate) fn compile_pattern(pattern: &str) -> Result<regex::Regex, ConfigError> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        ConfigError::new(
            "fileNamePattern",
            format!("`{pattern}` is not a regular expression: {e}"),
        )
    })
}

fn both(seed: &'static str, ours: &str) -> ConfigError {
    ConfigError::new(
        seed,
        format!("is the seeds' name of {ours}, which is set too: set only one of them"),
    )
}

/// A seed value going into one of our backend tables (`table`, e.g. `source.ftp`), refused
/// when our own key is written too.
struct Table<'a> {
    figment: &'a Figment,
    key: &'static str,
    dict: Dict,
}

impl Table<'_> {
    fn put(
        &mut self,
        seed: &'static str,
        field: &str,
        value: Option<Value>,
    ) -> Result<(), ConfigError> {
        let Some(value) = value else { return Ok(()) };
        self.refuse_ours(seed, field)?;
        self.dict.insert(field.to_string(), value);
        Ok(())
    }

    fn refuse_ours(&self, seed: &'static str, field: &str) -> Result<(), ConfigError> {
        let ours = format!("{}.{field}", self.key);
        if self.figment.contains(&ours) {
            return Err(both(seed, &ours));
        }
        Ok(())
    }

    fn has(&self, field: &str) -> bool {
        self.dict.contains_key(field) || self.figment.contains(&format!("{}.{field}", self.key))
    }
}

/// Nests `dict` under the dotted `key` (`source.ftp`).
fn nested(key: &str, dict: Dict) -> Dict {
    let mut value = Value::from(dict);
    for part in key.rsplit('.') {
        let mut outer = Dict::new();
        outer.insert(part.to_string(), value);
        value = Value::from(outer);
    }
    match value {
        Value::Dict(_, d) => d,
        _ => unreachable!("built from dictionaries"),
    }
}

/// Folds the seed fields of `config` into our keys. Returns the figment the backends' tables
/// are extracted from: `figment` with the tables built from seed fields merged in.
pub(crate) fn fold(config: &mut Config, figment: Figment) -> Result<Figment, ConfigError> {
    let mut figment = figment;
    fold_identity(config, &figment)?;
    fold_polling(config, &figment)?;
    if let Some((key, dict)) = fold_source(config, &figment)? {
        figment = figment.merge(Serialized::defaults(nested(key, dict)));
        config.source.ftp = figment.extract_inner("source.ftp").ok();
        config.source.sftp = figment.extract_inner("source.sftp").ok();
    }
    if let Some((key, dict)) = fold_database(config, &figment)? {
        figment = figment.merge(Serialized::defaults(nested(key, dict)));
        let c = &mut config.coordination;
        c.postgres = figment.extract_inner("coordination.postgres").ok();
        c.mysql = figment.extract_inner("coordination.mysql").ok();
    }
    Ok(figment)
}

fn fold_identity(config: &mut Config, figment: &Figment) -> Result<(), ConfigError> {
    let c = &mut config.coordination;
    let named = c.member_id.is_some() || c.coordination_group.is_some();
    if let Some(member) = c.member_id.take() {
        if figment.contains("member_id") {
            return Err(both("coordination.memberId", "member_id"));
        }
        config.member_id = member;
    }
    if let Some(group) = c.coordination_group.take() {
        if figment.contains("group") {
            return Err(both("coordination.coordinationGroup", "group"));
        }
        config.group = group;
    }
    // The seeds' record needs its database: without one these members would each keep their
    // own SQLite file and every one of them would poll (seed 002: `databaseConfig` required).
    if named && c.database_config.is_none() && !figment.contains("coordination.backend") {
        return Err(ConfigError::new(
            "coordination.databaseConfig",
            "missing: the seeds' coordination record needs the shared database \
             (host, port, user, password, database), or set coordination.backend",
        ));
    }
    Ok(())
}

fn fold_polling(config: &mut Config, figment: &Figment) -> Result<(), ConfigError> {
    if let Some(interval) = config.polling_interval.take() {
        if figment.contains("poll_interval") {
            return Err(both("pollingInterval", "poll_interval"));
        }
        if interval.is_zero() {
            return Err(ConfigError::new(
                "pollingInterval",
                "must be greater than zero",
            ));
        }
        config.poll_interval = interval;
    }
    if let Some(pattern) = &config.file_name_pattern {
        if figment.contains("filter") {
            return Err(ConfigError::new(
                "fileNamePattern",
                "and filter (a glob) are both set: a file name would have to match both; \
                 set only one of them",
            ));
        }
        compile_pattern(pattern)?;
    }
    Ok(())
}

/// The seeds' `protocol`, `host`, `port`, `path` and `auth` into `source`.
fn fold_source(
    config: &mut Config,
    figment: &Figment,
) -> Result<Option<(&'static str, Dict)>, ConfigError> {
    let protocol = config.protocol.take();
    let host = config.host.take();
    let port = config.port.take();
    let auth = config.auth.take();
    let remote = protocol.is_some() || host.is_some() || port.is_some() || auth.is_some();
    if let Some(path) = config.path.take() {
        if figment.contains("source.path") {
            return Err(both("path", "source.path"));
        }
        config.source.path = path;
    } else if remote && !figment.contains("source.path") {
        // The seeds' default (Ballerina's `path = "/"`), not our `./inbox`.
        config.source.path = "/".to_string();
    }
    if !remote {
        return Ok(None);
    }
    if protocol.is_some() && figment.contains("source.kind") {
        return Err(both("protocol", "source.kind"));
    }
    let kind = match protocol {
        Some(SeedProtocol::Ftp | SeedProtocol::Ftps) => SourceKind::Ftp,
        Some(SeedProtocol::Sftp) => SourceKind::Sftp,
        // The seeds' default protocol is FTP.
        None if !figment.contains("source.kind") => SourceKind::Ftp,
        None => config.source.kind.clone(),
    };
    let key = match kind {
        SourceKind::Ftp => "source.ftp",
        SourceKind::Sftp => "source.sftp",
        SourceKind::Local => {
            return Err(ConfigError::new(
                "source.kind",
                "is `local`, but the seeds' `host`, `port` or `auth` name a server: \
                 set protocol (ftp, ftps or sftp) instead",
            ));
        }
        SourceKind::Named(name) => {
            return Err(ConfigError::new(
                "source.kind",
                format!(
                    "is `{name}`, a registered source: the seeds' `host`, `port` and `auth` \
                     fill only the built-in ftp and sftp tables; write [source.{name}]"
                ),
            ));
        }
    };
    config.source.kind = kind.clone();
    let mut table = Table {
        figment,
        key,
        dict: Dict::new(),
    };
    table.put("host", "host", host.map(Value::from))?;
    table.put("port", "port", port.map(Value::from))?;
    if protocol.is_some() && kind == SourceKind::Ftp {
        let tls = if protocol == Some(SeedProtocol::Ftps) {
            "explicit"
        } else {
            "none"
        };
        table.put("protocol", "tls", Some(Value::from(tls)))?;
    }
    if let Some(credentials) = auth.unwrap_or_default().credentials {
        let user = "auth.credentials.username";
        table.put(user, "user", Some(Value::from(credentials.username)))?;
        let password = "auth.credentials.password";
        if let Some(secret) = credentials.password {
            if kind == SourceKind::Ftp {
                for ours in ["password_env", "password_file"] {
                    table.refuse_ours(password, ours)?;
                }
                table.put(password, "password", Some(Value::from(secret)))?;
            } else {
                let mut auth = Dict::new();
                auth.insert("method".into(), Value::from("password"));
                auth.insert("password".into(), Value::from(secret));
                table.put(password, "auth", Some(Value::from(auth)))?;
            }
        }
    }
    // Named as the seeds name them, not as our table would.
    if !table.has("host") {
        return Err(ConfigError::new(
            "host",
            "missing: the seeds' listener record needs the server's host",
        ));
    }
    if !table.has("user") {
        return Err(ConfigError::new(
            "auth.credentials.username",
            "missing: the seeds' listener record needs the user to log in as",
        ));
    }
    Ok(Some((key, table.dict)))
}

/// The seeds' `coordination.databaseConfig` into `coordination.postgres` or `.mysql`.
fn fold_database(
    config: &mut Config,
    figment: &Figment,
) -> Result<Option<(&'static str, Dict)>, ConfigError> {
    let Some(db) = config.coordination.database_config.take() else {
        return Ok(None);
    };
    let backend = if figment.contains("coordination.backend") {
        config.coordination.backend.clone()
    } else {
        match db.port {
            Some(3306) => Backend::Mysql,
            Some(5432) => Backend::Postgres,
            Some(port) => {
                return Err(ConfigError::new(
                    "coordination.databaseConfig.port",
                    format!(
                        "`{port}` does not tell MySQL from PostgreSQL (the seeds tell them by \
                         the record's type, task:MysqlConfig or task:PostgresqlConfig): set \
                         coordination.backend = \"mysql\" or \"postgres\""
                    ),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "coordination.databaseConfig",
                    "does not say MySQL or PostgreSQL (the seeds tell them by the record's \
                     type, task:MysqlConfig or task:PostgresqlConfig, whose default ports are \
                     3306 and 5432): write port = 3306 or 5432, or set coordination.backend \
                     = \"mysql\" or \"postgres\"",
                ));
            }
        }
    };
    let key = match backend {
        Backend::Postgres => "coordination.postgres",
        Backend::Mysql => "coordination.mysql",
        Backend::Sqlite => {
            return Err(ConfigError::new(
                "coordination.databaseConfig",
                "names a shared MySQL or PostgreSQL database, but coordination.backend is \
                 `sqlite`: set coordination.backend = \"mysql\" or \"postgres\", or drop one",
            ));
        }
        Backend::Named(name) => {
            return Err(ConfigError::new(
                "coordination.databaseConfig",
                format!(
                    "names a MySQL or PostgreSQL database, but coordination.backend is \
                     `{name}`: write [coordination.{name}], or drop one"
                ),
            ));
        }
    };
    config.coordination.backend = backend;
    let mut table = Table {
        figment,
        key,
        dict: Dict::new(),
    };
    // A URL carries host, port, user, password and database at once.
    if figment.contains(&format!("{key}.url")) {
        return Err(both("coordination.databaseConfig", &format!("{key}.url")));
    }
    table.put(
        "coordination.databaseConfig.host",
        "host",
        db.host.map(Value::from),
    )?;
    table.put(
        "coordination.databaseConfig.port",
        "port",
        db.port.map(Value::from),
    )?;
    table.put(
        "coordination.databaseConfig.user",
        "user",
        db.user.map(Value::from),
    )?;
    table.put(
        "coordination.databaseConfig.password",
        "password",
        db.password.map(Value::from),
    )?;
    table.put(
        "coordination.databaseConfig.database",
        "database",
        db.database.map(Value::from),
    )?;
    Ok(Some((key, table.dict)))
}

#[cfg(test)]
#[path = "seed_config_tests.rs"]
mod tests;
