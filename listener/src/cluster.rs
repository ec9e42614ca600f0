//! The cluster's configuration (issue 9): one TOML document per cluster name in the
//! coordination database, versioned with an audit trail (`ftp-listener cluster push`, `show`,
//! `history`, `diff`, `rollback`); each member applies the newest version live
//! ([`crate::Service::run_cluster`]) and keeps the last one it applied in its state
//! directory. What is local stays in the member's own file: member ID, database, state
//! directory, HTTP bind. Secrets are references (`password_env`, `password_file`), never in
//! the database.

use std::path::{Path, PathBuf};

use coord_core::{ConfigStore, ConfigVersion, StoreError};

use crate::config::{ClusterConfig, Config, ConfigError};
use crate::registry::Registry;

/// Keys a cluster document may not set: they are each member's own.
const LOCAL_KEYS: &[&str] = &["member_id", "memberId", "http", "cluster", "listeners.http"];
/// Keys under `coordination` that name the database (local); the timing keys are shared.
const LOCAL_COORDINATION: &[&str] = &[
    "backend",
    "sqlite",
    "postgres",
    "mysql",
    "databaseConfig",
    "memberId",
    "migrate_on_start",
];

/// Refuses a document that sets a member's local keys or holds an inline secret; every
/// problem is named by its dotted key (`listeners[1].source.ftp.password`).
pub(crate) fn check_document(document: &str) -> Result<(), String> {
    let value: toml::Value = document.parse().map_err(|e| format!("not TOML: {e}"))?;
    let mut problems = Vec::new();
    walk(&value, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn walk(value: &toml::Value, path: &str, problems: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let dotted = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let in_listener = path.starts_with("listeners[") && !path.contains('.');
                if (path.is_empty() || in_listener) && LOCAL_KEYS.contains(&key.as_str()) {
                    problems.push(format!(
                        "`{dotted}`: is each member's own (set it in the member's local file, \
                         not in the cluster configuration)"
                    ));
                    continue;
                }
                if (path == "coordination" || path.ends_with(".coordination"))
                    && LOCAL_COORDINATION.contains(&key.as_str())
                {
                    problems.push(format!(
                        "`{dotted}`: the database is each member's own (set it in the \
                         member's local file)"
                    ));
                    continue;
                }
                if crate::backend_settings::is_secret_key(key)
                    && matches!(inner, toml::Value::String(_))
                {
                    problems.push(format!(
                        "`{dotted}`: an inline secret is refused in the cluster configuration \
                         (it would be stored in clear): write `{key}_env = \"VARIABLE\"` or \
                         `{key}_file = \"/path\"`, resolved on each member"
                    ));
                    continue;
                }
                walk(inner, &dotted, problems);
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The document is refused (every problem named).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The database refused or is unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such version.
    #[error("cluster `{cluster}` has no version {version}")]
    NoVersion {
        /// The cluster.
        cluster: String,
        /// The version asked for.
        version: u64,
    },
}

/// Validates `document` exactly as a member whose local file is `local` would load it
/// (every listener, every backend setting), then stores it as the next version.
pub async fn push(
    store: &dyn ConfigStore,
    cluster: &str,
    local: Option<&Path>,
    document: &str,
    comment: &str,
    registry: &Registry,
) -> Result<u64, ClusterError> {
    Config::load_cluster(local, document, registry)?;
    Ok(store
        .push_config(cluster, document, &pusher(), comment)
        .await?)
}

/// A new version equal to `version`.
pub async fn rollback(
    store: &dyn ConfigStore,
    cluster: &str,
    local: Option<&Path>,
    version: u64,
    registry: &Registry,
) -> Result<u64, ClusterError> {
    let old = get(store, cluster, Some(version)).await?;
    let comment = format!("rollback to version {version}");
    push(store, cluster, local, &old.body, &comment, registry).await
}

/// One version (`None`: the newest).
pub async fn get(
    store: &dyn ConfigStore,
    cluster: &str,
    version: Option<u64>,
) -> Result<ConfigVersion, ClusterError> {
    let version = match version {
        Some(v) => v,
        None => store
            .latest_config_version(cluster)
            .await?
            .ok_or(ClusterError::NoVersion {
                cluster: cluster.to_string(),
                version: 0,
            })?,
    };
    store
        .config_version(cluster, version)
        .await?
        .ok_or(ClusterError::NoVersion {
            cluster: cluster.to_string(),
            version,
        })
}

/// `user@host` of this process, for the audit trail.
fn pusher() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_string());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{user}@{host}")
}

