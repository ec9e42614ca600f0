//! [`RedisStore`]: every method one script call (the ledger methods one per chunk).
//!
//! It keeps the ledger's current rows only, no history (it implements no
//! `coord_core::LedgerHistory`, so `ftp-listener ledger show` reports none).

use std::fmt;
use std::time::Duration;

use coord_core::{
    ClaimOutcome, CoordinationStore, Fence, FileVersion, GroupId, GroupView, HeartbeatRequest,
    HolderView, Incarnation, LedgerRecord, LedgerUpdate, MemberId, MemberStatus, Observation,
    OwnRow, StoreError, TakeoverOutcome, TakeoverRequest, Term,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};

use crate::error::{malformed, store_error};
use crate::keys::{self, GroupKeys};
use crate::lua;
use crate::settings::{RedisSettings, scrub, settings_error};

/// Most versions (or updates) one script call handles: a script blocks the whole server while
/// it runs, so a large claim is cut into calls of this size (about a millisecond each).
pub const CHUNK_VERSIONS: usize = 500;

/// The coordination store on Redis. Cheap to clone (clones share one multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
    target: String,
    secrets: Vec<String>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("key_prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> String {
    d.as_micros().min(i64::MAX as u128).to_string()
}

fn age(now_us: i64, at_us: i64) -> Duration {
    Duration::from_micros(now_us.saturating_sub(at_us).max(0) as u64)
}

impl RedisStore {
    /// One read command under the operation timeout.
    async fn read<T: FromRedisValue>(
        &self,
        operation: &'static str,
        group: &GroupId,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(operation, group, cmd.query_async::<T>(&mut conn))
            .await
    }

    /// A call to the server under the operation timeout, its error named.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        group: &GroupId,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.op_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(store_error(
                operation,
                group.as_str(),
                &e,
                self.op_timeout,
                &self.secrets,
            )),
            Err(_) => Err(StoreError::Timeout {
                operation,
                group: group.to_string(),
                after: self.op_timeout,
            }),
        }
    }

    /// Opens the connection (within `connect_timeout`) and checks that the server answers.
    /// Errors are [`StoreError::Connect`]: transient when the server is down, unreachable or
    /// slow; not transient for invalid settings or refused credentials.
    pub async fn connect(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        let checked = settings.checked()?;
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| settings_error(scrub(e.to_string(), &checked.secrets)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.op_timeout))
            .set_number_of_retries(1);
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            // Authentication and the database choice happen in the handshake; TIME shows the
            // server answers commands (and has the clock the scripts use).
            redis::cmd("TIME")
                .query_async::<(i64, i64)>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = match tokio::time::timeout(settings.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(store_error(
                    "connect",
                    "-",
                    &e,
                    settings.connect_timeout,
                    &checked.secrets,
                )
                .at_connect(&checked.target));
            }
            Err(_) => {
                return Err(StoreError::Connect {
                    target: checked.target,
                    cause: format!("timed out after {:?}", settings.connect_timeout),
                    transient: true,
                });
            }
        };
        Ok(RedisStore {
            conn,
            prefix: settings.key_prefix,
            op_timeout: settings.op_timeout,
            target: checked.target,
            secrets: checked.secrets,
        })
    }

    /// Where the store is (`redis://host:port/db`, no credentials).
    pub fn target(&self) -> &str {
        &self.target
    }

    fn keys(&self, group: &GroupId) -> GroupKeys {
        GroupKeys::new(&self.prefix, group.as_str())
    }

    /// Runs `script` with `keys` and `args`, bounded by the operation timeout. The connection
    /// manager replaces a broken connection for the next call; this one fails.
    async fn run<T: FromRedisValue>(
        &self,
        operation: &'static str,
        group: &GroupId,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        self.bounded(operation, group, invocation.invoke_async(&mut conn))
            .await
    }
}

/// The holder part of a script's answer: term, member, incarnation, renewed_at, renewal.
fn holder_of(
    operation: &'static str,
    group: &GroupId,
    fields: &[String],
    now_us: i64,
) -> Result<(Term, Option<HolderView>), StoreError> {
    let bad = |what| malformed(operation, group.as_str(), what);
    let [term, member, incarnation, renewed_at, renewal] = fields else {
        return Err(bad("holder"));
    };
    let term = Term(term.parse().map_err(|_| bad("term"))?);
    if member.is_empty() {
        return Ok((term, None));
    }
    let holder = HolderView {
        member: MemberId::new(member.as_str()).map_err(|_| bad("holder member"))?,
        incarnation: Incarnation(incarnation.parse().map_err(|_| bad("holder incarnation"))?),
        lease_age: age(now_us, renewed_at.parse().map_err(|_| bad("renewed_at"))?),
        renewal: renewal.parse().map_err(|_| bad("renewal"))?,
    };
    Ok((term, Some(holder)))
}

