//! The SQL of every store operation, in one place (DESIGN §4, §5). Each operation is one
//! statement: one round trip and one atomic step. Time that decides liveness is the server's
//! `clock_timestamp()` in UTC; the node's clock never reaches the database.

/// One heartbeat: upsert the member's row unless another live incarnation owns it, renew the
/// lease if this process holds the token (only after the write, and only while the token is
/// not released), and read the holder, all in one statement. The main SELECT sees the
/// statement's snapshot, so a renewal shows through `renew` and the row as it was before.
pub(crate) const HEARTBEAT: &str = "
WITH hb AS (
    INSERT INTO health_check AS h (task_id, group_id, last_heartbeat, incarnation)
    VALUES ($2, $1, clock_timestamp() AT TIME ZONE 'UTC', $3)
    ON CONFLICT (task_id, group_id) DO UPDATE
        SET last_heartbeat = EXCLUDED.last_heartbeat, incarnation = EXCLUDED.incarnation
        WHERE h.incarnation IS NULL OR h.incarnation = EXCLUDED.incarnation
           OR h.last_heartbeat < EXCLUDED.last_heartbeat - $4::bigint * interval '1 millisecond'
    RETURNING 1
), renew AS (
    UPDATE token_holder SET renewed_at = clock_timestamp() AT TIME ZONE 'UTC'
    WHERE group_id = $1 AND task_id = $2 AND incarnation = $3 AND renewed_at IS NOT NULL
      AND EXISTS (SELECT 1 FROM hb)
    RETURNING renewed_at
)
SELECT EXISTS (SELECT 1 FROM hb),
       (SELECT incarnation FROM health_check WHERE task_id = $2 AND group_id = $1),
       th.term, th.task_id::text, th.incarnation, th.renewed_at IS NOT NULL,
       EXISTS (SELECT 1 FROM renew),
       (EXTRACT(EPOCH FROM (clock_timestamp() AT TIME ZONE 'UTC')
            - COALESCE((SELECT renewed_at FROM renew), th.renewed_at)) * 1000)::bigint,
       (EXTRACT(EPOCH FROM COALESCE((SELECT renewed_at FROM renew), th.renewed_at))
            * 1000000)::bigint
FROM (SELECT 1) AS one LEFT JOIN token_holder th ON th.group_id = $1";

/// The first takeover of a group: whoever inserts the row wins term 1.
pub(crate) const TAKE_FIRST: &str = "
INSERT INTO token_holder (group_id, task_id, term, incarnation, renewed_at)
VALUES ($1, $2, 1, $3, clock_timestamp() AT TIME ZONE 'UTC')
ON CONFLICT (group_id) DO NOTHING
RETURNING term";

/// A takeover from the observed term. PostgreSQL re-evaluates the WHERE on the latest row
/// version after any concurrent update commits, so of any number of candidates at most one
/// matches, and a holder that renewed in between keeps the token.
pub(crate) const TAKE_OVER: &str = "
UPDATE token_holder
SET task_id = $2, incarnation = $3, term = term + 1,
    renewed_at = clock_timestamp() AT TIME ZONE 'UTC'
WHERE group_id = $1 AND term = $4
  AND (renewed_at IS NULL
       OR (renewed_at < (clock_timestamp() AT TIME ZONE 'UTC') - $5::bigint * interval '1 millisecond'
           AND ($6::bigint IS NULL
                OR (EXTRACT(EPOCH FROM renewed_at) * 1000000)::bigint = $6::bigint)))
RETURNING term";

pub(crate) const RELEASE: &str = "
WITH released AS (
    UPDATE token_holder SET renewed_at = NULL
    WHERE group_id = $1 AND task_id = $2 AND incarnation = $3 AND term = $4
      AND renewed_at IS NOT NULL
    RETURNING 1
)
DELETE FROM health_check WHERE group_id = $1 AND task_id = $2 AND incarnation = $3";

pub(crate) const LEAVE: &str =
    "DELETE FROM health_check WHERE group_id = $1 AND task_id = $2 AND incarnation = $3";

// The ledger statements cast the input's path hashes to `bpchar`, the key column's type: a
// `text` comparison would make `path_hash` a filter instead of part of the primary-key lookup,
// and every input row would scan the group's rows.

/// One page of the group's ledger in primary-key order, after the key ($2 path hash, $3
/// size, $4 mtime) of the previous page's last row; the first page starts after
/// `('', i64::MIN, i64::MIN)`, below every key. Each page is its own statement.
pub(crate) const LOAD_LEDGER_PAGE: &str = "
SELECT path, size, mtime_ms, state::text, term, attempts, last_error, path_hash::text, detail
FROM processed_file
WHERE group_id = $1 AND state IN ('claimed', 'failed', 'handled')
  AND (path_hash, size, mtime_ms) > ($2::text::bpchar, $3::bigint, $4::bigint)
