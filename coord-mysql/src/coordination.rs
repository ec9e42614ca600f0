//! The election half of [`CoordinationStore`] on MySQL/MariaDB (DESIGN §4): heartbeat,
//! takeover, release, leave, observe, members, with the SQL text in `sql.rs`; the ledger half
//! is in `ledger.rs`. Liveness is timed by the database's clock only (`UTC_TIMESTAMP(3)`).

use std::time::Duration;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    HolderView, Incarnation, LedgerRecord, LedgerUpdate, MemberId, MemberStatus, Observation,
    OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::error::{Failure, bad_row, store_error};
use crate::ledger::{self, take};
use crate::sql;
use crate::store::{MySqlStore, batch, round_trip};

/// MySQL's duplicate-key error: another candidate inserted the group's first holder row.
const DUPLICATE_KEY: u16 = 1062;

/// The rows of the last statement of a batch that returned columns.
async fn batch_rows(conn: &mut Conn, query: String) -> Result<Vec<Row>, Failure> {
    let sets = batch(conn, query).await?;
    Ok(sets
        .into_iter()
        .rev()
        .find(|(has_columns, _)| *has_columns)
        .map(|(_, rows)| rows)
        .unwrap_or_default())
}

async fn heartbeat(conn: &mut Conn, request: &HeartbeatRequest) -> Result<Observation, Failure> {
    round_trip("heartbeat");
    let query = sql::heartbeat(
        &request.group,
        &request.member,
        request.incarnation,
        request.liveness_timeout,
    );
    let mut rows = batch_rows(conn, query).await?;
    let mut row = rows.pop().ok_or_else(|| bad_row("heartbeat read no row"))?;
    let own: Option<i64> = take(&mut row, 0)?;
    let term: Option<i64> = take(&mut row, 1)?;
    let holder: Option<String> = take(&mut row, 2)?;
    let holder_incarnation: Option<i64> = take(&mut row, 3)?;
    let released: Option<i64> = take(&mut row, 4)?;
    let age_us: Option<i64> = take(&mut row, 5)?;
    let renewal: Option<i64> = take(&mut row, 6)?;
    let own_incarnation = sql::incarnation_from(own);
    let own_row = if own == Some(sql::incarnation(request.incarnation)) {
        OwnRow::Written
    } else {
        OwnRow::HeldByOther(own_incarnation)
    };
    let holder = match (holder, released) {
        (Some(member), Some(0)) => Some(HolderView {
            member: MemberId::new(member)
                .map_err(|e| bad_row(format!("token_holder.task_id: {e}")))?,
            incarnation: sql::incarnation_from(holder_incarnation),
            lease_age: Duration::from_micros(u64::try_from(age_us.unwrap_or(0)).unwrap_or(0)),
            renewal: renewal.unwrap_or(0),
        }),
        _ => None,
    };
    Ok(Observation {
        own_row,
        term: Term(term.and_then(|t| u64::try_from(t).ok()).unwrap_or(0)),
        holder,
    })
}

async fn take_over(conn: &mut Conn, request: &TakeoverRequest) -> Result<TakeoverOutcome, Failure> {
    round_trip("takeover");
    let query = if request.observed_term == Term(0) {
        sql::takeover_first(&request.group, &request.member, request.incarnation)
    } else {
        sql::takeover(
            &request.group,
            &request.member,
            request.incarnation,
            request.observed_term,
            request.liveness_timeout,
            request.observed_renewal,
        )
    };
    match conn.query_iter(query).await {
        Ok(result) => {
            let won = result.affected_rows() == 1;
            drop(result);
            Ok(if won {
                TakeoverOutcome::Won(request.observed_term.next())
            } else {
                TakeoverOutcome::Lost
            })
        }
        Err(mysql_async::Error::Server(s)) if s.code == DUPLICATE_KEY => Ok(TakeoverOutcome::Lost),
        Err(e) => Err(e.into()),
    }
}

fn micros_age(us: Option<i64>) -> Duration {
    Duration::from_micros(u64::try_from(us.unwrap_or(0)).unwrap_or(0))
}

async fn observe(conn: &mut Conn, group: &GroupId) -> Result<GroupView, Failure> {
    round_trip("observe");
    let rows: Vec<Row> = conn.query(sql::observe(group)).await?;
    let mut view = GroupView {
        term: Term(0),
        holder: None,
        members: Vec::with_capacity(rows.len()),
    };
    for (i, mut row) in rows.into_iter().enumerate() {
        let term: Option<i64> = take(&mut row, 0)?;
        let holder: Option<String> = take(&mut row, 1)?;
        let holder_incarnation: Option<i64> = take(&mut row, 2)?;
        let released: Option<i64> = take(&mut row, 3)?;
        let lease_age_us: Option<i64> = take(&mut row, 4)?;
        let member: Option<String> = take(&mut row, 5)?;
        let incarnation: Option<i64> = take(&mut row, 6)?;
        let heartbeat_age_us: Option<i64> = take(&mut row, 7)?;
        let renewal: Option<i64> = take(&mut row, 8)?;
        if i == 0 {
            view.term = Term(term.and_then(|t| u64::try_from(t).ok()).unwrap_or(0));
            if let (Some(holder), Some(0)) = (holder, released) {
                view.holder = Some(HolderView {
                    member: MemberId::new(holder)
                        .map_err(|e| bad_row(format!("token_holder.task_id: {e}")))?,
                    incarnation: sql::incarnation_from(holder_incarnation),
                    lease_age: micros_age(lease_age_us),
                    renewal: renewal.unwrap_or(0),
                });
            }
        }
        if let Some(member) = member {
            view.members.push(MemberStatus {
                member: MemberId::new(member)
                    .map_err(|e| bad_row(format!("health_check.task_id: {e}")))?,
                incarnation: sql::incarnation_from(incarnation),
                heartbeat_age: micros_age(heartbeat_age_us),
            });
        }
    }
    Ok(view)
}

