//! The SQL text of every store operation.
//!
//! Statements go over the text protocol with their values inlined as literals, so that the
//! heartbeat's multi-statement batch is one round trip and no statement needs a prepare round
//! trip. Literals are built here only: strings as `_utf8mb4 X'<hex>'` (immune to quoting,
//! backslashes and `NO_BACKSLASH_ESCAPES`), numbers by Rust's formatter.
//!
//! Times are `UTC_TIMESTAMP(3)`: the database's clock, in UTC whatever the session time zone
//! (the session is set to UTC as well, for column defaults), at millisecond precision. Ages
//! are `TIMESTAMPDIFF(MICROSECOND, then, UTC_TIMESTAMP(3))`, so no node clock is ever read.

use std::fmt::Write as _;
use std::time::Duration;

use coord_core::{Fence, GroupId, Incarnation, MemberId, Term};

/// The database's clock, UTC, milliseconds.
pub(crate) const NOW: &str = "UTC_TIMESTAMP(3)";

/// The history of a ledger batch (in its transaction, after its writes): one `ledger_event`
/// row per `processed_file` row of group literal `g` that matches `condition`, as it is now
/// (a claim's event carries no error: the row keeps the previous attempt's until recorded).
pub(crate) fn ledger_events(g: &str, condition: &str) -> String {
    format!(
        "INSERT INTO ledger_event \
         (group_id, path_hash, size, mtime_ms, at, term, state, attempts, detail) \
         SELECT group_id, path_hash, size, mtime_ms, {NOW}, term, state, attempts, \
         IF(state = 'claimed', NULL, last_error) FROM processed_file WHERE @coord_fence = 1 AND group_id = {g} AND ({condition});"
    )
}

/// A string literal that needs no escaping.
pub(crate) fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2 + 12);
    out.push_str("_utf8mb4 X'");
    for b in value.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
    out
}

/// An optional string literal.
pub(crate) fn opt_text(value: Option<&str>) -> String {
    value.map_or_else(|| "NULL".to_string(), text)
}

/// `Incarnation(u64)` stored as the same 64 bits in a signed BIGINT.
pub(crate) fn incarnation(value: Incarnation) -> i64 {
    value.0 as i64
}

/// The reverse of [`incarnation`]; NULL (a seed-era row) is `Incarnation(0)`.
pub(crate) fn incarnation_from(value: Option<i64>) -> Incarnation {
    Incarnation(value.unwrap_or(0) as u64)
}

/// A duration as whole microseconds for `INTERVAL n MICROSECOND`.
pub(crate) fn micros(value: Duration) -> u128 {
    value.as_micros()
}

/// Term as stored (BIGINT); terms never reach 2^63.
pub(crate) fn term(value: Term) -> i64 {
    i64::try_from(value.0).unwrap_or(i64::MAX)
}

/// The heartbeat: one batch, one round trip, one transaction (DESIGN §4, tick).
///
/// 1. Upsert the member's row. An existing row of another incarnation is replaced only when
///    its heartbeat is older than the liveness timeout; a seed-era row (no incarnation) is
///    never live: it was written by a process that predates incarnations, with a timestamp
///    this build cannot judge. `ON DUPLICATE KEY UPDATE` assigns
///    left to right and later expressions see earlier assignments, so `incarnation` is
///    decided first and `last_heartbeat` follows it: the row moves only if it now carries
///    this incarnation.
/// 2. Renew the lease, only where the token is held by this member *and* incarnation, not
///    released, and the heartbeat row now carries this incarnation (so a refused heartbeat
///    renews nothing).
/// 3. Read the own row's incarnation, the term, the holder and the lease's age, in one row.
///
/// READ COMMITTED (for this transaction only) makes the final read see the latest committed
/// takeover, not a snapshot from the start of the batch.
pub(crate) fn heartbeat(
    group: &GroupId,
    member: &MemberId,
    inc: Incarnation,
    liveness_timeout: Duration,
) -> String {
    let (g, m, i, t) = (
        text(group.as_str()),
        text(member.as_str()),
        incarnation(inc),
        micros(liveness_timeout),
    );
    format!(
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;\
         START TRANSACTION;\
         INSERT INTO health_check (task_id, group_id, last_heartbeat, incarnation) \
         VALUES ({m}, {g}, {NOW}, {i}) \
         ON DUPLICATE KEY UPDATE \
         incarnation = IF(incarnation <=> {i} OR incarnation IS NULL OR last_heartbeat < {NOW} - INTERVAL {t} MICROSECOND, {i}, incarnation), \
         last_heartbeat = IF(incarnation <=> {i}, {NOW}, last_heartbeat);\
         UPDATE token_holder SET renewed_at = {NOW} \
         WHERE group_id = {g} AND task_id = {m} AND incarnation = {i} AND renewed_at IS NOT NULL \
         AND EXISTS (SELECT 1 FROM health_check h WHERE h.task_id = {m} AND h.group_id = {g} AND h.incarnation = {i});\
         SELECT (SELECT h.incarnation FROM health_check h WHERE h.task_id = {m} AND h.group_id = {g}) AS own_incarnation, \
         th.term, th.task_id, th.incarnation, th.renewed_at IS NULL AS released, \
         TIMESTAMPDIFF(MICROSECOND, th.renewed_at, {NOW}) AS lease_age_us, \
         TIMESTAMPDIFF(MICROSECOND, '1970-01-01', th.renewed_at) AS renewal \
         FROM (SELECT 1 AS one) AS d LEFT JOIN token_holder th ON th.group_id = {g};\
         COMMIT"
    )
}

