//! End-to-end chaos test with files flowing: three `ftp-listener` members of one group on
//! PostgreSQL or MariaDB (heartbeat 200 ms, liveness 1 s, renew deadline 666 ms), one source,
//! `max_in_flight = 4`, and a command handler that takes 20–50 ms and logs its start and end
//! (member, attempt, redelivery flag, term, wall-clock stamps in ns, size of the copy it got).
//!
//! The source is a local directory, or a directory served by a real server (see
//! `scripts/setup/30-ftp.sh` and `40-sftp.sh`): vsftpd on 127.0.0.1:2121 (FTP, LIST only: no
//! MLSD, so the listing is parsed from `LIST` lines) as user `hatest`, or OpenSSH's
//! internal-sftp on 127.0.0.1:2222 as user `sftptest` (key auth, pinned known_hosts). For a
//! remote source the test writes the files on the server's disk (as root), the handler gets the
//! copy the listener downloaded over the protocol, and the done folder is on the server.
//!
//! Files are written under a temporary name in the parent of the watched folder (outside it,
//! so never listed) and renamed into it, so no listing ever sees a partial file; the handler
//! logs the size of the downloaded copy, and the test checks it against what was written (a
//! partial file dispatched would show as a short copy).
//!
//! Each command checks that its downloaded copy is at `FTPL_LOCAL_PATH` with the size written
//! ("missing copies" and "short copies" fail the test). This found a listener bug, fixed since:
//! the command handler's staging folder was `<term>-<attempt>-<mtime_ms>`, shared by every file
//! of one mtime handled at once, and removed after each delivery, so a sibling's copy vanished.
//!
//! `CHAOS_FILES` files (default 400, 200 for a remote source) arrive in bursts of four every
//! 200 ms while the leader of
//! the moment is, in turn (each time while one of its handlers runs):
//! 1. killed with kill -9 (then restarted),
//! 2. paused with SIGSTOP until another member leads and has dispatched (then SIGCONT),
//! 3. cut off from the database (each member reaches it through its own TCP proxy; restored
//!    once another member leads),
//! 4. killed with kill -9 again (then restarted).
//!
//! Then, once every file has left the source, it checks: every file is `done` exactly once in
//! the ledger; every invocation after the first of a file is a redelivery with a higher
//! attempt; no two invocations of a file overlap in time (an invocation without an end line
//! ends when its process was killed or its handlers were cancelled); every file is in the done
//! folder exactly once, under its own name; none is left in the source. A table per database
//! is printed. `CHAOS_SEED` replays the handler durations and the event gates of a run.
//!
//! `CHAOS_HANDLER_MS=<min>-<max>` changes the handler's duration (default 20-50). With
//! handlers longer than the liveness timeout (say `CHAOS_FILES=60 CHAOS_HANDLER_MS=1500-2500`)
//! the overlap check fails after kill -9 and SIGSTOP: the handler's child process outlives
//! (kill -9) or keeps running under (SIGSTOP) the old leader while the new one redelivers.
//!
//! Every wait is on an event (a log line, a `/metrics` value, a file) with a deadline; the
//! file bursts are paced by a clock, not used as synchronisation.

#![cfg(any(feature = "postgres", feature = "mysql"))]

mod chaos_support;
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chaos_support::{Db, Group, LIMIT, LOCAL_SOURCE, Member, Scrape};
use common::wait_for;
use coord_core::{GroupId, LedgerState};

const MEMBERS: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Files per burst, and the pause between bursts.
const BURST: usize = 4;
const BURST_EVERY: Duration = Duration::from_millis(200);

/// The handler: a start line, a sleep of the seconds on the file's first line, an end line.
/// Each line also has the pid of the listener that started it (the parent of the guard shell,
/// `$PPID`: 1 or a subreaper once that listener is dead), the size of the local copy it got
/// (`missing` if there is none) and its path.
const THEN: &str = r#"read -r _ _ _ listener _ < "/proc/$PPID/stat"
size=$(wc -c < "$FTPL_LOCAL_PATH" 2>/dev/null | tr -d ' ')
[ -n "$size" ] || size=missing
echo "START $(basename "$FTPL_PATH") $FTPL_MEMBER $FTPL_ATTEMPT $FTPL_REDELIVERY $FTPL_TERM $(date +%s%N) $$ $listener $size $FTPL_LOCAL_PATH" >> "{dir}/events.log"
[ "$size" = missing ] || sleep "$(head -n 1 "$FTPL_LOCAL_PATH")"
echo "END $(basename "$FTPL_PATH") $FTPL_MEMBER $FTPL_ATTEMPT $FTPL_REDELIVERY $FTPL_TERM $(date +%s%N) $$ $listener $size $FTPL_LOCAL_PATH" >> "{dir}/events.log""#;