async fn members(conn: &mut Conn, group: &GroupId) -> Result<Vec<MemberStatus>, Failure> {
    round_trip("members");
    let rows: Vec<Row> = conn.query(sql::members(group)).await?;
    rows.into_iter()
        .map(|mut row| {
            let member: String = take(&mut row, 0)?;
            let incarnation: Option<i64> = take(&mut row, 1)?;
            let age_us: Option<i64> = take(&mut row, 2)?;
            Ok(MemberStatus {
                member: MemberId::new(member)
                    .map_err(|e| bad_row(format!("health_check.task_id: {e}")))?,
                incarnation: sql::incarnation_from(incarnation),
                heartbeat_age: Duration::from_micros(
                    u64::try_from(age_us.unwrap_or(0)).unwrap_or(0),
                ),
            })
        })
        .collect()
}

async fn execute(conn: &mut Conn, operation: &'static str, query: String) -> Result<(), Failure> {
    round_trip(operation);
    batch(conn, query).await?;
    Ok(())
}

impl CoordinationStore for MySqlStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        self.run(
            "heartbeat",
            request.group.as_str(),
            None,
            async |conn: &mut Conn| heartbeat(conn, request).await,
        )
        .await
    }

    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        self.run(
            "takeover",
            request.group.as_str(),
            None,
            async |conn: &mut Conn| take_over(conn, request).await,
        )
        .await
    }

    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        self.run(
            "release",
            fence.group.as_str(),
            None,
            async |conn: &mut Conn| execute(conn, "release", sql::release(fence)).await,
        )
        .await
    }

    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        self.run("leave", group.as_str(), None, async |conn: &mut Conn| {
            execute(conn, "leave", sql::leave(group, member, incarnation)).await
        })
        .await
    }

    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        ledger::load(self, group, true).await
    }

    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        ledger::lookup(self, group, versions).await
    }

    async fn stale_settled(
        &self,
        group: &GroupId,
        older_than: std::time::Duration,
        after: Option<&coord_core::StaleRow>,
        limit: usize,
    ) -> Result<Vec<coord_core::StaleRow>, StoreError> {
        ledger::stale_settled(self, group, older_than, after, limit).await
    }

    /// Cut into chunks of at most `CHUNK_VERSIONS` versions (and a bounded amount of SQL),
    /// each one batch in one round trip, fenced on its own and under its own statement
    /// timeout; a version listed twice is claimed once and both positions get its answer.
    /// Within a chunk all or nothing; across chunks, a later chunk's failure (fenced,
    /// timeout, ...) is returned as the error of the whole call while the earlier chunks stay
    /// applied (their versions are claimed; the caller redelivers them after a failover).
    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        let group = fence.group.as_str();
        let plan = ledger::plan_claim(versions)
            .map_err(|f| store_error("claim", group, self.settings().statement_timeout, f))?;
        let mut answers = std::collections::HashMap::with_capacity(versions.len());
        for chunk in &plan.chunks {
            let answered = self
                .run("claim", group, Some(fence), async |conn: &mut Conn| {
                    ledger::claim_chunk(conn, fence, chunk).await
                })
                .await?;
            answers.extend(answered);
        }
        Ok(plan.answers(&answers))
    }

    /// Cut into chunks like [`MySqlStore::claim`], after reducing the updates of each version
    /// to their net effect (the last one wins; a set after a forget writes a fresh row).
    /// Within a chunk all or nothing; a later chunk's failure is returned while the earlier
    /// chunks stay applied.
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        let group = fence.group.as_str();
        let chunks = ledger::plan_record(updates)
            .map_err(|f| store_error("record", group, self.settings().statement_timeout, f))?;
        for chunk in &chunks {
            self.run("record", group, Some(fence), async |conn: &mut Conn| {
                ledger::record_chunk(conn, fence, chunk).await
            })
            .await?;
        }
        Ok(())
    }

    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        self.run("observe", group.as_str(), None, async |conn: &mut Conn| {
            observe(conn, group).await
        })
        .await
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        self.run("members", group.as_str(), None, async |conn: &mut Conn| {
            members(conn, group).await
        })
        .await
    }
}
