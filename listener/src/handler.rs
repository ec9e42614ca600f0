//! The built-in handlers, implementations of [`FileHandler`] like a user's: log each file,
//! download it, or download it and run a command on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coord_core::{Fence, FileVersion, RemoteFs, escape_for_log, local_target};
use tokio::io::AsyncWriteExt;

use crate::api::{Cancellation, FileHandler, HandlerContext, HandlerError, IncomingFile, SourceOf};
use crate::config::HandlerConfig;

/// One file version handed to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The version (its `path` is the source path).
    pub version: FileVersion,
    /// The path relative to the watched directory (`sub/a.csv`).
    pub relative: String,
    /// The fencing token: the term the handler may pass on downstream.
    pub fence: Fence,
    /// Which attempt, from 1.
    pub attempt: u32,
    /// An earlier attempt was dispatched (never finished, or failed).
    pub redelivery: bool,
}

/// The configured handler.
#[derive(Debug, Clone)]
pub enum Handler {
    /// Log and succeed.
    Log,
    /// Download into `dir`, keeping the relative path.
    Download {
        /// Target directory.
        dir: PathBuf,
    },
    /// Download into a staging folder and run a program.
    Command {
        /// Program and leading arguments.
        command: Vec<String>,
        /// Staging folder.
        dir: PathBuf,
        /// Kill the program after this long.
        timeout: Duration,
    },
    /// Upload to destinations, with failover or fan-out.
    Forward(Arc<crate::forward::Forward>),
}

impl Handler {
    /// The handler a configuration describes.
    pub fn from_config(config: &HandlerConfig) -> Handler {
        match config {
            HandlerConfig::Log => Handler::Log,
            HandlerConfig::Download { dir } => Handler::Download { dir: dir.clone() },
            HandlerConfig::Command {
                command,
                dir,
                timeout,
            } => Handler::Command {
                command: command.clone(),
                dir: dir
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("ftp-listener")),
                timeout: *timeout,
            },
            HandlerConfig::Forward(forward) => Handler::Forward(Arc::new(
                crate::forward::Forward::new(forward, &crate::registry::Registry::builtin()),
            )),
        }
    }

    /// Handles one delivery from `fs` outside the poll loop (tests, tools): the same as
    /// [`FileHandler::on_file`] with a context that never cancels.
    pub async fn handle<F>(&self, fs: &F, delivery: &Delivery) -> Result<(), String>
    where
        F: RemoteFs,
        F::Reader: 'static,
    {
        let source = SourceOf(fs);
        let context = HandlerContext::new(
            delivery.fence.clone(),
            delivery.attempt,
            delivery.redelivery,
            Cancellation::never(),
            Arc::new(|_: &Fence| true),
        );
        let file = IncomingFile::new(
            delivery.version.clone(),
            delivery.relative.clone(),
            context,
            &source,
        );
        self.on_file(&file).await.map_err(|e| e.0)
    }
}

impl Delivery {
    fn of(file: &IncomingFile<'_>) -> Delivery {
        Delivery {
            version: file.version.clone(),
            relative: file.relative.clone(),
            fence: file.context.fence.clone(),
            attempt: file.context.attempt,
            redelivery: file.context.redelivery,
        }
    }
}

