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

/// The answer for a version whose ledger row was `prior` before the claim.
fn answer(prior: Option<(String, i64)>) -> ClaimOutcome {
    let Some((state, attempts)) = prior else {
        return ClaimOutcome::Claimed {
            attempt: 1,
            redelivery: false,
        };
    };
    let attempt = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
    match LedgerState::parse(&state) {
        Some(LedgerState::Claimed) => ClaimOutcome::Claimed {
            attempt,
            redelivery: true,
        },
        Some(LedgerState::Failed) => ClaimOutcome::Claimed {
            attempt,
            redelivery: false,
        },
        // Settled (handled, done, error), or a state this build does not know (the claim
        // statement leaves such rows alone too): never dispatch it.
        _ => ClaimOutcome::Settled,
    }
}

pub(crate) async fn claim(
    store: &SqliteStore,
    fence: &Fence,
    versions: &[FileVersion],
) -> Result<Vec<ClaimOutcome>, StoreError> {
    // A version listed twice is claimed once; both positions get its answer.
    let mut unique: Vec<&FileVersion> = Vec::with_capacity(versions.len());
    let mut position = std::collections::HashMap::with_capacity(versions.len());
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
    let json = batch(keys.iter().map(element));
    let group = fence.group.as_str();
    let priors = store
        .call("claim", group, Leftover::Nothing, async |conn| {
            store.trip();
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            store.trip();
            if !fence_holds(&mut tx, fence).await? {
                return Ok(None);
            }
            store.trip();
            let priors: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(sql::CLAIM_PRIOR)
                .bind(group)
                .bind(&json)
                .fetch_all(&mut *tx)
                .await?;
            store.trip();
            sqlx::query(sql::CLAIM)
                .bind(group)
                .bind(&json)
                .bind(term_to_sql(fence.term))
                .execute(&mut *tx)
                .await?;
            store.trip();
            tx.commit().await?;
            Ok(Some(priors))
        })
        .await?
        .ok_or_else(|| StoreError::fenced("claim", fence))?;
    if priors.len() != unique.len() {
        return Err(StoreError::Rejected {
            operation: "claim",
            group: group.to_owned(),
            cause: format!("{} answers for {} versions", priors.len(), unique.len()),
        });
    }
    let answers: Vec<ClaimOutcome> = priors
        .into_iter()
        .map(|(state, attempts)| answer(state.map(|s| (s, attempts.unwrap_or(0)))))
        .collect();
    Ok(slots.into_iter().map(|i| answers[i].clone()).collect())
}

/// Consecutive updates of one kind, applied with one statement.
enum Run {
    Set(Vec<serde_json::Map<String, serde_json::Value>>),
    Forget(Vec<serde_json::Map<String, serde_json::Value>>),
}

fn runs(updates: &[LedgerUpdate], keys: &[Key<'_>]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (update, k) in updates.iter().zip(keys) {
        let mut e = element(k);
        match update {
            LedgerUpdate::Set { state, error, .. } => {
                e.insert("st".into(), state.as_str().into());
                e.insert("e".into(), error.clone().into());
                match runs.last_mut() {
                    Some(Run::Set(run)) => run.push(e),
                    _ => runs.push(Run::Set(vec![e])),
                }
            }
            LedgerUpdate::Forget(_) => match runs.last_mut() {
                Some(Run::Forget(run)) => run.push(e),
                _ => runs.push(Run::Forget(vec![e])),
            },
        }
    }
    runs
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
    // Runs keep the caller's order where it matters (a Set after a Forget of one version).
    let statements: Vec<(&'static str, String)> = runs(updates, &keys)
        .into_iter()
        .map(|run| match run {
            Run::Set(run) => (sql::SET_STATES, batch(run.into_iter())),
            Run::Forget(run) => (sql::FORGET, batch(run.into_iter())),
        })
        .collect();
    let group = fence.group.as_str();
    let applied = store
        .call("record", group, Leftover::Nothing, async |conn| {
            store.trip();
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            store.trip();
            if !fence_holds(&mut tx, fence).await? {
                return Ok(false);
            }
            for (statement, json) in &statements {
                store.trip();
                sqlx::query(statement)
                    .bind(group)
                    .bind(json)
                    .bind(term_to_sql(fence.term))
                    .execute(&mut *tx)
                    .await?;
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
