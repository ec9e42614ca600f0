//! What an operator reads of the ledger beyond its current rows (`ftp-listener ledger show`
//! and `ledger list --since`): each version's history, and the rows by the time of their last
//! write. Read-only. The SQL stores keep it: every claim and every recorded state appends a
//! `ledger_event` row in the same transaction as the write (one multi-row insert per batch),
//! by the database's clock; forgetting a version (pruning after the retention period, and an
//! operator's `retry`/`forget`) deletes its events with its row, so a re-driven version starts
//! a new history. The in-memory store and coord-redis keep no history.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, Term};
use crate::ledger::FileVersion;
use crate::store::StoreError;

/// One write to a version's ledger row: a claim (state `claimed`, attempt n) or a recorded
/// state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEvent {
    /// When, in milliseconds since the Unix epoch, by the store's clock.
    pub at_unix_ms: i64,
    /// The term of the write.
    pub term: Term,
    /// The state written (`claimed`, `handled`, `done`, `failed`, `error`), as stored.
    pub state: String,
    /// The attempt count after the write.
    pub attempts: u32,
    /// The error of a failed or error state, or where the file went.
    pub detail: Option<String>,
}

impl LedgerEvent {
    /// An event from its stored columns (the SQL integers; a negative term or attempt count,
    /// which no build writes, reads as 0).
    pub fn from_columns(
        at_unix_ms: i64,
        term: i64,
        state: String,
        attempts: i64,
        detail: Option<String>,
    ) -> Self {
        LedgerEvent {
            at_unix_ms,
            term: Term(u64::try_from(term).unwrap_or(0)),
            state,
            attempts: u32::try_from(attempts).unwrap_or(0),
            detail,
        }
    }
}

impl FileVersion {
    /// A version from its stored columns (`None` for a negative size, which no build writes).
    pub fn from_columns(path: String, size: i64, mtime_ms: i64) -> Option<Self> {
        Some(FileVersion {
            path,
            size: u64::try_from(size).ok()?,
            mtime_ms,
        })
    }
}

/// Where the history is kept: implemented by the SQL stores.
#[async_trait]
pub trait LedgerHistory: Send + Sync {
    /// Every event of `version`, oldest first.
    async fn history(
        &self,
        group: &GroupId,
        version: &FileVersion,
    ) -> Result<Vec<LedgerEvent>, StoreError>;

    /// The versions whose ledger row was written within `within` of now, by the store's
    /// clock, with the time of that write (milliseconds since the Unix epoch).
    async fn updated_within(
        &self,
        group: &GroupId,
        within: Duration,
    ) -> Result<Vec<(FileVersion, i64)>, StoreError>;

    /// Every row of the group, whatever its state (operators' listings; the leader itself
    /// loads only the rows with work left).
    async fn rows(&self, group: &GroupId) -> Result<Vec<crate::LedgerRecord>, StoreError>;
}

/// Milliseconds of `within` for a bind parameter (saturating).
pub fn within_ms(within: Duration) -> i64 {
    i64::try_from(within.as_millis()).unwrap_or(i64::MAX)
}
