//! The `RemoteFs` conformance suite: the same cases run over every file source (testkit's
//! [`MemFs`](crate::MemFs) here, the listener's local directory, FTP on vsftpd and proftpd,
//! plain and FTPS, and SFTP on OpenSSH, in those crates' tests).
//!
//! A source takes part by implementing [`FsHarness`]: it gives the file system under test, a
//! fresh empty scratch directory per case, and access to "the server's disk" (`put` a file with
//! given bytes and modification time, `get` it back, `mkdir`) for what the protocol itself
//! cannot do, such as setting an mtime. Each case is a public `async fn(&H)`, so a test file can
//! run them one by one (one `#[test]` per case and source) or all at once with [`run_all`].
//!
//! The rule is the [`RemoteFs`] contract of `coord-core`. Where a backend legitimately differs,
//! a documented flag in [`Capabilities`] relaxes the assertion of the case (never skips it);
//! today there is one: the precision of listed modification times.
//!
//! This module depends on `coord-core` and `std` only (no `crate::` paths), so that a backend
//! crate without a dev-dependency on `testkit` can compile it into its tests with
//! `#[path = "../../testkit/src/fs_conformance.rs"] mod fs_conformance;`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coord_core::{
    EntryKind, FileReader, FileWriter, FsError, ListOptions, Listing, RemoteEntry, RemoteFs,
    RenameMode, join_remote,
};

/// Where a source legitimately differs from the in-memory reference. Every flag relaxes an
/// assertion; no flag skips a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// How far a listed modification time may be from the one on disk: zero for exact
    /// (in-memory, local disk); one second for FTP (MLSD facts and MDTM replies carry whole
    /// seconds) and SFTP v3 (32-bit seconds in the attributes). The listed time must still be
    /// present and identical in two listings of an unchanged file.
    pub mtime_precision: Duration,
}

impl Capabilities {
    /// Exact modification times.
    pub const EXACT: Capabilities = Capabilities {
        mtime_precision: Duration::ZERO,
    };

    /// Modification times in whole seconds.
    pub const SECONDS: Capabilities = Capabilities {
        mtime_precision: Duration::from_secs(1),
    };
}

/// One source under test.
pub trait FsHarness {
    /// The file system under test.
    type Fs: RemoteFs;

    /// The file system under test.
    fn fs(&self) -> &Self::Fs;

    /// What this source may do differently.
    fn capabilities(&self) -> Capabilities;

    /// A fresh, existing, empty directory for the case `case`, writable through [`Self::fs`];
    /// returns its path as the file system names it.
    fn scratch(&self, case: &str) -> String;

    /// Creates the file `path` (a path as the file system names it, parents created) with
    /// `bytes` and modification time `mtime`, directly on the server's disk.
    fn put(&self, path: &str, bytes: &[u8], mtime: SystemTime);

    /// Creates the directory `path` and its parents on the server's disk.
    fn mkdir(&self, path: &str);

    /// The content of the file `path` on the server's disk, `None` when it does not exist.
    fn get(&self, path: &str) -> Option<Vec<u8>>;
}

/// A file name that every source must skip and count: an escape character inside.
pub const HOSTILE_NAME: &str = "bad\u{1b}[31mname.txt";

/// Runs every case, in order; panics naming the first failing one.
pub async fn run_all<H: FsHarness>(h: &H) {
    list_files_and_dirs(h).await;
    list_recursion_depth(h).await;
    list_sizes_and_mtimes_stable(h).await;
    list_skips_hostile_name(h).await;
    list_empty_dir(h).await;
    list_missing_dir_is_error(h).await;
    read_streams_exact_bytes(h).await;
    read_missing_is_not_found(h).await;
    write_complete_after_finish(h).await;
    write_truncates_existing(h).await;
    rename_overwrite(h).await;
    rename_no_overwrite(h).await;
    rename_missing_source_is_not_found(h).await;
    delete_file(h).await;
    delete_missing_is_not_found(h).await;
    create_dir_all_nested_idempotent(h).await;
    size_of_file_and_nothing(h).await;
}

/// The names of the cases, in [`run_all`]'s order.
pub const CASES: &[&str] = &[
    "list_files_and_dirs",
    "list_recursion_depth",
    "list_sizes_and_mtimes_stable",
    "list_skips_hostile_name",
    "list_empty_dir",
    "list_missing_dir_is_error",
    "read_streams_exact_bytes",
    "read_missing_is_not_found",
    "write_complete_after_finish",
    "write_truncates_existing",
    "rename_overwrite",
    "rename_no_overwrite",
    "rename_missing_source_is_not_found",
    "delete_file",
    "delete_missing_is_not_found",
    "create_dir_all_nested_idempotent",
    "size_of_file_and_nothing",
];

