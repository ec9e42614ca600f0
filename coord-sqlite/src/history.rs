//! The ledger's history on SQLite (read side; the writes are part of the claim and record
//! batches, see `sql::CLAIM` and `sql::RECORD`).

use std::time::Duration;

use coord_core::{FileVersion, GroupId, LedgerEvent, LedgerHistory, StoreError, within_ms};
use sqlx::Row;

use crate::ledger::path_hash;
use crate::sql;
use crate::store::{Leftover, SqliteStore};

#[async_trait::async_trait]
impl LedgerHistory for SqliteStore {
    async fn history(
        &self,
        group: &GroupId,
        version: &FileVersion,
    ) -> Result<Vec<LedgerEvent>, StoreError> {
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        let hash = path_hash(&version.path);
        let rows = self
            .call(
                "ledger history",
                group.as_str(),
                Leftover::Nothing,
                async |conn| {
                    sqlx::query(sql::LEDGER_HISTORY)
                        .bind(group.as_str())
                        .bind(&hash)
                        .bind(size)
                        .bind(version.mtime_ms)
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(LedgerEvent::from_columns(
                    row.try_get(0).ok()?,
                    row.try_get(1).ok()?,
                    row.try_get(2).ok()?,
                    row.try_get(3).ok()?,
                    row.try_get(4).ok()?,
                ))
            })
            .collect())
    }

    async fn updated_within(
        &self,
        group: &GroupId,
        within: Duration,
    ) -> Result<Vec<(FileVersion, i64)>, StoreError> {
        let rows = self
            .call(
                "ledger rows by time",
                group.as_str(),
                Leftover::Nothing,
                async |conn| {
                    sqlx::query(sql::UPDATED_WITHIN)
                        .bind(group.as_str())
                        .bind(within_ms(within))
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let path = String::from_utf8(row.try_get(0).ok()?).ok()?;
                let version =
                    FileVersion::from_columns(path, row.try_get(1).ok()?, row.try_get(2).ok()?)?;
                Some((version, row.try_get(3).ok()?))
            })
            .collect())
    }

    async fn rows(&self, group: &GroupId) -> Result<Vec<coord_core::LedgerRecord>, StoreError> {
        crate::ledger::load(self, group, false).await
    }
}
