//! `ftp-listener ledger list|show` and `status --json`: what an operator reads to answer
//! "what happened to x.csv?". Read-only: one read of the ledger's rows or one `observe` per listener (plus,
//! for `show`, one history read per version and, for `--since`, one read of the rows' times),
//! never a write, so it is safe while a leader runs.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use coord_core::{
    CoordinationStore, FileVersion, GroupId, LedgerEvent, LedgerHistory, LedgerRecord, LedgerState,
    Redrive, RemoteFs, RenameMode,
};
use listener::{Config, Placement, Registry, connect_store, open_source};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// The ledger's rows: every version the listeners know, newest state first.
    List {
        /// Only this listener.
        #[arg(long)]
        listener: Option<String>,
        /// Only this state: claimed, handled, done, failed, error.
        #[arg(long)]
        state: Option<String>,
        /// Only paths matching this glob (`*/invoices/*.csv`).
        #[arg(long)]
        path: Option<String>,
        /// Only rows written within this long (`30m`, `1h`, `7d`), by the database's clock.
        #[arg(long)]
        since: Option<String>,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Send versions through again: the leader forgets their rows (at its next poll), then
    /// the file is moved back from the error folder, and the leader dispatches it anew.
    Retry {
        /// The path as listed (or its file name); or use --state.
        path: Option<String>,
        /// Every version in this state (e.g. `error`).
        #[arg(long)]
        state: Option<String>,
        /// Only this listener.
        #[arg(long)]
        listener: Option<String>,
    },
    /// Forget versions of a path (the leader deletes their rows; nothing is moved): a file
    /// listed again is new work.
    Forget {
        /// The path as listed (or its file name).
        path: String,
        /// Only this listener.
        #[arg(long)]
        listener: Option<String>,
    },
    /// Every version of one path: state, attempts, term, last error, and its history (each
    /// claim and recorded state: when, term, attempt, error).
    Show {
        /// The path as listed (or its file name).
        path: String,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
}

fn state_name(state: LedgerState) -> &'static str {
    match state {
        LedgerState::Claimed => "claimed",
        LedgerState::Handled => "handled",
        LedgerState::Done => "done",
        LedgerState::Failed => "failed",
        LedgerState::Error => "error",
    }
}

fn row_json(listener: &str, r: &LedgerRecord) -> serde_json::Value {
    json!({
        "listener": listener,
        "path": r.version.path,
        "size": r.version.size,
        "mtime_ms": r.version.mtime_ms,
        "state": state_name(r.state),
        "attempts": r.attempts,
        "term": r.term.0,
        "last_error": r.last_error,
        "detail": r.detail,
    })
}

