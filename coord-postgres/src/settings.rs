//! How to reach the database: [`PgSettings`] (serde, or a `postgres://` URL), with a Debug
//! that never shows the password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use coord_core::{PasswordSource, Secret, StoreError, TlsMode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;
use url::{Host, Position, Url};

/// Settings of the PostgreSQL coordination store.
///
/// Either `url` (`postgres://user:password@host:port/database?sslmode=require&schema=ha`) or
/// the separate fields, or both. Deserialized (a configuration file, environment variables),
/// the fields written override the URL's parts, as on MySQL, so the password can come from
/// its own variable; the URL is folded into the fields then (`url` is `None`). Built in code
/// with `url` set, [`PgStore::open`](crate::PgStore::open) applies the URL over the fields.
/// Durations are written as `"2s"`, `"500ms"`, `"1m"`. `Debug` shows the password as
/// `<redacted>`. The keys are the ones every database store uses (`tls`, `tls_ca_file`,
/// `statement_timeout`, `connect_timeout`, `pool_size`, and at most one of `password`,
/// `password_env`, `password_file`); `ca_file` is accepted for `tls_ca_file`.
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawPgSettings")]
pub struct PgSettings {
    /// A `postgres://` (or `postgresql://`) URL; query keys: `sslmode`, `sslrootcert`,
    /// `schema`, `statement_timeout`, `connect_timeout`, `pool_size`.
    pub url: Option<String>,
    /// Server host name or address. Default `127.0.0.1`.
    pub host: String,
    /// Server port. Default 5432.
    pub port: u16,
    /// Role to log in as. Default `postgres`.
    pub user: String,
    /// Password, if the server asks for one (at most one of `password`, `password_env`,
    /// `password_file`).
    pub password: Option<Secret>,
    /// Name of an environment variable that holds the password, read at connect.
    pub password_env: Option<String>,
    /// File whose content (trailing newline removed) is the password, read at connect.
    pub password_file: Option<PathBuf>,
    /// Database. Default `postgres`.
    pub database: String,
    /// Schema holding the tables (`search_path`); default: the role's default search path.
    pub schema: Option<String>,
    /// Encryption. Default `disable`.
    pub tls: TlsMode,
    /// PEM file of the certificate authorities the server's certificate must chain to
    /// (required by `verify-full`; with `require`, it makes the link verified too).
    pub tls_ca_file: Option<PathBuf>,
    /// Server-side limit of every statement (the client gives up shortly after). Default 2 s.
    pub statement_timeout: Duration,
    /// Limit for opening a connection or waiting for a free one. Default 5 s.
    pub connect_timeout: Duration,
    /// Connections kept by the pool. Default 4.
    pub pool_size: usize,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            url: None,
            host: "127.0.0.1".to_owned(),
            port: 5432,
            user: "postgres".to_owned(),
            password: None,
            password_env: None,
            password_file: None,
            database: "postgres".to_owned(),
            schema: None,
            tls: TlsMode::Disable,
            tls_ca_file: None,
            statement_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            pool_size: 4,
        }
    }
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

fn settings_error(cause: impl Into<String>) -> StoreError {
    StoreError::Connect {
        target: "postgres".to_owned(),
        cause: format!("invalid settings: {}", cause.into()),
        transient: false,
    }
}

