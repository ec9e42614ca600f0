//! A local directory as a file source (`source.kind = "local"`): a plain folder, or a mounted
//! NFS/SMB share.
//!
//! Paths are local paths as strings (the listed directory joined with checked names by `/`).
//! Listed names go through [`coord_core::check_name`]; hostile ones (non-UTF-8, control
//! characters) are skipped, counted and logged once per listing.
//!
//! No-overwrite rename: `hard_link(from, to)` (atomic, fails if `to` exists) then unlink
//! `from`. Limits: both paths must be on one file system; on a file system without hard links
//! (some SMB mounts, FAT) it falls back to "check, then rename", which can overwrite a target
//! created in between by another writer.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_core::{
    EntryKind, FileReader, FileWriter, FsError, ListOptions, Listing, RemoteEntry, RemoteFs,
    RenameMode, check_name, escape_for_log, join_remote,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The local-directory source. Every operation is bounded by `timeout` (a hung NFS mount
/// becomes [`FsError::Timeout`], not a hung leader).
#[derive(Debug, Clone)]
pub struct LocalFs {
    timeout: Duration,
    /// Hostile names already warned about: a file that stays is logged once, not per poll.
    warned: Arc<Mutex<HashSet<Vec<u8>>>>,
}

/// At most this many hostile names are remembered; past it, warnings repeat.
const WARNED_LIMIT: usize = 10_000;

impl Default for LocalFs {
    fn default() -> Self {
        LocalFs::new(Duration::from_secs(30))
    }
}

impl LocalFs {
    /// A source whose operations time out after `timeout`.
    pub fn new(timeout: Duration) -> LocalFs {
        LocalFs {
            timeout,
            warned: Arc::default(),
        }
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        path: &str,
        fut: impl Future<Output = Result<T, FsError>>,
    ) -> Result<T, FsError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(FsError::Timeout {
                    operation,
                    path: path.to_string(),
                    after: self.timeout,
                })
            })
    }
}

fn map_io(operation: &'static str, path: &str, err: std::io::Error) -> FsError {
    let path = path.to_string();
    match err.kind() {
        ErrorKind::NotFound => FsError::NotFound { operation, path },
        ErrorKind::PermissionDenied => FsError::PermissionDenied { operation, path },
        ErrorKind::AlreadyExists => FsError::AlreadyExists { operation, path },
        _ => FsError::Other {
            operation,
            path,
            cause: err.to_string(),
        },
    }
}

async fn list_dir(
    warned: &Mutex<HashSet<Vec<u8>>>,
    dir: String,
    depth_left: u32,
    listing: &mut Listing,
    pending: &mut Vec<(String, u32)>,
) -> Result<(), FsError> {
    let mut read_dir = tokio::fs::read_dir(&dir)
        .await
        .map_err(|e| map_io("list", &dir, e))?;
    while let Some(entry) = read_dir
        .next_entry()
        .await
        .map_err(|e| map_io("list", &dir, e))?
    {
        let raw = entry.file_name();
        let name = match check_name(raw.as_bytes()) {
            Ok(name) => name.to_string(),
            Err(reason) => {
                let first_time = {
                    let mut warned = warned.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.len() >= WARNED_LIMIT {
                        true
                    } else {
                        warned.insert(raw.as_bytes().to_vec())
                    }
                };
                if first_time {
                    tracing::warn!(
                        dir = %dir,
                        name = %escape_for_log(raw.as_bytes()),
                        %reason,
                        "skipping a hostile file name"
                    );
                }
                listing.skipped += 1;
                continue;
            }
        };
        let path = join_remote(&dir, &name);
        // `symlink_metadata`: a symbolic link is reported as such and never followed.
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) => meta,
            // Removed between read_dir and stat: simply not listed.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(map_io("list", &path, e)),
        };
        let file_type = meta.file_type();
        let kind = if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        if kind == EntryKind::Dir && depth_left > 0 {
            pending.push((path.clone(), depth_left - 1));
        }
        listing.entries.push(RemoteEntry {
            path,
            name,
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mtime: meta.modified().ok(),
            kind,
        });
    }
    Ok(())
}