pub(crate) async fn ledger(
    configs: Vec<Config>,
    command: LedgerCommand,
    registry: &Registry,
) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Retry {
            path,
            state,
            listener,
        } => {
            if path.is_none() && state.is_none() {
                anyhow::bail!("ledger retry: name a PATH or --state STATE");
            }
            return redrive(configs, path, state, listener, Redrive::Retry, registry).await;
        }
        LedgerCommand::Forget { path, listener } => {
            return redrive(
                configs,
                Some(path),
                None,
                listener,
                Redrive::Forget,
                registry,
            )
            .await;
        }
        _ => {}
    }
    let (only, state, glob, path, since, json) = match &command {
        LedgerCommand::List {
            listener,
            state,
            path,
            since,
            json,
        } => (
            listener.clone(),
            state.clone(),
            path.clone(),
            None,
            since.clone(),
            *json,
        ),
        LedgerCommand::Show { path, json } => (None, None, None, Some(path.clone()), None, *json),
        LedgerCommand::Retry { .. } | LedgerCommand::Forget { .. } => unreachable!("above"),
    };
    let show = path.is_some();
    let since = since
        .map(|s| listener::parse_duration(&s).map_err(|e| anyhow::anyhow!("--since: {e}")))
        .transpose()?;
    if let Some(s) = &state
        && !["claimed", "handled", "done", "failed", "error"].contains(&s.as_str())
    {
        anyhow::bail!("--state `{s}`: one of claimed, handled, done, failed, error");
    }
    let glob = glob
        .map(|g| glob::Pattern::new(&g).with_context(|| format!("--path `{g}`")))
        .transpose()?;
    if let Some(name) = &only
        && !configs.iter().any(|c| &c.name == name)
    {
        let known: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "--listener `{name}`: no such listener (known: {})",
            known.join(", ")
        );
    }
    let mut found = 0usize;
    if !json {
        println!(
            "{:<16} {:<8} {:>8} {:>6} {:>12}  PATH",
            "LISTENER", "STATE", "ATTEMPTS", "TERM", "SIZE"
        );
    }
    for config in &configs {
        if only.as_ref().is_some_and(|n| *n != config.name) {
            continue;
        }
        let store = connect_store(config, registry, false).await?;
        let group = GroupId::new(config.group.clone())?;
        let mut rows = history_of(&store, &config.name)?.rows(&group).await?;
        rows.sort_by(|a, b| a.version.cmp(&b.version));
        let updated: Option<HashMap<FileVersion, i64>> = match since {
            Some(within) => Some(
                history_of(&store, &config.name)?
                    .updated_within(&group, within)
                    .await?
                    .into_iter()
                    .collect(),
            ),
            None => None,
        };
        for r in rows {
            if !matches(&r, path.as_deref(), state.as_deref())
                || glob.as_ref().is_some_and(|g| !g.matches(&r.version.path))
            {
                continue;
            }
            let updated_at = match &updated {
                Some(updated) => match updated.get(&r.version) {
                    Some(at) => Some(*at),
                    None => continue,
                },
                None => None,
            };
            found += 1;
            let history = if show {
                Some(match store.history() {
                    Some(h) => Some(h.history(&group, &r.version).await?),
                    None => None,
                })
            } else {
                None
            };
            if json {
                let mut row = row_json(&config.name, &r);
                if let Some(at) = updated_at {
                    row["updated_at"] = json!(rfc3339(at));
                }
                if let Some(history) = &history {
                    row["history"] = json!(
                        history
                            .as_ref()
                            .map(|events| { events.iter().map(event_json).collect::<Vec<_>>() })
                    );
                }
                println!("{row}");
            } else {
                println!(
                    "{:<16} {:<8} {:>8} {:>6} {:>12}  {}{}{}",
                    config.name,
                    state_name(r.state),
                    r.attempts,
                    r.term.0,
                    r.version.size,
                    r.version.path,
                    r.last_error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default(),
                    r.detail
                        .as_deref()
                        .map(|d| format!("  [{d}]"))
                        .unwrap_or_default()
                );
                if let Some(history) = &history {
                    print_history(history.as_deref());
                }
            }
        }
    }
    if found == 0 && !json {
        match &path {
            Some(p) => println!(
                "(no version of `{p}` in the ledger: never listed as finished, or forgotten \
                 after the retention period)"
            ),
            None => println!("(no rows)"),
        }
    }
    Ok(())
}

/// The store's history, or an error naming the listener when its store keeps none.
fn history_of<'s>(
    store: &'s listener::SharedStore,
    listener: &str,
) -> anyhow::Result<&'s std::sync::Arc<dyn LedgerHistory>> {
    store.history().ok_or_else(|| {
        anyhow::anyhow!(
            "listener `{listener}`: its store ({}) keeps no ledger times or history",
            store.name()
        )
    })
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds).
fn rfc3339(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

fn event_json(e: &LedgerEvent) -> serde_json::Value {
    json!({
        "at": rfc3339(e.at_unix_ms),
        "term": e.term.0,
        "state": e.state,
        "attempts": e.attempts,
        "detail": e.detail,
    })
}

/// The history under a version's line, oldest first.
fn print_history(history: Option<&[LedgerEvent]>) {
    match history {
        None => println!("    (this store keeps no history)"),
        Some([]) => println!("    (no history: written before history was kept)"),
        Some(events) => {
            for e in events {
                println!(
                    "    {}  term {:<4} {:<8} attempt {}{}",
                    rfc3339(e.at_unix_ms),
                    e.term.0,
                    e.state,
                    e.attempts,
                    e.detail
                        .as_deref()
                        .map(|d| format!("  {d}"))
                        .unwrap_or_default()
                );
            }
        }
    }
}

/// `status --json`: one object, the listeners with their groups as the database sees them.
pub(crate) async fn status_json(
    configs: Vec<Config>,
    cluster: Option<&crate::ClusterView>,
    registry: &Registry,
) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for config in configs {
        let election = config.election()?;
        let store = connect_store(&config, registry, false).await?;
        let view = store.observe(&election.group).await?;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let members: Vec<serde_json::Value> = view
            .members
            .iter()
            .map(|m| {
                let leader = view
                    .holder
                    .as_ref()
                    .is_some_and(|h| h.member == m.member && h.incarnation == m.incarnation);
                let role = if leader {
                    "leader"
                } else if m.heartbeat_age > election.timing.liveness_timeout {
                    "stale"
                } else {
                    "standby"
                };
                json!({
                    "member": m.member.as_str(),
                    "incarnation": m.incarnation.to_string(),
                    "heartbeat_age_ms": ms(m.heartbeat_age),
                    "role": role,
                })
            })
            .collect();
        let placement = match &config.placement {
            Placement::Leader => "leader".to_string(),
            Placement::Every => "every".to_string(),
            Placement::Member(id) => format!("member:{id}"),
        };
        listeners.push(json!({
            "name": config.name,
            "group": election.group.as_str(),
            "placement": placement,
            "term": view.term.0,
            "holder": view.holder.as_ref().map(|h| json!({
                "member": h.member.as_str(),
                "incarnation": h.incarnation.to_string(),
                "lease_age_ms": ms(h.lease_age),
            })),
            "members": members,
        }));
    }
    let mut out = json!({ "listeners": listeners });
    if let Some(view) = cluster {
        out["cluster"] = cluster_json(view);
    }
    println!("{out}");
    Ok(())
}

