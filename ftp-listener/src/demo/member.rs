//! One member of the demo: an `ftp-listener run` child process of this very binary, its JSON
//! log in a file, its `/metrics` scraped over loopback.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one scrape of `/metrics` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scrape {
    /// `ftpl_role`: 0 standby, 1 leader, 2 stopped.
    pub(crate) role: u64,
    /// `ftpl_term`.
    pub(crate) term: u64,
}

/// A member process; killed (SIGKILL) and reaped when dropped, if still running.
#[derive(Debug)]
pub(crate) struct Member {
    /// Its member ID.
    pub(crate) name: String,
    dir: PathBuf,
    child: Option<Child>,
    /// Its HTTP address, once its log said where it listens.
    http: Option<SocketAddr>,
    /// Log lines read so far (the log is appended to across restarts).
    lines_seen: usize,
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Member {
    /// A member whose `listener.toml` is in `dir`; not started yet.
    pub(crate) fn new(name: &str, dir: &Path) -> Self {
        Member {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            child: None,
            http: None,
            lines_seen: 0,
        }
    }

    /// The member's log (JSON lines, appended to across restarts).
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }

    /// Starts `ftp-listener --config listener.toml run` in the member's folder, with no
    /// `FTPL_` variable of ours leaking into its configuration.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding this binary to start the members")?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let mut command = Command::new(exe);
        command
            .current_dir(&self.dir)
            .args(["--config", "listener.toml", "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .env("RUST_LOG", "info");
        for (name, _) in std::env::vars_os() {
            if name
                .to_str()
                .is_some_and(|n| n.to_ascii_uppercase().starts_with("FTPL_"))
            {
                command.env_remove(name);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting member {}", self.name))?;
        self.child = Some(child);
        self.http = None;
        Ok(())
    }

    /// Its process ID while it runs.
    fn pid(&self) -> Option<Pid> {
        let id = self.child.as_ref()?.id();
        Some(Pid::from_raw(i32::try_from(id).ok()?))
    }

    /// kill -9: a crash, nothing is released.
    pub(crate) fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.http = None;
    }

    /// SIGSTOP (a frozen VM, a long GC pause) or SIGCONT.
    pub(crate) fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("the member is not running")?;
        kill(pid, signal).with_context(|| format!("{signal} to member {}", self.name))
    }

    /// SIGTERM, then waits up to `grace` for the exit (then kill -9). True when it exited on
    /// its own with status 0.
    pub(crate) async fn stop(&mut self, grace: Duration) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.crash();
        false
    }

    /// Whether the process holds a write (exclusive) lock on one of `files`, by inode, as
    /// `/proc/locks` says (false where there is none). Asked of a stopped process, whose
    /// locks cannot change: a member frozen inside an SQLite write keeps the database's
    /// write lock, and every other member's heartbeat waits for it.
    pub(crate) fn holds_write_lock(&self, files: &[PathBuf]) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Some(pid) = self.pid() else {
            return false;
        };
        let inodes: Vec<u64> = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.ino())
            .collect();
        let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        locks.lines().filter(|l| !l.contains("->")).any(|line| {
            // `1: POSIX  ADVISORY  WRITE 3791 fe:00:770064 0 EOF`
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(kind), Some(owner), Some(file)) =
                (fields.get(3), fields.get(4), fields.get(5))
            else {
                return false;
            };
            let inode = file.rsplit(':').next().and_then(|i| i.parse::<u64>().ok());
            *kind == "WRITE"
                && owner.parse::<i32>().ok() == Some(pid.as_raw())
                && inode.is_some_and(|i| inodes.contains(&i))
        })
    }

    /// True while the process has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The HTTP address from the member's latest `ftp-listener started` line, once logged.
    pub(crate) fn http(&mut self) -> Option<SocketAddr> {
        if self.http.is_none() {
            let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[self.lines_seen.min(lines.len())..] {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if value["message"] == "ftp-listener started"
                    && let Some(addr) = value["http"].as_str().and_then(|a| a.parse().ok())
                {
                    self.http = Some(addr);
                }
            }
            if self.http.is_some() {
                self.lines_seen = lines.len();
            }
        }
        self.http
    }

    /// Its role and term, or `None` if it does not answer within 300 ms (stopped, dead, or
    /// not listening yet).
    pub(crate) async fn scrape(&mut self) -> Option<Scrape> {
        let addr = self.http()?;
        let text = tokio::time::timeout(Duration::from_millis(300), get(addr, "/metrics"))
            .await
            .ok()?
            .ok()?;
        Some(Scrape {
            role: value_of(&text, "ftpl_role")?,
            term: value_of(&text, "ftpl_term")?,
        })
    }
}

/// `GET path` over HTTP/1.0; the body.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The value of the first sample of `name` in Prometheus text, labelled or not (a member of
/// the demo runs one listener).
fn value_of(text: &str, name: &str) -> Option<u64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !rest.starts_with([' ', '{']) {
            return None;
        }
        rest.rsplit(' ').next()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_exact_name() {
        let text = "# HELP ftpl_role r\n# TYPE ftpl_role gauge\nftpl_role{listener=\"in\"} 1\n\
                    ftpl_term_x 9\nftpl_term 4\n";
        assert_eq!(value_of(text, "ftpl_role"), Some(1));
        assert_eq!(value_of(text, "ftpl_term"), Some(4));
        assert_eq!(value_of(text, "ftpl_takeovers_total"), None);
    }
}
