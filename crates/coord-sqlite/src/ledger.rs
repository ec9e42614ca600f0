//! The processed-file ledger (DESIGN §5): load, and the fenced claim and record, each one
//! `BEGIN IMMEDIATE` transaction that first checks the fence and writes nothing if it fails.

use coord_core::{
    ClaimOutcome, Fence, FileVersion, GroupId, LedgerRecord, LedgerState, LedgerUpdate, StoreError,
};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Row, SqliteConnection};

use crate::coordination::{incarnation_to_sql, term_from_sql, term_to_sql};
use crate::sql;
use crate::store::{Leftover, SqliteStore};

/// Longest path the ledger stores, in bytes (the shared schema's limit).
const MAX_PATH_LEN: usize = 4096;

/// A version as bound to SQL: the hash keys the row (MySQL cannot index a long path).
struct Key<'a> {
    path: &'a str,
    hash: String,
    size: i64,
    mtime_ms: i64,
}

fn key<'a>(
    operation: &'static str,
    group: &GroupId,
    version: &'a FileVersion,
) -> Result<Key<'a>, StoreError> {
    let rejected = |cause: String| StoreError::Rejected {
        operation,
        group: group.to_string(),
        cause,
    };
    if version.path.len() > MAX_PATH_LEN {
        return Err(rejected(format!(
            "path is {} bytes long, the ledger keeps at most {MAX_PATH_LEN}",
            version.path.len()
        )));
    }
    let size = i64::try_from(version.size)
        .map_err(|_| rejected(format!("size {} does not fit the ledger", version.size)))?;
    let hash = Sha256::digest(version.path.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Key {
        path: &version.path,
        hash,
        size,
        mtime_ms: version.mtime_ms,
    })
}

async fn fence_holds(conn: &mut SqliteConnection, fence: &Fence) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(sql::FENCE)
        .bind(fence.group.as_str())
        .bind(fence.member.as_str())
        .bind(incarnation_to_sql(fence.incarnation))
        .bind(term_to_sql(fence.term))
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

pub(crate) async fn load(
    store: &SqliteStore,
    group: &GroupId,
) -> Result<Vec<LedgerRecord>, StoreError> {
    let rows = store
        .call(
            "load ledger",
            group.as_str(),
            Leftover::Nothing,
            async |conn| {
                store.trip();
                sqlx::query(sql::LOAD_LEDGER)
                    .bind(group.as_str())
                    .fetch_all(&mut **conn)
                    .await
            },
        )
        .await?;
    let bad = |cause: String| StoreError::Rejected {
        operation: "load ledger",
        group: group.to_string(),
        cause,
    };
    rows.iter()
        .map(|row| {
            let decode = |e: sqlx::Error| bad(e.to_string());
            let state: String = row.try_get(3).map_err(decode)?;
            let size: i64 = row.try_get(1).map_err(decode)?;
            let attempts: i64 = row.try_get(5).map_err(decode)?;
            Ok(LedgerRecord {
                version: FileVersion {
                    path: row.try_get(0).map_err(decode)?,
                    size: u64::try_from(size).map_err(|_| bad(format!("negative size {size}")))?,
                    mtime_ms: row.try_get(2).map_err(decode)?,
                },
                state: LedgerState::parse(&state)
                    .ok_or_else(|| bad(format!("unknown ledger state `{state}`")))?,
                term: term_from_sql(row.try_get(4).map_err(decode)?),
                attempts: u32::try_from(attempts).unwrap_or(0),
                last_error: row.try_get(6).map_err(decode)?,
            })
        })
        .collect()
}

pub(crate) async fn claim(
    store: &SqliteStore,
    fence: &Fence,
    versions: &[FileVersion],
) -> Result<Vec<ClaimOutcome>, StoreError> {
    let keys = versions
        .iter()
        .map(|v| key("claim", &fence.group, v))
        .collect::<Result<Vec<_>, _>>()?;
    let group = fence.group.as_str();
    let term = term_to_sql(fence.term);
    let outcome = store
        .call("claim", group, Leftover::Nothing, async |conn| {
            store.trip();
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            store.trip();
            if !fence_holds(&mut tx, fence).await? {
                return Ok(None);
            }
            let mut answers = Vec::with_capacity(keys.len());
            for k in &keys {
                store.trip();
                let row: Option<(String, i64)> = sqlx::query_as(sql::LEDGER_ROW)
                    .bind(group)
                    .bind(&k.hash)
                    .bind(k.size)
                    .bind(k.mtime_ms)
                    .fetch_optional(&mut *tx)
                    .await?;
                let answer = match row {
                    None => {
                        store.trip();
                        sqlx::query(sql::CLAIM_NEW)
                            .bind(group)
                            .bind(&k.hash)
                            .bind(k.path)
                            .bind(k.size)
                            .bind(k.mtime_ms)
                            .bind(term)
                            .execute(&mut *tx)
                            .await?;
                        ClaimOutcome::Claimed {
                            attempt: 1,
                            redelivery: false,
                        }
                    }
                    Some((state, attempts)) => match LedgerState::parse(&state) {
                        Some(state @ (LedgerState::Claimed | LedgerState::Failed)) => {
                            let attempt = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
                            store.trip();
                            sqlx::query(sql::CLAIM_AGAIN)
                                .bind(group)
                                .bind(&k.hash)
                                .bind(k.size)
                                .bind(k.mtime_ms)
                                .bind(term)
                                .bind(i64::from(attempt))
                                .execute(&mut *tx)
                                .await?;
                            ClaimOutcome::Claimed {
                                attempt,
                                redelivery: state == LedgerState::Claimed,
                            }
                        }
                        // Settled (handled, done, error), or a state this build does not
                        // know: never dispatch it.
                        _ => ClaimOutcome::Settled,
                    },
                };
                answers.push(answer);
            }
            store.trip();
            tx.commit().await?;
            Ok(Some(answers))
        })
        .await?;
    outcome.ok_or_else(|| StoreError::fenced("claim", fence))
}

pub(crate) async fn record(
    store: &SqliteStore,
    fence: &Fence,
    updates: &[LedgerUpdate],
) -> Result<(), StoreError> {
    let keys = updates
        .iter()
        .map(|u| key("record", &fence.group, u.version()))
        .collect::<Result<Vec<_>, _>>()?;
    let group = fence.group.as_str();
    let term = term_to_sql(fence.term);
    let applied = store
        .call("record", group, Leftover::Nothing, async |conn| {
            store.trip();
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            store.trip();
            if !fence_holds(&mut tx, fence).await? {
                return Ok(false);
            }
            for (update, k) in updates.iter().zip(&keys) {
                store.trip();
                match update {
                    LedgerUpdate::Set { state, error, .. } => {
                        sqlx::query(sql::SET_STATE)
                            .bind(group)
                            .bind(&k.hash)
                            .bind(k.path)
                            .bind(k.size)
                            .bind(k.mtime_ms)
                            .bind(state.as_str())
                            .bind(term)
                            .bind(error.as_deref())
                            .execute(&mut *tx)
                            .await?;
                    }
                    LedgerUpdate::Forget(_) => {
                        sqlx::query(sql::FORGET)
                            .bind(group)
                            .bind(&k.hash)
                            .bind(k.size)
                            .bind(k.mtime_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            store.trip();
            tx.commit().await?;
            Ok(true)
        })
        .await?;
    if applied {
        Ok(())
    } else {
        Err(StoreError::fenced("record", fence))
    }
}