/// The first takeover of a group (no row yet): an insert; a duplicate key means another
/// candidate was first (the caller maps it to `Lost`).
pub(crate) fn takeover_first(group: &GroupId, member: &MemberId, inc: Incarnation) -> String {
    format!(
        "INSERT INTO token_holder (group_id, task_id, term, incarnation, renewed_at) \
         VALUES ({}, {}, 1, {}, {NOW})",
        text(group.as_str()),
        text(member.as_str()),
        incarnation(inc)
    )
}

/// A takeover from an observed term: one conditional UPDATE. InnoDB locks the row, the WHERE
/// re-checks term and lease atomically, and the SET moves the term on, so at most one
/// candidate per term changes the row. Because the term always changes, the affected-rows
/// count is 1 exactly for the winner with or without `CLIENT_FOUND_ROWS`.
pub(crate) fn takeover(
    group: &GroupId,
    member: &MemberId,
    inc: Incarnation,
    observed: Term,
    liveness_timeout: Duration,
    observed_renewal: Option<i64>,
) -> String {
    // The renewal token as `observe` reads it: the lease's time stamp in microseconds.
    let renewal = observed_renewal.map_or(String::new(), |r| {
        format!(" AND TIMESTAMPDIFF(MICROSECOND, '1970-01-01', renewed_at) = {r}")
    });
    format!(
        "UPDATE token_holder SET task_id = {}, incarnation = {}, term = term + 1, renewed_at = {NOW} \
         WHERE group_id = {} AND term = {} \
         AND (renewed_at IS NULL OR (renewed_at < {NOW} - INTERVAL {} MICROSECOND{renewal}))",
        text(member.as_str()),
        incarnation(inc),
        text(group.as_str()),
        term(observed),
        micros(liveness_timeout)
    )
}

/// The fence condition on `token_holder`, for a WHERE clause.
pub(crate) fn fence_condition(fence: &Fence) -> String {
    format!(
        "group_id = {} AND term = {} AND task_id = {} AND incarnation = {} AND renewed_at IS NOT NULL",
        text(fence.group.as_str()),
        term(fence.term),
        text(fence.member.as_str()),
        incarnation(fence.incarnation)
    )
}

/// Graceful stop, one transaction in one round trip: clear the lease if the fence holds (the
/// term stays; the next takeover moves it on), delete the own heartbeat row.
pub(crate) fn release(fence: &Fence) -> String {
    format!(
        "START TRANSACTION;UPDATE token_holder SET renewed_at = NULL WHERE {};{};COMMIT",
        fence_condition(fence),
        leave(&fence.group, &fence.member, fence.incarnation)
    )
}

/// Delete the own heartbeat row if it carries this incarnation.
pub(crate) fn leave(group: &GroupId, member: &MemberId, inc: Incarnation) -> String {
    format!(
        "DELETE FROM health_check WHERE task_id = {} AND group_id = {} AND incarnation = {}",
        text(member.as_str()),
        text(group.as_str()),
        incarnation(inc)
    )
}

/// The group's members and their heartbeat ages.
pub(crate) fn members(group: &GroupId) -> String {
    format!(
        "SELECT task_id, incarnation, TIMESTAMPDIFF(MICROSECOND, last_heartbeat, {NOW}) \
         FROM health_check WHERE group_id = {} ORDER BY task_id",
        text(group.as_str())
    )
}

/// A read-only look at a group, one statement (one consistent read): the token row (if any)
/// joined with every heartbeat row. One row per member, or one row of NULL member columns.
pub(crate) fn observe(group: &GroupId) -> String {
    let g = text(group.as_str());
    format!(
        "SELECT th.term, th.task_id, th.incarnation, th.renewed_at IS NULL AS released, \
         TIMESTAMPDIFF(MICROSECOND, th.renewed_at, {NOW}) AS lease_age_us, \
         h.task_id, h.incarnation, TIMESTAMPDIFF(MICROSECOND, h.last_heartbeat, {NOW}), \
         TIMESTAMPDIFF(MICROSECOND, '1970-01-01', th.renewed_at) \
         FROM (SELECT 1 AS one) AS d \
         LEFT JOIN token_holder th ON th.group_id = {g} \
         LEFT JOIN health_check h ON h.group_id = {g} \
         ORDER BY h.task_id"
    )
}

/// The schema version check run at connect.
pub(crate) const SCHEMA_VERSION: &str = "SELECT MAX(version), \
     SUM(CASE WHEN success THEN 0 ELSE 1 END) FROM _sqlx_migrations";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_literals_are_hex() {
        assert_eq!(text("a'b"), "_utf8mb4 X'612762'");
        assert_eq!(text(""), "_utf8mb4 X''");
        assert_eq!(opt_text(None), "NULL");
    }

    #[test]
    fn incarnations_keep_all_64_bits() {
        let big = Incarnation(u64::MAX - 5);
        assert_eq!(incarnation_from(Some(incarnation(big))), big);
        assert_eq!(incarnation_from(None), Incarnation(0));
    }
}
