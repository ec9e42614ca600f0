//! The processed-file ledger on PostgreSQL (DESIGN §5): load, fenced claim, fenced record.
//!
//! Batches are bounded: `claim` and `record` send one fenced statement per chunk of at most
//! [`CHUNK_VERSIONS`] versions (all or nothing per chunk; a later chunk's failure is returned
//! while earlier chunks stay applied), and `load` reads pages of [`LOAD_PAGE_ROWS`] rows by
//! keyset on the primary key, one statement each. No lock is ever held across round trips.
//! A row that cannot be decoded is skipped, counted and logged (see
//! [`coord_core::StoredLedgerRow`] for why).

use std::collections::HashMap;

use coord_core::{
    ClaimOutcome, Fence, FileVersion, LedgerRecord, LedgerUpdate, SkippedRows, StoreError,
    StoredLedgerRow,
};
use sha2::{Digest, Sha256};
use tokio_postgres::Row;

use crate::coordination::{bad_row, incarnation_param, term_param};
use crate::sql;
use crate::store::PgStore;

/// Versions per claim or record statement: a claim or record of any size is cut into
/// statements of this many, each fenced on its own and under its own statement timeout.
const CHUNK_VERSIONS: usize = coord_core::LEDGER_CHUNK_VERSIONS;

/// Rows per page of a ledger load.
const LOAD_PAGE_ROWS: usize = coord_core::LEDGER_PAGE_ROWS;

