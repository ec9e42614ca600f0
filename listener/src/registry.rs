//! Named backends: the coordination stores and file sources a configuration can name
//! (`coordination.backend = "<name>"`, `source.kind = "<name>"`), built-in or registered by a
//! binary of the user's own with [`Registry::with_store`] and [`Registry::with_source`].
//!
//! A backend gets its own settings table (`coordination.<name>`, `source.<name>`) as a
//! [`Settings`], extracts it into its own type with serde, and answers with a
//! [`SharedStore`] or a [`SharedSource`]. [`StoreBackend::check`] and
//! [`SourceBackend::check`] run at load, without connecting, so `check-config` refuses what
//! `run` would.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use coord_core::{SharedSource, SharedStore, StoreError};
use figment::Figment;
use serde::de::DeserializeOwned;

use crate::backends::BackendError;

/// One backend's settings table as the configuration wrote it, for the backend to extract.
/// `Debug` prints the key only (the table may hold secrets).
#[derive(Clone)]
pub struct Settings {
    figment: Figment,
    key: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings").field("key", &self.key).finish()
    }
}

/// A backend's settings table that is missing, malformed or breaks a rule; the message names
/// the key as written and where its value came from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub(crate) String);

impl Settings {
    pub(crate) fn new(figment: Figment, key: impl Into<String>) -> Self {
        Settings {
            figment,
            key: key.into(),
        }
    }

    /// The table's key (`coordination.redis`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the configuration has the table at all.
    pub fn is_present(&self) -> bool {
        self.figment.contains(&self.key)
    }

    /// The table extracted into the backend's own settings type; a missing table is refused
    /// unless `T` has defaults for everything (use [`Settings::is_present`] to tell).
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        if !self.is_present() {
            let empty = Figment::from(figment::providers::Serialized::defaults(BTreeMap::<
                String,
                String,
            >::new(
            )));
            return empty
                .extract::<T>()
                .map_err(|_| self.invalid("missing: this backend needs its settings table"));
        }
        self.figment
            .extract_inner(&self.key)
            .map_err(|e| SettingsError(crate::config::describe_figment(&e, Some(&self.key))))
    }

    /// An error naming this table: a rule of the backend's own.
    pub fn invalid(&self, rule: impl fmt::Display) -> SettingsError {
        SettingsError(format!("`{}`: {rule}", self.key))
    }

    /// An error naming one key of this table.
    pub fn invalid_key(&self, key: &str, rule: impl fmt::Display) -> SettingsError {
        SettingsError(format!("`{}.{key}`: {rule}", self.key))
    }

    /// A string identifying the table's contents: two listeners whose stores have equal
    /// settings share one store (one pool). Never printed (it holds the secrets).
    pub(crate) fn identity(&self) -> String {
        match self.figment.find_value(&self.key) {
            Ok(value) => format!("{}={}", self.key, canonical(&value)),
            Err(_) => format!("{}=<none>", self.key),
        }
    }
}

