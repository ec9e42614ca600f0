//! The election half of [`CoordinationStore`] on PostgreSQL (DESIGN §4): heartbeat,
//! takeover, release, leave, observe, members, each one statement (`sql.rs`); the ledger
//! half is in `ledger.rs`. Time that decides liveness is the server's `clock_timestamp()` in
//! UTC; the node's clock never reaches the database.

use std::time::Duration;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    HolderView, Incarnation, LedgerRecord, LedgerUpdate, MemberId, MemberStatus, Observation,
    OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};

use crate::ledger;
use crate::sql;
use crate::store::PgStore;

/// An `Incarnation` is stored as the same 64 bits in a BIGINT.
pub(crate) fn incarnation_param(incarnation: Incarnation) -> i64 {
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

pub(crate) fn term_param(term: Term) -> i64 {
    i64::try_from(term.0).unwrap_or(i64::MAX)
}

pub(crate) fn bad_row(operation: &'static str, group: &str, cause: String) -> StoreError {
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

impl CoordinationStore for PgStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        let group = request.group.as_str();
        let rows = self
            .query(
                "heartbeat",
                group,
                sql::HEARTBEAT,
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
                sql::TAKE_FIRST,
                &[&group, &member, &incarnation],
            )
            .await?
        } else {
            self.query(
                "takeover",
                group,
                sql::TAKE_OVER,
                &[
                    &group,
                    &member,
                    &incarnation,
                    &term_param(request.observed_term),
                    &millis(request.liveness_timeout),
                    &request.observed_renewal,
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
            sql::RELEASE,
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
            sql::LEAVE,
            &[&group, &member.as_str(), &incarnation_param(incarnation)],
        )
        .await?;
        Ok(())
    }

    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        ledger::load(self, group.as_str(), true).await
    }

    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        ledger::lookup(self, group.as_str(), versions).await
    }

    async fn stale_settled(
        &self,
        group: &GroupId,
        older_than: std::time::Duration,
        after: Option<&coord_core::StaleRow>,
        limit: usize,
    ) -> Result<Vec<coord_core::StaleRow>, StoreError> {
        ledger::stale_settled(self, group.as_str(), older_than, after, limit).await
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
        let group = group.as_str();
        let rows = self
            .query("observe", group, sql::OBSERVE, &[&group])
            .await?;
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
        let rows = self
            .query("members", group, sql::MEMBERS, &[&group])
            .await?;
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
    fn incarnation_keeps_all_64_bits() {
        let big = Incarnation(u64::MAX - 1);
        assert_eq!(incarnation_of(Some(incarnation_param(big))), big);
        assert_eq!(incarnation_of(None), Incarnation(0));
    }
}
