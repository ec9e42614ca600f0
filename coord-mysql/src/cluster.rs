//! [`ConfigStore`] on MySQL/MariaDB: table `cluster_config_version`. A push reads the newest
//! number and inserts the next one; two concurrent pushes cannot share it (the loser hits
//! the primary key and is told to retry).

use coord_core::{ConfigStore, ConfigVersion, StoreError};
use mysql_async::prelude::Queryable;

use crate::MySqlStore;
use crate::error::{Failure, bad_row};

const LATEST: &str = "SELECT MAX(version) FROM cluster_config_version WHERE cluster = ?";
const INSERT: &str = "INSERT INTO cluster_config_version \
     (cluster, version, body, pushed_by, comment) VALUES (?, ?, ?, ?, ?)";
const COLUMNS: &str = "SELECT cluster, version, body, \
     CAST(UNIX_TIMESTAMP(pushed_at) * 1000 AS SIGNED), pushed_by, comment \
     FROM cluster_config_version WHERE cluster = ?";

type Columns = (String, i64, String, i64, String, String);

fn version_of((cluster, version, body, at, by, comment): Columns) -> ConfigVersion {
    ConfigVersion {
        cluster,
        version: u64::try_from(version).unwrap_or(0),
        body,
        pushed_at_ms: at,
        pushed_by: by,
        comment,
    }
}

#[async_trait::async_trait]
impl ConfigStore for MySqlStore {
    async fn push_config(
        &self,
        cluster: &str,
        body: &str,
        pushed_by: &str,
        comment: &str,
    ) -> Result<u64, StoreError> {
        self.run("push cluster configuration", cluster, None, async |conn| {
            let latest: Option<Option<i64>> = conn.exec_first(LATEST, (cluster,)).await?;
            let next = latest.flatten().unwrap_or(0) + 1;
            conn.exec_drop(INSERT, (cluster, next, body, pushed_by, comment))
                .await
                .map_err(|e| match &e {
                    mysql_async::Error::Server(s) if s.code == 1062 => {
                        Failure::Input(format!("a concurrent push took version {next}: push again"))
                    }
                    _ => Failure::Db(e),
                })?;
            Ok(u64::try_from(next).unwrap_or(0))
        })
        .await
    }

    async fn latest_config_version(&self, cluster: &str) -> Result<Option<u64>, StoreError> {
        self.run("read cluster configuration", cluster, None, async |conn| {
            let latest: Option<Option<i64>> = conn.exec_first(LATEST, (cluster,)).await?;
            Ok(latest.flatten().and_then(|v| u64::try_from(v).ok()))
        })
        .await
    }

    async fn config_version(
        &self,
        cluster: &str,
        version: u64,
    ) -> Result<Option<ConfigVersion>, StoreError> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.run("read cluster configuration", cluster, None, async |conn| {
            let sql = format!("{COLUMNS} AND version = ?");
            let row: Option<Columns> = conn
                .exec_first(sql, (cluster, version))
                .await
                .map_err(|e| bad_row(format!("cluster_config_version: {e}")))?;
            Ok(row.map(version_of))
        })
        .await
    }

    async fn config_history(&self, cluster: &str) -> Result<Vec<ConfigVersion>, StoreError> {
        self.run("read cluster configuration", cluster, None, async |conn| {
            let sql = format!("{COLUMNS} ORDER BY version");
            let rows: Vec<Columns> = conn
                .exec(sql, (cluster,))
                .await
                .map_err(|e| bad_row(format!("cluster_config_version: {e}")))?;
            Ok(rows.into_iter().map(version_of).collect())
        })
        .await
    }
}
