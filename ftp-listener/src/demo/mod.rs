//! `ftp-listener demo`: failover shown on one machine with nothing to install.
//!
//! An embedded FTP server (libunftp over a temporary folder, a random password), SQLite
//! coordination in the same temporary folder, and three members: child processes of this
//! very binary running `ftp-listener run` (heartbeat 200 ms, liveness timeout 1 s, JSON
//! logs). A feeder drops files into the served folder (written beside it, then renamed in, so
//! no listing sees a partial file). The command handler of each member appends one line per
//! call (file, member, term, attempt, redelivery flag, size of its copy) to a shared file.
//!
//! Once a third of the files are dropped the leader is killed with SIGKILL (a crash: nothing
//! released) and restarted; once two thirds are, the leader of the moment is stopped with
//! SIGSTOP until another member took over (past the liveness timeout by construction), then
//! continued. Leadership is read from each member's `/metrics` (`ftpl_role`, `ftpl_term`),
//! polled every 20 ms: the takeover times printed are event-to-observation.
//!
//! The verdict compares what was dropped, what the handler got and what is in the done
//! folder (see `verdict.rs`), and checks that no member's log holds the FTP password. It
//! exits 0 only if no file was lost or handled twice and no secret was logged.

mod ftp_server;
mod member;
mod verdict;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use ftp_server::FtpServer;
use member::Member;

/// The members' IDs.
const MEMBERS: [&str; 3] = ["node-1", "node-2", "node-3"];
/// The members' election timing.
const HEARTBEAT: Duration = Duration::from_millis(200);
const LIVENESS: Duration = Duration::from_secs(1);
/// How often leadership is looked at.
const POLL: Duration = Duration::from_millis(20);
/// The longest wait for any one step (a leader, a takeover, the last file).
const STEP_LIMIT: Duration = Duration::from_secs(20);

/// The command line's choices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Files the feeder drops.
    pub(crate) files: u32,
    /// Keep the temporary folder.
    pub(crate) keep: bool,
}

/// Prints timeline lines, stamped with the time since the demo started.
#[derive(Debug)]
struct Timeline(Instant);

impl Timeline {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[{:>6.2}s] {}",
            self.0.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// Runs the demo; an error when the verdict fails (after it was printed).
pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    let timeline = Timeline(Instant::now());
    let dir = tempfile::Builder::new()
        .prefix("ftp-listener-demo-")
        .tempdir()
        .context("making the demo's temporary folder")?;
    let outcome = Demo::new(dir.path(), options, &timeline)?.run().await;
    let keep = options.keep || !matches!(outcome, Ok(true));
    if keep {
        let kept = dir.keep();
        println!(
            "(kept {}: member logs, configs, the ledger)",
            kept.display()
        );
    }
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the demo's verdict failed (see above)"),
        Err(e) => Err(e),
    }
}

/// The demo's state.
#[derive(Debug)]
struct Demo<'a> {
    dir: PathBuf,
    options: Options,
    timeline: &'a Timeline,
    password: String,
    members: Vec<Member>,
}