#[async_trait]
impl FileHandler for Handler {
    async fn on_file(&self, file: &IncomingFile<'_>) -> Result<(), HandlerError> {
        let delivery = &Delivery::of(file);
        match self {
            Handler::Log => {
                tracing::info!(
                    path = %delivery.version.path,
                    size = delivery.version.size,
                    attempt = delivery.attempt,
                    redelivery = delivery.redelivery,
                    term = delivery.fence.term.0,
                    "file received"
                );
                Ok(())
            }
            Handler::Download { dir } => {
                let target = download_incoming(file, dir).await?;
                tracing::info!(
                    path = %delivery.version.path,
                    target = %target.display(),
                    "file downloaded"
                );
                Ok(())
            }
            Handler::Command {
                command,
                dir,
                timeout,
            } => {
                // A folder of this delivery's own: handlers run concurrently, and two files
                // with the same term, attempt and mtime must never share one (the first to
                // finish would remove the other's copy).
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let staging = dir.join(format!(
                    "{}-{}-{}-{}-{n}",
                    std::process::id(),
                    delivery.fence.term.0,
                    delivery.attempt,
                    delivery.version.mtime_ms
                ));
                let local = download_incoming(file, &staging).await?;
                // A member stopped (SIGSTOP, a frozen VM) during the download resumes here
                // with its lease gone, possibly after the next leader redelivered the file:
                // the command must not start then (found by `ftp-listener demo`).
                if !file.context.still_leading() {
                    let _ = tokio::fs::remove_dir_all(&staging).await;
                    return Err("no longer leading: the command was not started".into());
                }
                let result = run_command(command, *timeout, &local, delivery).await;
                let _ = tokio::fs::remove_dir_all(&staging).await;
                result.map_err(HandlerError)
            }
            Handler::Forward(forward) => forward.on_file(file).await,
        }
    }
}

/// Streams the file to `dir/<relative>` through a `.part` file, then renames it into place.
pub(crate) async fn download_incoming(
    file: &IncomingFile<'_>,
    dir: &Path,
) -> Result<PathBuf, HandlerError> {
    let target = local_target(dir, &file.relative).map_err(|e| {
        format!(
            "refusing to write `{}` under {}: {e}",
            escape_for_log(file.relative.as_bytes()),
            dir.display()
        )
    })?;
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    let part = target.with_extension(match target.extension() {
        Some(ext) => format!("{}.part", ext.to_string_lossy()),
        None => "part".to_string(),
    });
    let result = copy_to(file, &part).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e.into());
    }
    tokio::fs::rename(&part, &target)
        .await
        .map_err(|e| format!("rename {} into place: {e}", part.display()))?;
    Ok(target)
}

/// Bytes gathered before each write of a download to its local file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Streams `path` into `local` and checks that as many bytes came as the listing said
/// (issue 12): a file rewritten since it was listed, or a listing line that lied about it, is
/// a failed attempt (retried with backoff), never a handled version with other content.
async fn copy_to(file: &IncomingFile<'_>, local: &Path) -> Result<(), String> {
    let path = file.version.path.as_str();
    let listed_size = file.version.size;
    let mut reader = file.open().await.map_err(|e| e.to_string())?;
    let file = tokio::fs::File::create(local)
        .await
        .map_err(|e| format!("create {}: {e}", local.display()))?;
    // Each write to a `tokio::fs::File` is a hop to the blocking pool: the download's reads
    // (as large as the socket has) are gathered into 1 MiB writes, which took a 1 GiB file
    // from vsftpd on loopback from about half the plain client's rate (`throughput` bench).
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut buf = vec![0u8; 256 * 1024];
    let mut read: u64 = 0;
    loop {
        let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        read += n as u64;
        file.write_all(&buf[..n])
            .await
            .map_err(|e| format!("write {}: {e}", local.display()))?;
    }
    reader.finish().await.map_err(|e| e.to_string())?;
    file.flush()
        .await
        .map_err(|e| format!("write {}: {e}", local.display()))?;
    if read != listed_size {
        return Err(format!(
            "`{}`: downloaded {read} bytes, the listing said {listed_size} (changed since it \
             was listed?)",
            escape_for_log(path.as_bytes())
        ));
    }
    Ok(())
}

