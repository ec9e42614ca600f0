//! The processed-file ledger on MySQL (DESIGN §5): load, fenced claim, fenced record.
//!
//! A claim or record is one transaction of two round trips: the first starts it, checks the
//! fence with a shared lock on the group's `token_holder` row (a takeover, which needs the
//! row exclusively, waits until this transaction ends, so the fence holds to the commit) and,
//! for a claim, locks the versions' rows; the second writes and commits, or rolls back when
//! the fence failed.

use std::collections::HashMap;
use std::fmt::Write as _;

use coord_core::{
    ClaimOutcome, Fence, FileVersion, GroupId, LedgerRecord, LedgerState, LedgerUpdate, Term,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use sha2::{Digest, Sha256};

use crate::error::{Failure, bad_row};
use crate::sql::{self, NOW, text};

/// Longest path the `path` column keeps, in bytes.
pub(crate) const MAX_PATH_BYTES: usize = 4096;

/// Longest `last_error` kept, in bytes: a handler's error can be arbitrarily long, and
/// recording a failure must not fail because of it (TEXT holds 65,535 bytes).
pub(crate) const MAX_ERROR_BYTES: usize = 16 * 1024;

/// `error` cut at a character boundary to at most [`MAX_ERROR_BYTES`], marked when cut.
fn bounded_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_string();
    }
    let mut end = MAX_ERROR_BYTES - 3;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &error[..end])
}