/// `member, row, member, row, ...` as member statuses.
fn members_of(
    operation: &'static str,
    group: &GroupId,
    pairs: &[String],
    now_us: i64,
) -> Result<Vec<MemberStatus>, StoreError> {
    pairs
        .chunks(2)
        .map(|pair| {
            let bad = || malformed(operation, group.as_str(), "heartbeat row");
            let [member, row] = pair else {
                return Err(bad());
            };
            let (incarnation, at) = keys::parse_row(row).ok_or_else(bad)?;
            Ok(MemberStatus {
                member: MemberId::new(member.as_str()).map_err(|_| bad())?,
                incarnation: Incarnation(incarnation),
                heartbeat_age: age(now_us, at),
            })
        })
        .collect()
}

fn parse_now(operation: &'static str, group: &GroupId, now: &str) -> Result<i64, StoreError> {
    now.parse()
        .map_err(|_| malformed(operation, group.as_str(), "server time"))
}

impl CoordinationStore for RedisStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        let keys = self.keys(&request.group);
        let incarnation = request.incarnation.0.to_string();
        let reply: Vec<String> = self
            .run(
                "heartbeat",
                &request.group,
                &lua::HEARTBEAT_SCRIPT,
                &[&keys.token, &keys.members],
                &[
                    request.member.as_str(),
                    &incarnation,
                    &micros(request.liveness_timeout),
                ],
            )
            .await?;
        let [other, holder @ .., now] = reply.as_slice() else {
            return Err(malformed("heartbeat", request.group.as_str(), "reply"));
        };
        let now = parse_now("heartbeat", &request.group, now)?;
        let own_row = if other.is_empty() {
            OwnRow::Written
        } else {
            OwnRow::HeldByOther(Incarnation(other.parse().map_err(|_| {
                malformed("heartbeat", request.group.as_str(), "incarnation")
            })?))
        };
        let (term, holder) = holder_of("heartbeat", &request.group, holder, now)?;
        Ok(Observation {
            own_row,
            term,
            holder,
        })
    }

    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        let keys = self.keys(&request.group);
        let term: i64 = self
            .run(
                "takeover",
                &request.group,
                &lua::TAKE_OVER_SCRIPT,
                &[&keys.token],
                &[
                    request.member.as_str(),
                    &request.incarnation.0.to_string(),
                    &request.observed_term.0.to_string(),
                    &micros(request.liveness_timeout),
                    &request
                        .observed_renewal
                        .map_or(String::new(), |r| r.to_string()),
                ],
            )
            .await?;
        Ok(if term > 0 {
            TakeoverOutcome::Won(Term(term as u64))
        } else {
            TakeoverOutcome::Lost
        })
    }

    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        let keys = self.keys(&fence.group);
        let _: i64 = self
            .run(
                "release",
                &fence.group,
                &lua::RELEASE_SCRIPT,
                &[&keys.token, &keys.members],
                &[
                    fence.member.as_str(),
                    &fence.incarnation.0.to_string(),
                    &fence.term.0.to_string(),
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
        let keys = self.keys(group);
        let _: i64 = self
            .run(
                "leave",
                group,
                &lua::LEAVE_SCRIPT,
                &[&keys.members],
                &[member.as_str(), &incarnation.0.to_string()],
            )
            .await?;
        Ok(())
    }

    /// One `HGETALL` of the group's ledger hash (atomic; it holds the server for about a
    /// millisecond per 10,000 records); the rows with work left are kept. (A hash has no
    /// index by state: the settled rows cross the network at each takeover, and are dropped
    /// here.)
    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        let keys = self.keys(group);
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&keys.ledger);
        let pairs: Vec<(String, String)> = self.read("load_ledger", group, cmd).await?;
        let mut records = Vec::new();
        for (field, value) in &pairs {
            let record = keys::parse_record(field, value)
                .ok_or_else(|| malformed("load_ledger", group.as_str(), "ledger record"))?;
            if !matches!(
                record.state,
                coord_core::LedgerState::Done | coord_core::LedgerState::Error
            ) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// `HMGET` of the versions' fields, in chunks of [`CHUNK_VERSIONS`].
    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        let keys = self.keys(group);
        let mut records = Vec::new();
        for chunk in versions.chunks(CHUNK_VERSIONS) {
            let fields: Vec<String> = chunk.iter().map(keys::version_field).collect();
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&keys.ledger).arg(&fields);
            let values: Vec<Option<String>> = self.read("lookup_ledger", group, cmd).await?;
            for (field, value) in fields.iter().zip(values) {
                let Some(value) = value else { continue };
                let record = keys::parse_record(field, &value)
                    .ok_or_else(|| malformed("lookup_ledger", group.as_str(), "ledger record"))?;
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.version.cmp(&b.version));
        records.dedup_by(|a, b| a.version == b.version);
        Ok(records)
    }

    /// The Redis store keeps no write times: it answers an empty page, and its settled rows
    /// stay until an operator forgets them (`ftp-listener ledger forget`).
    async fn stale_settled(
        &self,
        _group: &GroupId,
        _older_than: Duration,
        _after: Option<&coord_core::StaleRow>,
        _limit: usize,
    ) -> Result<Vec<coord_core::StaleRow>, StoreError> {
        Ok(Vec::new())
    }

    /// Cut into calls of at most [`CHUNK_VERSIONS`] versions, each fenced and atomic, as the
    /// SQL stores cut theirs into statements: when the fence fails at a later chunk, the
    /// earlier chunks stay claimed (claimed under a fence that held then; a successor
    /// redelivers them) and the error is [`StoreError::Fenced`].
    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        let keys = self.keys(&fence.group);
        let incarnation = fence.incarnation.0.to_string();
        let term = fence.term.0.to_string();
        let mut outcomes = Vec::with_capacity(versions.len());
        // An empty claim still checks the fence, in one call.
        let chunks: Vec<&[FileVersion]> = if versions.is_empty() {
            vec![&[]]
        } else {
            versions.chunks(CHUNK_VERSIONS).collect()
        };
        for chunk in chunks {
            let fields: Vec<String> = chunk.iter().map(keys::version_field).collect();
            let mut args: Vec<&str> = Vec::with_capacity(3 + fields.len());
            args.extend([fence.member.as_str(), &incarnation, &term]);
            args.extend(fields.iter().map(String::as_str));
            let reply: Vec<i64> = self
                .run(
                    "claim",
                    &fence.group,
                    &lua::CLAIM_SCRIPT,
                    &[&keys.token, &keys.ledger],
                    &args,
                )
                .await?;
            let Some((&status, answers)) = reply.split_first() else {
                return Err(malformed("claim", fence.group.as_str(), "reply"));
            };
            if status != 1 {
                return Err(StoreError::fenced("claim", fence));
            }
            if answers.len() != chunk.len() {
                return Err(malformed("claim", fence.group.as_str(), "answer count"));
            }
            outcomes.extend(answers.iter().map(|&n| match n {
                0 => ClaimOutcome::Settled,
                n => ClaimOutcome::Claimed {
                    attempt: n.unsigned_abs().min(u32::MAX as u64) as u32,
                    redelivery: n < 0,
                },
            }));
        }
        Ok(outcomes)
    }

    /// All or nothing within one call of at most [`CHUNK_VERSIONS`] updates (a typical batch
    /// is one call); a later chunk's failure is returned while earlier chunks stay applied,
    /// as on the SQL stores. Updates apply in order, so a set after a forget writes a fresh
    /// row with attempts 0.
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        let keys = self.keys(&fence.group);
        let incarnation = fence.incarnation.0.to_string();
        let term = fence.term.0.to_string();
        let chunks: Vec<&[LedgerUpdate]> = if updates.is_empty() {
            vec![&[]]
        } else {
            updates.chunks(CHUNK_VERSIONS).collect()
        };
        for chunk in chunks {
            let mut owned: Vec<String> = Vec::with_capacity(3 * chunk.len());
            for update in chunk {
                match update {
                    LedgerUpdate::Set {
                        version,
                        state,
                        error,
                        detail,
                    } => {
                        owned.push(keys::state_letter(*state).to_owned());
                        owned.push(keys::version_field(version));
                        owned.push(keys::error_suffix(keys::suffix_of(
                            *state,
                            error.as_deref(),
                            detail.as_deref(),
                        )));
                    }
                    LedgerUpdate::Forget(version) => {
                        owned.push("x".to_owned());
                        owned.push(keys::version_field(version));
                        owned.push(String::new());
                    }
                }
            }
            let mut args: Vec<&str> = Vec::with_capacity(3 + owned.len());
            args.extend([fence.member.as_str(), &incarnation, &term]);
            args.extend(owned.iter().map(String::as_str));
            let held: i64 = self
                .run(
                    "record",
                    &fence.group,
                    &lua::RECORD_SCRIPT,
                    &[&keys.token, &keys.ledger],
                    &args,
                )
                .await?;
            if held != 1 {
                return Err(StoreError::fenced("record", fence));
            }
        }
        Ok(())
    }

    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        let keys = self.keys(group);
        let reply: Vec<String> = self
            .run(
                "observe",
                group,
                &lua::OBSERVE_SCRIPT,
                &[&keys.token, &keys.members],
                &[],
            )
            .await?;
        if reply.len() < 6 {
            return Err(malformed("observe", group.as_str(), "reply"));
        }
        let now = parse_now("observe", group, &reply[5])?;
        let (term, holder) = holder_of("observe", group, &reply[..5], now)?;
        Ok(GroupView {
            term,
            holder,
            members: members_of("observe", group, &reply[6..], now)?,
        })
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        let keys = self.keys(group);
        let reply: Vec<String> = self
            .run(
                "members",
                group,
                &lua::MEMBERS_SCRIPT,
                &[&keys.members],
                &[],
            )
            .await?;
        let Some((now, pairs)) = reply.split_first() else {
            return Err(malformed("members", group.as_str(), "reply"));
        };
        let now = parse_now("members", group, now)?;
        members_of("members", group, pairs, now)
    }
}
