//! `handler.kind = "forward"`: the destinations a file is uploaded to, and the checks made at
//! load (so `check-config` refuses what `run` would). Each destination is written like a
//! `[source]`: `kind` (`local`, `ftp`, `sftp`), `path`, and the kind's settings table
//! (`ftp = { host, port, user, password_env, tls, ca_file, ... }`, the same vocabulary and the
//! same code as the sources').

use figment::Figment;
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};

use crate::backend_settings::RawSettings;
use crate::config::{ConfigError, ListenerEntry, SourceKind};
use crate::registry::{Registry, Settings};

/// Which destinations take a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// The first destination, in order, that takes the file (the default); the next one only
    /// when the one before failed.
    #[default]
    Failover,
    /// Every destination; the file is handled once all of them have it.
    Fanout,
}

// By hand, so the message names the key: inside `[handler]` (an internally tagged enum) serde
// reports every error at `handler`.
impl<'de> Deserialize<'de> for ForwardMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "failover" => Ok(ForwardMode::Failover),
            "fanout" => Ok(ForwardMode::Fanout),
            other => Err(serde::de::Error::custom(format!(
                "`handler.mode` is `{other}`: one of `failover`, `fanout`"
            ))),
        }
    }
}

/// `[handler]` with `kind = "forward"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// `failover` (default) or `fanout`.
    #[serde(default)]
    pub mode: ForwardMode,
    /// The destinations, in order (`[[handler.destinations]]`); at least one.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// The upload's temporary name is `<temp_prefix><name><temp_suffix>`, next to the target
    /// (defaults `"."` and `".part"`: hidden, and no `*.csv` filter downstream matches it).
    #[serde(default = "default_temp_prefix")]
    pub temp_prefix: String,
    /// See `temp_prefix`.
    #[serde(default = "default_temp_suffix")]
    pub temp_suffix: String,
    /// Replace a target that exists with another size (default false: that destination
    /// fails). A target with the listed size counts as delivered either way.
    #[serde(default)]
    pub overwrite: bool,
}

fn default_temp_prefix() -> String {
    ".".to_string()
}

fn default_temp_suffix() -> String {
    ".part".to_string()
}

/// One `[[handler.destinations]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationConfig {
    /// The name the log and the ledger's detail use (default `destination-<n>`, from 1).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `local` (default), `ftp` (plain, explicit or implicit FTPS) or `sftp`.
    #[serde(default)]
    pub kind: SourceKind,
    /// The folder files go to; a file's path below the watched folder is kept.
    #[serde(default)]
    pub path: String,
    /// FTP/FTPS settings, as `source.ftp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp: Option<RawSettings>,
    /// SFTP settings, as `source.sftp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<RawSettings>,
    /// Keys that are none of the above, refused at load naming the entry (serde would name
    /// only `handler`); redacted in `Debug` like the settings.
    #[serde(flatten, default, skip_serializing)]
    pub(crate) unknown: RawSettings,
}

/// The destination kinds (the built-in sources).
const KINDS: &[&str] = &["local", "ftp", "sftp"];

impl DestinationConfig {
    /// The configured name, or `destination-<n>` for the `index`-th (from 0).
    pub fn name_or_default(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("destination-{}", index + 1)
        } else {
            self.name.clone()
        }
    }

    /// The kind's settings table as written (`None` for `local`).
    fn table(&self) -> Option<&RawSettings> {
        match self.kind {
            SourceKind::Ftp => self.ftp.as_ref(),
            SourceKind::Sftp => self.sftp.as_ref(),
            _ => None,
        }
    }

    /// The kind's settings, for its backend: a figment of their own, whose errors name the
    /// key as `handler.destinations[<index>].<kind>.<key>` and the file it came from.
    pub(crate) fn settings(&self, index: usize, origin: &str) -> Settings {
        let kind = self.kind.name();
        let key = format!("handler.destinations[{index}].{kind}");
        let mut dict = Dict::new();
        if let Some(table) = self.table() {
            let inner: Dict = table.values().clone().into_iter().collect();
            let mut entry = Dict::new();
            entry.insert(kind.to_string(), Value::from(inner));
            let mut destinations = Dict::new();
            destinations.insert(format!("destinations[{index}]"), Value::from(entry));
            dict.insert("handler".to_string(), Value::from(destinations));
        }
        let figment = Figment::from(ListenerEntry {
            dict,
            // Errors say "(in <source>)".
            source: origin.strip_prefix("in ").unwrap_or(origin).to_string(),
        });
        Settings::new(figment, key)
    }

    /// `ftp://host:port/path`, `sftp://host:port/path` or the local path: what the log and
    /// the ledger say (never a secret: only `host` and `port` are read).
    pub(crate) fn describe(&self, path: &str) -> String {
        let Some(table) = self.table() else {
            return path.to_string();
        };
        let text = |key: &str| match table.values().get(key) {
            Some(Value::String(_, s)) => Some(s.clone()),
            Some(number @ Value::Num(..)) => number
                .to_u128()
                .map(|n| n.to_string())
                .or_else(|| number.to_i128().map(|n| n.to_string())),
            _ => None,
        };
        let host = text("host").unwrap_or_default();
        let port = text("port").map(|p| format!(":{p}")).unwrap_or_default();
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        format!("{}://{host}{port}{path}", self.kind.name())
    }
}