/// A streaming read of a local file.
#[derive(Debug)]
pub struct LocalReader {
    file: tokio::fs::File,
    path: String,
}

impl FileReader for LocalReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        self.file
            .read(buf)
            .await
            .map_err(|e| map_io("read", &self.path, e))
    }

    async fn finish(self) -> Result<(), FsError> {
        Ok(())
    }
}

/// A streaming write of a local file.
#[derive(Debug)]
pub struct LocalWriter {
    file: tokio::fs::File,
    path: String,
}

impl FileWriter for LocalWriter {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError> {
        self.file
            .write_all(buf)
            .await
            .map_err(|e| map_io("write", &self.path, e))
    }

    async fn finish(mut self) -> Result<(), FsError> {
        self.file
            .flush()
            .await
            .map_err(|e| map_io("write", &self.path, e))?;
        self.file
            .sync_all()
            .await
            .map_err(|e| map_io("write", &self.path, e))
    }
}

async fn rename_no_overwrite(from: &str, to: &str) -> Result<(), FsError> {
    // One atomic step where the kernel and the file system offer it (renameat2 with
    // RENAME_NOREPLACE): a process killed in the middle leaves the file in one place only.
    #[cfg(target_os = "linux")]
    {
        let (f, t) = (from.to_string(), to.to_string());
        let atomic = tokio::task::spawn_blocking(move || {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                f.as_str(),
                rustix::fs::CWD,
                t.as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            )
        })
        .await;
        match atomic {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if e == rustix::io::Errno::EXIST => {
                return Err(FsError::AlreadyExists {
                    operation: "rename",
                    path: to.to_string(),
                });
            }
            Ok(Err(e)) if e == rustix::io::Errno::NOENT => {
                return Err(map_io("rename", from, std::io::Error::from(e)));
            }
            // EINVAL / ENOSYS: not offered here (an older kernel, some network file
            // systems): the link-then-unlink way below.
            _ => {}
        }
    }
    link_then_unlink(from, to).await
}

