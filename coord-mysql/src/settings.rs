//! Connection settings: a URL or separate fields, durations as human strings, and a `Debug`
//! that never shows the password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use coord_core::{PasswordSource, Secret, StoreError, TlsMode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;
use url::{Host, Url};

/// Where and how to reach MySQL or MariaDB.
///
/// Deserialised from either a `url` (`mysql://user:password@host:3306/database?tls=require`),
/// or separate fields, or both (the fields then override the URL's parts, so the password
/// can come from its own environment variable). The keys are the ones every database store
/// uses (`tls`, `tls_ca_file`, `statement_timeout`, `connect_timeout`, `pool_size`, and at
/// most one of `password`, `password_env`, `password_file`); `ca_file` is accepted for
/// `tls_ca_file`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSettings")]
pub struct MySqlSettings {
    /// Server host name or IP address (default `127.0.0.1`).
    pub host: String,
    /// Server TCP port (default 3306).
    pub port: u16,
    /// User name (default `root`).
    pub user: String,
    /// Password; `None` for none. Never logged nor shown by `Debug`. At most one of
    /// `password`, `password_env`, `password_file`.
    pub password: Option<Secret>,
    /// Name of an environment variable that holds the password, read at connect.
    pub password_env: Option<String>,
    /// File whose content (trailing newline removed) is the password, read at connect.
    pub password_file: Option<PathBuf>,
    /// Database (schema) that holds the coordination tables. Required.
    pub database: String,
    /// Encryption (default [`TlsMode::Disable`]).
    pub tls: TlsMode,
    /// PEM file of CA certificates the server's certificate must chain to (required by
    /// [`TlsMode::VerifyFull`]; with [`TlsMode::Require`] it makes the link verified too).
    pub tls_ca_file: Option<PathBuf>,
    /// Longest a single store operation may take, round trip included (default 2 s).
    pub statement_timeout: Duration,
    /// Longest the initial connection (TCP, TLS, login) may take (default 5 s).
    pub connect_timeout: Duration,
    /// Most pooled connections (default 4).
    pub pool_size: usize,
    /// Apply pending migrations inside [`crate::MySqlStore::connect`] before the schema check
    /// (default false: an ops team applies the DDL, or runs `ftp-listener migrate`).
    pub migrate_on_connect: bool,
}

impl fmt::Debug for MySqlSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_size", &self.pool_size)
            .field("migrate_on_connect", &self.migrate_on_connect)
            .finish()
    }
}

impl Default for MySqlSettings {
    fn default() -> Self {
        MySqlSettings {
            host: "127.0.0.1".to_string(),
            port: 3306,
            user: "root".to_string(),
            password: None,
            password_env: None,
            password_file: None,
            database: String::new(),
            tls: TlsMode::Disable,
            tls_ca_file: None,
            statement_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            pool_size: 4,
            migrate_on_connect: false,
        }
    }
}

fn settings_error(cause: impl Into<String>) -> StoreError {
    StoreError::Connect {
        target: "mysql".to_string(),
        cause: format!("invalid settings: {}", cause.into()),
        transient: false,
    }
}

