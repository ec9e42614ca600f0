//! The settings tables of the backend crates (`coordination.postgres`,
//! `coordination.mysql`, `source.ftp`, `source.sftp`): kept raw for printing (secrets
//! redacted), and extracted into each crate's own settings type with figment, so an error
//! names the key and the file.

use std::collections::BTreeMap;
use std::fmt;

use figment::Figment;
use figment::value::Value;
use serde::{Deserialize, Serialize};

use crate::config::{Backend, Config, SourceKind};

/// A backend's settings table as written, printed with every secret replaced by `***`:
/// values of keys that name a password, passphrase or secret, and passwords inside URLs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RawSettings(BTreeMap<String, Value>);

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    // `password_env` and `password_file` name where the secret is, not the secret.
    if key.ends_with("_env") || key.ends_with("_file") {
        return false;
    }
    ["password", "passphrase", "secret", "token"]
        .iter()
        .any(|s| key.contains(s))
}

fn redact(key: &str, value: &Value) -> Value {
    match value {
        Value::String(tag, text) if is_secret_key(key) => {
            let _ = text;
            Value::String(*tag, "***".into())
        }
        Value::String(tag, text) if key.eq_ignore_ascii_case("url") => {
            Value::String(*tag, crate::config::redact_url(text))
        }
        Value::Dict(tag, dict) => Value::Dict(
            *tag,
            dict.iter()
                .map(|(k, v)| {
                    // `password = { value = "..." }`: the parent key decides.
                    let k2 = if is_secret_key(key) { key } else { k.as_str() };
                    (k.clone(), redact(k2, v))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

impl RawSettings {
    fn redacted(&self) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), redact(k, v)))
            .collect()
    }
}

impl Serialize for RawSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

impl fmt::Debug for RawSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in self.redacted() {
            map.entry(&k, &format_args!("{}", display_value(&v)));
        }
        map.finish()
    }
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(_, s) => format!("{s:?}"),
        Value::Dict(_, d) => {
            let inner: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("{k}: {}", display_value(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Array(_, a) => {
            let inner: Vec<String> = a.iter().map(display_value).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => format!("{n:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Empty(_, _) => "none".into(),
    }
}

/// The typed settings of the selected backends (only those compiled in).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BackendSettings {
    /// `coordination.postgres`.
    #[cfg(feature = "postgres")]
    pub postgres: Option<coord_postgres::PgSettings>,
    /// `coordination.mysql`.
    #[cfg(feature = "mysql")]
    pub mysql: Option<coord_mysql::MySqlSettings>,
    /// `source.ftp`.
    #[cfg(feature = "ftp")]
    pub ftp: Option<transfer_ftp::FtpSettings>,
    /// `source.sftp`.
    #[cfg(feature = "sftp")]
    pub sftp: Option<transfer_sftp::SftpSettings>,
}

impl fmt::Debug for BackendSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each crate's settings type has its own redacting Debug.
        let mut s = f.debug_struct("BackendSettings");
        #[cfg(feature = "postgres")]
        s.field("postgres", &self.postgres);
        #[cfg(feature = "mysql")]
        s.field("mysql", &self.mysql);
        #[cfg(feature = "ftp")]
        s.field("ftp", &self.ftp);
        #[cfg(feature = "sftp")]
        s.field("sftp", &self.sftp);
        s.finish()
    }
}

/// Why a backend's table could not be extracted.
#[derive(Debug)]
pub(crate) enum ExtractError {
    /// figment's error, and the table it was extracted from (to name the key as written).
    #[cfg_attr(
        not(any(
            feature = "postgres",
            feature = "mysql",
            feature = "ftp",
            feature = "sftp"
        )),
        allow(dead_code)
    )]
    Figment(Box<figment::Error>, &'static str),
    /// A rule of ours.
    Rule(coord_core::ConfigError),
}

#[cfg_attr(
    all(
        feature = "postgres",
        feature = "mysql",
        feature = "ftp",
        feature = "sftp"
    ),
    allow(dead_code)
)]
fn not_built(field: &'static str, value: &str) -> ExtractError {
    ExtractError::Rule(coord_core::ConfigError::new(
        field,
        format!("`{value}` needs a build with the `{value}` cargo feature"),
    ))
}

