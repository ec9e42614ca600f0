//! The SQL, in one place. Parameters are numbered (`?1`..) so that one argument list serves a
//! whole multi-statement batch.
//!
//! Time is always the database's: `now_ms!()` is the current time in integer milliseconds
//! since the Unix epoch by SQLite's clock (every process sharing the file is on this host, so
//! they share that clock). Node times are never sent.

/// The database's current time in integer milliseconds since the Unix epoch.
macro_rules! now_ms {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

/// The tick (DESIGN §4), one call into the engine: ?1 group, ?2 member, ?3 incarnation,
/// ?4 liveness timeout in ms.
///
/// 1. Upsert the heartbeat unless the row carries another incarnation and is not older than
///    the liveness timeout. A seed-era row (no incarnation) is never live: it was written by
///    a process that predates incarnations, with a timestamp this build cannot judge.
/// 2. Renew the lease if this member *and* incarnation hold an unreleased token and step 1
///    wrote (the row now carries this incarnation).
/// 3. Read the own row's incarnation, the term, the holder and its lease age.
pub(crate) const HEARTBEAT: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "INSERT INTO health_check (task_id, group_id, last_heartbeat, incarnation) ",
    "VALUES (?2, ?1, ",
    now_ms!(),
    ", ?3) ",
    "ON CONFLICT (task_id, group_id) DO UPDATE ",
    "SET last_heartbeat = excluded.last_heartbeat, incarnation = excluded.incarnation ",
    "WHERE health_check.incarnation IS excluded.incarnation OR health_check.incarnation IS NULL ",
    "OR excluded.last_heartbeat - health_check.last_heartbeat > ?4;\n",
    "UPDATE token_holder SET renewed_at = ",
    now_ms!(),
    " WHERE group_id = ?1 AND task_id = ?2 AND incarnation = ?3 AND renewed_at IS NOT NULL ",
    "AND EXISTS (SELECT 1 FROM health_check h ",
    "WHERE h.task_id = ?2 AND h.group_id = ?1 AND h.incarnation = ?3);\n",
    "SELECT h.incarnation, t.term, t.task_id, t.incarnation, ",
    now_ms!(),
    " - t.renewed_at, t.renewed_at ",
    "FROM (SELECT 1) AS one ",
    "LEFT JOIN health_check h ON h.task_id = ?2 AND h.group_id = ?1 ",
    "LEFT JOIN token_holder t ON t.group_id = ?1;\n",
    "COMMIT;",
);

/// Takeover, one call: ?1 group, ?2 member, ?3 incarnation, ?4 observed term, ?5 liveness
/// timeout in ms, ?6 the renewal token seen (the lease's time stamp in ms) or NULL. The update moves an existing row from the observed term if its lease is
/// released or expired; the insert creates the first row only when the observed term is 0
/// (no row). At most one of them returns a row, and at most one candidate per term does.
pub(crate) const TAKE_OVER: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "UPDATE token_holder SET task_id = ?2, term = term + 1, incarnation = ?3, renewed_at = ",
    now_ms!(),
    " WHERE group_id = ?1 AND term = ?4 ",
    "AND (renewed_at IS NULL OR (",
    now_ms!(),
    " - renewed_at > ?5 AND (?6 IS NULL OR renewed_at = ?6))) ",
    "RETURNING term;\n",
    "INSERT INTO token_holder (group_id, task_id, term, incarnation, renewed_at) ",
    "SELECT ?1, ?2, 1, ?3, ",
    now_ms!(),
    " WHERE ?4 = 0 ",
    "ON CONFLICT (group_id) DO NOTHING ",
    "RETURNING term;\n",
    "COMMIT;",
);

/// Graceful stop, one call: ?1 group, ?2 member, ?3 incarnation, ?4 term. Clears the lease
/// if the fence holds (the row keeps its holder, incarnation and term, as on the other
/// stores: the last holder stays visible); deletes the own heartbeat row whether or not it
/// did.
pub(crate) const RELEASE: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "UPDATE token_holder SET renewed_at = NULL ",
    "WHERE group_id = ?1 AND task_id = ?2 AND incarnation = ?3 AND term = ?4 ",
    "AND renewed_at IS NOT NULL;\n",
    "DELETE FROM health_check WHERE group_id = ?1 AND task_id = ?2 AND incarnation = ?3;\n",
    "COMMIT;",
);

/// ?1 group, ?2 member, ?3 incarnation.
pub(crate) const LEAVE: &str =
    "DELETE FROM health_check WHERE group_id = ?1 AND task_id = ?2 AND incarnation = ?3";

/// ?1 group.
pub(crate) const MEMBERS: &str = concat!(
    "SELECT task_id, incarnation, ",
    now_ms!(),
    " - last_heartbeat FROM health_check WHERE group_id = ?1 ORDER BY task_id",
);

