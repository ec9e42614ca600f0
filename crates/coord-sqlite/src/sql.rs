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
/// 1. Upsert the heartbeat unless the row carries another incarnation (or none, from the
///    seed schema) and is not older than the liveness timeout.
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
    "WHERE health_check.incarnation IS excluded.incarnation ",
    "OR excluded.last_heartbeat - health_check.last_heartbeat > ?4;\n",
    "UPDATE token_holder SET renewed_at = ",
    now_ms!(),
    " WHERE group_id = ?1 AND task_id = ?2 AND incarnation = ?3 AND renewed_at IS NOT NULL ",
    "AND EXISTS (SELECT 1 FROM health_check h ",
    "WHERE h.task_id = ?2 AND h.group_id = ?1 AND h.incarnation = ?3);\n",
    "SELECT h.incarnation, t.term, t.task_id, t.incarnation, ",
    now_ms!(),
    " - t.renewed_at ",
    "FROM (SELECT 1) AS one ",
    "LEFT JOIN health_check h ON h.task_id = ?2 AND h.group_id = ?1 ",
    "LEFT JOIN token_holder t ON t.group_id = ?1;\n",
    "COMMIT;",
);

/// Takeover, one call: ?1 group, ?2 member, ?3 incarnation, ?4 observed term, ?5 liveness
/// timeout in ms. The update moves an existing row from the observed term if its lease is
/// released or expired; the insert creates the first row only when the observed term is 0
/// (no row). At most one of them returns a row, and at most one candidate per term does.
pub(crate) const TAKE_OVER: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "UPDATE token_holder SET task_id = ?2, term = term + 1, incarnation = ?3, renewed_at = ",
    now_ms!(),
    " WHERE group_id = ?1 AND term = ?4 ",
    "AND (renewed_at IS NULL OR ",
    now_ms!(),
    " - renewed_at > ?5) ",
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
/// (the row and its term stay) if the fence holds; deletes the own heartbeat row.
pub(crate) const RELEASE: &str = concat!(
    "BEGIN IMMEDIATE;\n",
    "UPDATE token_holder SET renewed_at = NULL, incarnation = NULL ",
    "WHERE group_id = ?1 AND task_id = ?2 AND incarnation = ?3 AND term = ?4;\n",
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
    "h.task_id, h.incarnation, now.ms - h.last_heartbeat ",
    "FROM (SELECT ",
    now_ms!(),
    " AS ms) AS now ",
    "LEFT JOIN token_holder t ON t.group_id = ?1 ",
    "LEFT JOIN health_check h ON h.group_id = ?1 ",
    "ORDER BY h.task_id",
);

/// The fence check inside a ledger transaction: ?1 group, ?2 member, ?3 incarnation, ?4 term.
pub(crate) const FENCE: &str = "SELECT 1 FROM token_holder WHERE group_id = ?1 AND task_id = ?2 \
     AND incarnation = ?3 AND term = ?4 AND renewed_at IS NOT NULL";

/// ?1 group.
pub(crate) const LOAD_LEDGER: &str = "SELECT path, size, mtime_ms, state, term, attempts, \
     last_error FROM processed_file WHERE group_id = ?1 ORDER BY path, size, mtime_ms";

// Ledger batches travel as one JSON array bound to ?2, read with `json_each`, so a claim or
// record of any size costs the same few calls. Each element: `h` path hash, `p` path, `s`
// size, `m` mtime (ms), and for records `st` state and `e` error.

/// The prior state of each version of a claim batch, in batch order: ?1 group, ?2 batch.
pub(crate) const CLAIM_PRIOR: &str = "SELECT p.state, p.attempts FROM json_each(?2) AS j \
     LEFT JOIN processed_file AS p ON p.group_id = ?1 AND p.path_hash = j.value ->> 'h' \
     AND p.size = j.value ->> 's' AND p.mtime_ms = j.value ->> 'm' ORDER BY j.key";

/// Claims a batch: new versions inserted as claimed (attempt 1); claimed or failed ones
/// claimed again under this term, attempts + 1; settled ones untouched. ?1 group, ?2 batch,
/// ?3 term.
pub(crate) const CLAIM: &str = concat!(
    "INSERT INTO processed_file (group_id, path_hash, path, size, mtime_ms, state, term, ",
    "attempts, last_error, updated_at) ",
    "SELECT ?1, j.value ->> 'h', j.value ->> 'p', j.value ->> 's', j.value ->> 'm', 'claimed', ",
    "?3, 1, NULL, ",
    now_ms!(),
    " FROM json_each(?2) AS j WHERE true ORDER BY j.key ",
    "ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE SET state = 'claimed', ",
    "term = excluded.term, attempts = processed_file.attempts + 1, ",
    "updated_at = excluded.updated_at ",
    "WHERE processed_file.state IN ('claimed', 'failed')",
);

/// Sets the state (and error) of a batch, in batch order, inserting unknown versions with
/// attempts 0 and keeping the attempts of known ones: ?1 group, ?2 batch, ?3 term.
pub(crate) const SET_STATES: &str = concat!(
    "INSERT INTO processed_file (group_id, path_hash, path, size, mtime_ms, state, term, ",
    "attempts, last_error, updated_at) ",
    "SELECT ?1, j.value ->> 'h', j.value ->> 'p', j.value ->> 's', j.value ->> 'm', ",
    "j.value ->> 'st', ?3, 0, j.value ->> 'e', ",
    now_ms!(),
    " FROM json_each(?2) AS j WHERE true ORDER BY j.key ",
    "ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE SET state = excluded.state, ",
    "term = excluded.term, last_error = excluded.last_error, updated_at = excluded.updated_at",
);

/// Deletes a batch: ?1 group, ?2 batch.
pub(crate) const FORGET: &str = "DELETE FROM processed_file WHERE group_id = ?1 \
     AND (path_hash, size, mtime_ms) IN \
     (SELECT j.value ->> 'h', j.value ->> 's', j.value ->> 'm' FROM json_each(?2) AS j)";
