//! [`SftpFs`]: `RemoteFs` over SFTP. Every libssh2 call runs in `spawn_blocking` on a session
//! checked out of the pool.

use std::collections::VecDeque;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coord_core::{
    EntryKind, FsError, ListOptions, Listing, RemoteEntry, RemoteFs, RenameMode, check_name,
    escape_for_log, join_remote,
};
use ssh2::{ErrorCode, FileStat, FileType, RenameFlags, Sftp};

use crate::connect::Conn;
use crate::error::{ERROR_FILE, Site, maybe_target_exists};
use crate::io::{SftpReader, SftpWriter};
use crate::pool::{Pool, Retry};
use crate::settings::{SettingsError, SftpSettings};

/// An SFTP file source (see the crate doc). Cheap to clone; clones share the session pool.
#[derive(Clone)]
pub struct SftpFs {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SftpFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The settings' Debug redacts the password and passphrase.
        f.debug_struct("SftpFs")
            .field("settings", &self.pool.settings)
            .finish_non_exhaustive()
    }
}

impl SftpFs {
    /// Checks the settings and reads their secrets (environment, file). Does not connect: the
    /// first operation does.
    pub fn new(settings: SftpSettings) -> Result<SftpFs, SettingsError> {
        let credentials = settings.resolve()?;
        Ok(SftpFs {
            pool: Arc::new(Pool::new(settings, credentials)),
        })
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.pool.server
    }

    /// Connects now (or reuses an idle session), to fail early on bad credentials or an
    /// unknown host key.
    pub async fn check(&self) -> Result<(), FsError> {
        self.run("connect", "", Retry::OnStaleSession, |_conn, _site| Ok(()))
            .await
    }

