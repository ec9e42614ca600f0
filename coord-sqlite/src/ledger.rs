//! The processed-file ledger (DESIGN §5): load, and the fenced claim and record.
//!
//! **No lock across an await.** A claim or record chunk is one multi-statement batch handed
//! to the engine in one call: `BEGIN IMMEDIATE` (the write lock), a read of the fence (and a
//! claim's prior states) as one row, the writes, each conditional on the fence (`WHERE
//! EXISTS (fence)`), and `COMMIT`. The engine runs the whole batch on the connection's worker
//! thread without waiting for this task: the one row fits the driver's result channel, so the
//! worker never blocks between `BEGIN` and `COMMIT`, and a process stalled between two awaits
//! (or a dropped future) cannot be holding the write lock that every other process's
//! heartbeat and takeover need. Atomic because the batch is one transaction under the write
//! lock: nobody else can move the token between the fence check and the commit, and when the
//! fence does not hold every write matches nothing. A statement that fails leaves the batch's
//! transaction open: the store closes that connection (see `Leftover::OpenTransaction`).
//!
//! **Bounded calls.** Claims and records are cut into chunks of [`CHUNK_VERSIONS`], each its
//! own call (fenced on its own, under its own statement timeout); loads read pages of
//! [`LOAD_PAGE_ROWS`] rows by keyset on the primary key.

use std::collections::HashMap;

use coord_core::{
    ClaimOutcome, Fence, FileVersion, GroupId, LedgerRecord, LedgerState, LedgerUpdate,
    SkippedRows, StoreError, StoredLedgerRow,
};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::coordination::{incarnation_to_sql, term_to_sql};
use crate::sql;
use crate::store::{Leftover, SqliteStore};

/// Most versions in one claim or record call.
pub(crate) const CHUNK_VERSIONS: usize = coord_core::LEDGER_CHUNK_VERSIONS;

/// Rows per page of a ledger load.
pub(crate) const LOAD_PAGE_ROWS: usize = coord_core::LEDGER_PAGE_ROWS;

/// Longest path the ledger stores, in bytes (the shared schema's limit).
const MAX_PATH_LEN: usize = coord_core::LEDGER_MAX_PATH_BYTES;

/// A version as bound to SQL: the hash keys the row (MySQL cannot index a long path).
struct Key<'a> {
    path: &'a str,
    hash: String,
    size: i64,
    mtime_ms: i64,
}

