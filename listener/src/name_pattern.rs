//! The seeds' `fileNamePattern` (a regex on the whole file name) as a filter on the source's
//! listing: the poll loop's own filter is a glob, so the regex is applied before it, by a
//! [`RemoteFs`] that drops the files whose name does not match. A done marker
//! (`<name><suffix>`) is kept when `<name>` matches, as the poll loop's glob does.

use std::sync::Arc;

use coord_core::{EntryKind, FsError, ListOptions, Listing, RemoteFs, RenameMode};
use regex::Regex;

/// A source whose listing keeps only the files whose name matches `pattern`.
pub(crate) struct NamePatternFs<F> {
    inner: Arc<F>,
    pattern: Option<Regex>,
    marker: Option<String>,
}

impl<F> NamePatternFs<F> {
    /// `pattern` `None` lists everything.
    pub(crate) fn new(inner: Arc<F>, pattern: Option<Regex>, marker: Option<String>) -> Self {
        NamePatternFs {
            inner,
            pattern,
            marker,
        }
    }

    fn keeps(&self, name: &str) -> bool {
        let Some(pattern) = &self.pattern else {
            return true;
        };
        let base = self
            .marker
            .as_deref()
            .and_then(|m| name.strip_suffix(m))
            .unwrap_or(name);
        pattern.is_match(base)
    }
}

impl<F: RemoteFs> RemoteFs for NamePatternFs<F> {
    type Reader = F::Reader;
    type Writer = F::Writer;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        let mut listing = self.inner.list(dir, options).await?;
        listing
            .entries
            .retain(|e| e.kind != EntryKind::File || self.keeps(&e.name));
        Ok(listing)
    }

    async fn open_read(&self, path: &str) -> Result<Self::Reader, FsError> {
        self.inner.open_read(path).await
    }

    async fn open_write(&self, path: &str) -> Result<Self::Writer, FsError> {
        self.inner.open_write(path).await
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        self.inner.rename(from, to, mode).await
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        self.inner.delete(path).await
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(path).await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        self.inner.size(path).await
    }
}
