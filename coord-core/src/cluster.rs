//! The cluster's configuration in the coordination database: one versioned document per
//! cluster name, with its audit trail (DESIGN §1: one source of truth, nodes that keep their
//! last known good copy). The document is opaque here (the listener's TOML); the store keeps
//! every version, numbers them 1, 2, … by name, and stamps each with the database's clock.

use async_trait::async_trait;

use crate::store::StoreError;

/// One stored version of a cluster's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersion {
    /// The cluster's name.
    pub cluster: String,
    /// 1 for the first push, then one more each push (a rollback is a push).
    pub version: u64,
    /// The document as pushed.
    pub body: String,
    /// When, by the database's clock: milliseconds since the Unix epoch.
    pub pushed_at_ms: i64,
    /// Who pushed it (free text: user@host).
    pub pushed_by: String,
    /// The pusher's comment (may be empty).
    pub comment: String,
}

/// What one member says of its cluster's configuration, written by the member itself when it
/// changes (table `cluster_member_status`): the version it took, the newest one it could not
/// apply fully and why, and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberReport {
    /// The member's ID.
    pub member: String,
    /// The newest version this member took (`None`: none yet). Its listeners run that
    /// version's definitions, except those named in `error`.
    pub applied_version: Option<u64>,
    /// The newest version this member could not apply fully (`None`: every listener runs the
    /// version it should).
    pub failed_version: Option<u64>,
    /// Why (every listener left on its previous definition, with its cause; never a secret).
    pub error: Option<String>,
    /// What it runs: `name@version`, comma separated, sorted by name.
    pub listeners: String,
}

/// One member's row as read back, with its age by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberApplyStatus {
    /// What the member wrote.
    pub report: MemberReport,
    /// When it wrote it, by the database's clock: milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// How long ago, by the database's clock, in milliseconds (never negative).
    pub age_ms: u64,
}

/// Where a cluster's configuration is kept: implemented by the SQL stores and `testkit`'s
/// in-memory one. Every method is one atomic step.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// Stores `body` as the next version of `cluster` and returns its number. Two concurrent
    /// pushes never get the same number: one of them fails (retry it).
    async fn push_config(
        &self,
        cluster: &str,
        body: &str,
        pushed_by: &str,
        comment: &str,
    ) -> Result<u64, StoreError>;

    /// The newest version's number (`None`: nothing pushed yet). Cheap: members poll it.
    async fn latest_config_version(&self, cluster: &str) -> Result<Option<u64>, StoreError>;

    /// One version (`None`: no such version).
    async fn config_version(
        &self,
        cluster: &str,
        version: u64,
    ) -> Result<Option<ConfigVersion>, StoreError>;

    /// Every version, oldest first.
    async fn config_history(&self, cluster: &str) -> Result<Vec<ConfigVersion>, StoreError>;

    /// Writes `report` as the row of `report.member` in `cluster` (insert or replace every
    /// column), stamped with the database's clock.
    async fn report_member(&self, cluster: &str, report: &MemberReport) -> Result<(), StoreError>;

    /// Every member's row of `cluster`, by member ID.
    async fn member_statuses(&self, cluster: &str) -> Result<Vec<MemberApplyStatus>, StoreError>;
}

/// The answer of a store that does not keep cluster configurations.
pub fn unsupported(store: &str) -> StoreError {
    StoreError::Rejected {
        operation: "cluster configuration",
        group: "*".to_owned(),
        cause: format!("the {store} store does not keep cluster configurations"),
    }
}
