//! `ftp-listener ledger list|show` and `status --json`: what an operator reads to answer
//! "what happened to x.csv?". Read-only: one `load_ledger` or `observe` per listener, never a
//! write, so it is safe while a leader runs.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use coord_core::{CoordinationStore, GroupId, LedgerRecord, LedgerState};
use listener::{Config, Placement, Registry, connect_store};
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
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Every version of one path: state, attempts, term, last error.
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
    })
}

pub(crate) async fn ledger(
    configs: Vec<Config>,
    command: LedgerCommand,
    registry: &Registry,
) -> anyhow::Result<()> {
    let (only, state, glob, path, json) = match &command {
        LedgerCommand::List {
            listener,
            state,
            path,
            json,
        } => (listener.clone(), state.clone(), path.clone(), None, *json),
        LedgerCommand::Show { path, json } => (None, None, None, Some(path.clone()), *json),
    };
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
        let mut rows = store.load_ledger(&group).await?;
        rows.sort_by(|a, b| a.version.cmp(&b.version));
        for r in rows {
            if state.as_deref().is_some_and(|s| s != state_name(r.state)) {
                continue;
            }
            if glob.as_ref().is_some_and(|g| !g.matches(&r.version.path)) {
                continue;
            }
            if let Some(p) = &path {
                let name = r.version.path.rsplit('/').next().unwrap_or_default();
                if r.version.path != *p && name != p {
                    continue;
                }
            }
            found += 1;
            if json {
                println!("{}", row_json(&config.name, &r));
            } else {
                println!(
                    "{:<16} {:<8} {:>8} {:>6} {:>12}  {}{}",
                    config.name,
                    state_name(r.state),
                    r.attempts,
                    r.term.0,
                    r.version.size,
                    r.version.path,
                    r.last_error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                );
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

/// `status --json`: one object, the listeners with their groups as the database sees them.
pub(crate) async fn status_json(configs: Vec<Config>, registry: &Registry) -> anyhow::Result<()> {
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
    println!("{}", json!({ "listeners": listeners }));
    Ok(())
}
