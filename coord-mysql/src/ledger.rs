//! The processed-file ledger on MySQL (DESIGN §5): load, fenced claim, fenced record.
//!
//! **One round trip per batch, no lock held across round trips.** A claim or record chunk is
//! one multi-statement text batch (one `COM_QUERY` packet) that the server runs to its end
//! without waiting for the client:
//!
//! 1. `START TRANSACTION` (READ COMMITTED);
//! 2. the fence check, `SELECT COUNT(*) INTO @coord_fence ... LOCK IN SHARE MODE` on the
//!    group's `token_holder` row: when the fence holds, the shared lock makes a takeover
//!    (an `UPDATE` of that row) wait until this transaction commits, a few statements later;
//! 3. for a claim, the prior state of the chunk's rows, read with `FOR UPDATE` into the user
//!    variable `@coord_prior` (one `GROUP_CONCAT`, so no result rows travel before the commit);
//! 4. the writes, every one conditional on `@coord_fence = 1` (`INSERT ... SELECT ... WHERE
//!    @coord_fence = 1`, `DELETE ... WHERE @coord_fence = 1 AND ...`), so when the fence does
//!    not hold nothing is written, and the claim's new state is computed by the server from
//!    the locked row (`ON DUPLICATE KEY UPDATE` conditional on the old state);
//! 5. `COMMIT`, then `SELECT @coord_fence, @coord_prior`: the answer is read after the commit.
//!
//! Atomic because the fence read, the prior read and the writes are one transaction: a
//! takeover either committed before the fence read (then `@coord_fence` is 0 and every write
//! matches no row) or waits for the commit. A leader stopped (SIGSTOP, a frozen network) after
//! sending the batch cannot keep the lock: the server commits without it, and only OK packets
//! (and the answer, after the commit) are left in the socket. If a statement of the batch
//! fails, the server skips the rest, the transaction stays open until the client reacts: the
//! store then closes that connection at once (the server rolls back) instead of pooling it.
//!
//! **Bounded batches.** Claims and records are cut into chunks of at most
//! [`CHUNK_VERSIONS`] versions and [`CHUNK_BYTES`] of path text (far below the default
//! `max_allowed_packet`), each its own batch, fenced on its own and under its own statement
//! timeout; the ledger is loaded in pages of [`LOAD_PAGE_ROWS`] rows by keyset on the primary
//! key, each page its own statement.

use std::collections::HashMap;
use std::fmt::Write as _;

use coord_core::{
    ClaimOutcome, Fence, FileVersion, GroupId, LedgerRecord, LedgerState, LedgerUpdate,
    SkippedRows, StoreError, StoredLedgerRow,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use sha2::{Digest, Sha256};

use crate::error::{Failure, bad_row};
use crate::sql::{self, NOW, text};
use crate::store::MySqlStore;

/// Most versions in one claim or record batch.
pub(crate) const CHUNK_VERSIONS: usize = coord_core::LEDGER_CHUNK_VERSIONS;

/// Most path bytes in one claim or record batch (each path travels hex-encoded, twice in a
/// claim): keeps a batch of long paths a few MiB, under any sane `max_allowed_packet`.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Rows per page of [`load_page`].
pub(crate) const LOAD_PAGE_ROWS: usize = coord_core::LEDGER_PAGE_ROWS;

/// Enough for a chunk's `@coord_prior` (MySQL's default `group_concat_max_len` is 1024).
const PRIOR_MAX_LEN: usize = 16 << 20;
/// Longest path the `path` column keeps, in bytes.
pub(crate) const MAX_PATH_BYTES: usize = coord_core::LEDGER_MAX_PATH_BYTES;

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

/// A version's primary-key columns within a group: `(path_hash, size, mtime_ms)`.
pub(crate) type Key = (String, i64, i64);

/// The literals of a version's key and columns, checked against the column limits.
pub(crate) struct VersionSql {
    key: Key,
    hash: String,
    path: String,
    path_bytes: usize,
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
        let hash = path_hash(&version.path);
        Ok(VersionSql {
            hash: text(&hash),
            key: (hash, size, version.mtime_ms),
            path: text(&version.path),
            path_bytes: version.path.len(),
        })
    }

    fn key_condition(&self) -> String {
        format!(
            "(path_hash = {} AND size = {} AND mtime_ms = {})",
            self.hash, self.key.1, self.key.2
        )
    }
}

