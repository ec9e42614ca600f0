//! An in-memory `RemoteFs`, for the listener's unit tests and the simulator. Paths are
//! `/`-separated; directories exist implicitly above files and explicitly by
//! `create_dir_all`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use coord_core::{
    EntryKind, FileReader, FileWriter, FsError, ListOptions, Listing, RemoteEntry, RemoteFs,
    RenameMode,
};

#[derive(Debug, Clone)]
struct MemFile {
    data: Arc<Vec<u8>>,
    mtime: SystemTime,
}

#[derive(Debug, Default)]
struct Tree {
    files: BTreeMap<String, MemFile>,
    dirs: BTreeSet<String>,
}

/// An in-memory file system. Clones share the same tree.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    tree: Arc<Mutex<Tree>>,
    unavailable: Arc<AtomicBool>,
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn normalize(dir: &str) -> String {
    dir.trim_end_matches('/').to_string()
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// Writes a whole file (creating or replacing it) with the given modification time.
    pub fn put(&self, path: &str, data: &[u8], mtime: SystemTime) {
        self.tree.lock().unwrap().files.insert(
            path.to_string(),
            MemFile {
                data: Arc::new(data.to_vec()),
                mtime,
            },
        );
    }

    /// The content of a file, if it exists.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.tree
            .lock()
            .unwrap()
            .files
            .get(path)
            .map(|f| f.data.as_ref().clone())
    }

    /// Every file path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.tree.lock().unwrap().files.keys().cloned().collect()
    }

    /// Every call fails with a connection error while set.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn check(&self, operation: &'static str) -> Result<(), FsError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(FsError::Connection {
                operation,
                server: "memfs".into(),
                cause: "set unavailable".into(),
            });
        }
        Ok(())
    }

    fn dir_exists(tree: &Tree, dir: &str) -> bool {
        dir.is_empty()
            || tree.dirs.contains(dir)
            || tree
                .files
                .keys()
                .any(|p| p.starts_with(dir) && p.as_bytes().get(dir.len()) == Some(&b'/'))
    }

    fn list_into(tree: &Tree, dir: &str, depth: u32, max_depth: u32, out: &mut Vec<RemoteEntry>) {
        let mut subdirs = BTreeSet::new();
        for (path, file) in &tree.files {
            if parent(path) == dir {
                out.push(RemoteEntry {
                    path: path.clone(),
                    name: path.rsplit('/').next().unwrap_or(path).to_string(),
                    size: file.data.len() as u64,
                    mtime: Some(file.mtime),
                    kind: EntryKind::File,
                });
            } else if let Some(rest) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
                && let Some((first, _)) = rest.split_once('/')
            {
                subdirs.insert(format!("{dir}/{first}"));
            }
        }
        for d in &tree.dirs {
            if parent(d) == dir && d != dir {
                subdirs.insert(d.clone());
            }
        }
        for sub in subdirs {
            out.push(RemoteEntry {
                name: sub.rsplit('/').next().unwrap_or(&sub).to_string(),
                path: sub.clone(),
                size: 0,
                mtime: None,
                kind: EntryKind::Dir,
            });
            if depth < max_depth {
                Self::list_into(tree, &sub, depth + 1, max_depth, out);
            }
        }
    }
}

/// A reader over a snapshot of one in-memory file.
#[derive(Debug)]
pub struct MemReader {
    data: Arc<Vec<u8>>,
    pos: usize,
}

impl FileReader for MemReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    async fn finish(self) -> Result<(), FsError> {
        Ok(())
    }
}

/// A writer that lands the file on `finish`.
#[derive(Debug)]
pub struct MemWriter {
    fs: MemFs,
    path: String,
    data: Vec<u8>,
}

impl FileWriter for MemWriter {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    async fn finish(self) -> Result<(), FsError> {
        self.fs.put(&self.path, &self.data, SystemTime::now());
        Ok(())
    }
}

impl RemoteFs for MemFs {
    type Reader = MemReader;
    type Writer = MemWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        self.check("list")?;
        let dir = normalize(dir);
        let tree = self.tree.lock().unwrap();
        if !Self::dir_exists(&tree, &dir) {
            return Err(FsError::NotFound {
                operation: "list",
                path: dir,
            });
        }
        let mut entries = Vec::new();
        Self::list_into(&tree, &dir, 0, options.max_depth, &mut entries);
        // Hostile names are skipped and counted, as every source must (the RemoteFs contract).
        let before = entries.len();
        entries.retain(|e| coord_core::check_name(e.name.as_bytes()).is_ok());
        let skipped = (before - entries.len()) as u64;
        Ok(Listing { entries, skipped })
    }

    async fn open_read(&self, path: &str) -> Result<MemReader, FsError> {
        self.check("read")?;
        let tree = self.tree.lock().unwrap();
        let file = tree.files.get(path).ok_or_else(|| FsError::NotFound {
            operation: "read",
            path: path.to_string(),
        })?;
        Ok(MemReader {
            data: file.data.clone(),
            pos: 0,
        })
    }

    async fn open_write(&self, path: &str) -> Result<MemWriter, FsError> {
        self.check("write")?;
        Ok(MemWriter {
            fs: self.clone(),
            path: path.to_string(),
            data: Vec::new(),
        })
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        self.check("rename")?;
        let mut tree = self.tree.lock().unwrap();
        if mode == RenameMode::NoOverwrite && tree.files.contains_key(to) {
            return Err(FsError::AlreadyExists {
                operation: "rename",
                path: to.to_string(),
            });
        }
        let file = tree.files.remove(from).ok_or_else(|| FsError::NotFound {
            operation: "rename",
            path: from.to_string(),
        })?;
        tree.files.insert(to.to_string(), file);
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        self.check("delete")?;
        let mut tree = self.tree.lock().unwrap();
        tree.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| FsError::NotFound {
                operation: "delete",
                path: path.to_string(),
            })
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.check("mkdir")?;
        let mut tree = self.tree.lock().unwrap();
        let norm = normalize(path);
        let mut current = String::new();
        for segment in norm.split('/').filter(|s| !s.is_empty()) {
            if !current.is_empty() || norm.starts_with('/') {
                current.push('/');
            }
            current.push_str(segment);
            tree.dirs.insert(current.clone());
        }
        Ok(())
    }
}