/// A fixed, whole-second time in the past (2023-11-14T22:13:20Z).
fn epoch_time(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
}

fn t0() -> SystemTime {
    epoch_time(1_700_000_000, 0)
}

/// Deterministic content that differs at every offset modulo 251 (a prime: no buffer size
/// aligns with it).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}

async fn list<H: FsHarness>(h: &H, case: &str, dir: &str, max_depth: u32) -> Listing {
    h.fs()
        .list(dir, &ListOptions { max_depth })
        .await
        .unwrap_or_else(|e| panic!("{case}: list `{dir}` (depth {max_depth}) failed: {e}"))
}

/// `(path relative to base, kind)` of every entry, sorted.
fn shape(base: &str, listing: &Listing) -> Vec<(String, EntryKind)> {
    let mut v: Vec<_> = listing
        .entries
        .iter()
        .map(|e| (relative(base, &e.path), e.kind))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn relative(base: &str, path: &str) -> String {
    path.strip_prefix(base)
        .map(|r| r.trim_start_matches('/').to_string())
        .unwrap_or_else(|| path.to_string())
}

fn sorted(listing: &Listing) -> Vec<RemoteEntry> {
    let mut v = listing.entries.clone();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

fn entry<'a>(case: &str, listing: &'a Listing, path: &str) -> &'a RemoteEntry {
    listing
        .entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{case}: `{path}` not listed in {:?}", listing.entries))
}

async fn read_all<F: RemoteFs>(
    fs: &F,
    path: &str,
    buf_len: usize,
) -> Result<(Vec<u8>, usize), FsError> {
    let mut reader = fs.open_read(path).await?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; buf_len];
    let mut reads = 0;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reads += 1;
        out.extend_from_slice(&buf[..n]);
    }
    reader.finish().await?;
    Ok((out, reads))
}

async fn upload<F: RemoteFs>(fs: &F, path: &str, data: &[u8]) -> Result<(), FsError> {
    let mut writer = fs.open_write(path).await?;
    for chunk in data.chunks(4096) {
        writer.write_all(chunk).await?;
    }
    writer.finish().await
}

fn expect_not_found<T>(case: &str, what: &str, result: Result<T, FsError>) {
    match result {
        Err(FsError::NotFound { .. }) => {}
        Err(other) => panic!("{case}: {what}: expected NotFound, got {other:?}"),
        Ok(_) => panic!("{case}: {what}: expected NotFound, got Ok"),
    }
}

async fn exists<H: FsHarness>(h: &H, case: &str, dir: &str, path: &str) -> bool {
    list(h, case, dir, 0)
        .await
        .entries
        .iter()
        .any(|e| e.path == path)
}

/// Files and directories of one level: full paths (dir joined with the name by `/`), names,
/// kinds; a directory's content is not listed at depth 0.
pub async fn list_files_and_dirs<H: FsHarness>(h: &H) {
    let case = "list_files_and_dirs";
    let base = h.scratch(case);
    h.put(&join_remote(&base, "a.txt"), b"hello", t0());
    h.put(&join_remote(&base, "with space.csv"), b"x,y\n", t0());
    h.put(&join_remote(&base, "-dash"), b"-", t0());
    h.mkdir(&join_remote(&base, "sub"));
    h.put(&join_remote(&base, "sub/inner.txt"), b"i", t0());
    let listing = list(h, case, &base, 0).await;
    assert_eq!(
        shape(&base, &listing),
        [
            ("-dash".to_string(), EntryKind::File),
            ("a.txt".to_string(), EntryKind::File),
            ("sub".to_string(), EntryKind::Dir),
            ("with space.csv".to_string(), EntryKind::File),
        ],
        "{case}: entries"
    );
    assert_eq!(listing.skipped, 0, "{case}: skipped");
    for e in &listing.entries {
        assert_eq!(
            e.path,
            join_remote(&base, &e.name),
            "{case}: path of {}",
            e.name
        );
    }
}