/// Lowercase hex SHA-256 of the path: the ledger's key column (shared schema).
pub(crate) fn path_hash(path: &str) -> String {
    Sha256::digest(path.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    Ok(Key {
        path: &version.path,
        hash: path_hash(&version.path),
        size,
        mtime_ms: version.mtime_ms,
    })
}

/// Every row of the group, in pages of [`LOAD_PAGE_ROWS`] (each page one call under its
/// own statement timeout), in primary-key order. The pages are separate reads: only the
/// fenced leader writes the group's rows, and it loads before it writes. A row that cannot be
/// decoded is skipped, counted and logged (see [`coord_core::StoredLedgerRow`]).
pub(crate) async fn load(
    store: &SqliteStore,
    group: &GroupId,
    open_only: bool,
) -> Result<Vec<LedgerRecord>, StoreError> {
    let statement = if open_only {
        sql::LOAD_LEDGER_PAGE
    } else {
        sql::ALL_LEDGER_PAGE
    };
    let mut records = Vec::new();
    let mut skipped = SkippedRows::default();
    let mut after: (String, i64, i64) = (String::new(), i64::MIN, i64::MIN);
    loop {
        let rows = store
            .call(
                "load ledger",
                group.as_str(),
                Leftover::Nothing,
                async |conn| {
                    store.trip();
                    sqlx::query(statement)
                        .bind(group.as_str())
                        .bind(&after.0)
                        .bind(after.1)
                        .bind(after.2)
                        .bind(LOAD_PAGE_ROWS as i64)
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        let full = rows.len() >= LOAD_PAGE_ROWS;
        for row in &rows {
            // The key first: it moves the page on even when the rest cannot be read.
            let key = row_key(row).map_err(|e| StoreError::Rejected {
                operation: "load ledger",
                group: group.to_string(),
                cause: format!("processed_file: a row's primary key cannot be read: {e}"),
            })?;
            skipped.decode_into(&mut records, (&key.0, key.1, key.2), stored_row(row));
            after = key;
        }
        if !full {
            break;
        }
    }
    if let Some(message) = skipped.message(group.as_str()) {
        tracing::warn!(group = group.as_str(), skipped = skipped.count, "{message}");
    }
    Ok(records)
}

/// The rows of these versions that exist: one read per chunk of at most [`CHUNK_VERSIONS`]
/// versions; rows that cannot be decoded are skipped and counted, as in [`load`].
pub(crate) async fn lookup(
    store: &SqliteStore,
    group: &GroupId,
    versions: &[FileVersion],
) -> Result<Vec<LedgerRecord>, StoreError> {
    let mut keys = Vec::with_capacity(versions.len());
    for version in versions {
        keys.push(key("lookup ledger", group, version)?);
    }
    let mut records = Vec::new();
    let mut skipped = SkippedRows::default();
    for chunk in keys.chunks(CHUNK_VERSIONS) {
        let batch =
            serde_json::Value::Array(chunk.iter().map(|k| element(k).into()).collect()).to_string();
        let rows = store
            .call(
                "lookup ledger",
                group.as_str(),
                Leftover::Nothing,
                async |conn| {
                    store.trip();
                    sqlx::query(sql::LOOKUP_LEDGER)
                        .bind(group.as_str())
                        .bind(&batch)
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        for row in &rows {
            let Ok(k) = row_key(row) else {
                continue;
            };
            skipped.decode_into(&mut records, (&k.0, k.1, k.2), stored_row(row));
        }
    }
    if let Some(message) = skipped.message(group.as_str()) {
        tracing::warn!(group = group.as_str(), skipped = skipped.count, "{message}");
    }
    // A version asked twice is answered once.
    records.sort_by(|a, b| a.version.cmp(&b.version));
    records.dedup_by(|a, b| a.version == b.version);
    Ok(records)
}

/// Settled rows last written more than `older_than` ago by SQLite's clock, oldest first,
/// after `after`: one read.
pub(crate) async fn stale_settled(
    store: &SqliteStore,
    group: &GroupId,
    older_than: std::time::Duration,
    after: Option<&coord_core::StaleRow>,
    limit: usize,
) -> Result<Vec<coord_core::StaleRow>, StoreError> {
    let cursor = after
        .map(|row| key("stale rows", group, &row.version).map(|k| (row.updated_at_ms, k)))
        .transpose()?;
    let older_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let rows = store
        .call(
            "stale rows",
            group.as_str(),
            Leftover::Nothing,
            async |conn| {
                store.trip();
                sqlx::query(sql::STALE_SETTLED)
                    .bind(group.as_str())
                    .bind(older_ms)
                    .bind(cursor.as_ref().map(|c| c.0))
                    .bind(cursor.as_ref().map(|c| c.1.hash.clone()))
                    .bind(cursor.as_ref().map(|c| c.1.size))
                    .bind(cursor.as_ref().map(|c| c.1.mtime_ms))
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&mut **conn)
                    .await
            },
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let path: Vec<u8> = row.try_get(0).ok()?;
            Some(coord_core::StaleRow {
                version: FileVersion {
                    path: String::from_utf8(path).ok()?,
                    size: u64::try_from(row.try_get::<i64, _>(1).ok()?).ok()?,
                    mtime_ms: row.try_get(2).ok()?,
                },
                updated_at_ms: row.try_get(3).ok()?,
            })
        })
        .collect())
}

fn row_key(row: &sqlx::sqlite::SqliteRow) -> Result<(String, i64, i64), sqlx::Error> {
    Ok((row.try_get(7)?, row.try_get(1)?, row.try_get(2)?))
}

/// The columns of a `LOAD_LEDGER_PAGE` row (text columns read as their bytes), without
/// trusting their contents.
fn stored_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredLedgerRow, String> {
    let column = |i: usize| move |e: sqlx::Error| format!("column {i}: {e}");
    Ok(StoredLedgerRow {
        path: row.try_get(0).map_err(column(0))?,
        size: row.try_get(1).map_err(column(1))?,
        mtime_ms: row.try_get(2).map_err(column(2))?,
        state: row.try_get(3).map_err(column(3))?,
        term: row.try_get(4).map_err(column(4))?,
        attempts: row.try_get(5).map_err(column(5))?,
        last_error: row.try_get(6).map_err(column(6))?,
        detail: row.try_get(8).map_err(column(8))?,
    })
}

/// The JSON element of a batch (see `sql.rs`).
fn element(k: &Key<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("h".into(), k.hash.clone().into());
    map.insert("p".into(), k.path.into());
    map.insert("s".into(), k.size.into());
    map.insert("m".into(), k.mtime_ms.into());
    map
}

fn batch(elements: impl Iterator<Item = serde_json::Map<String, serde_json::Value>>) -> String {
    serde_json::Value::Array(elements.map(serde_json::Value::Object).collect()).to_string()
}

/// The fence's values, bound to ?1..?4 of every ledger batch.
fn bind_fence<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    fence: &'q Fence,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(fence.group.as_str())
        .bind(fence.member.as_str())
        .bind(incarnation_to_sql(fence.incarnation))
        .bind(term_to_sql(fence.term))
}

/// The one row of a ledger batch: whether the fence held, and (claims) the prior states.
fn batch_answer(
    operation: &'static str,
    group: &str,
    rows: &[sqlx::sqlite::SqliteRow],
) -> Result<(bool, Option<String>), StoreError> {
    let bad = |cause: String| StoreError::Rejected {
        operation,
        group: group.to_owned(),
        cause,
    };
    let [row] = rows else {
        return Err(bad(format!("expected one answer row, got {}", rows.len())));
    };
    let held: i64 = row.try_get(0).map_err(|e| bad(e.to_string()))?;
    let prior: Option<String> = if row.len() > 1 {
        row.try_get(1).map_err(|e| bad(e.to_string()))?
    } else {
        None
    };
    Ok((held == 1, prior))
}

/// Claims in chunks of [`CHUNK_VERSIONS`], each one call (see the module docs). A version
/// listed twice is claimed once; both positions get its answer. Every version is checked
/// before the first chunk is sent; a later chunk's failure is returned while the earlier
/// chunks stay applied.
pub(crate) async fn claim(
    store: &SqliteStore,
    fence: &Fence,
    versions: &[FileVersion],
) -> Result<Vec<ClaimOutcome>, StoreError> {
    let mut unique: Vec<&FileVersion> = Vec::with_capacity(versions.len());
    let mut position = HashMap::with_capacity(versions.len());
    let slots: Vec<usize> = versions
        .iter()
        .map(|v| {
            *position.entry(v).or_insert_with(|| {
                unique.push(v);
                unique.len() - 1
            })
        })
        .collect();
    let keys = unique
        .iter()
        .map(|v| key("claim", &fence.group, v))
        .collect::<Result<Vec<_>, _>>()?;
    let group = fence.group.as_str();
    let mut answers: Vec<ClaimOutcome> = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK_VERSIONS) {
        let json = batch(chunk.iter().map(element));
        let rows = store
            .call("claim", group, Leftover::OpenTransaction, async |conn| {
                store.trip();
                // fetch_all: the batch must run to its COMMIT.
                bind_fence(sqlx::query(sql::CLAIM), fence)
                    .bind(&json)
                    .fetch_all(&mut **conn)
                    .await
            })
            .await?;
        let (held, prior) = batch_answer("claim", group, &rows)?;
        if !held {
            return Err(StoreError::fenced("claim", fence));
        }
        let mut found: Vec<Option<(String, i64)>> = vec![None; chunk.len()];
        let prior: Vec<(usize, String, i64)> =
            serde_json::from_str(prior.as_deref().unwrap_or("[]")).map_err(|e| {
                StoreError::Rejected {
                    operation: "claim",
                    group: group.to_owned(),
                    cause: format!("unreadable prior states: {e}"),
                }
            })?;
        for (i, state, attempts) in prior {
            if let Some(slot) = found.get_mut(i) {
                *slot = Some((state, attempts));
            }
        }
        answers.extend(found.iter().map(|prior| {
            coord_core::claim_answer(prior.as_ref().map(|(state, n)| (state.as_str(), *n)))
        }));
    }
    Ok(slots.into_iter().map(|i| answers[i].clone()).collect())
}