/// The cluster's newest version and every member's apply status.
fn cluster_json(view: &crate::ClusterView) -> serde_json::Value {
    let members: Vec<serde_json::Value> = view
        .members
        .iter()
        .map(|m| {
            json!({
                "member": m.report.member,
                "applied_version": m.report.applied_version,
                "failed_version": m.report.failed_version,
                "error": m.report.error,
                "listeners": m.report.listeners,
                "reported_at": rfc3339(m.updated_at_ms),
                "reported_age_ms": m.age_ms,
            })
        })
        .collect();
    let unloadable: Vec<serde_json::Value> = view
        .unloadable
        .iter()
        .map(|(name, error)| json!({ "listener": name, "error": error }))
        .collect();
    json!({
        "name": view.name,
        "version": view.newest.version,
        "pushed_by": view.newest.pushed_by,
        "pushed_at": rfc3339(view.newest.pushed_at_ms),
        "members": members,
        "not_loaded_here": unloadable,
    })
}

fn matches(r: &LedgerRecord, path: Option<&str>, state: Option<&str>) -> bool {
    let name = r.version.path.rsplit('/').next().unwrap_or_default();
    path.is_none_or(|p| r.version.path == p || name == p)
        && state.is_none_or(|s| s == state_name(r.state))
}

/// `ledger retry` and `ledger forget`: requests to the leader, then (retry) the file back
/// from the error folder once the leader has taken them. Each change is printed.
async fn redrive(
    configs: Vec<Config>,
    path: Option<String>,
    state: Option<String>,
    only: Option<String>,
    action: Redrive,
    registry: &Registry,
) -> anyhow::Result<()> {
    let mut asked = 0usize;
    for config in &configs {
        if only.as_ref().is_some_and(|n| *n != config.name) {
            continue;
        }
        let store = connect_store(config, registry, false).await?;
        let Some(requests) = store.request_store() else {
            anyhow::bail!(
                "the {} store does not take operators' requests",
                store.name()
            );
        };
        let group = GroupId::new(config.group.clone())?;
        let rows: Vec<LedgerRecord> = history_of(&store, &config.name)?
            .rows(&group)
            .await?
            .into_iter()
            .filter(|r| matches(r, path.as_deref(), state.as_deref()))
            .collect();
        for r in &rows {
            requests.request(&group, &r.version, action).await?;
            println!(
                "{}: asked the leader to {} {} (was {}, {} attempts)",
                config.name,
                action.as_str(),
                r.version.path,
                state_name(r.state),
                r.attempts
            );
        }
        if rows.is_empty() {
            continue;
        }
        asked += rows.len();
        // The leader takes requests with its next listing.
        let limit = config.poll_interval * 3 + Duration::from_secs(10);
        let start = std::time::Instant::now();
        loop {
            let pending = requests.pending(&group).await?;
            if !rows
                .iter()
                .any(|r| pending.iter().any(|(v, _)| *v == r.version))
            {
                break;
            }
            if start.elapsed() > limit {
                anyhow::bail!(
                    "{}: no leader took the request within {limit:?} (is a member running?); \
                     it stays queued and is applied when one does",
                    config.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("{}: the leader forgot {} row(s)", config.name, rows.len());
        if action != Redrive::Retry {
            continue;
        }
        let (source, _) = open_source(config, registry).await?;
        // The member's own spelling of the folder (absolute for a local source).
        let error_dir = listener::poll_settings(config, config.source.path.clone())?.error_dir;
        for r in rows.iter().filter(|r| r.state == LedgerState::Error) {
            let name = r.version.path.rsplit('/').next().unwrap_or_default();
            let parked = coord_core::join_remote(&error_dir, name);
            match source
                .rename(&parked, &r.version.path, RenameMode::NoOverwrite)
                .await
            {
                Ok(()) => println!(
                    "{}: moved {parked} back to {} (dispatched at the next polls)",
                    config.name, r.version.path
                ),
                Err(e) => println!(
                    "{}: {parked} not moved back ({e}); move it into the folder yourself",
                    config.name
                ),
            }
        }
    }
    if asked == 0 {
        anyhow::bail!("no ledger row matches");
    }
    Ok(())
}
