//! The protocol's statements (DESIGN §4, §5): each trait method is one SQL statement, so one
//! round trip and one atomic step, except that ledger batches are bounded: `claim` and
//! `record` send one fenced statement per chunk of at most 500 versions (all or nothing per
//! chunk; a later chunk's failure is returned while earlier chunks stay applied), and
//! `load_ledger` reads pages of 5,000 rows by keyset on the primary key, one statement each.
//! No lock is ever held across round trips. Time that decides liveness is the server's
//! `clock_timestamp()` in UTC; the node's clock never reaches the database.

use std::collections::HashMap;
use std::time::Duration;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    HolderView, Incarnation, LedgerRecord, LedgerState, LedgerUpdate, MemberId, MemberStatus,
    Observation, OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use sha2::{Digest, Sha256};

use crate::store::PgStore;

/// One heartbeat: upsert the member's row unless another live incarnation owns it, renew the
/// lease if this process holds the token (only after the write, and only while the token is
/// not released), and read the holder, all in one statement. The main SELECT sees the
/// statement's snapshot, so a renewal shows through `renew` and the row as it was before.
const HEARTBEAT: &str = "
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
const TAKE_FIRST: &str = "
INSERT INTO token_holder (group_id, task_id, term, incarnation, renewed_at)
VALUES ($1, $2, 1, $3, clock_timestamp() AT TIME ZONE 'UTC')
ON CONFLICT (group_id) DO NOTHING
RETURNING term";

/// A takeover from the observed term. PostgreSQL re-evaluates the WHERE on the latest row
/// version after any concurrent update commits, so of any number of candidates at most one
/// matches, and a holder that renewed in between keeps the token.
const TAKE_OVER: &str = "
UPDATE token_holder
SET task_id = $2, incarnation = $3, term = term + 1,
    renewed_at = clock_timestamp() AT TIME ZONE 'UTC'
WHERE group_id = $1 AND term = $4
  AND (renewed_at IS NULL
       OR renewed_at < (clock_timestamp() AT TIME ZONE 'UTC') - $5::bigint * interval '1 millisecond')
RETURNING term";

const RELEASE: &str = "
WITH released AS (
    UPDATE token_holder SET renewed_at = NULL
    WHERE group_id = $1 AND task_id = $2 AND incarnation = $3 AND term = $4
      AND renewed_at IS NOT NULL
    RETURNING 1
)
DELETE FROM health_check WHERE group_id = $1 AND task_id = $2 AND incarnation = $3";

const LEAVE: &str =
    "DELETE FROM health_check WHERE group_id = $1 AND task_id = $2 AND incarnation = $3";

// The ledger statements cast the input's path hashes to `bpchar`, the key column's type: a
// `text` comparison would make `path_hash` a filter instead of part of the primary-key lookup,
// and every input row would scan the group's rows.

/// Versions per claim or record statement: a claim or record of any size is cut into
/// statements of this many, each fenced on its own and under its own statement timeout.
const CHUNK_VERSIONS: usize = 500;

/// Rows per page of a ledger load.
const LOAD_PAGE_ROWS: usize = 5000;

/// One page of the group's ledger in primary-key order, after the key ($2 path hash, $3
/// size, $4 mtime) of the previous page's last row; the first page starts after
/// `('', i64::MIN, i64::MIN)`, below every key. Each page is its own statement.
const LOAD_LEDGER_PAGE: &str = "
SELECT path, size, mtime_ms, state::text, term, attempts, last_error, path_hash::text
FROM processed_file
WHERE group_id = $1 AND (path_hash, size, mtime_ms) > ($2::text::bpchar, $3::bigint, $4::bigint)
ORDER BY path_hash, size, mtime_ms
LIMIT $5";

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

