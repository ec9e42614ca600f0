//! [`ConfigStore`] on MySQL/MariaDB: table `cluster_config_version`. A push reads the newest
//! number and inserts the next one; two concurrent pushes cannot share it (the loser hits
//! the primary key and is told to retry).

use coord_core::{ConfigStore, ConfigVersion, MemberApplyStatus, MemberReport, StoreError};
use mysql_async::prelude::Queryable;

use crate::MySqlStore;
use crate::error::{Failure, bad_row};

const LATEST: &str = "SELECT MAX(version) FROM cluster_config_version WHERE cluster = ?";
const INSERT: &str = "INSERT INTO cluster_config_version \
     (cluster, version, body, pushed_by, comment) VALUES (?, ?, ?, ?, ?)";
const COLUMNS: &str = "SELECT cluster, version, body, \
     CAST(UNIX_TIMESTAMP(pushed_at) * 1000 AS SIGNED), pushed_by, comment \
     FROM cluster_config_version WHERE cluster = ?";

const REPORT: &str = "INSERT INTO cluster_member_status \
     (cluster, member_id, applied_version, failed_version, error, listeners, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE \
     applied_version = VALUES(applied_version), failed_version = VALUES(failed_version), \
     error = VALUES(error), listeners = VALUES(listeners), updated_at = VALUES(updated_at)";
// `updated_at` is UTC: measured from the epoch and from `UTC_TIMESTAMP(3)` by difference, so
// the session's time zone never enters.
const MEMBERS: &str = "SELECT member_id, applied_version, failed_version, error, listeners, \
     CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', updated_at) DIV 1000 AS SIGNED), \
     CAST(TIMESTAMPDIFF(MICROSECOND, updated_at, UTC_TIMESTAMP(3)) DIV 1000 AS SIGNED) \
     FROM cluster_member_status WHERE cluster = ? ORDER BY member_id";

type MemberColumns = (
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    String,
    i64,
    i64,
);

fn member_of(
    (member, applied, failed, error, listeners, at, age): MemberColumns,
) -> MemberApplyStatus {
    let version = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    MemberApplyStatus {
        report: MemberReport {
            member,
            applied_version: version(applied),
            failed_version: version(failed),
            error,
            listeners,
        },
        updated_at_ms: at,
        age_ms: u64::try_from(age).unwrap_or(0),
    }
}

fn version_column(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

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

    async fn report_member(&self, cluster: &str, report: &MemberReport) -> Result<(), StoreError> {
        self.run("report member status", cluster, None, async |conn| {
            conn.exec_drop(
                REPORT,
                (
                    cluster,
                    &report.member,
                    version_column(report.applied_version),
                    version_column(report.failed_version),
                    report.error.as_deref(),
                    &report.listeners,
                ),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn member_statuses(&self, cluster: &str) -> Result<Vec<MemberApplyStatus>, StoreError> {
        self.run("read member status", cluster, None, async |conn| {
            let rows: Vec<MemberColumns> = conn
                .exec(MEMBERS, (cluster,))
                .await
                .map_err(|e| bad_row(format!("cluster_member_status: {e}")))?;
            Ok(rows.into_iter().map(member_of).collect())
        })
        .await
    }
}

// Operators' requests to the leader (`ledger retry|forget`).

use coord_core::{FileVersion, GroupId, Redrive, RequestStore};

const REQUEST: &str = "INSERT INTO ledger_request (group_id, path, size, mtime_ms, action) \
     VALUES (?, ?, ?, ?, ?)";
const PENDING: &str = "SELECT id, path, size, mtime_ms, action FROM ledger_request \
     WHERE group_id = ? ORDER BY id";

type RequestRow = (i64, String, i64, i64, String);

fn request_of((_, path, size, mtime_ms, action): RequestRow) -> Option<(FileVersion, Redrive)> {
    Some((
        FileVersion {
            path,
            size: u64::try_from(size).ok()?,
            mtime_ms,
        },
        Redrive::parse(&action)?,
    ))
}

#[async_trait::async_trait]
impl RequestStore for MySqlStore {
    async fn request(
        &self,
        group: &GroupId,
        version: &FileVersion,
        action: Redrive,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        self.run("request", group.as_str(), None, async |conn| {
            conn.exec_drop(
                REQUEST,
                (
                    group.as_str(),
                    &version.path,
                    size,
                    version.mtime_ms,
                    action.as_str(),
                ),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn pending(&self, group: &GroupId) -> Result<Vec<(FileVersion, Redrive)>, StoreError> {
        self.run("pending requests", group.as_str(), None, async |conn| {
            let rows: Vec<RequestRow> = conn.exec(PENDING, (group.as_str(),)).await?;
            Ok(rows.into_iter().filter_map(request_of).collect())
        })
        .await
    }

    async fn take(
        &self,
        group: &GroupId,
        limit: usize,
    ) -> Result<Vec<(FileVersion, Redrive)>, StoreError> {
        self.run("take requests", group.as_str(), None, async |conn| {
            // Read, then delete exactly the rows read (by id), in one transaction.
            let mut tx = conn.start_transaction(Default::default()).await?;
            let sql = format!("{PENDING} LIMIT {limit} FOR UPDATE");
            let rows: Vec<RequestRow> = tx.exec(sql, (group.as_str(),)).await?;
            if let Some(last) = rows.last() {
                tx.exec_drop(
                    "DELETE FROM ledger_request WHERE group_id = ? AND id <= ?",
                    (group.as_str(), last.0),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(rows.into_iter().filter_map(request_of).collect())
        })
        .await
    }
}