/// No-overwrite rename by hard link then unlink (not atomic: a process killed between the two
/// leaves the file in both places).
async fn link_then_unlink(from: &str, to: &str) -> Result<(), FsError> {
    match tokio::fs::hard_link(from, to).await {
        Ok(()) => tokio::fs::remove_file(from)
            .await
            .map_err(|e| map_io("rename", from, e)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(FsError::AlreadyExists {
            operation: "rename",
            path: to.to_string(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(map_io("rename", from, e)),
        Err(e) if matches!(e.raw_os_error(), Some(18)) => {
            // EXDEV: a rename could not work either.
            Err(map_io("rename", from, e))
        }
        Err(_) => {
            // No hard links here (EPERM/ENOTSUP on some mounts): check, then rename.
            if tokio::fs::symlink_metadata(to).await.is_ok() {
                return Err(FsError::AlreadyExists {
                    operation: "rename",
                    path: to.to_string(),
                });
            }
            tokio::fs::rename(from, to)
                .await
                .map_err(|e| map_io("rename", from, e))
        }
    }
}

impl RemoteFs for LocalFs {
    type Reader = LocalReader;
    type Writer = LocalWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        self.bounded("list", dir, async {
            let mut listing = Listing::default();
            let mut pending = vec![(dir.to_string(), options.max_depth)];
            while let Some((next, depth_left)) = pending.pop() {
                list_dir(&self.warned, next, depth_left, &mut listing, &mut pending).await?;
            }
            Ok(listing)
        })
        .await
    }

    async fn open_read(&self, path: &str) -> Result<LocalReader, FsError> {
        self.bounded("open", path, async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| map_io("open", path, e))?;
            Ok(LocalReader {
                file,
                path: path.to_string(),
            })
        })
        .await
    }

    async fn open_write(&self, path: &str) -> Result<LocalWriter, FsError> {
        self.bounded("create", path, async {
            let file = tokio::fs::File::create(path)
                .await
                .map_err(|e| map_io("create", path, e))?;
            Ok(LocalWriter {
                file,
                path: path.to_string(),
            })
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        self.bounded("rename", from, async {
            match mode {
                RenameMode::Overwrite => tokio::fs::rename(from, to)
                    .await
                    .map_err(|e| map_io("rename", from, e)),
                RenameMode::NoOverwrite => rename_no_overwrite(from, to).await,
            }
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        self.bounded("delete", path, async {
            tokio::fs::remove_file(path)
                .await
                .map_err(|e| map_io("delete", path, e))
        })
        .await
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.bounded("mkdir", path, async {
            tokio::fs::create_dir_all(Path::new(path))
                .await
                .map_err(|e| map_io("mkdir", path, e))
        })
        .await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        self.bounded("size", path, async {
            match tokio::fs::metadata(path).await {
                Ok(m) if m.is_file() => Ok(Some(m.len())),
                Ok(_) => Err(FsError::Other {
                    operation: "size",
                    path: path.to_string(),
                    cause: "not a regular file".into(),
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(map_io("size", path, e)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_str(d: &tempfile::TempDir) -> String {
        d.path().to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn list_with_depth_and_hostile_names() {
        let d = tempfile::tempdir().unwrap();
        let root = dir_str(&d);
        std::fs::write(d.path().join("a.txt"), b"hello").unwrap();
        std::fs::create_dir_all(d.path().join("sub/deeper")).unwrap();
        std::fs::write(d.path().join("sub/b.txt"), b"x").unwrap();
        std::fs::write(d.path().join("sub/deeper/c.txt"), b"x").unwrap();
        std::fs::write(d.path().join("bad\nname"), b"x").unwrap();
        let fs = LocalFs::default();

        let flat = fs.list(&root, &ListOptions { max_depth: 0 }).await.unwrap();
        let mut files: Vec<_> = flat
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| (e.name.clone(), e.size))
            .collect();
        files.sort();
        assert_eq!(files, vec![("a.txt".to_string(), 5)]);
        assert_eq!(flat.skipped, 1);

        let deep = fs.list(&root, &ListOptions { max_depth: 1 }).await.unwrap();
        let paths: Vec<_> = deep.entries.iter().map(|e| e.path.clone()).collect();
        assert!(paths.contains(&format!("{root}/sub/b.txt")), "{paths:?}");
        assert!(!paths.contains(&format!("{root}/sub/deeper/c.txt")));

        let missing = fs
            .list(&format!("{root}/nope"), &ListOptions::default())
            .await;
        assert!(matches!(missing, Err(FsError::NotFound { .. })));
    }

    #[tokio::test]
    async fn read_write_rename_delete() {
        let d = tempfile::tempdir().unwrap();
        let root = dir_str(&d);
        let fs = LocalFs::default();
        fs.create_dir_all(&format!("{root}/x/y")).await.unwrap();
        let a = format!("{root}/x/y/a");
        let mut w = fs.open_write(&a).await.unwrap();
        w.write_all(b"payload").await.unwrap();
        w.finish().await.unwrap();
        let mut r = fs.open_read(&a).await.unwrap();
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"payload");
        r.finish().await.unwrap();

        let b = format!("{root}/b");
        std::fs::write(&b, b"other").unwrap();
        let err = fs
            .rename(&a, &b, RenameMode::NoOverwrite)
            .await
            .unwrap_err();
        assert!(matches!(err, FsError::AlreadyExists { .. }), "{err}");
        assert_eq!(std::fs::read(&b).unwrap(), b"other", "target untouched");
        let c = format!("{root}/c");
        fs.rename(&a, &c, RenameMode::NoOverwrite).await.unwrap();
        assert!(!Path::new(&a).exists());
        assert_eq!(std::fs::read(&c).unwrap(), b"payload");
        fs.rename(&c, &b, RenameMode::Overwrite).await.unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"payload");
        fs.delete(&b).await.unwrap();
        assert!(matches!(fs.delete(&b).await, Err(FsError::NotFound { .. })));
    }
}
