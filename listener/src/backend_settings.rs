//! The settings tables of the backend crates (`coordination.postgres`,
//! `coordination.mysql`, `source.ftp`, `source.sftp`): kept raw for printing (secrets
//! redacted), and extracted into each crate's own settings type with figment, so an error
//! names the key and the file.

use std::collections::BTreeMap;
use std::fmt;

use figment::Figment;
use figment::value::Value;
use serde::{Deserialize, Serialize};

#[cfg_attr(
    not(any(
        feature = "postgres",
        feature = "mysql",
        feature = "ftp",
        feature = "sftp"
    )),
    allow(unused_imports)
)]
use crate::config::{Backend, Config, SourceKind};

/// A backend's settings table as written, printed with every secret replaced by `***`:
/// values of keys that name a password, passphrase or secret, and passwords inside URLs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RawSettings(BTreeMap<String, Value>);

pub(crate) fn is_secret_key(key: &str) -> bool {
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

/// A value under `[coordination]` or `[source]` that is not one of their keys: the settings
/// table of a registered backend (refused at load when it is not one). Printed and
/// `Debug`-formatted with its secrets redacted, like [`RawSettings`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct RawTable(pub(crate) Value);

impl RawTable {
    /// Whether it is a table (not a single value).
    pub fn is_table(&self) -> bool {
        matches!(self.0, Value::Dict(..))
    }
}

impl Serialize for RawTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        redact("", &self.0).serialize(s)
    }
}

impl fmt::Debug for RawTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display_value(&redact("", &self.0)))
    }
}

impl RawSettings {
    /// The table as written, secrets included (never printed).
    pub(crate) fn values(&self) -> &BTreeMap<String, Value> {
        &self.0
    }

    fn redacted(&self) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), redact(k, v)))
            .collect()
    }
}

impl PartialEq for RawSettings {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
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
    /// A rule of ours, or a registered backend's check.
    Rule(coord_core::ConfigError),
    /// A registered backend's check, its message naming the key.
    Settings(crate::registry::SettingsError),
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
) -> Result<Option<T>, ExtractError> {
    if !figment.contains(key) {
        return Ok(None);
    }
    figment
        .extract_inner(key)
        .map(Some)
        .map_err(|e| ExtractError::Figment(Box::new(e), key))
}

/// Refuses a key under `[coordination]` or `[source]` that is neither one of theirs nor the
/// settings table of a registered backend.
pub(crate) fn check_tables(
    config: &Config,
    registry: &crate::registry::Registry,
) -> Result<(), coord_core::ConfigError> {
    let rule = |field: &'static str, message: String| coord_core::ConfigError::new(field, message);
    // The names first: a table of an unknown backend is explained by its name.
    let store = config.coordination.backend.name();
    if registry.store(store).is_none() {
        return Err(rule("coordination.backend", registry.unknown_store(store)));
    }
    let source = config.source.kind.name();
    if registry.source(source).is_none() {
        return Err(rule("source.kind", registry.unknown_source(source)));
    }
    for (table, known, what) in [
        (
            &config.coordination.tables,
            registry.store_names().collect::<Vec<_>>(),
            "coordination",
        ),
        (
            &config.source.tables,
            registry.source_names().collect::<Vec<_>>(),
            "source",
        ),
    ] {
        if let Some((key, value)) = table
            .iter()
            .find(|(key, value)| !value.is_table() || !known.contains(&key.as_str()))
        {
            let field = if what == "source" {
                "source"
            } else {
                "coordination"
            };
            let why = if value.is_table() {
                format!(
                    "`{what}.{key}`: unknown key (a table here is the settings of a \
                         registered backend; this build knows {})",
                    known.join(", ")
                )
            } else {
                format!("`{what}.{key}`: unknown key")
            };
            return Err(rule(field, why));
        }
    }
    Ok(())
}

impl BackendSettings {
    /// Checks the selected store and source with their registered backends (unknown names
    /// and unknown tables refused), then extracts the typed settings of the built-in ones.
    #[allow(unused_mut, unused_variables)]
    pub(crate) fn extract(
        figment: &Figment,
        config: &Config,
        registry: &crate::registry::Registry,
    ) -> Result<Self, ExtractError> {
        use crate::registry::Settings;
        let rule = |field: &'static str, message: String| {
            ExtractError::Rule(coord_core::ConfigError::new(field, message))
        };
        let store = config.coordination.backend.name();
        let backend = registry
            .store(store)
            .ok_or_else(|| rule("coordination.backend", registry.unknown_store(store)))?;
        let source = config.source.kind.name();
        let source_backend = registry
            .source(source)
            .ok_or_else(|| rule("source.kind", registry.unknown_source(source)))?;
        backend
            .check(&Settings::new(
                figment.clone(),
                format!("coordination.{store}"),
            ))
            .map_err(ExtractError::Settings)?;
        source_backend
            .check(&Settings::new(figment.clone(), format!("source.{source}")))
            .map_err(ExtractError::Settings)?;
        let mut out = BackendSettings::default();
        match config.coordination.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres => out.postgres = extract(figment, "coordination.postgres")?,
            #[cfg(feature = "mysql")]
            Backend::Mysql => out.mysql = extract(figment, "coordination.mysql")?,
            _ => {}
        }
        match config.source.kind {
            #[cfg(feature = "ftp")]
            SourceKind::Ftp => out.ftp = extract(figment, "source.ftp")?,
            #[cfg(feature = "sftp")]
            SourceKind::Sftp => out.sftp = extract(figment, "source.sftp")?,
            _ => {}
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
