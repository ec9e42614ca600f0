//! The listener's configuration: a TOML file plus `FTPL_` environment variables (`__` for
//! nesting), through figment. Durations are strings with a unit (`"1s"`, `"500ms"`); a bare
//! number is refused, except under the seeds' integer-second names (`heartbeatFrequency`,
//! `livenessCheckInterval`). Every `FTPL_` variable must name a key, except those of
//! `HANDLER_VARIABLES`. Errors name the key as written (`source.ftp.port`) and where the
//! value came from (the file, or the environment variable).
//!
//! [`Config::load`] returns a configuration whose defaults are resolved (member ID, renew
//! deadline, done and error folders, migrate-on-start), so `check-config` prints what will
//! actually run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coord_core::{ElectionConfig, LedgerPolicy, RetryPolicy, Stability, Timing};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::backend_settings::{BackendSettings, ExtractError, RawSettings, RawTable};
use crate::duration::{human, human_opt, seed_seconds_opt};
use crate::registry::{Registry, Settings};
use crate::seed_config::{SeedAuth, SeedDatabase, SeedProtocol};

/// The `FTPL_` variables the command handler sets for its children (see `handler.rs`). A
/// listener started from a handler inherits them, so they are not refused; every other
/// `FTPL_` variable must name a key. Those that are not keys are ignored; `FTPL_GROUP` is also
/// the `group` key and read as such.
pub(crate) const HANDLER_VARIABLES: &[&str] = &[
    "FTPL_PATH",
    "FTPL_LOCAL_PATH",
    "FTPL_SIZE",
    "FTPL_TERM",
    "FTPL_ATTEMPT",
    "FTPL_REDELIVERY",
    "FTPL_MEMBER",
    "FTPL_GROUP",
];

/// The environment prefix.
const PREFIX: &str = "FTPL_";

/// The top-level configuration keys (what an `FTPL_` variable may start with).
const TOP_LEVEL_KEYS: &[&str] = &[
    "cluster",
    "placement",
    "name",
    "listeners",
    "member_id",
    "group",
    "coordination",
    "source",
    "poll_interval",
    "filter",
    "stability",
    "retry",
    "post_processing",
    "max_in_flight",
    "max_file_ops",
    "claim_ahead",
    "commit_delay",
    "done_dir",
    "error_dir",
    "ledger_retention",
    "handler",
    "http",
    "shutdown_grace",
    "log",
];

pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// Which coordination store: a built-in one or one registered by name
/// ([`crate::Registry::with_store`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// SQLite file (one host; the default).
    #[default]
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// A store registered under this name.
    Named(String),
}

impl Backend {
    /// The name as written in `coordination.backend`.
    pub fn name(&self) -> &str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Named(name) => name,
        }
    }

    /// The backend called `name`.
    pub fn from_name(name: &str) -> Self {
        match name {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            "mysql" => Backend::Mysql,
            other => Backend::Named(other.to_string()),
        }
    }
}

/// Which file source: a built-in one or one registered by name
/// ([`crate::Registry::with_source`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// A local (or mounted) directory.
    #[default]
    Local,
    /// FTP or FTPS (needs the `ftp` feature).
    Ftp,
    /// SFTP (needs the `sftp` feature).
    Sftp,
    /// A source registered under this name.
    Named(String),
}

impl SourceKind {
    /// The name as written in `source.kind`.
    pub fn name(&self) -> &str {
        match self {
            SourceKind::Local => "local",
            SourceKind::Ftp => "ftp",
            SourceKind::Sftp => "sftp",
            SourceKind::Named(name) => name,
        }
    }

    /// The source called `name`.
    pub fn from_name(name: &str) -> Self {
        match name {
            "local" => SourceKind::Local,
            "ftp" => SourceKind::Ftp,
            "sftp" => SourceKind::Sftp,
            other => SourceKind::Named(other.to_string()),
        }
    }
}

macro_rules! named_serde {
    ($ty:ident, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                if !crate::registry::valid_name(&name) {
                    return Err(serde::de::Error::custom(format!(
                        concat!(
                            "`{}` is not a ",
                            $what,
                            " name (lowercase letters, digits, `-`, `_`)"
                        ),
                        name
                    )));
                }
                Ok($ty::from_name(&name))
            }
        }
    };
}

named_serde!(Backend, "coordination store");
named_serde!(SourceKind, "source");

/// `coordination.sqlite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file (default `./ftp-listener.db`).
    #[serde(default = "default_sqlite_path")]
    pub path: PathBuf,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: default_sqlite_path(),
        }
    }
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("./ftp-listener.db")
}