/// A line diff of two documents (`-` removed, `+` added, ` ` kept), for `cluster diff`.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table; documents are small.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

/// The last version a member applied, kept in its state directory.
#[derive(Debug, Clone)]
pub struct LastKnownGood {
    path: PathBuf,
}

impl LastKnownGood {
    /// The copy of `cluster` in its state directory.
    pub fn new(cluster: &ClusterConfig) -> Self {
        LastKnownGood {
            path: cluster
                .state_dir
                .join(format!("cluster-{}.toml", cluster.name)),
        }
    }

    /// The kept version and document; `Ok(None)` when there is none; an error names the
    /// file when it is unreadable or corrupt.
    pub fn read(&self) -> Result<Option<(u64, String)>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let (head, body) = text
            .split_once('\n')
            .ok_or_else(|| format!("{}: corrupt (no header line)", self.path.display()))?;
        let version = head
            .strip_prefix("# ftp-listener cluster configuration version ")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{}: corrupt header `{head}`", self.path.display()))?;
        Ok(Some((version, body.to_string())))
    }

    /// Keeps `body` as version `version` (written to a temporary file, then renamed).
    pub fn write(&self, version: u64, body: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(
            &tmp,
            format!("# ftp-listener cluster configuration version {version}\n{body}"),
        )?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keys_and_inline_secrets_are_refused_by_name() {
        let err = check_document(
            "member_id = \"x\"\n[coordination]\nbackend = \"postgres\"\nheartbeat_interval = \"1s\"\n\
             [[listeners]]\nname = \"a\"\nsource.ftp.password = \"hunter2\"\n\
             [[listeners]]\nname = \"b\"\nsource.ftp.password_env = \"FTP_PW\"\n",
        )
        .unwrap_err();
        assert!(err.contains("`member_id`: is each member's own"), "{err}");
        assert!(err.contains("`coordination.backend`"), "{err}");
        assert!(
            !err.contains("heartbeat_interval"),
            "timing is shared: {err}"
        );
        assert!(
            err.contains("`listeners[0].source.ftp.password`: an inline secret"),
            "{err}"
        );
        assert!(
            err.contains("password_env"),
            "says how to reference it: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!err.contains("listeners[1]"), "a reference is fine: {err}");
        assert!(check_document("[[listeners]]\nname = \"a\"\n").is_ok());
    }

    #[test]
    fn the_diff_marks_removed_and_added_lines() {
        let d = diff("a\nb\nc\n", "a\nc\nd\n");
        assert_eq!(d, "  a\n- b\n  c\n+ d\n");
    }

    #[test]
    fn the_last_known_good_copy_round_trips_and_corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = ClusterConfig {
            name: "prod".into(),
            state_dir: dir.path().join("state"),
            poll_interval: std::time::Duration::from_secs(2),
        };
        let lkg = LastKnownGood::new(&cluster);
        assert_eq!(lkg.read().unwrap(), None);
        lkg.write(7, "[[listeners]]\nname = \"a\"\n").unwrap();
        assert_eq!(
            lkg.read().unwrap(),
            Some((7, "[[listeners]]\nname = \"a\"\n".to_string()))
        );
        std::fs::write(dir.path().join("state/cluster-prod.toml"), "garbage").unwrap();
        let err = lkg.read().unwrap_err();
        assert!(err.contains("cluster-prod.toml"), "{err}");
    }
}