impl ForwardConfig {
    /// Every rule serde cannot check, and each destination's settings through its source
    /// backend (without connecting). The error names the key as
    /// `handler.destinations[<index>].<key>` and `origin`.
    pub(crate) fn check(&self, registry: &Registry, origin: &str) -> Result<(), ConfigError> {
        let refuse =
            |key: &str, rule: String| ConfigError::Parse(format!("`{key}`: {rule} ({origin})"));
        if self.destinations.is_empty() {
            return Err(refuse(
                "handler.destinations",
                "the forward handler needs at least one destination \
                 ([[handler.destinations]] with `kind` and `path`)"
                    .into(),
            ));
        }
        for (key, value) in [
            ("handler.temp_prefix", &self.temp_prefix),
            ("handler.temp_suffix", &self.temp_suffix),
        ] {
            if value.contains(['/', '\\', '\0', '\r', '\n']) {
                return Err(refuse(
                    key,
                    format!("`{value}`: a name part, no `/`, `\\` or control characters"),
                ));
            }
        }
        if self.temp_prefix.is_empty() && self.temp_suffix.is_empty() {
            return Err(refuse(
                "handler.temp_suffix",
                "temp_prefix and temp_suffix are both empty: the upload would go to the final \
                 name directly"
                    .into(),
            ));
        }
        let mut names: Vec<String> = Vec::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let at = |key: &str| format!("handler.destinations[{i}].{key}");
            if let Some(key) = d.unknown.values().keys().next() {
                return Err(refuse(
                    &at(key),
                    "unknown key (expected one of `name`, `kind`, `path`, `ftp`, `sftp`)".into(),
                ));
            }
            let kind = d.kind.name();
            if !KINDS.contains(&kind) {
                return Err(refuse(
                    &at("kind"),
                    format!(
                        "`{kind}` is not a destination kind (one of {})",
                        KINDS.join(", ")
                    ),
                ));
            }
            let backend = registry
                .source(kind)
                .ok_or_else(|| refuse(&at("kind"), registry.unknown_source(kind)))?;
            if d.path.trim().is_empty() {
                return Err(refuse(
                    &at("path"),
                    "must name the destination folder".into(),
                ));
            }
            for (table, present) in [("ftp", d.ftp.is_some()), ("sftp", d.sftp.is_some())] {
                if present && table != kind {
                    return Err(refuse(
                        &at(table),
                        format!("a destination of kind `{kind}` has no `{table}` settings"),
                    ));
                }
            }
            if kind != "local" && d.table().is_none() {
                return Err(refuse(
                    &at(kind),
                    format!("missing: a `{kind}` destination needs its settings table"),
                ));
            }
            backend
                .check(&d.settings(i, origin))
                .map_err(|e| ConfigError::Parse(e.0))?;
            let name = d.name_or_default(i);
            if names.contains(&name) {
                return Err(refuse(
                    &at("name"),
                    format!("`{name}` names two destinations"),
                ));
            }
            names.push(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    // figment's Jail closures return figment's own (large) error type.
    #![allow(clippy::result_large_err)]

    use std::path::Path;

    use figment::Jail;

    use crate::config::{Config, HandlerConfig};

    use super::*;

    const LOCAL: &str = "[handler]\nkind = \"forward\"\n";

    fn load(file: &str) -> Result<Config, String> {
        Config::load(Some(Path::new(file))).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_destinations_load() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "f.toml",
                &format!(
                    "{LOCAL}[[handler.destinations]]\npath = \"/srv/out\"\n\
                     [[handler.destinations]]\nname = \"backup\"\nkind = \"local\"\n\
                     path = \"/srv/backup\"\n"
                ),
            )?;
            let c = load("f.toml").unwrap();
            let HandlerConfig::Forward(f) = &c.handler else {
                panic!("{:?}", c.handler)
            };
            assert_eq!(f.mode, ForwardMode::Failover);
            assert_eq!(
                (f.temp_prefix.as_str(), f.temp_suffix.as_str()),
                (".", ".part")
            );
            assert!(!f.overwrite);
            let names: Vec<String> = f
                .destinations
                .iter()
                .enumerate()
                .map(|(i, d)| d.name_or_default(i))
                .collect();
            assert_eq!(names, ["destination-1", "backup"]);
            assert_eq!(f.destinations[0].kind, SourceKind::Local);
            Ok(())
        });
    }

    #[test]
    fn refusals_name_the_key_and_the_file() {
        Jail::expect_with(|jail| {
            let cases: &[(&str, &str, &str)] = &[
                ("empty", "", "`handler.destinations`"),
                (
                    "kind",
                    "[[handler.destinations]]\nkind = \"s3\"\npath = \"/x\"\n",
                    "`handler.destinations[0].kind`: `s3` is not a destination kind",
                ),
                (
                    "path",
                    "[[handler.destinations]]\nkind = \"local\"\n",
                    "`handler.destinations[0].path`",
                ),
                (
                    "names",
                    "[[handler.destinations]]\nname = \"a\"\npath = \"/x\"\n\
                     [[handler.destinations]]\nname = \"a\"\npath = \"/y\"\n",
                    "`handler.destinations[1].name`: `a` names two destinations",
                ),
                (
                    "suffix",
                    "temp_suffix = \"/x\"\n[[handler.destinations]]\npath = \"/x\"\n",
                    "`handler.temp_suffix`",
                ),
                (
                    "mode",
                    "mode = \"broadcast\"\n[[handler.destinations]]\npath = \"/x\"\n",
                    "`handler.mode` is `broadcast`",
                ),
                (
                    "unknown",
                    "[[handler.destinations]]\npath = \"/x\"\ncolour = \"red\"\n",
                    "`handler.destinations[0].colour`: unknown key",
                ),
            ];
            for (name, body, expected) in cases {
                let file = format!("{name}.toml");
                jail.create_file(&file, &format!("{LOCAL}{body}"))?;
                let err = load(&file).unwrap_err();
                assert!(err.contains(expected), "{name}: {err}");
                assert!(err.contains(&file), "{name}: the file is named: {err}");
            }
            Ok(())
        });
    }

    #[cfg(feature = "ftp")]
    #[test]
    fn a_destinations_ftp_settings_are_checked_like_a_sources() {
        Jail::expect_with(|jail| {
            let ftp = |extra: &str| {
                format!(
                    "{LOCAL}[[handler.destinations]]\nkind = \"ftp\"\npath = \"/in\"\n\
                     ftp = {{ host = \"h\", user = \"u\", {extra} }}\n"
                )
            };
            jail.create_file("port.toml", &ftp("password_env = \"P\", port = \"x\""))?;
            let err = load("port.toml").unwrap_err();
            assert!(err.contains("`handler.destinations[0].ftp.port`"), "{err}");
            assert!(err.contains("port.toml"), "{err}");
            jail.create_file("two.toml", &ftp("password = \"p\", password_env = \"P\""))?;
            let err = load("two.toml").unwrap_err();
            assert!(
                err.contains("handler.destinations[0].ftp") && err.contains("exactly one"),
                "{err}"
            );
            jail.create_file("tls.toml", &ftp("password = \"p\", tls = \"implict\""))?;
            let err = load("tls.toml").unwrap_err();
            assert!(
                err.contains("`handler.destinations[0].ftp.tls`") && err.contains("implicit"),
                "{err}"
            );
            jail.create_file(
                "missing.toml",
                &format!("{LOCAL}[[handler.destinations]]\nkind = \"ftp\"\npath = \"/in\"\n"),
            )?;
            let err = load("missing.toml").unwrap_err();
            assert!(
                err.contains("`handler.destinations[0].ftp`: missing"),
                "{err}"
            );
            jail.create_file(
                "other.toml",
                &format!(
                    "{LOCAL}[[handler.destinations]]\nkind = \"local\"\npath = \"/in\"\n\
                     sftp = {{ host = \"h\" }}\n"
                ),
            )?;
            let err = load("other.toml").unwrap_err();
            assert!(err.contains("`handler.destinations[0].sftp`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_cluster_document_refuses_a_destinations_inline_secret() {
        let document = "[[listeners]]\nname = \"a\"\n[listeners.handler]\nkind = \"forward\"\n\
                        [[listeners.handler.destinations]]\nkind = \"ftp\"\npath = \"/in\"\n\
                        ftp = { host = \"h\", user = \"u\", password = \"hunter2\" }\n";
        let err = crate::cluster::check_document(document).unwrap_err();
        assert!(
            err.contains("`listeners[0].handler.destinations[0].ftp.password`: an inline secret")
                && err.contains("password_env"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_destination_is_described_without_secrets() {
        let d: DestinationConfig = figment::Figment::from(
            figment::providers::Serialized::defaults(figment::util::map! {
                "kind" => Value::from("ftp"),
                "path" => Value::from("/in"),
                "ftp" => Value::from(figment::util::map! {
                    "host" => Value::from("partner.example"),
                    "port" => Value::from(2121u16),
                    "password" => Value::from("hunter2"),
                }),
            }),
        )
        .extract()
        .unwrap();
        assert_eq!(d.describe(&d.path), "ftp://partner.example:2121/in");
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
