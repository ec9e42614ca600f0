//! Exact modification times for LIST-only servers, asked with `MDTM` and remembered.
//!
//! A LIST line's date cannot be a file's mtime (see `parse.rs`), so in LIST mode each regular
//! file's time comes from `MDTM`. One `MDTM` per file per poll would cost a round trip per
//! file, so the answers are kept per directory, keyed by name and checked against the size
//! and the line's [`ListStamp`]: while a file's LIST line is unchanged its time is reused
//! without asking. When the line changes (a new size, a new date, or the server switching
//! from `Mon DD HH:MM` to `Mon DD  YYYY` as the file ages) the cache misses once and `MDTM`
//! answers; for an unchanged file it answers the same time, so the identity does not change.
//!
//! Bounded: each listing of a directory replaces that directory's entries with those of the
//! listing (files that left are forgotten), and when the directories kept hold more than
//! [`MAX_ENTRIES`] entries in all, the directories listed longest ago are dropped (their next
//! listing asks again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::parse::ListStamp;

/// At most this many remembered times over all directories, unless the latest listing of a
/// single directory alone has more (it is kept whole).
pub(crate) const MAX_ENTRIES: usize = 1_000_000;

/// A time this close to the node's clock (or ahead of it) is not remembered: a file rewritten
/// within the same minute with the same size keeps its LIST line, and only a fresh `MDTM`
/// sees the new time. This costs an `MDTM` per poll for files modified in the last two
/// minutes; the clock only decides what is asked again, never what a time is.
pub(crate) const FRESH: Duration = Duration::from_secs(120);

/// What one `MDTM` said about one file, and the LIST line it said it for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    pub(crate) size: u64,
    pub(crate) stamp: ListStamp,
    pub(crate) mtime: SystemTime,
}

#[derive(Debug, Default)]
struct DirTimes {
    /// When this directory was last listed, in listings of this cache.
    generation: u64,
    files: HashMap<String, Known>,
}

#[derive(Debug, Default)]
struct Inner {
    dirs: HashMap<String, DirTimes>,
    total: usize,
    generation: u64,
}

/// The remembered times of one [`crate::FtpFs`], shared by its sessions.
#[derive(Debug)]
pub(crate) struct MtimeCache {
    inner: Mutex<Inner>,
    mdtm_sent: AtomicU64,
    max_entries: usize,
}

impl Default for MtimeCache {
    fn default() -> MtimeCache {
        MtimeCache::with_bound(MAX_ENTRIES)
    }
}

impl MtimeCache {
    fn with_bound(max_entries: usize) -> MtimeCache {
        MtimeCache {
            inner: Mutex::default(),
            mdtm_sent: AtomicU64::new(0),
            max_entries,
        }
    }

    /// The remembered time of `name` in `dir` (absolute), if its size and stamp are still
    /// those it was asked for; and how many times `dir` holds (when every file hits and
    /// that many were looked up, the listing would remember exactly what is there: see
    /// [`MtimeCache::keep`]).
    pub(crate) fn lookup<'n>(
        &self,
        dir: &str,
        files: impl Iterator<Item = (&'n str, u64, ListStamp)>,
    ) -> (Vec<Option<SystemTime>>, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let known = inner.dirs.get(dir);
        let times = files
            .map(|(name, size, stamp)| {
                let k = known?.files.get(name)?;
                (k.size == size && k.stamp == stamp).then_some(k.mtime)
            })
            .collect();
        (times, known.map_or(0, |k| k.files.len()))
    }

    /// `dir` was listed again with every remembered time still valid and nothing else to
    /// remember: it counts as listed now (for the bound), without rebuilding its entries.
    pub(crate) fn keep(&self, dir: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.generation += 1;
        let generation = inner.generation;
        if let Some(d) = inner.dirs.get_mut(dir) {
            d.generation = generation;
        }
    }