/// The URL with the password (if any) replaced by `<redacted>`, as the `url` crate reads it
/// (the same reading `apply_url` uses, so what it takes for the password is what is hidden).
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) if u.password().is_some() => format!(
            "{}://{}:<redacted>@{}",
            u.scheme(),
            u.username(),
            &u[Position::BeforeHost..]
        ),
        Ok(u) => u.into(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

impl PgSettings {
    /// Settings from a `postgres://user:password@host:port/database?key=value` URL (the
    /// other fields keep their defaults).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let mut settings = PgSettings::default();
        settings.apply_url(url)?;
        Ok(settings)
    }

    /// Checks the settings without connecting (what [`PgStore::open`](crate::PgStore::open)
    /// checks first).
    pub fn validate(&self) -> Result<(), StoreError> {
        self.resolved().map(|_| ())
    }

    /// The settings with `url` folded into the fields, checked.
    pub(crate) fn resolved(&self) -> Result<PgSettings, StoreError> {
        let mut settings = self.clone();
        if let Some(url) = self.url.clone() {
            settings.apply_url(&url)?;
            settings.url = None;
        }
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.host.is_empty() {
            return Err(settings_error("host must not be empty"));
        }
        if self.pool_size == 0 {
            return Err(settings_error("pool_size must be at least 1"));
        }
        if self.statement_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(settings_error(
                "statement_timeout and connect_timeout must be above zero",
            ));
        }
        if let Some(schema) = &self.schema {
            check_schema_name(schema)?;
        }
        self.tls
            .check(self.tls_ca_file.as_deref())
            .map_err(settings_error)?;
        self.password_source()?;
        Ok(())
    }

    fn password_source(&self) -> Result<Option<PasswordSource>, StoreError> {
        PasswordSource::from_keys(
            self.password.as_ref(),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
        .map_err(settings_error)
    }

    /// The password from whichever of the three keys is set (reading the variable or the
    /// file now), `None` when none is.
    pub(crate) fn resolve_password(&self) -> Result<Option<Secret>, StoreError> {
        self.password_source()?
            .map(|source| {
                source
                    .resolve(
                        |var| std::env::var(var).ok(),
                        |path| std::fs::read_to_string(path),
                    )
                    .map_err(settings_error)
            })
            .transpose()
    }

    fn apply_url(&mut self, url: &str) -> Result<(), StoreError> {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(settings_error(
                "url must start with postgres:// or postgresql://",
            ));
        }
        // url::ParseError never quotes the input (which may hold the password).
        let parsed = Url::parse(url).map_err(|e| settings_error(format!("url: {e}")))?;
        if parsed.fragment().is_some() {
            return Err(settings_error("url: `#` must be percent-encoded (%23)"));
        }
        if !parsed.username().is_empty() {
            self.user = decode(parsed.username(), "user")?;
        }
        if let Some(p) = parsed.password() {
            self.password = Some(Secret::new(decode(p, "password")?));
        }
        match parsed.host() {
            Some(Host::Domain(host)) if !host.is_empty() => self.host = decode(host, "host")?,
            Some(Host::Ipv6(ip)) => self.host = ip.to_string(),
            Some(Host::Ipv4(ip)) => self.host = ip.to_string(),
            _ => {}
        }
        if let Some(port) = parsed.port() {
            self.port = port;
        }
        let database = parsed.path().trim_start_matches('/');
        if !database.is_empty() {
            self.database = decode(database, "database")?;
        }
        // Split by hand rather than `query_pairs`, which would read `+` as a space.
        for pair in parsed
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value, key)?;
            self.apply_param(key, &value)?;
        }
        Ok(())
    }

    fn apply_param(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        match key {
            "sslmode" | "tls" => {
                self.tls = TlsMode::parse(value).ok_or_else(|| {
                    settings_error(format!(
                        "url {key} `{value}` is not one of {}",
                        TlsMode::WORDS
                    ))
                })?
            }
            "sslrootcert" | "tls_ca_file" => self.tls_ca_file = Some(PathBuf::from(value)),
            "schema" => self.schema = Some(value.to_owned()),
            "statement_timeout" => self.statement_timeout = parse_duration(value, key)?,
            "connect_timeout" => self.connect_timeout = parse_duration(value, key)?,
            "pool_size" => {
                self.pool_size = value.parse().map_err(|_| {
                    settings_error(format!("url pool_size `{value}` is not a number"))
                })?
            }
            other => {
                return Err(settings_error(format!(
                    "url parameter `{other}` is not supported"
                )));
            }
        }
        Ok(())
    }
}

/// The serde shape: a URL, fields, or both (the fields written win over the URL's parts).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPgSettings {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    database: Option<String>,
    schema: Option<String>,
    tls: Option<TlsMode>,
    #[serde(alias = "ca_file")]
    tls_ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    statement_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    pool_size: Option<usize>,
}

impl TryFrom<RawPgSettings> for PgSettings {
    type Error = String;