#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "ftp",
        feature = "sftp"
    )),
    allow(dead_code)
)]
fn extract<T: serde::de::DeserializeOwned>(
    figment: &Figment,
    key: &'static str,
) -> Result<T, ExtractError> {
    if !figment.contains(key) {
        return Err(ExtractError::Rule(coord_core::ConfigError::new(
            key,
            "missing: this backend needs its settings table",
        )));
    }
    figment
        .extract_inner(key)
        .map_err(|e| ExtractError::Figment(Box::new(e), key))
}

/// A backend crate's own check (the one `run` meets when it builds the store or the source),
/// as a rule on the table: `check-config` refuses what `run` refuses.
#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "ftp",
        feature = "sftp"
    )),
    allow(dead_code)
)]
fn rule(key: &'static str, error: impl fmt::Display) -> ExtractError {
    ExtractError::Rule(coord_core::ConfigError::new(key, error.to_string()))
}

impl BackendSettings {
    /// Extracts the tables of the backends `config` selects.
    #[allow(unused_mut, unused_variables)]
    pub(crate) fn extract(figment: &Figment, config: &Config) -> Result<Self, ExtractError> {
        let mut out = BackendSettings::default();
        match config.coordination.backend {
            Backend::Sqlite => {}
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let key = "coordination.postgres";
                let settings: coord_postgres::PgSettings = extract(figment, key)?;
                settings.validate().map_err(|e| rule(key, e))?;
                out.postgres = Some(settings);
            }
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres => return Err(not_built("coordination.backend", "postgres")),
            #[cfg(feature = "mysql")]
            Backend::Mysql => {
                let key = "coordination.mysql";
                // coord-mysql's own switch; the listener's is `coordination.migrate_on_start`,
                // which would silently override it.
                if figment.contains("coordination.mysql.migrate_on_connect") {
                    return Err(rule(
                        key,
                        "`migrate_on_connect` is coord-mysql's own switch, not a listener key: \
                         set coordination.migrate_on_start",
                    ));
                }
                out.mysql = Some(extract(figment, key)?);
            }
            #[cfg(not(feature = "mysql"))]
            Backend::Mysql => return Err(not_built("coordination.backend", "mysql")),
        }
        match config.source.kind {
            SourceKind::Local => {}
            #[cfg(feature = "ftp")]
            SourceKind::Ftp => {
                let key = "source.ftp";
                let settings: transfer_ftp::FtpSettings = extract(figment, key)?;
                // What `open_source` builds: no connection is made.
                transfer_ftp::FtpFs::new(settings.clone()).map_err(|e| rule(key, e))?;
                out.ftp = Some(settings);
            }
            #[cfg(not(feature = "ftp"))]
            SourceKind::Ftp => return Err(not_built("source.kind", "ftp")),
            #[cfg(feature = "sftp")]
            SourceKind::Sftp => {
                let key = "source.sftp";
                let settings: transfer_sftp::SftpSettings = extract(figment, key)?;
                transfer_sftp::SftpFs::new(settings.clone()).map_err(|e| rule(key, e))?;
                out.sftp = Some(settings);
            }
            #[cfg(not(feature = "sftp"))]
            SourceKind::Sftp => return Err(not_built("source.kind", "sftp")),
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_print() {
        let raw: RawSettings =
            Figment::from(figment::providers::Serialized::defaults(serde_json_like()))
                .extract()
                .unwrap();
        let debug = format!("{raw:?}");
        let printed = toml::to_string(&raw).unwrap();
        for text in [&debug, &printed] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
            assert!(!text.contains("phrase!"), "{text}");
            assert!(text.contains("db.example"), "{text}");
            assert!(
                text.contains("FTP_PASSWORD"),
                "an env var name is not secret: {text}"
            );
        }
    }

    fn serde_json_like() -> BTreeMap<String, Value> {
        let mut auth = BTreeMap::new();
        auth.insert("method".to_string(), Value::from("key"));
        auth.insert("passphrase".to_string(), Value::from("phrase!"));
        let mut m = BTreeMap::new();
        m.insert(
            "url".to_string(),
            Value::from("postgres://u:hunter2@db.example/x"),
        );
        m.insert("password".to_string(), Value::from("s3cret"));
        m.insert("password_env".to_string(), Value::from("FTP_PASSWORD"));
        m.insert("auth".to_string(), Value::from(auth));
        m
    }
}
