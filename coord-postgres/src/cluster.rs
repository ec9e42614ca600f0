//! [`ConfigStore`] on PostgreSQL: table `cluster_config_version`, one statement a call; a
//! push numbers itself in its own INSERT, so two concurrent pushes cannot share a version
//! (the loser hits the primary key and is told to retry).

use coord_core::{ConfigStore, ConfigVersion, StoreError};
use tokio_postgres::Row;

use crate::PgStore;

const PUSH: &str = "INSERT INTO cluster_config_version (cluster, version, body, pushed_by, comment) \
     SELECT $1::VARCHAR, COALESCE(MAX(version), 0) + 1, $2::TEXT, $3::VARCHAR, $4::TEXT \
     FROM cluster_config_version \
     WHERE cluster = $1 RETURNING version";
const LATEST: &str = "SELECT MAX(version) FROM cluster_config_version WHERE cluster = $1";
const COLUMNS: &str = "SELECT cluster, version, body, \
     (EXTRACT(EPOCH FROM pushed_at) * 1000)::BIGINT, pushed_by, comment \
     FROM cluster_config_version WHERE cluster = $1";

fn version_of(row: &Row) -> ConfigVersion {
    ConfigVersion {
        cluster: row.get(0),
        version: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        body: row.get(2),
        pushed_at_ms: row.get(3),
        pushed_by: row.get(4),
        comment: row.get(5),
    }
}

#[async_trait::async_trait]
impl ConfigStore for PgStore {
    async fn push_config(
        &self,
        cluster: &str,
        body: &str,
        pushed_by: &str,
        comment: &str,
    ) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "push cluster configuration",
                cluster,
                PUSH,
                &[&cluster, &body, &pushed_by, &comment],
            )
            .await?;
        let version: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(u64::try_from(version).unwrap_or(0))
    }

    async fn latest_config_version(&self, cluster: &str) -> Result<Option<u64>, StoreError> {
        let rows = self
            .query("read cluster configuration", cluster, LATEST, &[&cluster])
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .and_then(|v| u64::try_from(v).ok()))
    }

    async fn config_version(
        &self,
        cluster: &str,
        version: u64,
    ) -> Result<Option<ConfigVersion>, StoreError> {
        let sql = format!("{COLUMNS} AND version = $2");
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "read cluster configuration",
                cluster,
                &sql,
                &[&cluster, &version],
            )
            .await?;
        Ok(rows.first().map(version_of))
    }

    async fn config_history(&self, cluster: &str) -> Result<Vec<ConfigVersion>, StoreError> {
        let sql = format!("{COLUMNS} ORDER BY version");
        let rows = self
            .query("read cluster configuration", cluster, &sql, &[&cluster])
            .await?;
        Ok(rows.iter().map(version_of).collect())
    }
}