/// `[coordination]`. Unknown keys are refused at load, except the settings table of a
/// registered store (`[coordination.<name>]`), kept in `tables`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordinationConfig {
    /// `sqlite` (default), `postgres`, `mysql` or the name of a registered store.
    #[serde(default)]
    pub backend: Backend,
    /// SQLite settings.
    #[serde(default)]
    pub sqlite: SqliteConfig,
    /// PostgreSQL settings (`coord_postgres::PgSettings`: `url`, or `host`, `port`, `user`,
    /// `password`, `database`, `tls`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<RawSettings>,
    /// MySQL/MariaDB settings (`coord_mysql::MySqlSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<RawSettings>,
    /// Heartbeat period (default 1s).
    #[serde(default, with = "human_opt", skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<Duration>,
    /// The seeds' `heartbeatFrequency`: integer seconds (or a string with a unit). Folded
    /// into `heartbeat_interval` at load (then `None`); setting both is refused.
    #[serde(
        default,
        rename = "heartbeatFrequency",
        alias = "heartbeatfrequency",
        deserialize_with = "seed_seconds_opt::deserialize",
        skip_serializing
    )]
    pub heartbeat_frequency: Option<Duration>,
    /// Age of the leader's heartbeat after which a standby takes over (default 5s).
    #[serde(default, with = "human_opt", skip_serializing_if = "Option::is_none")]
    pub liveness_timeout: Option<Duration>,
    /// The seeds' `livenessCheckInterval`: integer seconds (or a string with a unit). Folded
    /// into `liveness_timeout` at load (then `None`); setting both is refused.
    #[serde(
        default,
        rename = "livenessCheckInterval",
        alias = "livenesscheckinterval",
        deserialize_with = "seed_seconds_opt::deserialize",
        skip_serializing
    )]
    pub liveness_check_interval: Option<Duration>,
    /// How long a leader dispatches without an acknowledged heartbeat (default 2/3 of the
    /// liveness timeout).
    #[serde(default, with = "human_opt", skip_serializing_if = "Option::is_none")]
    pub renew_deadline: Option<Duration>,
    /// Apply migrations at start (default: true for sqlite, false otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate_on_start: Option<bool>,
    /// The seeds' `memberId`: folded into `member_id` at load (then `None`).
    #[serde(default, rename = "memberId", alias = "memberid", skip_serializing)]
    pub member_id: Option<String>,
    /// The seeds' `coordinationGroup`: folded into `group` at load (then `None`).
    #[serde(
        default,
        rename = "coordinationGroup",
        alias = "coordinationgroup",
        skip_serializing
    )]
    pub coordination_group: Option<String>,
    /// The seeds' `databaseConfig`: folded into `backend` and `postgres` or `mysql` at load
    /// (then `None`); see `seed_config.rs`.
    #[serde(
        default,
        rename = "databaseConfig",
        alias = "databaseconfig",
        skip_serializing
    )]
    pub database_config: Option<SeedDatabase>,
    /// The settings tables of registered stores (`[coordination.<name>]`), and at load any
    /// unknown key (refused then).
    #[serde(flatten, default)]
    pub tables: BTreeMap<String, RawTable>,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            backend: Backend::Sqlite,
            sqlite: SqliteConfig::default(),
            postgres: None,
            mysql: None,
            heartbeat_interval: None,
            heartbeat_frequency: None,
            liveness_timeout: None,
            liveness_check_interval: None,
            renew_deadline: None,
            migrate_on_start: None,
            member_id: None,
            coordination_group: None,
            database_config: None,
            tables: BTreeMap::new(),
        }
    }
}

/// `[source]`. Unknown keys are refused at load, except the settings table of a registered
/// source (`[source.<name>]`), kept in `tables`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceConfig {
    /// `local` (default), `ftp`, `sftp` or the name of a registered source.
    #[serde(default)]
    pub kind: SourceKind,
    /// The watched directory (default `./inbox`; created if missing for `local`).
    #[serde(default = "default_source_path")]
    pub path: String,
    /// Subdirectory levels to descend (default 0).
    #[serde(default)]
    pub recursive_depth: u32,
    /// FTP/FTPS settings (`transfer_ftp::FtpSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp: Option<RawSettings>,
    /// SFTP settings (`transfer_sftp::SftpSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<RawSettings>,
    /// The settings tables of registered sources (`[source.<name>]`), and at load any
    /// unknown key (refused then).
    #[serde(flatten, default)]
    pub tables: BTreeMap<String, RawTable>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Local,
            path: default_source_path(),
            recursive_depth: 0,
            ftp: None,
            sftp: None,
            tables: BTreeMap::new(),
        }
    }
}

fn default_source_path() -> String {
    "./inbox".to_string()
}

/// `[stability]`: when a listed file is finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StabilityConfig {
    /// Same size and mtime in two consecutive listings (default true).
    #[serde(default = "yes")]
    pub unchanged_across_listings: bool,
    /// Seen unchanged at least this long (default 0s).
    #[serde(default, with = "human")]
    pub min_age: Duration,
    /// A marker `<name><suffix>` must exist (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_marker_suffix: Option<String>,
    /// After a takeover, the second listing follows the first by this much when shorter
    /// than `poll_interval` (default 1s): a file stable before the takeover is dispatched
    /// within about a second of it.
    #[serde(default = "one_second", with = "human")]
    pub takeover_relist: Duration,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        StabilityConfig {
            unchanged_across_listings: true,
            min_age: Duration::ZERO,
            done_marker_suffix: None,
            takeover_relist: one_second(),
        }
    }
}

fn yes() -> bool {
    true
}

/// `[retry]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all (default 5).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second attempt (default 1s), doubling.
    #[serde(default = "one_second", with = "human")]
    pub initial_backoff: Duration,
    /// Longest wait (default 5m).
    #[serde(default = "five_minutes", with = "human")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            initial_backoff: one_second(),
            max_backoff: five_minutes(),
        }
    }
}