/// Lowercase hex SHA-256 of the path: the indexable stand-in for a long path.
pub(crate) fn path_hash(path: &str) -> String {
    let digest = Sha256::digest(path.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The literals of a version's key and columns, checked against the column limits.
struct VersionSql {
    hash: String,
    path: String,
    size: i64,
    mtime_ms: i64,
}

impl VersionSql {
    fn new(version: &FileVersion) -> Result<Self, Failure> {
        if version.path.len() > MAX_PATH_BYTES {
            return Err(Failure::Input(format!(
                "path is {} bytes long, the limit is {MAX_PATH_BYTES}",
                version.path.len()
            )));
        }
        let size = i64::try_from(version.size)
            .map_err(|_| Failure::Input(format!("size {} does not fit BIGINT", version.size)))?;
        Ok(VersionSql {
            hash: text(&path_hash(&version.path)),
            path: text(&version.path),
            size,
            mtime_ms: version.mtime_ms,
        })
    }

    fn key_condition(&self) -> String {
        format!(
            "(path_hash = {} AND size = {} AND mtime_ms = {})",
            self.hash, self.size, self.mtime_ms
        )
    }
}

/// Every ledger row of the group.
pub(crate) async fn load(conn: &mut Conn, group: &GroupId) -> Result<Vec<LedgerRecord>, Failure> {
    let query = format!(
        "SELECT path, size, mtime_ms, state, term, attempts, last_error \
         FROM processed_file WHERE group_id = {}",
        text(group.as_str())
    );
    let rows: Vec<Row> = conn.query(query).await?;
    rows.into_iter().map(record_from_row).collect()
}

fn record_from_row(mut row: Row) -> Result<LedgerRecord, Failure> {
    let path: String = take(&mut row, 0)?;
    let size: i64 = take(&mut row, 1)?;
    let mtime_ms: i64 = take(&mut row, 2)?;
    let state: String = take(&mut row, 3)?;
    let term: i64 = take(&mut row, 4)?;
    let attempts: i64 = take(&mut row, 5)?;
    let last_error: Option<String> = take(&mut row, 6)?;
    let state = LedgerState::parse(&state)
        .ok_or_else(|| bad_row(format!("processed_file has unknown state `{state}`")))?;
    Ok(LedgerRecord {
        version: FileVersion {
            path,
            size: u64::try_from(size).unwrap_or(0),
            mtime_ms,
        },
        state,
        term: Term(u64::try_from(term).unwrap_or(0)),
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error,
    })
}

/// Takes column `index` of a row as `T`, or a schema failure naming the column.
pub(crate) fn take<T: mysql_async::prelude::FromValue>(
    row: &mut Row,
    index: usize,
) -> Result<T, Failure> {
    match row.take_opt::<T, usize>(index) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(bad_row(format!("column {index}: {e}"))),
        None => Err(bad_row(format!("column {index} is missing"))),
    }
}

/// Starts the transaction and checks the fence under a shared lock; then `extra` runs in
/// the same round trip; returns the rows of its SELECT, if it has one. When the fence failed
/// the transaction is rolled back and the answer is [`Fenced::Yes`].
async fn begin_fenced(conn: &mut Conn, fence: &Fence, extra: &str) -> Result<Vec<Row>, Fenced> {
    let query = format!(
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;START TRANSACTION;\
         SELECT COUNT(*) FROM token_holder WHERE {} LOCK IN SHARE MODE;{extra}",
        sql::fence_condition(fence)
    );
    crate::store::round_trip("begin fenced");
    let sets: Vec<Vec<Row>> = crate::store::batch(conn, query)
        .await
        .map_err(Fenced::Failed)?
        .into_iter()
        .filter(|(has_columns, _)| *has_columns)
        .map(|(_, rows)| rows)
        .collect();
    // The first set with columns is the fence check (one row), the next the `extra` SELECT.
    let held = sets
        .first()
        .and_then(|rows| rows.first())
        .and_then(|r| r.get::<i64, usize>(0))
        .unwrap_or(0);
    if held == 0 {
        crate::store::round_trip("rollback");
        conn.query_drop("ROLLBACK").await.map_err(Fenced::Failed)?;
        return Err(Fenced::Yes);
    }
    Ok(sets.into_iter().nth(1).unwrap_or_default())
}

enum Fenced {
    Yes,
    Failed(mysql_async::Error),
}

impl From<Fenced> for Failure {
    fn from(value: Fenced) -> Self {
        match value {
            Fenced::Yes => Failure::Fenced,
            Fenced::Failed(e) => Failure::Db(e),
        }
    }
}

/// Fenced claim (see `CoordinationStore::claim`).
pub(crate) async fn claim(
    conn: &mut Conn,
    fence: &Fence,
    versions: &[FileVersion],
) -> Result<Vec<ClaimOutcome>, Failure> {
    let keyed: Vec<VersionSql> = versions
        .iter()
        .map(VersionSql::new)
        .collect::<Result<_, _>>()?;
    let lock_rows = if keyed.is_empty() {
        String::new()
    } else {
        let conditions: Vec<String> = keyed.iter().map(VersionSql::key_condition).collect();
        format!(
            "SELECT path_hash, size, mtime_ms, state, attempts FROM processed_file \
             WHERE group_id = {} AND ({}) FOR UPDATE",
            text(fence.group.as_str()),
            conditions.join(" OR ")
        )
    };
    let rows = begin_fenced(conn, fence, &lock_rows).await?;
    // (hash, size, mtime) -> (state, attempts) as the store has it now, locked.
    let mut current: HashMap<(String, i64, i64), (Option<LedgerState>, u32)> = HashMap::new();
    for mut row in rows {
        let hash: String = take(&mut row, 0)?;
        let size: i64 = take(&mut row, 1)?;
        let mtime: i64 = take(&mut row, 2)?;
        let state: String = take(&mut row, 3)?;
        let attempts: i64 = take(&mut row, 4)?;
        let state = LedgerState::parse(&state)
            .ok_or_else(|| bad_row(format!("processed_file has unknown state `{state}`")))?;
        current.insert(
            (text(&hash), size, mtime),
            (Some(state), u32::try_from(attempts).unwrap_or(0)),
        );
    }
    let mut outcomes = Vec::with_capacity(keyed.len());
    let mut writes = Vec::new();
    for v in &keyed {
        let entry = current
            .entry((v.hash.clone(), v.size, v.mtime_ms))
            .or_insert((None, 0));
        let outcome = match entry.0 {
            Some(state) if state.is_settled() => ClaimOutcome::Settled,
            previous => ClaimOutcome::Claimed {
                attempt: entry.1.saturating_add(1),
                redelivery: previous == Some(LedgerState::Claimed),
            },
        };
        if let ClaimOutcome::Claimed { attempt, .. } = outcome {
            *entry = (Some(LedgerState::Claimed), attempt);
            writes.push(format!(
                "({}, {}, {}, {}, {}, 'claimed', {}, {attempt}, NULL, {NOW})",
                text(fence.group.as_str()),
                v.hash,
                v.path,
                v.size,
                v.mtime_ms,
                sql::term(fence.term)
            ));
        }
        outcomes.push(outcome);
    }
    let mut finish = String::new();
    if !writes.is_empty() {
        finish.push_str(&format!(
            "INSERT INTO processed_file \
             (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at) \
             VALUES {} ON DUPLICATE KEY UPDATE path = VALUES(path), state = VALUES(state), \
             term = VALUES(term), attempts = VALUES(attempts), last_error = NULL, \
             updated_at = VALUES(updated_at);",
            writes.join(", ")
        ));
    }
    finish.push_str("COMMIT");
    crate::store::round_trip("claim commit");
    crate::store::batch(conn, finish).await?;
    Ok(outcomes)
}

/// Fenced record (see `CoordinationStore::record`): all or nothing.
pub(crate) async fn record(
    conn: &mut Conn,
    fence: &Fence,
    updates: &[LedgerUpdate],
) -> Result<(), Failure> {
    let mut sets = Vec::new();
    let mut forgets = Vec::new();
    for update in updates {
        let v = VersionSql::new(update.version())?;
        match update {
            LedgerUpdate::Set { state, error, .. } => sets.push(format!(
                "({}, {}, {}, {}, {}, '{}', {}, 1, {}, {NOW})",
                text(fence.group.as_str()),
                v.hash,
                v.path,
                v.size,
                v.mtime_ms,
                state.as_str(),
                sql::term(fence.term),
                sql::opt_text(error.as_deref().map(bounded_error).as_deref())
            )),
            LedgerUpdate::Forget(_) => forgets.push(v.key_condition()),
        }
    }
    begin_fenced(conn, fence, "").await?;
    let mut finish = String::new();
    if !sets.is_empty() {
        finish.push_str(&format!(
            "INSERT INTO processed_file \
             (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at) \
             VALUES {} ON DUPLICATE KEY UPDATE state = VALUES(state), term = VALUES(term), \
             last_error = VALUES(last_error), updated_at = VALUES(updated_at);",
            sets.join(", ")
        ));
    }
    if !forgets.is_empty() {
        finish.push_str(&format!(
            "DELETE FROM processed_file WHERE group_id = {} AND ({});",
            text(fence.group.as_str()),
            forgets.join(" OR ")
        ));
    }
    finish.push_str("COMMIT");
    crate::store::round_trip("record commit");
    crate::store::batch(conn, finish).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_hash_is_lowercase_sha256() {
        assert_eq!(
            path_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn long_errors_are_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = bounded_error(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.ends_with("..."));
        assert_eq!(bounded_error("short"), "short");
    }

    #[test]
    fn long_paths_are_refused() {
        let v = FileVersion {
            path: "x".repeat(MAX_PATH_BYTES + 1),
            size: 1,
            mtime_ms: 0,
        };
        assert!(matches!(VersionSql::new(&v), Err(Failure::Input(_))));
    }
}