/// Cuts `items` into consecutive chunks of at most [`CHUNK_VERSIONS`] items and (unless one
/// item alone is bigger) [`CHUNK_BYTES`] path bytes.
fn chunks<T>(items: Vec<T>, bytes: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut size = 0;
    for item in items {
        let b = bytes(&item);
        if !current.is_empty() && (current.len() >= CHUNK_VERSIONS || size + b > CHUNK_BYTES) {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += b;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Every row of the group, in pages of [`LOAD_PAGE_ROWS`] by keyset on the primary key, each
/// page one statement under its own statement timeout, so a ledger of any size loads. The
/// pages are separate reads (only the fenced leader writes the group's rows, and it loads
/// before it writes); every row present throughout the load is returned exactly once, or
/// skipped and counted when it cannot be decoded (see [`coord_core::StoredLedgerRow`]).
pub(crate) async fn load(
    store: &MySqlStore,
    group: &GroupId,
    open_only: bool,
) -> Result<Vec<LedgerRecord>, StoreError> {
    let mut records = Vec::new();
    let mut skipped = SkippedRows::default();
    let mut after: Option<Key> = None;
    loop {
        let page = store
            .run(
                "load ledger",
                group.as_str(),
                None,
                async |conn: &mut Conn| load_page(conn, group, open_only, after.as_ref()).await,
            )
            .await?;
        let full = page.len() >= LOAD_PAGE_ROWS;
        for (key, row) in page {
            skipped.decode_into(&mut records, (&key.0, key.1, key.2), row);
            after = Some(key);
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

/// One page of the group's ledger rows in primary-key order, after `after` (the key of the
/// previous page's last row; `None` for the first page): each row's key, and its columns or
/// why they cannot be read. A page shorter than [`LOAD_PAGE_ROWS`] is the last.
async fn load_page(
    conn: &mut Conn,
    group: &GroupId,
    open_only: bool,
    after: Option<&Key>,
) -> Result<Vec<(Key, Result<StoredLedgerRow, String>)>, Failure> {
    // The OR form (not a row comparison) is what the range optimizer of both servers turns
    // into one index range on the primary key.
    let after = match after {
        None => String::new(),
        Some((hash, size, mtime)) => {
            let h = text(hash);
            format!(
                " AND (path_hash > {h} OR (path_hash = {h} AND (size > {size} \
                 OR (size = {size} AND mtime_ms > {mtime}))))"
            )
        }
    };
    let open = if open_only {
        " AND state IN ('claimed', 'failed', 'handled')"
    } else {
        ""
    };
    let query = format!(
        "SELECT path, size, mtime_ms, state, term, attempts, last_error, path_hash, detail \
         FROM processed_file WHERE group_id = {}{open}{after} \
         ORDER BY path_hash, size, mtime_ms LIMIT {LOAD_PAGE_ROWS}",
        text(group.as_str())
    );
    crate::store::round_trip("load ledger");
    let rows: Vec<Row> = conn.query(query).await?;
    rows.into_iter()
        .map(|row| {
            // The key first: it moves the page on even when the rest cannot be read.
            // Read by copy (`take` would empty the columns the decoder reads next).
            let key = (peek(&row, 7), peek(&row, 1), peek(&row, 2));
            let (Ok(hash), Ok(size), Ok(mtime)) = key else {
                return Err(Failure::Input(format!(
                    "processed_file: a row's primary key cannot be read: {key:?}"
                )));
            };
            Ok(((hash, size, mtime), stored_row(row)))
        })
        .collect()
}

/// The rows of these versions that exist, in chunks of at most [`CHUNK_VERSIONS`] versions
/// (one read each); rows that cannot be decoded are skipped and counted, as in [`load`].
pub(crate) async fn lookup(
    store: &MySqlStore,
    group: &GroupId,
    versions: &[FileVersion],
) -> Result<Vec<LedgerRecord>, StoreError> {
    let mut unique: Vec<VersionSql> = Vec::with_capacity(versions.len());
    let mut seen = std::collections::HashSet::new();
    for version in versions {
        let v = VersionSql::new(version).map_err(|f| {
            crate::error::store_error(
                "lookup ledger",
                group.as_str(),
                store.settings().statement_timeout,
                f,
            )
        })?;
        if seen.insert(v.key.clone()) {
            unique.push(v);
        }
    }
    let mut records = Vec::new();
    let mut skipped = SkippedRows::default();
    for chunk in chunks(unique, |v| v.path_bytes) {
        let conditions: Vec<String> = chunk.iter().map(VersionSql::key_condition).collect();
        let query = format!(
            "SELECT path, size, mtime_ms, state, term, attempts, last_error, path_hash, detail \
             FROM processed_file WHERE group_id = {} AND ({})",
            text(group.as_str()),
            conditions.join(" OR ")
        );
        let rows = store
            .run(
                "lookup ledger",
                group.as_str(),
                None,
                async |conn: &mut Conn| {
                    crate::store::round_trip("lookup ledger");
                    let rows: Vec<Row> = conn.query(query).await?;
                    Ok(rows)
                },
            )
            .await?;
        for row in rows {
            let key = (peek(&row, 7), peek(&row, 1), peek(&row, 2));
            let (Ok(hash), Ok(size), Ok(mtime)) = key else {
                continue;
            };
            let (hash, size, mtime): (String, i64, i64) = (hash, size, mtime);
            skipped.decode_into(&mut records, (&hash, size, mtime), stored_row(row));
        }
    }
    if let Some(message) = skipped.message(group.as_str()) {
        tracing::warn!(group = group.as_str(), skipped = skipped.count, "{message}");
    }
    Ok(records)
}

/// Settled rows last written more than `older_than` ago by the server's clock, oldest first,
/// after `after`: one read.
pub(crate) async fn stale_settled(
    store: &MySqlStore,
    group: &GroupId,
    older_than: std::time::Duration,
    after: Option<&coord_core::StaleRow>,
    limit: usize,
) -> Result<Vec<coord_core::StaleRow>, StoreError> {
    let timeout = store.settings().statement_timeout;
    let after = match after {
        None => String::new(),
        Some(row) => {
            let v = VersionSql::new(&row.version)
                .map_err(|f| crate::error::store_error("stale rows", group.as_str(), timeout, f))?;
            let at = format!(
                "DATE_ADD('1970-01-01 00:00:00.000', INTERVAL {} MICROSECOND)",
                row.updated_at_ms.saturating_mul(1000)
            );
            format!(
                " AND (updated_at > {at} OR (updated_at = {at} AND (path_hash > {h} \
                 OR (path_hash = {h} AND (size > {s} OR (size = {s} AND mtime_ms > {m}))))))",
                h = v.hash,
                s = v.key.1,
                m = v.key.2
            )
        }
    };
    let micros = i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX);
    let query = format!(
        "SELECT path, size, mtime_ms, \
         TIMESTAMPDIFF(MICROSECOND, '1970-01-01', updated_at) DIV 1000 \
         FROM processed_file WHERE group_id = {} AND state IN ('done', 'error') \
         AND updated_at < UTC_TIMESTAMP(3) - INTERVAL {micros} MICROSECOND{after} \
         ORDER BY updated_at, path_hash, size, mtime_ms LIMIT {limit}",
        text(group.as_str())
    );
    let rows = store
        .run(
            "stale rows",
            group.as_str(),
            None,
            async |conn: &mut Conn| {
                crate::store::round_trip("stale rows");
                let rows: Vec<(Vec<u8>, i64, i64, i64)> = conn.query(query).await?;
                Ok(rows)
            },
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(path, size, mtime_ms, at)| {
            Some(coord_core::StaleRow {
                version: FileVersion {
                    path: String::from_utf8(path).ok()?,
                    size: u64::try_from(size).ok()?,
                    mtime_ms,
                },
                updated_at_ms: at,
            })
        })
        .collect())
}

/// The columns of a `load_page` row, read without trusting their contents.
fn stored_row(mut row: Row) -> Result<StoredLedgerRow, String> {
    let reason = |f: Failure| match f {
        Failure::BadRow(cause) => cause,
        other => format!("{other:?}"),
    };
    Ok(StoredLedgerRow {
        path: take(&mut row, 0).map_err(reason)?,
        size: take(&mut row, 1).map_err(reason)?,
        mtime_ms: take(&mut row, 2).map_err(reason)?,
        state: take(&mut row, 3).map_err(reason)?,
        term: take(&mut row, 4).map_err(reason)?,
        attempts: take(&mut row, 5).map_err(reason)?,
        last_error: take(&mut row, 6).map_err(reason)?,
        detail: take(&mut row, 8).map_err(reason)?,
    })
}

/// Column `index` of a row as `T`, copied, or why not.
fn peek<T: mysql_async::prelude::FromValue>(row: &Row, index: usize) -> Result<T, String> {
    match row.get_opt::<T, usize>(index) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(format!("column {index}: {e}")),
        None => Err(format!("column {index} is missing")),
    }
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

/// The opening of every ledger batch: start a READ COMMITTED transaction and check the fence
/// into `@coord_fence` under a shared lock on the group's token row.
fn begin_fenced(fence: &Fence) -> String {
    format!(
        "SET @coord_fence := NULL, @coord_prior := NULL, \
         SESSION group_concat_max_len = {PRIOR_MAX_LEN};\
         SET TRANSACTION ISOLATION LEVEL READ COMMITTED;START TRANSACTION;\
         SELECT COUNT(*) INTO @coord_fence FROM token_holder WHERE {} LOCK IN SHARE MODE;",
        sql::fence_condition(fence)
    )
}

/// The closing of every ledger batch: commit, then read the fence (and a claim's prior
/// states) back. The answer is the only result set with columns.
const FINISH: &str = "COMMIT;SELECT @coord_fence, @coord_prior";

/// Sends one ledger batch and returns the prior states it read, or [`Failure::Fenced`] when
/// the fence did not hold (then nothing was written).
async fn run_batch(
    conn: &mut Conn,
    operation: &'static str,
    query: String,
) -> Result<Option<String>, Failure> {
    crate::store::round_trip(operation);
    let sets = crate::store::batch(conn, query).await?;
    let mut row = sets
        .into_iter()
        .rev()
        .find(|(has_columns, _)| *has_columns)
        .and_then(|(_, rows)| rows.into_iter().next())
        .ok_or_else(|| bad_row(format!("{operation} read no answer")))?;
    let held: Option<i64> = take(&mut row, 0)?;
    let prior: Option<String> = take(&mut row, 1)?;
    if held != Some(1) {
        return Err(Failure::Fenced);
    }
    Ok(prior)
}

/// A claim, checked and cut into chunks before anything is sent. A version listed twice is
/// claimed once; both positions get its answer.
pub(crate) struct ClaimPlan {
    /// The key of each requested version, in request order.
    keys: Vec<Key>,
    /// The distinct versions, chunked.
    pub(crate) chunks: Vec<Vec<VersionSql>>,
}

/// Checks every version (one bad version refuses the whole claim, before anything is
/// written), drops duplicates and cuts the rest into chunks.
pub(crate) fn plan_claim(versions: &[FileVersion]) -> Result<ClaimPlan, Failure> {
    let mut keys = Vec::with_capacity(versions.len());
    let mut unique = Vec::with_capacity(versions.len());
    let mut seen = std::collections::HashSet::with_capacity(versions.len());
    for version in versions {
        let v = VersionSql::new(version)?;
        keys.push(v.key.clone());
        if seen.insert(v.key.clone()) {
            unique.push(v);
        }
    }
    Ok(ClaimPlan {
        keys,
        chunks: chunks(unique, |v| v.path_bytes),
    })
}

impl ClaimPlan {
    /// The answers in request order, from the per-chunk answers.
    pub(crate) fn answers(&self, by_key: &HashMap<Key, ClaimOutcome>) -> Vec<ClaimOutcome> {
        self.keys
            .iter()
            // Every key was answered by its chunk (a chunk answers all its versions or fails).
            .map(|key| by_key.get(key).cloned().unwrap_or(ClaimOutcome::Settled))
            .collect()
    }
}

/// The claim of one chunk, one batch: see the module docs. Returns the answer per key.
pub(crate) async fn claim_chunk(
    conn: &mut Conn,
    fence: &Fence,
    chunk: &[VersionSql],
) -> Result<HashMap<Key, ClaimOutcome>, Failure> {
    let g = text(fence.group.as_str());
    let conditions: Vec<String> = chunk.iter().map(VersionSql::key_condition).collect();
    let rows: Vec<String> = chunk
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i == 0 {
                format!(
                    "SELECT {i} AS i, {} AS h, {} AS p, {} AS s, {} AS m",
                    v.hash, v.path, v.key.1, v.key.2
                )
            } else {
                format!(
                    "SELECT {i}, {}, {}, {}, {}",
                    v.hash, v.path, v.key.1, v.key.2
                )
            }
        })
        .collect();
    // Claimable rows are those in `claimed` or `failed`; `state` is assigned last, so every
    // earlier assignment still sees the old state.
    let claimable = "state IN ('claimed', 'failed')";
    let query = format!(
        "{begin}\
         SELECT GROUP_CONCAT(CONCAT_WS(',', path_hash, size, mtime_ms, state, attempts) \
         SEPARATOR ';') INTO @coord_prior FROM processed_file \
         WHERE @coord_fence = 1 AND group_id = {g} AND ({conditions}) FOR UPDATE;\
         INSERT INTO processed_file \
         (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at) \
         SELECT {g}, v.h, v.p, v.s, v.m, 'claimed', {term}, 1, NULL, {NOW} \
         FROM ({rows}) AS v WHERE @coord_fence = 1 ORDER BY v.i \
         ON DUPLICATE KEY UPDATE \
         term = IF({claimable}, VALUES(term), term), \
         attempts = IF({claimable}, attempts + 1, attempts), \
         updated_at = IF({claimable}, VALUES(updated_at), updated_at), \
         state = IF({claimable}, 'claimed', state);\
         {events}\
         {FINISH}",
        begin = begin_fenced(fence),
        // The versions claimed now are those in `claimed` under this term (a claimed row is
        // always claimed again, so none was in that state before without being written).
        events = sql::ledger_events(
            &g,
            &format!(
                "({}) AND state = 'claimed' AND term = {}",
                conditions.join(" OR "),
                sql::term(fence.term)
            ),
        ),
        conditions = conditions.join(" OR "),
        rows = rows.join(" UNION ALL "),
        term = sql::term(fence.term),
    );
    let prior = run_batch(conn, "claim", query).await?;
    let mut before: HashMap<Key, (String, i64)> = HashMap::new();
    for entry in prior.as_deref().unwrap_or("").split(';') {
        if entry.is_empty() {
            continue;
        }
        let parts: Vec<&str> = entry.split(',').collect();
        let [hash, size, mtime, state, attempts] = parts.as_slice() else {
            return Err(bad_row(format!("claim read a malformed prior `{entry}`")));
        };
        let number = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| bad_row(format!("claim read a malformed prior `{entry}`")))
        };
        before.insert(
            ((*hash).to_string(), number(size)?, number(mtime)?),
            ((*state).to_string(), number(attempts)?),
        );
    }
    Ok(chunk
        .iter()
        .map(|v| {
            let prior = before.get(&v.key).map(|(state, n)| (state.as_str(), *n));
            (v.key.clone(), coord_core::claim_answer(prior))
        })
        .collect())
}