fn default_max_attempts() -> u32 {
    5
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}
fn twenty_millis() -> Duration {
    Duration::from_millis(20)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn four() -> usize {
    4
}
fn sixteen() -> usize {
    16
}
fn seven_days() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

pub use coord_core::PostProcessing;

/// `[handler]`: what is done with each file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HandlerConfig {
    /// Log the file and succeed (default).
    #[default]
    Log,
    /// Download the file into `dir`, keeping its path relative to the source directory.
    Download {
        /// The local target directory.
        dir: PathBuf,
    },
    /// Download the file into `dir` (a staging folder), run `command` with the local path as
    /// its last argument and `FTPL_*` variables; a non-zero exit is a failure.
    Command {
        /// Program and leading arguments.
        command: Vec<String>,
        /// Staging folder (default: the system temporary folder).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<PathBuf>,
        /// The command is killed after this long (default 1h) and the attempt fails.
        #[serde(default = "one_hour", with = "human")]
        timeout: Duration,
    },
    /// Upload the file to an ordered list of destinations (FTP/FTPS, SFTP, local folders)
    /// under a temporary name, check its size, rename it into place: the first that takes it
    /// (`failover`) or every one (`fanout`).
    Forward(crate::forward_config::ForwardConfig),
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/healthz`, `/readyz`, `/metrics` (default `127.0.0.1:9464`; port 0 picks
    /// a free port, logged at start).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: default_bind(),
        }
    }
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// The whole configuration of one listener. See the crate documentation for the keys and
/// their defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The listener's name, in logs and metrics (default: the group). Required in each
    /// `[[listeners]]` entry, where the group defaults to it.
    #[serde(default)]
    pub name: String,
    /// Where the listener runs: `leader` (default), `every`, `member:<id>`.
    #[serde(default)]
    pub placement: Placement,
    /// Take the listeners from the cluster's configuration in the coordination database
    /// (a member's local file then holds only what is local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// This member's ID, unique in the group (default: the host name).
    #[serde(default)]
    pub member_id: String,
    /// The coordination group (default `default`).
    #[serde(default = "default_group")]
    pub group: String,
    /// The coordination store and the election's timing.
    #[serde(default)]
    pub coordination: CoordinationConfig,
    /// The watched directory.
    #[serde(default)]
    pub source: SourceConfig,
    /// Time between two listings (default 5s).
    #[serde(default = "five_seconds", with = "human")]
    pub poll_interval: Duration,
    /// Glob on the file name (default `*`).
    #[serde(default = "default_filter")]
    pub filter: String,
    /// When a file is finished.
    #[serde(default)]
    pub stability: StabilityConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
    /// `move` (default), `delete` or `leave`.
    #[serde(default)]
    pub post_processing: PostProcessing,
    /// Handlers running at once on the leader (default 4; 1 keeps the listing's order).
    #[serde(default = "four")]
    pub max_in_flight: usize,
    /// Moves and deletes of handled files running at once on the leader (default 4).
    #[serde(default = "four")]
    pub max_file_ops: usize,
    /// Files claimed ahead of a free handler slot on the leader (default 16; 0 claims only
    /// for free slots): claims go in batches and a freed slot starts its next file at once.
    /// A term that ends leaves up to this many claimed and never started; the next leader
    /// redelivers them, their attempt counted.
    #[serde(default = "sixteen")]
    pub claim_ahead: usize,
    /// Group commit on the leader (default 20ms): a ledger write that unlocks a move (a
    /// handled or given-up file) waits up to this long for others to share its database
    /// round trip; done records and the like up to ten times this long, riding along. A
    /// write goes at once when nothing else is running, when a batch is full, or when
    /// stopping. `0s` writes every update at once.
    #[serde(default = "twenty_millis", with = "human")]
    pub commit_delay: Duration,
    /// Where handled files go (default `<source.path>/.done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_dir: Option<String>,
    /// Where files go after the retry budget (default `<source.path>/.error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_dir: Option<String>,
    /// How long ledger rows of files that left the directory are kept (default 7d).
    #[serde(default = "seven_days", with = "human")]
    pub ledger_retention: Duration,
    /// What is done with each file.
    #[serde(default)]
    pub handler: HandlerConfig,
    /// On SIGTERM, how long the handler in flight may take to finish before it is killed
    /// (default 10s); the token is released after it.
    #[serde(default = "ten_seconds", with = "human")]
    pub shutdown_grace: Duration,
    /// Health and metrics endpoints.
    #[serde(default)]
    pub http: HttpConfig,
    /// Log line format (`log.format = "text"` by default, or `"json"`).
    #[serde(default)]
    pub log: crate::log_config::LogConfig,
    /// The typed settings of the selected built-in backends, extracted at load.
    #[serde(skip)]
    pub backends: BackendSettings,
    /// The `[[listeners]]` entries (read by [`Config::load_all`]; empty in a loaded
    /// configuration).
    #[serde(default, skip_serializing)]
    pub listeners: Vec<RawTable>,
    /// What the configuration was loaded from (opaque: for the backends' settings tables).
    #[serde(skip)]
    pub loaded: Loaded,
    /// The seeds' `protocol` (`ftp`, `ftps`, `sftp`): folded into `source.kind` (and
    /// `source.ftp.tls`) at load, then `None`. See `seed_config.rs` for every seed field.
    #[serde(default, skip_serializing)]
    pub protocol: Option<SeedProtocol>,
    /// The seeds' `host`: folded into `source.ftp.host` or `source.sftp.host`.
    #[serde(default, skip_serializing)]
    pub host: Option<String>,
    /// The seeds' `port`: folded into `source.ftp.port` or `source.sftp.port`.
    #[serde(default, skip_serializing)]
    pub port: Option<u16>,
    /// The seeds' `path`: folded into `source.path`.
    #[serde(default, skip_serializing)]
    pub path: Option<String>,
    /// The seeds' `auth.credentials`: folded into the source's user and password.
    #[serde(default, skip_serializing)]
    pub auth: Option<SeedAuth>,
    /// The seeds' `pollingInterval` (integer seconds): folded into `poll_interval`.
    #[serde(
        default,
        rename = "pollingInterval",
        deserialize_with = "seed_seconds_opt::deserialize",
        skip_serializing
    )]
    pub polling_interval: Option<Duration>,
    /// The seeds' `fileNamePattern`: a regular expression the whole file name must match
    /// (default none: every name). Kept as written; not together with `filter`.
    #[serde(
        default,
        rename = "fileNamePattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_name_pattern: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        // Deserializing an empty document applies every serde default in one place.
        let mut config = Figment::new()
            .extract::<Config>()
            .expect("the defaults deserialize");
        config.resolve();
        config
    }
}

