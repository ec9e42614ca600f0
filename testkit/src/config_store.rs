//! The in-memory [`ConfigStore`]: the reference semantics of the trait (versions numbered 1,
//! 2, … per cluster, every member's row replaced whole), its clock the process's own clock
//! standing in for the database's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use coord_core::{ConfigStore, ConfigVersion, MemberApplyStatus, MemberReport, StoreError};

#[derive(Debug, Default)]
struct Cluster {
    versions: Vec<ConfigVersion>,
    members: BTreeMap<String, (MemberReport, i64, Instant)>,
}

/// Cluster configurations and member rows in memory; clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct MemConfigStore {
    clusters: Arc<Mutex<HashMap<String, Cluster>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl MemConfigStore {
    fn with<T>(&self, cluster: &str, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut clusters = self.clusters.lock().unwrap();
        f(clusters.entry(cluster.to_owned()).or_default())
    }
}

#[async_trait::async_trait]
impl ConfigStore for MemConfigStore {
    async fn push_config(
        &self,
        cluster: &str,
        body: &str,
        pushed_by: &str,
        comment: &str,
    ) -> Result<u64, StoreError> {
        Ok(self.with(cluster, |c| {
            let version = c.versions.len() as u64 + 1;
            c.versions.push(ConfigVersion {
                cluster: cluster.to_owned(),
                version,
                body: body.to_owned(),
                pushed_at_ms: now_ms(),
                pushed_by: pushed_by.to_owned(),
                comment: comment.to_owned(),
            });
            version
        }))
    }

    async fn latest_config_version(&self, cluster: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.with(cluster, |c| c.versions.last().map(|v| v.version)))
    }

    async fn config_version(
        &self,
        cluster: &str,
        version: u64,
    ) -> Result<Option<ConfigVersion>, StoreError> {
        Ok(self.with(cluster, |c| {
            c.versions.iter().find(|v| v.version == version).cloned()
        }))
    }

    async fn config_history(&self, cluster: &str) -> Result<Vec<ConfigVersion>, StoreError> {
        Ok(self.with(cluster, |c| c.versions.clone()))
    }

    async fn report_member(&self, cluster: &str, report: &MemberReport) -> Result<(), StoreError> {
        self.with(cluster, |c| {
            c.members.insert(
                report.member.clone(),
                (report.clone(), now_ms(), Instant::now()),
            );
        });
        Ok(())
    }

    async fn member_statuses(&self, cluster: &str) -> Result<Vec<MemberApplyStatus>, StoreError> {
        Ok(self.with(cluster, |c| {
            c.members
                .values()
                .map(|(report, at, written)| MemberApplyStatus {
                    report: report.clone(),
                    updated_at_ms: *at,
                    age_ms: u64::try_from(written.elapsed().as_millis()).unwrap_or(u64::MAX),
                })
                .collect()
        }))
    }
}