/// Lowercase hex SHA-256 of the path: the ledger's key column (shared schema).
pub(crate) fn path_hash(path: &str) -> String {
    Sha256::digest(path.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Longest path the ledger keeps, in bytes (the shared schema's limit).
const MAX_PATH_BYTES: usize = coord_core::LEDGER_MAX_PATH_BYTES;

/// The ledger key of a version, checked against the columns up front: one bad version
/// refuses the whole batch with its reason, before anything reaches the server.
fn key_of(operation: &'static str, group: &str, version: &FileVersion) -> Result<Key, StoreError> {
    let refuse = |why: String| bad_row(operation, group, why);
    if version.path.len() > MAX_PATH_BYTES {
        return Err(refuse(format!(
            "path is {} bytes long, the ledger keeps at most {MAX_PATH_BYTES}",
            version.path.len()
        )));
    }
    if version.path.contains('\0') {
        return Err(refuse(format!(
            "path {:?} contains a NUL byte, which PostgreSQL text cannot hold",
            version.path
        )));
    }
    let size = i64::try_from(version.size).map_err(|_| {
        refuse(format!(
            "size {} of {:?} does not fit a BIGINT",
            version.size, version.path
        ))
    })?;
    Ok((path_hash(&version.path), size, version.mtime_ms))
}

/// PostgreSQL text cannot hold NUL: an error message keeps everything else.
fn storable_error(error: Option<&str>) -> Option<String> {
    error.map(|e| e.replace('\0', "\u{fffd}"))
}

type Key = (String, i64, i64);

/// Every row of the group, in pages of [`LOAD_PAGE_ROWS`] by keyset on the primary key, each
/// page one statement under its own statement timeout, so a ledger of any size loads. The
/// pages are separate reads (only the fenced leader writes the group's rows, and it loads
/// before it writes); every row present throughout the load is returned exactly once, or
/// skipped and counted when it cannot be decoded.
pub(crate) async fn load(
    store: &PgStore,
    group: &str,
    open_only: bool,
) -> Result<Vec<LedgerRecord>, StoreError> {
    let statement = if open_only {
        sql::LOAD_LEDGER_PAGE
    } else {
        sql::ALL_LEDGER_PAGE
    };
    let mut records = Vec::new();
    let mut skipped = SkippedRows::default();
    let mut after: Key = (String::new(), i64::MIN, i64::MIN);
    let page_rows = LOAD_PAGE_ROWS as i64;
    loop {
        let rows = store
            .query(
                "load ledger",
                group,
                statement,
                &[&group, &after.0, &after.1, &after.2, &page_rows],
            )
            .await?;
        let full = rows.len() >= LOAD_PAGE_ROWS;
        for row in &rows {
            // The key first: it moves the page on even when the rest cannot be read.
            let key = row_key(row).map_err(|cause| {
                bad_row(
                    "load ledger",
                    group,
                    format!("processed_file: a row's primary key cannot be read: {cause}"),
                )
            })?;
            skipped.decode_into(&mut records, (&key.0, key.1, key.2), stored_row(row));
            after = key;
        }
        if !full {
            break;
        }
    }
    if let Some(message) = skipped.message(group) {
        tracing::warn!(group, skipped = skipped.count, "{message}");
    }
    Ok(records)
}

/// The rows of these versions that exist: one read per chunk of at most `CHUNK_VERSIONS`
/// distinct versions; rows that cannot be decoded are skipped and counted, as in [`load`].
pub(crate) async fn lookup(
    store: &PgStore,
    group: &str,
    versions: &[FileVersion],
) -> Result<Vec<LedgerRecord>, StoreError> {
    let mut keys: Vec<Key> = Vec::with_capacity(versions.len());
    let mut seen = std::collections::HashSet::new();
    for version in versions {
        let key = key_of("lookup ledger", group, version)?;
        if seen.insert(key.clone()) {
            keys.push(key);
        }
    }
    let mut records = Vec::new();
    let mut skipped = SkippedRows::default();
    for chunk in keys.chunks(CHUNK_VERSIONS) {
        let hashes: Vec<&str> = chunk.iter().map(|k| k.0.as_str()).collect();
        let sizes: Vec<i64> = chunk.iter().map(|k| k.1).collect();
        let mtimes: Vec<i64> = chunk.iter().map(|k| k.2).collect();
        let rows = store
            .query(
                "lookup ledger",
                group,
                sql::LOOKUP_LEDGER,
                &[&group, &hashes, &sizes, &mtimes],
            )
            .await?;
        for row in &rows {
            let Ok(key) = row_key(row) else {
                continue;
            };
            skipped.decode_into(&mut records, (&key.0, key.1, key.2), stored_row(row));
        }
    }
    if let Some(message) = skipped.message(group) {
        tracing::warn!(group, skipped = skipped.count, "{message}");
    }
    Ok(records)
}

/// Settled rows last written more than `older_than` ago by the server's clock, oldest first,
/// after `after`: one read.
pub(crate) async fn stale_settled(
    store: &PgStore,
    group: &str,
    older_than: std::time::Duration,
    after: Option<&coord_core::StaleRow>,
    limit: usize,
) -> Result<Vec<coord_core::StaleRow>, StoreError> {
    let cursor = after
        .map(|row| key_of("stale rows", group, &row.version).map(|k| (row.updated_at_ms, k)))
        .transpose()?;
    let at: Option<i64> = cursor.as_ref().map(|c| c.0);
    let hash: Option<&str> = cursor.as_ref().map(|c| c.1.0.as_str());
    let size: Option<i64> = cursor.as_ref().map(|c| c.1.1);
    let mtime: Option<i64> = cursor.as_ref().map(|c| c.1.2);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = store
        .query(
            "stale rows",
            group,
            sql::STALE_SETTLED,
            &[
                &group,
                &older_than.as_secs_f64(),
                &at,
                &hash,
                &size,
                &mtime,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(coord_core::StaleRow {
                version: FileVersion {
                    path: row.try_get(0).ok()?,
                    size: u64::try_from(row.try_get::<_, i64>(1).ok()?).ok()?,
                    mtime_ms: row.try_get(2).ok()?,
                },
                updated_at_ms: row.try_get(3).ok()?,
            })
        })
        .collect())
}

fn row_key(row: &Row) -> Result<Key, String> {
    let column = |e: tokio_postgres::Error| e.to_string();
    Ok((
        row.try_get(7).map_err(column)?,
        row.try_get(1).map_err(column)?,
        row.try_get(2).map_err(column)?,
    ))
}

/// The columns of a `LOAD_LEDGER_PAGE` row, read without panicking on a surprise.
fn stored_row(row: &Row) -> Result<StoredLedgerRow, String> {
    let column = |i: usize| move |e: tokio_postgres::Error| format!("column {i}: {e}");
    let text = |i: usize| {
        row.try_get::<_, String>(i)
            .map(String::into_bytes)
            .map_err(column(i))
    };
    Ok(StoredLedgerRow {
        path: text(0)?,
        size: row.try_get(1).map_err(column(1))?,
        mtime_ms: row.try_get(2).map_err(column(2))?,
        state: text(3)?,
        term: row.try_get(4).map_err(column(4))?,
        attempts: i64::from(row.try_get::<_, i32>(5).map_err(column(5))?),
        last_error: row
            .try_get::<_, Option<String>>(6)
            .map_err(column(6))?
            .map(String::into_bytes),
        detail: row
            .try_get::<_, Option<String>>(8)
            .map_err(column(8))?
            .map(String::into_bytes),
    })
}

/// Cut into statements of at most `CHUNK_VERSIONS` distinct versions (a version listed
/// twice is claimed once; both positions get its answer), each fenced on its own and under
/// its own statement timeout. Within a chunk all or nothing; a later chunk's failure
/// (fenced, timeout, ...) is returned while the earlier chunks stay applied.
pub(crate) async fn claim(
    store: &PgStore,
    fence: &Fence,
    versions: &[FileVersion],
) -> Result<Vec<ClaimOutcome>, StoreError> {
    let group = fence.group.as_str();
    // Each distinct version once (ON CONFLICT may touch a row only once per statement).
    let mut keys = Vec::with_capacity(versions.len());
    let mut unique: Vec<(Key, &str)> = Vec::new();
    let mut seen = HashMap::new();
    for version in versions {
        let key = key_of("claim", group, version)?;
        if seen.insert(key.clone(), ()).is_none() {
            unique.push((key.clone(), version.path.as_str()));
        }
        keys.push(key);
    }
    let mut claimed: HashMap<Key, ClaimOutcome> = HashMap::new();
    for chunk in unique.chunks(CHUNK_VERSIONS) {
        let hashes: Vec<&str> = chunk.iter().map(|(k, _)| k.0.as_str()).collect();
        let paths: Vec<&str> = chunk.iter().map(|(_, p)| *p).collect();
        let sizes: Vec<i64> = chunk.iter().map(|(k, _)| k.1).collect();
        let mtimes: Vec<i64> = chunk.iter().map(|(k, _)| k.2).collect();
        let rows = store
            .query(
                "claim",
                group,
                sql::CLAIM,
                &[
                    &group,
                    &fence.member.as_str(),
                    &incarnation_param(fence.incarnation),
                    &term_param(fence.term),
                    &hashes,
                    &paths,
                    &sizes,
                    &mtimes,
                ],
            )
            .await?;
        let holds = rows.first().is_some_and(|r| r.get::<_, bool>(0));
        if !holds {
            return Err(StoreError::fenced("claim", fence));
        }
        for row in &rows {
            let Some(hash) = row.get::<_, Option<String>>(1) else {
                continue;
            };
            let attempts: i32 = row.get(4);
            let previous: Option<String> = row.get(5);
            claimed.insert(
                (hash, row.get(2), row.get(3)),
                ClaimOutcome::Claimed {
                    attempt: attempts.max(0) as u32,
                    redelivery: previous.as_deref() == Some("claimed"),
                },
            );
        }
    }
    Ok(keys
        .iter()
        .map(|k| claimed.get(k).cloned().unwrap_or(ClaimOutcome::Settled))
        .collect())
}

/// The updates of each version are reduced to their net effect, as if applied in order
/// (the last one wins; a set after a forget writes a fresh row with attempts 0), then cut
/// into statements of at most `CHUNK_VERSIONS` versions like [`claim`]: all or
/// nothing within a chunk, a later chunk's failure returned while earlier chunks stay
/// applied.
pub(crate) async fn record(
    store: &PgStore,
    fence: &Fence,
    updates: &[LedgerUpdate],
) -> Result<(), StoreError> {
    let group = fence.group.as_str();
    // Per version: (index of its last update, a forget came before that update).
    let mut last: HashMap<Key, (usize, bool)> = HashMap::new();
    let mut keyed = Vec::with_capacity(updates.len());
    for (i, update) in updates.iter().enumerate() {
        let key = key_of("record", group, update.version())?;
        let entry = last.entry(key.clone()).or_insert((i, false));
        if entry.0 != i {
            let forgot_before = matches!(updates[entry.0], LedgerUpdate::Forget(_));
            *entry = (i, entry.1 || forgot_before);
        }
        keyed.push(key);
    }
    // The detail a version's net effect writes: the latest one since its last forget (a done
    // set after a handled one in the same batch keeps the handled one's).
    let mut detail_of: HashMap<&Key, Option<&str>> = HashMap::new();
    for (update, key) in updates.iter().zip(&keyed) {
        match update {
            LedgerUpdate::Set {
                detail: Some(d), ..
            } => {
                detail_of.insert(key, Some(d.as_str()));
            }
            LedgerUpdate::Set { .. } => {}
            LedgerUpdate::Forget(_) => {
                detail_of.remove(key);
            }
        }
    }
    let mut net: Vec<(&LedgerUpdate, &Key, bool)> = Vec::with_capacity(last.len());
    for (i, (update, key)) in updates.iter().zip(&keyed).enumerate() {
        if let Some(&(at, fresh)) = last.get(key)
            && at == i
        {
            net.push((update, key, fresh));
        }
    }
    for chunk in net.chunks(CHUNK_VERSIONS) {
        let mut kinds: Vec<&str> = Vec::new();
        let mut hashes: Vec<&str> = Vec::new();
        let mut paths: Vec<&str> = Vec::new();
        let mut sizes: Vec<i64> = Vec::new();
        let mut mtimes: Vec<i64> = Vec::new();
        let mut states: Vec<Option<&str>> = Vec::new();
        let mut errors: Vec<Option<String>> = Vec::new();
        let mut fresh: Vec<bool> = Vec::new();
        let mut details: Vec<Option<String>> = Vec::new();
        for (update, key, is_fresh) in chunk {
            let (kind, state, error) = match update {
                LedgerUpdate::Set { state, error, .. } => (
                    "set",
                    Some(state.as_str()),
                    storable_error(error.as_deref()),
                ),
                LedgerUpdate::Forget(_) => ("forget", None, None),
            };
            details.push(storable_error(
                detail_of.get(*key).and_then(|d| d.as_deref()),
            ));
            kinds.push(kind);
            hashes.push(key.0.as_str());
            paths.push(update.version().path.as_str());
            sizes.push(key.1);
            mtimes.push(key.2);
            states.push(state);
            errors.push(error);
            fresh.push(*is_fresh);
        }
        let rows = store
            .query(
                "record",
                group,
                sql::RECORD,
                &[
                    &group,
                    &fence.member.as_str(),
                    &incarnation_param(fence.incarnation),
                    &term_param(fence.term),
                    &kinds,
                    &hashes,
                    &paths,
                    &sizes,
                    &mtimes,
                    &states,
                    &errors,
                    &fresh,
                    &details,
                ],
            )
            .await?;
        if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Err(StoreError::fenced("record", fence));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            path_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