impl<'a> Demo<'a> {
    fn new(dir: &Path, options: Options, timeline: &'a Timeline) -> anyhow::Result<Self> {
        Ok(Demo {
            dir: dir.to_path_buf(),
            options,
            timeline,
            password: random_hex(16)?,
            members: Vec::new(),
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.join("ftp")
    }

    fn calls_path(&self) -> PathBuf {
        self.dir.join("calls.log")
    }

    /// The whole demo; `Ok(true)` when the verdict passed.
    async fn run(mut self) -> anyhow::Result<bool> {
        let root = self.root();
        for sub in ["inbox", "staging"] {
            std::fs::create_dir_all(root.join(sub))
                .with_context(|| format!("making {}", root.join(sub).display()))?;
        }
        let server = FtpServer::start(&root, "demo", &self.password).await?;
        self.timeline.say(format!(
            "FTP server (libunftp) on {}; SQLite coordination in {}; 3 members, heartbeat \
             {} ms, liveness timeout {} s",
            server.addr,
            self.dir.join("coord.db").display(),
            HEARTBEAT.as_millis(),
            LIVENESS.as_secs()
        ));
        for name in MEMBERS {
            let member_dir = self.dir.join(name);
            std::fs::create_dir_all(&member_dir)?;
            std::fs::write(
                member_dir.join("listener.toml"),
                self.member_config(name, server.addr.port()),
            )?;
            let mut member = Member::new(name, &member_dir);
            member.start()?;
            self.members.push(member);
        }
        let (first, term) = self.wait_for_leader(None, 0).await?;
        self.timeline.say(format!(
            "{} leads (term {term}); the others are warm standbys",
            self.members[first].name
        ));

        let dropped = Arc::new(AtomicUsize::new(0));
        let files = usize::try_from(self.options.files).unwrap_or(usize::MAX);
        let feeder = {
            let (root, dropped) = (root.clone(), dropped.clone());
            let every =
                (Duration::from_secs(6) / self.options.files).min(Duration::from_millis(100));
            std::thread::spawn(move || feed(&root, files, every, &dropped))
        };
        self.timeline.say(format!(
            "feeder: dropping {files} files into /inbox over about {:.1} s",
            (Duration::from_secs(6) / self.options.files)
                .min(Duration::from_millis(100))
                .as_secs_f64()
                * files as f64
        ));

        // A crash: kill -9 of the leader once a third of the files were dropped.
        wait_until(|| dropped.load(Ordering::Relaxed) * 3 >= files || feeder.is_finished()).await;
        let (victim, term) = self.current_leader(None).await?;
        self.members[victim].crash();
        let crashed = Instant::now();
        self.timeline.say(format!(
            "kill -9 {} (the leader, term {term}); {}",
            self.members[victim].name,
            self.progress()
        ));
        let crash_failover = self.takeover(victim, term, crashed, "the crash").await;
        self.members[victim].start()?;
        self.timeline.say(format!(
            "{} restarted (same member ID: it waits out its dead incarnation's lease, then \
             stands by)",
            self.members[victim].name
        ));

        // A pause: SIGSTOP of the leader of the moment past the liveness timeout.
        wait_until(|| dropped.load(Ordering::Relaxed) * 3 >= files * 2 || feeder.is_finished())
            .await;
        let (paused, term, caught_in_write) = self.pause_leader().await?;
        let stopped = Instant::now();
        self.timeline.say(format!(
            "SIGSTOP {} (the leader, term {term}); {}",
            self.members[paused].name,
            self.progress()
        ));
        if caught_in_write > 0 {
            self.timeline.say(format!(
                "  (first stopped {caught_in_write} time(s) inside an SQLite write and resumed at \
                 once: a member frozen holding SQLite's write lock stalls every member's \
                 heartbeat until it continues, a limit of SQLite coordination)"
            ));
        }
        let pause_failover = self.takeover(paused, term, stopped, "the pause").await;
        // Past the liveness timeout for sure (a takeover needs it), and then some.
        let stopped_for = LIVENESS.max(stopped.elapsed()) + HEARTBEAT;
        tokio::time::sleep(stopped_for.saturating_sub(stopped.elapsed())).await;
        self.members[paused].signal(Signal::SIGCONT)?;
        self.timeline.say(format!(
            "SIGCONT {} after {:.2} s stopped",
            self.members[paused].name,
            stopped.elapsed().as_secs_f64()
        ));
        self.resumed_as_standby(paused).await;

        let dropped_files = match feeder.join() {
            Ok(result) => result.context("the feeder")?,
            Err(_) => bail!("the feeder panicked"),
        };
        self.timeline.say(format!(
            "feeder done ({} files); {}",
            dropped_files.len(),
            self.progress()
        ));
        let done_dir = root.join("inbox").join(".done");
        let all_done = deadline_wait(STEP_LIMIT, || {
            list_names(&done_dir).len() >= dropped_files.len()
                && list_names(&root.join("inbox")).is_empty()
        })
        .await;
        self.timeline.say(if all_done {
            format!("the inbox is empty; {}", self.progress())
        } else {
            format!(
                "gave up waiting after {} s: {} files still in the inbox; {}",
                STEP_LIMIT.as_secs(),
                list_names(&root.join("inbox")).len(),
                self.progress()
            )
        });
        for member in &mut self.members {
            if !member.stop(Duration::from_secs(5)).await {
                self.timeline
                    .say(format!("{} did not stop cleanly on SIGTERM", member.name));
            }
        }
        drop(server);

        let (calls, bad_lines) =
            verdict::parse_calls(&std::fs::read_to_string(self.calls_path()).unwrap_or_default());
        let verdict = verdict::judge(&dropped_files, &calls, &list_names(&done_dir));
        for problem in verdict
            .lost
            .iter()
            .map(|p| ("lost", p))
            .chain(verdict.twice.iter().map(|p| ("handled twice", p)))
            .chain(verdict.short.iter().map(|p| ("short copy", p)))
            .chain(verdict.unknown.iter().map(|p| ("unknown", p)))
        {
            println!("  {}: {}", problem.0, problem.1);
        }
        if bad_lines > 0 {
            println!("  {bad_lines} handler lines did not parse");
        }
        let (leaks, not_json) = self.scan_logs();
        println!(
            "member logs: {not_json} lines that are not JSON, {leaks} lines with the FTP password"
        );
        let failovers = [("kill -9", crash_failover), ("SIGSTOP", pause_failover)];
        let passed = verdict.passed()
            && leaks == 0
            && bad_lines == 0
            && failovers.iter().all(|(_, took)| took.is_some());
        let line = verdict::line(&verdict, &failovers);
        let line = if passed || !verdict.passed() {
            line
        } else {
            line.replacen("PASS", "FAIL", 1)
        };
        println!("{line}");
        Ok(passed)
    }

    /// The configuration of one member.
    fn member_config(&self, name: &str, ftp_port: u16) -> String {
        let calls = self.calls_path();
        // One line per completed call; the copy's path is appended to the command.
        let script = format!(
            "size=$(wc -c < \"$FTPL_LOCAL_PATH\" | tr -d ' '); \
             echo \"${{FTPL_PATH##*/}} $FTPL_MEMBER $FTPL_TERM $FTPL_ATTEMPT $FTPL_REDELIVERY \
             $size\" >> '{}'",
            calls.display()
        );
        let toml_str = |s: &str| toml_string(s);
        format!(
            "member_id = {member}\ngroup = \"demo\"\npoll_interval = \"200ms\"\n\
             max_in_flight = 4\nshutdown_grace = \"2s\"\n\
             [log]\nformat = \"json\"\n\
             [coordination]\nheartbeat_interval = \"{hb}ms\"\nliveness_timeout = \"{live}ms\"\n\
             [coordination.sqlite]\npath = {db}\n\
             [http]\nbind = \"127.0.0.1:0\"\n\
             [retry]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n\
             [source]\nkind = \"ftp\"\npath = \"/inbox\"\n\
             [source.ftp]\nhost = \"127.0.0.1\"\nport = {ftp_port}\nuser = \"demo\"\n\
             password = {password}\nconnect_timeout = \"2s\"\nop_timeout = \"5s\"\n\
             reconnect_backoff_max = \"500ms\"\n\
             [handler]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {script}, \"handler\"]\n\
             timeout = \"10s\"\n",
            member = toml_str(name),
            hb = HEARTBEAT.as_millis(),
            live = LIVENESS.as_millis(),
            db = toml_str(&self.dir.join("coord.db").display().to_string()),
            password = toml_str(&self.password),
            script = toml_str(&script),
        )
    }

    /// Stops the leader of the moment (SIGSTOP) at an instant it holds no SQLite write lock:
    /// a stop inside a write is undone at once (SIGCONT) and tried again. Returns the member,
    /// its term and how many stops were undone.
    async fn pause_leader(&mut self) -> anyhow::Result<(usize, u64, usize)> {
        let db = self.dir.join("coord.db");
        let files = [
            db.clone(),
            db.with_extension("db-wal"),
            db.with_extension("db-shm"),
        ];
        let mut undone = 0;
        loop {
            let (leader, term) = self.current_leader(None).await?;
            self.members[leader].signal(Signal::SIGSTOP)?;
            if !self.members[leader].holds_write_lock(&files) {
                return Ok((leader, term, undone));
            }
            self.members[leader].signal(Signal::SIGCONT)?;
            undone += 1;
            if undone >= 200 {
                bail!("the leader always held SQLite's write lock when stopped (200 tries)");
            }
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }

    /// Handled so far, from the handler's lines.
    fn progress(&self) -> String {
        let (calls, _) =
            verdict::parse_calls(&std::fs::read_to_string(self.calls_path()).unwrap_or_default());
        let mut files: Vec<&str> = calls.iter().map(|c| c.file.as_str()).collect();
        files.sort_unstable();
        files.dedup();
        let redeliveries = calls.iter().filter(|c| c.redelivery).count();
        format!(
            "{} files handled so far, {redeliveries} redeliver{}",
            files.len(),
            if redeliveries == 1 { "y" } else { "ies" }
        )
    }

    /// The first member other than `except` that reports itself leader of a term above
    /// `above`.
    async fn wait_for_leader(
        &mut self,
        except: Option<usize>,
        above: u64,
    ) -> anyhow::Result<(usize, u64)> {
        let deadline = Instant::now() + STEP_LIMIT;
        while Instant::now() < deadline {
            for i in 0..self.members.len() {
                if Some(i) == except {
                    continue;
                }
                if let Some(s) = self.members[i].scrape().await
                    && s.role == 1
                    && s.term > above
                {
                    return Ok((i, s.term));
                }
            }
            for (i, member) in self.members.iter_mut().enumerate() {
                if Some(i) != except && !member.is_running() {
                    bail!(
                        "member {} exited; its log: {}",
                        member.name,
                        member.log_path().display()
                    );
                }
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "no member led within {} s (member logs under {})",
            STEP_LIMIT.as_secs(),
            self.dir.display()
        )
    }

    /// The leader of the moment (none of `except`).
    async fn current_leader(&mut self, except: Option<usize>) -> anyhow::Result<(usize, u64)> {
        self.wait_for_leader(except, 0).await
    }

    /// Waits for another member than `victim` to lead a term above `term`; prints it.
    async fn takeover(
        &mut self,
        victim: usize,
        term: u64,
        since: Instant,
        what: &str,
    ) -> Option<Duration> {
        match self.wait_for_leader(Some(victim), term).await {
            Ok((next, new_term)) => {
                let took = since.elapsed();
                self.timeline.say(format!(
                    "{} took over (term {new_term}) {:.2} s after {what}",
                    self.members[next].name,
                    took.as_secs_f64()
                ));
                Some(took)
            }
            Err(e) => {
                self.timeline
                    .say(format!("no takeover after {what}: {e:#}"));
                None
            }
        }
    }

    /// After SIGCONT: the member must see that it lost its lease and stand by.
    async fn resumed_as_standby(&mut self, resumed: usize) {
        let deadline = Instant::now() + STEP_LIMIT;
        while Instant::now() < deadline {
            if let Some(s) = self.members[resumed].scrape().await
                && s.role == 0
            {
                self.timeline.say(format!(
                    "{} is a standby again (it saw term {}); {}",
                    self.members[resumed].name,
                    s.term,
                    self.progress()
                ));
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        self.timeline.say(format!(
            "{} did not report itself standby within {} s",
            self.members[resumed].name,
            STEP_LIMIT.as_secs()
        ));
    }

    /// Lines of the members' logs that hold the FTP password, and lines that are not JSON.
    fn scan_logs(&self) -> (usize, usize) {
        let mut leaks = 0;
        let mut not_json = 0;
        for member in &self.members {
            let text = std::fs::read_to_string(member.log_path()).unwrap_or_default();
            for line in text.lines() {
                if line.contains(&self.password) {
                    leaks += 1;
                }
                if serde_json::from_str::<serde_json::Value>(line).is_err() {
                    not_json += 1;
                }
            }
        }
        (leaks, not_json)
    }
}

/// Drops `files` files into `root/inbox`, one every `every` (each written in `root/staging`,
/// then renamed in); the name and size of each.
fn feed(
    root: &Path,
    files: usize,
    every: Duration,
    dropped: &AtomicUsize,
) -> std::io::Result<BTreeMap<String, u64>> {
    let started = Instant::now();
    let mut sizes = BTreeMap::new();
    for i in 1..=files {
        let name = format!("demo-{i:04}.csv");
        let rows = 1 + (i * 7) % 40;
        let mut body = String::from("id,value\n");
        for r in 0..rows {
            body.push_str(&format!("{i}-{r},{}\n", (i * 31 + r) % 1000));
        }
        let staged = root.join("staging").join(&name);
        std::fs::write(&staged, &body)?;
        std::fs::rename(&staged, root.join("inbox").join(&name))?;
        sizes.insert(name, body.len() as u64);
        dropped.fetch_add(1, Ordering::Relaxed);
        // Pacing, not synchronisation: files arrive on a clock.
        let next = every * u32::try_from(i).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    Ok(sizes)
}

/// Regular files in `dir` (none if it does not exist).
fn list_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `condition` every 20 ms (the feeder's progress: it advances on a clock or ends).
async fn wait_until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `condition` every 20 ms up to `limit`; whether it held.
async fn deadline_wait(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `n` random bytes from the kernel, hex-encoded.
fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the demo's FTP password")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