    /// Runs `op` on a pooled session in `spawn_blocking`; a connection error or timeout drops
    /// the session (the next call reconnects). With [`Retry::OnStaleSession`], a connection
    /// error on a session that had been idle is retried once on a new session.
    async fn run<T, F>(
        &self,
        operation: &'static str,
        path: &str,
        retry: Retry,
        op: F,
    ) -> Result<T, FsError>
    where
        T: Send + 'static,
        F: Fn(&Conn, &Site<'_>) -> Result<T, FsError> + Clone + Send + 'static,
    {
        let (result, reused) = self.run_once(operation, path, op.clone()).await;
        match result {
            Err(err) if retry.applies(reused, &err) => {
                tracing::debug!(server = %self.pool.server, operation, error = %err,
                    "idle sftp session was dead; retrying once on a new session");
                self.run_once(operation, path, op).await.0
            }
            result => result,
        }
    }

    /// One attempt; also says whether the session had been idle in the pool.
    async fn run_once<T, F>(
        &self,
        operation: &'static str,
        path: &str,
        op: F,
    ) -> (Result<T, FsError>, bool)
    where
        T: Send + 'static,
        F: FnOnce(&Conn, &Site<'_>) -> Result<T, FsError> + Send + 'static,
    {
        let lease = match self.pool.acquire().await {
            Ok(lease) => lease,
            Err(err) => return (Err(err), false),
        };
        let reused = lease.reused();
        let path = path.to_string();
        let server = self.pool.server.clone();
        let timeout = self.pool.settings.operation_timeout;
        let result = tokio::task::spawn_blocking(move || {
            let site = Site {
                operation,
                path: &path,
                server: &server,
                timeout,
            };
            let result = op(lease.conn(), &site);
            lease.release(result.as_ref().err());
            result
        })
        .await
        .unwrap_or_else(|e| {
            Err(FsError::Other {
                operation,
                path: String::new(),
                cause: format!("blocking task failed: {e}"),
            })
        });
        (result, reused)
    }
}

fn kind_of(stat: &FileStat) -> EntryKind {
    if stat.perm.is_none() {
        return EntryKind::Other;
    }
    match stat.file_type() {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

fn mtime_of(stat: &FileStat) -> Option<SystemTime> {
    stat.mtime
        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
}

/// Lists `root` breadth first, streaming `readdir` (one SFTP name batch in memory at a time);
/// only the kept entries and the queue of directories still to visit are held.
fn list_blocking(
    sftp: &Sftp,
    root: &str,
    max_depth: u32,
    site: &Site<'_>,
) -> Result<Listing, FsError> {
    let mut listing = Listing::default();
    let mut queue: VecDeque<(String, u32)> = VecDeque::from([(root.to_string(), 0)]);
    while let Some((dir, depth)) = queue.pop_front() {
        let dir_site = Site {
            path: &dir,
            ..*site
        };
        let mut handle = match sftp.opendir(Path::new(&dir)) {
            Ok(handle) => handle,
            Err(e) => {
                let err = dir_site.map(&e);
                // The listed directory itself must open; a subdirectory that vanished or is
                // closed to us is skipped so that one bad folder does not hide the rest.
                if depth > 0
                    && matches!(
                        err,
                        FsError::NotFound { .. } | FsError::PermissionDenied { .. }
                    )
                {
                    tracing::warn!(dir = %escape_for_log(dir.as_bytes()), error = %err, "subdirectory skipped");
                    listing.skipped += 1;
                    continue;
                }
                return Err(err);
            }
        };
        loop {
            let (name, stat) = match handle.readdir() {
                Ok(entry) => entry,
                Err(e) if e.code() == ErrorCode::Session(ERROR_FILE) => break,
                Err(e) => return Err(dir_site.map(&e)),
            };
            let raw = name.as_os_str().as_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let name = match check_name(raw) {
                Ok(name) => name,
                Err(reason) => {
                    tracing::warn!(dir = %escape_for_log(dir.as_bytes()), name = %escape_for_log(raw),
                        %reason, "hostile file name skipped");
                    listing.skipped += 1;
                    continue;
                }
            };
            let kind = kind_of(&stat);
            let path = join_remote(&dir, name);
            if kind == EntryKind::Dir && depth < max_depth {
                queue.push_back((path.clone(), depth + 1));
            }
            listing.entries.push(RemoteEntry {
                path,
                name: name.to_string(),
                size: stat.size.unwrap_or(0),
                mtime: mtime_of(&stat),
                kind,
            });
        }
    }
    Ok(listing)
}

fn rename_blocking(
    sftp: &Sftp,
    from: &str,
    to: &str,
    mode: RenameMode,
    site: &Site<'_>,
) -> Result<(), FsError> {
    let (src, dst) = (Path::new(from), Path::new(to));
    let flags = RenameFlags::ATOMIC | RenameFlags::NATIVE;
    match mode {
        // OpenSSH's server (SFTP v3) renames regular files with link + unlink, so a rename
        // never replaces an existing file there: no-overwrite is atomic.
        RenameMode::NoOverwrite => match sftp.rename(src, dst, Some(flags)) {
            Ok(()) => Ok(()),
            Err(e) if maybe_target_exists(&e) && sftp.lstat(dst).is_ok() => {
                Err(FsError::AlreadyExists {
                    operation: site.operation,
                    path: to.to_string(),
                })
            }
            Err(e) => Err(site.map(&e)),
        },
        // The OVERWRITE flag only exists from SFTP v5; on a v3 server (OpenSSH) the target is
        // removed first when the rename fails because it exists. ssh2 does not expose the
        // atomic posix-rename@openssh.com extension, so there is a short window without
        // target (never without source).
        RenameMode::Overwrite => {
            match sftp.rename(src, dst, Some(flags | RenameFlags::OVERWRITE)) {
                Ok(()) => Ok(()),
                Err(e) if maybe_target_exists(&e) => {
                    match sftp.lstat(dst) {
                        Ok(stat) if kind_of(&stat) != EntryKind::Dir => {}
                        _ => return Err(site.map(&e)),
                    }
                    sftp.unlink(dst).map_err(|e| site.map(&e))?;
                    sftp.rename(src, dst, Some(flags | RenameFlags::OVERWRITE))
                        .map_err(|e| site.map(&e))
                }
                Err(e) => Err(site.map(&e)),
            }
        }
    }
}

/// `mkdir -p`: creates each missing component from the top; a component that appears
/// concurrently is fine as long as it is a directory.
fn create_dir_all_blocking(sftp: &Sftp, path: &str, site: &Site<'_>) -> Result<(), FsError> {
    let mut prefix = String::with_capacity(path.len());
    if path.starts_with('/') {
        prefix.push('/');
    }
    for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if segment == ".." {
            return Err(FsError::UnsafePath {
                operation: site.operation,
                path: escape_for_log(path.as_bytes()),
                reason: "`..` segment".to_string(),
            });
        }
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(segment);
        let component = Path::new(&prefix);
        match sftp.stat(component) {
            Ok(stat) if kind_of(&stat) == EntryKind::Dir => continue,
            Ok(_) => {
                return Err(site.other(format!("`{prefix}` exists and is not a directory")));
            }
            Err(e) if !matches!(site.map(&e), FsError::NotFound { .. }) => return Err(site.map(&e)),
            Err(_) => {}
        }
        if let Err(e) = sftp.mkdir(component, 0o755) {
            match sftp.stat(component) {
                Ok(stat) if kind_of(&stat) == EntryKind::Dir => {}
                _ => return Err(site.map(&e)),
            }
        }
    }
    Ok(())
}

impl RemoteFs for SftpFs {
    type Reader = SftpReader;
    type Writer = SftpWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        let root = dir.to_string();
        let max_depth = options.max_depth;
        self.run("list", dir, Retry::OnStaleSession, move |conn, site| {
            list_blocking(&conn.sftp, &root, max_depth, site)
        })
        .await
    }

    async fn open_read(&self, path: &str) -> Result<SftpReader, FsError> {
        SftpReader::open(Arc::clone(&self.pool), path).await
    }

    async fn open_write(&self, path: &str) -> Result<SftpWriter, FsError> {
        SftpWriter::open(Arc::clone(&self.pool), path).await
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        let (src, dst) = (from.to_string(), to.to_string());
        self.run("rename", from, Retry::Never, move |conn, site| {
            rename_blocking(&conn.sftp, &src, &dst, mode, site)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        let target = path.to_string();
        self.run("delete", path, Retry::Never, move |conn, site| {
            conn.sftp
                .unlink(Path::new(&target))
                .map_err(|e| site.map(&e))
        })
        .await
    }

    /// One `stat` (symlinks followed, as an upload through the path would).
    async fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        let target = path.to_string();
        self.run(
            "size",
            path,
            Retry::OnStaleSession,
            move |conn, site| match conn.sftp.stat(Path::new(&target)) {
                Ok(stat) if kind_of(&stat) == EntryKind::File => Ok(Some(stat.size.unwrap_or(0))),
                Ok(_) => Err(site.other("not a regular file")),
                Err(e) => match site.map(&e) {
                    FsError::NotFound { .. } => Ok(None),
                    other => Err(other),
                },
            },
        )
        .await
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let target = path.to_string();
        self.run(
            "create_dir_all",
            path,
            Retry::OnStaleSession,
            move |conn, site| create_dir_all_blocking(&conn.sftp, &target, site),
        )
        .await
    }
}