/// The content of file `i`: the handler's duration in seconds on the first line, then a
/// padding of 256 to 4351 bytes (so a short copy is visible), then `end`.
fn body(i: usize, ms: u64) -> String {
    let pad = 256 + (i * 7919) % 4096;
    format!("{:.3}\n{}\nend\n", ms as f64 / 1000.0, "x".repeat(pad))
}

/// Where the files arrive.
#[derive(Debug, Clone, Copy)]
enum SourceKind {
    /// The working folder's `inbox/`.
    Local,
    /// A directory served by the FTP server `server` (`vsftpd` or `proftpd`, as named under
    /// `$TEST_ROOT/ftp`) on 127.0.0.1:`port`, as the chrooted user `hatest`.
    Ftp { server: &'static str, port: u16 },
    /// A directory in the home of `sftptest` on OpenSSH (127.0.0.1:2222).
    Sftp,
}

/// A source as this test sees it on disk and as the members reach it.
struct Source {
    /// `local`, `vsftpd`, `proftpd` or `sftp` (named in the output).
    name: &'static str,
    /// The `[source]` table of the members' configs.
    toml: String,
    /// The folder on the server's disk that holds the watched `inbox/` (the files are written
    /// there, then renamed into `inbox/`); `None` for a local source (the working folder).
    remote: Option<PathBuf>,
}

fn test_root() -> PathBuf {
    PathBuf::from(std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into()))
}

/// Makes `dir` and `dir/inbox`, owned by `user` (the server's user moves files out of
/// `inbox/` and makes `inbox/.done`).
fn make_remote_dir(dir: &Path, user: &str) {
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{user}:{user}"), dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success(), "chown {user} {}", dir.display());
}

impl Source {
    /// Prepares the source: for a remote one, a fresh directory on the server.
    fn new(kind: SourceKind, db: Db) -> Source {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        // `t-` directories under the FTP roots are swept by scripts/setup/30-ftp.sh.
        let name = format!("t-chaos-{}-{}-{nanos}", db.backend, std::process::id());
        match kind {
            SourceKind::Local => Source {
                name: "local",
                toml: LOCAL_SOURCE.to_string(),
                remote: None,
            },
            SourceKind::Ftp { server, port } => {
                let root = test_root().join("ftp");
                let dir = root.join(server).join(&name);
                make_remote_dir(&dir, "hatest");
                Source {
                    name: server,
                    // The path as the chrooted user sees it.
                    toml: format!(
                        r#"[source]
kind = "ftp"
path = "/{name}/inbox"
[source.ftp]
host = "127.0.0.1"
port = {port}
user = "hatest"
password_file = "{password}""#,
                        password = root.join("password").display(),
                    ),
                    remote: Some(dir),
                }
            }
            SourceKind::Sftp => {
                let root = test_root().join("sftp");
                let dir = root.join("home").join(&name);
                make_remote_dir(&dir, "sftptest");
                Source {
                    name: "sftp",
                    toml: format!(
                        r#"[source]
kind = "sftp"
path = "{inbox}"
[source.sftp]
host = "127.0.0.1"
port = 2222
user = "sftptest"
known_hosts = "{known_hosts}"
[source.sftp.auth]
method = "key"
key_file = "{key}""#,
                        inbox = dir.join("inbox").display(),
                        known_hosts = root.join("known_hosts").display(),
                        key = root.join("client/id_ed25519").display(),
                    ),
                    remote: Some(dir),
                }
            }
        }
    }

    /// The folder holding `inbox/` on disk (`site` is the working folder).
    fn spool(&self, site: &Path) -> PathBuf {
        self.remote.clone().unwrap_or_else(|| site.to_path_buf())
    }
}

/// Wall-clock nanoseconds (the clock of `date +%s%N`).
fn wall_now() -> i128 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    i128::try_from(d.as_nanos()).unwrap()
}