/// `max_depth` 0, 1 and 2 over a tree three levels deep: each level appears exactly when its
/// depth allows, directories included.
pub async fn list_recursion_depth<H: FsHarness>(h: &H) {
    let case = "list_recursion_depth";
    let base = h.scratch(case);
    h.put(&join_remote(&base, "a"), b"a", t0());
    h.mkdir(&join_remote(&base, "d1/d2/d3"));
    h.put(&join_remote(&base, "d1/b"), b"b", t0());
    h.put(&join_remote(&base, "d1/d2/c"), b"c", t0());
    h.put(&join_remote(&base, "d1/d2/d3/d"), b"d", t0());
    let f = |p: &str| (p.to_string(), EntryKind::File);
    let d = |p: &str| (p.to_string(), EntryKind::Dir);
    let level0 = vec![f("a"), d("d1")];
    let mut level1 = level0.clone();
    level1.extend([f("d1/b"), d("d1/d2")]);
    level1.sort_by(|a, b| a.0.cmp(&b.0));
    let mut level2 = level1.clone();
    level2.extend([f("d1/d2/c"), d("d1/d2/d3")]);
    level2.sort_by(|a, b| a.0.cmp(&b.0));
    let mut level3 = level2.clone();
    level3.push(f("d1/d2/d3/d"));
    level3.sort_by(|a, b| a.0.cmp(&b.0));
    for (depth, expected) in [
        (0, level0),
        (1, level1),
        (2, level2),
        (3, level3.clone()),
        (9, level3),
    ] {
        let listing = list(h, case, &base, depth).await;
        assert_eq!(shape(&base, &listing), expected, "{case}: depth {depth}");
    }
}

/// Sizes are the byte counts; mtimes are present, match the disk within
/// [`Capabilities::mtime_precision`], and two listings of unchanged files are identical (the
/// ledger's identity `(path, size, mtime)` must not flicker).
pub async fn list_sizes_and_mtimes_stable<H: FsHarness>(h: &H) {
    let case = "list_sizes_and_mtimes_stable";
    let base = h.scratch(case);
    let precision = h.capabilities().mtime_precision;
    // Recent (with a sub-second part), older than six months (LIST shows a year, not a time),
    // and before 2001 (a nine-digit epoch): every listing format has to carry all three.
    let files = [
        ("recent.bin", 70_001, epoch_time(1_700_000_000, 250)),
        ("old.bin", 3, epoch_time(1_500_000_000, 0)),
        ("older.bin", 0, epoch_time(900_000_000, 0)),
    ];
    for (name, len, mtime) in files {
        h.put(&join_remote(&base, name), &pattern(len, 1), mtime);
    }
    let first = list(h, case, &base, 0).await;
    for (name, len, mtime) in files {
        let e = entry(case, &first, &join_remote(&base, name));
        assert_eq!(e.kind, EntryKind::File, "{case}: kind of {name}");
        assert_eq!(e.size, len as u64, "{case}: size of {name}");
        let listed = e
            .mtime
            .unwrap_or_else(|| panic!("{case}: no mtime for {name}"));
        let off = listed
            .duration_since(mtime)
            .unwrap_or_else(|e| e.duration());
        if precision.is_zero() {
            assert_eq!(listed, mtime, "{case}: mtime of {name}");
        } else {
            assert!(
                off < precision,
                "{case}: mtime of {name}: listed {listed:?}, on disk {mtime:?} (off by {off:?}, \
                 allowed below {precision:?})"
            );
        }
    }
    let second = list(h, case, &base, 0).await;
    assert_eq!(sorted(&first), sorted(&second), "{case}: second listing");
}

/// A hostile name (an escape sequence inside) is neither listed nor fatal: it is counted in
/// `skipped`, and its neighbours are listed.
pub async fn list_skips_hostile_name<H: FsHarness>(h: &H) {
    let case = "list_skips_hostile_name";
    let base = h.scratch(case);
    h.put(&join_remote(&base, "before.txt"), b"1", t0());
    h.put(&join_remote(&base, HOSTILE_NAME), b"2", t0());
    h.put(&join_remote(&base, "after.txt"), b"3", t0());
    let listing = list(h, case, &base, 0).await;
    assert_eq!(
        shape(&base, &listing),
        [
            ("after.txt".to_string(), EntryKind::File),
            ("before.txt".to_string(), EntryKind::File),
        ],
        "{case}: entries"
    );
    assert_eq!(listing.skipped, 1, "{case}: skipped");
}

