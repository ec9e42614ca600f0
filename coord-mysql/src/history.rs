//! The ledger's history on MySQL (read side; the writes are part of the claim and record
//! batches, see `sql::ledger_events`).

use std::time::Duration;

use coord_core::{FileVersion, GroupId, LedgerEvent, LedgerHistory, StoreError, within_ms};
use mysql_async::prelude::Queryable;

use crate::ledger::path_hash;
use crate::store::MySqlStore;

const HISTORY: &str = "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', at) DIV 1000, term, \
     state, attempts, detail FROM ledger_event \
     WHERE group_id = ? AND path_hash = ? AND size = ? AND mtime_ms = ? ORDER BY id";

const UPDATED_WITHIN: &str = "SELECT path, size, mtime_ms, \
     TIMESTAMPDIFF(MICROSECOND, '1970-01-01', updated_at) DIV 1000 FROM processed_file \
     WHERE group_id = ? AND updated_at >= UTC_TIMESTAMP(3) - INTERVAL ? MICROSECOND";

type EventRow = (i64, i64, String, i64, Option<String>);

#[async_trait::async_trait]
impl LedgerHistory for MySqlStore {
    async fn history(
        &self,
        group: &GroupId,
        version: &FileVersion,
    ) -> Result<Vec<LedgerEvent>, StoreError> {
        let size = i64::try_from(version.size).unwrap_or(i64::MAX);
        let hash = path_hash(&version.path);
        self.run("ledger history", group.as_str(), None, async |conn| {
            let rows: Vec<EventRow> = conn
                .exec(HISTORY, (group.as_str(), &hash, size, version.mtime_ms))
                .await?;
            Ok(rows
                .into_iter()
                .map(|(at, term, state, attempts, detail)| {
                    LedgerEvent::from_columns(at, term, state, attempts, detail)
                })
                .collect())
        })
        .await
    }

    async fn updated_within(
        &self,
        group: &GroupId,
        within: Duration,
    ) -> Result<Vec<(FileVersion, i64)>, StoreError> {
        let micros = within_ms(within).saturating_mul(1000);
        self.run("ledger rows by time", group.as_str(), None, async |conn| {
            let rows: Vec<(String, i64, i64, i64)> =
                conn.exec(UPDATED_WITHIN, (group.as_str(), micros)).await?;
            Ok(rows
                .into_iter()
                .filter_map(|(path, size, mtime_ms, at)| {
                    Some((FileVersion::from_columns(path, size, mtime_ms)?, at))
                })
                .collect())
        })
        .await
    }

    async fn rows(&self, group: &GroupId) -> Result<Vec<coord_core::LedgerRecord>, StoreError> {
        crate::ledger::load(self, group, false).await
    }
}
