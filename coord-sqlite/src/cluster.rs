//! [`ConfigStore`] on SQLite: table `cluster_config_version`, one statement a call (a push
//! numbers itself in its own INSERT; SQLite runs one writer at a time).

use coord_core::{ConfigStore, ConfigVersion, MemberApplyStatus, MemberReport, StoreError};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::store::Leftover;

const PUSH: &str = "INSERT INTO cluster_config_version \
     (cluster, version, body, pushed_at, pushed_by, comment) \
     SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, \
     CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), ?3, ?4 \
     FROM cluster_config_version WHERE cluster = ?1 RETURNING version";
const LATEST: &str = "SELECT MAX(version) FROM cluster_config_version WHERE cluster = ?1";
const COLUMNS: &str = "SELECT cluster, version, body, pushed_at, pushed_by, comment \
     FROM cluster_config_version WHERE cluster = ?1";

/// SQLite's clock in integer milliseconds since the epoch.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

fn report_sql() -> String {
    format!(
        "INSERT INTO cluster_member_status \
         (cluster, member_id, applied_version, failed_version, error, listeners, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW_MS}) \
         ON CONFLICT (cluster, member_id) DO UPDATE SET \
         applied_version = excluded.applied_version, failed_version = excluded.failed_version, \
         error = excluded.error, listeners = excluded.listeners, updated_at = excluded.updated_at"
    )
}

fn members_sql() -> String {
    format!(
        "SELECT member_id, applied_version, failed_version, error, listeners, updated_at, \
         MAX(0, {NOW_MS} - updated_at) FROM cluster_member_status WHERE cluster = ?1 \
         ORDER BY member_id"
    )
}

