//! What the leader does with each claimed file version: log it, download it, or download it
//! and run a command on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use coord_core::{Fence, FileReader, FileVersion, RemoteFs, escape_for_log, local_target};
use tokio::io::AsyncWriteExt;

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
    /// An earlier attempt was dispatched and never finished.
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
        }
    }

    /// Handles one delivery; the error text is what the ledger records.
    pub async fn handle<F: RemoteFs>(&self, fs: &F, delivery: &Delivery) -> Result<(), String> {
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
                let target = download(fs, dir, delivery).await?;
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
                // A per-delivery folder, so two versions of one name never share a file.
                let staging = dir.join(format!(
                    "{}-{}-{}",
                    delivery.fence.term.0, delivery.attempt, delivery.version.mtime_ms
                ));
                let local = download(fs, &staging, delivery).await?;
                let result = run_command(command, *timeout, &local, delivery).await;
                let _ = tokio::fs::remove_dir_all(&staging).await;
                result
            }
        }
    }
}

/// Streams the file to `dir/<relative>` through a `.part` file, then renames it into place.
async fn download<F: RemoteFs>(fs: &F, dir: &Path, delivery: &Delivery) -> Result<PathBuf, String> {
    let target = local_target(dir, &delivery.relative).map_err(|e| {
        format!(
            "refusing to write `{}` under {}: {e}",
            escape_for_log(delivery.relative.as_bytes()),
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
    let result = copy_to(fs, &delivery.version.path, &part).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    tokio::fs::rename(&part, &target)
        .await
        .map_err(|e| format!("rename {} into place: {e}", part.display()))?;
    Ok(target)
}

async fn copy_to<F: RemoteFs>(fs: &F, path: &str, local: &Path) -> Result<(), String> {
    let mut reader = fs.open_read(path).await.map_err(|e| e.to_string())?;
    let mut file = tokio::fs::File::create(local)
        .await
        .map_err(|e| format!("create {}: {e}", local.display()))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(|e| format!("write {}: {e}", local.display()))?;
    }
    reader.finish().await.map_err(|e| e.to_string())?;
    file.flush()
        .await
        .map_err(|e| format!("write {}: {e}", local.display()))?;
    Ok(())
}

async fn run_command(
    command: &[String],
    timeout: Duration,
    local: &Path,
    delivery: &Delivery,
) -> Result<(), String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| "handler.command is empty".to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(local)
        .env("FTPL_PATH", &delivery.version.path)
        .env("FTPL_LOCAL_PATH", local)
        .env("FTPL_SIZE", delivery.version.size.to_string())
        .env("FTPL_TERM", delivery.fence.term.0.to_string())
        .env("FTPL_ATTEMPT", delivery.attempt.to_string())
        .env("FTPL_REDELIVERY", delivery.redelivery.to_string())
        .env("FTPL_MEMBER", delivery.fence.member.as_str())
        .env("FTPL_GROUP", delivery.fence.group.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        // Dropped on timeout or when the poll loop is cancelled at shutdown: no orphan.
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| format!("`{program}`: {e}"))?,
        Err(_) => return Err(format!("`{program}` killed after {timeout:?}")),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.chars().take(200).collect();
    Err(format!("`{program}` exited with {}: {last}", output.status)
        .trim_end_matches([' ', ':'])
        .to_string())
}