const CLAIM: &str = fenced!(
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
)
SELECT EXISTS (SELECT 1 FROM fence), u.path_hash, u.size, u.mtime_ms, u.attempts, u.state
FROM (SELECT 1) AS one LEFT JOIN (
    SELECT up.*, prev.state FROM up LEFT JOIN prev
      ON prev.path_hash = up.path_hash AND prev.size = up.size AND prev.mtime_ms = up.mtime_ms
) AS u ON TRUE"
);

const RECORD: &str = fenced!(
    "input AS (
    SELECT t.kind, t.path_hash::bpchar AS path_hash, t.path, t.size, t.mtime_ms, t.state,
           t.last_error, t.fresh
    FROM unnest($5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                $10::text[], $11::text[], $12::bool[])
        AS t(kind, path_hash, path, size, mtime_ms, state, last_error, fresh)
), del AS (
    DELETE FROM processed_file p USING input i
    WHERE EXISTS (SELECT 1 FROM fence) AND i.kind = 'forget' AND p.group_id = $1
      AND p.path_hash = i.path_hash AND p.size = i.size AND p.mtime_ms = i.mtime_ms
    RETURNING 1
), up AS (
    INSERT INTO processed_file AS p
        (group_id, path_hash, path, size, mtime_ms, state, term, attempts, last_error, updated_at)
    SELECT $1, i.path_hash, i.path, i.size, i.mtime_ms, i.state, $4,
           CASE WHEN i.fresh THEN 0 ELSE COALESCE(old.attempts, 0) END, i.last_error,
           clock_timestamp() AT TIME ZONE 'UTC'
    FROM input i LEFT JOIN processed_file old
      ON old.group_id = $1 AND old.path_hash = i.path_hash AND old.size = i.size
     AND old.mtime_ms = i.mtime_ms
    WHERE i.kind = 'set' AND EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (group_id, path_hash, size, mtime_ms) DO UPDATE
        SET state = EXCLUDED.state, term = EXCLUDED.term, attempts = EXCLUDED.attempts,
            last_error = EXCLUDED.last_error, updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM fence)"
);

const MEMBERS: &str = "
SELECT task_id::text, incarnation,
       (EXTRACT(EPOCH FROM (clock_timestamp() AT TIME ZONE 'UTC') - last_heartbeat) * 1000)::bigint
FROM health_check WHERE group_id = $1 ORDER BY task_id";

/// A read-only look at a group, one statement (one snapshot): the token row (if any) joined
/// with every heartbeat row, ages by one reading of the server's clock. One row per member,
/// or one row of NULL member columns when there is none.
const OBSERVE: &str = "
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