fn version_column(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn member_of(cluster: &str, row: &SqliteRow) -> Result<MemberApplyStatus, StoreError> {
    let bad = |e: sqlx::Error| StoreError::Rejected {
        operation: "read member status",
        group: cluster.to_owned(),
        cause: format!("cluster_member_status: a row cannot be decoded: {e}"),
    };
    let version = |i: usize| -> Result<Option<u64>, StoreError> {
        Ok(row
            .try_get::<Option<i64>, _>(i)
            .map_err(bad)?
            .and_then(|v| u64::try_from(v).ok()))
    };
    Ok(MemberApplyStatus {
        report: MemberReport {
            member: row.try_get(0).map_err(bad)?,
            applied_version: version(1)?,
            failed_version: version(2)?,
            error: row.try_get(3).map_err(bad)?,
            listeners: row.try_get(4).map_err(bad)?,
        },
        updated_at_ms: row.try_get(5).map_err(bad)?,
        age_ms: u64::try_from(row.try_get::<i64, _>(6).map_err(bad)?).unwrap_or(0),
    })
}

fn version_of(cluster: &str, row: &SqliteRow) -> Result<ConfigVersion, StoreError> {
    let bad = |e: sqlx::Error| StoreError::Rejected {
        operation: "read cluster configuration",
        group: cluster.to_owned(),
        cause: format!("cluster_config_version: a row cannot be decoded: {e}"),
    };
    Ok(ConfigVersion {
        cluster: row.try_get(0).map_err(bad)?,
        version: u64::try_from(row.try_get::<i64, _>(1).map_err(bad)?).unwrap_or(0),
        body: row.try_get(2).map_err(bad)?,
        pushed_at_ms: row.try_get(3).map_err(bad)?,
        pushed_by: row.try_get(4).map_err(bad)?,
        comment: row.try_get(5).map_err(bad)?,
    })
}

#[async_trait::async_trait]
impl ConfigStore for SqliteStore {
    async fn push_config(
        &self,
        cluster: &str,
        body: &str,
        pushed_by: &str,
        comment: &str,
    ) -> Result<u64, StoreError> {
        let version: i64 = self
            .call(
                "push cluster configuration",
                cluster,
                Leftover::Nothing,
                async |conn| {
                    sqlx::query_scalar(PUSH)
                        .bind(cluster)
                        .bind(body)
                        .bind(pushed_by)
                        .bind(comment)
                        .fetch_one(&mut **conn)
                        .await
                },
            )
            .await?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    async fn latest_config_version(&self, cluster: &str) -> Result<Option<u64>, StoreError> {
        let latest: Option<i64> = self
            .call(
                "read cluster configuration",
                cluster,
                Leftover::Nothing,
                async |conn| {
                    sqlx::query_scalar(LATEST)
                        .bind(cluster)
                        .fetch_one(&mut **conn)
                        .await
                },
            )
            .await?;
        Ok(latest.and_then(|v| u64::try_from(v).ok()))
    }

    async fn config_version(
        &self,
        cluster: &str,
        version: u64,
    ) -> Result<Option<ConfigVersion>, StoreError> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let sql = format!("{COLUMNS} AND version = ?2");
        let row = self
            .call(
                "read cluster configuration",
                cluster,
                Leftover::Nothing,
                async |conn| {
                    sqlx::query(&sql)
                        .bind(cluster)
                        .bind(version)
                        .fetch_optional(&mut **conn)
                        .await
                },
            )
            .await?;
        row.map(|row| version_of(cluster, &row)).transpose()
    }

    async fn config_history(&self, cluster: &str) -> Result<Vec<ConfigVersion>, StoreError> {
        let sql = format!("{COLUMNS} ORDER BY version");
        let rows = self
            .call(
                "read cluster configuration",
                cluster,
                Leftover::Nothing,
                async |conn| sqlx::query(&sql).bind(cluster).fetch_all(&mut **conn).await,
            )
            .await?;
        rows.iter().map(|row| version_of(cluster, row)).collect()
    }

    async fn report_member(&self, cluster: &str, report: &MemberReport) -> Result<(), StoreError> {
        let sql = report_sql();
        self.call(
            "report member status",
            cluster,
            Leftover::Nothing,
            async |conn| {
                sqlx::query(&sql)
                    .bind(cluster)
                    .bind(&report.member)
                    .bind(version_column(report.applied_version))
                    .bind(version_column(report.failed_version))
                    .bind(report.error.as_deref())
                    .bind(&report.listeners)
                    .execute(&mut **conn)
                    .await
            },
        )
        .await?;
        Ok(())
    }

    async fn member_statuses(&self, cluster: &str) -> Result<Vec<MemberApplyStatus>, StoreError> {
        let sql = members_sql();
        let rows = self
            .call(
                "read member status",
                cluster,
                Leftover::Nothing,
                async |conn| sqlx::query(&sql).bind(cluster).fetch_all(&mut **conn).await,
            )
            .await?;
        rows.iter().map(|row| member_of(cluster, row)).collect()
    }
}

// Operators' requests to the leader (`ledger retry|forget`).

use coord_core::{FileVersion, GroupId, Redrive, RequestStore};

const REQUEST: &str = "INSERT INTO ledger_request (group_id, path, size, mtime_ms, action) \
     VALUES (?1, ?2, ?3, ?4, ?5)";
const PENDING: &str = "SELECT path, size, mtime_ms, action FROM ledger_request \
     WHERE group_id = ?1 ORDER BY id";
const TAKE: &str = "DELETE FROM ledger_request WHERE id IN (SELECT id FROM ledger_request \
     WHERE group_id = ?1 ORDER BY id LIMIT ?2) RETURNING path, size, mtime_ms, action, id";

fn request_of(row: &SqliteRow) -> Option<(FileVersion, Redrive)> {
    let size: i64 = row.try_get(1).ok()?;
    let action: String = row.try_get(3).ok()?;
    Some((
        FileVersion {
            path: row.try_get(0).ok()?,
            size: u64::try_from(size).ok()?,
            mtime_ms: row.try_get(2).ok()?,
        },
        Redrive::parse(&action)?,
    ))
}

#[async_trait::async_trait]
impl RequestStore for SqliteStore {
    async fn request(
        &self,
        group: &GroupId,
        version: &FileVersion,
        action: Redrive,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        self.call("request", group.as_str(), Leftover::Nothing, async |conn| {
            sqlx::query(REQUEST)
                .bind(group.as_str())
                .bind(&version.path)
                .bind(size)
                .bind(version.mtime_ms)
                .bind(action.as_str())
                .execute(&mut **conn)
                .await
        })
        .await?;
        Ok(())
    }

    async fn pending(&self, group: &GroupId) -> Result<Vec<(FileVersion, Redrive)>, StoreError> {
        let rows = self
            .call(
                "pending requests",
                group.as_str(),
                Leftover::Nothing,
                async |conn| {
                    sqlx::query(PENDING)
                        .bind(group.as_str())
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        Ok(rows.iter().filter_map(request_of).collect())
    }

    async fn take(
        &self,
        group: &GroupId,
        limit: usize,
    ) -> Result<Vec<(FileVersion, Redrive)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = self
            .call(
                "take requests",
                group.as_str(),
                Leftover::Nothing,
                async |conn| {
                    sqlx::query(TAKE)
                        .bind(group.as_str())
                        .bind(limit)
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        rows.sort_by_key(|r| r.try_get::<i64, _>(4).unwrap_or(0));
        Ok(rows.iter().filter_map(request_of).collect())
    }
}
