//! Issue 12 item 4: a command handler and everything it starts die with the listener: when the
//! listener is killed with SIGKILL, when `shutdown_grace` runs out, when the lease ends under
//! a running handler, and at the handler's timeout. The handler is `sh -c 'sleep 100 & …;
//! wait'`, which records its process group; the tests then look in /proc for any process left
//! in that group.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Proc, Site, wait_for};
use coord_core::{
    ElectionConfig, Fence, FileVersion, GroupId, Incarnation, MemberId, Role, Term, Timing,
};
use listener::{
    Config, Delivery, ElectionDriver, Handler, LocalFs, Metrics, Poller, poll_settings,
};
use testkit::MemStore;

const LIMIT: Duration = Duration::from_secs(15);

/// A shell script that starts a grandchild, records its process group in `pgid` (written
/// aside and renamed in), and waits.
fn sleeper(pgid: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "sleep 100 & ps_grp=$(cut -d' ' -f5 /proc/$$/stat); echo \"$ps_grp $$ $!\" > '{0}.tmp'; \
             mv '{0}.tmp' '{0}'; wait",
            pgid.display()
        ),
        "sleeper".into(),
    ]
}

/// The fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, ...
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_string).collect())
}

/// The live (not zombie) processes of process group `pgid`.
fn group_members(pgid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(f) = stat_fields(&pid)
            && f[0] != "Z"
            && f[2] == pgid.to_string()
        {
            out.push(pid);
        }
    }
    out
}

/// What the handler recorded: its process group, its shell's pid, the grandchild's pid.
#[derive(Debug, Clone, Copy)]
struct Started {
    pgid: u32,
    shell: u32,
    grandchild: u32,
}

/// Waits for the handler's record, and checks that it runs in a process group of its own
/// (not the group of this test, nor of the listener `not_in`).
fn wait_started(pgid: &Path, not_in: Option<u32>) -> Started {
    let line = wait_for(LIMIT, || std::fs::read_to_string(pgid).ok()).expect("handler started");
    let v: Vec<u32> = line
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let started = Started {
        pgid: v[0],
        shell: v[1],
        grandchild: v[2],
    };
    let ours: u32 = stat_fields("self").unwrap()[2].parse().unwrap();
    assert_ne!(
        started.pgid, ours,
        "the handler runs in the test's process group"
    );
    if let Some(listener) = not_in {
        assert_ne!(
            started.pgid, listener,
            "the handler runs in the listener's group"
        );
    }
    let members = group_members(started.pgid);
    assert!(members.contains(&started.shell.to_string()), "{members:?}");
    assert!(
        members.contains(&started.grandchild.to_string()),
        "{members:?}"
    );
    started
}

fn alive(pid: u32) -> bool {
    stat_fields(&pid.to_string()).is_some_and(|f| f[0] != "Z")
}

/// Waits until no process is left in the handler's group (and the grandchild is gone).
fn assert_group_dies(s: Started) {
    let gone = wait_for(LIMIT, || {
        (group_members(s.pgid).is_empty() && !alive(s.grandchild) && !alive(s.shell)).then_some(())
    });
    assert!(
        gone.is_some(),
        "processes left in the handler's group {}: {:?} (grandchild {} alive: {})",
        s.pgid,
        group_members(s.pgid),
        s.grandchild,
        alive(s.grandchild)
    );
}