impl MySqlSettings {
    /// Parses `mysql://[user[:password]@]host[:port]/database[?key=value&...]` (`mariadb://`
    /// is accepted too). User and password are percent-decoded. Keys: `tls` (or `ssl-mode`:
    /// `disable`/`require`/`verify-full`), `tls_ca_file` (or `ssl-ca`), `statement_timeout` and `connect_timeout`
    /// (`"2s"`, `"500ms"`), `pool_size`, `migrate_on_connect`. The error never quotes the
    /// password.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let settings = Self::parse_url(url)?;
        settings.validate()?;
        Ok(settings)
    }

    /// [`Self::from_url`] without the final validation (the serde path completes it first).
    fn parse_url(url: &str) -> Result<Self, StoreError> {
        let mut settings = MySqlSettings::default();
        if !url.starts_with("mysql://") && !url.starts_with("mariadb://") {
            return Err(settings_error("url must start with mysql:// or mariadb://"));
        }
        // url::ParseError never quotes the input (which may hold the password).
        let parsed = Url::parse(url).map_err(|e| match e {
            url::ParseError::InvalidPort => bad_port(url),
            other => settings_error(format!("url: {other}")),
        })?;
        if parsed.fragment().is_some() {
            return Err(settings_error("url: `#` must be percent-encoded (%23)"));
        }
        settings.database = percent_decode(parsed.path().trim_start_matches('/'), "database")?;
        if !parsed.username().is_empty() {
            settings.user = percent_decode(parsed.username(), "user")?;
        }
        settings.password = parsed
            .password()
            .map(|p| percent_decode(p, "password").map(Secret::new))
            .transpose()?;
        match parsed.host() {
            Some(Host::Domain(host)) if !host.is_empty() => {
                settings.host = percent_decode(host, "host")?
            }
            Some(Host::Ipv6(ip)) => settings.host = ip.to_string(),
            Some(Host::Ipv4(ip)) => settings.host = ip.to_string(),
            _ => {}
        }
        if let Some(port) = parsed.port() {
            settings.port = port;
        }
        // Split by hand rather than `query_pairs`, which would read `+` as a space.
        for pair in parsed
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value, key)?;
            settings.apply_param(key, &value)?;
        }
        Ok(settings)
    }

    fn apply_param(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        match key {
            "tls" | "ssl-mode" | "sslmode" | "ssl_mode" => {
                self.tls = parse_tls(value)?;
            }
            "tls_ca_file" | "ssl-ca" | "ssl_ca" => self.tls_ca_file = Some(PathBuf::from(value)),
            "statement_timeout" => self.statement_timeout = parse_duration(key, value)?,
            "connect_timeout" => self.connect_timeout = parse_duration(key, value)?,
            "pool_size" => {
                self.pool_size = value.parse().map_err(|_| {
                    settings_error(format!("pool_size `{value}` is not a whole number"))
                })?;
            }
            "migrate_on_connect" => {
                self.migrate_on_connect = value.parse().map_err(|_| {
                    settings_error(format!("migrate_on_connect `{value}` is not true or false"))
                })?;
            }
            other => return Err(settings_error(format!("unknown url parameter `{other}`"))),
        }
        Ok(())
    }

    /// Checks the values a connection needs; the error names the field.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.host.trim().is_empty() {
            return Err(settings_error("host must not be empty"));
        }
        if self.database.trim().is_empty() {
            return Err(settings_error("database must not be empty"));
        }
        if self.user.is_empty() {
            return Err(settings_error("user must not be empty"));
        }
        if self.pool_size == 0 {
            return Err(settings_error("pool_size must be at least 1"));
        }
        if self.statement_timeout.is_zero() {
            return Err(settings_error(
                "statement_timeout must be greater than zero",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(settings_error("connect_timeout must be greater than zero"));
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

    /// `mysql://host:port/database`, for messages (no user, no password).
    pub fn target(&self) -> String {
        format!("mysql://{}:{}/{}", self.host, self.port, self.database)
    }

    /// The URL the migrations crate connects with (`password` resolved, percent-encoded).
    /// Never log it.
    pub(crate) fn migration_url(&self, password: Option<&Secret>) -> String {
        let mut url = format!("mysql://{}", percent_encode(&self.user));
        if let Some(password) = password {
            url.push(':');
            url.push_str(&percent_encode(password.expose()));
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        url.push_str(&format!(
            "@{host}:{}/{}",
            self.port,
            percent_encode(&self.database)
        ));
        // A CA file that is given is used, with `require` too (as the store's own pool).
        match (self.tls, &self.tls_ca_file) {
            (TlsMode::Disable, _) => url.push_str("?ssl-mode=disabled"),
            (_, Some(ca)) => {
                url.push_str("?ssl-mode=verify_identity&ssl-ca=");
                url.push_str(&percent_encode(&ca.to_string_lossy()));
            }
            _ => url.push_str("?ssl-mode=required"),
        }
        url
    }
}

fn parse_tls(value: &str) -> Result<TlsMode, StoreError> {
    TlsMode::parse(value).ok_or_else(|| {
        settings_error(format!(
            "tls `{}` is not one of {}",
            value.to_ascii_lowercase(),
            TlsMode::WORDS
        ))
    })
}

fn parse_duration(field: &str, value: &str) -> Result<Duration, StoreError> {
    humantime::parse_duration(value)
        .map_err(|e| settings_error(format!("{field} `{value}` is not a duration: {e}")))
}

/// The error for a port the `url` crate refused. Its error does not say which port, so the
/// text after the host's last `:` is quoted, but only when it is all digits (out of range):
/// anything else may be part of a password that was not percent-encoded.
fn bad_port(url: &str) -> StoreError {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    match host_port.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            settings_error(format!("port `{port}` is not a number from 1 to 65535"))
        }
        _ => settings_error("url port is not a number from 1 to 65535"),
    }
}

/// Percent-decoding for URL parts; `what` names the part in errors (never its value, which
/// may be a password). A `%` not followed by two hex digits is refused (the `url` and
/// `percent-encoding` crates would keep it as it is).
fn percent_decode(value: &str, what: &str) -> Result<String, StoreError> {
    let well_formed = value.split('%').skip(1).all(|t| {
        t.get(..2)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !well_formed {
        return Err(settings_error(format!("{what} has a bad percent escape")));
    }
    percent_decode_str(value)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| settings_error(format!("{what} is not UTF-8")))
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// The serde shape: a URL, fields, or both (fields win).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    database: Option<String>,
    tls: Option<TlsMode>,
    #[serde(alias = "ca_file")]
    tls_ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    statement_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    pool_size: Option<usize>,
    migrate_on_connect: Option<bool>,
}

impl TryFrom<RawSettings> for MySqlSettings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Self, String> {
        let build = || -> Result<MySqlSettings, StoreError> {
            let mut s = match &raw.url {
                Some(url) => MySqlSettings::parse_url(url)?,
                None => MySqlSettings::default(),
            };
            if let Some(v) = raw.host.clone() {
                s.host = v;
            }
            if let Some(v) = raw.port {
                s.port = v;
            }
            if let Some(v) = raw.user.clone() {
                s.user = v;
            }
            // A password key written in the table replaces the URL's password.
            if raw.password.is_some() || raw.password_env.is_some() || raw.password_file.is_some() {
                s.password = raw.password.clone();
                s.password_env = raw.password_env.clone();
                s.password_file = raw.password_file.clone();
            }
            if let Some(v) = raw.database.clone() {
                s.database = v;
            }
            if let Some(v) = raw.tls {
                s.tls = v;
            }
            if raw.tls_ca_file.is_some() {
                s.tls_ca_file = raw.tls_ca_file.clone();
            }
            if let Some(v) = raw.statement_timeout {
                s.statement_timeout = v;
            }
            if let Some(v) = raw.connect_timeout {
                s.connect_timeout = v;
            }
            if let Some(v) = raw.pool_size {
                s.pool_size = v;
            }
            if let Some(v) = raw.migrate_on_connect {
                s.migrate_on_connect = v;
            }
            s.validate()?;
            Ok(s)
        };
        build().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_parsed_and_decoded() {
        let s = MySqlSettings::from_url(
            "mysql://app:p%40ss%3Aword@db.local:3307/coord?tls=require&statement_timeout=500ms&pool_size=2",
        )
        .unwrap();
        assert_eq!(s.host, "db.local");
        assert_eq!(s.port, 3307);
        assert_eq!(s.user, "app");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss:word"));
        assert_eq!(s.database, "coord");
        assert_eq!(s.tls, TlsMode::Require);
        assert_eq!(s.statement_timeout, Duration::from_millis(500));
        assert_eq!(s.pool_size, 2);
        let back = MySqlSettings::from_url(&s.migration_url(s.password.as_ref())).unwrap();
        assert_eq!(back.password, s.password);
        assert_eq!(back.host, "db.local");
        let s = MySqlSettings::from_url(
            "mariadb://u@[::1]:3307/d?statement_timeout=3s%20333ms&connect_timeout=7d",
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 3307));
        assert_eq!(s.statement_timeout, Duration::from_millis(3333));
        assert_eq!(s.connect_timeout, Duration::from_secs(7 * 86_400));
        assert_eq!(percent_encode("p@ss wörd-._~"), "p%40ss%20w%C3%B6rd-._~");
    }

    #[test]
    fn ipv6_host_and_defaults() {
        let s = MySqlSettings::from_url("mysql://[::1]/test").unwrap();
        assert_eq!(s.host, "::1");
        assert_eq!(s.port, 3306);
        assert_eq!(s.user, "root");
        assert!(s.password.is_none());
        assert!(s.migration_url(None).contains("@[::1]:3306/test"));
    }

    #[test]
    fn bad_urls_are_named() {
        let msg = |u: &str| MySqlSettings::from_url(u).unwrap_err().to_string();
        assert!(msg("postgres://h/db").contains("mysql://"));
        assert!(msg("mysql://h").contains("database must not be empty"));
        assert!(msg("mysql://h:99999/db").contains("port `99999`"));
        assert!(msg("mysql://h/db?tls=maybe").contains("tls `maybe`"));
        assert!(msg("mysql://h/db?tls=verify-full").contains("needs tls_ca_file"));
        assert!(msg("mysql://h/db?statement_timeout=soon").contains("statement_timeout"));
        assert!(msg("mysql://h/db?colour=red").contains("unknown url parameter `colour`"));
        assert!(msg("mysql://h/db?connect_timeout=2%20fortnights").contains("`2 fortnights`"));
        assert!(msg("mysql://u:p%zz@h/db").contains("password has a bad percent escape"));
        let secret = msg("mysql://u:hunter2@h:x/db");
        assert!(!secret.contains("hunter2"), "{secret}");
    }

    #[test]
    fn deserialises_from_a_url_with_field_overrides() {
        let s: MySqlSettings = toml::from_str(
            r#"
            url = "mysql://app@db.local/coord?tls=require"
            password = "from-env"
            statement_timeout = "750ms"
            pool_size = 8
            "#,
        )
        .unwrap();
        assert_eq!(s.user, "app");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("from-env"));
        assert_eq!(s.tls, TlsMode::Require);
        assert_eq!(s.statement_timeout, Duration::from_millis(750));
        assert_eq!(s.pool_size, 8);
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn deserialises_from_fields_and_names_bad_ones() {
        let s: MySqlSettings = toml::from_str(
            r#"
            host = "10.0.0.5"
            database = "coord"
            tls = "disable"
            "#,
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("10.0.0.5", 3306, "root")
        );
        let err = |text: &str| {
            toml::from_str::<MySqlSettings>(text)
                .unwrap_err()
                .to_string()
        };
        assert!(err("host = \"h\"").contains("database must not be empty"));
        assert!(
            err("database = \"d\"\nstatement_timeout = \"soon\"").contains("statement_timeout")
        );
        assert!(err("database = \"d\"\ncolour = \"red\"").contains("colour"));
        let bad = err("database = \"d\"\nconnect_timeout = \"2 fortnights\"");
        assert!(
            bad.contains("connect_timeout") && bad.contains("2 fortnights"),
            "{bad}"
        );
        assert!(err("database = \"d\"\ntls = \"maybe\"").contains("maybe"));
        let secret = err("database = \"d\"\npassword = \"hunter2\"\npool_size = 0");
        assert!(!secret.contains("hunter2"), "{secret}");
    }

    #[test]
    fn the_shared_vocabulary_and_the_old_spelling() {
        let s: MySqlSettings = toml::from_str(
            "database = \"d\"\ntls = \"required\"\nca_file = \"/ca.pem\"\npassword_file = \"/run/pw\"",
        )
        .unwrap();
        assert_eq!(s.tls, TlsMode::Require);
        assert_eq!(
            s.tls_ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(
            s.password_file.as_deref(),
            Some(std::path::Path::new("/run/pw"))
        );
        // With a CA file the migrator verifies too.
        assert!(
            s.migration_url(None)
                .contains("ssl-mode=verify_identity&ssl-ca=%2Fca.pem")
        );
        let s: MySqlSettings =
            toml::from_str("database = \"d\"\ntls = \"verify-full\"\ntls_ca_file = \"/ca.pem\"")
                .unwrap();
        assert_eq!(s.tls, TlsMode::VerifyFull);
        let err = toml::from_str::<MySqlSettings>("database = \"d\"\ntls = \"verify-full\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs tls_ca_file"), "{err}");
        let err = toml::from_str::<MySqlSettings>(
            "database = \"d\"\npassword = \"p\"\npassword_env = \"X\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("at most one of password, password_env"),
            "{err}"
        );
        assert!(!err.contains("\"p\""), "{err}");
        let mut s = MySqlSettings::from_url("mysql://u:inline@h/d").unwrap();
        s.password = None;
        s.password_env = Some("COORD_MYSQL_TEST_SURELY_UNSET".into());
        let err = s.resolve_password().unwrap_err().to_string();
        assert!(
            err.contains("`COORD_MYSQL_TEST_SURELY_UNSET` is not set"),
            "{err}"
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let s = MySqlSettings::from_url("mysql://u:hunter2@h/db").unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