/// An empty directory lists as nothing, and as a directory in its parent's recursive listing.
pub async fn list_empty_dir<H: FsHarness>(h: &H) {
    let case = "list_empty_dir";
    let base = h.scratch(case);
    let listing = list(h, case, &base, 3).await;
    assert!(listing.entries.is_empty(), "{case}: {:?}", listing.entries);
    assert_eq!(listing.skipped, 0, "{case}: skipped");
    h.mkdir(&join_remote(&base, "empty"));
    let listing = list(h, case, &base, 3).await;
    assert_eq!(
        shape(&base, &listing),
        [("empty".to_string(), EntryKind::Dir)],
        "{case}: parent"
    );
    let inner = list(h, case, &join_remote(&base, "empty"), 0).await;
    assert!(inner.entries.is_empty(), "{case}: {:?}", inner.entries);
}

/// Listing a directory that does not exist is an error (never an empty listing, which would
/// look like "no files" to the poller), and not a transient one.
pub async fn list_missing_dir_is_error<H: FsHarness>(h: &H) {
    let case = "list_missing_dir_is_error";
    let base = h.scratch(case);
    let missing = join_remote(&base, "no-such-dir");
    match h.fs().list(&missing, &ListOptions::default()).await {
        Ok(listing) => panic!("{case}: listed a missing directory: {listing:?}"),
        Err(e) => assert!(!e.is_transient(), "{case}: transient error {e:?}"),
    }
}

/// A file far larger than one read buffer streams in many reads, byte for byte, and `finish`
/// succeeds after the end; an empty file reads as nothing.
pub async fn read_streams_exact_bytes<H: FsHarness>(h: &H) {
    let case = "read_streams_exact_bytes";
    let base = h.scratch(case);
    let big = pattern(1_000_003, 7);
    let path = join_remote(&base, "big.bin");
    h.put(&path, &big, t0());
    let (got, reads) = read_all(h.fs(), &path, 8192)
        .await
        .unwrap_or_else(|e| panic!("{case}: read failed: {e}"));
    assert_eq!(got.len(), big.len(), "{case}: length");
    assert!(got == big, "{case}: content differs");
    assert!(reads > 1, "{case}: one read for {} bytes", big.len());
    // Twice on the same file system: the first transfer was finished cleanly.
    let (again, _) = read_all(h.fs(), &path, 7919)
        .await
        .unwrap_or_else(|e| panic!("{case}: second read failed: {e}"));
    assert!(again == big, "{case}: second read differs");
    let empty = join_remote(&base, "empty");
    h.put(&empty, b"", t0());
    let (got, reads) = read_all(h.fs(), &empty, 8192)
        .await
        .unwrap_or_else(|e| panic!("{case}: read of an empty file failed: {e}"));
    assert_eq!((got.len(), reads), (0, 0), "{case}: empty file");
}

/// Opening a missing file for reading is `NotFound` (removed between list and read).
pub async fn read_missing_is_not_found<H: FsHarness>(h: &H) {
    let case = "read_missing_is_not_found";
    let base = h.scratch(case);
    let result = h.fs().open_read(&join_remote(&base, "gone.txt")).await;
    expect_not_found(case, "open_read", result.map(|_| ()));
}

/// An upload in many writes is complete after `finish`: the disk holds exactly the bytes and
/// the listing their size. Before `finish`, the disk holds nothing or a prefix, never more.
pub async fn write_complete_after_finish<H: FsHarness>(h: &H) {
    let case = "write_complete_after_finish";
    let base = h.scratch(case);
    let path = join_remote(&base, "up.bin");
    let data = pattern(300_001, 3);
    let mut writer = h
        .fs()
        .open_write(&path)
        .await
        .unwrap_or_else(|e| panic!("{case}: open_write failed: {e}"));
    for chunk in data.chunks(4096) {
        writer
            .write_all(chunk)
            .await
            .unwrap_or_else(|e| panic!("{case}: write failed: {e}"));
    }
    if let Some(partial) = h.get(&path) {
        assert!(
            data.starts_with(&partial),
            "{case}: before finish the disk holds {} bytes that are not a prefix",
            partial.len()
        );
    }
    writer
        .finish()
        .await
        .unwrap_or_else(|e| panic!("{case}: finish failed: {e}"));
    let on_disk = h
        .get(&path)
        .unwrap_or_else(|| panic!("{case}: nothing on disk after finish"));
    assert_eq!(on_disk.len(), data.len(), "{case}: length on disk");
    assert!(on_disk == data, "{case}: content on disk differs");
    let listing = list(h, case, &base, 0).await;
    assert_eq!(
        entry(case, &listing, &path).size,
        data.len() as u64,
        "{case}: listed size"
    );
    let (back, _) = read_all(h.fs(), &path, 65536)
        .await
        .unwrap_or_else(|e| panic!("{case}: read back failed: {e}"));
    assert!(back == data, "{case}: read back differs");
}