    /// Replaces what is remembered for `dir` with the times of its latest listing.
    pub(crate) fn replace(&self, dir: &str, files: HashMap<String, Known>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.generation += 1;
        let generation = inner.generation;
        let added = files.len();
        let old = inner
            .dirs
            .insert(dir.to_string(), DirTimes { generation, files });
        inner.total = inner.total + added - old.map_or(0, |o| o.files.len());
        while inner.total > self.max_entries && inner.dirs.len() > 1 {
            let oldest = inner
                .dirs
                .iter()
                .filter(|(d, _)| d.as_str() != dir)
                .min_by_key(|(_, t)| t.generation)
                .map(|(d, _)| d.clone());
            let Some(oldest) = oldest else { break };
            if let Some(gone) = inner.dirs.remove(&oldest) {
                inner.total -= gone.files.len();
            }
        }
    }

    /// Counts one `MDTM` sent.
    pub(crate) fn count_mdtm(&self) {
        self.mdtm_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn mdtm_sent(&self) -> u64 {
        self.mdtm_sent.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn total(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.dirs.len(), inner.total)
    }
}

/// Whether `mtime` is too recent (by the node's clock) to be remembered, see [`FRESH`].
pub(crate) fn is_fresh(mtime: SystemTime, now: SystemTime) -> bool {
    now.duration_since(mtime).map_or(true, |age| age < FRESH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const RECENT: ListStamp = ListStamp::Recent {
        month: 11,
        day: 27,
        hour: 11,
        minute: 22,
    };
    const DATED: ListStamp = ListStamp::Dated {
        month: 11,
        day: 27,
        year: 2025,
    };

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn known(size: u64, stamp: ListStamp, secs: u64) -> Known {
        Known {
            size,
            stamp,
            mtime: at(secs),
        }
    }

    #[test]
    fn hits_only_for_the_same_size_and_stamp() {
        let cache = MtimeCache::default();
        cache.replace(
            "/in",
            HashMap::from([("a".to_string(), known(5, RECENT, 1000))]),
        );
        let got = cache.lookup(
            "/in",
            [
                ("a", 5, RECENT),
                ("a", 6, RECENT),
                ("a", 5, DATED),
                ("b", 5, RECENT),
            ]
            .into_iter(),
        );
        assert_eq!(got.0, [Some(at(1000)), None, None, None]);
        assert_eq!(got.1, 1, "one time held for /in");
        assert_eq!(
            cache.lookup("/other", [("a", 5, RECENT)].into_iter()),
            (vec![None], 0)
        );
    }

    #[test]
    fn a_listing_replaces_its_directory_and_the_oldest_directories_go_first() {
        const MAX: usize = 10;
        let cache = MtimeCache::with_bound(MAX);
        let many = |n: usize| -> HashMap<String, Known> {
            (0..n)
                .map(|i| (i.to_string(), known(1, RECENT, 1)))
                .collect()
        };
        cache.replace("/a", many(3));
        cache.replace("/a", many(2));
        assert_eq!(cache.total(), (1, 2));
        cache.replace("/b", many(MAX - 2));
        assert_eq!(cache.total(), (2, MAX));
        // One more entry: `/a`, listed longest ago, goes.
        cache.replace("/c", many(1));
        assert_eq!(cache.total(), (2, MAX - 1));
        assert_eq!(cache.lookup("/a", [("0", 1, RECENT)].into_iter()).0, [None]);
        assert_eq!(
            cache.lookup("/b", [("0", 1, RECENT)].into_iter()).0,
            [Some(at(1))]
        );
        // Kept (listed again unchanged): `/b` is now the newest, so `/c` goes first.
        cache.keep("/b");
        cache.replace("/d", many(2));
        assert_eq!(
            cache.lookup("/b", [("0", 1, RECENT)].into_iter()).0,
            [Some(at(1))]
        );
        assert_eq!(cache.lookup("/c", [("0", 1, RECENT)].into_iter()).0, [None]);
        // A single directory bigger than the bound is kept whole.
        cache.replace("/huge", many(MAX + 1));
        assert_eq!(cache.total(), (1, MAX + 1));
    }

    #[test]
    fn fresh_times_are_not_remembered() {
        let now = at(10_000);
        assert!(is_fresh(at(10_000 - 119), now));
        assert!(is_fresh(at(10_500), now), "ahead of the node's clock");
        assert!(!is_fresh(at(10_000 - 120), now));
    }
}