/// An `every` listener's ledger is its own: a SQLite file in the state directory, whatever
/// the shared store.
/// Every listener of a file or document, each loaded on its own: its name and its
/// configuration or its error ([`Config::load_cluster_each`]).
pub type EachListener = Vec<(String, Result<Config, ConfigError>)>;

/// Two listeners of one file may not share a name, nor a group as one member on one store.
fn check_distinct(configs: &[Config], shown: &str) -> Result<(), ConfigError> {
    for (i, config) in configs.iter().enumerate() {
        let earlier = &configs[..i];
        if let Some(other) = earlier.iter().find(|c| c.name == config.name) {
            return Err(ConfigError::Parse(format!(
                "listener `{}`: the name is used twice (in {shown})",
                other.name
            )));
        }
        if let Some(other) = earlier.iter().find(|c| {
            c.group == config.group && c.member_id == config.member_id && c.same_store(config)
        }) {
            return Err(ConfigError::Parse(format!(
                "listeners `{}` and `{}` are both member `{}` of coordination group `{}` \
                 on the same store: give each listener its own `group` (in {shown})",
                other.name, config.name, config.member_id, config.group
            )));
        }
    }
    Ok(())
}

fn placed(figment: Figment, name: &str, state_dir: &Path) -> Figment {
    use figment::providers::Serialized;
    if figment.extract_inner::<Placement>("placement").ok() != Some(Placement::Every) {
        return figment;
    }
    let path = state_dir.join(format!("every-{name}.db"));
    figment
        .merge(Serialized::default("coordination.backend", "sqlite"))
        .merge(Serialized::default("coordination.sqlite.path", path))
        .merge(Serialized::default("coordination.migrate_on_start", true))
}

/// `[cluster]`: this member takes its listeners from the cluster's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The configuration's name in the database (default `default`).
    #[serde(default = "default_group")]
    pub name: String,
    /// Where the last applied version is kept, and the ledgers of `every` listeners
    /// (default `./state`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How often the newest version's number is read (default 2s).
    #[serde(default = "two_seconds", with = "human")]
    pub poll_interval: Duration,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./state")
}

fn two_seconds() -> Duration {
    Duration::from_secs(2)
}

/// Where a listener runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    /// One member of the group dispatches (the default).
    #[default]
    Leader,
    /// Every member runs its own instance, with a ledger of its own (a SQLite file in the
    /// state directory): for a directory local to each host. Needs no database.
    Every,
    /// Only this member runs it.
    Member(String),
}

impl Placement {
    /// Whether the listener runs on `member`.
    pub fn runs_on(&self, member: &str) -> bool {
        match self {
            Placement::Member(id) => id == member,
            _ => true,
        }
    }
}

impl Serialize for Placement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Placement::Leader => s.serialize_str("leader"),
            Placement::Every => s.serialize_str("every"),
            Placement::Member(id) => s.serialize_str(&format!("member:{id}")),
        }
    }
}

impl<'de> Deserialize<'de> for Placement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "leader" => Ok(Placement::Leader),
            "every" => Ok(Placement::Every),
            other => match other.strip_prefix("member:") {
                Some(id) if !id.is_empty() => Ok(Placement::Member(id.to_string())),
                _ => Err(serde::de::Error::custom(format!(
                    "`{other}`: write \"leader\", \"every\" or \"member:<id>\""
                ))),
            },
        }
    }
}

/// What a configuration was loaded from, and what its source's backend says of its paths.
/// Opaque; `Debug` prints nothing of it (it holds the secrets as written).
#[derive(Clone, Default)]
pub struct Loaded {
    pub(crate) figment: Option<Figment>,
    /// The source's paths are local (made absolute), from its registered backend.
    pub(crate) source_is_local: bool,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.figment.is_some() {
            "Loaded"
        } else {
            "Built"
        })
    }
}

/// One `[[listeners]]` entry (or a `forward` destination's table) as a figment provider,
/// named in errors.
pub(crate) struct ListenerEntry {
    pub(crate) dict: figment::value::Dict,
    pub(crate) source: String,
}

impl figment::Provider for ListenerEntry {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("[[listeners]] entry")
            .source(figment::Source::Custom(self.source.clone()))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.dict.clone()))
    }
}

fn default_group() -> String {
    "default".to_string()
}

fn default_filter() -> String {
    "*".to_string()
}

/// Why the configuration could not be loaded. The message names the key as written
/// (`source.ftp.port`) and where the value came from (the file, or the environment variable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is missing, unreadable or not TOML, or a value has the wrong type or an
    /// unknown key: one line per problem, each naming the key and its origin.
    #[error("configuration: {0}")]
    Parse(String),
    /// An `FTPL_` variable that names no configuration key (and is not one of
    /// `HANDLER_VARIABLES`).
    #[error(
        "configuration: environment variable `{name}` matches no configuration key \
         (`FTPL_<KEY>`, `__` for nesting, e.g. FTPL_POLL_INTERVAL or \
         FTPL_COORDINATION__BACKEND; keys: {known})"
    )]
    UnknownVariable {
        /// The variable's name.
        name: String,
        /// The top-level keys.
        known: String,
    },
    /// A value breaks a rule.
    #[error("configuration {origin}: {error}")]
    Invalid {
        /// The file and environment the configuration came from.
        origin: String,
        /// The field and the rule.
        error: coord_core::ConfigError,
    },
}