/// A read-only look at a group, one statement (one read transaction): ?1 group. The token
/// row (if any) joined with every heartbeat row; one row per member, or one row of NULL
/// member columns. Columns: term, holder, holder incarnation, lease age (NULL if released),
/// member, incarnation, heartbeat age.
pub(crate) const OBSERVE: &str = concat!(
    "SELECT t.term, t.task_id, t.incarnation, now.ms - t.renewed_at, ",
    "h.task_id, h.incarnation, now.ms - h.last_heartbeat, t.renewed_at ",
    "FROM (SELECT ",
    now_ms!(),
    " AS ms) AS now ",
    "LEFT JOIN token_holder t ON t.group_id = ?1 ",
    "LEFT JOIN health_check h ON h.group_id = ?1 ",
    "ORDER BY h.task_id",
);

/// The fence as a condition, for the ledger batches: ?1 group, ?2 member, ?3 incarnation,
/// ?4 term. Inside a `BEGIN IMMEDIATE` transaction no other connection can write, so every
/// statement of the batch sees the same answer.
macro_rules! fence {
    () => {
        "EXISTS (SELECT 1 FROM token_holder WHERE group_id = ?1 AND task_id = ?2 \
         AND incarnation = ?3 AND term = ?4 AND renewed_at IS NOT NULL)"
    };
}

/// One page of the group's ledger in primary-key order, after the key (?2 path hash, ?3
/// size, ?4 mtime) of the previous page's last row: ?1 group, ?5 page size. The first page
/// starts after `('', i64::MIN, i64::MIN)`, below every key.
///
/// The text columns are read as their bytes (`CAST(... AS BLOB)`): SQLite stores whatever it
/// is given, and a path that is not UTF-8 must reach the decoder, not fail the driver.
pub(crate) const LOAD_LEDGER_PAGE: &str = "SELECT CAST(path AS BLOB), size, mtime_ms, \
     CAST(state AS BLOB), term, attempts, CAST(last_error AS BLOB), path_hash, \
     CAST(detail AS BLOB) \
     FROM processed_file WHERE group_id = ?1 \
     AND state IN ('claimed', 'failed', 'handled') \
     AND (path_hash, size, mtime_ms) > (?2, ?3, ?4) \
     ORDER BY path_hash, size, mtime_ms LIMIT ?5";

/// Every row of the group (operators' listings), in pages like `LOAD_LEDGER_PAGE`.
pub(crate) const ALL_LEDGER_PAGE: &str = "SELECT CAST(path AS BLOB), size, mtime_ms, \
     CAST(state AS BLOB), term, attempts, CAST(last_error AS BLOB), path_hash, \
     CAST(detail AS BLOB) \
     FROM processed_file WHERE group_id = ?1 \
     AND (path_hash, size, mtime_ms) > (?2, ?3, ?4) \
     ORDER BY path_hash, size, mtime_ms LIMIT ?5";

/// The rows of the versions of the JSON array ?2 (`h`, `s`, `m`), same columns as a load page.
pub(crate) const LOOKUP_LEDGER: &str = "SELECT CAST(p.path AS BLOB), p.size, p.mtime_ms, \
     CAST(p.state AS BLOB), p.term, p.attempts, CAST(p.last_error AS BLOB), p.path_hash, \
     CAST(p.detail AS BLOB) \
     FROM json_each(?2) AS j CROSS JOIN processed_file AS p ON p.group_id = ?1 \
     AND p.path_hash = j.value ->> 'h' AND p.size = j.value ->> 's' \
     AND p.mtime_ms = j.value ->> 'm'";

/// Settled rows last written more than ?2 ms ago by SQLite's clock, oldest first, after the
/// row (?3 written at, ?4 hash, ?5 size, ?6 mtime) when ?3 is not null; at most ?7.
pub(crate) const STALE_SETTLED: &str = concat!(
    "SELECT CAST(path AS BLOB), size, mtime_ms, updated_at FROM processed_file ",
    "WHERE group_id = ?1 AND state IN ('done', 'error') AND updated_at < ",
    now_ms!(),
    " - ?2 AND (?3 IS NULL OR (updated_at, path_hash, size, mtime_ms) > (?3, ?4, ?5, ?6)) ",
    "ORDER BY updated_at, path_hash, size, mtime_ms LIMIT ?7"
);

/// The history of a ledger batch (after its writes, in its transaction): one `ledger_event`
/// row per version of the JSON array `$batch` whose `processed_file` row, as it is now,
/// matches `$condition` (a claim's event carries no error: the row keeps the previous
/// attempt's until recorded).
macro_rules! ledger_events {
    ($batch:literal, $condition:literal) => {
        concat!(
            "INSERT INTO ledger_event (group_id, path_hash, size, mtime_ms, at, term, state, ",
            "attempts, detail) SELECT p.group_id, p.path_hash, p.size, p.mtime_ms, ",
            now_ms!(),
            ", p.term, p.state, p.attempts, ",
            "CASE WHEN p.state = 'claimed' THEN NULL ELSE p.last_error END ",
            "FROM json_each(",
            $batch,
            ") AS j CROSS JOIN processed_file AS p ON p.group_id = ?1 ",
            "AND p.path_hash = j.value ->> 'h' AND p.size = j.value ->> 's' ",
            "AND p.mtime_ms = j.value ->> 'm' WHERE ",
            fence!(),
            $condition,
            " ORDER BY j.key"
        )
    };
}