/// Lowercase hex SHA-256 of the path: the ledger's key column (shared schema).
fn path_hash(path: &str) -> String {
    Sha256::digest(path.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An `Incarnation` is stored as the same 64 bits in a BIGINT.
fn incarnation_param(incarnation: Incarnation) -> i64 {
    incarnation.0 as i64
}

fn incarnation_of(stored: Option<i64>) -> Incarnation {
    Incarnation(stored.map_or(0, |v| v as u64))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn age(ms: Option<i64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(0).max(0) as u64)
}

fn term_param(term: Term) -> i64 {
    i64::try_from(term.0).unwrap_or(i64::MAX)
}

fn bad_row(operation: &'static str, group: &str, cause: String) -> StoreError {
    StoreError::Rejected {
        operation,
        group: group.to_owned(),
        cause,
    }
}

fn member_of(
    operation: &'static str,
    group: &str,
    task_id: String,
) -> Result<MemberId, StoreError> {
    MemberId::new(task_id.clone())
        .map_err(|e| bad_row(operation, group, format!("stored task_id {task_id:?} {e}")))
}

/// Longest path the ledger keeps, in bytes (the shared schema's limit).
const MAX_PATH_BYTES: usize = 4096;

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

impl CoordinationStore for PgStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        let group = request.group.as_str();
        let rows = self
            .query(
                "heartbeat",
                group,
                HEARTBEAT,
                &[
                    &group,
                    &request.member.as_str(),
                    &incarnation_param(request.incarnation),
                    &millis(request.liveness_timeout),
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| bad_row("heartbeat", group, "no row returned".to_owned()))?;
        let written: bool = row.get(0);
        let own_row = if written {
            OwnRow::Written
        } else {
            OwnRow::HeldByOther(incarnation_of(row.get(1)))
        };
        let term: Option<i64> = row.get(2);
        let Some(term) = term else {
            return Ok(Observation {
                own_row,
                term: Term(0),
                holder: None,
            });
        };
        let holder_member = member_of("heartbeat", group, row.get(3))?;
        let holder_incarnation = incarnation_of(row.get(4));
        let leased: bool = row.get(5);
        let renewed: bool = row.get(6);
        let is_me = holder_member == request.member && holder_incarnation == request.incarnation;
        let holder = if !leased {
            None
        } else if is_me && written && !renewed {
            // We held the token at the snapshot but the renewal matched no row: a takeover
            // (or release) committed meanwhile. The snapshot cannot show the new holder;
            // report none, so nobody mistakes this for a renewal.
            tracing::debug!(group, "lease renewal lost to a concurrent takeover");
            None
        } else {
            Some(HolderView {
                member: holder_member,
                incarnation: holder_incarnation,
                lease_age: age(row.get(7)),
                renewal: row.get::<_, Option<i64>>(8).unwrap_or(0),
            })
        };
        Ok(Observation {
            own_row,
            term: Term(term.max(0) as u64),
            holder,
        })
    }

    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        let group = request.group.as_str();
        let member = request.member.as_str();
        let incarnation = incarnation_param(request.incarnation);
        let rows = if request.observed_term == Term(0) {
            self.query(
                "takeover",
                group,
                TAKE_FIRST,
                &[&group, &member, &incarnation],
            )
            .await?
        } else {
            self.query(
                "takeover",
                group,
                TAKE_OVER,
                &[
                    &group,
                    &member,
                    &incarnation,
                    &term_param(request.observed_term),
                    &millis(request.liveness_timeout),
                ],
            )
            .await?
        };
        Ok(match rows.first() {
            Some(row) => {
                let term: i64 = row.get(0);
                tracing::info!(group, member, term, "took the token");
                TakeoverOutcome::Won(Term(term.max(0) as u64))
            }
            None => TakeoverOutcome::Lost,
        })
    }

    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        let group = fence.group.as_str();
        self.query(
            "release",
            group,
            RELEASE,
            &[
                &group,
                &fence.member.as_str(),
                &incarnation_param(fence.incarnation),
                &term_param(fence.term),
            ],
        )
        .await?;
        Ok(())
    }

    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        let group = group.as_str();
        self.query(
            "leave",
            group,
            LEAVE,
            &[&group, &member.as_str(), &incarnation_param(incarnation)],
        )
        .await?;
        Ok(())
    }

    /// Read in pages of `LOAD_PAGE_ROWS` by keyset on the primary key, each page one
    /// statement under its own statement timeout, so a ledger of any size loads. The pages
    /// are separate reads (only the fenced leader writes the group's rows, and it loads
    /// before it writes); every row present throughout the load is returned exactly once.
    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        let group = group.as_str();
        let mut records = Vec::new();
        let mut after: Key = (String::new(), i64::MIN, i64::MIN);
        let page_rows = LOAD_PAGE_ROWS as i64;
        loop {
            let rows = self
                .query(
                    "load ledger",
                    group,
                    LOAD_LEDGER_PAGE,
                    &[&group, &after.0, &after.1, &after.2, &page_rows],
                )
                .await?;
            let full = rows.len() >= LOAD_PAGE_ROWS;
            for row in &rows {
                let path: String = row.get(0);
                let state: String = row.get(3);
                let state = LedgerState::parse(&state).ok_or_else(|| {
                    bad_row(
                        "load ledger",
                        group,
                        format!("unknown state {state:?} for {path:?}"),
                    )
                })?;
                let size: i64 = row.get(1);
                let mtime_ms: i64 = row.get(2);
                let term: i64 = row.get(4);
                let attempts: i32 = row.get(5);
                records.push(LedgerRecord {
                    version: FileVersion {
                        path,
                        size: size.max(0) as u64,
                        mtime_ms,
                    },
                    state,
                    term: Term(term.max(0) as u64),
                    attempts: attempts.max(0) as u32,
                    last_error: row.get(6),
                });
                after = (row.get(7), size, mtime_ms);
            }
            if !full {
                return Ok(records);
            }
        }
    }

    /// Cut into statements of at most `CHUNK_VERSIONS` distinct versions (a version listed
    /// twice is claimed once; both positions get its answer), each fenced on its own and under
    /// its own statement timeout. Within a chunk all or nothing; a later chunk's failure
    /// (fenced, timeout, ...) is returned while the earlier chunks stay applied.
    async fn claim(
        &self,
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
            let rows = self
                .query(
                    "claim",
                    group,
                    CLAIM,
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
    /// into statements of at most `CHUNK_VERSIONS` versions like [`PgStore::claim`]: all or
    /// nothing within a chunk, a later chunk's failure returned while earlier chunks stay
    /// applied.
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
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
            for (update, key, is_fresh) in chunk {
                let (kind, state, error) = match update {
                    LedgerUpdate::Set { state, error, .. } => (
                        "set",
                        Some(state.as_str()),
                        storable_error(error.as_deref()),
                    ),
                    LedgerUpdate::Forget(_) => ("forget", None, None),
                };
                kinds.push(kind);
                hashes.push(key.0.as_str());
                paths.push(update.version().path.as_str());
                sizes.push(key.1);
                mtimes.push(key.2);
                states.push(state);
                errors.push(error);
                fresh.push(*is_fresh);
            }
            let rows = self
                .query(
                    "record",
                    group,
                    RECORD,
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
                    ],
                )
                .await?;
            if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
                return Err(StoreError::fenced("record", fence));
            }
        }
        Ok(())
    }

    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        let group = group.as_str();
        let rows = self.query("observe", group, OBSERVE, &[&group]).await?;
        let mut view = GroupView {
            term: Term(0),
            holder: None,
            members: Vec::with_capacity(rows.len()),
        };
        for (i, row) in rows.iter().enumerate() {
            if i == 0
                && let Some(term) = row.get::<_, Option<i64>>(0)
            {
                view.term = Term(term.max(0) as u64);
                if row.get::<_, Option<bool>>(3) == Some(true) {
                    view.holder = Some(HolderView {
                        member: member_of("observe", group, row.get(1))?,
                        incarnation: incarnation_of(row.get(2)),
                        lease_age: age(row.get(4)),
                        renewal: row.get::<_, Option<i64>>(8).unwrap_or(0),
                    });
                }
            }
            if let Some(task_id) = row.get::<_, Option<String>>(5) {
                view.members.push(MemberStatus {
                    member: member_of("observe", group, task_id)?,
                    incarnation: incarnation_of(row.get(6)),
                    heartbeat_age: age(row.get(7)),
                });
            }
        }
        Ok(view)
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        let group = group.as_str();
        let rows = self.query("members", group, MEMBERS, &[&group]).await?;
        rows.into_iter()
            .map(|row| {
                Ok(MemberStatus {
                    member: member_of("members", group, row.get(0))?,
                    incarnation: incarnation_of(row.get(1)),
                    heartbeat_age: age(row.get(2)),
                })
            })
            .collect()
    }
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

    #[test]
    fn incarnation_keeps_all_64_bits() {
        let big = Incarnation(u64::MAX - 1);
        assert_eq!(incarnation_of(Some(incarnation_param(big))), big);
        assert_eq!(incarnation_of(None), Incarnation(0));
    }
}
