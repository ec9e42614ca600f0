//! Connection settings: where the database file is and how long to wait for it.

use std::path::PathBuf;
use std::time::Duration;

use coord_core::StoreError;
use serde::Deserialize;

const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_POOL_SIZE: usize = 4;

/// Where the SQLite database is and how the store uses it. SQLite has no credentials, so
/// nothing here is secret and `Debug` shows every field.
///
/// In configuration (TOML, environment) durations are human strings (humantime's syntax):
/// `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"3s 333ms"`. The keys it shares with the other
/// database stores are spelled as theirs (`statement_timeout`, `pool_size`); it has no
/// network, so no `tls`, `connect_timeout` or password keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSettings {
    /// The database file: a path, or a `sqlite://` URL (`sqlite:///var/lib/x.db` is absolute,
    /// `sqlite://x.db` is relative to the working directory). Alias: `url`.
    #[serde(alias = "url")]
    pub path: String,
    /// How long a statement waits for another process's write lock before it fails with
    /// "database is locked" (SQLite's `busy_timeout`). Capped at `statement_timeout`.
    #[serde(default = "default_busy_timeout", with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// The longest any store operation may take; a slower one fails with
    /// [`StoreError::Timeout`] and its connection is replaced.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Connections in this process's pool (writers serialise on the file lock anyway).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Create the file and apply pending migrations when connecting (opt-in; otherwise a
    /// missing or old schema is refused with a message saying to run `ftp-listener migrate`).
    #[serde(default)]
    pub migrate: bool,
}

fn default_busy_timeout() -> Duration {
    DEFAULT_BUSY_TIMEOUT
}

fn default_statement_timeout() -> Duration {
    DEFAULT_STATEMENT_TIMEOUT
}

fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}

impl SqliteSettings {
    /// Settings for the file at `path` (or `sqlite://` URL) with every default.
    pub fn new(path: impl Into<String>) -> Self {
        SqliteSettings {
            path: path.into(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            migrate: false,
        }
    }

    /// Parses `sqlite://PATH[?busy_timeout=1s&statement_timeout=2s&pool_size=4&migrate=true]`
    /// (also `sqlite:PATH` or a bare path).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let (location, query) = match url.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (url, None),
        };
        let mut settings = SqliteSettings::new(location);
        settings.file()?;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |rule: &str| invalid(format!("url parameter `{key}`: {rule}"));
            match key {
                "busy_timeout" => {
                    settings.busy_timeout = parse_duration(value).map_err(|e| bad(&e))?;
                }
                "statement_timeout" => {
                    settings.statement_timeout = parse_duration(value).map_err(|e| bad(&e))?;
                }
                "pool_size" => {
                    settings.pool_size =
                        value.parse().map_err(|_| bad("expected a whole number"))?;
                }
                "migrate" => {
                    settings.migrate = value.parse().map_err(|_| bad("expected true or false"))?;
                }
                _ => {
                    return Err(bad(
                        "unknown (known: busy_timeout, statement_timeout, pool_size, migrate)",
                    ));
                }
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The database file, with any `sqlite:` scheme removed.
    pub(crate) fn file(&self) -> Result<PathBuf, StoreError> {
        let raw = self.path.trim();
        let file = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        if file.is_empty() {
            return Err(invalid("path: must name a database file".into()));
        }
        if file == ":memory:" || file.starts_with("file::memory:") {
            return Err(invalid(
                "path: in-memory databases are not supported (every connection would see its \
                 own empty database); name a file"
                    .into(),
            ));
        }
        if file.contains('?') {
            return Err(invalid(
                "path: query parameters are only read by from_url; use the settings fields".into(),
            ));
        }
        Ok(PathBuf::from(file))
    }

    /// Checks the values (non-zero timeouts and pool).
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.statement_timeout.is_zero() {
            return Err(invalid(
                "statement_timeout: must be greater than zero".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err(invalid("pool_size: must be at least 1".into()));
        }
        self.file().map(|_| ())
    }

    /// The busy timeout handed to SQLite: never longer than the statement timeout, so that
    /// the engine gives up (and answers) before the store abandons the connection.
    pub(crate) fn effective_busy_timeout(&self) -> Duration {
        self.busy_timeout.min(self.statement_timeout)
    }
}

fn invalid(cause: String) -> StoreError {
    StoreError::Connect {
        target: "sqlite".into(),
        cause: format!("invalid settings: {cause}"),
        transient: false,
    }
}

/// `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"7d"`, `"3s 333ms"` (humantime's syntax).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_parameters() {
        let s = SqliteSettings::from_url(
            "sqlite:///var/lib/l.db?busy_timeout=250ms&statement_timeout=3s&pool_size=2&migrate=true",
        )
        .unwrap();
        assert_eq!(s.file().unwrap(), PathBuf::from("/var/lib/l.db"));
        assert_eq!(s.busy_timeout, Duration::from_millis(250));
        assert_eq!(s.statement_timeout, Duration::from_secs(3));
        assert_eq!(s.pool_size, 2);
        assert!(s.migrate);
    }

    #[test]
    fn bare_path_and_short_scheme() {
        assert_eq!(
            SqliteSettings::from_url("data/l.db")
                .unwrap()
                .file()
                .unwrap(),
            PathBuf::from("data/l.db")
        );
        assert_eq!(
            SqliteSettings::from_url("sqlite:l.db")
                .unwrap()
                .file()
                .unwrap(),
            PathBuf::from("l.db")
        );
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let err = SqliteSettings::from_url("sqlite::memory:").unwrap_err();
        assert!(err.to_string().contains("in-memory"), "{err}");
        let err = SqliteSettings::from_url("sqlite://x.db?bogus=1").unwrap_err();
        assert!(err.to_string().contains("`bogus`: unknown"), "{err}");
        let err = SqliteSettings::from_url("sqlite://x.db?busy_timeout=5").unwrap_err();
        assert!(err.to_string().contains("`5` is not a duration"), "{err}");
        assert!(err.to_string().contains("unit needed"), "{err}");
        let err = SqliteSettings::from_url("sqlite://x.db?pool_size=0").unwrap_err();
        assert!(err.to_string().contains("pool_size"), "{err}");
        let err = SqliteSettings::from_url("sqlite://").unwrap_err();
        assert!(
            err.to_string().contains("must name a database file"),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3s 333ms"), Ok(Duration::from_millis(3333)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(
            parse_duration("2 fortnights")
                .unwrap_err()
                .contains("`2 fortnights`")
        );
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn busy_timeout_is_capped_by_the_statement_timeout() {
        let mut s = SqliteSettings::new("x.db");
        s.busy_timeout = Duration::from_secs(10);
        assert_eq!(s.effective_busy_timeout(), s.statement_timeout);
    }
}