/// Where a figment error's value came from, and the key as the user wrote it. `inner` is the
/// table a `extract_inner` started at (figment appends it to the path: `port.source.ftp`).
pub(crate) fn describe_figment(error: &figment::Error, inner: Option<&str>) -> String {
    let lines: Vec<String> = error
        .clone()
        .into_iter()
        .map(|e| describe_one(&e, inner))
        .collect();
    lines.join("; ")
}

fn describe_one(e: &figment::Error, inner: Option<&str>) -> String {
    use figment::error::Kind;
    let mut path = e.path.clone();
    let mut key: Vec<String> = Vec::new();
    if let Some(inner) = inner {
        let prefix: Vec<String> = inner.split('.').map(str::to_string).collect();
        if path.ends_with(&prefix) {
            path.truncate(path.len() - prefix.len());
        }
        key.extend(prefix);
    }
    key.extend(path);
    // An unknown key is named itself, not its table.
    let message = match &e.kind {
        Kind::UnknownField(field, expected) => {
            if key.last() != Some(field) {
                key.push(field.clone());
            }
            format!("unknown key (expected {})", figment::error::OneOf(expected))
        }
        // The backend crates' durations (humantime-serde): the same advice as ours.
        Kind::InvalidType(
            figment::error::Actual::Unsigned(_)
            | figment::error::Actual::Signed(_)
            | figment::error::Actual::Float(_),
            expected,
        ) if expected.contains("duration") => format!(
            "{}: durations need a unit, write e.g. \"500ms\" or \"5s\"",
            e.kind
        ),
        other => other.to_string(),
    };
    let key = key.join(".");
    let origin = match &e.metadata {
        Some(md) if md.name.contains("environment") => {
            let var: Vec<String> = key.split('.').map(str::to_ascii_uppercase).collect();
            format!(" (environment variable {PREFIX}{})", var.join("__"))
        }
        Some(md) => match &md.source {
            Some(source) => format!(" (in {source})"),
            None => format!(" (from {})", md.name),
        },
        None => String::new(),
    };
    if key.is_empty() {
        format!("{message}{origin}")
    } else {
        format!("`{key}`: {message}{origin}")
    }
}