/// The net effect of a record on one version, as if its updates were applied in order.
pub(crate) struct RecordOp {
    v: VersionSql,
    /// `Some((state, error))` to write, `None` to delete.
    set: Option<(LedgerState, Option<String>)>,
    /// The batch deleted the row before its last set: the set writes it afresh (attempts 0).
    fresh: bool,
    /// The latest detail since the version's last forget in the batch (`None` keeps the
    /// row's).
    detail: Option<String>,
}

/// Checks every update (one bad version refuses the whole record, before anything is
/// written), reduces the updates of each version to their net effect (the last one wins; a
/// set after a forget starts a fresh row) and cuts them into chunks, in the order of each
/// version's last update.
pub(crate) fn plan_record(updates: &[LedgerUpdate]) -> Result<Vec<Vec<RecordOp>>, Failure> {
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut ops: Vec<(usize, RecordOp, bool)> = Vec::new();
    for (i, update) in updates.iter().enumerate() {
        let v = VersionSql::new(update.version())?;
        let set = match update {
            LedgerUpdate::Set { state, error, .. } => {
                Some((*state, error.as_deref().map(bounded_error)))
            }
            LedgerUpdate::Forget(_) => None,
        };
        let forget = set.is_none();
        let detail = match update {
            LedgerUpdate::Set { detail, .. } => detail.as_deref().map(bounded_error),
            LedgerUpdate::Forget(_) => None,
        };
        match index.get(&v.key) {
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
                index.insert(v.key.clone(), ops.len());
                ops.push((
                    i,
                    RecordOp {
                        v,
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
    Ok(chunks(
        ops.into_iter().map(|(_, op, _)| op).collect(),
        |op| op.v.path_bytes,
    ))
}

/// The record of one chunk, one batch: see the module docs. Deletes (forgets, and rows a set
/// writes afresh) run before the upsert.
pub(crate) async fn record_chunk(
    conn: &mut Conn,
    fence: &Fence,
    chunk: &[RecordOp],
) -> Result<(), Failure> {
    let g = text(fence.group.as_str());
    let mut query = begin_fenced(fence);
    let deletes: Vec<String> = chunk
        .iter()
        .filter(|op| op.set.is_none() || op.fresh)
        .map(|op| op.v.key_condition())
        .collect();
    if !deletes.is_empty() {
        let _ = write!(
            query,
            "DELETE FROM processed_file WHERE @coord_fence = 1 AND group_id = {g} AND ({0});\
             DELETE FROM ledger_event WHERE @coord_fence = 1 AND group_id = {g} AND ({0});",
            deletes.join(" OR ")
        );
    }
    let rows: Vec<String> = chunk
        .iter()
        .filter_map(|op| op.set.as_ref().map(|set| (op, set)))
        .enumerate()
        .map(|(i, (op, (state, error)))| {
            let (state, error) = (text(state.as_str()), sql::opt_text(error.as_deref()));
            let detail = sql::opt_text(op.detail.as_deref());
            if i == 0 {
                format!(
                    "SELECT {i} AS i, {} AS h, {} AS p, {} AS s, {} AS m, {state} AS st, \
                     CAST({error} AS CHAR CHARACTER SET utf8mb4) AS e, \
                     CAST({detail} AS CHAR CHARACTER SET utf8mb4) AS d",
                    op.v.hash, op.v.path, op.v.key.1, op.v.key.2
                )
            } else {
                format!(
                    "SELECT {i}, {}, {}, {}, {}, {state}, {error}, {detail}",
                    op.v.hash, op.v.path, op.v.key.1, op.v.key.2
                )
            }
        })
        .collect();
    if !rows.is_empty() {
        let _ = write!(
            query,
            "INSERT INTO processed_file \
             (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at, \
             detail) \
             SELECT {g}, v.h, v.p, v.s, v.m, v.st, {term}, 0, v.e, {NOW}, v.d \
             FROM ({rows}) AS v WHERE @coord_fence = 1 ORDER BY v.i \
             ON DUPLICATE KEY UPDATE state = VALUES(state), term = VALUES(term), \
             last_error = VALUES(last_error), updated_at = VALUES(updated_at), \
             detail = COALESCE(VALUES(detail), detail);",
            term = sql::term(fence.term),
            rows = rows.join(" UNION ALL "),
        );
        let sets: Vec<String> = chunk
            .iter()
            .filter(|op| op.set.is_some())
            .map(|op| op.v.key_condition())
            .collect();
        query.push_str(&sql::ledger_events(&g, &sets.join(" OR ")));
    }
    query.push_str(FINISH);
    run_batch(conn, "record", query).await?;
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

    fn v(path: &str) -> FileVersion {
        FileVersion {
            path: path.into(),
            size: 1,
            mtime_ms: 0,
        }
    }

    fn set(path: &str, state: LedgerState) -> LedgerUpdate {
        LedgerUpdate::Set {
            version: v(path),
            state,
            error: None,
            detail: None,
        }
    }

    #[test]
    fn chunks_are_bounded_by_count_and_bytes() {
        let sizes: Vec<usize> = chunks((0..1201).collect(), |_| 1)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [500, 500, 201]);
        let sizes: Vec<usize> = chunks((0..10).collect(), |_| CHUNK_BYTES / 3)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        // One item bigger than the budget still goes, alone.
        assert_eq!(chunks(vec![1, 2], |_| CHUNK_BYTES * 2).len(), 2);
    }

    #[test]
    fn claims_drop_duplicates_and_keep_positions() {
        let plan = plan_claim(&[v("/a"), v("/b"), v("/a")]).unwrap();
        assert_eq!(plan.chunks.len(), 1);
        assert_eq!(plan.chunks[0].len(), 2);
        let answers: HashMap<Key, ClaimOutcome> = plan.chunks[0]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let outcome = if i == 0 {
                    ClaimOutcome::Settled
                } else {
                    ClaimOutcome::Claimed {
                        attempt: 1,
                        redelivery: false,
                    }
                };
                (v.key.clone(), outcome)
            })
            .collect();
        let out = plan.answers(&answers);
        assert_eq!(out[0], ClaimOutcome::Settled);
        assert_eq!(out[2], ClaimOutcome::Settled);
        assert_ne!(out[1], ClaimOutcome::Settled);
    }

    #[test]
    fn records_reduce_to_the_net_effect_in_order() {
        let chunks = plan_record(&[
            LedgerUpdate::Forget(v("/x")),
            set("/x", LedgerState::Failed),
            set("/y", LedgerState::Done),
            set("/x", LedgerState::Done),
            LedgerUpdate::Forget(v("/y")),
            set("/z", LedgerState::Handled),
        ])
        .unwrap();
        let ops = &chunks[0];
        let summary: Vec<(Option<LedgerState>, bool)> = ops
            .iter()
            .map(|op| (op.set.as_ref().map(|s| s.0), op.fresh))
            .collect();
        // In the order of each version's last update: x (3), y (4), z (5).
        assert_eq!(
            summary,
            [
                (Some(LedgerState::Done), true),
                (None, false),
                (Some(LedgerState::Handled), false)
            ]
        );
        assert_eq!(ops[0].v.key.0, path_hash("/x"));
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
