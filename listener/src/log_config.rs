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

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}