    fn try_from(raw: RawPgSettings) -> Result<Self, String> {
        let mut s = PgSettings::default();
        if let Some(url) = &raw.url {
            s.apply_url(url).map_err(|e| e.to_string())?;
        }
        fn set<T>(field: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *field = value;
            }
        }
        set(&mut s.host, raw.host);
        set(&mut s.port, raw.port);
        set(&mut s.user, raw.user);
        // A password key written in the table replaces the URL's password.
        if raw.password.is_some() || raw.password_env.is_some() || raw.password_file.is_some() {
            s.password = raw.password;
            s.password_env = raw.password_env;
            s.password_file = raw.password_file;
        }
        set(&mut s.database, raw.database);
        if raw.schema.is_some() {
            s.schema = raw.schema;
        }
        set(&mut s.tls, raw.tls);
        if raw.tls_ca_file.is_some() {
            s.tls_ca_file = raw.tls_ca_file;
        }
        set(&mut s.statement_timeout, raw.statement_timeout);
        set(&mut s.connect_timeout, raw.connect_timeout);
        set(&mut s.pool_size, raw.pool_size);
        Ok(s)
    }
}

/// A schema name goes into `search_path` and `CREATE SCHEMA`: keep it a plain identifier.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(settings_error(format!(
            "schema `{schema}` must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
        )))
    }
}