fn canonical(value: &figment::value::Value) -> String {
    use figment::value::Value;
    match value {
        Value::Dict(_, dict) => {
            let inner: Vec<String> = dict
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(_, items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => format!("{n:?}"),
        Value::Empty(_, _) => "none".to_string(),
    }
}

/// A coordination store a configuration can name. Implement it in the store's crate (or in
/// the binary that offers it) and register it with [`Registry::with_store`].
#[async_trait]
pub trait StoreBackend: Send + Sync {
    /// Checks the settings table without connecting (at load, and by `check-config`).
    fn check(&self, settings: &Settings) -> Result<(), SettingsError>;

    /// Connects; with `migrate`, creates or upgrades the schema first. A refusal that
    /// retrying cannot cure (credentials, settings, schema) must not be transient.
    async fn connect(&self, settings: &Settings, migrate: bool) -> Result<SharedStore, StoreError>;

    /// Whether `coordination.migrate_on_start` defaults to true (an embedded database).
    fn migrates_by_default(&self) -> bool {
        false
    }
}

/// A file source a configuration can name. Implement it and register it with
/// [`Registry::with_source`].
#[async_trait]
pub trait SourceBackend: Send + Sync {
    /// Checks the settings table without connecting (at load, and by `check-config`).
    fn check(&self, settings: &Settings) -> Result<(), SettingsError>;

    /// Opens the source for the configured `source.path` and returns it with the directory
    /// to list in the source's own terms (usually `path` itself). Connections may be made
    /// lazily, on the first listing.
    async fn open(
        &self,
        settings: &Settings,
        path: &str,
    ) -> Result<(SharedSource, String), BackendError>;

    /// Whether `source.path` and the done and error folders are local paths (made absolute
    /// against the working directory).
    fn is_local(&self) -> bool {
        false
    }
}

/// The backends a configuration may name. [`Registry::builtin`] holds those compiled into
/// this build (cargo features `sqlite`, `postgres`, `mysql`, `ftp`, `sftp`; `local` always).
#[derive(Clone, Default)]
pub struct Registry {
    stores: BTreeMap<String, Arc<dyn StoreBackend>>,
    sources: BTreeMap<String, Arc<dyn SourceBackend>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The names a built-in backend has: a build without its feature still knows the name, so
/// the error says which feature to enable.
pub(crate) const BUILTIN_STORES: &[&str] = &["sqlite", "postgres", "mysql"];
pub(crate) const BUILTIN_SOURCES: &[&str] = &["local", "ftp", "sftp"];

impl Registry {
    /// No backend at all.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// The backends compiled into this build.
    pub fn builtin() -> Self {
        crate::backends::register_builtin(Registry::default())
    }

    /// Adds (or replaces) the coordination store `name`, for `coordination.backend = "name"`
    /// with its settings in `[coordination.name]`.
    ///
    /// # Panics
    /// If `name` is not lowercase ASCII letters, digits, `-` or `_` (it is a TOML key).
    pub fn with_store(mut self, name: &str, backend: impl StoreBackend + 'static) -> Self {
        assert!(valid_name(name), "backend name `{name}`: use [a-z0-9_-]");
        self.stores.insert(name.to_string(), Arc::new(backend));
        self
    }

    /// Adds (or replaces) the file source `name`, for `source.kind = "name"` with its
    /// settings in `[source.name]`.
    ///
    /// # Panics
    /// If `name` is not lowercase ASCII letters, digits, `-` or `_`.
    pub fn with_source(mut self, name: &str, backend: impl SourceBackend + 'static) -> Self {
        assert!(valid_name(name), "source name `{name}`: use [a-z0-9_-]");
        self.sources.insert(name.to_string(), Arc::new(backend));
        self
    }

    /// The store registered as `name`.
    pub fn store(&self, name: &str) -> Option<&Arc<dyn StoreBackend>> {
        self.stores.get(name)
    }

    /// The source registered as `name`.
    pub fn source(&self, name: &str) -> Option<&Arc<dyn SourceBackend>> {
        self.sources.get(name)
    }

    /// The names of the registered stores.
    pub fn store_names(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }

    /// The names of the registered sources.
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The message for a store name that is not registered.
    pub(crate) fn unknown_store(&self, name: &str) -> String {
        unknown(
            "coordination store",
            name,
            self.store_names(),
            BUILTIN_STORES,
        )
    }

    /// The message for a source name that is not registered.
    pub(crate) fn unknown_source(&self, name: &str) -> String {
        unknown("source", name, self.source_names(), BUILTIN_SOURCES)
    }
}

fn unknown<'a>(
    what: &str,
    name: &str,
    registered: impl Iterator<Item = &'a str>,
    builtin: &[&str],
) -> String {
    let registered: Vec<&str> = registered.collect();
    if builtin.contains(&name) {
        format!("`{name}` needs a build with the `{name}` cargo feature")
    } else {
        format!(
            "no {what} named `{name}` in this build (known: {})",
            registered.join(", ")
        )
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
