//! `[log]`: how the process writes its log lines. The library only carries the setting; the
//! binary installs the subscriber (text or one JSON object a line).

use serde::{Deserialize, Serialize};

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object a line; span fields (`member`, `group`, `term`, ...) are flattened
    /// into it beside the event's own (`path`, ...).
    Json,
}

/// `log.rotation`: when the log file starts a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    /// A new file every day (`<file>.YYYY-MM-DD`; the default).
    #[default]
    Daily,
    /// A new file every hour (`<file>.YYYY-MM-DD-HH`).
    Hourly,
    /// One file, never rotated (rotate it with logrotate's copytruncate).
    Never,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Write the log to this file instead of standard error; `{member}` and `{host}` are
    /// this member's ID and host name (`/var/log/ftp-listener-{member}.log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<std::path::PathBuf>,
    /// When the file starts a new one (default `daily`).
    #[serde(default)]
    pub rotation: LogRotation,
    /// How many rotated files are kept (default 14).
    #[serde(default = "fourteen")]
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            file: None,
            rotation: LogRotation::default(),
            max_files: fourteen(),
        }
    }
}

fn fourteen() -> usize {
    14
}
