//! What the listing parser promises for any bytes given as one directory's whole listing
//! (transfer-ftp/src/parse.rs, `DirParser`'s doc): no panic; every entry's name passed
//! `coord_core::check_name` and is joined to the directory; no name twice (every copy of a
//! name listed more than once is dropped); records are counted once per line at most.

use std::collections::HashSet;

use coord_core::{check_name, join_remote, EntryKind};
use transfer_ftp::fuzzing::{parse_listing, Format};

const DIR: &str = "/in/sub";

pub fn check(format: Format, data: &[u8]) {
    let parsed = parse_listing(format, DIR, data);
    let entries = &parsed.listing.entries;

    let mut names = HashSet::new();
    for e in entries {
        assert_eq!(
            check_name(e.name.as_bytes()),
            Ok(e.name.as_str()),
            "an entry's name fails check_name: {:?}",
            e.name
        );
        assert!(
            names.insert(e.name.as_str()),
            "name listed twice: {:?}",
            e.name
        );
        assert_eq!(e.path, join_remote(DIR, &e.name), "path is not dir + name");
        // A name is cut out of a line: never made up.
        assert!(
            contains(data, e.name.as_bytes()),
            "a name that is not in the listing: {:?}",
            e.name
        );
    }

    // Directories to recurse into are exactly the accepted directory entries, in order.
    let dirs: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.path.as_str())
        .collect();
    let subdirs: Vec<&str> = parsed.subdirs.iter().map(String::as_str).collect();
    assert_eq!(subdirs, dirs, "subdirs are not the directory entries");

    // MDTM is asked for accepted regular files only (FtpFs indexes entries with these).
    let mut seen = HashSet::new();
    for &i in &parsed.stamped {
        assert!(
            i < entries.len(),
            "stamp index {i} out of {}",
            entries.len()
        );
        assert_eq!(entries[i].kind, EntryKind::File, "stamp on a non-file");
        assert!(seen.insert(i), "stamp index {i} twice");
    }
    if format == Format::Mlsd {
        assert!(parsed.stamped.is_empty(), "MLSD lines have no LIST stamp");
    }

    // Each line becomes at most one entry or is counted as skipped at most once.
    let lines = data.split_inclusive(|&b| b == b'\n').count() as u64;
    assert!(
        entries.len() as u64 + parsed.listing.skipped <= lines,
        "{} entries + {} skipped from {lines} lines",
        entries.len(),
        parsed.listing.skipped
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