/// `open_write` of an existing file truncates it; an empty upload makes an empty file.
pub async fn write_truncates_existing<H: FsHarness>(h: &H) {
    let case = "write_truncates_existing";
    let base = h.scratch(case);
    let path = join_remote(&base, "file.txt");
    h.put(&path, &pattern(10_000, 0), t0());
    upload(h.fs(), &path, b"short")
        .await
        .unwrap_or_else(|e| panic!("{case}: upload failed: {e}"));
    assert_eq!(
        h.get(&path).as_deref(),
        Some(&b"short"[..]),
        "{case}: truncated"
    );
    let empty = join_remote(&base, "empty.txt");
    upload(h.fs(), &empty, b"")
        .await
        .unwrap_or_else(|e| panic!("{case}: empty upload failed: {e}"));
    assert_eq!(
        h.get(&empty).as_deref(),
        Some(&b""[..]),
        "{case}: empty file"
    );
}

/// `Overwrite` moves the file, replacing an existing target (into another directory too).
pub async fn rename_overwrite<H: FsHarness>(h: &H) {
    let case = "rename_overwrite";
    let base = h.scratch(case);
    let (a, b) = (join_remote(&base, "a"), join_remote(&base, "b"));
    h.put(&a, b"from a", t0());
    h.put(&b, b"old b", t0());
    h.fs()
        .rename(&a, &b, RenameMode::Overwrite)
        .await
        .unwrap_or_else(|e| panic!("{case}: rename onto an existing file failed: {e}"));
    assert_eq!(h.get(&a), None, "{case}: source left behind");
    assert_eq!(h.get(&b).as_deref(), Some(&b"from a"[..]), "{case}: target");
    h.mkdir(&join_remote(&base, "done"));
    let moved = join_remote(&base, "done/b");
    h.fs()
        .rename(&b, &moved, RenameMode::Overwrite)
        .await
        .unwrap_or_else(|e| panic!("{case}: rename into a directory failed: {e}"));
    assert_eq!(
        h.get(&moved).as_deref(),
        Some(&b"from a"[..]),
        "{case}: moved"
    );
    assert!(!exists(h, case, &base, &b).await, "{case}: still listed");
}