/// Maps the `Instant`s of log lines to wall-clock nanoseconds.
struct Clock {
    at: Instant,
    wall: i128,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            at: Instant::now(),
            wall: wall_now(),
        }
    }

    fn wall(&self, i: Instant) -> i128 {
        match i.checked_duration_since(self.at) {
            Some(d) => self.wall + i128::try_from(d.as_nanos()).unwrap(),
            None => self.wall - i128::try_from((self.at - i).as_nanos()).unwrap(),
        }
    }

    /// Milliseconds since the start of the test.
    fn ms(&self, wall: i128) -> i128 {
        (wall - self.wall) / 1_000_000
    }
}

/// A small deterministic generator (xorshift64*), so a seed replays a run's choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One handler invocation, from the events log.
#[derive(Debug, Clone)]
struct Invocation {
    file: String,
    member: String,
    attempt: u32,
    redelivery: bool,
    term: u64,
    start: i128,
    end: Option<i128>,
    /// The end used for the overlap check (the end line, else the kill or cancellation).
    bound: Option<i128>,
    pid: String,
    /// The pid of the listener that started it.
    listener: i32,
    /// Bytes in the local copy the handler got (`None`: no file at `FTPL_LOCAL_PATH`).
    size: Option<usize>,
    /// `FTPL_LOCAL_PATH`.
    local: String,
}

fn invocations(dir: &Path) -> Vec<Invocation> {
    let text = std::fs::read_to_string(dir.join("events.log")).unwrap_or_default();
    let mut out: Vec<Invocation> = Vec::new();
    let mut open: HashMap<(String, String, String), usize> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [
            kind,
            file,
            member,
            attempt,
            redelivery,
            term,
            stamp,
            pid,
            listener,
            size,
            local,
        ] = f[..]
        else {
            panic!("bad events line {line:?}");
        };
        let stamp: i128 = stamp.parse().unwrap();
        let key = (file.to_string(), member.to_string(), pid.to_string());
        match kind {
            "START" => {
                open.insert(key, out.len());
                out.push(Invocation {
                    file: file.to_string(),
                    member: member.to_string(),
                    attempt: attempt.parse().unwrap(),
                    redelivery: redelivery == "true",
                    term: term.parse().unwrap(),
                    start: stamp,
                    end: None,
                    bound: None,
                    pid: pid.to_string(),
                    size: (size != "missing").then(|| {
                        size.parse()
                            .unwrap_or_else(|e| panic!("bad size in {line:?}: {e}"))
                    }),
                    local: local.to_string(),
                    listener: listener.parse().unwrap(),
                });
            }
            "END" => {
                let i = open
                    .remove(&key)
                    .unwrap_or_else(|| panic!("end without start: {line:?}"));
                out[i].end = Some(stamp);
                out[i].bound = Some(stamp);
            }
            _ => panic!("bad events line {line:?}"),
        }
    }
    out
}

/// What the test did to whom, and when (wall-clock ns).
#[derive(Debug, Clone)]
struct Event {
    what: &'static str,
    member: String,
    at: i128,
    old_term: u64,
}

/// The member among `members` that leads, waiting up to `limit`.
fn leader(members: &[Member], limit: Duration) -> Option<(usize, Scrape)> {
    wait_for(limit, || {
        members
            .iter()
            .enumerate()
            .find_map(|(i, m)| m.metrics().filter(|s| s.role == 1).map(|s| (i, s)))
    })
}

