//! The ledger's history on PostgreSQL (read side; the writes are part of the claim and record
//! statements, see `sql::CLAIM` and `sql::RECORD`).

use std::time::Duration;

use coord_core::{FileVersion, GroupId, LedgerEvent, LedgerHistory, StoreError, within_ms};

use crate::ledger::path_hash;
use crate::sql;
use crate::store::PgStore;

#[async_trait::async_trait]
impl LedgerHistory for PgStore {
    async fn history(
        &self,
        group: &GroupId,
        version: &FileVersion,
    ) -> Result<Vec<LedgerEvent>, StoreError> {
        let g = group.as_str();
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        let hash = path_hash(&version.path);
        let rows = self
            .query(
                "ledger history",
                g,
                sql::LEDGER_HISTORY,
                &[&g, &hash, &size, &version.mtime_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let attempts: i32 = row.get(3);
                LedgerEvent::from_columns(
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    attempts.into(),
                    row.get(4),
                )
            })
            .collect())
    }

    async fn updated_within(
        &self,
        group: &GroupId,
        within: Duration,
    ) -> Result<Vec<(FileVersion, i64)>, StoreError> {
        let g = group.as_str();
        let rows = self
            .query(
                "ledger rows by time",
                g,
                sql::UPDATED_WITHIN,
                &[&g, &within_ms(within)],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let version = FileVersion::from_columns(row.get(0), row.get(1), row.get(2))?;
                Some((version, row.get(3)))
            })
            .collect())
    }

    async fn rows(&self, group: &GroupId) -> Result<Vec<coord_core::LedgerRecord>, StoreError> {
        crate::ledger::load(self, group.as_str(), false).await
    }
}
