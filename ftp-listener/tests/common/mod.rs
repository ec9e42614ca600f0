//! Helpers for the end-to-end tests: a working folder with a config, spawned `ftp-listener`
//! processes whose log lines are collected, and waits on events with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ftp-listener");

/// A test's working folder: `inbox/`, `ftp-listener.db`, `handled.log`.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        Site { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `name.toml`: short timings, SQLite in the folder, the given extra TOML.
    pub fn config(&self, name: &str, member: &str, extra: &str) -> PathBuf {
        self.config_full(name, member, "e2e", "", extra)
    }

    /// The same with a group and extra `[coordination]` keys (such as `backend`).
    pub fn config_full(
        &self,
        name: &str,
        member: &str,
        group: &str,
        coordination: &str,
        extra: &str,
    ) -> PathBuf {
        let body = format!(
            r#"
member_id = "{member}"
group = "{group}"
poll_interval = "100ms"
[coordination]
heartbeat_interval = "100ms"
liveness_timeout = "500ms"
{coordination}
[coordination.sqlite]
path = "ftp-listener.db"
[source]
path = "inbox"
[http]
bind = "127.0.0.1:0"
{extra}
"#
        );
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        path
    }

    /// A command handler that appends one line per call to `handled.log`:
    /// `<name> attempt=<n> redelivery=<bool> member=<id> term=<t> size=<bytes>`, then runs
    /// `then` (shell).
    pub fn probe_handler(&self, then: &str) -> String {
        let log = self.path("handled.log");
        format!(
            r#"
[handler]
kind = "command"
dir = "{staging}"
command = ["sh", "-c", '''
echo "$(basename "$FTPL_PATH") attempt=$FTPL_ATTEMPT redelivery=$FTPL_REDELIVERY member=$FTPL_MEMBER term=$FTPL_TERM size=$FTPL_SIZE" >> "{log}"
{then}
''', "probe"]
"#,
            staging = self.path("staging").display(),
            log = log.display(),
        )
    }

    pub fn handled(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("handled.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn drop_file(&self, name: &str, body: &[u8]) {
        // Written aside and renamed in, so a listing never sees it half written.
        let tmp = self.path(&format!("{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, self.path(&format!("inbox/{name}"))).unwrap();
    }

    pub fn names_in(&self, rel: &str) -> Vec<String> {
        names(&self.path(rel))
    }

    /// [`Site::config`] without the site's own `[source]` table (the local inbox): for an
    /// `extra` that brings a remote source.
    pub fn config_remote_source(&self, name: &str, member: &str, extra: &str) -> PathBuf {
        let config = self.config(name, member, extra);
        let body = std::fs::read_to_string(&config).unwrap().replacen(
            "[source]\npath = \"inbox\"\n",
            "",
            1,
        );
        std::fs::write(&config, body).unwrap();
        config
    }

    pub fn spawn(&self, config: &Path) -> Proc {
        Proc::spawn(
            self.dir.path(),
            &["--config", config.to_str().unwrap(), "run"],
        )
    }

    /// [`Site::spawn`], then waits (up to `limit`) until it leads; panics with its log if not.
    pub fn spawn_leader(&self, config: &Path, limit: Duration) -> Proc {
        let proc = self.spawn(config);
        assert!(
            proc.wait_line("became leader", limit).is_some(),
            "{}",
            proc.output()
        );
        proc
    }
}

/// The names in the folder `dir`, sorted (none when it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A spawned `ftp-listener` whose stderr lines are collected with the instant each arrived.
pub struct Proc {
    pub child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The threads reading stderr and stdout (they end at the pipes' end).
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    pub fn spawn(cwd: &Path, args: &[&str]) -> Proc {
        Proc::spawn_env(cwd, args, &[])
    }

    pub fn spawn_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push((Instant::now(), line));
                }
            }));
        }
        Proc {
            child,
            lines,
            readers,
        }
    }

    /// The HTTP address the process logged at start (`http=...`).
    pub fn http_addr(&self) -> String {
        self.output()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .expect("the bound address is logged")
            .to_string()
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// The instant the first line containing `needle` arrived, waiting up to `limit`.
    pub fn wait_line(&self, needle: &str, limit: Duration) -> Option<Instant> {
        wait_for(limit, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| l.contains(needle))
                .map(|(at, _)| *at)
        })
    }

    /// The instant of the first line containing every needle, if any.
    pub fn line_at(&self, needles: &[&str]) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
            .map(|(at, _)| *at)
    }

    /// The instants of every line containing `needle`.
    pub fn lines_at(&self, needle: &str) -> Vec<Instant> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .map(|(at, _)| *at)
            .collect()
    }

    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .count()
    }

    pub fn output(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit, up to `limit`.
    /// Waits for the exit, then (up to 5 s) for the readers to reach the pipes' end, so that
    /// [`Proc::output`] holds everything the process wrote (a child process that inherited
    /// the pipes may keep them open: then what arrived so far).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = wait_for(limit, || self.child.try_wait().unwrap())?;
        let readers = &self.readers;
        wait_for(Duration::from_secs(5), || {
            readers.iter().all(|r| r.is_finished()).then_some(())
        });
        Some(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A name unique to this process and instant: `<prefix>_<pid>_<nanos>` (schemas, databases,
/// groups of the tests that share a server).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// A MariaDB database of the test's own (on the loopback server), by name.
pub fn mariadb_database(prefix: &str) -> String {
    let db = unique(prefix);
    let created = Command::new("mysql")
        .args(["-h127.0.0.1", "-P3306", "-uroot", "-e"])
        .arg(format!("CREATE DATABASE `{db}`"))
        .status()
        .expect("the mysql client (installed with MariaDB)");
    assert!(created.success(), "CREATE DATABASE {db}");
    db
}

/// One GET on the endpoints: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}