ORDER BY path_hash, size, mtime_ms
LIMIT $5";

/// Every row of the group (operators' listings), in pages like `LOAD_LEDGER_PAGE`.
pub(crate) const ALL_LEDGER_PAGE: &str = "
SELECT path, size, mtime_ms, state::text, term, attempts, last_error, path_hash::text, detail
FROM processed_file
WHERE group_id = $1 AND (path_hash, size, mtime_ms) > ($2::text::bpchar, $3::bigint, $4::bigint)
ORDER BY path_hash, size, mtime_ms
LIMIT $5";

/// The rows of the versions given as arrays (hash, size, mtime), same columns as a load page.
pub(crate) const LOOKUP_LEDGER: &str = "
SELECT p.path, p.size, p.mtime_ms, p.state::text, p.term, p.attempts, p.last_error,
       p.path_hash::text, p.detail
FROM processed_file p
JOIN unnest($2::text[], $3::bigint[], $4::bigint[]) AS t(path_hash, size, mtime_ms)
  ON p.path_hash = t.path_hash::bpchar AND p.size = t.size AND p.mtime_ms = t.mtime_ms
WHERE p.group_id = $1";

/// Settled rows last written more than $2 seconds ago by the server's clock, oldest first,
/// after the row ($3 ms since the epoch, $4 hash, $5 size, $6 mtime) when $3 is not null.
pub(crate) const STALE_SETTLED: &str = "
SELECT path, size, mtime_ms,
       (extract(epoch FROM updated_at) * 1000)::bigint AS at_ms
FROM processed_file
WHERE group_id = $1 AND state IN ('done', 'error')
  AND updated_at < (clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => $2::float8)
  AND ($3::bigint IS NULL
       OR (updated_at, path_hash, size, mtime_ms) >
          (timestamp 'epoch' + $3::bigint * interval '1 millisecond', $4::text::bpchar,
           $5::bigint, $6::bigint))
ORDER BY updated_at, path_hash, size, mtime_ms
LIMIT $7";

/// The fence, as a CTE: the token row still names this member, incarnation and term and is
/// not released. FOR SHARE holds the row until the statement commits, so a takeover cannot
/// slip in between the check and the write.
macro_rules! fenced {
    ($rest:literal) => {
        concat!(
            "WITH fence AS (
    SELECT 1 FROM token_holder
    WHERE group_id = $1 AND task_id = $2 AND incarnation = $3 AND term = $4
      AND renewed_at IS NOT NULL
    FOR SHARE
), ",
            $rest
        )
    };
}

pub(crate) const CLAIM: &str = fenced!(
    "input AS (
    SELECT t.path_hash::bpchar AS path_hash, t.path, t.size, t.mtime_ms
    FROM unnest($5::text[], $6::text[], $7::bigint[], $8::bigint[])
        AS t(path_hash, path, size, mtime_ms)
), prev AS (
    SELECT p.path_hash::text AS path_hash, p.size, p.mtime_ms, p.state::text AS state
    FROM processed_file p JOIN input i
      ON p.path_hash = i.path_hash AND p.size = i.size AND p.mtime_ms = i.mtime_ms
    WHERE p.group_id = $1
), up AS (
    INSERT INTO processed_file AS p
        (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at)
    SELECT $1, i.path_hash, i.path, i.size, i.mtime_ms, 'claimed', $4, 1, NULL,
           clock_timestamp() AT TIME ZONE 'UTC'
    FROM input i WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE
        SET state = 'claimed', term = EXCLUDED.term, attempts = p.attempts + 1,
            updated_at = EXCLUDED.updated_at
        WHERE p.state IN ('claimed', 'failed')
    RETURNING p.path_hash::text AS path_hash, p.size, p.mtime_ms, p.attempts
), event AS (
    INSERT INTO ledger_event (group_id, path_hash, size, mtime_ms, at, term, state, attempts)
    SELECT $1, up.path_hash, up.size, up.mtime_ms, clock_timestamp() AT TIME ZONE 'UTC', $4,
           'claimed', up.attempts
    FROM up
)
SELECT EXISTS (SELECT 1 FROM fence), u.path_hash, u.size, u.mtime_ms, u.attempts, u.state
FROM (SELECT 1) AS one LEFT JOIN (
    SELECT up.*, prev.state FROM up LEFT JOIN prev
      ON prev.path_hash = up.path_hash AND prev.size = up.size AND prev.mtime_ms = up.mtime_ms
) AS u ON TRUE"
);