/// Waits until a member other than `old` leads in a term after `term`.
fn successor(members: &[Member], old: usize, term: u64) -> (usize, Scrape, Instant) {
    wait_for(LIMIT, || {
        members.iter().enumerate().find_map(|(i, m)| {
            if i == old {
                return None;
            }
            m.metrics()
                .filter(|s| s.role == 1 && s.term > term)
                .map(|s| (i, s, Instant::now()))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no successor of {}:\n{}",
            members[old].id,
            members
                .iter()
                .map(|m| format!("{}: {}", m.id, m.proc.output()))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Waits until `m` is a live standby that had a heartbeat acknowledged after `after`.
fn wait_standby(m: &Member, after: u64) {
    let live = m.wait_metrics(LIMIT, |s| s.role == 0 && s.heartbeats_ok > after);
    assert!(live.is_some(), "{}: {}", m.id, m.proc.output());
}

/// Drops `BURST` files every `BURST_EVERY` into `root/inbox` until `n` are in (each written as
/// `root/<name>.tmp`, outside the watched folder, then renamed in); `dropped` counts them.
fn feed(root: PathBuf, n: usize, durations: Vec<u64>, dropped: Arc<AtomicUsize>) {
    let start = Instant::now();
    let mut i = 0;
    let mut burst = 0u32;
    while i < n {
        for _ in 0..BURST.min(n - i) {
            let name = format!("f{i:04}.csv");
            let tmp = root.join(format!("{name}.tmp"));
            std::fs::write(&tmp, body(i, durations[i])).unwrap();
            std::fs::rename(&tmp, root.join("inbox").join(&name)).unwrap();
            i += 1;
            dropped.store(i, Ordering::SeqCst);
        }
        burst += 1;
        // Paced by the clock (a steady arrival rate), not a synchronisation.
        let next = start + BURST_EVERY * burst;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

/// Regular files directly in `dir` (not the hidden `.done`/`.error` folders).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn chaos_files(db: Db, kind: SourceKind) {
    let test_start = Instant::now();
    let source = Source::new(kind, db);
    let n: usize = env_or(
        "CHAOS_FILES",
        if source.remote.is_some() { 200 } else { 400 },
    );
    let seed: u64 = env_or(
        "CHAOS_SEED",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    // Output lines are tagged `<database>/<source>`.
    let tag = format!("{}/{}", db.backend, source.name);
    println!(
        "{tag}: chaos_files seed {seed} (CHAOS_SEED={seed} replays the durations and gates), {n} files"
    );
    // `CHAOS_HANDLER_MS=<min>-<max>`: the handler's duration range (default 20-50).
    let range = std::env::var("CHAOS_HANDLER_MS").unwrap_or_else(|_| "20-50".into());
    let (lo, hi) = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .expect("CHAOS_HANDLER_MS=<min>-<max>");
    let mut rng = Rng(seed.max(1));
    let durations: Vec<u64> = (0..n).map(|_| lo + rng.below(hi - lo + 1)).collect();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxies: Vec<testkit::TcpProxy> = MEMBERS
        .iter()
        .map(|_| {
            rt.block_on(testkit::TcpProxy::start(db.addr()))
                .expect("proxy")
        })
        .collect();
    let urls: Vec<String> = proxies.iter().map(|p| db.url_via(p.addr())).collect();
    let group = Group::with_source(
        db,
        &format!("files-{}", source.name),
        db.url.to_string(),
        THEN,
        "max_in_flight = 4",
        &source.toml,
    );
    // The working folder (configs, events.log, staging), and the folder holding `inbox/`.
    let dir = group.site.dir.path().to_path_buf();
    let spool = source.spool(&dir);
    let clock = Clock::new();

    // node-a leads first; the others are live standbys before the files come.
    let mut members = vec![group.start_at(MEMBERS[0], &urls[0])];
    assert!(
        members[0].proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        members[0].proc.output()
    );
    for (id, url) in MEMBERS.iter().zip(&urls).skip(1) {
        members.push(group.start_at(id, url));
    }
    for m in &members[1..] {
        wait_standby(m, 0);
    }
    // Processes that were killed, kept for their log lines.
    let mut dead: Vec<Member> = Vec::new();
    // Kill times per process ID (the end of its invocations that have no end line).
    let mut kills: Vec<(i32, i128)> = Vec::new();

    let dropped = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (spool, durations, dropped) = (spool.clone(), durations.clone(), dropped.clone());
        std::thread::spawn(move || feed(spool, n, durations, dropped))
    };

    let plan: [&'static str; 4] = ["kill -9", "SIGSTOP", "db cut", "kill -9"];
    let mut events: Vec<Event> = Vec::new();
    for what in plan {
        let (l, before) = leader(&members, LIMIT).expect("a leader");
        let id = members[l].id.clone();
        // Gate: the leader dispatched some files in its term (so the events spread over the
        // arrivals: 30 to 49 with 400 files, in proportion with fewer), and one of its
        // handlers runs.
        let gate = (30 * n / 400).max(1)
            + usize::try_from(rng.below((20 * n / 400).max(1) as u64)).unwrap();
        let in_flight = wait_for(Duration::from_secs(10), || {
            let inv = invocations(&dir);
            let mine: Vec<&Invocation> = inv
                .iter()
                .filter(|i| i.member == id && i.term == before.term)
                .collect();
            (mine.len() >= gate && mine.iter().any(|i| i.end.is_none())).then_some(())
        });
        let at = wall_now();
        println!(
            "{tag}: t={} ms {what} of {id} (term {}, {} dropped, handler in flight: {})",
            clock.ms(at),
            before.term,
            dropped.load(Ordering::SeqCst),
            in_flight.is_some()
        );
        events.push(Event {
            what,
            member: id.clone(),
            at,
            old_term: before.term,
        });
        match what {
            "kill -9" => {
                members[l].proc.signal("KILL");
                kills.push((members[l].proc.pid(), at));
                let (next, s, seen) = successor(&members, l, before.term);
                println!(
                    "{tag}: t={} ms {} leads (term {})",
                    clock.ms(clock.wall(seen)),
                    members[next].id,
                    s.term
                );
                members[l]
                    .proc
                    .wait_exit(LIMIT)
                    .expect("the killed leader exits");
                let fresh = group.start_at(&id, &urls[l]);
                dead.push(std::mem::replace(&mut members[l], fresh));
                wait_standby(&members[l], 0);
            }
            "SIGSTOP" => {
                members[l].proc.signal("STOP");
                let (next, s, seen) = successor(&members, l, before.term);
                println!(
                    "{tag}: t={} ms {} leads (term {})",
                    clock.ms(clock.wall(seen)),
                    members[next].id,
                    s.term
                );
                // The successor dispatches while the old leader is still paused.
                let next_id = members[next].id.clone();
                let dispatched = wait_for(LIMIT, || {
                    invocations(&dir)
                        .iter()
                        .any(|i| i.member == next_id && i.term == s.term)
                        .then_some(())
                });
                assert!(dispatched.is_some(), "{}", members[next].proc.output());
                members[l].proc.signal("CONT");
                let resumed = members[l].wait_metrics(LIMIT, |m| m.role == 0 && m.term >= s.term);
                assert!(resumed.is_some(), "{}", members[l].proc.output());
                println!(
                    "{tag}: t={} ms SIGCONT: {id} is a standby again",
                    clock.ms(clock.wall(resumed.unwrap().1))
                );
            }
            "db cut" => {
                rt.block_on(proxies[l].cut());
                let (next, s, seen) = successor(&members, l, before.term);
                println!(
                    "{tag}: t={} ms {} leads (term {})",
                    clock.ms(clock.wall(seen)),
                    members[next].id,
                    s.term
                );
                let demoted = members[l].wait_metrics(LIMIT, |m| m.role == 0);
                assert!(demoted.is_some(), "{}", members[l].proc.output());
                let ok = demoted.unwrap().0.heartbeats_ok;
                rt.block_on(proxies[l].restore()).expect("restore");
                wait_standby(&members[l], ok);
                println!(
                    "{tag}: t={} ms database restored: {id} is a live standby",
                    clock.ms(wall_now())
                );
            }
            _ => unreachable!(),
        }
    }
    let chaos_over = wall_now();
    let chaos_done = dropped.load(Ordering::SeqCst);
    feeder.join().unwrap();
    println!(
        "{tag}: t={} ms chaos over, {chaos_done} of {n} files dropped by then; all dropped at t={} ms",
        clock.ms(chaos_over),
        clock.ms(wall_now())
    );

    // Every file leaves the source.
    let inbox = spool.join("inbox");
    let drained = wait_for(Duration::from_secs(60), || {
        files_in(&inbox).is_empty().then_some(())
    });
    let left = files_in(&inbox);
    println!(
        "{tag}: t={} ms source {}",
        clock.ms(wall_now()),
        if drained.is_some() {
            "empty".to_string()
        } else {
            format!("still holds {} files: {:?}", left.len(), left)
        }
    );

    // The ledger, read with the store API (directly, not through a proxy).
    let config = listener::Config::load(Some(&dir.join("migrate.toml"))).unwrap();
    let store = rt
        .block_on(listener::connect_store(
            &config,
            &listener::Registry::builtin(),
            false,
        ))
        .unwrap();
    let gid = GroupId::new(group.name.clone()).unwrap();
    let load = || rt.block_on(store.history().unwrap().rows(&gid)).unwrap();
    let all_done = wait_for(LIMIT, || {
        let l = load();
        (l.len() >= n && l.iter().all(|r| r.state == LedgerState::Done)).then_some(l)
    });
    let ledger = all_done.unwrap_or_else(load);
    let mut rows: BTreeMap<String, Vec<(LedgerState, u32)>> = BTreeMap::new();
    for r in &ledger {
        let name = r.version.path.rsplit('/').next().unwrap().to_string();
        rows.entry(name).or_default().push((r.state, r.attempts));
    }

    // The invocations, with the end of those cut short (kill, or cancellation on lost lease).
    let mut cancels: Vec<(String, i128)> = Vec::new();
    for m in members.iter().chain(&dead) {
        for needle in [
            "cancelling a handler",
            "running handlers cancelled",
            "the handler did not finish",
        ] {
            for at in m.proc.lines_at(needle) {
                cancels.push((m.id.clone(), clock.wall(at)));
            }
        }
    }
    let pids: Vec<i32> = members.iter().chain(&dead).map(|m| m.proc.pid()).collect();
    let mut inv = invocations(&dir);
    for i in inv.iter_mut().filter(|i| i.end.is_none()) {
        // Killed with its listener (the guard kills the group when the listener's pipe
        // closes; a handler can still log its start line in the few ms that takes); one whose
        // listener was already gone when it started (orphaned guard) ends at its start.
        let killed = kills
            .iter()
            .find(|(pid, _)| *pid == i.listener)
            .map(|(_, at)| (*at).max(i.start))
            .or_else(|| (!pids.contains(&i.listener)).then_some(i.start));
        let cancelled = cancels
            .iter()
            .filter(|(m, at)| *m == i.member && *at >= i.start)
            .map(|(_, at)| *at)
            .min();
        i.bound = killed.into_iter().chain(cancelled).min();
    }
    // Attempts whose failure a leader logged ("handler failed; will retry"): the next attempt
    // is a retry, not a redelivery.
    let mut failed: HashSet<(String, u32)> = HashSet::new();
    for m in members.iter().chain(&dead) {
        for line in m
            .proc
            .output()
            .lines()
            .filter(|l| l.contains("handler failed"))
        {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            if let (Some(path), Some(attempt)) = (field("path="), field("attempt=")) {
                let file = path.rsplit('/').next().unwrap().to_string();
                failed.insert((file, attempt.parse().unwrap()));
            }
        }
    }
    inv.sort_by_key(|i| i.start);
    let mut by_file: BTreeMap<String, Vec<Invocation>> = BTreeMap::new();
    for i in &inv {
        by_file.entry(i.file.clone()).or_default().push(i.clone());
    }

    let names: Vec<String> = (0..n).map(|i| format!("f{i:04}.csv")).collect();
    let mut problems: Vec<String> = Vec::new();
    // Invocations whose local copy is not the whole file (a partial file dispatched, or a
    // short download), and those that found no local copy at all.
    let mut short = 0;
    let mut missing: Vec<&Invocation> = Vec::new();
    let mut overlaps = 0;
    let mut not_redelivery = 0;
    // Later invocations after a logged failure of the attempt before (not redeliveries).
    let mut retries = 0;
    let mut duplicates = 0;
    let mut lost = 0;
    let show = |i: &Invocation| {
        format!(
            "{} attempt={} redelivery={} term={} start=t+{}ms end={} pid={} listener={} size={} local={}",
            i.member,
            i.attempt,
            i.redelivery,
            i.term,
            clock.ms(i.start),
            match (i.end, i.bound) {
                (Some(e), _) => format!("t+{}ms", clock.ms(e)),
                (None, Some(b)) => format!("none (cut short by t+{}ms)", clock.ms(b)),
                (None, None) => "none (never)".to_string(),
            },
            i.pid,
            i.listener,
            i.size.map_or("missing".to_string(), |s| s.to_string()),
            i.local
        )
    };
    for (k, name) in names.iter().enumerate() {
        let calls = by_file.get(name).map(Vec::as_slice).unwrap_or_default();
        let size = body(k, durations[k]).len();
        for c in calls {
            match c.size {
                Some(got) if got != size => {
                    short += 1;
                    problems.push(format!(
                        "{name}: the handler got {got} of {size} bytes: {}",
                        show(c)
                    ));
                }
                Some(_) => {}
                None => missing.push(c),
            }
        }
        if calls.is_empty() {
            lost += 1;
            problems.push(format!("{name}: never handled"));
        }
        if calls.len() > 1 {
            duplicates += 1;
        }
        for (k, c) in calls.iter().enumerate().skip(1) {
            let prev = &calls[k - 1];
            let retry = !c.redelivery && failed.contains(&(name.clone(), c.attempt - 1));
            if retry && c.attempt > prev.attempt {
                retries += 1;
            } else if !(c.redelivery && c.attempt > 1 && c.attempt > prev.attempt) {
                not_redelivery += 1;
                problems.push(format!(
                    "{name}: invocation {} not marked as a redelivery: {}",
                    k + 1,
                    calls.iter().map(show).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
        for (a, x) in calls.iter().enumerate() {
            for y in &calls[a + 1..] {
                if x.bound.is_none_or(|end| y.start < end) {
                    overlaps += 1;
                    problems.push(format!("{name}: overlap: {} | {}", show(x), show(y)));
                }
            }
        }
        match rows.get(name).map(Vec::as_slice) {
            Some([(LedgerState::Done, attempts)]) => {
                let max = calls.iter().map(|c| c.attempt).max().unwrap_or(0);
                if *attempts < max {
                    problems.push(format!(
                        "{name}: ledger attempts {attempts} < attempt {max} seen"
                    ));
                }
            }
            other => problems.push(format!("{name}: ledger rows {other:?}")),
        }
    }
    let extra_rows: Vec<&String> = rows.keys().filter(|k| !names.contains(k)).collect();
    if !extra_rows.is_empty() {
        problems.push(format!("ledger rows of unknown files: {extra_rows:?}"));
    }
    let done = files_in(&inbox.join(".done"));
    if done != names {
        let extra: Vec<&String> = done.iter().filter(|d| !names.contains(d)).collect();
        let missing: Vec<&String> = names.iter().filter(|d| !done.contains(d)).collect();
        problems.push(format!(
            "done folder: {} files; not expected: {extra:?}; missing: {missing:?}",
            done.len()
        ));
    }
    if !left.is_empty() {
        problems.push(format!("left in the source: {left:?}"));
    }
    if files_in(&inbox.join(".error")).len() + inv.iter().filter(|i| i.end.is_none()).count() > 0 {
        println!(
            "{tag}: error folder {:?}; invocations without an end line: {}",
            files_in(&inbox.join(".error")),
            inv.iter()
                .filter(|i| i.end.is_none())
                .map(show)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }

    // Failovers: "became leader" lines of every process, but the first.
    let failovers = members
        .iter()
        .chain(&dead)
        .map(|m| m.proc.count_lines("became leader"))
        .sum::<usize>()
        .saturating_sub(1);
    if failovers != plan.len() {
        // One failover per event (the logs of every member are shown below).
        problems.push(format!(
            "{failovers} failovers for {} events (\"became leader\" lines but the first)",
            plan.len()
        ));
    }
    let redeliveries = inv.iter().filter(|i| i.redelivery).count();
    // A version claimed by a leader that died before its handler started is redelivered
    // without an earlier invocation: allowed, and shown.
    for calls in by_file.values() {
        if calls[0].redelivery {
            println!(
                "{tag}: first invocation already a redelivery (claimed, never started): {}",
                show(&calls[0])
            );
        }
    }
    let mut dispatch = Vec::new();
    for e in &events {
        let first = inv
            .iter()
            .filter(|i| i.member != e.member && i.start > e.at && i.term > e.old_term)
            .map(|i| i.start)
            .min();
        // Nothing dispatched after the event by anyone: no file was left to dispatch (only
        // with few files and long handlers).
        let idle = inv.iter().all(|i| i.start <= e.at);
        dispatch.push(match first {
            Some(s) => format!("{} {} ms", e.what, (s - e.at) / 1_000_000),
            None if idle => format!("{} - (no file left)", e.what),
            None => format!("{} never", e.what),
        });
        if first.is_none() && !idle {
            problems.push(format!("no dispatch by a new leader after {e:?}"));
        }
    }
    // A handler that found no local copy: show the other deliveries that shared its staging
    // folder (`<term>-<attempt>-<mtime_ms>`) and ended before it started (the listener
    // removes that folder after each of them).
    let parent = |i: &Invocation| i.local.rsplit_once('/').map(|(d, _)| d.to_string());
    for c in missing.iter().take(5) {
        let shared: Vec<&Invocation> = inv
            .iter()
            .filter(|o| o.file != c.file && parent(o) == parent(c))
            .collect();
        let last = shared
            .iter()
            .filter(|o| o.end.is_some_and(|e| e <= c.start))
            .max_by_key(|o| o.end);
        println!(
            "{tag}: MISSING COPY {}: {} | {} other deliveries in the same staging folder; the \
             last to end before it: {}",
            c.file,
            show(c),
            shared.len(),
            last.map_or("none".to_string(), |o| format!("{} {}", o.file, show(o)))
        );
    }
    if missing.len() > 5 {
        println!("{tag}: MISSING COPY: {} more", missing.len() - 5);
    }
    // Every command must find its own copy (the shared staging folder bug, fixed).
    if !missing.is_empty() {
        problems.push(format!(
            "{} invocations found no file at FTPL_LOCAL_PATH (see MISSING COPY)",
            missing.len()
        ));
    }
    let elapsed = test_start.elapsed();
    println!(
        "chaos_files on {tag} (seed {seed}, {} s, max_in_flight 4, handler {lo}-{hi} ms):\n\
         | database | source | files | invocations | failovers | redeliveries | duplicates | overlaps | not marked | retries after a failure | short copies | missing copies | lost | done folder | left | event -> first dispatch by the new leader |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n\
         | {} | {} | {n} | {} | {failovers} | {redeliveries} | {duplicates} | {overlaps} | {not_redelivery} | {retries} | {short} | {} | {lost} | {} | {} | {} |",
        elapsed.as_secs(),
        db.backend,
        source.name,
        inv.len(),
        missing.len(),
        done.len(),
        left.len(),
        dispatch.join("; ")
    );
    for p in &problems {
        println!("{tag}: PROBLEM {p}");
    }
    if !problems.is_empty() {
        for m in members.iter().chain(&dead) {
            let out = m.proc.output();
            let lines: Vec<&str> = out
                .lines()
                .filter(|l| {
                    [
                        "became leader",
                        "lost leadership",
                        "not leading",
                        "cancel",
                        "fenced",
                        "failed",
                        "error",
                        "WARN",
                    ]
                    .iter()
                    .any(|k| l.contains(k))
                })
                .collect();
            println!("--- {} (pid {}):\n{}", m.id, m.proc.pid(), lines.join("\n"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems on {tag} (seed {seed}), see above; first: {}",
        problems.len(),
        problems[0]
    );
    // Passed: the server's directory goes (a failed run leaves it for a look).
    drop(members);
    if let Some(remote) = &source.remote {
        let _ = std::fs::remove_dir_all(remote);
    }
}

/// vsftpd (127.0.0.1:2121): no MLSD, so the listing comes from `LIST` lines.
const VSFTPD: SourceKind = SourceKind::Ftp {
    server: "vsftpd",
    port: 2121,
};

/// proftpd (127.0.0.1:2122): MLSD.
const PROFTPD: SourceKind = SourceKind::Ftp {
    server: "proftpd",
    port: 2122,
};

#[cfg(feature = "postgres")]
#[test]
fn chaos_files_postgres() {
    chaos_files(chaos_support::POSTGRES, SourceKind::Local);
}

#[cfg(feature = "mysql")]
#[test]
fn chaos_files_mariadb() {
    chaos_files(chaos_support::MYSQL, SourceKind::Local);
}

#[cfg(all(feature = "postgres", feature = "ftp"))]
#[test]
fn chaos_files_postgres_ftp() {
    chaos_files(chaos_support::POSTGRES, VSFTPD);
}

#[cfg(all(feature = "mysql", feature = "ftp"))]
#[test]
fn chaos_files_mariadb_ftp() {
    chaos_files(chaos_support::MYSQL, VSFTPD);
}

#[cfg(all(feature = "postgres", feature = "ftp"))]
#[test]
fn chaos_files_postgres_proftpd() {
    chaos_files(chaos_support::POSTGRES, PROFTPD);
}

#[cfg(all(feature = "postgres", feature = "sftp"))]
#[test]
fn chaos_files_postgres_sftp() {
    chaos_files(chaos_support::POSTGRES, SourceKind::Sftp);
}

#[cfg(all(feature = "mysql", feature = "sftp"))]
#[test]
fn chaos_files_mariadb_sftp() {
    chaos_files(chaos_support::MYSQL, SourceKind::Sftp);
}
