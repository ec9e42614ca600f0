//! [`ConfigStore`] on PostgreSQL: table `cluster_config_version`, one statement a call; a
//! push numbers itself in its own INSERT, so two concurrent pushes cannot share a version
//! (the loser hits the primary key and is told to retry).

use coord_core::{ConfigStore, ConfigVersion, MemberApplyStatus, MemberReport, StoreError};
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

const REPORT: &str = "INSERT INTO cluster_member_status \
     (cluster, member_id, applied_version, failed_version, error, listeners, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp() AT TIME ZONE 'UTC') \
     ON CONFLICT (cluster, member_id) DO UPDATE SET \
     applied_version = EXCLUDED.applied_version, failed_version = EXCLUDED.failed_version, \
     error = EXCLUDED.error, listeners = EXCLUDED.listeners, updated_at = EXCLUDED.updated_at";
const MEMBERS: &str = "SELECT member_id, applied_version, failed_version, error, listeners, \
     (EXTRACT(EPOCH FROM updated_at) * 1000)::BIGINT, \
     (EXTRACT(EPOCH FROM (clock_timestamp() AT TIME ZONE 'UTC') - updated_at) * 1000)::BIGINT \
     FROM cluster_member_status WHERE cluster = $1 ORDER BY member_id";

fn version_column(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn member_of(row: &Row) -> MemberApplyStatus {
    let version = |i: usize| {
        row.get::<_, Option<i64>>(i)
            .and_then(|v| u64::try_from(v).ok())
    };
    MemberApplyStatus {
        report: MemberReport {
            member: row.get(0),
            applied_version: version(1),
            failed_version: version(2),
            error: row.get(3),
            listeners: row.get(4),
        },
        updated_at_ms: row.get(5),
        age_ms: u64::try_from(row.get::<_, i64>(6)).unwrap_or(0),
    }
}

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

    async fn report_member(&self, cluster: &str, report: &MemberReport) -> Result<(), StoreError> {
        self.query(
            "report member status",
            cluster,
            REPORT,
            &[
                &cluster,
                &report.member,
                &version_column(report.applied_version),
                &version_column(report.failed_version),
                &report.error,
                &report.listeners,
            ],
        )
        .await?;
        Ok(())
    }

    async fn member_statuses(&self, cluster: &str) -> Result<Vec<MemberApplyStatus>, StoreError> {
        let rows = self
            .query("read member status", cluster, MEMBERS, &[&cluster])
            .await?;
        Ok(rows.iter().map(member_of).collect())
    }
}

// Operators' requests to the leader (`ledger retry|forget`).

use coord_core::{FileVersion, GroupId, Redrive, RequestStore};

const REQUEST: &str = "INSERT INTO ledger_request (group_id, path, size, mtime_ms, action) \
     VALUES ($1, $2, $3, $4, $5)";
const PENDING: &str = "SELECT path, size, mtime_ms, action FROM ledger_request \
     WHERE group_id = $1 ORDER BY id";
const TAKE: &str = "DELETE FROM ledger_request WHERE id IN (SELECT id FROM ledger_request \
     WHERE group_id = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING path, size, mtime_ms, action, id";

fn request_of(row: &Row) -> Option<(FileVersion, Redrive)> {
    let version = FileVersion {
        path: row.get(0),
        size: u64::try_from(row.get::<_, i64>(1)).ok()?,
        mtime_ms: row.get(2),
    };
    Some((version, Redrive::parse(row.get(3))?))
}

#[async_trait::async_trait]
impl RequestStore for PgStore {
    async fn request(
        &self,
        group: &GroupId,
        version: &FileVersion,
        action: Redrive,
    ) -> Result<(), StoreError> {
        let g = group.as_str();
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        self.query(
            "request",
            g,
            REQUEST,
            &[
                &g,
                &version.path,
                &size,
                &version.mtime_ms,
                &action.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn pending(&self, group: &GroupId) -> Result<Vec<(FileVersion, Redrive)>, StoreError> {
        let g = group.as_str();
        let rows = self.query("pending requests", g, PENDING, &[&g]).await?;
        Ok(rows.iter().filter_map(request_of).collect())
    }

    async fn take(
        &self,
        group: &GroupId,
        limit: usize,
    ) -> Result<Vec<(FileVersion, Redrive)>, StoreError> {
        let g = group.as_str();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = self.query("take requests", g, TAKE, &[&g, &limit]).await?;
        rows.sort_by_key(|r| r.get::<_, i64>(4));
        Ok(rows.iter().filter_map(request_of).collect())
    }
}