pub(crate) const RECORD: &str = fenced!(
    "input AS (
    SELECT t.kind, t.path_hash::bpchar AS path_hash, t.path, t.size, t.mtime_ms, t.state,
           t.last_error, t.fresh, t.detail
    FROM unnest($5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                $10::text[], $11::text[], $12::bool[], $13::text[])
        AS t(kind, path_hash, path, size, mtime_ms, state, last_error, fresh, detail)
), del AS (
    DELETE FROM processed_file p USING input i
    WHERE EXISTS (SELECT 1 FROM fence) AND i.kind = 'forget' AND p.group_id = $1
      AND p.path_hash = i.path_hash AND p.size = i.size AND p.mtime_ms = i.mtime_ms
    RETURNING 1
), forget_events AS (
    DELETE FROM ledger_event e USING input i
    WHERE EXISTS (SELECT 1 FROM fence) AND (i.kind = 'forget' OR i.fresh) AND e.group_id = $1
      AND e.path_hash = i.path_hash AND e.size = i.size AND e.mtime_ms = i.mtime_ms
), up AS (
    INSERT INTO processed_file AS p
        (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at,
         detail)
    SELECT $1, i.path_hash, i.path, i.size, i.mtime_ms, i.state, $4,
           CASE WHEN i.fresh THEN 0 ELSE COALESCE(old.attempts, 0) END, i.last_error,
           clock_timestamp() AT TIME ZONE 'UTC',
           COALESCE(i.detail, CASE WHEN i.fresh THEN NULL ELSE old.detail END)
    FROM input i LEFT JOIN processed_file old
      ON old.group_id = $1 AND old.path_hash = i.path_hash AND old.size = i.size
     AND old.mtime_ms = i.mtime_ms
    WHERE i.kind = 'set' AND EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE
        SET state = EXCLUDED.state, term = EXCLUDED.term, attempts = EXCLUDED.attempts,
            last_error = EXCLUDED.last_error, updated_at = EXCLUDED.updated_at,
            detail = EXCLUDED.detail
    RETURNING p.path_hash, p.size, p.mtime_ms, p.state, p.term, p.attempts, p.last_error
), event AS (
    INSERT INTO ledger_event (group_id, path_hash, size, mtime_ms, at, term, state, attempts,
                              detail)
    SELECT $1, up.path_hash, up.size, up.mtime_ms, clock_timestamp() AT TIME ZONE 'UTC',
           up.term, up.state, up.attempts, up.last_error
    FROM up
)
SELECT EXISTS (SELECT 1 FROM fence)"
);

/// A version's history, oldest first: $1 group, $2 path hash, $3 size, $4 mtime.
pub(crate) const LEDGER_HISTORY: &str = "
SELECT (EXTRACT(EPOCH FROM at) * 1000)::bigint, term, state::text, attempts, detail
FROM ledger_event
WHERE group_id = $1 AND path_hash = $2::text::bpchar AND size = $3 AND mtime_ms = $4
ORDER BY id";

/// The group's rows written within $2 milliseconds, by the server's clock.
pub(crate) const UPDATED_WITHIN: &str = "
SELECT path, size, mtime_ms, (EXTRACT(EPOCH FROM updated_at) * 1000)::bigint
FROM processed_file
WHERE group_id = $1
  AND updated_at >= (clock_timestamp() AT TIME ZONE 'UTC') - $2::bigint * interval '1 millisecond'";

pub(crate) const MEMBERS: &str = "
SELECT task_id::text, incarnation,
       (EXTRACT(EPOCH FROM (clock_timestamp() AT TIME ZONE 'UTC') - last_heartbeat) * 1000)::bigint
FROM health_check WHERE group_id = $1 ORDER BY task_id";

/// A read-only look at a group, one statement (one snapshot): the token row (if any) joined
/// with every heartbeat row, ages by one reading of the server's clock. One row per member,
/// or one row of NULL member columns when there is none.
pub(crate) const OBSERVE: &str = "
WITH now AS (SELECT clock_timestamp() AT TIME ZONE 'UTC' AS t)
SELECT th.term, th.task_id::text, th.incarnation, th.renewed_at IS NOT NULL,
       (EXTRACT(EPOCH FROM now.t - th.renewed_at) * 1000)::bigint,
       h.task_id::text, h.incarnation,
       (EXTRACT(EPOCH FROM now.t - h.last_heartbeat) * 1000)::bigint,
       (EXTRACT(EPOCH FROM th.renewed_at) * 1000000)::bigint
FROM now
LEFT JOIN token_holder th ON th.group_id = $1
LEFT JOIN health_check h ON h.group_id = $1
ORDER BY h.task_id";
