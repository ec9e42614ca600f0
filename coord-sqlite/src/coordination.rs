//! `CoordinationStore` for [`SqliteStore`]: the election half (DESIGN §4) here, the ledger
//! half in `ledger.rs`.

use std::time::Duration;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    HolderView, Incarnation, LedgerRecord, LedgerUpdate, MemberId, MemberStatus, Observation,
    OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use sqlx::Row;

use crate::ledger;
use crate::sql;
use crate::store::{Leftover, SqliteStore};

/// `Incarnation(u64)` is stored as the same 64 bits in an `i64` column.
pub(crate) fn incarnation_to_sql(incarnation: Incarnation) -> i64 {
    incarnation.0 as i64
}

fn incarnation_from_sql(value: Option<i64>) -> Incarnation {
    Incarnation(value.map_or(0, |v| v as u64))
}

pub(crate) fn term_to_sql(term: Term) -> i64 {
    i64::try_from(term.0).unwrap_or(i64::MAX)
}

pub(crate) fn term_from_sql(value: i64) -> Term {
    Term(u64::try_from(value).unwrap_or(0))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// An age in ms by the database clock; a clock stepped back reads as zero.
fn age(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn bad_row(operation: &'static str, group: &GroupId, cause: String) -> StoreError {
    StoreError::Rejected {
        operation,
        group: group.to_string(),
        cause,
    }
}

impl CoordinationStore for SqliteStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        let group = request.group.as_str();
        let rows = self
            .call(
                "heartbeat",
                group,
                Leftover::OpenTransaction,
                async |conn| {
                    self.trip();
                    sqlx::query(sql::HEARTBEAT)
                        .bind(group)
                        .bind(request.member.as_str())
                        .bind(incarnation_to_sql(request.incarnation))
                        .bind(millis(request.liveness_timeout))
                        // fetch_all, not fetch_one: the batch must run to its COMMIT.
                        .fetch_all(&mut **conn)
                        .await
                },
            )
            .await?;
        let [row] = rows.as_slice() else {
            return Err(bad_row(
                "heartbeat",
                &request.group,
                format!("expected one row, got {}", rows.len()),
            ));
        };
        let decode = |e: sqlx::Error| bad_row("heartbeat", &request.group, e.to_string());
        let own: Option<i64> = row.try_get(0).map_err(decode)?;
        let term: Option<i64> = row.try_get(1).map_err(decode)?;
        let holder: Option<String> = row.try_get(2).map_err(decode)?;
        let holder_incarnation: Option<i64> = row.try_get(3).map_err(decode)?;
        let lease_age: Option<i64> = row.try_get(4).map_err(decode)?;
        let renewal: Option<i64> = row.try_get(5).map_err(decode)?;

        let own_row = match own {
            Some(value) if value == incarnation_to_sql(request.incarnation) => OwnRow::Written,
            other => OwnRow::HeldByOther(incarnation_from_sql(other)),
        };
        let holder = match (holder, lease_age) {
            (Some(member), Some(lease_age)) => Some(HolderView {
                member: MemberId::new(member).map_err(|e| {
                    bad_row("heartbeat", &request.group, format!("holder task_id {e}"))
                })?,
                incarnation: incarnation_from_sql(holder_incarnation),
                lease_age: age(lease_age),
                renewal: renewal.unwrap_or(0),
            }),
            // No row, or a released lease (NULL renewed_at, also every seed-DDL row).
            _ => None,
        };
        Ok(Observation {
            own_row,
            term: term.map_or(Term(0), term_from_sql),
            holder,
        })
    }

    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        let group = request.group.as_str();
        let terms: Vec<i64> = self
            .call("takeover", group, Leftover::OpenTransaction, async |conn| {
                self.trip();
                sqlx::query_scalar(sql::TAKE_OVER)
                    .bind(group)
                    .bind(request.member.as_str())
                    .bind(incarnation_to_sql(request.incarnation))
                    .bind(term_to_sql(request.observed_term))
                    .bind(millis(request.liveness_timeout))
                    .bind(request.observed_renewal)
                    .fetch_all(&mut **conn)
                    .await
            })
            .await?;
        Ok(match terms.as_slice() {
            [term] => {
                let term = term_from_sql(*term);
                tracing::info!(
                    group,
                    member = %request.member,
                    %term,
                    "took over the token"
                );
                TakeoverOutcome::Won(term)
            }
            _ => TakeoverOutcome::Lost,
        })
    }

    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        let group = fence.group.as_str();
        self.call("release", group, Leftover::OpenTransaction, async |conn| {
            self.trip();
            sqlx::query(sql::RELEASE)
                .bind(group)
                .bind(fence.member.as_str())
                .bind(incarnation_to_sql(fence.incarnation))
                .bind(term_to_sql(fence.term))
                .execute(&mut **conn)
                .await
        })
        .await?;
        Ok(())
    }

    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        self.call("leave", group.as_str(), Leftover::Nothing, async |conn| {
            self.trip();
            sqlx::query(sql::LEAVE)
                .bind(group.as_str())
                .bind(member.as_str())
                .bind(incarnation_to_sql(incarnation))
                .execute(&mut **conn)
                .await
        })
        .await?;
        Ok(())
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

    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        ledger::claim(self, fence, versions).await
    }

    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        ledger::record(self, fence, updates).await
    }

    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        let rows = self
            .call("observe", group.as_str(), Leftover::Nothing, async |conn| {
                self.trip();
                sqlx::query(sql::OBSERVE)
                    .bind(group.as_str())
                    .fetch_all(&mut **conn)
                    .await
            })
            .await?;
        let decode = |e: sqlx::Error| bad_row("observe", group, e.to_string());
        let mut view = GroupView {
            term: Term(0),
            holder: None,
            members: Vec::with_capacity(rows.len()),
        };
        for (i, row) in rows.iter().enumerate() {
            if i == 0 {
                let term: Option<i64> = row.try_get(0).map_err(decode)?;
                let holder: Option<String> = row.try_get(1).map_err(decode)?;
                let holder_incarnation: Option<i64> = row.try_get(2).map_err(decode)?;
                let lease_age: Option<i64> = row.try_get(3).map_err(decode)?;
                let renewal: Option<i64> = row.try_get(7).map_err(decode)?;
                view.term = term.map_or(Term(0), term_from_sql);
                // No row, or a released lease (NULL renewed_at): no holder.
                if let (Some(holder), Some(lease_age)) = (holder, lease_age) {
                    view.holder = Some(HolderView {
                        member: MemberId::new(holder).map_err(|e| {
                            bad_row("observe", group, format!("holder task_id {e}"))
                        })?,
                        incarnation: incarnation_from_sql(holder_incarnation),
                        lease_age: age(lease_age),
                        renewal: renewal.unwrap_or(0),
                    });
                }
            }
            let member: Option<String> = row.try_get(4).map_err(decode)?;
            if let Some(member) = member {
                let incarnation: Option<i64> = row.try_get(5).map_err(decode)?;
                let heartbeat_age: Option<i64> = row.try_get(6).map_err(decode)?;
                view.members.push(MemberStatus {
                    member: MemberId::new(member)
                        .map_err(|e| bad_row("observe", group, format!("task_id {e}")))?,
                    incarnation: incarnation_from_sql(incarnation),
                    heartbeat_age: age(heartbeat_age.unwrap_or(0)),
                });
            }
        }
        Ok(view)
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        let rows = self
            .call("members", group.as_str(), Leftover::Nothing, async |conn| {
                self.trip();
                sqlx::query(sql::MEMBERS)
                    .bind(group.as_str())
                    .fetch_all(&mut **conn)
                    .await
            })
            .await?;
        let decode = |e: sqlx::Error| bad_row("members", group, e.to_string());
        rows.iter()
            .map(|row| {
                let member: String = row.try_get(0).map_err(decode)?;
                let incarnation: Option<i64> = row.try_get(1).map_err(decode)?;
                let heartbeat_age: Option<i64> = row.try_get(2).map_err(decode)?;
                Ok(MemberStatus {
                    member: MemberId::new(member)
                        .map_err(|e| bad_row("members", group, format!("task_id {e}")))?,
                    incarnation: incarnation_from_sql(incarnation),
                    heartbeat_age: age(heartbeat_age.unwrap_or(0)),
                })
            })
            .collect()
    }
}