/// Percent-decoding for URL parts; `what` names the part in errors (never its value, which
/// may be a password). A `%` not followed by two hex digits is refused (the `url` and
/// `percent-encoding` crates would keep it as it is).
fn decode(value: &str, what: &str) -> Result<String, StoreError> {
    let well_formed = value.split('%').skip(1).all(|t| {
        t.get(..2)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !well_formed {
        return Err(settings_error(format!("url {what}: bad percent escape")));
    }
    percent_decode_str(value)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| settings_error(format!("url {what}: not UTF-8")))
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encoding of everything but unreserved characters (for the migrator's URL).
pub(crate) fn encode(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// humantime's `"500ms"`, `"2s"`, `"1m"`, `"3s 333ms"`; a bare number is seconds (libpq's
/// `connect_timeout`).
fn parse_duration(value: &str, what: &str) -> Result<Duration, StoreError> {
    (value.trim().parse().map(Duration::from_secs))
        .or_else(|_| humantime::parse_duration(value))
        .map_err(|e| settings_error(format!("{what} `{value}` is not a duration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_fills_every_field() {
        let s = PgSettings::from_url(
            "postgres://app:s%3Acret@db.example:6543/coord?sslmode=require&schema=ha&\
             statement_timeout=500ms&connect_timeout=3&pool_size=2",
        )
        .unwrap();
        assert_eq!(s.user, "app");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s:cret"));
        assert_eq!((s.host.as_str(), s.port), ("db.example", 6543));
        assert_eq!(s.database, "coord");
        assert_eq!(s.tls, TlsMode::Require);
        assert_eq!(s.schema.as_deref(), Some("ha"));
        assert_eq!(s.statement_timeout, Duration::from_millis(500));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.pool_size, 2);
        let s = PgSettings::from_url(
            "postgres://u:p%40ss@[::1]:6000/d?statement_timeout=3s%20333ms&connect_timeout=7d",
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 6000));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(s.statement_timeout, Duration::from_millis(3333));
        assert_eq!(s.connect_timeout, Duration::from_secs(7 * 86_400));
        assert_eq!(encode("p@ss wörd-._~"), "p%40ss%20w%C3%B6rd-._~");
    }

    #[test]
    fn ipv6_host_and_defaults() {
        let s = PgSettings::from_url("postgresql://[::1]/test").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 5432));
        assert_eq!(s.user, "postgres");
        assert_eq!(s.statement_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (url, needle) in [
            ("mysql://x", "postgres://"),
            ("postgres://h:port/db", "port"),
            ("postgres://h/db?sslmode=allow", "sslmode"),
            ("postgres://h/db?frobnicate=1", "frobnicate"),
            (
                "postgres://h/db?statement_timeout=soon",
                "statement_timeout",
            ),
            ("postgres://u:%zz@h/db", "password"),
            ("postgres://u:%zz@h/db?connect_timeout=2x", "password"),
            (
                "postgres://h/db?connect_timeout=2 fortnights",
                "`2 fortnights`",
            ),
        ] {
            let err = PgSettings::from_url(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(!err.contains("%zz"), "{err}");
        }
        let bad_schema = PgSettings {
            schema: Some("x; drop table y".into()),
            ..PgSettings::default()
        };
        assert!(
            bad_schema
                .resolved()
                .unwrap_err()
                .to_string()
                .contains("schema")
        );
    }

    #[test]
    fn the_shared_vocabulary_and_the_old_spelling() {
        let s: PgSettings = serde_json::from_str(
            r#"{"tls": "require", "ca_file": "/etc/ca.pem", "password_env": "PGPASSWORD"}"#,
        )
        .unwrap();
        assert_eq!(
            s.tls_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(s.password_env.as_deref(), Some("PGPASSWORD"));
        s.validate().unwrap();
        let s: PgSettings =
            serde_json::from_str(r#"{"tls": "verify_identity", "tls_ca_file": "/ca.pem"}"#)
                .unwrap();
        assert_eq!(s.tls, TlsMode::VerifyFull);
        // A password key in the table replaces the URL's password.
        let s: PgSettings = serde_json::from_str(
            r#"{"url": "postgres://u:inline@h/d", "password_file": "/run/pw"}"#,
        )
        .unwrap();
        assert_eq!((s.password.as_ref(), s.validate()), (None, Ok(())));
        let both = PgSettings {
            password: Some("p".into()),
            password_env: Some("X".into()),
            ..PgSettings::default()
        };
        let err = both.validate().unwrap_err().to_string();
        assert!(
            err.contains("at most one of password, password_env"),
            "{err}"
        );
        let unset = PgSettings {
            password_env: Some("COORD_PG_TEST_SURELY_UNSET".into()),
            ..PgSettings::default()
        };
        let err = unset.resolve_password().unwrap_err().to_string();
        assert!(
            err.contains("`COORD_PG_TEST_SURELY_UNSET` is not set"),
            "{err}"
        );
        let err = PgSettings {
            tls: TlsMode::VerifyFull,
            ..PgSettings::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("needs tls_ca_file"), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let mut s = PgSettings::from_url("postgres://app:hunter2@h/db").unwrap();
        s.url = Some("postgres://app:hunter2@h/db?sslmode=require".into());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("postgres://app:<redacted>@h/db?sslmode=require"));
        // A URL the parser cannot read is not shown at all (here `/` cuts the password).
        s.url = Some("postgres://app:hun/ter2@h/db".into());
        let shown = format!("{s:?}");
        assert!(!shown.contains("ter2") && !shown.contains("hun"), "{shown}");
        assert!(shown.contains("<unparsable url>"), "{shown}");
    }

    #[test]
    fn deserializes_with_human_durations_and_refuses_unknown_keys() {
        let s: PgSettings = serde_json::from_str(
            r#"{"host": "db", "password": "pw", "tls": "verify-full", "ca_file": "/etc/ca.pem",
                "statement_timeout": "500ms", "connect_timeout": "3s", "pool_size": 2,
                "schema": "ha"}"#,
        )
        .unwrap();
        assert_eq!(s.tls, TlsMode::VerifyFull);
        assert_eq!(s.statement_timeout, Duration::from_millis(500));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!((s.port, s.database.as_str()), (5432, "postgres"));
        s.resolved().unwrap();
        let err = serde_json::from_str::<PgSettings>(r#"{"hots": "db"}"#).unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
        let err = serde_json::from_str::<PgSettings>(r#"{"statement_timeout": "2 fortnights"}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("statement_timeout") || err.to_string().contains("duration"),
            "{err}"
        );
        // Deserialized, the fields written win over the URL's parts (as on MySQL), and the
        // URL's other parts are kept.
        let s: PgSettings = serde_json::from_str(
            r#"{"url": "postgres://u:wrong@h2:6000/d?sslmode=require", "user": "x",
                "password": "right"}"#,
        )
        .unwrap();
        assert_eq!(s.url, None, "folded into the fields");
        let r = s.resolved().unwrap();
        assert_eq!(
            (r.user.as_str(), r.host.as_str(), r.port),
            ("x", "h2", 6000)
        );
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("right"));
        assert_eq!(r.tls, TlsMode::Require);
        let err = serde_json::from_str::<PgSettings>(r#"{"url": "mysql://x"}"#).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
    }
}