/// `NoOverwrite` onto an existing file is `AlreadyExists` and changes nothing; onto a free
/// name it moves the file.
pub async fn rename_no_overwrite<H: FsHarness>(h: &H) {
    let case = "rename_no_overwrite";
    let base = h.scratch(case);
    let (c, d, e) = (
        join_remote(&base, "c"),
        join_remote(&base, "d"),
        join_remote(&base, "e"),
    );
    h.put(&c, b"from c", t0());
    h.put(&d, b"keep d", t0());
    match h.fs().rename(&c, &d, RenameMode::NoOverwrite).await {
        Err(FsError::AlreadyExists { .. }) => {}
        other => panic!("{case}: onto an existing file: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        h.get(&c).as_deref(),
        Some(&b"from c"[..]),
        "{case}: source changed"
    );
    assert_eq!(
        h.get(&d).as_deref(),
        Some(&b"keep d"[..]),
        "{case}: target replaced"
    );
    h.fs()
        .rename(&c, &e, RenameMode::NoOverwrite)
        .await
        .unwrap_or_else(|err| panic!("{case}: onto a free name failed: {err}"));
    assert_eq!(h.get(&c), None, "{case}: source left behind");
    assert_eq!(h.get(&e).as_deref(), Some(&b"from c"[..]), "{case}: moved");
}

/// Renaming a source that does not exist is `NotFound`, in both modes.
pub async fn rename_missing_source_is_not_found<H: FsHarness>(h: &H) {
    let case = "rename_missing_source_is_not_found";
    let base = h.scratch(case);
    let (from, to) = (join_remote(&base, "gone"), join_remote(&base, "to"));
    for mode in [RenameMode::Overwrite, RenameMode::NoOverwrite] {
        let result = h.fs().rename(&from, &to, mode).await;
        expect_not_found(case, &format!("{mode:?}"), result);
    }
    assert_eq!(h.get(&to), None, "{case}: target created");
}

/// `delete` removes the file (from the disk and the listing), and leaves its neighbours.
pub async fn delete_file<H: FsHarness>(h: &H) {
    let case = "delete_file";
    let base = h.scratch(case);
    let (x, y) = (join_remote(&base, "x"), join_remote(&base, "y"));
    h.put(&x, b"x", t0());
    h.put(&y, b"y", t0());
    h.fs()
        .delete(&x)
        .await
        .unwrap_or_else(|e| panic!("{case}: delete failed: {e}"));
    assert_eq!(h.get(&x), None, "{case}: still on disk");
    let listing = list(h, case, &base, 0).await;
    assert_eq!(
        shape(&base, &listing),
        [("y".to_string(), EntryKind::File)],
        "{case}: listing"
    );
}

/// Deleting a file that does not exist (any more) is `NotFound`.
pub async fn delete_missing_is_not_found<H: FsHarness>(h: &H) {
    let case = "delete_missing_is_not_found";
    let base = h.scratch(case);
    let path = join_remote(&base, "gone");
    let result = h.fs().delete(&path).await;
    expect_not_found(case, "delete", result);
    h.put(&path, b"1", t0());
    h.fs()
        .delete(&path)
        .await
        .unwrap_or_else(|e| panic!("{case}: first delete failed: {e}"));
    let result = h.fs().delete(&path).await;
    expect_not_found(case, "second delete", result);
}

/// `create_dir_all` makes nested directories, is idempotent, and accepts an existing prefix;
/// the result is usable for uploads.
pub async fn create_dir_all_nested_idempotent<H: FsHarness>(h: &H) {
    let case = "create_dir_all_nested_idempotent";
    let base = h.scratch(case);
    let deep = join_remote(&base, "p/q/r");
    for attempt in 1..=2 {
        h.fs()
            .create_dir_all(&deep)
            .await
            .unwrap_or_else(|e| panic!("{case}: create_dir_all #{attempt} failed: {e}"));
    }
    h.fs()
        .create_dir_all(&join_remote(&base, "p/q/s"))
        .await
        .unwrap_or_else(|e| panic!("{case}: beside an existing prefix failed: {e}"));
    h.fs()
        .create_dir_all(&base)
        .await
        .unwrap_or_else(|e| panic!("{case}: on the scratch directory itself failed: {e}"));
    let listing = list(h, case, &base, 5).await;
    let d = |p: &str| (p.to_string(), EntryKind::Dir);
    assert_eq!(
        shape(&base, &listing),
        [d("p"), d("p/q"), d("p/q/r"), d("p/q/s")],
        "{case}: tree"
    );
    let file = join_remote(&deep, "f.txt");
    upload(h.fs(), &file, b"deep")
        .await
        .unwrap_or_else(|e| panic!("{case}: upload into the new directory failed: {e}"));
    assert_eq!(h.get(&file).as_deref(), Some(&b"deep"[..]), "{case}: file");
}

/// `size` answers a file's byte count (an empty file included) and `None` where nothing is,
/// also after an upload and a rename (what the `forward` handler checks).
pub async fn size_of_file_and_nothing<H: FsHarness>(h: &H) {
    let case = "size_of_file_and_nothing";
    let base = h.scratch(case);
    let seven = join_remote(&base, "seven.bin");
    h.put(&seven, b"1234567", SystemTime::now());
    let size = |p: String| async move { h.fs().size(&p).await };
    assert_eq!(size(seven.clone()).await, Ok(Some(7)), "{case}: a file");
    let empty = join_remote(&base, "empty");
    h.put(&empty, b"", SystemTime::now());
    assert_eq!(size(empty).await, Ok(Some(0)), "{case}: an empty file");
    let missing = join_remote(&base, "missing");
    assert_eq!(size(missing).await, Ok(None), "{case}: nothing");
    let uploaded = join_remote(&base, ".up.part");
    upload(h.fs(), &uploaded, &[7u8; 70_000])
        .await
        .unwrap_or_else(|e| panic!("{case}: upload failed: {e}"));
    assert_eq!(
        size(uploaded.clone()).await,
        Ok(Some(70_000)),
        "{case}: uploaded"
    );
    let target = join_remote(&base, "up");
    h.fs()
        .rename(&uploaded, &target, RenameMode::NoOverwrite)
        .await
        .unwrap_or_else(|e| panic!("{case}: rename failed: {e}"));
    assert_eq!(size(target).await, Ok(Some(70_000)), "{case}: renamed");
    assert_eq!(
        size(uploaded).await,
        Ok(None),
        "{case}: the old name is gone"
    );
}