/// The net effect of a record on one version, as if its updates were applied in order.
struct RecordOp<'a> {
    key: Key<'a>,
    /// `Some((state, error))` to write, `None` to delete.
    set: Option<(LedgerState, Option<&'a str>)>,
    /// The batch deleted the row before its last set: the set writes it afresh (attempts 0).
    fresh: bool,
    /// The latest detail since the version's last forget in the batch (`None` keeps the
    /// row's).
    detail: Option<&'a str>,
}

/// The updates of each version reduced to their net effect (the last one wins; a set after
/// a forget writes a fresh row), in the order of each version's last update.
fn net_effect<'a>(updates: &'a [LedgerUpdate], keys: Vec<Key<'a>>) -> Vec<RecordOp<'a>> {
    let mut index: HashMap<(String, i64, i64), usize> = HashMap::new();
    let mut ops: Vec<(usize, RecordOp<'a>, bool)> = Vec::new();
    for (i, (update, k)) in updates.iter().zip(keys).enumerate() {
        let set = match update {
            LedgerUpdate::Set { state, error, .. } => Some((*state, error.as_deref())),
            LedgerUpdate::Forget(_) => None,
        };
        let forget = set.is_none();
        let detail = match update {
            LedgerUpdate::Set { detail, .. } => detail.as_deref(),
            LedgerUpdate::Forget(_) => None,
        };
        let id = (k.hash.clone(), k.size, k.mtime_ms);
        match index.get(&id) {
            Some(&at) => {
                let (last, op, forgotten) = &mut ops[at];
                *last = i;
                op.fresh = *forgotten;
                op.set = set;
                if forget || detail.is_some() {
                    op.detail = detail;
                }
                *forgotten |= forget;
            }
            None => {
                index.insert(id, ops.len());
                ops.push((
                    i,
                    RecordOp {
                        key: k,
                        set,
                        fresh: false,
                        detail,
                    },
                    forget,
                ));
            }
        }
    }
    ops.sort_by_key(|(last, _, _)| *last);
    ops.into_iter().map(|(_, op, _)| op).collect()
}

/// Records in chunks of [`CHUNK_VERSIONS`] net effects, each one call, all or nothing per
/// chunk (see the module docs); a later chunk's failure is returned while the earlier chunks
/// stay applied.
pub(crate) async fn record(
    store: &SqliteStore,
    fence: &Fence,
    updates: &[LedgerUpdate],
) -> Result<(), StoreError> {
    let keys = updates
        .iter()
        .map(|u| key("record", &fence.group, u.version()))
        .collect::<Result<Vec<_>, _>>()?;
    let ops = net_effect(updates, keys);
    let group = fence.group.as_str();
    for chunk in ops.chunks(CHUNK_VERSIONS) {
        let deletes = batch(
            chunk
                .iter()
                .filter(|op| op.set.is_none() || op.fresh)
                .map(|op| element(&op.key)),
        );
        let sets = batch(chunk.iter().filter_map(|op| {
            op.set.map(|(state, error)| {
                let mut e = element(&op.key);
                e.insert("st".into(), state.as_str().into());
                e.insert("e".into(), error.into());
                e.insert("d".into(), op.detail.into());
                e
            })
        }));
        let rows = store
            .call("record", group, Leftover::OpenTransaction, async |conn| {
                store.trip();
                bind_fence(sqlx::query(sql::RECORD), fence)
                    .bind(&deletes)
                    .bind(&sets)
                    .fetch_all(&mut **conn)
                    .await
            })
            .await?;
        let (held, _) = batch_answer("record", group, &rows)?;
        if !held {
            return Err(StoreError::fenced("record", fence));
        }
    }
    Ok(())
}
