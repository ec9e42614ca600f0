//! How to reach the server: [`RedisSettings`] (serde, or built in code), with a Debug that
//! never shows the password.

use std::fmt;
use std::time::Duration;

use coord_core::StoreError;
use serde::Deserialize;
use url::{Position, Url};

/// Longest key prefix, in bytes.
pub const MAX_KEY_PREFIX_LEN: usize = 128;

/// Settings of the Redis coordination store.
///
/// `url` is `redis://[user[:password]@]host[:port][/db]` (TLS, `rediss://`, and Unix sockets
/// are not built in). Durations are written as `"2s"`, `"500ms"`, `"1m"`. `Debug` shows the
/// password as `<redacted>`; errors never show it.
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawRedisSettings")]
pub struct RedisSettings {
    /// The server. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Put in front of every key, so that several deployments (or test runs) share one
    /// server without meeting. Default `coord:`.
    pub key_prefix: String,
    /// Limit of every operation (one script call), after which it fails with
    /// [`StoreError::Timeout`]. Default 2 s.
    pub op_timeout: Duration,
    /// Limit for opening the connection (and for each reconnection attempt). Default 5 s.
    pub connect_timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "coord:".to_owned(),
            op_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

pub(crate) fn settings_error(cause: impl Into<String>) -> StoreError {
    StoreError::Connect {
        target: "redis".to_owned(),
        cause: format!("invalid settings: {}", cause.into()),
        transient: false,
    }
}

/// The URL with the password (if any) replaced by `<redacted>`.
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

/// What [`RedisSettings::checked`] found: the parts the store keeps.
#[derive(Clone)]
pub(crate) struct Checked {
    /// `redis://host:port/db`, without credentials, for errors and logs.
    pub(crate) target: String,
    /// The password as written in the URL (raw and decoded), to scrub from causes.
    pub(crate) secrets: Vec<String>,
}

impl RedisSettings {
    /// Checks the settings without connecting (what
    /// [`RedisStore::connect`](crate::RedisStore::connect) checks first).
    pub fn validate(&self) -> Result<(), StoreError> {
        self.checked().map(|_| ())
    }

    pub(crate) fn checked(&self) -> Result<Checked, StoreError> {
        if !self.url.starts_with("redis://") {
            return Err(settings_error(if self.url.starts_with("rediss://") {
                "url: rediss:// (TLS) is not built in; use redis://"
            } else {
                "url must start with redis://"
            }));
        }
        // url::ParseError never quotes the input (which may hold the password).
        let parsed = Url::parse(&self.url).map_err(|e| settings_error(format!("url: {e}")))?;
        if parsed.fragment().is_some() || parsed.query().is_some() {
            return Err(settings_error(
                "url: no `?` or `#` parts are supported (percent-encode them in a password)",
            ));
        }
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h,
            _ => return Err(settings_error("url: the host is missing")),
        };
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(settings_error("url: the path must be a database number"));
        }
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(settings_error(
                "op_timeout and connect_timeout must be above zero",
            ));
        }
        if self.key_prefix.len() > MAX_KEY_PREFIX_LEN {
            return Err(settings_error(format!(
                "key_prefix is {} bytes long, the limit is {MAX_KEY_PREFIX_LEN}",
                self.key_prefix.len()
            )));
        }
        if self
            .key_prefix
            .chars()
            .any(|c| c.is_control() || c == '{' || c == '}')
        {
            return Err(settings_error(
                "key_prefix must not contain control characters, `{` or `}`",
            ));
        }
        let port = parsed.port().unwrap_or(6379);
        let db = if db.is_empty() { "0" } else { db };
        let mut secrets = Vec::new();
        if let Some(p) = parsed.password() {
            secrets.push(p.to_owned());
            let decoded = percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned();
            secrets.push(decoded);
        }
        Ok(Checked {
            target: format!("redis://{host}:{port}/{db}"),
            secrets,
        })
    }
}

/// Replaces every secret in `text` by `<redacted>`.
pub(crate) fn scrub(text: String, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 2)
        .fold(text, |t, s| t.replace(s.as_str(), "<redacted>"))
}

/// The serde shape: every field optional, unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisSettings {
    url: Option<String>,
    key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    op_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
}

impl TryFrom<RawRedisSettings> for RedisSettings {
    type Error = String;

    fn try_from(raw: RawRedisSettings) -> Result<Self, String> {
        let d = RedisSettings::default();
        let s = RedisSettings {
            url: raw.url.unwrap_or(d.url),
            key_prefix: raw.key_prefix.unwrap_or(d.key_prefix),
            op_timeout: raw.op_timeout.unwrap_or(d.op_timeout),
            connect_timeout: raw.connect_timeout.unwrap_or(d.connect_timeout),
        };
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_target() {
        let checked = RedisSettings::default().checked().unwrap();
        assert_eq!(checked.target, "redis://127.0.0.1:6379/0");
        assert!(checked.secrets.is_empty());
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        for (url, needle) in [
            ("rediss://h", "TLS"),
            ("postgres://h", "redis://"),
            ("redis://h/abc", "database number"),
            ("redis://h:port", "url"),
            ("redis://h/0?x=1", "`?`"),
        ] {
            let s = RedisSettings {
                url: url.into(),
                ..RedisSettings::default()
            };
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
        let s = RedisSettings {
            key_prefix: "a{b}".into(),
            ..RedisSettings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("key_prefix"));
        let s = RedisSettings {
            op_timeout: Duration::ZERO,
            ..RedisSettings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("op_timeout"));
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let s = RedisSettings {
            url: "redis://app:hunter%2B2@h:6380/3".into(),
            ..RedisSettings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("redis://app:<redacted>@h:6380/3"), "{shown}");
        let checked = s.checked().unwrap();
        assert_eq!(checked.target, "redis://h:6380/3");
        let cause = scrub("AUTH hunter%2B2 / hunter+2 failed".into(), &checked.secrets);
        assert!(!cause.contains("hunter"), "{cause}");
        let s = RedisSettings {
            url: "redis://app:hun/ter2@h".into(),
            ..RedisSettings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("ter2"), "{shown}");
    }

    #[test]
    fn deserializes_with_human_durations_and_refuses_unknown_keys() {
        let s: RedisSettings = serde_json::from_str(
            r#"{"url": "redis://db:6380/1", "key_prefix": "ha:", "op_timeout": "500ms",
                "connect_timeout": "3s"}"#,
        )
        .unwrap();
        assert_eq!(s.op_timeout, Duration::from_millis(500));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.key_prefix, "ha:");
        let s: RedisSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s.url, "redis://127.0.0.1:6379");
        let err = serde_json::from_str::<RedisSettings>(r#"{"urll": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        let err = serde_json::from_str::<RedisSettings>(r#"{"url": "rediss://x"}"#).unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