/// The config of `common::Site::config`, with top-level `extra` keys and a handler.
fn site_config(site: &Site, top: &str, command: &[String]) -> std::path::PathBuf {
    let command: Vec<String> = command.iter().map(|a| format!("'''{a}'''")).collect();
    let body = format!(
        r#"
member_id = "solo"
group = "e2e"
poll_interval = "100ms"
{top}
[coordination]
heartbeat_interval = "100ms"
liveness_timeout = "500ms"
[coordination.sqlite]
path = "ftp-listener.db"
[source]
path = "inbox"
[http]
bind = "127.0.0.1:0"
[handler]
kind = "command"
dir = "{staging}"
command = [{command}]
"#,
        staging = site.path("staging").display(),
        command = command.join(", ")
    );
    let path = site.path("a.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn own_group(proc: &Proc) -> u32 {
    stat_fields(&proc.pid().to_string()).unwrap()[2]
        .parse()
        .unwrap()
}

#[test]
fn a_listener_killed_with_sigkill_leaves_no_handler_process() {
    let site = Site::new();
    let record = site.path("pgid");
    let config = site_config(&site, "", &sleeper(&record));
    let mut proc = site.spawn(&config);
    site.drop_file("a.txt", b"a");
    let started = wait_started(&record, Some(own_group(&proc)));
    proc.signal("KILL");
    assert!(proc.wait_exit(LIMIT).is_some());
    assert_group_dies(started);
}

#[test]
fn shutdown_grace_expiry_kills_the_grandchildren() {
    let site = Site::new();
    let record = site.path("pgid");
    let config = site_config(&site, "shutdown_grace = \"300ms\"", &sleeper(&record));
    let mut proc = site.spawn(&config);
    site.drop_file("a.txt", b"a");
    let started = wait_started(&record, Some(own_group(&proc)));
    proc.signal("TERM");
    assert!(proc.wait_exit(LIMIT).is_some(), "{}", proc.output());
    assert!(
        proc.output()
            .contains("did not finish within shutdown_grace"),
        "{}",
        proc.output()
    );
    assert_group_dies(started);
}

fn delivery(path: &Path, size: u64) -> Delivery {
    Delivery {
        version: FileVersion {
            path: path.display().to_string(),
            size,
            mtime_ms: 1,
        },
        relative: path.file_name().unwrap().to_string_lossy().into_owned(),
        fence: Fence {
            group: GroupId::new("g").unwrap(),
            member: MemberId::new("m1").unwrap(),
            incarnation: Incarnation(1),
            term: Term(1),
        },
        attempt: 1,
        redelivery: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_timeout_kills_the_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"a").unwrap();
    let record = dir.path().join("pgid");
    let handler = Handler::Command {
        command: sleeper(&record),
        dir: dir.path().join("staging"),
        timeout: Duration::from_millis(1500),
    };
    let run = tokio::spawn(async move {
        let outcome = handler
            .handle(&LocalFs::default(), &delivery(&file, 1))
            .await;
        outcome.unwrap_err()
    });
    let started = {
        let record = record.clone();
        tokio::task::spawn_blocking(move || wait_started(&record, None))
            .await
            .unwrap()
    };
    let err = run.await.unwrap();
    assert!(err.contains("killed after"), "{err}");
    tokio::task::spawn_blocking(move || assert_group_dies(started))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_kills_the_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.txt"), b"a").unwrap();
    let record = dir.path().join("pgid");

    let store = MemStore::default();
    let metrics = Arc::new(Metrics::default());
    let timing = Timing::from_liveness(Duration::from_millis(50), Duration::from_millis(300));
    let election = ElectionConfig::new("m1", "g", timing).unwrap();
    let driver = ElectionDriver::new(election, Arc::new(store.clone()), metrics.clone());
    let mut status = driver.subscribe();
    // The folders inside the test's own directory (the defaults are relative to the working
    // directory, which tests share).
    let config = Config {
        poll_interval: Duration::from_millis(20),
        done_dir: Some(inbox.join(".done").display().to_string()),
        error_dir: Some(inbox.join(".error").display().to_string()),
        ..Config::default()
    };
    let settings = poll_settings(&config, inbox.display().to_string()).unwrap();
    let poller = Poller::new(
        Arc::new(store.clone()),
        Arc::new(LocalFs::default()),
        driver.gate(),
        driver.subscribe(),
        settings,
        Handler::Command {
            command: sleeper(&record),
            dir: dir.path().join("staging"),
            timeout: Duration::from_secs(3600),
        },
        metrics.clone(),
    );
    let election_task = tokio::spawn(driver.run());
    let poll_task = tokio::spawn(poller.run());
    let started = {
        let record = record.clone();
        tokio::task::spawn_blocking(move || wait_started(&record, None))
    };
    let started = started.await.unwrap();
    // The store goes away: the leader steps down within its renew deadline and the poll
    // loop cancels the handler in flight.
    store.set_unavailable(true);
    tokio::time::timeout(LIMIT, status.wait_for(|s| s.role != Role::Leader))
        .await
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(move || assert_group_dies(started))
        .await
        .unwrap();
    poll_task.abort();
    election_task.abort();
}