/// A version's history, oldest first: ?1 group, ?2 path hash, ?3 size, ?4 mtime.
pub(crate) const LEDGER_HISTORY: &str = "SELECT at, term, CAST(state AS TEXT), attempts, \
     CAST(detail AS TEXT) FROM ledger_event \
     WHERE group_id = ?1 AND path_hash = ?2 AND size = ?3 AND mtime_ms = ?4 ORDER BY id";

/// The group's rows written within ?2 milliseconds, by the database's clock.
pub(crate) const UPDATED_WITHIN: &str = concat!(
    "SELECT CAST(path AS BLOB), size, mtime_ms, updated_at FROM processed_file ",
    "WHERE group_id = ?1 AND updated_at >= ",
    now_ms!(),
    " - ?2"
);

// Ledger batches travel as JSON arrays bound to ?5 (and ?6), read with `json_each`, so a
// chunk of any size is one call. Each element: `h` path hash, `p` path, `s` size, `m` mtime
// (ms), and for records `st` state, `e` error and `d` detail (null keeps the row's).

/// A claim chunk, one call into the engine (one batch, its own transaction): ?1..?4 the
/// fence, ?5 the chunk. The only row, read before the write and sent before the commit, is
/// whether the fence holds and the prior `[index, state, attempts]` of every version that
/// has a row (`CROSS JOIN` keeps the batch the outer loop, so each version is one primary-key
/// lookup). The write is conditional on the fence, so a failed fence writes nothing: new
/// versions are inserted as claimed (attempt 1); claimed or failed ones claimed again under
/// this term, attempts + 1; settled ones untouched.
pub(crate) const CLAIM: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "SELECT ",
    fence!(),
    ", (SELECT json_group_array(json_array(j.key, p.state, p.attempts)) ",
    "FROM json_each(?5) AS j CROSS JOIN processed_file AS p ON p.group_id = ?1 ",
    "AND p.path_hash = j.value ->> 'h' AND p.size = j.value ->> 's' ",
    "AND p.mtime_ms = j.value ->> 'm');\n",
    "INSERT INTO processed_file (group_id, path_hash, path, size, mtime_ms, state, term, ",
    "attempts, last_error, updated_at) ",
    "SELECT ?1, j.value ->> 'h', j.value ->> 'p', j.value ->> 's', j.value ->> 'm', 'claimed', ",
    "?4, 1, NULL, ",
    now_ms!(),
    " FROM json_each(?5) AS j WHERE ",
    fence!(),
    " ORDER BY j.key ",
    "ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE SET state = 'claimed', ",
    "term = excluded.term, attempts = processed_file.attempts + 1, ",
    "updated_at = excluded.updated_at ",
    "WHERE processed_file.state IN ('claimed', 'failed');\n",
    // The history: the versions claimed now are those in `claimed` under this term (a
    // claimed row is always claimed again, so none was in that state unwritten).
    ledger_events!("?5", " AND p.state = 'claimed' AND p.term = ?4"),
    ";\n",
    "COMMIT;",
);

/// A record chunk, one call into the engine: ?1..?4 the fence, ?5 the versions to delete
/// (forgotten, or written afresh), ?6 the states to set (inserting unknown versions with
/// attempts 0, keeping the attempts of known ones). Both conditional on the fence; the only
/// row says whether it held.
pub(crate) const RECORD: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "DELETE FROM processed_file WHERE ",
    fence!(),
    " AND group_id = ?1 AND (path_hash, size, mtime_ms) IN ",
    "(SELECT j.value ->> 'h', j.value ->> 's', j.value ->> 'm' FROM json_each(?5) AS j);\n",
    "DELETE FROM ledger_event WHERE ",
    fence!(),
    " AND group_id = ?1 AND (path_hash, size, mtime_ms) IN ",
    "(SELECT j.value ->> 'h', j.value ->> 's', j.value ->> 'm' FROM json_each(?5) AS j);\n",
    "INSERT INTO processed_file (group_id, path_hash, path, size, mtime_ms, state, term, ",
    "attempts, last_error, detail, updated_at) ",
    "SELECT ?1, j.value ->> 'h', j.value ->> 'p', j.value ->> 's', j.value ->> 'm', ",
    "j.value ->> 'st', ?4, 0, j.value ->> 'e', j.value ->> 'd', ",
    now_ms!(),
    " FROM json_each(?6) AS j WHERE ",
    fence!(),
    " ORDER BY j.key ",
    "ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE SET state = excluded.state, ",
    "term = excluded.term, last_error = excluded.last_error, updated_at = excluded.updated_at, ",
    "detail = COALESCE(excluded.detail, processed_file.detail);\n",
    ledger_events!("?6", ""),
    ";\n",
    "SELECT ",
    fence!(),
    ";\n",
    "COMMIT;",
);