/// The `FTPL_` variables that name no key. Only the top level is checked here: a typo below
/// it reaches serde, whose unknown-key error names it too.
fn unknown_variables() -> Option<ConfigError> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.get(..PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        })
        .filter(|name| !HANDLER_VARIABLES.contains(&name.as_str()))
        .filter(|name| {
            let top = name[PREFIX.len()..].split("__").next().unwrap_or_default();
            !TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .map(|name| ConfigError::UnknownVariable {
            name,
            known: TOP_LEVEL_KEYS.join(", "),
        })
}

impl Config {
    /// Loads `file` (if given; it must exist) and the `FTPL_*` environment variables (which
    /// win), resolves the defaults and validates, the backends' settings included, with the
    /// backends compiled into this build. For one listener: a file with several
    /// `[[listeners]]` is refused here (see [`Config::load_all`]).
    ///
    /// Never panics on bad input: figment 0.10 panics on some escaped values (found by the
    /// `config` fuzz target: `FTPL_SOURCE="é\2"`); such a panic is turned into an error.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(file, &Registry::builtin())
    }

    /// [`Config::load`] with the backends of `registry` (a binary's own stores and sources).
    pub fn load_with(file: Option<&Path>, registry: &Registry) -> Result<Config, ConfigError> {
        let mut all = Self::load_all(file, registry)?;
        if all.len() != 1 {
            return Err(ConfigError::Parse(format!(
                "the file defines {} [[listeners]]; this call runs one (use Config::load_all)",
                all.len()
            )));
        }
        Ok(all.remove(0))
    }

    /// Every listener the file defines: one when it has no `[[listeners]]`, else one per
    /// entry, each entry's keys over the file's top-level keys (shared defaults), the `FTPL_`
    /// variables over both. Every error of every listener is named with it.
    pub fn load_all(file: Option<&Path>, registry: &Registry) -> Result<Vec<Config>, ConfigError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::load_all_unguarded(file, None, registry)
        }))
        .unwrap_or_else(|_| {
            Err(ConfigError::Parse(
                "the configuration parser failed on a value of the file or of an FTPL_ \
                 variable (an escaped string with non-ASCII text?); check quoting and \
                 backslashes"
                    .to_string(),
            ))
        })
    }

    /// The listeners of the cluster's configuration `document` (a TOML text, as `cluster
    /// push` stores it) for the member whose local file is `file`: the local file gives what
    /// is local (member ID, database, state directory, HTTP bind), the document the
    /// listeners. `{member}` and `{host}` in the document are this member's ID and host name.
    /// A document that sets a local key or holds an inline secret is refused, naming the key.
    pub fn load_cluster(
        file: Option<&Path>,
        document: &str,
        registry: &Registry,
    ) -> Result<Vec<Config>, ConfigError> {
        Self::load_cluster_each(file, document, registry)?
            .into_iter()
            .map(|(_, loaded)| loaded)
            .collect()
    }

    /// [`Config::load_cluster`], listener by listener: the outer error fails the whole
    /// document (it is not TOML, sets a local key, holds an inline secret, names a listener
    /// twice); each listener's own error (a secret file missing on this host, a setting this
    /// member cannot take) is that listener's, so the others can be applied without it.
    pub fn load_cluster_each(
        file: Option<&Path>,
        document: &str,
        registry: &Registry,
    ) -> Result<EachListener, ConfigError> {
        let local = Self::load_with(file, registry)?;
        crate::cluster::check_document(document).map_err(ConfigError::Parse)?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let text = document
            .replace("{member}", &local.member_id)
            .replace("{host}", &host);
        let in_document = |e: ConfigError| match e {
            ConfigError::Parse(message) => {
                ConfigError::Parse(format!("cluster configuration: {message}"))
            }
            other => other,
        };
        let entries = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::load_entries(file, Some(&text), registry)
        }))
        .unwrap_or_else(|_| {
            Err(ConfigError::Parse(
                "the configuration parser failed on a value of the cluster's document".to_string(),
            ))
        })
        .map_err(in_document)?;
        let shown = Self::shown(file);
        if let Some((name, _)) = entries
            .iter()
            .enumerate()
            .find(|(i, (name, _))| entries[..*i].iter().any(|(n, _)| n == name))
            .map(|(_, entry)| entry)
        {
            return Err(in_document(ConfigError::Parse(format!(
                "listener `{name}`: the name is used twice (in {shown})"
            ))));
        }
        let loaded: Vec<Config> = entries
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok().cloned())
            .collect();
        check_distinct(&loaded, &shown).map_err(in_document)?;
        Ok(entries
            .into_iter()
            .map(|(name, loaded)| (name, loaded.map_err(in_document)))
            .collect())
    }

    fn load_all_unguarded(
        file: Option<&Path>,
        document: Option<&str>,
        registry: &Registry,
    ) -> Result<Vec<Config>, ConfigError> {
        let configs = Self::load_entries(file, document, registry)?
            .into_iter()
            .map(|(_, loaded)| loaded)
            .collect::<Result<Vec<_>, _>>()?;
        check_distinct(&configs, &Self::shown(file))?;
        Ok(configs)
    }

    fn shown(file: Option<&Path>) -> String {
        file.map_or_else(
            || "FTPL_ variables".to_string(),
            |f| f.display().to_string(),
        )
    }

    /// Every listener of the file (and `document`), each loaded on its own: an entry's error
    /// is its own; what fails them all (the file, the entries' names) is the outer error.
    fn load_entries(
        file: Option<&Path>,
        document: Option<&str>,
        registry: &Registry,
    ) -> Result<EachListener, ConfigError> {
        if let Some(unknown) = unknown_variables() {
            return Err(unknown);
        }
        // What is left to drop are the handler's variables (`FTPL_GROUP` is also the `group`
        // key, and read as such).
        let env = Env::prefixed(PREFIX).split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
        });
        let mut base = Figment::new();
        if let Some(file) = file {
            base = base.merge(Toml::file_exact(file));
        }
        if let Some(document) = document {
            base = base.merge(Toml::string(document));
        }
        let state_dir: PathBuf = base
            .extract_inner::<ClusterConfig>("cluster")
            .map(|c| c.state_dir)
            .unwrap_or_else(|_| default_state_dir());
        let origin = match file {
            Some(f) => format!("in {} (or its FTPL_ variables)", f.display()),
            None => "from FTPL_ variables and defaults".to_string(),
        };
        if !base.contains("listeners") {
            let figment = placed(base.merge(env), "default", &state_dir);
            let config = Self::load_one(figment, &origin, registry)?;
            return Ok(vec![(config.name.clone(), Ok(config))]);
        }
        let entries: Vec<figment::value::Dict> = base
            .extract_inner("listeners")
            .map_err(|e| ConfigError::Parse(describe_figment(&e, Some("listeners"))))?;
        if entries.is_empty() {
            return Err(ConfigError::Parse(
                "`listeners`: empty; write one [[listeners]] table per listener".to_string(),
            ));
        }
        let shown = Self::shown(file);
        let mut configs = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let name = match entry.get("name") {
                Some(figment::value::Value::String(_, name)) => name.clone(),
                _ => {
                    return Err(ConfigError::Parse(format!(
                        "`listeners[{index}].name`: missing: every [[listeners]] entry needs \
                         a name (in {shown})"
                    )));
                }
            };
            for key in ["listeners", "http"] {
                if entry.contains_key(key) {
                    return Err(ConfigError::Parse(format!(
                        "listener `{name}`: `{key}` is per process: set it at the top level, \
                         not in [[listeners]] (in {shown})"
                    )));
                }
            }
            let provider = ListenerEntry {
                dict: entry,
                source: format!("{shown} [[listeners]] `{name}`"),
            };
            let figment = base
                .clone()
                .merge(provider)
                .merge(env.clone())
                // Each listener is its own coordination group unless told otherwise.
                .join(figment::providers::Serialized::default("group", &name));
            let figment = placed(figment, &name, &state_dir);
            let origin = format!("{origin}, listener `{name}`");
            let config = Self::load_one(figment, &origin, registry).map_err(|e| match e {
                ConfigError::Parse(message) => {
                    ConfigError::Parse(format!("listener `{name}`: {message}"))
                }
                other => other,
            });
            configs.push((name, config));
        }
        Ok(configs)
    }

    fn load_one(
        figment: Figment,
        origin: &str,
        registry: &Registry,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment(&e, None)))?;
        config.listeners.clear();
        let invalid = |error| ConfigError::Invalid {
            origin: origin.to_string(),
            error,
        };
        crate::backend_settings::check_tables(&config, registry).map_err(invalid)?;
        config.fold_seed_names().map_err(invalid)?;
        let figment = crate::seed_config::fold(&mut config, figment).map_err(invalid)?;
        config.resolve_member_id();
        // Before `resolve` fills the renew deadline, so an error names what the user set.
        config.election().map_err(invalid)?;
        if config.coordination.migrate_on_start.is_none() {
            let by_default = registry
                .store(config.coordination.backend.name())
                .is_some_and(|b| b.migrates_by_default());
            config.coordination.migrate_on_start = Some(by_default);
        }
        config.resolve();
        config.validate().map_err(invalid)?;
        config.backends =
            BackendSettings::extract(&figment, &config, registry).map_err(|e| match e {
                ExtractError::Figment(e, inner) => {
                    ConfigError::Parse(describe_figment(&e, Some(inner)))
                }
                ExtractError::Rule(error) => invalid(error),
                ExtractError::Settings(error) => ConfigError::Parse(error.0),
            })?;
        if let HandlerConfig::Forward(forward) = &config.handler {
            forward.check(registry, origin)?;
        }
        config.loaded.source_is_local = registry
            .source(config.source.kind.name())
            .is_some_and(|b| b.is_local());
        config.loaded.figment = Some(figment);
        Ok(config)
    }

    /// The settings table `key` (`coordination.postgres`, `source.<name>`) for its backend:
    /// as loaded, or for a configuration built in code, from its fields.
    pub fn settings(&self, key: &str) -> Settings {
        if let Some(figment) = &self.loaded.figment {
            return Settings::new(figment.clone(), key);
        }
        use figment::providers::Serialized;
        let raw = |r: &Option<RawSettings>| r.as_ref().map(|r| r.values().clone());
        let mut figment = Figment::new().merge(Serialized::default(
            "coordination.sqlite",
            &self.coordination.sqlite,
        ));
        for (k, v) in [
            ("coordination.postgres", raw(&self.coordination.postgres)),
            ("coordination.mysql", raw(&self.coordination.mysql)),
            ("source.ftp", raw(&self.source.ftp)),
            ("source.sftp", raw(&self.source.sftp)),
        ] {
            if let Some(v) = v {
                figment = figment.merge(Serialized::default(k, v));
            }
        }
        for (name, table) in &self.coordination.tables {
            figment = figment.merge(Serialized::default(
                &format!("coordination.{name}"),
                &table.0,
            ));
        }
        for (name, table) in &self.source.tables {
            figment = figment.merge(Serialized::default(&format!("source.{name}"), &table.0));
        }
        Settings::new(figment, key)
    }

    /// Whether `self` and `other` name the same coordination store with the same settings
    /// (listeners that do share one store, one pool).
    pub fn same_store(&self, other: &Config) -> bool {
        self.store_identity() == other.store_identity()
    }

    /// Two listeners with equal identities share one store (one pool).
    pub(crate) fn store_identity(&self) -> String {
        let name = self.coordination.backend.name();
        self.settings(&format!("coordination.{name}")).identity()
    }

    /// The seeds' names (`heartbeatFrequency`, `livenessCheckInterval`) into ours.
    fn fold_seed_names(&mut self) -> Result<(), coord_core::ConfigError> {
        let c = &mut self.coordination;
        for (seed, ours, seed_name, our_name) in [
            (
                &mut c.heartbeat_frequency,
                &mut c.heartbeat_interval,
                "coordination.heartbeatFrequency",
                "coordination.heartbeat_interval",
            ),
            (
                &mut c.liveness_check_interval,
                &mut c.liveness_timeout,
                "coordination.livenessCheckInterval",
                "coordination.liveness_timeout",
            ),
        ] {
            if let Some(value) = seed.take() {
                if ours.is_some() {
                    return Err(coord_core::ConfigError::new(
                        seed_name,
                        format!("is the seeds' name of {our_name}: set only one of them"),
                    ));
                }
                *ours = Some(value);
            }
        }
        Ok(())
    }

    /// Resolves the defaults of a configuration made in code (by the builder), keeping what
    /// it says of local paths.
    pub(crate) fn finish_built(&mut self) {
        let local = self.loaded.source_is_local;
        self.resolve();
        self.loaded.source_is_local = local;
    }

    /// The member ID defaults to the host name.
    fn resolve_member_id(&mut self) {
        if self.member_id.is_empty() {
            self.member_id = gethostname::gethostname().to_string_lossy().into_owned();
        }
    }

    /// Fills the defaults that depend on other values or on the host.
    fn resolve(&mut self) {
        self.resolve_member_id();
        if self.name.is_empty() {
            self.name = self.group.clone();
        }
        self.loaded.source_is_local = self.source.kind == SourceKind::Local;
        let c = &mut self.coordination;
        let heartbeat = *c.heartbeat_interval.get_or_insert(Duration::from_secs(1));
        let liveness = *c.liveness_timeout.get_or_insert(Duration::from_secs(5));
        // Whole milliseconds, so `check-config` prints `3s 333ms`, not nanoseconds.
        let renew = Timing::from_liveness(heartbeat, liveness).renew_deadline;
        let renew = Duration::from_millis(u64::try_from(renew.as_millis()).unwrap_or(u64::MAX));
        c.renew_deadline.get_or_insert(renew);
        c.migrate_on_start
            .get_or_insert(c.backend == Backend::Sqlite);
        let base = self.source.path.trim_end_matches('/').to_string();
        let base = if base.is_empty() {
            "/".to_string()
        } else {
            base
        };
        self.done_dir
            .get_or_insert_with(|| coord_core::join_remote(&base, ".done"));
        self.error_dir
            .get_or_insert_with(|| coord_core::join_remote(&base, ".error"));
    }

    /// Checks every rule that serde cannot; the error names the field.
    pub fn validate(&self) -> Result<(), coord_core::ConfigError> {
        use coord_core::ConfigError as E;
        self.election()?;
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(E::new(
                "name",
                format!(
                    "`{}`: a listener's name is letters, digits, `-`, `_` and `.` (it labels \
                     logs and metrics)",
                    self.name
                ),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(E::new("max_in_flight", "must be at least 1"));
        }
        if self.max_file_ops == 0 {
            return Err(E::new("max_file_ops", "must be at least 1"));
        }
        if self.poll_interval.is_zero() {
            return Err(E::new("poll_interval", "must be greater than zero"));
        }
        if self.commit_delay > Duration::from_secs(1) {
            return Err(E::new(
                "commit_delay",
                "must be at most 1s (a handled file waits this long for its move)",
            ));
        }
        glob::Pattern::new(&self.filter)
            .map_err(|e| E::new("filter", format!("not a glob pattern: {e}")))?;
        if let Some(pattern) = &self.file_name_pattern {
            crate::seed_config::compile_pattern(pattern)?;
        }
        if self.retry.max_attempts == 0 {
            return Err(E::new("retry.max_attempts", "must be at least 1"));
        }
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err(E::new(
                "retry.initial_backoff",
                "must not be longer than retry.max_backoff",
            ));
        }
        if self.source.path.trim().is_empty() {
            return Err(E::new("source.path", "must not be empty"));
        }
        let source = self.source.path.trim_end_matches('/');
        for (field, dir) in [("done_dir", &self.done_dir), ("error_dir", &self.error_dir)] {
            if dir.as_deref().map(|d| d.trim_end_matches('/')) == Some(source) {
                return Err(E::new(
                    field,
                    "must not be the watched folder (files would be picked up again)",
                ));
            }
        }
        if let HandlerConfig::Command { command, .. } = &self.handler
            && command.first().is_none_or(|p| p.trim().is_empty())
        {
            return Err(E::new("handler.command", "must name a program"));
        }
        if let Some(suffix) = &self.stability.done_marker_suffix
            && suffix.is_empty()
        {
            return Err(E::new("stability.done_marker_suffix", "must not be empty"));
        }
        Ok(())
    }

    /// The election's identity and timing.
    ///
    /// While the renew deadline is not set (before [`Config::load`] resolves it to 2/3 of the
    /// liveness timeout), a timing error names `liveness_timeout` and `heartbeat_interval`,
    /// the settings the user can change, never the derived deadline.
    pub fn election(&self) -> Result<ElectionConfig, coord_core::ConfigError> {
        let c = &self.coordination;
        let heartbeat = c.heartbeat_interval.unwrap_or(Duration::from_secs(1));
        let liveness = c.liveness_timeout.unwrap_or(Duration::from_secs(5));
        let mut timing = Timing::from_liveness(heartbeat, liveness);
        let derived = c.renew_deadline.is_none();
        if let Some(renew) = c.renew_deadline {
            timing.renew_deadline = renew;
        }
        let shown = |d: Duration| {
            crate::duration::format(Duration::from_millis(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            ))
        };
        ElectionConfig::new(&self.member_id, &self.group, timing).map_err(|e| {
            // Name the keys as an operator writes them.
            let field = match e.field {
                "heartbeat_interval" if heartbeat.is_zero() => {
                    return coord_core::ConfigError::new("coordination.heartbeat_interval", e.rule);
                }
                "heartbeat_interval" | "renew_deadline" if derived => {
                    let rule = if liveness.is_zero() {
                        "must be greater than zero".to_string()
                    } else {
                        format!(
                            "`{}`: two thirds of it must be longer than \
                             coordination.heartbeat_interval (`{}`); raise liveness_timeout \
                             above {} or lower heartbeat_interval",
                            shown(liveness),
                            shown(heartbeat),
                            shown(heartbeat * 3 / 2),
                        )
                    };
                    return coord_core::ConfigError::new("coordination.liveness_timeout", rule);
                }
                "heartbeat_interval" => "coordination.heartbeat_interval",
                "renew_deadline" => "coordination.renew_deadline",
                "liveness_timeout" => "coordination.liveness_timeout",
                other => other,
            };
            coord_core::ConfigError::new(field, e.rule)
        })
    }

    /// The ledger rules.
    pub fn ledger_policy(&self) -> LedgerPolicy {
        LedgerPolicy {
            stability: Stability {
                unchanged_across_listings: self.stability.unchanged_across_listings,
                min_age: self.stability.min_age,
                done_marker_suffix: self.stability.done_marker_suffix.clone(),
            },
            retry: RetryPolicy {
                max_attempts: self.retry.max_attempts,
                initial_backoff: self.retry.initial_backoff,
                max_backoff: self.retry.max_backoff,
            },
            retention: self.ledger_retention,
        }
    }

    /// Migrate at start (resolved default: sqlite yes, others no).
    pub fn migrate_on_start(&self) -> bool {
        self.coordination
            .migrate_on_start
            .unwrap_or(self.coordination.backend == Backend::Sqlite)
    }

    /// The effective configuration as TOML, secrets redacted (for `check-config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