/// The shell script every command runs under (`sh -c GUARD ftp-listener-handler PROGRAM
/// ARGS... FILE`), so that the command and everything it starts die with the listener, even
/// with `kill -9` (issue 12 item 4): the command runs in its own process group (set at spawn),
/// and a watcher in that group holds the read end of a pipe whose only write end the listener
/// holds (`stdin` of the shell, close-on-exec on the listener's side). When the listener
/// exits, however it exits, the kernel closes the write end; `read` returns at end of file
/// and the watcher kills the whole group. The command itself gets `/dev/null` as its input.
/// At the end of a normal run the script stops the watcher and sends SIGTERM to what the
/// command left running in the group, then exits with the command's status.
///
/// A pre-exec `prctl(PR_SET_PDEATHSIG)` would need `unsafe` (forbidden in this workspace),
/// would not reach grandchildren (it is reset by `fork`), and fires when the spawning
/// *thread* exits, which in a tokio runtime is not the listener exiting.
const GUARD: &str = r#"exec 3<&0 </dev/null
{ read -r _ <&3; kill -KILL 0; } &
guard=$!
exec 3<&-
"$@"
status=$?
kill -KILL "$guard" 2>/dev/null
trap '' TERM
kill -TERM 0 2>/dev/null
exit "$status""#;

/// A running command's process group, killed (SIGKILL, the whole group) when this is dropped
/// before the command was reaped: on timeout, and when the handler's future is dropped
/// (cancelled when the lease ends, or at the end of `shutdown_grace`). Dropped after a
/// normal exit, it does nothing (the group's id may already name another group).
#[derive(Debug)]
struct ProcessGroup {
    id: Option<u32>,
}

impl ProcessGroup {
    fn reaped(&mut self) {
        self.id = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            kill_group(id);
        }
    }
}

#[cfg(target_os = "linux")]
fn kill_group(id: u32) {
    use rustix::process::{Pid, Signal, kill_process_group};
    if let Some(pid) = i32::try_from(id).ok().and_then(Pid::from_raw) {
        // ESRCH (already gone) is fine.
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_group(_id: u32) {
    // Elsewhere only the direct child is killed (`kill_on_drop`); the guard script still
    // ends the group when the listener exits.
}

async fn run_command(
    command: &[String],
    timeout: Duration,
    local: &Path,
    delivery: &Delivery,
) -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    use tokio::io::AsyncReadExt as _;

    let (program, _) = command
        .split_first()
        .ok_or_else(|| "handler.command is empty".to_string())?;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(GUARD)
        .arg("ftp-listener-handler")
        .args(command)
        .arg(local)
        .env("FTPL_PATH", &delivery.version.path)
        .env("FTPL_LOCAL_PATH", local)
        .env("FTPL_SIZE", delivery.version.size.to_string())
        .env("FTPL_TERM", delivery.fence.term.0.to_string())
        .env("FTPL_ATTEMPT", delivery.attempt.to_string())
        .env("FTPL_REDELIVERY", delivery.redelivery.to_string())
        .env("FTPL_MEMBER", delivery.fence.member.as_str())
        .env("FTPL_GROUP", delivery.fence.group.as_str())
        // The guard's pipe (see GUARD): held open by this process only.
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        // The shell is killed when dropped too (the group kill below covers the rest).
        .kill_on_drop(true);
    // Its own process group (pgid = its pid), so that one kill reaches all it started.
    cmd.as_std_mut().process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{program}` under /bin/sh: {e}"))?;
    // Declared after `child`, so dropped before it: the group is killed while its leader is
    // not yet reaped (its id cannot name another group).
    let mut group = ProcessGroup { id: child.id() };
    let _pipe = child.stdin.take();
    let mut stderr_pipe = child.stderr.take();
    let run = async {
        let read_stderr = async {
            let mut buf = Vec::new();
            if let Some(pipe) = stderr_pipe.as_mut() {
                let _ = pipe.read_to_end(&mut buf).await;
            }
            buf
        };
        let (status, stderr) = tokio::join!(
            async {
                let status = child.wait().await;
                group.reaped();
                status
            },
            read_stderr
        );
        (status, stderr)
    };
    let (status, stderr) = match tokio::time::timeout(timeout, run).await {
        Ok((status, stderr)) => (status.map_err(|e| format!("`{program}`: {e}"))?, stderr),
        Err(_) => return Err(format!("`{program}` killed after {timeout:?}")),
    };
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.chars().take(200).collect();
    Err(format!("`{program}` exited with {status}: {last}")
        .trim_end_matches([' ', ':'])
        .to_string())
}
